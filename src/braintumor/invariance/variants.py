"""Controlled re-exports of a slice: the same anatomy, saved the way another converter would.

Each :class:`Variant` takes a uint8 grey slice (and its tumour mask, if any) and writes one
image file, returning the mask moved the same way for geometric variants. Variants write real
files so that decoding (JPEG, 16-bit PNG, palette PNG...) is part of what is measured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

Export = Callable[[np.ndarray, np.ndarray | None, Path], tuple[Path, np.ndarray | None]]

#: Grey level a "dark grey background" export gives the pixels around the head.
DARK_GREY = 40


@dataclass(frozen=True)
class Variant:
    """One way of re-exporting a slice; ``family`` is intensity, encoding or geometry."""

    name: str
    family: str
    export: Export

    def __call__(
        self, grey: np.ndarray, mask: np.ndarray | None, stem: Path
    ) -> tuple[Path, np.ndarray | None]:
        """Write ``grey`` (uint8 (H, W)) re-exported to ``stem`` + suffix; the moved mask."""
        return self.export(grey, mask, stem)


def _png(array: np.ndarray, stem: Path, mode: str | None = None) -> Path:
    path = stem.with_suffix(".png")
    image = Image.fromarray(np.ascontiguousarray(array))
    if mode == "P":
        image = image.convert("RGB").quantize(colors=256)
    elif mode is not None:
        image = image.convert(mode)
    image.save(path, format="PNG")
    return path


def _jpeg(array: np.ndarray, stem: Path, quality: int) -> Path:
    path = stem.with_suffix(".jpg")
    Image.fromarray(array).save(path, format="JPEG", quality=quality)
    return path


def _lut(grey: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply an intensity map given on [0, 1] through a 256-entry lookup table."""
    levels = np.arange(256, dtype=np.float64) / 255.0
    table = np.clip(np.round(fn(levels) * 255.0), 0, 255).astype(np.uint8)
    return table[grey]


def regamma(grey: np.ndarray, gamma: float) -> np.ndarray:
    """The uint8 slice as a converter with another gamma would have written it."""
    return _lut(grey, lambda v: v**gamma)


def _intensity(fn: Callable[[np.ndarray], np.ndarray]) -> Export:
    def export(grey: np.ndarray, mask: np.ndarray | None, stem: Path):
        return _png(_lut(grey, fn), stem), mask

    return export


def _window(low_pct: float, high_pct: float) -> Export:
    """Clip at the slice's own percentiles and stretch to the full range."""

    def export(grey: np.ndarray, mask: np.ndarray | None, stem: Path):
        low, high = np.percentile(grey, [low_pct, high_pct])
        span = max(float(high - low), 1.0)
        return _png(_lut(grey, lambda v: (v * 255.0 - low) / span), stem), mask

    return export


def _minmax(grey: np.ndarray, mask: np.ndarray | None, stem: Path):
    low, high = int(grey.min()), int(grey.max())
    return _png(_lut(grey, lambda v: (v * 255.0 - low) / max(high - low, 1)), stem), mask


def _dark_background(grey: np.ndarray, mask: np.ndarray | None, stem: Path):
    """The black level lifted to dark grey: black becomes ``DARK_GREY``, white stays white."""
    return _png(_lut(grey, lambda v: (DARK_GREY + v * (255.0 - DARK_GREY)) / 255.0), stem), mask


def _encode(write: Callable[[np.ndarray, Path], Path]) -> Export:
    def export(grey: np.ndarray, mask: np.ndarray | None, stem: Path):
        return write(grey, stem), mask

    return export


def _resample(longer_side: int) -> Export:
    """Resize so that the longer side is ``longer_side`` (aspect kept); the mask follows."""

    def export(grey: np.ndarray, mask: np.ndarray | None, stem: Path):
        height, width = grey.shape
        scale = longer_side / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        filt = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC
        out = np.asarray(Image.fromarray(grey).resize(size, filt))
        moved = None
        if mask is not None:
            moved = np.asarray(Image.fromarray(mask.astype(np.uint8)).resize(size, 0)).astype(bool)
        return _png(out, stem), moved

    return export


