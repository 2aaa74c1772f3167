"""Bound the memory one request can take: a pixel limit read from the file's header before
anything is decoded, and a cap on how many requests decode and infer at once.

A decoded image costs far more than its file (a 12000 x 12000 PNG of a few MB grew the
server by 11 GB): the limits are on pixels, not bytes. Volumes are processed slice by slice,
so they may hold :data:`VOLUME_FACTOR` times as many voxels as an image holds pixels.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from math import prod
from pathlib import Path

from PIL import Image

from braintumor.serve.security import UploadError

#: Default pixel limit of a 2D upload: 16 MP (4000 x 4000), well under PIL's 89 MP. A
#: classifier request costs about 90 bytes per pixel at its peak (measured: docs/reliability.md).
DEFAULT_MAX_PIXELS = 16_000_000
#: A volume (NIfTI, DICOM) may hold this many times ``max_pixels`` voxels.
VOLUME_FACTOR = 4
#: Requests that decode and infer at the same time; the others wait their turn.
DEFAULT_MAX_CONCURRENT = 2
#: How long a request waits for its turn before the server answers 503.
WAIT_SECONDS = 120.0


def _megapixels(n: int) -> str:
    return f"{n / 1e6:.1f} MP"


def header_shape(path: Path, kind: str) -> tuple[int, ...] | None:
    """The pixel (or voxel) shape a file declares in its header, without decoding it; None
    when the header does not say (the decoder's own checks then apply)."""
    if kind == "image":
        try:
            with Image.open(path) as image:
                return (image.height, image.width, getattr(image, "n_frames", 1))
        except Image.DecompressionBombError as error:  # over PIL's own hard limit
            raise UploadError(413, f"image too large to decode ({error})") from None
        except OSError:
            return None
    if kind == "nifti":
        import nibabel as nib

        try:
            return tuple(int(n) for n in nib.load(path).header.get_data_shape())
        except Exception:  # the reader reports a broken header with its own message
            return None
    if kind == "dicom":
        import pydicom

        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            return (int(ds.Rows), int(ds.Columns), int(getattr(ds, "NumberOfFrames", 1) or 1))
        except Exception:  # as for NIfTI: the reader then reports the broken file itself
            return None
    return None


def check_pixels(path: Path, kind: str, max_pixels: int, name: str) -> None:
    """Raise 413 when ``path`` declares more pixels than ``max_pixels`` (a volume: more than
    ``VOLUME_FACTOR`` times that many voxels)."""
    shape = header_shape(path, kind)
    if not shape:
        return
    count = prod(shape)
    is_volume = kind == "nifti" or (len(shape) > 2 and shape[2] > 1)
    limit = max_pixels * (VOLUME_FACTOR if is_volume else 1)
    if count > limit:
        what = "voxels" if is_volume else "pixels"
        size = " x ".join(str(n) for n in shape if n > 1)
        raise UploadError(
            413,
            f"{name}: {size} = {_megapixels(count)} {what}; this server takes at most "
            f"{_megapixels(limit)} (serve --max-pixels)",
        )


class HeavyWork:
    """At most ``limit`` requests decode and infer at once; others wait up to ``wait`` s."""

    def __init__(self, limit: int = DEFAULT_MAX_CONCURRENT, wait: float = WAIT_SECONDS) -> None:
        self.limit = limit
        self.wait = wait
        self._slots = threading.BoundedSemaphore(limit)

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the slots for the block; 503 when none frees up in time."""
        if not self._slots.acquire(timeout=self.wait):
            raise UploadError(
                503, f"server busy: {self.limit} large requests running; try again shortly"
            )
        try:
            yield
        finally:
            self._slots.release()
