"""Export-invariance benchmark: re-export a model's test slices in controlled ways.

    python benchmarks/invariance.py RUN_DIR --data DATA --name sartaj-after
    python benchmarks/invariance.py MODEL_DIR --data DATA --splits splits.csv --name x
    python benchmarks/invariance.py LOSO_FOLD_RUN --data sartaj-4class=../shared/data/sartaj-4class
                                   # a leave-one-source-out fold: its held-out source, named
                                   # as in training so that the ids match its splits file
    python benchmarks/invariance.py table      # markdown tables of every invariance_*.json

RUN_DIR is a training run folder (its ``model/`` and ``splits.csv``); the test split of the
splits file is re-exported with every variant of :mod:`braintumor.invariance.variants`
(gamma, windows, darker, scaling, background level, JPEG, PNG depth, colour modes,
resampling, field of view, rotations), written to real files and predicted through the
normal path. Classifiers report the flip rate and balanced accuracy per variant, segmenters
the Dice. Writes ``benchmarks/results/invariance_<name>.json`` (or ``--out``) with the wall
time, the load average at the start and the exact command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from braintumor.atomic import write_text_atomic
from braintumor.data.sources import load_data
from braintumor.data.splits import select_samples
from braintumor.invariance.check import run_invariance
from braintumor.invariance.variants import VARIANTS, select_variants
from braintumor.models.folder import load_model_dir

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _model_and_splits(path: Path, splits: Path | None) -> tuple[Path, Path | None]:
    """A run folder gives its ``model/`` and ``splits.csv``; a model folder stands alone."""
    if (path / "model").is_dir():
        return path / "model", splits or path / "splits.csv"
    return path, splits


def _subset(items: list, limit: int | None) -> list:
    """At most ``limit`` items, evenly spread over the list (deterministic)."""
    if not limit or len(items) <= limit:
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark for one model and return the result record."""
    model_dir, splits = _model_and_splits(args.model, args.splits)
    loaded = load_model_dir(model_dir)
    layout = load_data(args.data, task=loaded.info.task, classes=loaded.info.class_names)
    samples = select_samples(layout.samples, args.split, splits)
    samples = _subset(sorted(samples, key=lambda s: s.id), args.limit)
    variants = select_variants(args.variants.split(",") if args.variants else None)
    result = run_invariance(
        loaded, samples, variants, batch_size=args.batch_size, tta=args.tta or None
    )
    return {
        "model": str(model_dir),
        "data": list(args.data),
        "split": args.split,
        "splits_csv": str(splits) if splits else None,
        "preprocessing": loaded.info.preprocessing,
        **result,
    }


def _cell(row: dict[str, Any] | None, task: str) -> str:
    if row is None:
        return "-"
    mark = "" if row["passes"] else " ✗"
    if task == "classify":
        return f"{row['balanced_accuracy']:.3f} / {100 * row['flip_rate']:.1f}%{mark}"
    return f"{row['dice']:.3f} ({row['delta']:+.3f}){mark}"


def markdown_table() -> str:
    """A summary row per result file, then one variant table per task with a column per file."""
    results = {
        p.stem.removeprefix("invariance_"): json.loads(p.read_text())
        for p in sorted(RESULTS.glob("invariance_*.json"))
    }
    lines = [
        "| result | task | n | reference | worst variant | largest drop | largest flip rate "
        "| all pass | wall (min) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        ref_name, ref = next(iter(r["reference"].items()))
        drop = min(v["delta"] for v in r["variants"])
        flips = [v["flip_rate"] for v in r["variants"] if "flip_rate" in v]
        worst = r["worst"]["by_metric_drop"]
        if "by_flip_rate" in r["worst"]:
            worst += f" / {r['worst']['by_flip_rate']}"
        lines.append(
            f"| {name} | {r['task']} | {r['n']} | {ref_name} {ref:.3f} | {worst} | {drop:+.3f} "
            f"| {f'{100 * max(flips):.1f}%' if flips else '-'} | {'yes' if r['passes'] else 'no'} "
            f"| {r['wall_seconds'] / 60:.1f} |"
        )
    for task, what in (
        ("classify", "balanced accuracy / flip rate"),
        ("segment", "Dice (change)"),
    ):
        names = [n for n, r in results.items() if r["task"] == task]
        if not names:
            continue
        lines += ["", f"{task}: {what} per variant (✗: misses the target)", ""]
        lines.append("| variant | " + " | ".join(names) + " |")
        lines.append("|---|" + "---|" * len(names))
        refs = [next(iter(results[n]["reference"].values())) for n in names]
        lines.append("| (original files) | " + " | ".join(f"{v:.3f}" for v in refs) + " |")
        for variant in VARIANTS:
            rows = [
                next((v for v in results[n]["variants"] if v["variant"] == variant), None)
                for n in names
            ]
            if any(rows):
                lines.append(f"| {variant} | " + " | ".join(_cell(r, task) for r in rows) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="run folder, model folder, or 'table'")
    parser.add_argument(
        "--data",
        action="append",
        help="the labelled dataset folder; NAME=PATH names a source (ids NAME/...), as "
        "braintumor train --data does; repeat for several",
    )
    parser.add_argument("--splits", type=Path, help="splits.csv (default: the run's)")
    parser.add_argument("--split", default="test", help="which split to re-export")
    parser.add_argument("--variants", help="comma-separated subset (default: all)")
    parser.add_argument("--limit", type=int, help="at most this many slices, evenly spread")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--tta", action="store_true", help="predict with mirror TTA (default: the model's own)"
    )
    parser.add_argument("--name", help="result name (invariance_NAME.json)")
    parser.add_argument("--out", type=Path, help="result file (overrides --name)")
    args = parser.parse_args()
    if args.model == "table":
        print(markdown_table())
        return
    if args.data is None or not (args.name or args.out):
        parser.error("--data and --name (or --out) are needed to measure a model")
    args.model = Path(args.model)
    load = os.getloadavg()[0]
    start = time.time()
    record = measure(args)
    record.update(
        {
            "wall_seconds": round(time.time() - start, 1),
            "load_average_at_start": load,
            "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
        }
    )
    out = args.out or RESULTS / f"invariance_{args.name}.json"
    write_text_atomic(out, json.dumps(record, indent=2, default=str))
    print(json.dumps({k: record[k] for k in ("reference", "worst", "passes")}, indent=2))
    for row in record["variants"]:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
