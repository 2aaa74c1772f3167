"""BraTS label conventions, tumour regions (WT, TC, ET) and per-case region scores.

Conventions (0 is background in all):

- ``brats2017`` (BraTS 2017-2021): 1 necrotic / non-enhancing core, 2 oedema, 4 enhancing.
- ``brats2023`` (BraTS 2023+, nnU-Net after remapping 4 -> 3): 1 necrotic core, 2 oedema,
  3 enhancing.
- ``brats2013`` (BraTS 2013-2015): 1 necrosis, 2 oedema, 3 non-enhancing tumour,
  4 enhancing.

Regions: whole tumour WT = every tumour label; tumour core TC = WT without oedema; enhancing
tumour ET = the enhancing label. They are nested: ET inside TC inside WT.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from braintumor.errors import DataError
from braintumor.metrics.segmentation import EmptyRule, segmentation_scores

REGIONS = ("WT", "TC", "ET")

# Labels that make up each region, per convention.
REGION_LABELS: dict[str, dict[str, tuple[int, ...]]] = {
    "brats2017": {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)},
    "brats2023": {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)},
    "brats2013": {"WT": (1, 2, 3, 4), "TC": (1, 3, 4), "ET": (4,)},
}
VALID_LABELS = {
    "brats2017": (0, 1, 2, 4),
    "brats2023": (0, 1, 2, 3),
    "brats2013": (0, 1, 2, 3, 4),
}
# Label mappings between conventions. 2013's non-enhancing tumour (3) joins label 1, as the
# 2017 release merged them; going to 2013 keeps 1 as it is (it then means necrosis and
# non-enhancing tumour together).
_REMAP: dict[tuple[str, str], dict[int, int]] = {
    ("brats2017", "brats2023"): {0: 0, 1: 1, 2: 2, 4: 3},
    ("brats2023", "brats2017"): {0: 0, 1: 1, 2: 2, 3: 4},
    ("brats2013", "brats2017"): {0: 0, 1: 1, 2: 2, 3: 1, 4: 4},
    ("brats2013", "brats2023"): {0: 0, 1: 1, 2: 2, 3: 1, 4: 3},
    ("brats2017", "brats2013"): {0: 0, 1: 1, 2: 2, 4: 4},
    ("brats2023", "brats2013"): {0: 0, 1: 1, 2: 2, 3: 4},
}


def _as_int_labels(labels: np.ndarray) -> np.ndarray:
    """Integer label map; NIfTI labels are often stored as floats holding whole numbers."""
    arr = np.asarray(labels)
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        return arr.astype(np.int64)
    rounded = np.rint(arr)
    if not np.isfinite(arr).all() or np.abs(arr - rounded).max(initial=0.0) > 1e-3:
        raise DataError("BraTS labels: the label map holds values that are not whole numbers")
    return rounded.astype(np.int64)


def _present(labels: np.ndarray) -> set[int]:
    """The distinct labels of an integer map (bincount is far faster than unique on volumes)."""
    if labels.size == 0:
        return set()
    if labels.min() >= 0 and labels.max() < 256:
        return set(np.flatnonzero(np.bincount(labels.ravel())).tolist())
    return set(np.unique(labels).tolist())


def detect_convention(*label_maps: np.ndarray) -> str:
    """Guess the convention from the labels present in one or more label maps.

    3 and 4 together -> brats2013; 4 without 3 -> brats2017; 3 without 4 -> brats2023; neither
    -> brats2017 (the regions are then the same in every convention). A 2013 map holding 3 but
    no 4 cannot be told from brats2023: pass the convention explicitly for 2013 data.
    """
    present: set[int] = set()
    for labels in label_maps:
        present |= _present(_as_int_labels(labels))
    if 3 in present and 4 in present:
        return "brats2013"
    if 3 in present:
        return "brats2023"
    return "brats2017"


def _resolve(convention: str, *label_maps: np.ndarray) -> str:
    if convention == "auto":
        return detect_convention(*label_maps)
    if convention not in REGION_LABELS:
        raise DataError(
            f"BraTS labels: unknown convention {convention!r}; "
            f"use one of {', '.join(REGION_LABELS)} or 'auto'"
        )
    return convention


def _check_labels(labels: np.ndarray, convention: str) -> None:
    extra = sorted(_present(labels) - set(VALID_LABELS[convention]))
    if extra:
        raise DataError(
            f"BraTS labels: values {extra} are not labels of {convention} "
            f"(expected {list(VALID_LABELS[convention])})"
        )


def to_regions(labels: np.ndarray, convention: str = "auto") -> dict[str, np.ndarray]:
    """Boolean WT, TC and ET masks of a label map (see the module docstring for the labels)."""
    arr = _as_int_labels(labels)
    conv = _resolve(convention, arr)
    _check_labels(arr, conv)
    return {region: np.isin(arr, members) for region, members in REGION_LABELS[conv].items()}


def remap_labels(labels: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Map a label map from convention ``src`` to ``dst`` (e.g. 4 -> 3 for brats2017 -> 2023)."""
    arr = _as_int_labels(labels)
    src = _resolve(src, arr)
    if dst not in REGION_LABELS:
        raise DataError(f"BraTS labels: unknown convention {dst!r}")
    _check_labels(arr, src)
    if src == dst:
        return arr.copy()
    table = np.zeros(max(VALID_LABELS[src]) + 1, dtype=np.int64)
    for a, b in _REMAP[(src, dst)].items():
        table[a] = b
    return table[arr]