def _fov(fraction: float) -> Export:
    """Widen (``fraction`` > 0: black padding) or narrow (< 0: crop) the field of view by
    ``|fraction|`` of each side's length, split between both ends."""

    def export(grey: np.ndarray, mask: np.ndarray | None, stem: Path):
        height, width = grey.shape
        dy, dx = round(abs(fraction) * height / 2), round(abs(fraction) * width / 2)
        if fraction > 0:
            out = np.pad(grey, ((dy, dy), (dx, dx)))
            moved = None if mask is None else np.pad(mask, ((dy, dy), (dx, dx)))
        else:
            out = grey[dy : height - dy, dx : width - dx]
            moved = None if mask is None else mask[dy : height - dy, dx : width - dx]
        return _png(np.ascontiguousarray(out), stem), moved

    return export


def _rotate(degrees: float) -> Export:
    def export(grey: np.ndarray, mask: np.ndarray | None, stem: Path):
        height, width = grey.shape
        matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), degrees, 1.0)
        out = cv2.warpAffine(grey, matrix, (width, height), flags=cv2.INTER_LINEAR)
        moved = None
        if mask is not None:
            moved = cv2.warpAffine(
                mask.astype(np.uint8), matrix, (width, height), flags=cv2.INTER_NEAREST
            ).astype(bool)
        return _png(out, stem), moved

    return export


def _darker(grey: np.ndarray) -> np.ndarray:
    """The darker export of the benchmark: the slice mapped to the lower half of the range."""
    return _lut(grey, lambda v: 0.5 * v)


def _darker_jpeg_512(grey: np.ndarray, mask: np.ndarray | None, stem: Path):
    """Another converter at once: 512 px, darker window, JPEG quality 75."""
    path, moved = _resample(512)(_darker(grey), mask, stem)
    array = np.asarray(Image.open(path))
    path.unlink()
    return _jpeg(array, stem, 75), moved


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("gamma-0.5", "intensity", _intensity(lambda v: v**0.5)),
        Variant("gamma-0.7", "intensity", _intensity(lambda v: v**0.7)),
        Variant("gamma-1.4", "intensity", _intensity(lambda v: v**1.4)),
        Variant("gamma-2.0", "intensity", _intensity(lambda v: v**2.0)),
        Variant("window-p1-99", "intensity", _window(1, 99)),
        Variant("window-p5-95", "intensity", _window(5, 95)),
        Variant("darker", "intensity", _intensity(lambda v: 0.5 * v)),
        Variant("minmax-scaling", "intensity", _minmax),
        Variant("fixed-scaling-0.7", "intensity", _intensity(lambda v: 0.7 * v)),
        Variant("background-dark-grey", "intensity", _dark_background),
        Variant("jpeg-95", "encoding", _encode(lambda a, s: _jpeg(a, s, 95))),
        Variant("jpeg-75", "encoding", _encode(lambda a, s: _jpeg(a, s, 75))),
        Variant("jpeg-50", "encoding", _encode(lambda a, s: _jpeg(a, s, 50))),
        Variant("png-8bit", "encoding", _encode(_png)),
        Variant("png-16bit", "encoding", _encode(lambda a, s: _png(a.astype(np.uint16) * 257, s))),
        Variant("rgb", "encoding", _encode(lambda a, s: _png(a, s, "RGB"))),
        Variant("palette", "encoding", _encode(lambda a, s: _png(a, s, "P"))),
        Variant("resample-256", "geometry", _resample(256)),
        Variant("resample-512", "geometry", _resample(512)),
        Variant("fov-pad-10", "geometry", _fov(0.10)),
        Variant("fov-pad-20", "geometry", _fov(0.20)),
        Variant("fov-crop-10", "geometry", _fov(-0.10)),
        Variant("fov-crop-20", "geometry", _fov(-0.20)),
        Variant("rotate+5", "geometry", _rotate(5)),
        Variant("rotate-10", "geometry", _rotate(-10)),
        Variant("darker-jpeg75-512", "combined", _darker_jpeg_512),
    )
}

#: The variants of the quick check: gamma and JPEG.
REDUCED = ("gamma-0.5", "gamma-2.0", "jpeg-75", "jpeg-50")


def select_variants(names: list[str] | None) -> list[Variant]:
    """The named variants (all when ``names`` is empty), in the table's order."""
    if not names:
        return list(VARIANTS.values())
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        from braintumor.errors import DataError

        raise DataError(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    return [VARIANTS[n] for n in names]
