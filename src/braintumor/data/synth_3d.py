"""Synthetic 3D multimodal brain MRI cases (T1, T1ce, T2, FLAIR) with BraTS labels.

Each voxel holds soft fractions of a few tissues (scalp, bone, CSF, grey and white matter,
ventricles, and the tumour's necrotic core, oedema and enhancing rim); each modality gives every
tissue its grey level, as in real BraTS scans:

=============  ======  ======  ======  ======
tissue         T1      T1ce    T2      FLAIR
=============  ======  ======  ======  ======
CSF            dark    dark    bright  dark
grey matter    mid     mid     mid     mid
white matter   bright  bright  darker  darker
necrosis       dark    dark    bright  mid
oedema         darker  darker  bright  bright
enhancing rim  mid     bright  mid     mid
=============  ======  ======  ======  ======

Then a smooth multiplicative bias field and Rician noise per modality. Labels: 0 background,
1 necrotic core, 2 oedema, 4 enhancing tumour. No imaging library offers such phantoms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from braintumor.errors import DataError

MODALITIES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")

# Grey level of each tissue per modality (rows follow _TISSUES).
_TISSUES: tuple[str, ...] = (
    "scalp", "bone", "csf", "grey", "white", "necrosis", "oedema", "enhancing",
)  # fmt: skip
_LEVELS: dict[str, tuple[float, ...]] = {
    "t1": (0.85, 0.05, 0.12, 0.45, 0.65, 0.16, 0.28, 0.47),
    "t1ce": (0.85, 0.05, 0.12, 0.45, 0.65, 0.14, 0.28, 1.10),
    "t2": (0.60, 0.05, 0.95, 0.55, 0.40, 0.85, 0.90, 0.58),
    "flair": (0.50, 0.05, 0.08, 0.50, 0.40, 0.55, 0.92, 0.62),
}


@dataclass(frozen=True)
class SyntheticCase:
    """One 3D phantom: modalities, BraTS labels, and the brain and CSF (ventricle) masks."""

    images: dict[str, np.ndarray]  # float32 XxYxZ per modality
    labels: np.ndarray  # uint8 XxYxZ in {0, 1, 2, 4}
    brain: np.ndarray  # bool, inside the brain surface
    ventricles: np.ndarray  # bool, mostly CSF-filled lateral ventricles


def _ramp(inside_distance: np.ndarray, width: float) -> np.ndarray:
    """Anti-aliased step: 1 inside (distance > 0), 0 outside, linear over one voxel."""
    return np.clip(inside_distance / width + 0.5, 0.0, 1.0)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise scaled to unit standard deviation."""
    field = gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return field / (field.std() + 1e-12)


