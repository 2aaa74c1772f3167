"""LGG on real slices: a few shared patients copied to a temporary folder."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from braintumor.cli.main import app
from braintumor.config import load_recipe
from braintumor.data.cache import decode_slices
from braintumor.data.layouts import detect_layout
from braintumor.data.preprocess import PreprocessSpec, resize
from braintumor.data.splits import write_splits
from braintumor.metrics.patient import patient_rows, slice_counts
from braintumor.training.run import train_run
from braintumor.training.setup import preprocess_spec

pytestmark = pytest.mark.realdata

# Small patients of the shared subset: slices, slices with tumour (its README).
PATIENTS = {
    "TCGA_CS_5395_19981004": (20, 3),
    "TCGA_HT_7693_19950520": (21, 9),
    "TCGA_HT_8113_19930809": (21, 9),
    "TCGA_HT_A616_19991226": (28, 11),
}


def _copy(shared: Path, target: Path, names: list[str]) -> Path:
    for name in names:
        shutil.copytree(shared / "lgg-kaggle3m" / "kaggle_3m" / name, target / "kaggle_3m" / name)
    return target


@pytest.fixture
def three_patients(shared_data: Path, tmp_path: Path) -> Path:
    return _copy(shared_data, tmp_path / "lgg", list(PATIENTS)[:3])


def test_layout_lists_every_slice_pair_by_patient(three_patients: Path) -> None:
    layout = detect_layout(three_patients)
    assert layout.name == "lgg-kaggle-3m" and not any("skipped" in n for n in layout.notes)
    for patient in list(PATIENTS)[:3]:
        ours = [s for s in layout.samples if s.group == patient]
        slices, tumour = PATIENTS[patient]
        assert len(ours) == slices
        assert sum(tifffile.imread(s.mask).any() for s in ours) == tumour
        numbers = [int(Path(s.image).stem.rsplit("_", 1)[1]) for s in ours]
        assert numbers == list(range(1, slices + 1))  # slice order, not name order


def test_cache_keeps_the_three_sequences(three_patients: Path, tmp_path: Path) -> None:
    layout = detect_layout(three_patients)
    # Without the recipe's per-sequence scaling, so that channel 1 can be compared with the file.
    spec = preprocess_spec(load_recipe("fast-cpu-lgg", ["preprocess.intensity=none"]))
    decoded = decode_slices(layout.samples, spec, with_masks=True, cache_dir=tmp_path / "cache")
    assert decoded.images.shape == (62, 3, 128, 128) and not decoded.failures
    raw = tifffile.imread(layout.samples[10].image)
    assert np.array_equal(decoded.images[10][1], resize(raw[..., 1], 128))  # FLAIR, channel 1
    assert not np.array_equal(decoded.images[10][0], decoded.images[10][1])
    grey = PreprocessSpec(image_size=128, in_channels=1, color="grey", channels=[1])
    flair = decode_slices(layout.samples[:4], grey, cache_dir=tmp_path / "cache")
    assert np.array_equal(flair.images[2][0], decoded.images[2][1])


def test_patient_dice_on_a_known_mask(three_patients: Path) -> None:
    layout = detect_layout(three_patients)
    ours = [s for s in layout.samples if s.group == "TCGA_HT_7693_19950520"]
    truths = [tifffile.imread(s.mask) > 0 for s in ours]
    biggest = int(np.argmax([t.sum() for t in truths]))
    predictions = [t.copy() for t in truths]
    predictions[biggest][:] = False  # the largest slice missed entirely
    total, missed = sum(int(t.sum()) for t in truths), int(truths[biggest].sum())
    rows = [slice_counts(p, t) for p, t in zip(predictions, truths, strict=True)]
    (patient,) = patient_rows(rows, ["p"] * len(rows))
    assert patient["dice"] == pytest.approx(2 * (total - missed) / (2 * total - missed))
    slice_dice = [
        2 * r["overlap_px"] / (r["truth_px"] + r["predicted_px"]) for r in rows if r["truth_px"]
    ]
    assert patient["dice"] > np.mean(slice_dice)  # a volume Dice, not a mean of slices


def test_grouped_folds_keep_each_patient_on_one_side(three_patients: Path, tmp_path: Path) -> None:
    out = tmp_path / "folds.csv"
    result = CliRunner().invoke(
        app, ["data", "split", str(three_patients), "--folds", "3", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    folds: dict[str, set[str]] = {}
    for row in rows:
        folds.setdefault(row["id"].split("/")[1], set()).add(row["fold"])
    assert len(folds) == 3 and all(len(f) == 1 for f in folds.values())
    assert len({f.pop() for f in folds.values()}) == 3  # one patient per fold


@pytest.mark.slow
def test_lgg_segmenter_beats_the_empty_mask(shared_data: Path, tmp_path: Path) -> None:
    data = _copy(shared_data, tmp_path / "lgg", list(PATIENTS))
    layout = detect_layout(data)
    side = {
        "TCGA_HT_A616_19991226": "train",
        "TCGA_HT_8113_19930809": "train",
        "TCGA_CS_5395_19981004": "val",
        "TCGA_HT_7693_19950520": "test",
    }
    splits = tmp_path / "splits.csv"
    groups = [s.group or s.id for s in layout.samples]
    write_splits(splits, layout.samples, [side[g] for g in groups], groups)
    # A fixed epoch count, not a time budget: the result must not depend on machine load.
    recipe = load_recipe("fast-cpu-lgg", ["image_size=64", "max_epochs=60", "max_minutes=null"])
    result = train_run(recipe, data, tmp_path / "run", splits_csv=splits, progress=False)
    test = result.metrics["test"]
    # An empty prediction scores a volume Dice of 0 on a patient with tumour.
    assert test["per_patient"]["n_patients"] == 1
    assert test["patient_volume_dice"] >= 0.4, test["patient_volume_dice"]
    assert test["detection_sensitivity"] >= 0.5, test["detection_sensitivity"]
