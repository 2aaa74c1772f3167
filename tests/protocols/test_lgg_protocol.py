"""``--protocol kfold`` and patient-folder ``predict`` end to end on tiny synthetic LGG stacks."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from typer.testing import CliRunner

from braintumor.cli.main import app

pytestmark = pytest.mark.slow

PATIENTS = [f"TCGA_AA_{i:04d}_20000101" for i in range(4)]


def _write_stack(root: Path, patient: str, seed: int, n: int = 6, size: int = 32) -> None:
    """A patient folder: dark noisy slices, a bright disk (FLAIR brightest) on slices 2..4."""
    rng = np.random.default_rng(seed)
    folder = root / "kaggle_3m" / patient
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[:size, :size]
    for index in range(1, n + 1):
        image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), np.uint8)
        if 2 <= index <= 4:
            cy, cx = 8 + 3 * index, 8 + 5 * seed  # each patient's tumour in its own place
            disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= 25
            image[disk] = (120, 230, 150)
            mask[disk] = 255
        tifffile.imwrite(folder / f"{patient}_{index}.tif", image, photometric="rgb")
        tifffile.imwrite(folder / f"{patient}_{index}_mask.tif", mask)


def test_kfold_then_predict_a_patient_folder(tmp_path: Path) -> None:
    data = tmp_path / "lgg"
    for seed, patient in enumerate(PATIENTS):
        _write_stack(data, patient, seed)
    run = tmp_path / "cv"
    overrides = ["image_size=32", "max_epochs=2", "max_minutes=null", "batch_size=4"]
    args = ["train", "fast-cpu-lgg", "--data", str(data), "--run-dir", str(run)]
    args += ["--protocol", "kfold", "--folds", "2"]
    for item in overrides:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "fold 1: per-patient Dice" in result.output and "pooled" in result.output
    summary = json.loads((run / "kfold.json").read_text())
    assert summary["folds"] == 2 and len(summary["per_fold"]) == 2
    tested = sorted(p["patient"] for p in summary["patients"])
    assert tested == PATIENTS  # every patient tested exactly once
    pooled = summary["pooled"]
    assert pooled["n_patients"] == 4 and pooled["n_slices"] == 24
    assert pooled["detection"]["tp"] + pooled["detection"]["fn"] == 12
    with open(run / "folds.csv", newline="") as handle:
        folds: dict[str, set[str]] = {}
        for row in csv.DictReader(handle):
            folds.setdefault(row["group"], set()).add(row["fold"])
    assert all(len(f) == 1 for f in folds.values())

    out = tmp_path / "preds"
    model = run / "fold-0" / "model"
    patient = data / "kaggle_3m" / PATIENTS[0]
    result = CliRunner().invoke(app, ["predict", str(model), str(patient), "--out", str(out)])
    assert result.exit_code == 0, result.output
    payload = json.loads((out / "summary.json").read_text())
    assert len(payload["images"]) == 6  # the six _mask.tif files are references, not inputs
    (row,) = payload["patients"]
    masks = [np.asarray(Image.open(out / r["mask"])) for r in payload["images"]]
    assert row["volume_voxels"] == sum(int((m > 0).sum()) for m in masks)
    assert row["volume_ml"] is None and "spacing unknown" in row["spacing_note"]
    assert 0.0 <= row["reference_dice"] <= 1.0
    assert (row["strip"] is None) == (row["tumour_slices"] == 0)


def test_kfold_can_run_chosen_folds_alone(tmp_path: Path) -> None:
    from braintumor.config import load_recipe
    from braintumor.protocols.kfold import run_kfold

    data = tmp_path / "lgg"
    for seed, patient in enumerate(PATIENTS):
        _write_stack(data, patient, seed)
    recipe = load_recipe(
        "fast-cpu-lgg", ["image_size=32", "max_epochs=1", "max_minutes=null", "batch_size=4"]
    )
    summary = run_kfold(recipe, data, tmp_path / "cv", folds=2, only_folds=[1])
    assert [f["fold"] for f in summary["per_fold"]] == [1]
    assert not (tmp_path / "cv" / "fold-0").exists()
    assert summary["pooled"]["n_patients"] == 2  # the patients of fold 1 only
    # Run again with both folds: fold 1 is kept, with the wall time it took the first time.
    again = run_kfold(recipe, data, tmp_path / "cv", folds=2, resume=True)
    assert [f["fold"] for f in again["per_fold"]] == [0, 1]
    assert again["per_fold"][1]["seconds"] == summary["per_fold"][0]["seconds"] > 0
    assert again["pooled"]["n_patients"] == 4
