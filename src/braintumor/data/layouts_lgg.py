"""The LGG kaggle_3m layout (Buda et al.): patient folders of 3-channel TIFF slices + masks.

Each slice pair is checked when the layout is listed (TIFF headers, mask pixels: about a
millisecond a pair), so a bad file is a listed skip naming it rather than a failure halfway
through training: an image without its mask, a mask of another size or with values other
than 0/255 (or 0/1), an image that is not 8-bit 3-channel (4-channel, 16-bit), a slice file
whose index is not a number.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import tifffile

from braintumor.data.layouts_base import SEGMENT_DATA, DetectedLayout, list_dir, relative_id
from braintumor.data.lgg import LGG_PATIENT
from braintumor.data.samples import Sample

_MASK = re.compile(r"^(?P<stem>.+)_mask\.tiff?$", re.IGNORECASE)
_SLICE = re.compile(r"^(?P<stem>.+_(?P<n>[^_]+))\.tiff?$", re.IGNORECASE)
_SHOWN_SKIPS = 20


def _tiff_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        return tuple(series.shape), series.dtype


def image_problem(path: Path) -> str | None:
    """Why ``path`` is not an LGG slice (8-bit, 3 channels), or None. Reads the header only."""
    try:
        shape, dtype = _tiff_header(path)
    except Exception as exc:  # tifffile raises TiffFileError, ValueError, struct.error...
        return f"{path}: unreadable TIFF ({str(exc).splitlines()[0] if str(exc) else exc!r})"
    channels = shape[2] if len(shape) == 3 else 1
    if dtype != np.uint8:
        return f"{path}: {dtype.itemsize * 8}-bit TIFF; LGG slices are 8-bit"
    if len(shape) != 3 or channels != 3:
        return f"{path}: {channels}-channel TIFF (shape {shape}); LGG slices have 3 channels"
    return None


def mask_problem(mask: Path, image: Path) -> str | None:
    """Why ``mask`` cannot be ``image``'s LGG mask (size, values 0/255 or 0/1), or None."""
    try:
        array = tifffile.imread(mask)
        image_shape, _ = _tiff_header(image)
    except Exception as exc:
        return f"{mask}: unreadable TIFF ({str(exc).splitlines()[0] if str(exc) else exc!r})"
    if array.ndim != 2:
        return f"{mask}: mask of shape {array.shape}; LGG masks are one channel"
    if array.shape != tuple(image_shape[:2]):
        dims = "x".join(map(str, array.shape))
        want = "x".join(map(str, image_shape[:2]))
        return f"{mask}: mask is {dims} but its image {image.name} is {want}"
    values = set(np.unique(array).tolist())
    if not (values <= {0, 255} or values <= {0, 1}):
        shown = sorted(values)[:6]
        return f"{mask}: mask values {shown}{' ...' if len(values) > 6 else ''}, not 0/255 or 0/1"
    return None


def _patient_slices(folder: Path, skips: list[str]) -> list[tuple[int, Path, Path]]:
    """(index, image, mask) of one patient folder, in slice order; problems go to ``skips``."""
    _, files = list_dir(folder)
    images: dict[str, tuple[int, Path]] = {}
    masks: dict[str, Path] = {}
    for name in files:
        mask_match, match = _MASK.match(name), _SLICE.match(name)
        if mask_match is not None:
            masks[mask_match["stem"]] = folder / name
        elif match is None:
            continue
        elif not match["n"].isdigit():
            skips.append(f"{folder / name}: slice index {match['n']!r} is not a number")
        else:
            images[match["stem"]] = (int(match["n"]), folder / name)
    pairs = []
    for stem, (index, image) in sorted(images.items(), key=lambda item: item[1][0]):
        mask = masks.get(stem)
        if mask is None:
            skips.append(f"{image}: no mask {stem}_mask.tif")
            continue
        problem = image_problem(image) or mask_problem(mask, image)
        if problem:
            skips.append(problem)
        else:
            pairs.append((index, image, mask))
    orphans = sorted(set(masks) - set(images))
    skips.extend(f"{masks[stem]}: mask without an image" for stem in orphans)
    return pairs


def lgg_base(root: Path) -> Path:
    """The folder holding the patient folders: ``root`` itself or its ``kaggle_3m``."""
    for candidate in (root / "kaggle_3m", root / "lgg-mri-segmentation" / "kaggle_3m"):
        if candidate.is_dir():
            return candidate
    return root


def detect_lgg_kaggle_3m(root: Path) -> DetectedLayout | None:
    """``TCGA_xx_xxxx_YYYYMMDD/<name>_N.tif`` + ``<name>_N_mask.tif`` (Buda et al., Kaggle).

    The root may be ``kaggle_3m`` itself or a folder holding it. Group = patient folder.
    Bad pairs are skipped and listed in the notes (see the module docstring).
    """
    base = lgg_base(root)
    dirs, _ = list_dir(base)
    patients = [d for d in dirs if LGG_PATIENT.match(d)]
    if not patients:
        return None
    samples: list[Sample] = []
    skips: list[str] = []
    for patient in patients:
        for _, image, mask in _patient_slices(base / patient, skips):
            samples.append(
                Sample(id=relative_id(image, root), image=str(image), mask=str(mask), group=patient)
            )
    if not samples and not skips:
        return None
    notes: list[str] = []
    if base != root:
        notes.append(f"patient folders found under {relative_id(base, root)}/")
    if skips:
        notes.append(f"skipped {len(skips)} slice files:")
        notes.extend(f"  {problem}" for problem in skips[:_SHOWN_SKIPS])
        if len(skips) > _SHOWN_SKIPS:
            notes.append(f"  ... and {len(skips) - _SHOWN_SKIPS} more")
    notes.append(f"{len(patients)} patients; group = patient folder")
    return DetectedLayout("lgg-kaggle-3m", SEGMENT_DATA, root, samples, [], notes)
