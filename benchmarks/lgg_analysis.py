"""Analyses of LGG models on the shared 20 patients, run through ``benchmarks/lgg.py``.

``stack-rule`` and ``thresholds`` take the fold models of a finished ``lgg.py cv`` and choose
their inference settings afresh on each fold's validation patients; ``slice-breakdown`` splits
binary models' tumour ROC-AUC on LGG's slices by tumour size and by place in the stack. The
docstring of ``lgg.py`` says what each writes.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BRAINTUMOR_SHARED_DATA", ROOT.parent / "shared" / "data"))
LGG = SHARED / "lgg-kaggle3m"


def machine() -> dict[str, Any]:
    """The Python version, CPU count and load average at the start of a benchmark."""
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
    }


def fold_samples(fold_dir: Path) -> dict[str, list[Any]]:
    """The fold's samples by split, as its ``splits.csv`` assigned them."""
    from braintumor.data.layouts import detect_layout

    by_id = {s.id: s for s in detect_layout(LGG).samples}
    with (fold_dir / "splits.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    splits: dict[str, list[Any]] = {}
    for row in rows:
        splits.setdefault(row["split"], []).append(by_id[row["id"]])
    return splits


def fold_models(
    args: argparse.Namespace,
) -> Iterator[tuple[Path, dict[str, list[Any]], Any, dict]]:
    """Each finished fold of the ``--work`` folders: its folder, samples by split, loaded model
    and the inference settings chosen afresh on its validation patients."""
    from braintumor.inference.choice import choose_inference
    from braintumor.models.folder import load_model_dir
    from braintumor.recipe_options import InferenceOptions

    fold_dirs = sorted(d for work in args.work_dirs for d in (work / "cv").glob("fold-*"))
    for fold_dir in fold_dirs:
        if not (fold_dir / "model" / "model.json").is_file():
            continue
        splits = fold_samples(fold_dir)
        loaded = load_model_dir(fold_dir / "model")
        yield fold_dir, splits, loaded, choose_inference(loaded, splits["val"], InferenceOptions())


def stack_rule(args: argparse.Namespace) -> dict[str, Any]:
    import dataclasses
    import tempfile

    from braintumor.evaluation.segmentation import evaluate_segmenter
    from braintumor.metrics.segmentation import value_summary

    start = time.perf_counter()
    folds, patients = [], {"chosen": [], "without_stack_rule": []}
    for fold_dir, splits, loaded, chosen in fold_models(args):
        row: dict[str, Any] = {"fold": fold_dir.name, "choice": chosen}
        for name, stack in (("chosen", chosen["stack_components"]), ("without_stack_rule", False)):
            settings = {**chosen, "stack_components": stack}
            info = dataclasses.replace(loaded.info, inference=settings)
            with tempfile.TemporaryDirectory() as out:
                metrics = evaluate_segmenter(
                    dataclasses.replace(loaded, info=info), splits["test"], Path(out) / "eval"
                )
            per_patient = metrics["per_patient"]
            row[name] = {
                "patient_dice": per_patient["dice"],
                "detection": per_patient["detection"],
                "patients": {p["patient"]: round(p["dice"], 4) for p in per_patient["patients"]},
            }
            patients[name] += [p["dice"] for p in per_patient["patients"]]
        print(
            f"{fold_dir.name}: stack rule {chosen['stack_components']}, per-patient Dice "
            f"{row['chosen']['patient_dice']['mean']:.3f} "
            f"(without it {row['without_stack_rule']['patient_dice']['mean']:.3f})",
            flush=True,
        )
        folds.append(row)
    return {
        "command": " ".join(["python", *sys.argv]),
        "machine": machine(),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "folds": folds,
        "pooled": {name: value_summary(values) for name, values in patients.items()},
    }


THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def patient_dice(masks: list[Any], truths: list[Any], paths: list[str]) -> list[float]:
    """Volume Dice per patient folder, as ``evaluate`` scores a patient's stack."""
    from braintumor.metrics.patient import patient_rows, slice_counts

    counts = [slice_counts(mask, truth) for mask, truth in zip(masks, truths, strict=True)]
    return [row["dice"] for row in patient_rows(counts, [Path(p).parent.name for p in paths])]


def _fold_probabilities(args: argparse.Namespace) -> Iterator[tuple[Path, dict, dict]]:
    """Each finished fold's settings chosen on validation and, per split (val, test), its
    tumour probability maps with the truths and paths they belong to."""
    from braintumor.inference.choice import readable_pairs
    from braintumor.inference.predictor import Predictor

    for fold_dir, splits, loaded, chosen in fold_models(args):
        sides = {}
        for side in ("val", "test"):
            images, truths, paths = readable_pairs(splits[side])
            probs = Predictor(loaded, device="cpu", tta=chosen["tta"]).segment(images)
            sides[side] = (probs, truths, paths)
        yield fold_dir, chosen, sides


def _masks(
    probs: list[np.ndarray], paths: list[str], chosen: dict, threshold: float = 0.5
) -> list[np.ndarray]:
    """Masks as the fold's chosen settings make them from ``probs``."""
    from braintumor.inference.outputs import tumour_mask
    from braintumor.inference.stack_filter import filter_stacks

    masks = [
        tumour_mask(p, threshold=threshold, keep_largest=chosen["keep_largest"]) for p in probs
    ]
    return filter_stacks(masks, paths) if chosen["stack_components"] else masks


#: Masks from a grid value, the probability maps, their paths and the fold's chosen settings.
MasksAt = Callable[[float, list[np.ndarray], list[str], dict[str, Any]], list[np.ndarray]]


def _grid_probe(
    args: argparse.Namespace, grid: tuple[float, ...], neutral: float, masks_at: MasksAt
) -> dict[str, Any]:
    """For each fold, the per-patient Dice of every value in ``grid`` (``masks_at(value,
    probs, paths, chosen)`` makes the masks) on validation and test patients; the value with
    the best validation mean is chosen (ties go to the one nearer ``neutral``) and its test
    patients pooled with the other folds'."""
    from braintumor.metrics.segmentation import value_summary

    start = time.perf_counter()
    folds: list[dict[str, Any]] = []
    pooled: dict[str, list[float]] = {}
    for fold_dir, chosen, sides in _fold_probabilities(args):
        dice = {
            side: {v: patient_dice(masks_at(v, probs, paths, chosen), truths, paths) for v in grid}
            for side, (probs, truths, paths) in sides.items()
        }
        val_mean = {v: float(np.mean(d)) for v, d in dice["val"].items()}
        best = max(grid, key=lambda v: (round(val_mean[v], 4), -abs(v - neutral)))
        for value in grid:
            pooled.setdefault(str(value), []).extend(dice["test"][value])
        pooled.setdefault("chosen", []).extend(dice["test"][best])
        folds.append(
            {
                "fold": fold_dir.name,
                "settings": {k: chosen[k] for k in ("tta", "keep_largest", "stack_components")},
                "val_mean": {str(v): round(m, 4) for v, m in val_mean.items()},
                "chosen": best,
                "test_mean": {str(v): round(float(np.mean(d)), 4) for v, d in dice["test"].items()},
            }
        )
        print(f"{fold_dir.name}: {best} chosen on validation", flush=True)
    return {
        "command": " ".join(["python", *sys.argv]),
        "machine": machine(),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "folds": folds,
        "pooled_test_patient_dice": {k: value_summary(v) for k, v in pooled.items()},
    }


def thresholds(args: argparse.Namespace) -> dict[str, Any]:
    """The mask threshold chosen on each fold's validation patients (:data:`THRESHOLDS`)."""
    return _grid_probe(
        args, THRESHOLDS, 0.5, lambda t, probs, paths, chosen: _masks(probs, paths, chosen, t)
    )


#: Weight of each neighbouring slice's probability map in :func:`smooth_stacks`.
NEIGHBOUR_WEIGHTS = (0.0, 0.25, 0.5, 1.0)


def smooth_stacks(probs: list[np.ndarray], paths: list[str], weight: float) -> list[np.ndarray]:
    """Each stack slice's probability map averaged with its neighbours' in the patient's
    stack (each neighbour weighing ``weight`` against the slice's 1); other maps unchanged.
    A tumour runs on over adjacent slices, a false spot mostly does not."""
    from braintumor.inference.stack_filter import stacks_of

    out = list(probs)
    if weight == 0:
        return out
    for stack in stacks_of(paths):
        maps = [probs[i] for i in stack]
        if len({m.shape for m in maps}) != 1:
            continue
        for k, index in enumerate(stack):
            near = [maps[j] for j in (k - 1, k + 1) if 0 <= j < len(maps)]
            out[index] = (maps[k] + weight * sum(near)) / (1 + weight * len(near))
    return out


def stack_smoothing(args: argparse.Namespace) -> dict[str, Any]:
    """The neighbour weight of :func:`smooth_stacks` chosen on each fold's validation
    patients (:data:`NEIGHBOUR_WEIGHTS`; the mask threshold stays 0.5)."""
    return _grid_probe(
        args,
        NEIGHBOUR_WEIGHTS,
        0.0,
        lambda w, probs, paths, chosen: _masks(smooth_stacks(probs, paths, w), paths, chosen),
    )


AREA_BINS = (1, 200, 800, 2000)  # tumour pixels of a 256x256 slice: lower edges
POSITION_BINS = 5  # fifths of a patient's stack, from its first slice to its last


def _auc(truth: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(truth, score)), 3)


