"""Synthetic 2D brain MRI slices (T1 contrast-enhanced look) with one tumour kind each.

A phantom is drawn in *head coordinates* (u to the patient's side, v downwards, the brain an
ellipse of semi-axes ``a`` x ``b``) and then posed into the image by a random scale, rotation
and shift. The healthy anatomy is drawn first; the tumour is painted onto a copy. The tumour
image's grey levels are then replaced rank for rank by those of the healthy image (histogram
matching), so every global intensity statistic (mean, std, percentiles, histogram) is that of a
tumour-free brain and cannot tell the classes apart: only where the bright or dark pixels lie
does. No imaging library offers such phantoms, hence this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from braintumor.errors import DataError

KINDS: tuple[str, ...] = ("glioma", "meningioma", "pituitary", "no_tumor")
TUMOUR_KINDS: tuple[str, ...] = ("glioma", "meningioma", "pituitary")

# Relative T1ce grey levels before bias, noise and the global contrast change.
_SCALP, _BONE, _CSF, _GREY, _WHITE = 0.80, 0.08, 0.12, 0.42, 0.60


@dataclass(frozen=True)
class SyntheticSlice:
    """One phantom: the image, the tumour mask, and where the brain is.

    ``u`` and ``v`` are each pixel's head coordinates (u = 0 on the midline, v > 0 below the
    centre of the brain ellipse ``(u/a)^2 + (v/b)^2 < 1``); ``brain`` is that ellipse.
    """

    image: np.ndarray  # uint8 HxW
    mask: np.ndarray  # uint8 HxW, 1 = tumour
    brain: np.ndarray  # bool HxW
    u: np.ndarray  # float HxW
    v: np.ndarray  # float HxW
    axes: tuple[float, float]  # (a, b) brain semi-axes in head units


def _ramp(inside_distance: np.ndarray, width: float) -> np.ndarray:
    """Anti-aliased step: 1 well inside (distance > 0), 0 outside, linear over one pixel."""
    return np.clip(inside_distance / width + 0.5, 0.0, 1.0)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise scaled to unit standard deviation."""
    field = gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return field / (field.std() + 1e-12)


