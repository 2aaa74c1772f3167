"""Synthetic datasets that differ by source, as public sets differ by scanner and export.

Every source holds the same kinds of phantoms (:mod:`braintumor.data.synth_2d`) but renders
them through its own "acquisition and export" style: a gamma (contrast), a gain and offset
(windowing), a smooth bias field and Gaussian noise. A model trained on one style meets a
domain shift on another, which is what leave-one-source-out measures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from braintumor.atomic import atomic_path
from braintumor.data.synth_2d import KINDS, make_slice
from braintumor.errors import DataError


@dataclass(frozen=True)
class SourceStyle:
    """How one source renders a slice: ``out = offset + gain * (bias * x) ** gamma + noise``,
    with ``x`` in [0, 1], a linear bias ramp of log-amplitude ``bias`` across the image at
    angle ``bias_angle`` (radians), and noise of standard deviation ``noise``."""

    gamma: float = 1.0
    gain: float = 1.0
    offset: float = 0.0
    bias: float = 0.0
    bias_angle: float = 0.0
    noise: float = 0.0


STYLES: dict[str, SourceStyle] = {
    "reference": SourceStyle(),
    "dark": SourceStyle(gamma=2.4, gain=0.55, bias=0.9, bias_angle=0.6, noise=0.03),
    "washed": SourceStyle(gamma=0.45, gain=0.55, offset=0.3, bias=0.7, bias_angle=2.2, noise=0.05),
    "noisy": SourceStyle(gamma=1.3, gain=0.9, bias=1.2, bias_angle=4.0, noise=0.09),
}
DEFAULT_STYLES = ("reference", "dark", "washed")


def apply_style(image: np.ndarray, style: SourceStyle, rng: np.random.Generator) -> np.ndarray:
    """Render a uint8 slice in ``style`` (background stays dark before the offset)."""
    x = image.astype(np.float64) / 255.0
    h, w = x.shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w) - 0.5
    ramp = np.cos(style.bias_angle) * xx + np.sin(style.bias_angle) * yy
    x = np.clip(x * np.exp(style.bias * ramp), 0.0, 1.0) ** style.gamma
    x = style.offset + style.gain * x + style.noise * rng.standard_normal(x.shape)
    return np.round(255.0 * np.clip(x, 0.0, 1.0)).astype(np.uint8)


def write_source_shift_datasets(
    out: Path,
    styles: Sequence[str] = DEFAULT_STYLES,
    n_per_class: int = 40,
    size: int = 128,
    seed: int = 0,
    kinds: Sequence[str] = KINDS,
) -> list[Path]:
    """Write one class-folder dataset per style: ``out/source-<i>-<style>/<class>/*.png``.

    Sources hold different phantoms (their own random streams) of the same ``kinds``.
    Returns the source folders in order.
    """
    unknown = [s for s in styles if s not in STYLES]
    if unknown:
        raise DataError(f"unknown source style {unknown[0]!r}; known: {', '.join(STYLES)}")
    bad = [k for k in kinds if k not in KINDS]
    if bad or len(set(kinds)) < 2:
        raise DataError(f"source-shift datasets need two or more of {KINDS}, not {list(kinds)}")
    if n_per_class < 1:
        raise DataError(f"synthetic dataset: n must be at least 1, got {n_per_class}")
    folders = []
    for s, name in enumerate(styles):
        folder = Path(out) / f"source-{s + 1}-{name}"
        for kind in kinds:
            for i in range(n_per_class):
                rng = np.random.default_rng([seed, 1000 + s, KINDS.index(kind), i])
                image, _ = make_slice(kind, size, rng)
                styled = apply_style(image, STYLES[name], rng)
                with atomic_path(folder / kind / f"{kind}_{i:04d}.png") as tmp:
                    Image.fromarray(styled).save(tmp, format="PNG")
        folders.append(folder)
    return folders
