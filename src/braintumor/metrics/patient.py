"""Per-patient scores of a stack of 2-D slices, as Buda et al. report LGG segmentation.

A patient's Dice is the Dice of the stacked volume: the overlap, prediction and truth pixel
counts summed over all of the patient's slices (so one large slice weighs more than a sliver,
and an empty slice predicted empty adds nothing), not the mean of the slices' Dice. Detection
asks, slice by slice, whether a tumour is present (any truth pixel) and whether one was
predicted (any predicted pixel).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from braintumor.errors import DataError
from braintumor.metrics.segmentation import EmptyRule, value_summary

#: The pixel counts each slice row must carry.
COUNT_KEYS = ("overlap_px", "truth_px", "predicted_px")


def slice_counts(pred: np.ndarray, truth: np.ndarray) -> dict[str, int]:
    """Overlap, truth and prediction pixel counts of one binary slice pair."""
    p, t = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    if p.shape != t.shape:
        raise DataError(f"slice counts: prediction {p.shape} and truth {t.shape} differ")
    return {
        "overlap_px": int(np.count_nonzero(p & t)),
        "truth_px": int(t.sum()),
        "predicted_px": int(p.sum()),
    }


def _overlap_scores(overlap: int, truth: int, pred: int, rule: EmptyRule) -> tuple[float, float]:
    """(Dice, IoU) from pixel counts, with the empty rule where both would divide by zero."""
    if truth == 0 and pred == 0:
        return rule.both_empty_overlap, rule.both_empty_overlap
    if truth == 0 or pred == 0:
        return rule.one_empty_overlap, rule.one_empty_overlap
    return 2.0 * overlap / (truth + pred), overlap / (truth + pred - overlap)


def patient_rows(
    rows: Sequence[dict], groups: Sequence[str], empty_rule: EmptyRule = EmptyRule()
) -> list[dict]:
    """One row per patient: volume Dice and IoU of the stacked slices, and slice counts.

    ``rows`` hold :data:`COUNT_KEYS` per slice; ``groups`` the patient of each row.
    """
    if len(rows) != len(groups):
        raise DataError(f"per-patient scores: {len(rows)} rows but {len(groups)} patient ids")
    sums: dict[str, dict[str, int]] = {}
    for row, group in zip(rows, groups, strict=True):
        missing = [k for k in COUNT_KEYS if k not in row]
        if missing:
            raise DataError(f"per-patient scores: row {row.get('id')} lacks {missing}")
        total = sums.setdefault(str(group), dict.fromkeys((*COUNT_KEYS, "slices", "tumour"), 0))
        for key in COUNT_KEYS:
            total[key] += int(row[key])
        total["slices"] += 1
        total["tumour"] += int(row["truth_px"]) > 0
    out = []
    for group, total in sums.items():
        dice, iou = _overlap_scores(
            total["overlap_px"], total["truth_px"], total["predicted_px"], empty_rule
        )
        out.append(
            {
                "patient": group,
                "dice": dice,
                "iou": iou,
                "n_slices": total["slices"],
                "tumour_slices": total["tumour"],
                "truth_px": total["truth_px"],
                "predicted_px": total["predicted_px"],
            }
        )
    return out


def detection_scores(rows: Sequence[dict]) -> dict:
    """Slice-level tumour detection: sensitivity, specificity and the four counts.

    A slice is positive when its truth mask has a pixel, predicted positive when the
    (post-processed) prediction has one. A ratio with nothing to divide is ``None``.
    """
    truth = np.array([int(r["truth_px"]) > 0 for r in rows], dtype=bool)
    pred = np.array([int(r["predicted_px"]) > 0 for r in rows], dtype=bool)
    tp, fn = int((truth & pred).sum()), int((truth & ~pred).sum())
    tn, fp = int((~truth & ~pred).sum()), int((~truth & pred).sum())
    return {
        "sensitivity": tp / (tp + fn) if tp + fn else None,
        "specificity": tn / (tn + fp) if tn + fp else None,
        "tp": tp,
        "fn": fn,
        "tn": tn,
        "fp": fp,
    }


def patient_summary(
    rows: Sequence[dict],
    groups: Sequence[str],
    empty_rule: EmptyRule = EmptyRule(),
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """Per-patient volume Dice/IoU (rows, and mean/median with a bootstrap 95% CI over
    patients), Dice over the slices that show tumour, and slice-level detection."""
    patients = patient_rows(rows, groups, empty_rule)
    tumour_slice_dice = [r["dice"] for r in rows if int(r["truth_px"]) > 0 and "dice" in r]
    return {
        "n_patients": len(patients),
        "dice": value_summary([p["dice"] for p in patients], n_bootstrap, seed),
        "iou": value_summary([p["iou"] for p in patients], n_bootstrap, seed + 1),
        "tumour_slice_dice": value_summary(tumour_slice_dice, n_bootstrap, seed + 2),
        "detection": detection_scores(rows),
        "patients": patients,
    }
