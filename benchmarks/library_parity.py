"""Library parity: do MONAI / torchmetrics give what the hand-written pieces give, on real data?

    python benchmarks/library_parity.py [--n-seg 150] [--n-cls 300]

Three hand-written pieces are compared with the library piece that could replace them:

* post-processing of predicted masks (``inference/outputs.py``): ``keep_largest_component`` and
  ``drop_small_components`` against MONAI's ``KeepLargestConnectedComponent`` and
  ``RemoveSmallObjects``, on the thresholded predictions of the ``seg2d`` reference model on
  ``figshare-seg`` images (and on the true masks);
* the validation Dice ``training/module.py`` computed by hand until MONAI's ``compute_dice``
  replaced it, against that and torchmetrics' ``dice_score``, on the same predictions and their
  true masks, plus the empty cases of the documented empty rule (both empty: 1; one empty: 0);
* the expected calibration error ``metrics/calibration.py`` summed by hand over its reliability
  curve until torchmetrics replaced it, against torchmetrics' ``multiclass_calibration_error``
  (15 bins, L1), on the ``4class`` reference model's probabilities for ``sartaj-4class/Testing``
  slices, and on confidences that fall on bin edges.

For each pair the JSON holds how many outputs differ (or the largest difference) and the
seconds each took. Results go to ``benchmarks/results/library_parity.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from braintumor.atomic import write_text_atomic
from braintumor.data.layouts import detect_layout
from braintumor.inference.inputs import read_input, read_pair
from braintumor.inference.outputs import drop_small_components, keep_largest_component
from braintumor.inference.predictor import Predictor
from braintumor.metrics.calibration import reliability_curve
from braintumor.models.folder import load_model_dir
from braintumor.zoo.registry import resolve_model_ref

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED = Path(os.environ.get("BRAINTUMOR_SHARED_DATA", ROOT.parent / "shared" / "data"))
MIN_AREAS = (10, 50, 200)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _mask_pairs(n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Thresholded seg2d predictions of ``n`` figshare-seg images, and their true masks."""
    samples = sorted(detect_layout(SHARED / "figshare-seg").samples, key=lambda s: s.id)[:n]
    pairs = [read_pair(s) for s in samples]
    predictor = Predictor(load_model_dir(resolve_model_ref("zoo:seg2d")), device="cpu")
    probs = predictor.segment([image for image, _ in pairs])
    return [p >= 0.5 for p in probs], [truth > 0 for _, truth in pairs]


def compare_postprocessing(masks: list[np.ndarray]) -> dict[str, Any]:
    """Ours against MONAI on every mask: how many differ, and the seconds of each."""
    from monai.transforms import KeepLargestConnectedComponent, RemoveSmallObjects

    largest = KeepLargestConnectedComponent(connectivity=2)
    ours, t_ours = _timed(lambda: [keep_largest_component(m) for m in masks])
    theirs, t_theirs = _timed(
        lambda: [largest(torch.from_numpy(m[None]).int())[0].numpy() > 0 for m in masks]
    )
    out: dict[str, Any] = {
        "keep_largest": {
            "masks": len(masks),
            "multi_component_masks": int(sum(_n_components(m) > 1 for m in masks)),
            "differ": int(sum(not np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))),
            "seconds_ours": t_ours,
            "seconds_monai": t_theirs,
        }
    }
    for area in MIN_AREAS:
        remove = RemoveSmallObjects(min_size=area, connectivity=2)
        ours, t_ours = _timed(lambda a=area: [drop_small_components(m, a) for m in masks])
        theirs, t_theirs = _timed(
            lambda r=remove: [r(torch.from_numpy(m[None]))[0].numpy() > 0 for m in masks]
        )
        out[f"min_area_{area}"] = {
            "differ": int(sum(not np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))),
            "seconds_ours": t_ours,
            "seconds_monai": t_theirs,
        }
    return out


def edge_cases() -> dict[str, Any]:
    """The two rules where MONAI and ours part: a tie for largest, a component of min_area."""
    from monai.transforms import KeepLargestConnectedComponent, RemoveSmallObjects

    tie = np.zeros((8, 8), dtype=bool)
    tie[0:2, 0:2] = tie[5:7, 5:7] = True  # two components of 4 pixels
    monai_tie = KeepLargestConnectedComponent(connectivity=2)(torch.from_numpy(tie[None]).int())
    exact = np.zeros((8, 8), dtype=bool)
    exact[0:2, 0:2] = True  # one component of exactly min_area = 4 pixels
    monai_exact = RemoveSmallObjects(min_size=4, connectivity=2)(torch.from_numpy(exact[None]))
    return {
        "tie_kept_first_component": {
            "ours": bool(keep_largest_component(tie)[0, 0]),
            "monai": bool(monai_tie[0, 0, 0]),
        },
        "component_of_min_area_kept": {
            "ours": bool(drop_small_components(exact, 4).any()),
            "monai": bool(monai_exact.any()),
        },
    }


def _n_components(mask: np.ndarray) -> int:
    from skimage.measure import label

    return int(label(mask, connectivity=2).max())


