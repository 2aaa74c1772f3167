"""Tumour localisation from a mask: connected components, boxes, contours, areas, overlays."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
from skimage.measure import label, regionprops

from braintumor.errors import DataError


@dataclass
class Component:
    """One connected tumour region (8-connectivity).

    ``bbox`` is (x0, y0, x1, y1) with x1/y1 exclusive; ``centroid`` is (x, y) in pixels;
    ``contour`` is the outer boundary as (x, y) pixel points.
    """

    area_px: int
    area_mm2: float | None
    bbox: tuple[int, int, int, int]
    centroid: tuple[float, float]
    contour: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class Localization:
    """Every component of a mask, largest first, and the totals over the kept components."""

    components: list[Component]
    total_area_px: int
    total_area_mm2: float | None
    spacing: tuple[float, float] | None = None


def _check_mask(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2:
        raise DataError(f"localize: the mask must be 2-D (H, W), got shape {m.shape}")
    return m.astype(bool)


def localize(
    mask: np.ndarray, spacing: Sequence[float] | None = None, min_area: int = 0
) -> Localization:
    """Find the tumour's connected components in a 2-D mask and measure them.

    ``spacing`` is the pixel size in mm as (row, column), i.e. (dy, dx); with it areas are also
    given in mm². Components smaller than ``min_area`` pixels are dropped.
    """
    m = _check_mask(mask)
    sp: tuple[float, float] | None = None
    if spacing is not None:
        if len(spacing) != 2 or not all(float(s) > 0 for s in spacing):
            raise DataError(f"localize: spacing must be two positive numbers, got {spacing}")
        sp = (float(spacing[0]), float(spacing[1]))
    pixel_mm2 = sp[0] * sp[1] if sp is not None else None
    labelled = label(m, connectivity=2)
    components: list[Component] = []
    for region in regionprops(labelled):
        if region.area < min_area:
            continue
        r0, c0, r1, c1 = region.bbox
        crop = (labelled[r0:r1, c0:c1] == region.label).astype(np.uint8)
        # Outer contour traced on the component itself. This is the boundary that Canny edges
        # followed by findContours would give on a binary mask, without the edge step.
        found, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        outline = max(found, key=cv2.contourArea) if found else np.empty((0, 1, 2), int)
        contour = [(int(x) + c0, int(y) + r0) for x, y in outline[:, 0, :]]
        cy, cx = region.centroid
        area = int(region.area)
        components.append(
            Component(
                area_px=area,
                area_mm2=area * pixel_mm2 if pixel_mm2 is not None else None,
                bbox=(int(c0), int(r0), int(c1), int(r1)),
                centroid=(float(cx), float(cy)),
                contour=contour,
            )
        )
    components.sort(key=lambda c: c.area_px, reverse=True)
    total = sum(c.area_px for c in components)
    return Localization(
        components=components,
        total_area_px=total,
        total_area_mm2=total * pixel_mm2 if pixel_mm2 is not None else None,
        spacing=sp,
    )


def to_json(localization: Localization) -> dict:
    """A JSON-serialisable dict (tuples become lists)."""
    out = asdict(localization)
    out["n_components"] = len(localization.components)
    for comp in out["components"]:
        comp["bbox"] = list(comp["bbox"])
        comp["centroid"] = list(comp["centroid"])
        comp["contour"] = [list(p) for p in comp["contour"]]
    if out["spacing"] is not None:
        out["spacing"] = list(out["spacing"])
    return out


def _to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Grey or RGB image of any numeric type -> uint8 RGB, min-max scaled when not uint8."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise DataError(f"overlay: the image must be (H, W) or (H, W, 3), got {img.shape}")
    if img.dtype != np.uint8:
        f = img.astype(np.float64)
        if not np.isfinite(f).all():
            raise DataError("overlay: the image contains NaN or infinity")
        lo, hi = float(f.min()), float(f.max())
        f = (f - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(f)
        img = np.clip(np.rint(f), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img)


def draw_overlay(
    image: np.ndarray,
    mask: np.ndarray,
    localization: Localization | None = None,
    color: tuple[int, int, int] = (255, 0, 0),
    alpha: float = 0.3,
    boxes: bool = True,
) -> np.ndarray:
    """The image as uint8 RGB with the mask tinted, its outline drawn, and a box per component.

    ``localization`` defaults to :func:`localize` of ``mask``; colours are RGB; ``boxes=False``
    leaves out the bounding boxes.
    """
    m = _check_mask(mask)
    rgb = _to_rgb_uint8(image)
    if rgb.shape[:2] != m.shape:
        raise DataError(f"overlay: image {rgb.shape[:2]} and mask {m.shape} differ in size")
    if not 0.0 <= alpha <= 1.0:
        raise DataError(f"overlay: alpha must be in [0, 1], got {alpha}")
    loc = localization if localization is not None else localize(m)
    out = rgb.copy()
    tint = np.array(color, dtype=np.float64)
    out[m] = np.clip(np.rint((1 - alpha) * rgb[m] + alpha * tint), 0, 255).astype(np.uint8)
    col = tuple(int(c) for c in color)
    for comp in loc.components:
        if comp.contour:
            pts = np.array(comp.contour, dtype=np.int32).reshape(-1, 1, 2)
            cv2.drawContours(out, [pts], -1, col, thickness=1)
        if not boxes:
            continue
        x0, y0, x1, y1 = comp.bbox
        # Box drawn one pixel outside the component so it does not hide the outline.
        cv2.rectangle(out, (max(x0 - 1, 0), max(y0 - 1, 0)), (x1, y1), col, thickness=1)
    return out
