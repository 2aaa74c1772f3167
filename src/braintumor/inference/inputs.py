"""What the user names on the command line, turned into images a 2D model can take.

``expand_inputs`` walks files, folders and globs into a sorted list of input paths (a folder
holding one DICOM series is one input); ``read_input`` reads one of them; ``axial_slice``
turns a volume (NIfTI, DICOM series, multi-frame DICOM) into the 2D slice a 2D model wants.
"""

from __future__ import annotations

import glob
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np

from braintumor.data.samples import Sample
from braintumor.errors import DataError
from braintumor.io import LoadedImage, is_image_file, read_dicom_series, read_image, read_mask

_GLOB_CHARS = frozenset("*?[")
_VOLUME_FORMATS = ("nifti", "dicom-series")
_DOUBLE_SUFFIXES = (".nii.gz",)

# Decoding and preprocessing (PIL, OpenCV, pydicom, numpy) release the GIL: prediction reads
# and prepares a batch's images in these threads to keep two cores busy.
DECODE_THREADS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="braintumor-decode")


def _has_dicom_magic(path: Path) -> bool:
    """DICOM Part 10 files carry ``DICM`` after a 128-byte preamble, whatever their name."""
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def is_dicom_path(path: Path) -> bool:
    """A DICOM file by its name (``.dcm``) or by its magic bytes."""
    return path.name.lower().endswith(".dcm") or _has_dicom_magic(path)


def _walk(folder: Path) -> list[Path]:
    """Image files under ``folder``; a folder whose images are all DICOM (2+) is one input."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        here = Path(root)
        visible = [here / name for name in sorted(files) if not name.startswith(".")]
        dicoms = [p for p in visible if is_dicom_path(p)]
        others = [p for p in visible if p not in dicoms and is_image_file(p)]
        if len(dicoms) >= 2 and not others:
            found.append(here)
        else:
            found.extend(others + dicoms)
    return found


def expand_inputs(args: list[str]) -> list[Path]:
    """Files, folders (recursively) and glob patterns -> sorted, de-duplicated input paths.

    A file named explicitly is kept whatever its name, so that an unreadable one is reported
    rather than silently skipped; inside folders only image files count (by name, or by the
    DICOM magic bytes for extension-less DICOM). A folder whose image files are all DICOM (at
    least two) is one input: a series. A path that does not exist is kept too, and fails when
    read. Raises :class:`DataError` when nothing at all is found.
    """
    found: list[Path] = []
    for arg in args:
        path = Path(arg).expanduser()
        if path.is_dir():
            found.extend(_walk(path))
        elif path.exists() or not _GLOB_CHARS.intersection(arg):
            found.append(path)
        else:
            for match in sorted(glob.glob(str(path), recursive=True)):
                hit = Path(match)
                found.extend(_walk(hit) if hit.is_dir() else [hit] if is_image_file(hit) else [])
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    if not unique:
        raise DataError(f"no image files found in {' '.join(args) or '(no inputs given)'}")
    return sorted(unique.values(), key=lambda p: str(p))


def read_input(path: Path, min_side: int | None = None) -> LoadedImage:
    """Read one input from :func:`expand_inputs`: a folder is a DICOM series, a file any image
    (a JPEG decoded reduced down to ``min_side``, see :func:`~braintumor.io.read_image`).

    Raises :class:`~braintumor.errors.ImageReadError` naming the path and the problem.
    """
    return read_dicom_series(path) if path.is_dir() else read_image(path, min_side=min_side)


def input_stem(path: Path) -> str:
    """The file name without its image suffix (``.nii.gz`` counts as one suffix)."""
    name = path.name
    for suffix in _DOUBLE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name if path.is_dir() else path.stem


def unique_stems(paths: list[Path]) -> list[str]:
    """Output name stems, one per path, made unique by prefixing parent folder names.

    Datasets repeat file names across classes (``glioma/image(1).jpg``,
    ``no_tumor/image(1).jpg``), so the bare stem would make one output overwrite another.
    """
    parts = [[*Path(p).parent.parts, input_stem(Path(p))] for p in paths]
    depth = [1] * len(paths)
    while True:
        names = [
            "_".join(part[-d:]).replace(os.sep, "_") for part, d in zip(parts, depth, strict=True)
        ]
        seen: dict[str, list[int]] = {}
        for index, name in enumerate(names):
            seen.setdefault(name, []).append(index)
        clashes = [ids for ids in seen.values() if len(ids) > 1]
        if not clashes:
            return names
        grew = False
        for ids in clashes:
            for index in ids:
                if depth[index] < len(parts[index]):
                    depth[index] += 1
                    grew = True
        if not grew:  # identical relative parts (e.g. a/x.png and /other/a/x.png): number them
            for ids in clashes:
                for rank, index in enumerate(ids[1:], start=2):
                    names[index] = f"{names[index]}_{rank}"
            return names


def is_volume(image: LoadedImage) -> bool:
    """True for a 3D volume (NIfTI, DICOM series or multi-frame grey DICOM), not a colour image."""
    if image.array.ndim < 3:
        return False
    fmt = image.meta.get("format")
    if fmt in _VOLUME_FORMATS:
        return True
    return fmt == "dicom" and str(image.meta.get("photometric", "")).startswith("MONOCHROME")


def _axial_axis(image: LoadedImage) -> int:
    """The voxel axis that runs inferior-superior, from the affine; the last axis otherwise."""
    if image.affine is None:
        return 2
    codes = nib.aff2axcodes(image.affine)
    for axis, code in enumerate(codes[:3]):
        if code in ("S", "I"):
            return axis
    return 2


def axial_slice(image: LoadedImage, which: str = "mid") -> tuple[LoadedImage, int]:
    """One axial slice of a volume as a 2D image, and its index along the axial axis.

    ``which`` is ``"mid"`` or a 0-based index. NIfTI slices are rotated by 90 degrees into the
    usual display orientation (anterior at the top); DICOM slices are already stored that way.
    A 4D volume keeps its last axis as channels.
    """
    axis = _axial_axis(image)
    array = np.moveaxis(image.array, axis, 2)
    count = array.shape[2]
    if which == "mid":
        index = count // 2
    else:
        try:
            index = int(which)
        except ValueError:
            raise DataError(f"--slice must be 'mid' or an integer, got {which!r}") from None
        if not 0 <= index < count:
            raise DataError(f"{image.path}: slice {index} is outside 0..{count - 1}")
    plane = array[:, :, index]
    spacing = None
    if image.spacing is not None and len(image.spacing) >= 3:
        in_plane = [s for i, s in enumerate(image.spacing[:3]) if i != axis]
        spacing = (float(in_plane[0]), float(in_plane[1]))
    if image.meta.get("format") == "nifti":
        plane = np.rot90(plane)
        if spacing is not None:
            spacing = (spacing[1], spacing[0])
    meta = {
        **image.meta,
        "slice_index": index,
        "slice_axis": axis,
        "volume_shape": image.array.shape,
    }
    meta.pop("nifti_header", None)
    sliced = LoadedImage(
        array=np.ascontiguousarray(plane), path=image.path, spacing=spacing, meta=meta
    )
    return sliced, index


def read_pair(sample: Sample) -> tuple[LoadedImage, np.ndarray]:
    """The image and its binary truth mask (any tumour label counts)."""
    if not sample.mask:
        raise DataError(f"{sample.id}: no mask; segmentation evaluation needs one per image")
    image = read_image(sample.image)
    if is_volume(image):
        raise DataError(f"{sample.image}: a volume, not a slice")
    return image, read_mask(sample.mask, like=image) > 0
