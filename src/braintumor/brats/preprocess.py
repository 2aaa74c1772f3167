"""Load a BraTS case: stack the modalities, check the label map, normalise, crop, resample, cache.

Steps, in order (prediction redoes them from :class:`BratsPreprocess` saved in the model folder):

1. read each modality of the recipe, in the recipe's order, and the label map; every file must
   share the first modality's shape and (within tolerance) affine;
2. brain mask: the case's ``brainmask`` file thresholded at 0.5 (some masks store huge int32
   values that nibabel scales to ~0 and ~1), else the voxels where any modality is non-zero;
3. z-score each modality inside the brain (outside set to 0);
4. crop to the brain's bounding box plus a margin (unless ``crop`` is off), remembering the
   box to paste predictions back;
5. optionally resample to a target spacing (and back, for predictions);
6. map the labels to the working convention (see :mod:`braintumor.brats.labels`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from braintumor.brats.labels import to_working
from braintumor.data.cache import default_cache_dir as shared_cache_dir
from braintumor.data.samples import Sample
from braintumor.errors import DataError
from braintumor.io import read_image
from braintumor.io.base import LoadedImage
from braintumor.recipe_options import DEFAULT_MODALITIES

AFFINE_TOLERANCE = 1e-3  # mm; BraTS files of one case share their affine up to rounding
CACHE_VERSION = 2


@dataclass
class BratsPreprocess:
    """The preprocessing settings, stored in ``ModelInfo.preprocessing``."""

    modalities: list[str] = field(default_factory=lambda: list(DEFAULT_MODALITIES))
    crop: bool = True
    crop_margin: int = 8
    target_spacing: list[float] | None = None
    normalisation: str = "zscore-brain"
    convention: str = "auto"

    def __post_init__(self) -> None:
        if not self.modalities:
            raise DataError("BraTS preprocessing: at least one modality is needed")
        if self.normalisation not in ("zscore-brain", "none"):
            raise DataError(
                f"BraTS preprocessing: normalisation must be 'zscore-brain' or 'none', "
                f"got {self.normalisation!r}"
            )
        if self.target_spacing is not None and len(self.target_spacing) != 3:
            raise DataError(f"BraTS preprocessing: target_spacing {self.target_spacing} is not 3-D")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BratsPreprocess:
        """Rebuild from a dict (unknown keys, such as the network input size, are ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return dataclasses.asdict(self)


@dataclass
class Case:
    """One preprocessed case, in the cropped (and maybe resampled) working grid.

    ``box`` is ((x0, x1), (y0, y1), (z0, z1)) in the original grid; ``crop_shape`` is the box's
    size before resampling, ``original_shape`` the full grid's. ``labels`` are in the working
    convention; ``convention`` is the one the label file used (None without labels).
    ``reference`` is the first modality as read (for writing results with its header).
    """

    id: str
    image: np.ndarray
    labels: np.ndarray | None
    brain: np.ndarray
    box: tuple[tuple[int, int], ...]
    original_shape: tuple[int, ...]
    crop_shape: tuple[int, ...]
    spacing: tuple[float, ...]
    working_spacing: tuple[float, ...]
    affine: np.ndarray
    header: Any = None
    convention: str | None = None
    reference: LoadedImage | None = None


def _modality_path(sample: Sample, name: str) -> Path:
    path = sample.modalities.get(name)
    if path is None:
        have = ", ".join(sorted(sample.modalities)) or "none"
        raise DataError(
            f"{sample.image}: case {sample.id} has no {name!r} modality (it has: {have})"
        )
    if not Path(path).is_file():
        raise DataError(f"{path}: {name} file of case {sample.id} does not exist")
    return Path(path)


def _check_geometry(case_id: str, ref: LoadedImage, other: LoadedImage, what: str) -> None:
    if other.array.shape != ref.array.shape:
        raise DataError(
            f"{other.path}: {what} of case {case_id} has shape {other.array.shape}, "
            f"but {ref.path.name} has {ref.array.shape}"
        )
    if (
        ref.affine is not None
        and other.affine is not None
        and not np.allclose(ref.affine, other.affine, atol=AFFINE_TOLERANCE)
    ):
        raise DataError(
            f"{other.path}: {what} of case {case_id} has a different affine from "
            f"{ref.path.name} (not in the same space)"
        )


def brain_mask(image: np.ndarray, mask_file: LoadedImage | None = None) -> np.ndarray:
    """Boolean brain mask: the mask file above 0.5, else voxels where any channel is non-zero."""
    if mask_file is not None:
        return mask_file.array > 0.5
    return np.any(image != 0, axis=0)


def zscore_in_mask(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Z-score each channel with the mean/std of the voxels inside ``mask``; outside set to 0."""
    out = np.zeros_like(image, dtype=np.float32)
    if not mask.any():
        return out
    for c in range(image.shape[0]):
        values = image[c][mask]
        std = float(values.std())
        out[c][mask] = (values - float(values.mean())) / (std if std > 1e-8 else 1.0)
    return out


def bounding_box(mask: np.ndarray, margin: int) -> tuple[tuple[int, int], ...]:
    """Box ((start, stop) per axis) around the mask plus ``margin``; the whole grid if empty."""
    if not mask.any():
        return tuple((0, n) for n in mask.shape)
    box = []
    for axis, n in enumerate(mask.shape):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others))
        box.append((max(0, int(hits[0]) - margin), min(n, int(hits[-1]) + 1 + margin)))
    return tuple(box)


def crop(array: np.ndarray, box: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Crop the last ``len(box)`` axes of ``array`` to ``box``."""
    lead = (slice(None),) * (array.ndim - len(box))
    return array[lead + tuple(slice(a, b) for a, b in box)]


def paste(
    array: np.ndarray, box: tuple[tuple[int, int], ...], shape: tuple[int, ...], fill: float = 0
) -> np.ndarray:
    """Inverse of :func:`crop`: put ``array`` at ``box`` in a grid of spatial ``shape``."""
    lead = array.shape[: array.ndim - len(box)]
    out = np.full(lead + tuple(shape), fill, dtype=array.dtype)
    out[(slice(None),) * len(lead) + tuple(slice(a, b) for a, b in box)] = array
    return out


def resample(array: np.ndarray, shape: tuple[int, ...], mode: str) -> np.ndarray:
    """Resample channels-first (C, X, Y, Z) ``array`` to spatial ``shape``.

    ``mode`` is ``trilinear`` (images, probabilities) or ``nearest`` (labels, masks). Plain
    interpolation to an exact output shape (rather than a zoom factor) makes the round trip
    original -> working -> original land exactly on the original grid.
    """
    if tuple(array.shape[1:]) == tuple(shape):
        return array
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
    # "nearest-exact" samples pixel centres; torch's "nearest" is off by half a voxel.
    kwargs = {"align_corners": False} if mode == "trilinear" else {}
    mode = "nearest-exact" if mode == "nearest" else mode
    out = torch.nn.functional.interpolate(tensor, size=tuple(shape), mode=mode, **kwargs)
    return out[0].numpy()


def working_shape(
    shape: tuple[int, ...], spacing: tuple[float, ...], target: list[float] | None
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Shape and spacing of the working grid for a crop of ``shape`` at ``spacing``."""
    if target is None or np.allclose(spacing, target, atol=1e-3):
        return tuple(shape), tuple(spacing)
    new = tuple(max(1, round(n * s / t)) for n, s, t in zip(shape, spacing, target, strict=True))
    return new, tuple(float(t) for t in target)


def load_case(sample: Sample, settings: BratsPreprocess, with_labels: bool = True) -> Case:
    """Read and preprocess one case (see the module docstring for the steps)."""
    paths = [_modality_path(sample, name) for name in settings.modalities]
    images = [read_image(p) for p in paths]
    ref = images[0]
    if ref.array.ndim != 3:
        raise DataError(f"{ref.path}: case {sample.id}: not a 3-D volume ({ref.array.shape})")
    for name, img in zip(settings.modalities[1:], images[1:], strict=True):
        _check_geometry(sample.id, ref, img, name)
    stack = np.stack([img.array for img in images]).astype(np.float32)
    mask_file = None
    if "brainmask" in sample.modalities:
        mask_file = read_image(_modality_path(sample, "brainmask"))
        _check_geometry(sample.id, ref, mask_file, "brain mask")
    brain = brain_mask(stack, mask_file)
    labels = convention = None
    if with_labels and sample.mask:
        if not Path(sample.mask).is_file():
            raise DataError(f"{sample.mask}: label map of case {sample.id} does not exist")
        label_img = read_image(Path(sample.mask))
        _check_geometry(sample.id, ref, label_img, "label map")
        try:
            labels, convention = to_working(label_img.array, settings.convention)
        except DataError as exc:
            raise DataError(f"{sample.mask}: case {sample.id}: {exc}") from None
    if settings.normalisation == "zscore-brain":
        stack = zscore_in_mask(stack, brain)
    if settings.crop:
        box = bounding_box(brain, settings.crop_margin)
    else:
        box = tuple((0, n) for n in brain.shape)
    stack, brain = crop(stack, box), crop(brain, box)
    labels = crop(labels, box) if labels is not None else None
    spacing = tuple(float(s) for s in (ref.spacing or (1.0, 1.0, 1.0)))
    crop_shape = tuple(stack.shape[1:])
    shape, work_spacing = working_shape(crop_shape, spacing, settings.target_spacing)
    if shape != crop_shape:
        stack = resample(stack, shape, "trilinear")
        brain = resample(brain[None].astype(np.float32), shape, "nearest")[0] > 0.5
        if labels is not None:
            labels = resample(labels[None].astype(np.float32), shape, "nearest")[0]
            labels = labels.astype(np.uint8)
    return Case(
        id=sample.id,
        image=np.ascontiguousarray(stack, dtype=np.float32),
        labels=labels,
        brain=np.ascontiguousarray(brain),
        box=box,
        original_shape=tuple(ref.array.shape),
        crop_shape=crop_shape,
        spacing=spacing,
        working_spacing=work_spacing,
        affine=ref.affine if ref.affine is not None else np.eye(4),
        header=ref.meta.get("nifti_header"),
        convention=convention,
        reference=dataclasses.replace(ref, array=np.empty((0,), dtype=np.float32)),
    )


def _cache_key(sample: Sample, settings: BratsPreprocess) -> str:
    files = [sample.modalities.get(m, "") for m in [*settings.modalities, "brainmask"]]
    files.append(sample.mask or "")
    stamps = []
    for f in files:
        st = os.stat(f) if f and os.path.exists(f) else None
        stamps.append(
            [
                str(Path(f).resolve()) if f else "",
                st.st_mtime_ns if st else 0,
                st.st_size if st else 0,
            ]
        )
    text = json.dumps([CACHE_VERSION, sample.id, stamps, settings.to_dict()], sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:20]


@dataclass
class CachedCase:
    """A preprocessed case on disk: arrays as .npy (memory-mapped on use) plus its metadata.

    The files are stored slice-major (axial slice first) so that reading one axial slice of a
    memory-mapped case touches one contiguous block; the accessors return (C, X, Y, Z) and
    (X, Y, Z) views.
    """

    folder: Path
    id: str
    shape: tuple[int, ...]
    has_labels: bool
    meta: dict[str, Any]

    def _load(self, name: str, mmap: bool) -> np.ndarray:
        return np.load(self.folder / name, mmap_mode="r" if mmap else None)

    def image(self, mmap: bool = True) -> np.ndarray:
        """(C, X, Y, Z) float32 image stack."""
        return np.moveaxis(self._load("image.npy", mmap), 0, -1)

    def labels(self, mmap: bool = True) -> np.ndarray | None:
        """(X, Y, Z) uint8 working-convention labels, or None."""
        if not self.has_labels:
            return None
        return np.moveaxis(self._load("labels.npy", mmap), 0, -1)

    def brain(self, mmap: bool = True) -> np.ndarray:
        """(X, Y, Z) bool brain mask."""
        return np.moveaxis(self._load("brain.npy", mmap), 0, -1)


def _save_slice_major(path: Path, array: np.ndarray) -> None:
    np.save(path, np.ascontiguousarray(np.moveaxis(array, -1, 0)))


def cache_case(sample: Sample, settings: BratsPreprocess, cache_dir: str | Path) -> CachedCase:
    """Preprocess ``sample`` once into ``cache_dir`` (keyed by files, their mtimes and settings).

    A second call with unchanged files and settings only reads the small metadata file.
    """
    folder = Path(cache_dir) / f"{_safe(sample.id)}-{_cache_key(sample, settings)}"
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        case = load_case(sample, settings)
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            _save_slice_major(staging / "image.npy", case.image)
            _save_slice_major(staging / "brain.npy", case.brain)
            if case.labels is not None:
                _save_slice_major(staging / "labels.npy", case.labels)
            meta = {
                "id": case.id,
                "shape": list(case.image.shape[1:]),
                "has_labels": case.labels is not None,
                "box": [list(b) for b in case.box],
                "original_shape": list(case.original_shape),
                "spacing": list(case.spacing),
                "working_spacing": list(case.working_spacing),
                "convention": case.convention,
            }
            (staging / "meta.json").write_text(json.dumps(meta))
            try:
                staging.rename(folder)
            except OSError:  # another process cached the same case first
                if not meta_path.is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    meta = json.loads(meta_path.read_text())
    return CachedCase(folder, meta["id"], tuple(meta["shape"]), meta["has_labels"], meta)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[-60:]


def default_cache_dir() -> Path:
    """``brats/`` in the toolkit's one cache root (:func:`braintumor.data.cache.
    default_cache_dir`: ``$BRAINTUMOR_CACHE`` or ``~/.cache/braintumor``), beside the 2D
    slices' cache. Cases are folders of memory-mapped arrays, not the 2D cache's one array of
    uint8 slices: a BraTS case is float, multi-channel and read a slice or patch at a time."""
    return shared_cache_dir() / "brats"
