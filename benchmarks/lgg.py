"""LGG benchmarks on the shared 20 patients (Buda et al.'s per-patient protocol).

    python benchmarks/lgg.py cv --set max_minutes=10     # 5-fold patient-grouped CV, fast-cpu-lgg
    python benchmarks/lgg.py cv --fold 0 --out F.json    # one fold of it
    python benchmarks/lgg.py recipes                     # system-003 recipes: params, s/epoch
    python benchmarks/lgg.py stack-rule --work W         # the 3D stack rule on W's fold models
    python benchmarks/lgg.py thresholds --work W         # a validation-chosen mask threshold
    python benchmarks/lgg.py slice-breakdown --model M   # where a binary model fails on LGG

``cv`` trains one run per fold (``braintumor train fast-cpu-lgg --protocol kfold``) and writes
``benchmarks/results/lgg_cv.json``: per-fold and pooled per-patient volume Dice (mean, median,
bootstrap 95% CI), slice-level Dice/IoU, slice detection sensitivity/specificity and wall time.
``recipes`` times real training steps of each system-003 recipe on LGG slices (3 channels, no
pretrained weights) and writes ``benchmarks/results/lgg_recipes.json``: parameter counts,
seconds per step and per image, and the epoch time they give for a fold's training slices.
``stack-rule`` takes the fold models of a finished ``cv`` (``W/cv/fold-K/model``, each also
from its own work folder: ``--work`` is repeatable), chooses the inference settings afresh on
each fold's validation patients as training now does (TTA, largest component, the 3D component
rule across a patient's stack: ``braintumor.inference.stack_filter``), and evaluates each fold's
test patients with the choice and with the stack rule off; it writes the pooled per-patient
volume Dice of both (``benchmarks/results/lgg_stack-rule.json``).
``thresholds`` takes the same fold models and settings and asks whether the probability
threshold (0.5 everywhere) should be chosen on validation too: per-patient volume Dice of the
validation and test patients at thresholds 0.2-0.7, the threshold the validation patients
choose, and the test patients' pooled figure at each threshold and at the chosen one
(``benchmarks/results/lgg_thresholds.json``).
``slice-breakdown`` runs binary models (``--model``, repeatable: say a leave-one-source-out
fold model that never saw LGG) on all 776 slices and splits their tumour ROC-AUC by tumour
size and by the slice's place in its patient's stack
(``benchmarks/results/lgg_slice-breakdown.json``).
All record the machine's load average at the start and the exact overrides.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from braintumor.atomic import write_text_atomic
from braintumor.config import load_recipe
from braintumor.protocols.kfold import run_kfold

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED = Path(os.environ.get("BRAINTUMOR_SHARED_DATA", ROOT.parent / "shared" / "data"))
LGG = SHARED / "lgg-kaggle3m"
SYSTEM_003 = ("unet-lgg", "resnet50-unet-lgg", "resnet50-attention-unet-lgg")
TRAIN_SLICES = 520  # fold 0 of the 5-fold CV (seed 42): 520 train, 111 val, 145 test slices


def _machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
    }


def _cv(args: argparse.Namespace) -> dict[str, Any]:
    recipe = load_recipe(args.recipe, args.set)
    start = time.perf_counter()
    summary = run_kfold(
        recipe,
        LGG,
        args.work / "cv",
        folds=args.folds,
        resume=args.resume,
        only_folds=args.fold,
    )
    return {
        "command": " ".join(["python", *sys.argv]),
        "recipe": recipe.name,
        "overrides": args.set,
        "machine": _machine(),
        "wall_seconds": round(time.perf_counter() - start, 1),
        **summary,
    }


def _step_seconds(name: str, batch: int, steps: int, overrides: list[str]) -> dict[str, Any]:
    """Parameters and measured seconds per training step of recipe ``name`` on real LGG
    slices (the recipe's preprocessing, augmentation, loss, optimiser and bf16 autocast)."""
    import torch

    from braintumor.data.cache import decode_slices
    from braintumor.data.layouts import detect_layout
    from braintumor.models import build_model
    from braintumor.training.module import SegmentationModule
    from braintumor.training.setup import preprocess_spec

    recipe = load_recipe(name, ["pretrained=false", *overrides])
    spec = preprocess_spec(recipe)
    samples = [s for s in detect_layout(LGG).samples if s.group == "TCGA_DU_6401_19831001"]
    decoded = decode_slices(samples[20 : 20 + batch], spec, with_masks=True)
    model = build_model(
        recipe.model, num_classes=1, in_channels=recipe.in_channels, **recipe.model_args
    )
    module = SegmentationModule(recipe, 1, recipe.in_channels, multilabel=True, spec=spec)
    module.model = model
    optimiser = torch.optim.AdamW(model.parameters(), lr=recipe.lr)
    batch_data = {
        "image": torch.from_numpy(np.array(decoded.images)),
        "mask": torch.from_numpy(np.array(decoded.masks)),
    }
    times = []
    for step in range(steps + 1):  # the first step (allocation, autotuning) is not timed
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            images, masks = module._prepare(batch_data, train=True)
            loss = module.loss_fn(model(images).float(), masks)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step:
            times.append(time.perf_counter() - start)
    per_step = float(np.median(times))
    return {
        "recipe": name,
        "model": recipe.model,
        "parameters": sum(p.numel() for p in model.parameters()),
        "image_size": recipe.image_size,
        "in_channels": recipe.in_channels,
        "timed_batch": batch,
        "recipe_batch_size": recipe.batch_size,
        "seconds_per_step": round(per_step, 3),
        "seconds_per_image": round(per_step / batch, 4),
    }


def _recipes(args: argparse.Namespace) -> dict[str, Any]:
    rows = [_step_seconds(n, args.batch, args.steps, args.set) for n in SYSTEM_003]
    for row in rows:
        # An epoch of the 5-fold CV's training side: about 4/5 x 85% of the 776 slices.
        row["train_slices_per_fold"] = TRAIN_SLICES
        row["epoch_seconds_extrapolated"] = round(row["seconds_per_image"] * TRAIN_SLICES, 1)
    return {
        "command": " ".join(["python", *sys.argv]),
        "overrides": args.set,
        "machine": _machine(),
        "note": "seconds per epoch = measured seconds per image x training slices of a fold",
        "recipes": rows,
    }


def _fold_samples(fold_dir: Path) -> dict[str, list[Any]]:
    """The fold's samples by split, as its ``splits.csv`` assigned them."""
    from braintumor.data.layouts import detect_layout

    by_id = {s.id: s for s in detect_layout(LGG).samples}
    with (fold_dir / "splits.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    splits: dict[str, list[Any]] = {}
    for row in rows:
        splits.setdefault(row["split"], []).append(by_id[row["id"]])
    return splits


def _fold_models(
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
        splits = _fold_samples(fold_dir)
        loaded = load_model_dir(fold_dir / "model")
        yield fold_dir, splits, loaded, choose_inference(loaded, splits["val"], InferenceOptions())


def _stack_rule(args: argparse.Namespace) -> dict[str, Any]:
    import dataclasses
    import tempfile

    from braintumor.evaluation.segmentation import evaluate_segmenter
    from braintumor.metrics.segmentation import value_summary

    start = time.perf_counter()
    folds, patients = [], {"chosen": [], "without_stack_rule": []}
    for fold_dir, splits, loaded, chosen in _fold_models(args):
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
        "machine": _machine(),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "folds": folds,
        "pooled": {name: value_summary(values) for name, values in patients.items()},
    }


THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def _patient_dice(masks: list[Any], truths: list[Any], paths: list[str]) -> list[float]:
    """Volume Dice per patient folder, as ``evaluate`` scores a patient's stack."""
    from braintumor.metrics.patient import patient_rows, slice_counts

    counts = [slice_counts(mask, truth) for mask, truth in zip(masks, truths, strict=True)]
    return [row["dice"] for row in patient_rows(counts, [Path(p).parent.name for p in paths])]


def _thresholds(args: argparse.Namespace) -> dict[str, Any]:
    from braintumor.inference.choice import readable_pairs
    from braintumor.inference.outputs import tumour_mask
    from braintumor.inference.predictor import Predictor
    from braintumor.inference.stack_filter import filter_stacks
    from braintumor.metrics.segmentation import value_summary

    start = time.perf_counter()
    folds: list[dict[str, Any]] = []
    pooled: dict[str, list[float]] = {}
    for fold_dir, splits, loaded, chosen in _fold_models(args):
        dice: dict[str, dict[float, list[float]]] = {}
        for side in ("val", "test"):
            images, truths, paths = readable_pairs(splits[side])
            probs = Predictor(loaded, device="cpu", tta=chosen["tta"]).segment(images)
            dice[side] = {}
            for threshold in THRESHOLDS:
                masks = [
                    tumour_mask(p, threshold=threshold, keep_largest=chosen["keep_largest"])
                    for p in probs
                ]
                if chosen["stack_components"]:
                    masks = filter_stacks(masks, paths)
                dice[side][threshold] = _patient_dice(masks, truths, paths)
        val_mean = {t: float(np.mean(v)) for t, v in dice["val"].items()}
        # ties go to the threshold nearer 0.5
        best = max(THRESHOLDS, key=lambda t: (round(val_mean[t], 4), -abs(t - 0.5)))
        for threshold in THRESHOLDS:
            pooled.setdefault(str(threshold), []).extend(dice["test"][threshold])
        pooled.setdefault("chosen", []).extend(dice["test"][best])
        folds.append(
            {
                "fold": fold_dir.name,
                "settings": {k: chosen[k] for k in ("tta", "keep_largest", "stack_components")},
                "val_mean": {str(t): round(v, 4) for t, v in val_mean.items()},
                "chosen": best,
                "test_mean": {str(t): round(float(np.mean(v)), 4) for t, v in dice["test"].items()},
            }
        )
        print(f"{fold_dir.name}: threshold {best} chosen on validation", flush=True)
    return {
        "command": " ".join(["python", *sys.argv]),
        "machine": _machine(),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "folds": folds,
        "pooled_test_patient_dice": {k: value_summary(v) for k, v in pooled.items()},
    }


AREA_BINS = (1, 200, 800, 2000)  # tumour pixels of a 256x256 slice: lower edges
POSITION_BINS = 5  # fifths of a patient's stack, from its first slice to its last


def _auc(truth: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(truth, score)), 3)


def _stack_fifths(paths: list[str]) -> np.ndarray:
    """Each slice's fifth of its patient's stack (0: first slices, 4: last)."""
    patient = [Path(p).parent.name for p in paths]
    number = np.array([int(Path(p).stem.rsplit("_", 1)[1]) for p in paths])
    last = {q: max(n for n, r in zip(number, patient, strict=True) if r == q) for q in patient}
    position = np.array(
        [(n - 1) / max(last[q] - 1, 1) for n, q in zip(number, patient, strict=True)]
    )
    return np.minimum((position * POSITION_BINS).astype(int), POSITION_BINS - 1)


def _breakdown(probs: np.ndarray, area: np.ndarray, fifth: np.ndarray) -> dict[str, Any]:
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


def _slice_breakdown(args: argparse.Namespace) -> dict[str, Any]:
    """Where binary (tumour / no tumour) models fail on LGG's slices (:func:`_breakdown`)."""
    from braintumor.data.layouts import detect_layout
    from braintumor.inference.choice import readable_pairs
    from braintumor.inference.predictor import Predictor
    from braintumor.models.folder import load_model_dir
    from braintumor.zoo.registry import resolve_model_ref

    if not args.models:
        sys.exit("error: slice-breakdown needs --model (a binary model folder or zoo:NAME)")
    images, truths, paths = readable_pairs(detect_layout(LGG).samples)
    area = np.array([int((t > 0).sum()) for t in truths])
    fifth = _stack_fifths(paths)
    models = []
    for ref in args.models:
        loaded = load_model_dir(resolve_model_ref(ref))
        column = list(loaded.info.class_names).index("tumor")
        probs = Predictor(loaded, device="cpu", tta=False).classify(images)[:, column]
        models.append({"model": str(ref), **_breakdown(probs, area, fifth)})
        print(f"{ref}: AUC {models[-1]['auc']}", flush=True)
    return {
        "command": " ".join(["python", *sys.argv]),
        "machine": _machine(),
        "slices": len(paths),
        "tumour_slices": int((area > 0).sum()),
        "models": models,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "what", choices=("cv", "recipes", "stack-rule", "thresholds", "slice-breakdown")
    )
    parser.add_argument("--recipe", default="fast-cpu-lgg")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument(
        "--fold", type=int, action="append", help="cv: run only this fold (0-based; repeatable)"
    )
    parser.add_argument("--set", action="append", default=[], help="recipe override key=value")
    parser.add_argument(
        "--work",
        type=Path,
        action="append",
        dest="work_dirs",
        help="work folder (default /tmp/braintumor-lgg-bench); stack-rule, thresholds: repeatable",
    )
    parser.add_argument("--resume", action="store_true", help="keep finished folds")
    parser.add_argument("--batch", type=int, default=4, help="recipes: images per timed step")
    parser.add_argument("--steps", type=int, default=2, help="recipes: timed steps")
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        default=[],
        help="slice-breakdown: a binary model folder or zoo:NAME (repeatable)",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.work_dirs = args.work_dirs or [Path("/tmp/braintumor-lgg-bench")]
    args.work = args.work_dirs[0]
    args.work.mkdir(parents=True, exist_ok=True)
    actions = {
        "cv": _cv,
        "recipes": _recipes,
        "stack-rule": _stack_rule,
        "thresholds": _thresholds,
        "slice-breakdown": _slice_breakdown,
    }
    result = actions[args.what](args)
    out = args.out or RESULTS / f"lgg_{args.what}.json"
    write_text_atomic(out, json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
