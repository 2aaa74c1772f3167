"""``braintumor evaluate`` on BraTS models: case-by-case scores, the run's test split, refusals."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from braintumor.brats.task import build_brats_task
from braintumor.cli.evaluate import evaluate_command
from braintumor.config import load_recipe
from braintumor.data.splits import write_splits
from braintumor.data.synthetic import write_segmentation_dataset
from brats_support import model_folder, synthetic_cases

app = typer.Typer()
app.command()(evaluate_command)
runner = CliRunner()


@pytest.fixture(scope="module")
def brats_model(tmp_path_factory):
    """Two synthetic cases and a small 3D model folder (seeded weights, untrained)."""
    root = tmp_path_factory.mktemp("brats-cli")
    cases = synthetic_cases(root / "data", 2)
    recipe = load_recipe(
        "fast-cpu-brats3d",
        [
            f"extra.cache_dir={root / 'cache'}",
            "model=unet3d",
            "model_args={channels: [4, 8], num_res_units: 0}",
        ],
    )
    torch.manual_seed(0)
    module, _, pre = build_brats_task(recipe, {"train": cases})
    model_folder(recipe, module, pre, root / "model")
    return root, cases


def test_evaluate_command_scores_the_test_cases_of_a_run(brats_model, tmp_path):
    root, cases = brats_model
    splits = tmp_path / "splits.csv"
    write_splits(splits, cases, ["train", "test"], [c.id for c in cases])
    out = tmp_path / "eval"
    args = [str(root / "model"), str(root / "data"), "--splits", str(splits), "--split", "test"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_cases"] == 1 and metrics["cases"][0]["case"] == cases[1].id
    # The reported WT Dice is the one of the segmentation written for that case.
    seg = np.asarray(nib.load(out / "predictions" / f"{cases[1].id}_seg.nii.gz").dataobj) > 0
    truth = np.asarray(nib.load(cases[1].mask).dataobj) > 0
    dice = 2 * (seg & truth).sum() / max(1, seg.sum() + truth.sum())
    assert metrics["mean"]["WT"]["dice"] == pytest.approx(dice)
    assert metrics["wt_dice"] == metrics["mean"]["WT"]["dice"]
    assert "BraTS: 1 cases" in result.stdout and f"{dice:.4f}" in result.stdout
    assert "Per label" in (out / "report.html").read_text()


def test_evaluate_command_refuses_a_folder_of_slices(brats_model, tmp_path):
    root, _ = brats_model
    slices = write_segmentation_dataset(tmp_path / "slices", n=3, size=32)
    result = runner.invoke(app, [str(root / "model"), str(slices), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert str(slices) in result.stderr and "cannot serve a brats recipe" in result.stderr
