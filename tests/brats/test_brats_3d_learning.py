"""The issue's bar in 3D: fast-cpu-brats3d, trained by the real training code on synthetic phantoms
in 32^3 patches on one CPU thread, reaches WT Dice >= 0.7 by sliding window on a held-out case.
"""

from __future__ import annotations

import json
import time

import nibabel as nib
import numpy as np
import pytest
import torch

from braintumor.brats.inference import predict_case
from braintumor.config import load_recipe
from braintumor.data.layouts import detect_layout
from braintumor.data.splits import read_splits
from braintumor.data.synthetic import write_brats_dataset
from braintumor.models.folder import load_model_dir
from braintumor.training.run import train_run

# Small phantoms learn fastest: the 32^3 patches see most of the brain box at once.
SHAPE = (48, 48, 36)
# Seven training cases (of ten): with four, the network over-extends the oedema of a small tumour.
N_CASES = 10
# 35 epochs take about 50 s on one thread of a 2-core CPU; the time budget (and the
# learning-rate decay that follows it) stops a slower machine at 90 s. 25 epochs (35 s) left
# WT Dice at 0.63 in one of four clean CI runs on an AMD EPYC.
OVERRIDES = ["max_epochs=35", "max_minutes=1.5"]


@pytest.mark.slow
def test_fast_3d_recipe_learns_through_training(tmp_path):
    data = write_brats_dataset(tmp_path / "data", n_cases=N_CASES, shape=SHAPE, seed=0)
    recipe = load_recipe("fast-cpu-brats3d", [f"extra.cache_dir={tmp_path / 'cache'}", *OVERRIDES])
    run_dir = tmp_path / "run"
    # One thread: on a small shared CPU, two threads per op mostly wait for each other.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        result = train_run(recipe, data, run_dir, accelerator="cpu", devices=1, progress=False)
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    # Caching, 90 s of training at most, then the test-split evaluation.
    assert seconds <= 150, f"train_run took {seconds:.0f} s"

    for name in ("recipe.yaml", "splits.csv", "logs/metrics.csv", "checkpoints/last.ckpt",
                 "model/model.json", "model/model.safetensors", "test/metrics.json",
                 "test/report.html", "report.html", "metrics.json"):  # fmt: skip
        assert (run_dir / name).is_file(), name
    test = result.metrics["test"]
    assert test["n_cases"] == 1
    wt = test["mean"]["WT"]["dice"]
    assert wt >= 0.7, f"WT Dice {wt:.3f} after {seconds:.0f} s"
    assert json.loads((run_dir / "test" / "metrics.json").read_text())["wt_dice"] == wt
    card = json.loads((run_dir / "model" / "model.json").read_text())
    assert card["metrics"]["test_wt_dice"] == pytest.approx(wt)
    pre = card["preprocessing"]
    assert pre["mode"] == "3d" and pre["patch_size"] == [32, 32, 32]
    assert pre["convention"] == "brats2017" and card["class_names"] == ["WT", "TC", "ET"]

    # The held-out case, predicted again from the model folder alone.
    assignment = read_splits(run_dir / "splits.csv").assignment
    held_out = [s for s in detect_layout(data).samples if assignment[s.id] == "test"]
    assert [s.id for s in held_out] == [test["cases"][0]["case"]]
    sample = held_out[0]
    loaded = load_model_dir(run_dir / "model")
    record = predict_case(loaded, sample, tmp_path / "pred", overlays=False)
    seg = nib.load(record["segmentation"])
    flair = nib.load(sample.modalities["flair"])
    assert seg.shape == flair.shape == SHAPE
    np.testing.assert_allclose(seg.affine, flair.affine)
    labels = np.asarray(seg.dataobj)
    assert set(np.unique(labels).tolist()) <= {0, 1, 2, 4}  # 2021 naming: enhancing = 4
    truth = np.asarray(nib.load(sample.mask).dataobj) > 0
    dice = 2 * ((labels > 0) & truth).sum() / ((labels > 0).sum() + truth.sum())
    assert dice == pytest.approx(wt, abs=1e-6)  # same network, same case, same Dice
