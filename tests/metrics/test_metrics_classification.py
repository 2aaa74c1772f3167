"""Classification metrics against scikit-learn, the vectorised bootstrap, and calibration."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

from braintumor.errors import DataError
from braintumor.metrics import (
    classification_metrics,
    expected_calibration_error,
    reliability_curve,
)
from braintumor.metrics.classification import _weighted_auc

NAMES4 = ["glioma", "meningioma", "no_tumor", "pituitary"]


def _toy(n: int, k: int, seed: int, signal: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    p = rng.dirichlet(np.ones(k), n)
    p[np.arange(n), y] += signal * rng.random(n)
    return y, p / p.sum(axis=1, keepdims=True)


def test_point_estimates_match_sklearn() -> None:
    y, p = _toy(400, 4, seed=1)
    m = classification_metrics(y, p, NAMES4, n_bootstrap=0)
    pred = p.argmax(axis=1)
    prec, rec, f1, sup = precision_recall_fscore_support(y, pred, labels=range(4))
    assert m["accuracy"] == pytest.approx(float((pred == y).mean()))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    for c, name in enumerate(NAMES4):
        row = m["per_class"][name]
        assert row["precision"] == pytest.approx(prec[c])
        assert row["recall"] == pytest.approx(rec[c])
        assert row["f1"] == pytest.approx(f1[c])
        assert row["support"] == sup[c]
        assert row["roc_auc"] == pytest.approx(roc_auc_score(y == c, p[:, c]))
    assert m["macro"]["f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["macro"]["roc_auc"] == pytest.approx(
        roc_auc_score(y, p, multi_class="ovr", average="macro")
    )
    assert m["confusion_matrix"] == confusion_matrix(y, pred).tolist()
    assert m["ci95"] is None
    json.dumps(m)  # must be JSON-serialisable as returned


def test_binary_uses_positive_class_auc_and_accepts_1d_probs() -> None:
    y, p = _toy(300, 2, seed=2)
    m2 = classification_metrics(y, p, ["no", "yes"], n_bootstrap=50)
    m1 = classification_metrics(y, p[:, 1], ["no", "yes"], n_bootstrap=50)
    assert m2["macro"]["roc_auc"] == pytest.approx(roc_auc_score(y, p[:, 1]))
    assert m1["macro"]["roc_auc"] == pytest.approx(m2["macro"]["roc_auc"])
    assert m1["ci95"] == m2["ci95"]


def test_class_absent_from_truth_has_no_auc() -> None:
    y, p = _toy(200, 4, seed=3)
    y[y == 2] = 0
    m = classification_metrics(y, p, NAMES4, n_bootstrap=20)
    assert m["per_class"]["no_tumor"]["roc_auc"] is None
    others = [m["per_class"][n]["roc_auc"] for n in NAMES4 if n != "no_tumor"]
    assert m["macro"]["roc_auc"] == pytest.approx(np.mean(others))
    json.dumps(m)


@pytest.mark.parametrize(
    ("y", "p", "names"),
    [
        (np.array([0, 1, 5]), np.full((3, 2), 0.5), ["a", "b"]),
        (np.array([0, 1]), np.full((3, 2), 0.5), ["a", "b"]),
        (np.array([0, 1]), np.array([[0.5, np.nan], [0.5, 0.5]]), ["a", "b"]),
        (np.array([0, 1]), np.full((2, 3), 0.3), ["a", "b"]),
    ],
)
def test_bad_inputs_raise_data_error(y: np.ndarray, p: np.ndarray, names: list[str]) -> None:
    with pytest.raises(DataError):
        classification_metrics(y, p, names, n_bootstrap=0)


def test_weighted_auc_matches_sklearn_with_ties_and_repeats() -> None:
    rng = np.random.default_rng(4)
    score = np.round(rng.random(60), 1)  # many ties
    positive = rng.random(60) < 0.4
    counts = rng.integers(0, 4, size=(5, 60)).astype(float)
    counts[0] = 1.0
    got = _weighted_auc(counts, positive, score)
    for b in range(5):
        rep = np.repeat(np.arange(60), counts[b].astype(int))
        assert got[b] == pytest.approx(roc_auc_score(positive[rep], score[rep]))


def test_bootstrap_ci_contains_estimate_and_narrows_with_more_data() -> None:
    widths = []
    for n in (80, 2000):
        y, p = _toy(n, 4, seed=5)
        m = classification_metrics(y, p, NAMES4, n_bootstrap=500, seed=1)
        for key, point in (
            ("accuracy", m["accuracy"]),
            ("macro_f1", m["macro"]["f1"]),
            ("macro_roc_auc", m["macro"]["roc_auc"]),
        ):
            lo, hi = m["ci95"][key]
            assert lo <= point <= hi, key
        widths.append(m["ci95"]["accuracy"][1] - m["ci95"]["accuracy"][0])
    assert widths[1] < widths[0] / 2


def test_bootstrap_is_seeded_and_fast() -> None:
    y, p = _toy(1000, 4, seed=6)
    start = time.process_time()  # CPU time: robust to a busy machine
    a = classification_metrics(y, p, NAMES4, n_bootstrap=1000, seed=3)
    elapsed = time.process_time() - start
    b = classification_metrics(y, p, NAMES4, n_bootstrap=1000, seed=3)
    assert a["ci95"] == b["ci95"]
    assert elapsed < 2.0


def test_ece_zero_when_calibrated() -> None:
    y = np.array([0, 1, 2, 1])
    assert expected_calibration_error(y, np.eye(3)[y]) == pytest.approx(0.0)
    # Confidence 0.8 everywhere and right on 8 of 10 items: calibrated.
    y = np.zeros(10, dtype=int)
    p = np.tile([0.8, 0.2], (10, 1))
    p[:2] = [0.2, 0.8]
    y[:2] = 0  # the two items predicted as class 1 are wrong
    assert expected_calibration_error(y, p) == pytest.approx(0.0, abs=1e-6)  # float32


def test_ece_is_the_count_weighted_gap_of_the_reliability_curve() -> None:
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4) * 0.5, size=500)
    y = rng.integers(0, 4, size=500)
    curve = reliability_curve(y, p)
    gap = sum(
        n * abs(acc - conf)
        for conf, acc, n in zip(curve["confidence"], curve["accuracy"], curve["count"], strict=True)
        if n
    )
    assert expected_calibration_error(y, p) == pytest.approx(gap / 500, abs=1e-6)


def test_ece_large_when_overconfident_and_matches_hand_value() -> None:
    y = np.array([0, 1] * 50)
    p = np.tile([0.99, 0.01], (100, 1))  # always class 0 at 0.99, right half the time
    assert expected_calibration_error(y, p) > 0.2
    assert expected_calibration_error(y, p) == pytest.approx(0.49)
    # Two bins: conf 0.6 all right (gap 0.4), conf 0.9 all right (gap 0.1) -> (2*0.4 + 0.1)/3
    y = np.array([0, 0, 0])
    p = np.array([[0.6, 0.4], [0.6, 0.4], [0.9, 0.1]])
    assert expected_calibration_error(y, p, n_bins=10) == pytest.approx((0.8 + 0.1) / 3)


def test_reliability_curve_counts_and_empty_bins() -> None:
    y, p = _toy(250, 3, seed=7)
    curve = reliability_curve(y, p, n_bins=10)
    assert sum(curve["count"]) == 250
    assert len(curve["bin_edges"]) == 11
    for conf, acc, n in zip(curve["confidence"], curve["accuracy"], curve["count"], strict=True):
        assert (conf is None) == (n == 0)
        if n:
            assert 0.0 <= acc <= 1.0
    json.dumps(curve)
