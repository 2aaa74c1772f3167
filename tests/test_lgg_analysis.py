"""The LGG fold probes of ``benchmarks/lgg_analysis.py`` on hand-made stacks (no training), and
where ``benchmarks/lgg.py`` writes a partial cross-validation run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import lgg
import lgg_analysis


def test_lgg_thresholds_scores_volume_dice_per_patient_folder() -> None:
    truth = np.zeros((4, 4), bool)
    truth[:2, :2] = True  # 4 tumour pixels on each slice of patient A
    half = truth.copy()
    half[1] = False  # 2 of them found
    masks = [truth, half, np.zeros((4, 4), bool)]
    truths = [truth, truth, truth]
    paths = ["x/A/A_1.tif", "x/A/A_2.tif", "x/B/B_1.tif"]
    dice = lgg_analysis.patient_dice(masks, truths, paths)
    # A: 2 * 6 / (6 + 8) over its stack, not the mean of its slices' 1.0 and 0.667; B: missed
    assert dice == pytest.approx([12 / 14, 0.0])


def test_lgg_slice_breakdown_places_slices_in_their_stack_and_bins_tumour_size() -> None:
    paths = [f"x/A/A_{n}.tif" for n in range(1, 11)] + ["x/B/B_1.tif", "x/B/B_2.tif"]
    fifth = lgg_analysis.stack_fifths(paths)
    assert fifth.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 0, 4]
    area = np.array([0, 0, 50, 50, 3000, 3000, 0, 0, 0, 0, 0, 0])
    probs = np.array([0.1, 0.2, 0.9, 0.05, 0.8, 0.9, 0.3, 0.3, 0.7, 0.7, 0.1, 0.6])
    result = lgg_analysis.breakdown(probs, area, fifth)
    small, large = result["by_tumour_size"][0], result["by_tumour_size"][-1]
    assert small["tumour_slices"] == 2 and large["tumour_slices"] == 2
    assert large["auc_against_all_empty"] == 1.0  # both large tumours above every empty slice
    assert small["auc_against_all_empty"] == pytest.approx(0.5)  # 0.9 above all, 0.05 below all
    last = result["by_stack_position"][-1]
    assert last["empty_slices"] == 3 and last["empty_mean_p"] == pytest.approx(0.667, abs=1e-3)


def test_lgg_stack_smoothing_damps_a_lone_spot_and_keeps_a_tumour_running_through_slices() -> None:
    tumour = np.full((2, 2), 0.9, np.float32)
    spot = np.zeros((2, 2), np.float32)
    spot[0, 0] = 0.9
    empty = np.zeros((2, 2), np.float32)
    # A: tumour on slices 1-3, a lone spot on slice 5; B: one slice, not a stack
    probs = [tumour, tumour, tumour, empty, spot, empty, spot]
    paths = [f"x/A/A_{n}.tif" for n in range(1, 7)] + ["x/B/B_1.tif"]
    smoothed = lgg_analysis.smooth_stacks(probs, paths, weight=0.5)
    assert smoothed[1] == pytest.approx(tumour)  # inside the run: its neighbours agree
    assert smoothed[0] == pytest.approx(tumour)  # the first slice has one neighbour
    assert smoothed[2][0, 0] == pytest.approx((0.9 + 0.5 * 0.9) / 2)  # next to an empty slice
    assert smoothed[4][0, 0] == pytest.approx(0.45) and smoothed[4][0, 0] < 0.5  # spot damped
    assert smoothed[3][0, 0] == pytest.approx(0.45)  # an empty slice between two: not tumour
    assert smoothed[6] is probs[6]  # a single slice is no stack
    assert lgg_analysis.smooth_stacks(probs, paths, weight=0.0) == probs


def test_lgg_partial_cv_run_gets_its_own_result_file() -> None:
    def name(what: str, fold: list[int] | None) -> str:
        return lgg._default_result_name(argparse.Namespace(what=what, fold=fold))

    assert name("cv", None) == "lgg_cv.json"  # the whole 5-fold run
    assert name("cv", [4, 3, 3]) == "lgg_cv_fold3-4.json"  # one worker's folds
    assert name("stack-rule", [1]) == "lgg_stack-rule.json"
