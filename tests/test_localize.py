"""Localisation: components, areas, boxes, contours, spacing, overlays."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from braintumor.errors import DataError
from braintumor.localize import draw_overlay, localize, to_json


def _two_blobs() -> np.ndarray:
    mask = np.zeros((64, 80), bool)
    mask[10:20, 5:25] = True  # 10 rows x 20 cols = 200 px
    mask[40:43, 50:53] = True  # 3 x 3 = 9 px
    return mask


def test_finds_two_components_with_areas_boxes_centroids() -> None:
    loc = localize(_two_blobs())
    assert [c.area_px for c in loc.components] == [200, 9]
    big, small = loc.components
    assert big.bbox == (5, 10, 25, 20)
    assert small.bbox == (50, 40, 53, 43)
    assert big.centroid == pytest.approx((14.5, 14.5))
    assert small.centroid == pytest.approx((51.0, 41.0))
    assert loc.total_area_px == 209
    assert big.area_mm2 is None and loc.total_area_mm2 is None


def test_contour_traces_the_component_boundary() -> None:
    mask = np.zeros((50, 50), np.uint8)
    cv2.circle(mask, (25, 22), 10, 1, thickness=-1)
    loc = localize(mask.astype(bool))
    (comp,) = loc.components
    pts = np.array(comp.contour)
    assert len(pts) > 8
    assert mask[pts[:, 1], pts[:, 0]].all()  # on the mask
    eroded = cv2.erode(mask, np.ones((3, 3), np.uint8))
    assert not eroded[pts[:, 1], pts[:, 0]].any()  # on its edge, not inside
    x0, y0, x1, y1 = comp.bbox
    assert pts[:, 0].min() == x0 and pts[:, 0].max() == x1 - 1
    assert pts[:, 1].min() == y0 and pts[:, 1].max() == y1 - 1


def test_min_area_drops_small_component_and_spacing_gives_mm2() -> None:
    loc = localize(_two_blobs(), spacing=(0.5, 2.0), min_area=10)
    assert len(loc.components) == 1
    assert loc.components[0].area_mm2 == pytest.approx(200 * 1.0)
    assert loc.total_area_px == 200
    assert loc.total_area_mm2 == pytest.approx(200.0)


def test_empty_mask_and_bad_input() -> None:
    loc = localize(np.zeros((8, 8), bool))
    assert loc.components == [] and loc.total_area_px == 0
    with pytest.raises(DataError):
        localize(np.zeros((2, 8, 8), bool))
    with pytest.raises(DataError):
        localize(np.zeros((8, 8), bool), spacing=(1.0, -1.0))


def test_to_json_round_trips_through_json() -> None:
    data = json.loads(json.dumps(to_json(localize(_two_blobs(), spacing=(1.0, 1.0)))))
    assert data["n_components"] == 2
    assert data["components"][0]["bbox"] == [5, 10, 25, 20]
    assert data["components"][1]["area_mm2"] == pytest.approx(9.0)
    assert all(len(p) == 2 for p in data["components"][0]["contour"])


def test_overlay_changes_only_pixels_near_the_mask() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 200, size=(64, 80), dtype=np.uint8)
    mask = _two_blobs()
    out = draw_overlay(image, mask, color=(255, 0, 0), alpha=0.5)
    assert out.dtype == np.uint8 and out.shape == (64, 80, 3)
    base = np.stack([image] * 3, axis=-1)
    changed = (out != base).any(axis=-1)
    near = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert changed[mask].mean() > 0.95  # the tumour is tinted
    assert not changed[~near].any()  # nothing changes away from it
    # Boxes drawn one pixel outside the component.
    assert (out[9, 4:26] == (255, 0, 0)).all()
    no_boxes = draw_overlay(image, mask, boxes=False)
    assert (no_boxes[9, 4:26] == base[9, 4:26]).all()


def test_overlay_accepts_float_grey_and_rgb_and_checks_sizes() -> None:
    mask = _two_blobs()
    grey = np.linspace(0, 1, 64 * 80).reshape(64, 80)
    assert draw_overlay(grey, mask).shape == (64, 80, 3)
    rgb = np.zeros((64, 80, 3), np.uint8)
    assert draw_overlay(rgb, mask)[15, 15, 0] > 0
    with pytest.raises(DataError):
        draw_overlay(np.zeros((10, 10)), mask)
    with pytest.raises(DataError):
        draw_overlay(grey, mask, alpha=1.5)
