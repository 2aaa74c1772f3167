"""Segmentation metrics per image, an explicit empty-mask rule, and summaries with bootstrap CIs.

Dice, IoU and HD95 come from MONAI (``compute_dice``, ``compute_iou``,
``compute_hausdorff_distance``); the empty-mask cases, where those are undefined, follow
:class:`EmptyRule`. Sensitivity, specificity and precision are ratios of pixel counts.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from braintumor.errors import DataError

SEGMENTATION_METRICS = ("dice", "iou", "sensitivity", "specificity", "precision", "hd95")


@dataclass(frozen=True)
class EmptyRule:
    """What the metrics are when a mask is empty, where the formulas divide by zero.

    - ``both_empty_overlap``: Dice, IoU, sensitivity and precision when neither the prediction
      nor the truth has a pixel (a correct "no tumour").
    - ``both_empty_hd95``: HD95 in that case.
    - ``one_empty_overlap``: Dice and IoU when exactly one mask is empty.
    - ``one_empty_hd95``: HD95 then; ``None`` means the image diagonal (in mm when a spacing is
      given), the largest distance possible inside the image.
    - ``missed_precision``: precision when nothing is predicted but the truth has a tumour.
    - ``false_alarm_sensitivity``: sensitivity when the truth is empty but something is
      predicted; ``None`` (the default) leaves it undefined, and summaries skip it.
    """

    both_empty_overlap: float = 1.0
    both_empty_hd95: float = 0.0
    one_empty_overlap: float = 0.0
    one_empty_hd95: float | None = None
    missed_precision: float = 0.0
    false_alarm_sensitivity: float | None = None


def _spacing_tuple(spacing: Sequence[float] | None, ndim: int) -> tuple[float, ...] | None:
    if spacing is None:
        return None
    sp = tuple(float(s) for s in spacing)
    if len(sp) != ndim or not all(s > 0 and math.isfinite(s) for s in sp):
        raise DataError(f"segmentation metrics: spacing {spacing} does not fit a {ndim}-D mask")
    return sp


def image_diagonal(shape: Sequence[int], spacing: Sequence[float] | None = None) -> float:
    """Length of the image's diagonal, in pixels or (with ``spacing``) in mm."""
    sp = spacing if spacing is not None else (1.0,) * len(shape)
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, sp, strict=True))))


def _as_masks(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred), np.asarray(truth)
    if p.shape != t.shape:
        raise DataError(f"segmentation metrics: prediction {p.shape} and truth {t.shape} differ")
    if p.ndim not in (2, 3):
        raise DataError(f"segmentation metrics: masks must be 2-D or 3-D, got shape {p.shape}")
    return p.astype(bool), t.astype(bool)


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 else None


def segmentation_scores(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing: Sequence[float] | None = None,
    empty_rule: EmptyRule = EmptyRule(),
) -> dict:
    """Dice, IoU, sensitivity, specificity, precision and HD95 of one binary mask (2-D or 3-D).

    HD95 is the symmetric 95th-percentile Hausdorff distance between the mask surfaces, in mm
    when ``spacing`` (one value per axis) is given, else in pixels. Undefined cases follow
    ``empty_rule``; a value that stays undefined is ``None``.
    """
    p, t = _as_masks(pred, truth)
    sp = _spacing_tuple(spacing, p.ndim)
    tp = float(np.count_nonzero(p & t))
    fp = float(np.count_nonzero(p & ~t))
    fn = float(np.count_nonzero(~p & t))
    tn = float(p.size) - tp - fp - fn
    row: dict = {"specificity": _ratio(tn, tn + fp)}
    p_any, t_any = bool(p.any()), bool(t.any())
    if not p_any and not t_any:
        r = empty_rule
        row |= {
            "dice": r.both_empty_overlap,
            "iou": r.both_empty_overlap,
            "sensitivity": r.both_empty_overlap,
            "precision": r.both_empty_overlap,
            "hd95": r.both_empty_hd95,
        }
    elif not p_any or not t_any:
        r = empty_rule
        hd = r.one_empty_hd95 if r.one_empty_hd95 is not None else image_diagonal(p.shape, sp)
        row |= {
            "dice": r.one_empty_overlap,
            "iou": r.one_empty_overlap,
            "sensitivity": 0.0 if t_any else r.false_alarm_sensitivity,
            "precision": r.missed_precision if t_any else 0.0,
            "hd95": float(hd),
        }
    else:
        # Imported here so that the classification metrics load without torch and MONAI.
        import torch
        from monai.metrics import compute_dice, compute_hausdorff_distance, compute_iou

        # MONAI wants (batch, channel, *spatial) tensors.
        yp = torch.from_numpy(p)[None, None].double()
        yt = torch.from_numpy(t)[None, None].double()
        with warnings.catch_warnings():
            # MONAI 1.5+ warns about its own internal use of a deprecated argument.
            warnings.filterwarnings("ignore", category=FutureWarning, module="monai")
            hd95 = compute_hausdorff_distance(
                yp, yt, include_background=True, percentile=95, spacing=sp
            )
        row |= {
            "dice": float(compute_dice(yp, yt, include_background=True)[0, 0]),
            "iou": float(compute_iou(yp, yt, include_background=True)[0, 0]),
            "sensitivity": _ratio(tp, tp + fn),
            "precision": _ratio(tp, tp + fp),
            "hd95": float(hd95[0, 0]),
        }
    return {name: row[name] for name in SEGMENTATION_METRICS}


