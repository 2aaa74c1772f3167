"""Segmentation metrics against MONAI and hand cases; empty-mask rules; summaries; BraTS regions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric, HausdorffDistanceMetric, MeanIoU

from braintumor.errors import DataError
from braintumor.metrics import (
    EmptyRule,
    aggregate,
    brats_case_scores,
    detect_convention,
    multiclass_label_scores,
    per_group_mean,
    regions_to_labels,
    remap_labels,
    segmentation_scores,
    to_regions,
)


def _blobs(shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping random masks: thresholded smooth noise, so they have real surfaces."""
    rng = np.random.default_rng(seed)
    base = rng.random(shape)
    noise = rng.random(shape)
    from scipy.ndimage import gaussian_filter

    a = gaussian_filter(base, 2) > 0.5
    b = gaussian_filter(0.7 * base + 0.3 * noise, 2) > 0.5
    assert a.any() and b.any()
    return a, b


def _monai(pred: np.ndarray, truth: np.ndarray, spacing=None) -> tuple[float, float, float]:
    yp = torch.from_numpy(pred)[None, None].float()
    yt = torch.from_numpy(truth)[None, None].float()
    dice, iou = DiceMetric(include_background=True), MeanIoU(include_background=True)
    hd = HausdorffDistanceMetric(include_background=True, percentile=95)
    dice(yp, yt)
    iou(yp, yt)
    hd(yp, yt, spacing=spacing)
    return float(dice.aggregate()), float(iou.aggregate()), float(hd.aggregate())


# The reference HausdorffDistanceMetric warns about MONAI's own use of a deprecated argument.
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize(
    ("shape", "spacing", "seed"),
    [((64, 64), None, 0), ((64, 64), (0.7, 1.3), 1), ((24, 28, 20), (1.0, 1.0, 2.5), 2)],
)
def test_agrees_with_monai_metrics(shape, spacing, seed) -> None:
    pred, truth = _blobs(shape, seed)
    got = segmentation_scores(pred, truth, spacing=spacing)
    dice, iou, hd95 = _monai(pred, truth, spacing)
    assert got["dice"] == pytest.approx(dice, abs=1e-6)
    assert got["iou"] == pytest.approx(iou, abs=1e-6)
    assert got["hd95"] == pytest.approx(hd95, abs=1e-5)
    assert 0 < got["dice"] < 1


def test_hand_case_ratios_and_spacing() -> None:
    truth = np.zeros((20, 20), bool)
    truth[5:15, 5:15] = True  # 100 px
    pred = np.zeros_like(truth)
    pred[5:15, 10:20] = True  # 100 px, 50 overlap
    s = segmentation_scores(pred, truth)
    assert s["dice"] == pytest.approx(0.5)
    assert s["iou"] == pytest.approx(50 / 150)
    assert s["sensitivity"] == pytest.approx(0.5)
    assert s["precision"] == pytest.approx(0.5)
    assert s["specificity"] == pytest.approx(250 / 300)
    assert s["hd95"] == pytest.approx(5.0)
    half = segmentation_scores(pred, truth, spacing=(0.5, 0.5))
    assert half["hd95"] == pytest.approx(2.5)
    assert half["dice"] == s["dice"]


def test_empty_mask_rules_default() -> None:
    empty = np.zeros((30, 40), bool)
    some = empty.copy()
    some[10:20, 10:20] = True
    both = segmentation_scores(empty, empty)
    assert both["dice"] == 1.0 and both["iou"] == 1.0 and both["hd95"] == 0.0
    assert both["precision"] == 1.0
    missed = segmentation_scores(empty, some)
    assert missed["dice"] == 0.0 and missed["iou"] == 0.0
    assert missed["hd95"] == pytest.approx(50.0)  # diagonal of 30 x 40
    assert missed["sensitivity"] == 0.0 and missed["precision"] == 0.0
    mm = segmentation_scores(empty, some, spacing=(2.0, 0.5))
    assert mm["hd95"] == pytest.approx(math.hypot(60.0, 20.0))
    false_alarm = segmentation_scores(some, empty)
    assert false_alarm["dice"] == 0.0 and false_alarm["precision"] == 0.0
    assert false_alarm["sensitivity"] is None
    assert false_alarm["specificity"] == pytest.approx(1 - 100 / 1200)


