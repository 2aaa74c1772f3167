"""Classification metrics with bootstrap confidence intervals.

Point estimates come from scikit-learn. The bootstrap is vectorised: each resample is a row of
counts (how often each test item was drawn), so accuracy, macro F1 and macro ROC-AUC of all
resamples are matrix products over those counts instead of a Python loop over resamples.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

from braintumor.errors import DataError
from braintumor.metrics.calibration import expected_calibration_error, reliability_curve


def _check_inputs(
    y_true: np.ndarray, probs: np.ndarray, class_names: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).ravel()
    p = np.asarray(probs, dtype=float)
    k = len(class_names)
    if p.ndim == 1 and k == 2:  # binary given as P(positive)
        p = np.stack([1.0 - p, p], axis=1)
    if p.ndim != 2 or p.shape[1] != k:
        raise DataError(f"classification metrics: probabilities {p.shape} do not fit {k} classes")
    if y.shape[0] != p.shape[0] or y.shape[0] == 0:
        raise DataError(
            f"classification metrics: {y.shape[0]} labels but {p.shape[0]} probability rows"
        )
    if not np.isfinite(p).all():
        raise DataError("classification metrics: probabilities contain NaN or infinity")
    if not np.all(np.equal(np.mod(y, 1), 0)) or y.min() < 0 or y.max() >= k:
        raise DataError(f"classification metrics: labels must be integers in [0, {k - 1}]")
    return y.astype(int), p


def _ovr_auc(y: np.ndarray, p: np.ndarray, k: int) -> list[float | None]:
    """One-vs-rest ROC-AUC per class; None where a class is absent (or alone) in ``y``."""
    out: list[float | None] = []
    for c in range(k):
        positives = y == c
        if positives.all() or not positives.any():
            out.append(None)
        else:
            out.append(float(roc_auc_score(positives, p[:, c])))
    return out


def _weighted_auc(counts: np.ndarray, positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    """ROC-AUC of every resample at once; ``counts`` is (B, N), ties count one half.

    AUC = P(score_pos > score_neg) + 0.5 P(equal); items are sorted once and grouped by equal
    score, then each resample's pairs are counted with cumulative sums of its counts.
    """
    order = np.argsort(score, kind="mergesort")
    s_sorted = score[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    c = counts[:, order]
    pos_sorted = positive[order]
    pos_g = np.add.reduceat(c * pos_sorted, starts, axis=1)
    neg_g = np.add.reduceat(c * ~pos_sorted, starts, axis=1)
    neg_below = np.cumsum(neg_g, axis=1) - neg_g
    pairs = (pos_g * (neg_below + 0.5 * neg_g)).sum(axis=1)
    n_pos, n_neg = pos_g.sum(axis=1), neg_g.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), pairs / (n_pos * n_neg), np.nan)


def _resample_scores(
    counts: np.ndarray, y: np.ndarray, p: np.ndarray, pred: np.ndarray
) -> np.ndarray:
    """(B, 3) accuracy, macro F1 and macro AUC of the resamples given as (B, N) draw counts."""
    n, k = p.shape
    accuracy = counts @ (pred == y).astype(float) / n

    # Macro F1 over the classes present in the resample's truth or predictions (sklearn's rule).
    onehot_true = np.eye(k)[y]
    onehot_pred = np.eye(k)[pred]
    tp = counts @ (onehot_true * onehot_pred)
    n_true, n_pred = counts @ onehot_true, counts @ onehot_pred
    present = (n_true + n_pred) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(present, 2 * tp / (n_true + n_pred), 0.0)
    macro_f1 = f1.sum(axis=1) / present.sum(axis=1)

    if k == 2:
        auc = _weighted_auc(counts, y == 1, p[:, 1])
    else:
        per_class = np.stack([_weighted_auc(counts, y == c, p[:, c]) for c in range(k)], axis=1)
        valid = ~np.isnan(per_class)
        auc = np.where(
            valid.any(axis=1),
            np.nansum(per_class, axis=1) / np.maximum(valid.sum(axis=1), 1),
            np.nan,
        )
    return np.stack([accuracy, macro_f1, auc], axis=1)


def _bootstrap(y: np.ndarray, p: np.ndarray, n_bootstrap: int, seed: int) -> dict[str, list]:
    """Percentile 95% intervals of accuracy, macro F1 and macro AUC over resampled test sets."""
    n = p.shape[0]
    rng = np.random.default_rng(seed)
    pred = p.argmax(axis=1)
    # Resamples are processed in chunks so the (B, N) count matrix stays a few tens of MB.
    chunk = max(1, min(n_bootstrap, 2_000_000 // n))
    parts = []
    for start in range(0, n_bootstrap, chunk):
        b = min(chunk, n_bootstrap - start)
        idx = rng.integers(0, n, size=(b, n))
        flat = (np.arange(b)[:, None] * n + idx).ravel()
        counts = np.bincount(flat, minlength=b * n).reshape(b, n).astype(float)
        parts.append(_resample_scores(counts, y, p, pred))
    scores = np.concatenate(parts, axis=0)

    def interval(values: np.ndarray) -> list[float] | None:
        values = values[np.isfinite(values)]
        if values.size == 0:
            return None
        lo, hi = np.percentile(values, [2.5, 97.5])
        return [float(lo), float(hi)]

    return {
        "accuracy": interval(scores[:, 0]),
        "macro_f1": interval(scores[:, 1]),
        "macro_roc_auc": interval(scores[:, 2]),
    }


def classification_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: list[str],
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """Every classification number the report shows, as a JSON-serialisable dict.

    ``y_true`` holds class indices (N,), ``probs`` the predicted probabilities (N, K) (or (N,)
    for P(positive) when K = 2); the prediction is the arg-max. Keys: ``n``, ``class_names``,
    ``accuracy``, ``balanced_accuracy``, ``per_class`` (precision, recall, f1, support, roc_auc),
    ``macro`` (precision, recall, f1, roc_auc), ``confusion_matrix`` (rows = truth),
    ``ece``, ``reliability`` and ``ci95`` (percentile bootstrap intervals for accuracy, macro F1
    and macro ROC-AUC; ``n_bootstrap`` = 0 skips it). ROC-AUC is one-vs-rest and None for a
    class absent from ``y_true``; for two classes the macro AUC is the positive (index 1) class's.
    """
    y, p = _check_inputs(y_true, probs, class_names)
    k = len(class_names)
    pred = p.argmax(axis=1)
    labels = list(range(k))
    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, labels=labels, zero_division=0
    )
    aucs = _ovr_auc(y, p, k)
    if k == 2:
        macro_auc = aucs[1]
    else:
        defined = [a for a in aucs if a is not None]
        macro_auc = float(np.mean(defined)) if defined else None
    present = sorted(set(y.tolist()) | set(pred.tolist()))
    macro_p, macro_r, _, _ = precision_recall_fscore_support(
        y, pred, labels=present, average="macro", zero_division=0
    )
    result = {
        "n": int(y.shape[0]),
        "class_names": list(class_names),
        "accuracy": float(accuracy_score(y, pred)),
        # Mean recall over the classes in the truth: sklearn's balanced accuracy, without its
        # warning when a class is predicted but absent from the truth.
        "balanced_accuracy": float(np.mean(recall[support > 0])),
        "per_class": {
            name: {
                "precision": float(precision[c]),
                "recall": float(recall[c]),
                "f1": float(f1[c]),
                "support": int(support[c]),
                "roc_auc": aucs[c],
            }
            for c, name in enumerate(class_names)
        },
        "macro": {
            "precision": float(macro_p),
            "recall": float(macro_r),
            # Averaged over classes seen in truth or prediction, as sklearn does by default.
            "f1": float(f1_score(y, pred, labels=present, average="macro", zero_division=0)),
            "roc_auc": macro_auc,
        },
        "confusion_matrix": confusion_matrix(y, pred, labels=labels).astype(int).tolist(),
        "ece": expected_calibration_error(y, p),
        "reliability": reliability_curve(y, p),
        "n_bootstrap": int(n_bootstrap),
        "ci95": _bootstrap(y, p, n_bootstrap, seed) if n_bootstrap > 0 else None,
    }
    return result