def multiclass_label_scores(
    pred_labels: np.ndarray, truth_labels: np.ndarray, labels: list[int]
) -> dict:
    """Per-label sensitivity, specificity, precision and F1 of a label map, and their means.

    Each label is scored one-vs-rest over all pixels (F1 equals that label's Dice). Returns
    ``{"per_label": {str(label): {...}}, "mean": {...}}``; a ratio with a zero denominator (a
    label absent from both maps) is ``None`` and left out of the mean.
    """
    p, t = np.asarray(pred_labels), np.asarray(truth_labels)
    if p.shape != t.shape:
        raise DataError(f"label scores: prediction {p.shape} and truth {t.shape} differ")
    per_label: dict[str, dict] = {}
    for label in labels:
        pm, tm = p == label, t == label
        tp = float(np.count_nonzero(pm & tm))
        fp = float(np.count_nonzero(pm & ~tm))
        fn = float(np.count_nonzero(~pm & tm))
        tn = float(p.size) - tp - fp - fn
        per_label[str(label)] = {
            "sensitivity": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp),
            "precision": _ratio(tp, tp + fp),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        }
    mean: dict[str, float | None] = {}
    for key in ("sensitivity", "specificity", "precision", "f1"):
        values = [v[key] for v in per_label.values() if v[key] is not None]
        mean[key] = float(np.mean(values)) if values else None
    return {"per_label": per_label, "mean": mean}


def _summary(values: np.ndarray, n_bootstrap: int, rng: np.random.Generator) -> dict:
    """Mean, median, std and percentile-bootstrap 95% CI of the mean."""
    if values.size == 0:
        return {"n": 0, "mean": None, "median": None, "std": None, "ci95": None}
    ci = None
    if n_bootstrap > 0 and values.size > 1:
        idx = rng.integers(0, values.size, size=(n_bootstrap, values.size))
        lo, hi = np.percentile(values[idx].mean(axis=1), [2.5, 97.5])
        ci = [float(lo), float(hi)]
    elif values.size == 1:
        ci = [float(values[0]), float(values[0])]
    return {
        "n": int(values.size),
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "ci95": ci,
    }


def value_summary(values: Sequence[float], n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """n, mean, median, std and percentile-bootstrap 95% CI of the mean of ``values``."""
    return _summary(np.asarray(values, dtype=float), n_bootstrap, np.random.default_rng(seed))


def _metric_names(rows: list[dict]) -> list[str]:
    names: list[str] = []
    for row in rows:
        for key, value in row.items():
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if numeric and key not in names:
                names.append(key)
    return names


def per_group_mean(rows: list[dict], groups: list[str]) -> list[dict]:
    """One row per group (patient): the mean of each metric over that group's rows.

    ``None`` values are skipped. This is the "mean of slices" per patient; for metrics of the
    patient's stacked volume, score the stacked 3-D masks with :func:`segmentation_scores`
    and pass those rows to :func:`aggregate` instead.
    """
    if len(rows) != len(groups):
        raise DataError(f"per-group mean: {len(rows)} rows but {len(groups)} group ids")
    names = _metric_names(rows)
    by_group: dict[str, list[dict]] = {}
    for row, group in zip(rows, groups, strict=True):
        by_group.setdefault(str(group), []).append(row)
    out = []
    for group, members in by_group.items():
        merged: dict = {"group": group, "n_images": len(members)}
        for name in names:
            values = [m[name] for m in members if m.get(name) is not None]
            merged[name] = float(np.mean(values)) if values else None
        out.append(merged)
    return out


def aggregate(
    rows: list[dict],
    groups: list[str] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """Summaries of per-image metric rows: ``{"per_image": {metric: summary}}``.

    A summary holds n, mean, median, std and a percentile-bootstrap 95% CI of the mean; None
    values are left out. With ``groups`` (a patient id per row) a ``"per_group"`` entry
    summarises :func:`per_group_mean` rows, so each patient counts once.
    """
    rng = np.random.default_rng(seed)
    names = _metric_names(rows)

    def summarise(table: list[dict]) -> dict:
        return {
            name: _summary(
                np.array([r[name] for r in table if r.get(name) is not None], dtype=float),
                n_bootstrap,
                rng,
            )
            for name in names
        }

    result: dict = {"n_images": len(rows), "per_image": summarise(rows)}
    if groups is not None:
        group_rows = per_group_mean(rows, groups)
        result["n_groups"] = len(group_rows)
        result["per_group"] = summarise(group_rows)
    return result
