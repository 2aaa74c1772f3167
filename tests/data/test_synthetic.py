"""Synthetic phantoms: determinism, anatomy, class signal only where it should be, writers."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from braintumor.data.synth_2d import KINDS, TUMOUR_KINDS, make_slice, render_slice
from braintumor.data.synth_3d import MODALITIES, make_case, render_case
from braintumor.data.synthetic import (
    write_brats_dataset,
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


# ---------------------------------------------------------------- 3D cases

SHAPE = (40, 40, 32)


def test_make_case_is_fixed_by_the_seed_and_uses_brats_labels() -> None:
    images_a, labels_a = make_case(SHAPE, _rng(5))
    images_b, labels_b = make_case(SHAPE, _rng(5))
    images_c, _ = make_case(SHAPE, _rng(6))
    assert set(images_a) == set(MODALITIES)
    for name in MODALITIES:
        assert images_a[name].dtype == np.float32 and images_a[name].shape == SHAPE
        np.testing.assert_array_equal(images_a[name], images_b[name])
        assert not np.array_equal(images_a[name], images_c[name])
    assert labels_a.dtype == np.uint8
    np.testing.assert_array_equal(labels_a, labels_b)
    assert set(np.unique(labels_a).tolist()) == {0, 1, 2, 4}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_case_contrasts_follow_the_modalities(seed: int) -> None:
    case = render_case(SHAPE, _rng(seed))
    im, lab = case.images, case.labels
    normal = case.brain & (lab == 0) & ~case.ventricles

    def mean(name: str, where: np.ndarray) -> float:
        return float(im[name][where].mean())

    enhancing, necrosis, oedema = lab == 4, lab == 1, lab == 2
    assert mean("t1ce", enhancing) > 1.3 * mean("t1ce", case.brain)
    assert mean("t1ce", enhancing) > 1.4 * mean("t1", enhancing)  # bright on T1ce only
    assert mean("t1", necrosis) < 0.7 * mean("t1", normal)
    assert mean("t1ce", necrosis) < 0.8 * mean("t1ce", normal)
    assert mean("t2", necrosis) > 1.2 * mean("t2", normal)
    assert mean("flair", oedema) > 1.2 * mean("flair", normal)
    assert mean("t2", oedema) > 1.1 * mean("t2", normal)
    assert mean("t1", oedema) < mean("t1", normal)
    assert mean("t2", case.ventricles) > 1.2 * mean("t2", normal)
    assert mean("flair", case.ventricles) < 0.7 * mean("flair", normal)


def test_brats_writer_2021_files_open_and_repeat(tmp_path: Path) -> None:
    out = write_brats_dataset(tmp_path / "a", n_cases=2, shape=SHAPE, seed=0)
    case = out / "BraTS2021_SYN_0001"
    names = sorted(p.name for p in case.iterdir())
    assert names == sorted(f"BraTS2021_SYN_0001_{m}.nii.gz" for m in (*MODALITIES, "seg"))
    seg = nib.load(case / "BraTS2021_SYN_0001_seg.nii.gz")
    flair = nib.load(case / "BraTS2021_SYN_0001_flair.nii.gz")
    assert seg.get_data_dtype() == np.uint8 and flair.get_data_dtype() == np.float32
    assert flair.shape == SHAPE
    np.testing.assert_allclose(flair.header.get_zooms(), (1.0, 1.0, 1.0))
    assert set(np.unique(np.asarray(seg.dataobj)).tolist()) == {0, 1, 2, 4}
    again = write_brats_dataset(tmp_path / "b", n_cases=2, shape=SHAPE, seed=0)
    other = write_brats_dataset(tmp_path / "c", n_cases=2, shape=SHAPE, seed=1)
    assert _tree_bytes(out) == _tree_bytes(again)
    assert _tree_bytes(out) != _tree_bytes(other)


def test_brats_writer_2013_and_2023_naming(tmp_path: Path) -> None:
    old = write_brats_dataset(tmp_path / "old", n_cases=1, shape=SHAPE, naming="2013")
    case = old / "brats_2013_syn0000_1"
    for name in ("Flair", "T1c", "T1", "T2"):
        volume = nib.load(case / f"{name}_subtrMeanDivStd.nii.gz").get_fdata()
        brain = nib.load(case / "brainmask.nii.gz").get_fdata() > 0.5
        assert abs(volume[brain].mean()) < 1e-3 and abs(volume[brain].std() - 1.0) < 1e-3
    labels = np.asarray(nib.load(case / "OTMultiClass.nii.gz").dataobj)
    assert set(np.unique(labels).tolist()) == {0, 1, 2, 4}
    new = write_brats_dataset(tmp_path / "new", n_cases=1, shape=SHAPE, naming="2023")
    stem = "BraTS-SYN-00000-000"
    for tag in ("t1n", "t1c", "t2w", "t2f"):
        assert nib.load(new / stem / f"{stem}-{tag}.nii.gz").shape == SHAPE
    labels = np.asarray(nib.load(new / stem / f"{stem}-seg.nii.gz").dataobj)
    assert set(np.unique(labels).tolist()) == {0, 1, 2, 3}


def test_synthetic_brats_task_and_bad_naming(tmp_path: Path) -> None:
    out = write_synthetic_dataset(tmp_path, "brats", n=1, size=32, seed=4)
    seg = nib.load(out / "BraTS2021_SYN_0000" / "BraTS2021_SYN_0000_seg.nii.gz")
    assert seg.shape == (32, 32, 24)
    with pytest.raises(DataError, match="naming"):
        write_brats_dataset(tmp_path, n_cases=1, shape=SHAPE, naming="2015")
    with pytest.raises(DataError, match="shape"):
        make_case((8, 8, 8), _rng(0))


# ---------------------------------------------------------------- the project's layout reader


def test_written_datasets_are_detected_as_their_layouts(tmp_path: Path) -> None:
    from braintumor.data.layouts import detect_layout

    write_classification_dataset(tmp_path / "cls", n_per_class=2, size=40, splits=True)
    write_segmentation_dataset(tmp_path / "seg", n=3, size=40)
    write_brats_dataset(tmp_path / "brats", n_cases=2, shape=(24, 24, 16), naming="2023")
    classes = detect_layout(tmp_path / "cls").samples
    assert len(classes) == 8 and {s.label for s in classes} == set(KINDS)
    pairs = detect_layout(tmp_path / "seg").samples
    assert [s.label for s in pairs] == list(TUMOUR_KINDS)
    assert all(s.mask for s in pairs)
    cases = detect_layout(tmp_path / "brats").samples
    assert len(cases) == 2 and set(cases[0].modalities) >= set(MODALITIES)
