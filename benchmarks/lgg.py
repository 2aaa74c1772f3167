"""LGG benchmarks on the shared 20 patients (Buda et al.'s per-patient protocol).

    python benchmarks/lgg.py cv --set max_minutes=10     # 5-fold patient-grouped CV, fast-cpu-lgg
    python benchmarks/lgg.py cv --fold 0                 # one fold of it (lgg_cv_fold0.json)
    python benchmarks/lgg.py recipes                     # system-003 recipes: params, s/epoch
    python benchmarks/lgg.py stack-rule --work W         # the 3D stack rule on W's fold models
    python benchmarks/lgg.py thresholds --work W         # a validation-chosen mask threshold
    python benchmarks/lgg.py stack-smoothing --work W    # maps averaged with neighbouring slices
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
``stack-smoothing`` does the same for the weight with which each slice's probability map is
averaged with its neighbours' in the patient's stack before thresholding (0 = off, 0.25-1;
``benchmarks/results/lgg_stack-smoothing.json``).
``slice-breakdown`` runs binary models (``--model``, repeatable: say a leave-one-source-out
fold model that never saw LGG) on all 776 slices and splits their tumour ROC-AUC by tumour
size and by the slice's place in its patient's stack
(``benchmarks/results/lgg_slice-breakdown.json``).
All record the machine's load average at the start and the exact overrides.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from braintumor.atomic import write_text_atomic
from braintumor.config import load_recipe
from braintumor.protocols.kfold import run_kfold
from lgg_analysis import (
    LGG,
    machine,
    slice_breakdown,
    stack_rule,
    stack_smoothing,
    thresholds,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SYSTEM_003 = ("unet-lgg", "resnet50-unet-lgg", "resnet50-attention-unet-lgg")
TRAIN_SLICES = 520  # fold 0 of the 5-fold CV (seed 42): 520 train, 111 val, 145 test slices


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
        "machine": machine(),
        "wall_seconds": round(time.perf_counter() - start, 1),
        **summary,
    }


def _step_seconds(name: str, batch: int, steps: int, overrides: list[str]) -> dict[str, Any]:
    """Parameters and measured seconds per training step of recipe ``name`` on real LGG
    slices (the recipe's preprocessing, augmentation, loss, optimiser and the precision
    ``train`` takes on this machine)."""
    import contextlib

    import torch

    from braintumor.data.cache import decode_slices
    from braintumor.data.layouts import detect_layout
    from braintumor.models import build_model
    from braintumor.training.module import SegmentationModule
    from braintumor.training.optim import build_optimizer
    from braintumor.training.setup import preprocess_spec
    from braintumor.training.trainer import resolve_precision

    recipe = load_recipe(name, ["pretrained=false", *overrides])
    spec = preprocess_spec(recipe)
    samples = [s for s in detect_layout(LGG).samples if s.group == "TCGA_DU_6401_19831001"]
    decoded = decode_slices(samples[20 : 20 + batch], spec, with_masks=True)
    model = build_model(
        recipe.model, num_classes=1, in_channels=recipe.in_channels, **recipe.model_args
    )
    module = SegmentationModule(recipe, 1, recipe.in_channels, multilabel=True, spec=spec)
    module.model = model
    optimiser = build_optimizer(model, recipe)
    precision = resolve_precision(recipe, "cpu")
    bf16 = precision.startswith("bf16")
    batch_data = {
        "image": torch.from_numpy(np.array(decoded.images)),
        "mask": torch.from_numpy(np.array(decoded.masks)),
    }
    times = []
    for step in range(steps + 1):  # the first step (allocation, autotuning) is not timed
        start = time.perf_counter()
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with autocast:
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
        "precision": precision,
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
        "machine": machine(),
        "note": "seconds per epoch = measured seconds per image x training slices of a fold",
        "recipes": rows,
    }


def _default_result_name(args: argparse.Namespace) -> str:
    """``lgg_cv.json`` for a whole run; a part (``--fold``) gets its own name so that one
    worker's folds never overwrite the stored 5-fold result."""
    if args.what == "cv" and args.fold:
        return f"lgg_cv_fold{'-'.join(str(k) for k in sorted(set(args.fold)))}.json"
    return f"lgg_{args.what}.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "what",
        choices=("cv", "recipes", "stack-rule", "thresholds", "stack-smoothing", "slice-breakdown"),
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
        help="work folder (default /tmp/braintumor-lgg-bench); the fold probes: repeatable",
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
        "stack-rule": stack_rule,
        "thresholds": thresholds,
        "stack-smoothing": stack_smoothing,
        "slice-breakdown": slice_breakdown,
    }
    result = actions[args.what](args)
    out = args.out or RESULTS / _default_result_name(args)
    write_text_atomic(out, json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
