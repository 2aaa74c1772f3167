"""Leave-one-case-out on the four shared BraTS 2013 cases (FLAIR + T1c) with fast-cpu-brats.

For each case: train the fast recipe on the other three for ``--minutes`` (CPU, no
validation split: the last weights are kept), then predict and score the held-out case with
``evaluate_cases`` (WT/TC/ET Dice and HD95 in the original 240x240x155 grid). Writes
``benchmarks/results/brats_loco.json``.

    nice -n 10 .venv/bin/python benchmarks/brats_loco.py [--minutes 4] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

from braintumor.atomic import write_text_atomic
from braintumor.brats.evaluate import evaluate_cases
from braintumor.brats.task import brats_model_info, build_brats_task
from braintumor.config import load_recipe
from braintumor.data.layouts import detect_layout
from braintumor.models.folder import load_model_dir, save_model_dir

ROOT = Path(__file__).resolve().parents[1]


def run_fold(train_samples, test_sample, minutes: float, overrides: list[str], tmp: Path) -> dict:
    """Train on ``train_samples`` for ``minutes``, score ``test_sample``."""
    recipe = load_recipe(
        "fast-cpu-brats",
        [
            "extra.modalities=[flair, t1ce]",
            f"extra.cache_dir={tmp / 'cache'}",
            *overrides,
        ],
    )
    L.seed_everything(recipe.seed, verbose=False)
    module, datamodule, pre = build_brats_task(recipe, {"train": train_samples})
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=recipe.max_epochs,
        max_time={"minutes": minutes},
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    train_s = time.perf_counter() - start
    info = brats_model_info(recipe, pre)
    folder = save_model_dir(module.model.cpu(), info, tmp / f"model-{test_sample.id}")
    result = evaluate_cases(load_model_dir(folder), [test_sample], tmp / f"eval-{test_sample.id}")
    row = result["cases"][0]
    return {
        "held_out": test_sample.id,
        "epochs": trainer.current_epoch,
        "train_seconds": round(train_s, 1),
        "train_slices": datamodule.statistics["train"]["slices"],
        **{f"{r}_dice": row[f"{r}_dice"] for r in ("WT", "TC", "ET")},
        **{f"{r}_hd95": row[f"{r}_hd95"] for r in ("WT", "TC", "ET")},
    }


def main() -> None:
    """Run every fold and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=ROOT.parent / "shared" / "data" / "brats2013-4cases"
    )
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], help="recipe override key=value")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    samples = sorted(detect_layout(args.data).samples, key=lambda s: s.id)
    folds = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, held in enumerate(samples):
            train = [s for j, s in enumerate(samples) if j != i]
            folds.append(run_fold(train, held, args.minutes, args.set, Path(tmp)))
            print(json.dumps(folds[-1]))
    mean = {k: float(np.mean([f[k] for f in folds])) for k in ("WT_dice", "TC_dice", "ET_dice")}
    result = {
        "benchmark": "brats_loco",
        "data": "brats2013-4cases (FLAIR + T1c)",
        "recipe": "fast-cpu-brats",
        "overrides": args.set,
        "minutes_per_fold": args.minutes,
        "torch_threads": args.threads,
        "folds": folds,
        "mean": mean,
    }
    write_text_atomic(
        ROOT / "benchmarks" / "results" / "brats_loco.json", json.dumps(result, indent=2)
    )
    print(json.dumps(result["mean"]))


if __name__ == "__main__":
    main()
