"""Calibration of predicted probabilities: expected calibration error and reliability curves.

The ECE is torchmetrics' ``multiclass_calibration_error`` (top-label binning of Guo et al.,
2017). The reliability curve is written here: torchmetrics returns only the error, and
scikit-learn's ``calibration_curve`` covers the binary case only; it uses the same bins, and
``benchmarks/library_parity.py`` checks that the two agree on real predictions.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from braintumor.errors import DataError


def _checked(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels (N,) and probabilities (N, K); (N,) binary probabilities become two columns."""
    y_true = np.asarray(y_true).astype(int).ravel()
    probs = np.asarray(probs, dtype=float)
    if probs.ndim == 1:  # binary: probability of the positive class
        probs = np.stack([1.0 - probs, probs], axis=1)
    if probs.ndim != 2 or probs.shape[0] != y_true.shape[0]:
        raise DataError(
            f"calibration: probabilities of shape {probs.shape} do not match "
            f"{y_true.shape[0]} labels"
        )
    if not np.isfinite(probs).all():
        raise DataError("calibration: probabilities contain NaN or infinity")
    return y_true, probs


def _confidence_and_hits(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-label confidence and whether the top label is right, for (N,) or (N,K) probabilities."""
    y_true, probs = _checked(y_true, probs)
    confidence = probs.max(axis=1)
    hits = (probs.argmax(axis=1) == y_true).astype(float)
    return confidence, hits


def reliability_curve(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> dict:
    """Per-bin mean confidence, accuracy and count over ``n_bins`` equal-width confidence bins.

    Bins are ``(lo, hi]`` on the top-label confidence; the first bin also takes 0. Empty
    bins have ``None`` confidence and accuracy so the result stays JSON-serialisable.
    """
    if n_bins < 1:
        raise DataError(f"calibration: n_bins must be at least 1, got {n_bins}")
    confidence, hits = _confidence_and_hits(y_true, probs)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right=True puts a confidence equal to an upper edge in that bin: (lo, hi].
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=n_bins)
    hit_sum = np.bincount(which, weights=hits, minlength=n_bins)
    filled = counts > 0
    mean_conf = np.where(filled, conf_sum / np.maximum(counts, 1), np.nan)
    accuracy = np.where(filled, hit_sum / np.maximum(counts, 1), np.nan)
    return {
        "bin_edges": edges.tolist(),
        "confidence": [float(v) if f else None for v, f in zip(mean_conf, filled, strict=True)],
        "accuracy": [float(v) if f else None for v, f in zip(accuracy, filled, strict=True)],
        "count": counts.astype(int).tolist(),
    }


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    """ECE: the count-weighted mean of |accuracy - confidence| over the reliability bins.

    0 means the top-label confidence matches the observed accuracy in every bin; a model that
    says 0.99 and is right half the time scores about 0.49. Computed in float32 by
    torchmetrics (within 1e-7 of the float64 sum over :func:`reliability_curve`).
    """
    if n_bins < 1:
        raise DataError(f"calibration: n_bins must be at least 1, got {n_bins}")
    y_true, probs = _checked(y_true, probs)
    if len(y_true) == 0:
        raise DataError("calibration: no predictions to measure")
    error = multiclass_calibration_error(
        torch.from_numpy(probs).float(), torch.from_numpy(y_true), probs.shape[1], n_bins=n_bins
    )
    return float(error)