def stack_fifths(paths: list[str]) -> np.ndarray:
    """Each slice's fifth of its patient's stack (0: first slices, 4: last)."""
    patient = [Path(p).parent.name for p in paths]
    number = np.array([int(Path(p).stem.rsplit("_", 1)[1]) for p in paths])
    last = {q: max(n for n, r in zip(number, patient, strict=True) if r == q) for q in patient}
    position = np.array(
        [(n - 1) / max(last[q] - 1, 1) for n, q in zip(number, patient, strict=True)]
    )
    return np.minimum((position * POSITION_BINS).astype(int), POSITION_BINS - 1)


def breakdown(probs: np.ndarray, area: np.ndarray, fifth: np.ndarray) -> dict[str, Any]:
    """Tumour ROC-AUC overall, per tumour size (against every empty slice) and in the middle
    of the stacks; mean tumour probability by stack fifth."""
    tumour = area > 0
    by_size = []
    for low, high in itertools.pairwise((*AREA_BINS, int(area.max()) + 1)):
        chosen = (area >= low) & (area < high)
        by_size.append(
            {
                "tumour_pixels": [low, high - 1],
                "tumour_slices": int(chosen.sum()),
                "auc_against_all_empty": _auc(tumour[chosen | ~tumour], probs[chosen | ~tumour]),
            }
        )
    by_position = []
    for k in range(POSITION_BINS):
        row: dict[str, Any] = {"stack_fifth": k + 1}
        for label, mask in (("empty", ~tumour), ("tumour", tumour)):
            chosen = mask & (fifth == k)
            row[f"{label}_slices"] = int(chosen.sum())
            row[f"{label}_mean_p"] = round(float(probs[chosen].mean()), 3) if any(chosen) else None
        by_position.append(row)
    middle = (fifth >= 1) & (fifth <= 3)
    return {
        "auc": _auc(tumour, probs),
        "auc_middle_three_fifths": _auc(tumour[middle], probs[middle]),
        "by_tumour_size": by_size,
        "by_stack_position": by_position,
    }