def regions_to_labels(
    wt: np.ndarray, tc: np.ndarray, et: np.ndarray, convention: str = "brats2023"
) -> np.ndarray:
    """Label map from region masks (a region-based network's thresholded outputs).

    Nesting is enforced the way nnU-Net does: ET wins, then TC (label 1), then WT (oedema, 2),
    so an ET voxel outside the predicted TC still counts as tumour core. For ``brats2013``
    the core that is not enhancing is written as 1 (1 and 3 cannot be told apart).
    """
    wt, tc, et = (np.asarray(m).astype(bool) for m in (wt, tc, et))
    if not (wt.shape == tc.shape == et.shape):
        raise DataError(f"BraTS regions: shapes differ: {wt.shape}, {tc.shape}, {et.shape}")
    if convention not in REGION_LABELS:
        raise DataError(f"BraTS labels: unknown convention {convention!r}")
    enhancing = REGION_LABELS[convention]["ET"][0]
    out = np.zeros(wt.shape, dtype=np.uint8)
    out[wt] = 2
    out[tc] = 1
    out[et] = enhancing
    return out


def brats_case_scores(
    pred_labels: np.ndarray,
    truth_labels: np.ndarray,
    spacing: Sequence[float] | None = None,
    convention: str = "auto",
    empty_rule: EmptyRule = EmptyRule(),
) -> dict:
    """Dice, HD95 (mm with ``spacing``) and volumes (mL) of WT, TC and ET for one case.

    With ``"auto"`` the convention is detected from the truth and prediction together. Each
    region holds every :func:`segmentation_scores` metric plus ``volume_pred_ml`` and
    ``volume_truth_ml`` (None without a spacing) and the voxel counts.
    """
    pred, truth = _as_int_labels(pred_labels), _as_int_labels(truth_labels)
    if pred.shape != truth.shape:
        raise DataError(f"BraTS scores: prediction {pred.shape} and truth {truth.shape} differ")
    conv = _resolve(convention, truth, pred)
    pred_regions = to_regions(pred, conv)
    truth_regions = to_regions(truth, conv)
    voxel_ml = float(np.prod(spacing)) / 1000.0 if spacing is not None else None
    out: dict = {"convention": conv}
    for region in REGIONS:
        p, t = pred_regions[region], truth_regions[region]
        scores = segmentation_scores(p, t, spacing=spacing, empty_rule=empty_rule)
        n_pred, n_truth = int(p.sum()), int(t.sum())
        scores |= {
            "voxels_pred": n_pred,
            "voxels_truth": n_truth,
            "volume_pred_ml": n_pred * voxel_ml if voxel_ml is not None else None,
            "volume_truth_ml": n_truth * voxel_ml if voxel_ml is not None else None,
        }
        out[region] = scores
    return out
