"""Tell a file's format from its first bytes, and the size limits every reader enforces.

Names lie (the Navoneel set has PNGs called ``.jpg``), so readers dispatch on content.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from braintumor.errors import ImageReadError

# Refuse before decoding: a 1 GiB file or a 2e8-pixel image is a mistake or an attack here.
MAX_BYTES = 1 << 30
MAX_PIXELS = 200_000_000

SUPPORTED_SUFFIXES: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".tif",
    ".tiff",
    ".nii",
    ".nii.gz",
    ".dcm",
    ".mat",
)

_HDF5 = b"\x89HDF\r\n\x1a\n"
_NIFTI_MAGICS = (b"n+1\x00", b"ni1\x00")
_NIFTI2_MAGICS = (b"n+2\x00", b"ni2\x00")


def is_image_file(path: str | Path) -> bool:
    """True when the name ends with a supported suffix (case-insensitive); no bytes are read.

    Used to list folders quickly; reading still checks the content.
    """
    name = Path(path).name.lower()
    if name.startswith("."):
        return False
    return name.endswith(SUPPORTED_SUFFIXES)


def check_size(path: Path, max_bytes: int = MAX_BYTES) -> int:
    """Return the file size; raise :class:`ImageReadError` if missing, empty or too big."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise ImageReadError(path, "file does not exist") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot stat file ({exc.strerror})") from None
    if path.is_dir():
        raise ImageReadError(path, "is a folder, not an image file")
    if size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)")
    if size > max_bytes:
        raise ImageReadError(path, f"file is {size} bytes, over the {max_bytes}-byte limit")
    return size


def check_pixels(path: Path, shape: tuple[int, ...], max_pixels: int = MAX_PIXELS) -> None:
    """Raise :class:`ImageReadError` when ``shape`` holds more than ``max_pixels`` elements."""
    count = 1
    for extent in shape:
        count *= int(extent)
    if count > max_pixels:
        dims = "x".join(str(int(e)) for e in shape)
        raise ImageReadError(path, f"image is {dims} ({count} pixels), over the {max_pixels} limit")


def _nifti_magic(head: bytes) -> bool:
    return head[344:348] in _NIFTI_MAGICS or head[4:8] in _NIFTI2_MAGICS


def sniff_format(path: Path) -> str:
    """Return one of ``jpeg png bmp tiff nifti dicom mat`` from the file's bytes.

    Raises :class:`ImageReadError` for empty files and unknown content.
    """
    check_size(path)
    with open(path, "rb") as handle:
        head = handle.read(1024)
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"BM") and len(head) >= 26:
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"MATLAB") or head.startswith(_HDF5) or head[512:520] == _HDF5:
        return "mat"
    if _nifti_magic(head):
        return "nifti"
    if head.startswith(b"\x1f\x8b"):
        try:
            with gzip.open(path, "rb") as handle:
                inner = handle.read(540)
        except (OSError, EOFError, zlib.error):
            raise ImageReadError(path, "corrupt gzip stream") from None
        if _nifti_magic(inner):
            return "nifti"
        raise ImageReadError(path, "gzip file that is not a NIfTI image")
    # DICOM without the 128-byte preamble exists in the wild; only trust the name there.
    if path.name.lower().endswith(".dcm"):
        return "dicom"
    if head.startswith(b"GIF8") or head.startswith(b"RIFF"):
        raise ImageReadError(path, "unsupported format (GIF/WebP); use PNG, JPEG or TIFF")
    raise ImageReadError(
        path,
        "unsupported or unrecognised format (not JPEG/PNG/BMP/TIFF/NIfTI/DICOM/MAT by content)",
    )


def check_finite(path: Path, array: np.ndarray) -> None:
    """Raise :class:`ImageReadError` when a float array holds NaN or infinity."""
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        raise ImageReadError(path, f"float data holds {bad} NaN/infinite values")
