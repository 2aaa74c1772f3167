"""Synthetic phantoms: determinism, anatomy, class signal only where it should be, writers."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from braintumor.data.synth_2d import KINDS, TUMOUR_KINDS, make_slice, render_slice
from braintumor.data.synthetic import (
    write_classification_dataset,
    write_segmentation_dataset,
    write_synthetic_dataset,
)
from braintumor.errors import DataError


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- 2D slices


@pytest.mark.parametrize("kind", KINDS)
def test_make_slice_is_fixed_by_the_seed(kind: str) -> None:
    image_a, mask_a = make_slice(kind, 96, _rng(3))
    image_b, mask_b = make_slice(kind, 96, _rng(3))
    image_c, _ = make_slice(kind, 96, _rng(4))
    assert image_a.dtype == np.uint8 and mask_a.dtype == np.uint8
    assert image_a.shape == mask_a.shape == (96, 96)
    np.testing.assert_array_equal(image_a, image_b)
    np.testing.assert_array_equal(mask_a, mask_b)
    assert not np.array_equal(image_a, image_c)


@pytest.mark.parametrize("kind", KINDS)
def test_mask_is_non_empty_exactly_for_tumours(kind: str) -> None:
    for seed in range(5):
        _, mask = make_slice(kind, 64, _rng(seed))
        assert set(np.unique(mask).tolist()) <= {0, 1}
        assert (mask.sum() > 0) == (kind in TUMOUR_KINDS)


def _head_stats(kind: str, seed: int) -> dict[str, float]:
    """Tumour centroid in head coordinates, its elliptical reach and its share of the brain."""
    s = render_slice(kind, 128, _rng(seed))
    inside = s.mask.astype(bool)
    a, b = s.axes
    rho = np.hypot(s.u / a, s.v / b)[inside]
    return {
        "u": float(s.u[inside].mean()),
        "v": float(s.v[inside].mean()),
        "rho_max": float(rho.max()),
        "area": float(inside.sum() / s.brain.sum()),
    }


def test_pituitary_sits_on_the_midline_below_the_centre() -> None:
    for seed in range(6):
        st = _head_stats("pituitary", seed)
        assert abs(st["u"]) < 0.08, st
        assert st["v"] > 0.3, st
        assert 0.003 < st["area"] < 0.04, st


def test_meningioma_touches_the_brain_boundary() -> None:
    for seed in range(6):
        st = _head_stats("meningioma", seed)
        assert st["rho_max"] > 0.99, st
        assert 0.04 < st["area"] < 0.25, st


def test_glioma_lies_inside_one_hemisphere() -> None:
    for seed in range(6):
        st = _head_stats("glioma", seed)
        assert st["rho_max"] < 0.97, st
        assert abs(st["u"]) > 0.1, st
        assert 0.04 < st["area"] < 0.25, st


def test_classes_are_not_separable_by_global_intensity_but_are_locally() -> None:
    rng = _rng(11)
    glob, glob_y, local, local_y = [], [], [], []
    for _ in range(60):
        for label, kind in enumerate(KINDS):
            s = render_slice(kind, 64, rng)
            img = s.image.astype(float)
            glob.append([img.mean(), img.std(), *np.percentile(img, [5, 25, 50, 75, 95])])
            glob_y.append(label)
            if kind in TUMOUR_KINDS:
                m = s.mask.astype(bool)
                rest = img[s.brain & ~m]
                local.append(
                    [
                        img[m].mean() - rest.mean(),
                        img[m].std() / rest.std(),
                        np.percentile(img[m], 10) - np.median(rest),
                        m.sum() / s.brain.sum(),
                    ]
                )
                local_y.append(label)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    global_acc = cross_val_score(model, np.array(glob), glob_y, cv=5).mean()
    local_acc = cross_val_score(model, np.array(local), local_y, cv=5).mean()
    assert global_acc < 0.45, global_acc  # chance is 0.25
    assert local_acc > 0.8, local_acc  # chance is 0.33


def test_bad_kind_and_size_raise_data_error() -> None:
    with pytest.raises(DataError, match="kind"):
        make_slice("astrocytoma", 64, _rng(0))
    with pytest.raises(DataError, match="size"):
        make_slice("glioma", 8, _rng(0))


# ---------------------------------------------------------------- 2D writers


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_classification_writer_layout_and_determinism(tmp_path: Path) -> None:
    out = write_classification_dataset(tmp_path / "a", n_per_class=2, size=48, seed=1)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert files == sorted(f"{k}/{k}_{i:04d}.png" for k in KINDS for i in range(2))
    with Image.open(out / "glioma" / "glioma_0000.png") as im:
        assert im.mode == "L" and im.size == (48, 48)
    again = write_classification_dataset(tmp_path / "b", n_per_class=2, size=48, seed=1)
    other = write_classification_dataset(tmp_path / "c", n_per_class=2, size=48, seed=2)
    assert _tree_bytes(out) == _tree_bytes(again)
    assert _tree_bytes(out) != _tree_bytes(other)
    assert not list(out.rglob("*.part"))


def test_classification_writer_splits_80_20(tmp_path: Path) -> None:
    out = write_synthetic_dataset(tmp_path, "classify", n=5, size=40, seed=0, splits=True)
    for kind in KINDS:
        assert len(list((out / "Training" / kind).glob("*.png"))) == 4
        assert len(list((out / "Testing" / kind).glob("*.png"))) == 1


def test_segmentation_writer_pairs_masks_and_labels(tmp_path: Path) -> None:
    out = write_segmentation_dataset(tmp_path / "s", n=6, size=48, seed=0)
    with (out / "labels.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["number"] for r in rows] == [f"{i:04d}" for i in range(1, 7)]
    assert {r["label"] for r in rows} == set(TUMOUR_KINDS)
    for r in rows:
        mask = np.asarray(Image.open(out / "masks" / f"{r['number']}.png"))
        image = np.asarray(Image.open(out / "images" / f"{r['number']}.png"))
        assert image.shape == mask.shape == (48, 48)
        assert set(np.unique(mask).tolist()) == {0, 255}
    same = write_synthetic_dataset(tmp_path / "t", "segment", n=6, size=48, seed=0)
    assert _tree_bytes(out) == _tree_bytes(same)


def test_segmentation_writer_empty_fraction(tmp_path: Path) -> None:
    out = write_segmentation_dataset(tmp_path, n=10, size=40, seed=3, empty_fraction=0.3)
    with (out / "labels.csv").open() as f:
        rows = list(csv.DictReader(f))
    empty = [
        r for r in rows if not np.asarray(Image.open(out / "masks" / f"{r['number']}.png")).any()
    ]
    assert len(empty) == 3
    assert all(r["label"] == "no_tumor" for r in empty)


def test_writers_reject_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="task"):
        write_synthetic_dataset(tmp_path, "detect")
    with pytest.raises(DataError, match="n_per_class"):
        write_classification_dataset(tmp_path, n_per_class=0)
    with pytest.raises(DataError, match="empty_fraction"):
        write_segmentation_dataset(tmp_path, n=2, empty_fraction=1.5)