def _our_dice(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """The hand-written validation Dice ``compute_dice`` replaced, per sample and channel."""
    dims = tuple(range(2, pred.ndim))
    intersection = (pred * truth).sum(dims)
    total = pred.sum(dims) + truth.sum(dims)
    return torch.where(total > 0, 2 * intersection / total.clamp(min=1), torch.ones_like(total))


def compare_dice(preds: list[np.ndarray], truths: list[np.ndarray]) -> dict[str, Any]:
    """Per-image Dice of the three implementations, real pairs plus the two empty cases."""
    from monai.metrics import compute_dice
    from torchmetrics.functional.segmentation import dice_score

    shape = preds[0].shape
    empty = np.zeros(shape, dtype=bool)
    cases = [
        *zip(preds, truths, strict=True),
        (empty, empty),
        (truths[0], empty),
        (empty, truths[0]),
    ]
    pairs = [(p, t) for p, t in cases if p.shape == t.shape == shape]
    pred = torch.from_numpy(np.stack([p for p, _ in pairs])[:, None]).float()
    truth = torch.from_numpy(np.stack([t for _, t in pairs])[:, None]).float()
    ours, t_ours = _timed(lambda: _our_dice(pred, truth)[:, 0])
    monai, t_monai = _timed(
        lambda: compute_dice(pred, truth, include_background=True, ignore_empty=False)[:, 0]
    )
    tm, t_tm = _timed(
        lambda: dice_score(
            pred[:, 0].long(), truth[:, 0].long(), num_classes=2, include_background=False,
            input_format="index",
        ).reshape(-1)
    )  # fmt: skip
    empties = {"both_empty": -3, "pred_only": -2, "truth_only": -1}
    return {
        "pairs": len(pairs),
        "monai_max_abs_diff": float((ours - monai).abs().max()),  # ours: hand-written
        "torchmetrics_max_abs_diff": float((ours - tm).abs().max()),
        "empty_cases": {
            name: {"ours": float(ours[i]), "monai": float(monai[i]), "torchmetrics": float(tm[i])}
            for name, i in empties.items()
        },
        "seconds_ours": t_ours,
        "seconds_monai": t_monai,
        "seconds_torchmetrics": t_tm,
    }


def _curve_ece(y: np.ndarray, p: np.ndarray) -> float:
    """The hand-written ECE torchmetrics replaced: the float64 count-weighted gap of the
    reliability curve (``metrics/calibration.py``)."""
    curve = reliability_curve(y, p, n_bins=15)
    gaps = zip(curve["confidence"], curve["accuracy"], curve["count"], strict=True)
    return sum(n * abs(acc - conf) for conf, acc, n in gaps if n) / sum(curve["count"])


def compare_ece(n: int) -> dict[str, Any]:
    """ECE of ours and torchmetrics on the 4class model's probabilities and on bin edges."""
    from torchmetrics.functional.classification import multiclass_calibration_error

    loaded = load_model_dir(resolve_model_ref("zoo:4class"))
    samples = detect_layout(SHARED / "sartaj-4class" / "Testing").samples
    rng = np.random.default_rng(0)
    chosen = [samples[i] for i in sorted(rng.choice(len(samples), min(n, len(samples)), False))]
    names = list(loaded.info.class_names)
    labels = np.array([names.index(str(s.label)) for s in chosen])
    probs = Predictor(loaded, device="cpu").classify([read_input(Path(s.image)) for s in chosen])

    def both(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
        ours, t_ours = _timed(lambda: _curve_ece(y, p))
        theirs, t_theirs = _timed(
            lambda: float(
                multiclass_calibration_error(
                    torch.from_numpy(p).float(), torch.from_numpy(y), p.shape[1], n_bins=15
                )
            )
        )
        return {"hand_written": ours, "torchmetrics": theirs, "seconds_hand_written": t_ours,
                "seconds_torchmetrics": t_theirs}  # fmt: skip

    # Confidences exactly on bin edges (k/15) and at 1.0, where the bin rule decides.
    edges = np.array([[c, 1 - c] for c in (1.0, 14 / 15, 0.6, 8 / 15, 0.8)], dtype=np.float64)
    edge_labels = np.array([0, 0, 1, 0, 1])
    return {
        "images": len(chosen),
        "model": both(labels, probs.astype(np.float64)),
        "bin_edges": both(edge_labels, edges),
    }


def main() -> None:
    """Run the three comparisons and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-seg", type=int, default=150, help="figshare-seg images")
    parser.add_argument("--n-cls", type=int, default=300, help="sartaj-4class/Testing images")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    preds, truths = _mask_pairs(args.n_seg)
    result = {
        "machine": platform.platform(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "load_average_1min": load,
        "postprocess_predictions": compare_postprocessing(preds),
        "postprocess_truth_masks": compare_postprocessing(truths),
        "postprocess_edge_cases": edge_cases(),
        "dice": compare_dice(preds, truths),
        "ece": compare_ece(args.n_cls),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "library_parity.json"
    write_text_atomic(out, json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
