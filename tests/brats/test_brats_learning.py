"""The issue's bar in 2D: fast-cpu-brats learns synthetic phantoms in <= 120 s (WT Dice >= 0.7)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from braintumor.brats.evaluate import evaluate_cases
from brats_support import fast_recipe, model_folder, synthetic_cases, train


@pytest.mark.slow
def test_fast_recipe_learns_synthetic_phantoms(tmp_path):
    cases = synthetic_cases(tmp_path / "data", 6)
    recipe = fast_recipe(tmp_path / "cache", ["image_size=64", "max_epochs=30", "batch_size=8"])
    module, pre, seconds = train(recipe, {"train": cases[:4], "val": cases[4:5]}, seconds=100)
    assert seconds <= 120
    loaded = model_folder(recipe, module, pre, tmp_path / "model")
    result = evaluate_cases(loaded, cases[5:], tmp_path / "eval")
    wt = result["mean"]["WT"]["dice"]
    assert wt >= 0.7, f"WT Dice {wt:.3f} after {seconds:.0f} s"
    # The written segmentation is in the input's convention (2021 naming: enhancing = 4).
    seg = nib.load(next((tmp_path / "eval" / "predictions").glob("*_seg.nii.gz")))
    assert set(np.unique(np.asarray(seg.dataobj)).tolist()) <= {0, 1, 2, 4}
    report = (tmp_path / "eval" / "report.html").read_text()
    assert "WT" in report and "Per label" in report
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["mean"]["WT"]["dice"] == pytest.approx(wt)
