"""What the web page adds to a result: pictures and files as base64 text, the area with its
unit, and the mask as a download in the input's own format (PNG for rasters, NIfTI for NIfTI,
DICOM SEG for DICOM).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from braintumor.errors import DataError
from braintumor.io import LoadedImage, write_nifti
from braintumor.io.dicom_seg import SEG_SUFFIX, is_dicom_image, source_frames, write_dicom_seg
from braintumor.io.raster import encode_png

STACK_SIDE = 256  # longest side of a stack picture


def png_base64(array: np.ndarray, max_side: int | None = None) -> str:
    """uint8 (H, W) or (H, W, 3) -> base64 PNG text, shrunk to ``max_side`` when given."""
    image = Image.fromarray(np.ascontiguousarray(array))
    if max_side is not None and max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return base64.b64encode(encode_png(np.asarray(image))).decode("ascii")


def file_base64(path: Path) -> str:
    """A file's bytes as base64 text."""
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


MEDIA_TYPES = {
    "png": "image/png",
    "nifti": "application/gzip",
    "dicom-seg": "application/dicom",
}


def area_fields(record: dict[str, Any]) -> dict[str, Any]:
    """``area``, ``area_unit`` and ``area_text``: mm² when the input had a pixel spacing."""
    if record.get("area_mm2") is not None:
        area, unit = float(record["area_mm2"]), "mm²"
        text = f"{area:.1f} mm²"
    else:
        area, unit = int(record.get("area_px") or 0), "pixels"
        text = f"{area} pixels"
    return {"area": area, "area_unit": unit, "area_text": text}


def file_download(fmt: str, path: Path, note: str | None = None) -> dict[str, Any]:
    """A file as the page's download: ``{format, filename, media_type, base64, note}``."""
    return {
        "format": fmt,
        "filename": path.name,
        "media_type": MEDIA_TYPES[fmt],
        "base64": base64.b64encode(path.read_bytes()).decode("ascii"),
        "note": note,
    }


def mask_download(
    stem: str,
    out: Path,
    image: LoadedImage,
    mask: np.ndarray,
    volume: LoadedImage | None = None,
    mask_volume: np.ndarray | None = None,
    algorithm: str = "braintumor",
) -> dict[str, Any]:
    """The mask file in the input's format, as ``{format, filename, media_type, base64, note}``.

    A volume's mask covers every slice (``mask_volume``, in the volume's voxel order); a single
    image's covers it (``mask``). DICOM that cannot carry a SEG (no study or frame of reference)
    falls back to PNG, and ``note`` says why.
    """
    source = volume if volume is not None else image
    whole = mask_volume if volume is not None else mask
    if is_dicom_image(source):
        try:
            seg = write_dicom_seg(
                source_frames(source, whole), None, out / f"{stem}{SEG_SUFFIX}", algorithm
            )
            return file_download("dicom-seg", seg)
        except DataError as error:
            note = f"no DICOM SEG: {str(error).split(': ', 1)[-1]}"
            return file_download("png", out / f"{stem}_mask.png", note)
    if source.meta.get("format") == "nifti":
        nifti = out / f"{stem}_mask.nii.gz"
        if not nifti.is_file():
            write_nifti(np.asarray(whole).astype(np.uint8), nifti, reference=source)
        return file_download("nifti", nifti)
    return file_download("png", out / f"{stem}_mask.png")
