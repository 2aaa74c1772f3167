"""Masks: read any mask file (or COCO reference) as uint8 labels, checked against its image."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from braintumor.errors import DataError
from braintumor.io.base import LoadedImage
from braintumor.io.coco import COCO_PREFIX, read_coco_mask
from braintumor.io.mat import read_figshare_mat
from braintumor.io.raster import to_grey
from braintumor.io.reader import read_image
from braintumor.io.sniff import sniff_format

# More distinct values than this in an 8-bit mask means grey levels (JPEG), not labels.
_MAX_LABELS = 32


def mask_to_labels(array: np.ndarray, source: str | Path = "mask") -> np.ndarray:
    """Turn mask pixels into uint8: 0/255, 0/65535 or grey-level masks become 0/1; small
    integer label maps (BraTS 0, 1, 2, 4) are kept; float masks are rounded when they hold
    (nearly) whole numbers and thresholded at 0.5 otherwise.
    """
    array = np.asarray(array)
    if array.dtype == bool:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        rounded = np.rint(array)
        if np.abs(array - rounded).max(initial=0.0) > 1e-3:
            return (array > 0.5).astype(np.uint8)
        array = rounded
    if array.size and array.min() < 0:
        raise DataError(f"{source}: mask holds negative values ({array.min()})")
    top = int(array.max()) if array.size else 0
    if top <= 255:
        small = array.astype(np.uint8)
        present = np.flatnonzero(np.bincount(small.ravel(), minlength=256))
        if set(present.tolist()) <= {0, 255}:
            return (small > 0).astype(np.uint8)
        if len(present) <= _MAX_LABELS and top < 255:
            return small
    # Binary mask stored with many grey levels (JPEG) or at 16 bits: threshold at half range.
    return (array > top / 2).astype(np.uint8)


def _spatial_shape(image: LoadedImage) -> tuple[int, ...]:
    """Rasters are (H, W[, C]): compare H, W. Volumes (with an affine) compare all three axes."""
    if image.affine is not None:
        return tuple(image.array.shape[:3])
    return tuple(image.array.shape[:2])


def read_mask_file(path: str | Path) -> tuple[np.ndarray, tuple[int, ...]]:
    """Read a mask file (or ``coco:`` reference) as uint8 labels, with its spatial shape
    (height x width for rasters, the volume shape for NIfTI/DICOM); no image to check against."""
    if isinstance(path, str) and path.startswith(COCO_PREFIX):
        mask = read_coco_mask(path)
        return mask, tuple(mask.shape)
    path = Path(path)
    if sniff_format(path) == "mat":
        mask = read_figshare_mat(path).mask
        return mask, tuple(mask.shape)
    loaded = read_image(path)
    array = loaded.array
    if loaded.affine is None and array.ndim == 3:
        array = to_grey(array)
    return mask_to_labels(array, path), _spatial_shape(loaded)


def read_mask(path: str | Path, like: LoadedImage) -> np.ndarray:
    """Read the mask for image ``like`` as a uint8 binary (0/1) or label array.

    ``path`` is a mask file (PNG/JPEG/TIFF/NIfTI/DICOM), a Figshare ``.mat`` (its tumorMask) or a
    ``coco:<json>#<image id>`` reference. Raises :class:`~braintumor.errors.DataError` naming
    both files when the mask's height x width (or volume shape) differs from the image's.
    """
    mask, mask_shape = read_mask_file(path)
    image_shape = _spatial_shape(like)
    if tuple(mask_shape) != image_shape:
        dims = "x".join(str(n) for n in mask_shape)
        want = "x".join(str(n) for n in image_shape)
        raise DataError(f"mask {path} is {dims} but image {like.path} is {want}")
    return mask