def test_empty_mask_rule_is_configurable() -> None:
    empty = np.zeros((10, 10), bool)
    some = empty.copy()
    some[2:4, 2:4] = True
    rule = EmptyRule(both_empty_overlap=0.5, one_empty_hd95=99.0, false_alarm_sensitivity=0.0)
    assert segmentation_scores(empty, empty, empty_rule=rule)["dice"] == 0.5
    assert segmentation_scores(empty, some, empty_rule=rule)["hd95"] == 99.0
    assert segmentation_scores(some, empty, empty_rule=rule)["sensitivity"] == 0.0


def test_shape_mismatch_and_bad_spacing_raise() -> None:
    with pytest.raises(DataError):
        segmentation_scores(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(DataError):
        segmentation_scores(np.ones((4, 4)), np.ones((4, 4)), spacing=(1.0,))


def test_aggregate_statistics_skip_none_and_bootstrap_brackets_mean() -> None:
    rng = np.random.default_rng(0)
    dice = rng.random(40)
    rows = [{"id": f"i{i}", "dice": float(d), "sensitivity": None} for i, d in enumerate(dice)]
    rows[0]["sensitivity"] = 0.25
    out = aggregate(rows, n_bootstrap=500)
    s = out["per_image"]["dice"]
    assert s["n"] == 40
    assert s["mean"] == pytest.approx(dice.mean())
    assert s["median"] == pytest.approx(np.median(dice))
    assert s["std"] == pytest.approx(dice.std(ddof=1))
    assert s["ci95"][0] < s["mean"] < s["ci95"][1]
    assert out["per_image"]["sensitivity"]["n"] == 1
    assert "id" not in out["per_image"]
    json.dumps(out)


def test_per_group_mean_counts_each_patient_once() -> None:
    rows = [{"dice": 1.0}, {"dice": 0.0}, {"dice": 0.0}, {"dice": 0.5}]
    groups = ["a", "a", "a", "b"]
    per_group = per_group_mean(rows, groups)
    assert per_group == [
        {"group": "a", "n_images": 3, "dice": pytest.approx(1 / 3)},
        {"group": "b", "n_images": 1, "dice": 0.5},
    ]
    out = aggregate(rows, groups, n_bootstrap=100)
    assert out["n_groups"] == 2
    assert out["per_group"]["dice"]["mean"] == pytest.approx((1 / 3 + 0.5) / 2)
    assert out["per_image"]["dice"]["mean"] == pytest.approx(0.375)
    with pytest.raises(DataError):
        per_group_mean(rows, ["a"])


def test_multiclass_label_scores_hand_case() -> None:
    truth = np.array([[0, 1, 1, 2], [0, 0, 2, 2]])
    pred = np.array([[0, 1, 2, 2], [0, 1, 2, 2]])
    out = multiclass_label_scores(pred, truth, [1, 2, 4])
    one = out["per_label"]["1"]
    assert one["sensitivity"] == pytest.approx(0.5)  # 1 of 2 truth pixels
    assert one["precision"] == pytest.approx(0.5)  # 1 of 2 predicted
    assert one["specificity"] == pytest.approx(5 / 6)
    assert one["f1"] == pytest.approx(0.5)
    two = out["per_label"]["2"]
    assert two["sensitivity"] == 1.0 and two["precision"] == pytest.approx(0.75)
    assert out["per_label"]["4"]["f1"] is None  # absent from both maps
    assert out["mean"]["f1"] == pytest.approx((0.5 + 2 * 3 / (2 * 3 + 1)) / 2)


# ---- BraTS -----------------------------------------------------------------------------


def _label_map(enhancing: int, extra3: bool = False) -> np.ndarray:
    lab = np.zeros((6, 6), dtype=np.int64)
    lab[0, :] = 2  # oedema: 6
    lab[1, :3] = 1  # necrosis: 3
    lab[2, :2] = enhancing  # enhancing: 2
    if extra3:
        lab[3, :4] = 3  # 2013 non-enhancing: 4
    return lab


def test_regions_in_each_convention() -> None:
    r17 = to_regions(_label_map(4), "brats2017")
    assert (r17["WT"].sum(), r17["TC"].sum(), r17["ET"].sum()) == (11, 5, 2)
    r23 = to_regions(_label_map(3), "brats2023")
    assert (r23["WT"].sum(), r23["TC"].sum(), r23["ET"].sum()) == (11, 5, 2)
    r13 = to_regions(_label_map(4, extra3=True), "brats2013")
    assert (r13["WT"].sum(), r13["TC"].sum(), r13["ET"].sum()) == (15, 9, 2)
    for regions in (r17, r23, r13):
        assert not (regions["ET"] & ~regions["TC"]).any()
        assert not (regions["TC"] & ~regions["WT"]).any()


def test_auto_convention_and_float_labels() -> None:
    assert detect_convention(_label_map(4)) == "brats2017"
    assert detect_convention(_label_map(3)) == "brats2023"
    assert detect_convention(_label_map(4, extra3=True)) == "brats2013"
    auto = to_regions(_label_map(3).astype(np.float32), "auto")
    assert auto["ET"].sum() == 2
    with pytest.raises(DataError):
        to_regions(np.full((2, 2), 2.5), "auto")
    with pytest.raises(DataError):
        to_regions(_label_map(3), "brats2017")  # 3 is not a 2017 label
    with pytest.raises(DataError):
        to_regions(_label_map(4), "brats2099")


def test_remap_round_trip_and_2013_merge() -> None:
    lab17 = _label_map(4)
    lab23 = remap_labels(lab17, "brats2017", "brats2023")
    assert set(np.unique(lab23)) == {0, 1, 2, 3}
    assert np.array_equal(remap_labels(lab23, "brats2023", "brats2017"), lab17)
    lab13 = _label_map(4, extra3=True)
    merged = remap_labels(lab13, "brats2013", "brats2017")
    assert np.array_equal(to_regions(merged, "brats2017")["TC"], to_regions(lab13)["TC"])
    assert not (merged == 3).any()


def test_regions_to_labels_nests_and_inverts() -> None:
    lab = _label_map(3)
    regions = to_regions(lab, "brats2023")
    back = regions_to_labels(regions["WT"], regions["TC"], regions["ET"], "brats2023")
    assert np.array_equal(back, lab)
    back17 = regions_to_labels(regions["WT"], regions["TC"], regions["ET"], "brats2017")
    assert np.array_equal(back17, remap_labels(lab, "brats2023", "brats2017"))
    # An ET voxel outside predicted TC/WT is still tumour core and whole tumour.
    wt = np.zeros((3, 3), bool)
    et = wt.copy()
    et[1, 1] = True
    out = regions_to_labels(wt, wt, et, "brats2023")
    assert to_regions(out, "brats2023")["WT"][1, 1]


def test_brats_case_scores_volumes_and_dice() -> None:
    truth = np.zeros((8, 8, 4), dtype=np.int64)
    truth[2:6, 2:6, 1:3] = 2
    truth[3:5, 3:5, 1:3] = 4  # 8 voxels ET
    pred = truth.copy()
    pred[3:5, 3:5, 1:3] = 1  # ET predicted as necrosis
    out = brats_case_scores(pred, truth, spacing=(1.0, 1.0, 2.0))
    assert out["convention"] == "brats2017"
    assert out["WT"]["dice"] == 1.0 and out["TC"]["dice"] == 1.0
    assert out["ET"]["dice"] == 0.0
    assert out["ET"]["volume_truth_ml"] == pytest.approx(8 * 2.0 / 1000)
    assert out["ET"]["volume_pred_ml"] == 0.0
    assert out["WT"]["voxels_truth"] == 32
    json.dumps(out)


@pytest.mark.realdata
def test_real_brats2013_case(shared_data) -> None:
    import nibabel as nib

    path = shared_data / "brats2013-4cases" / "brats_2013_pat0001_1" / "OTMultiClass.nii.gz"
    img = nib.load(path)
    labels = np.asarray(img.dataobj)
    assert detect_convention(labels) == "brats2013"
    regions = to_regions(labels)
    assert regions["ET"].any() and not (regions["TC"] & ~regions["WT"]).any()
    # Crop to the tumour (plus a margin) to keep the distance computations quick.
    idx = np.argwhere(regions["WT"])
    lo, hi = np.maximum(idx.min(0) - 2, 0), idx.max(0) + 3
    crop = labels[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    as17 = remap_labels(crop, "brats2013", "brats2017")
    out = brats_case_scores(as17, crop, spacing=img.header.get_zooms()[:3], convention="brats2013")
    for region in ("WT", "TC", "ET"):
        assert out[region]["dice"] == 1.0
        assert out[region]["hd95"] == 0.0
    assert out["WT"]["volume_truth_ml"] == pytest.approx(regions["WT"].sum() / 1000)
