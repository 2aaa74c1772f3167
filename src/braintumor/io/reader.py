"""``read_image``: one entry point that picks the reader from the file's bytes."""

from __future__ import annotations

from pathlib import Path

from braintumor.io.base import LoadedImage
from braintumor.io.dicom import read_dicom, read_dicom_series
from braintumor.io.mat import read_figshare_mat
from braintumor.io.nifti import read_nifti
from braintumor.io.raster import read_pillow, read_tiff
from braintumor.io.sniff import MAX_BYTES, MAX_PIXELS, check_size, sniff_format


def read_image(
    path: str | Path,
    *,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    min_side: int | None = None,
) -> LoadedImage:
    """Read any supported image, choosing the reader by content (magic bytes), not by name.

    JPEG/PNG/BMP -> uint8 (or uint16) grey (H, W) or RGB (H, W, 3); TIFF -> as stored, 1 or 3
    channels; NIfTI -> float32 volume with affine; DICOM -> float32 after rescaling; Figshare
    ``.mat`` -> its ``cjdata.image``; a folder is read as one DICOM series. Every failure raises
    :class:`~braintumor.errors.ImageReadError` naming the file and the problem.

    ``min_side``: a JPEG may be decoded reduced, its longest side still at least this long
    (:func:`~braintumor.io.raster.read_pillow`); other formats are read whole.
    """
    path = Path(path)
    if path.is_dir():
        return read_dicom_series(path, max_pixels=max_pixels)
    check_size(path, max_bytes)
    fmt = sniff_format(path)
    if fmt in ("jpeg", "png", "bmp"):
        return read_pillow(path, fmt, max_pixels, min_side)
    if fmt == "tiff":
        return read_tiff(path, max_pixels)
    if fmt == "nifti":
        return read_nifti(path, max_pixels)
    if fmt == "dicom":
        return read_dicom(path, max_pixels)
    return read_figshare_mat(path, max_pixels).image