def _grid(
    shape: tuple[int, int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Head coordinates (u left-right, v front-back, w up-down) of every voxel, posed at random.

    One unit is half the smaller in-plane side; returns also one voxel's width in units.
    """
    unit = min(shape[0], shape[1]) / 2.0
    scale = rng.uniform(0.86, 0.96)
    angle = np.deg2rad(rng.uniform(-12.0, 12.0))
    shift = rng.uniform(-0.04, 0.04, size=3)
    axes = [(np.arange(n) + 0.5 - n / 2.0) / unit - s for n, s in zip(shape, shift, strict=True)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    cos, sin = np.cos(angle), np.sin(angle)
    u = (cos * x + sin * y) / scale
    v = (-sin * x + cos * y) / scale
    return u, v, z / scale, 1.0 / (unit * scale)


def _lobes(direction: np.ndarray, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """Radius factor as a smooth random function of direction: a lobulated, star-shaped blob.

    A random cubic polynomial of the unit direction vector (3 x ... array), exponentiated.
    """
    linear = np.einsum("i,i...->...", rng.normal(size=3), direction)
    quadratic = np.einsum("ij,i...,j...->...", rng.normal(size=(3, 3)), direction, direction)
    cubic = np.einsum(
        "ijk,i...,j...,k...->...", rng.normal(size=(3, 3, 3)), direction, direction, direction
    )
    return np.exp(np.clip(amplitude * (linear + quadratic + cubic) / 3.0, -0.4, 0.4))


def _tumour(
    u: np.ndarray,
    v: np.ndarray,
    w: np.ndarray,
    axes: tuple[float, float, float],
    px: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A glioma in one hemisphere: soft (necrosis, enhancing rim, oedema) fractions."""
    a, b, c = axes
    r_core = rng.uniform(0.3, 0.42) * min(a, b, c)
    side = rng.choice([-1.0, 1.0])
    for _ in range(200):
        centre = np.array([side * rng.uniform(0.2, 0.55), rng.uniform(-0.5, 0.5), 0.0])
        centre[2] = rng.uniform(-0.35, 0.35) * c
        room = (1.0 - np.linalg.norm(centre / np.array(axes))) * min(axes)
        if room > 1.2 * r_core and side * centre[0] > 1.1 * r_core:
            break
        r_core *= 0.98
    offsets = (u - centre[0], v - centre[1], w - centre[2])
    dist = np.sqrt(sum(o**2 for o in offsets))
    direction = np.stack(offsets) / np.maximum(dist, 1e-9)
    core = _ramp(r_core * _lobes(direction, 0.25, rng) - dist, px)
    necrosis = _ramp(rng.uniform(0.45, 0.65) * r_core * _lobes(direction, 0.1, rng) - dist, px)
    reach = rng.uniform(1.4, 1.8) * r_core * _lobes(direction, 0.3, rng)
    # The falx stops oedema at the midline: it stays in the tumour's hemisphere.
    oedema = np.minimum(_ramp(reach - dist, px), _ramp(side * u, px)) - core
    brain = _ramp(1.0 - np.sqrt((u / a) ** 2 + (v / b) ** 2 + (w / c) ** 2), px / min(axes))
    return necrosis * brain, (core - necrosis) * brain, np.clip(oedema, 0.0, 1.0) * brain


def render_case(shape: tuple[int, int, int], rng: np.random.Generator) -> SyntheticCase:
    """Draw one multimodal phantom with a glioma; see the module docstring for the contrasts."""
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 16:
        raise DataError(f"synthetic case shape {shape} must be three sides of at least 16 voxels")
    u, v, w, px = _grid(shape, rng)
    axes = (rng.uniform(0.64, 0.7), rng.uniform(0.78, 0.84), rng.uniform(0.62, 0.7))
    a, b, c = axes
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2 + (w / c) ** 2)
    edge = px / min(axes)
    head = _ramp(1.14 - rho, edge)
    inner_bone = _ramp(1.07 - rho, edge)
    inner_skull = _ramp(1.025 - rho, edge)
    brain = _ramp(1.0 - rho, edge)
    field = _smooth_noise(rng, shape, sigma=shape[0] / 14.0) + 1.6 * (0.75 - rho)
    white = brain / (1.0 + np.exp(-4.0 * field))
    grey = brain - white
    vent = np.zeros(shape)
    for s in (-1.0, 1.0):
        r = np.sqrt(((u - s * 0.11) / 0.09) ** 2 + ((v + 0.05) / 0.3) ** 2 + (w / 0.2) ** 2)
        vent = np.maximum(vent, _ramp(1.0 - r, px / 0.09))
    vent *= brain
    necrosis, enhancing, oedema = _tumour(u, v, w, axes, px, rng)
    vent *= 1.0 - np.clip(necrosis + enhancing + oedema, 0.0, 1.0)
    # Tumour and ventricles displace normal tissue; oedema keeps some of it (it infiltrates).
    keep = 1.0 - np.clip(necrosis + enhancing + vent + 0.6 * oedema, 0.0, 1.0)
    fractions = {
        "scalp": head - inner_bone,
        "bone": inner_bone - inner_skull,
        "csf": inner_skull - brain + vent,
        "grey": grey * keep,
        "white": white * keep,
        "necrosis": necrosis,
        "oedema": 0.6 * oedema,
        "enhancing": enhancing,
    }
    fine = 0.03 * _smooth_noise(rng, shape, sigma=1.0)
    images: dict[str, np.ndarray] = {}
    for name in MODALITIES:
        level = sum(lv * fractions[t] for lv, t in zip(_LEVELS[name], _TISSUES, strict=True))
        coef = rng.normal(0.0, 0.15, size=4)
        bias = np.exp(coef[0] * u + coef[1] * v + coef[2] * w + coef[3] * u * v)
        sigma = rng.uniform(0.015, 0.035)
        n1, n2 = sigma * rng.standard_normal((2, *shape))
        signal = (level + fine * brain) * bias
        images[name] = np.hypot(signal + n1, n2).astype(np.float32)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[oedema > 0.5] = 2
    labels[enhancing + necrosis > 0.5] = 4
    labels[necrosis > 0.5] = 1
    return SyntheticCase(images=images, labels=labels, brain=rho < 1.0, ventricles=vent > 0.5)


def make_case(
    shape: tuple[int, int, int] = (64, 64, 48), rng: np.random.Generator | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One synthetic BraTS-like case: ({t1, t1ce, t2, flair: float32 volume}, uint8 labels).

    Labels follow BraTS: 0 background, 1 necrotic core, 2 oedema, 4 enhancing tumour. The
    result depends only on ``shape`` and the state of ``rng`` (a fresh ``default_rng(0)`` when
    none is given).
    """
    case = render_case(shape, rng if rng is not None else np.random.default_rng(0))
    return case.images, case.labels