def slice_breakdown(args: argparse.Namespace) -> dict[str, Any]:
    """Where binary (tumour / no tumour) models fail on LGG's slices (:func:`breakdown`)."""
    from braintumor.data.layouts import detect_layout
    from braintumor.inference.choice import readable_pairs
    from braintumor.inference.predictor import Predictor
    from braintumor.models.folder import load_model_dir
    from braintumor.zoo.registry import resolve_model_ref

    if not args.models:
        sys.exit("error: slice-breakdown needs --model (a binary model folder or zoo:NAME)")
    images, truths, paths = readable_pairs(detect_layout(LGG).samples)
    area = np.array([int((t > 0).sum()) for t in truths])
    fifth = stack_fifths(paths)
    models = []
    for ref in args.models:
        loaded = load_model_dir(resolve_model_ref(ref))
        column = list(loaded.info.class_names).index("tumor")
        probs = Predictor(loaded, device="cpu", tta=False).classify(images)[:, column]
        models.append({"model": str(ref), **breakdown(probs, area, fifth)})
        print(f"{ref}: AUC {models[-1]['auc']}", flush=True)
    return {
        "command": " ".join(["python", *sys.argv]),
        "machine": machine(),
        "slices": len(paths),
        "tumour_slices": int((area > 0).sum()),
        "models": models,
    }
