"""LGG benchmarks on the shared 20 patients (Buda et al.'s per-patient protocol).

    python benchmarks/lgg.py cv --set max_minutes=10     # 5-fold patient-grouped CV, fast-cpu-lgg
    python benchmarks/lgg.py recipes --set max_minutes=3 # system-003 recipes: params, s/epoch

``cv`` trains one run per fold (``braintumor train fast-cpu-lgg --protocol kfold``) and writes
``benchmarks/results/lgg_cv.json``: per-fold and pooled per-patient volume Dice (mean, median,
bootstrap 95% CI), slice-level Dice/IoU, slice detection sensitivity/specificity and wall time.
``recipes`` trains each system-003 recipe briefly on fold 0 (no pretrained weights) and writes
``benchmarks/results/lgg_recipes.json``: parameter counts and measured seconds per epoch.
Both record the machine's load average at the start and the exact overrides.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from braintumor.atomic import write_text_atomic
from braintumor.config import load_recipe
from braintumor.engine.run import train_run
from braintumor.protocols.kfold import run_kfold

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED = Path(os.environ.get("BRAINTUMOR_SHARED_DATA", ROOT.parent / "shared" / "data"))
LGG = SHARED / "lgg-kaggle3m"
SYSTEM_003 = ("unet-lgg", "resnet50-unet-lgg", "resnet50-attention-unet-lgg")


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
        recipe, LGG, args.work / "cv", folds=args.folds, resume=args.resume, progress=False
    )
    return {
        "command": " ".join(["python", *sys.argv]),
        "recipe": recipe.name,
        "overrides": args.set,
        "machine": _machine(),
        "wall_seconds": round(time.perf_counter() - start, 1),
        **summary,
    }


def _epoch_seconds(run_dir: Path) -> list[float]:
    """Seconds per finished epoch, from the run's epoch-end timestamps in metrics.csv."""
    with open(run_dir / "logs" / "metrics.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("epoch_seconds")]
    return [float(r["epoch_seconds"]) for r in rows]


def _recipes(args: argparse.Namespace) -> dict[str, Any]:
    from braintumor.engine.model_io import load_model_dir

    folds = args.work / "folds.csv"
    rows = []
    for name in SYSTEM_003:
        recipe = load_recipe(name, ["pretrained=false", "extra.fold=0", *args.set])
        run_dir = args.work / name
        start = time.perf_counter()
        result = train_run(recipe, LGG, run_dir, splits_csv=folds, progress=False)
        model = load_model_dir(result.model_dir).model
        test = result.metrics.get("test", {})
        rows.append(
            {
                "recipe": name,
                "parameters": sum(p.numel() for p in model.parameters()),
                "image_size": recipe.image_size,
                "batch_size": recipe.batch_size,
                "epoch_seconds": _epoch_seconds(run_dir),
                "wall_seconds": round(time.perf_counter() - start, 1),
                "test_patient_volume_dice": test.get("patient_volume_dice"),
                "test_dice": test.get("dice"),
            }
        )
    return {
        "command": " ".join(["python", *sys.argv]),
        "overrides": args.set,
        "machine": _machine(),
        "recipes": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("cv", "recipes"))
    parser.add_argument("--recipe", default="fast-cpu-lgg")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], help="recipe override key=value")
    parser.add_argument("--work", type=Path, default=Path("/tmp/braintumor-lgg-bench"))
    parser.add_argument("--resume", action="store_true", help="keep finished folds")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    result = _cv(args) if args.what == "cv" else _recipes(args)
    out = args.out or RESULTS / f"lgg_{args.what}.json"
    write_text_atomic(out, json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