def _head_grid(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """Random pose: head coordinates of every pixel and one pixel's width in head units."""
    scale = rng.uniform(0.76, 0.92)
    angle = np.deg2rad(rng.uniform(-18.0, 18.0))
    shift = rng.uniform(-0.05, 0.05, size=2)
    coords = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    y, x = np.meshgrid(coords, coords, indexing="ij")
    x, y = x - shift[0], y - shift[1]
    cos, sin = np.cos(angle), np.sin(angle)
    u = (cos * x + sin * y) / scale
    v = (-sin * x + cos * y) / scale
    return u, v, 2.0 / (size * scale)


def _ventricles(u: np.ndarray, v: np.ndarray, rng: np.random.Generator, px: float) -> np.ndarray:
    """Two mirrored crescents beside the midline (lateral ventricles), soft 0..1."""
    width = rng.uniform(0.07, 0.10)
    height = rng.uniform(0.22, 0.30)
    offset = rng.uniform(0.09, 0.13)
    v0 = rng.uniform(-0.12, 0.0)
    out = np.zeros_like(u)
    for side in (-1.0, 1.0):
        du = u - side * offset
        outer = 1.0 - np.hypot(du / width, (v - v0) / height)
        # The bite is shifted away from the midline, so each crescent opens outwards.
        inner = 1.0 - np.hypot((du - side * 0.6 * width) / width, (v - v0) / (0.8 * height))
        crescent = _ramp(outer * width, px) * (1.0 - _ramp(inner * width, px))
        out = np.maximum(out, crescent)
    return out


def _healthy(
    u: np.ndarray, v: np.ndarray, a: float, b: float, px: float, rng: np.random.Generator
) -> np.ndarray:
    """Tumour-free anatomy: scalp, skull, CSF rim, grey/white texture, ventricles."""
    rho = np.hypot(u / a, v / b)  # elliptical radius, 1 on the brain surface
    edge = px / min(a, b)  # one pixel in rho units
    size = u.shape[0]
    img = np.zeros_like(u)
    img += _SCALP * _ramp(1.14 - rho, edge)
    img += (_BONE - _SCALP) * _ramp(1.07 - rho, edge)
    img += (_CSF - _BONE) * _ramp(1.025 - rho, edge)
    brain = _ramp(1.0 - rho, edge)
    # White matter where smooth noise is high and away from the cortex.
    field = _smooth_noise(rng, u.shape, sigma=size / 22.0)
    field += 1.6 * (0.75 - rho)
    white = 1.0 / (1.0 + np.exp(-4.0 * field))
    fine = 0.03 * _smooth_noise(rng, u.shape, sigma=1.2)
    tissue = _GREY + (_WHITE - _GREY) * white + fine
    img += brain * (tissue - _CSF)
    vent = _ventricles(u, v, rng, px)
    return img + vent * (_CSF - img) * brain


def _glioma(
    u: np.ndarray, v: np.ndarray, a: float, b: float, px: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Intra-axial: necrotic centre, irregular enhancing ring, oedema halo.

    Returns (core 0..1, ring 0..1, necrosis 0..1, oedema 0..1).
    """
    r0 = np.sqrt(rng.uniform(0.06, 0.18) * a * b)
    side = rng.choice([-1.0, 1.0])
    for _ in range(200):
        cu, cv = side * rng.uniform(0.12, 0.6), rng.uniform(-0.55, 0.45)
        room = (1.0 - np.hypot(cu / a, cv / b)) * min(a, b)
        if room > 1.2 * r0 and side * cu > 0.8 * r0:
            break
        r0 *= 0.98
    du, dv = u - cu, v - cv
    theta = np.arctan2(dv, du)
    radius = np.ones_like(u)
    for k in range(2, 7):  # low harmonics: a lobulated, irregular border
        radius += rng.uniform(0.0, 0.28 / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    radius *= r0
    dist = np.hypot(du, dv)
    core = _ramp(radius - dist, px)
    thickness = rng.uniform(0.25, 0.45)
    necrosis = _ramp((1.0 - thickness) * radius - dist, px)
    ring = core - necrosis
    halo = rng.uniform(1.4, 1.9)
    oedema = np.clip((halo * radius - dist) / ((halo - 1.0) * radius), 0.0, 1.0) - core
    return core, ring, necrosis, np.clip(oedema, 0.0, 1.0)


def _meningioma(
    u: np.ndarray, v: np.ndarray, a: float, b: float, px: float, rng: np.random.Generator
) -> np.ndarray:
    """Extra-axial: a round mass on the inner skull surface, pushing into the brain."""
    r0 = np.sqrt(rng.uniform(0.08, 0.24) * a * b)
    phi = rng.uniform(0.0, 2.0 * np.pi)
    pu, pv = a * np.cos(phi), b * np.sin(phi)
    normal = np.array([pu / a**2, pv / b**2])
    normal /= np.linalg.norm(normal)
    depth = r0 * rng.uniform(0.35, 0.65)  # how far the centre sits inside the brain
    cu, cv = pu - depth * normal[0], pv - depth * normal[1]
    disc = _ramp(r0 * (1.0 + 0.04 * rng.standard_normal()) - np.hypot(u - cu, v - cv), px)
    inner_skull = _ramp(1.025 - np.hypot(u / a, v / b), px / min(a, b))
    return disc * inner_skull


def _pituitary(
    u: np.ndarray, v: np.ndarray, a: float, b: float, px: float, rng: np.random.Generator
) -> np.ndarray:
    """Small, midline, low: at the sella below the centre of the brain."""
    r0 = np.sqrt(rng.uniform(0.006, 0.02) * a * b)
    cu, cv = rng.normal(0.0, 0.015), b * rng.uniform(0.42, 0.6)
    wide = rng.uniform(1.0, 1.4)
    dist = np.hypot((u - cu) / wide, v - cv)
    return _ramp(r0 - dist, px)


def _match_histogram(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Give ``image`` exactly the grey levels of ``reference``, keeping its pixel ranks."""
    order = np.argsort(image, axis=None, kind="stable")
    out = np.empty(image.size)
    out[order] = np.sort(reference, axis=None)
    return out.reshape(image.shape)


def render_slice(kind: str, size: int, rng: np.random.Generator) -> SyntheticSlice:
    """Draw one phantom of ``kind`` (see ``KINDS``) as a ``size`` x ``size`` slice."""
    if kind not in KINDS:
        raise DataError(f"unknown synthetic slice kind {kind!r}; expected one of {KINDS}")
    if size < 32:
        raise DataError(f"synthetic slice size {size} is too small; use at least 32 pixels")
    u, v, px = _head_grid(size, rng)
    a, b = rng.uniform(0.66, 0.74), rng.uniform(0.82, 0.88)
    healthy = _healthy(u, v, a, b, px, rng)
    sick = healthy.copy()
    mask = np.zeros(u.shape, dtype=np.uint8)
    texture = 0.03 * _smooth_noise(rng, u.shape, sigma=1.5)
    if kind == "glioma":
        core, ring, necrosis, oedema = _glioma(u, v, a, b, px, rng)
        oedema_gain = rng.choice([0.72, 1.22])  # hypo- or hyperintense halo
        sick = sick * (1.0 + (oedema_gain - 1.0) * oedema)
        enhancing = rng.uniform(0.78, 0.9) + texture
        necrotic = rng.uniform(0.16, 0.26) + texture
        sick = sick * (1.0 - core) + ring * enhancing + necrosis * necrotic
        mask = (core > 0.5).astype(np.uint8)
    elif kind == "meningioma":
        mass = _meningioma(u, v, a, b, px, rng)
        sick = sick * (1.0 - mass) + mass * (rng.uniform(0.8, 0.9) + 0.5 * texture)
        mask = (mass > 0.5).astype(np.uint8)
    elif kind == "pituitary":
        mass = _pituitary(u, v, a, b, px, rng)
        sick = sick * (1.0 - mass) + mass * (rng.uniform(0.7, 0.85) + texture)
        mask = (mass > 0.5).astype(np.uint8)
    # Smooth multiplicative bias field (coil sensitivity), then Rician (magnitude) noise.
    c = rng.normal(0.0, 0.18, size=4)
    bias = np.exp(c[0] * u + c[1] * v + c[2] * u * v + c[3] * (u**2 - v**2))
    sigma = rng.uniform(0.015, 0.04)
    n1, n2 = sigma * rng.standard_normal((2, *u.shape))
    healthy_mr = np.hypot(healthy * bias + n1, n2)
    sick_mr = np.hypot(sick * bias + n1, n2)
    matched = _match_histogram(sick_mr, healthy_mr)
    # Global contrast: random gamma and window, independent of the class.
    top = np.percentile(healthy_mr, 99.7)
    gamma = np.exp(rng.uniform(np.log(0.7), np.log(1.4)))
    gain = rng.uniform(0.8, 1.0)
    out = gain * np.clip(matched / top, 0.0, 1.0) ** gamma
    image = np.round(255.0 * out).astype(np.uint8)
    brain = np.hypot(u / a, v / b) < 1.0
    return SyntheticSlice(image=image, mask=mask, brain=brain, u=u, v=v, axes=(a, b))


def make_slice(kind: str, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic slice of ``kind``: (uint8 image HxW, uint8 mask HxW with 0/1).

    ``kind`` is one of glioma, meningioma, pituitary, no_tumor; the mask is empty exactly for
    no_tumor. The result depends only on ``kind``, ``size`` and the state of ``rng``.
    """
    phantom = render_slice(kind, size, rng)
    return phantom.image, phantom.mask
