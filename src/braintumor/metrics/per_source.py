"""Metrics of one test source, comparable across sources that hold different classes.

A held-out source may hold all classes (Sartaj's set), three tumour types and no healthy
slice (Figshare), or tumour / no tumour only. So next to accuracy this reports balanced
accuracy over the classes the source holds, and tumour detection (tumour = any class but
``no_tumor``): ROC-AUC of 1 - P(no_tumor), sensitivity and specificity, each with a
percentile bootstrap 95% interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from braintumor.data.samples import NO_TUMOR

#: The headline numbers of a source, in the order reports show them.
HEADLINE = ("balanced_accuracy", "accuracy", "tumor_auc", "sensitivity", "specificity")


def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y``: scikit-learn's balanced accuracy,
    without its warning when a bootstrap resample misses a class that was predicted."""
    return float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))


def _scores(
    y: np.ndarray, pred: np.ndarray, tumour_score: np.ndarray | None, no_index: int | None
) -> dict[str, float | None]:
    out: dict[str, float | None] = {
        "accuracy": float(np.mean(pred == y)),
        "balanced_accuracy": balanced_accuracy(y, pred),
        "tumor_auc": None,
        "sensitivity": None,
        "specificity": None,
    }
    if no_index is None or tumour_score is None:
        return out
    is_tumour = y != no_index
    said_tumour = pred != no_index
    if is_tumour.any():
        out["sensitivity"] = float(np.mean(said_tumour[is_tumour]))
    if (~is_tumour).any():
        out["specificity"] = float(np.mean(~said_tumour[~is_tumour]))
    if is_tumour.any() and (~is_tumour).any():
        out["tumor_auc"] = float(roc_auc_score(is_tumour, tumour_score))
    return out


def source_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """Headline metrics (:data:`HEADLINE`) of one source with bootstrap intervals in ``ci95``,
    and ``n`` and ``classes`` (test items per true class). Metrics that the source's classes
    do not define (AUC with one class present) are None."""
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(probs, dtype=float)
    if p.ndim == 1:
        p = np.stack([1.0 - p, p], axis=1)
    pred = p.argmax(axis=1)
    names = list(class_names)
    no_index = names.index(NO_TUMOR) if NO_TUMOR in names else None
    tumour_score = None if no_index is None else 1.0 - p[:, no_index]
    point = _scores(y, pred, tumour_score, no_index)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {key: [] for key in HEADLINE}
    for _ in range(n_bootstrap):
        idx = rng.integers(0, len(y), len(y))
        scores = _scores(
            y[idx], pred[idx], None if tumour_score is None else tumour_score[idx], no_index
        )
        for key, value in scores.items():
            if value is not None and point[key] is not None:
                draws[key].append(value)
    ci = {
        key: [float(v) for v in np.percentile(values, [2.5, 97.5])] if values else None
        for key, values in draws.items()
    }
    counts = {names[c]: int(np.sum(y == c)) for c in np.unique(y)}
    return {"n": len(y), "classes": counts, **point, "ci95": ci}


def mean_and_worst(per_source: dict[str, dict], keys: Sequence[str] = HEADLINE) -> dict:
    """Mean and worst (lowest, with its source) of each metric over the sources defining it."""
    out: dict[str, dict] = {}
    for key in keys:
        values = {s: m[key] for s, m in per_source.items() if m.get(key) is not None}
        if not values:
            continue
        worst = min(values, key=lambda source: values[source])
        out[key] = {
            "mean": float(np.mean(list(values.values()))),
            "worst": values[worst],
            "worst_source": worst,
            "n_sources": len(values),
        }
    return out
