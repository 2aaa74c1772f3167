"""What averaging the answers of several fold models would give on a held-out source.

Leave-one-source-out runs of the same fold with different seeds (``benchmarks/loso.py
--set seed=S``) leave each model's answers on the held-out source in
``<run>/test-<source>/test/predictions.csv``. This averages the class probabilities of every
subset of those runs over the images they all scored and reports the held-out metrics
(:func:`braintumor.metrics.per_source.source_metrics`, bootstrap intervals) of each single
model and of the mean ensemble of each size: the measurement behind shipping an ensemble,
without training anything.

    python benchmarks/loso_ensemble.py --source sartaj-4class --tag binemabn2-sartaj \\
        RUN_DIR_SEED42 RUN_DIR_SEED1 RUN_DIR_SEED2 RUN_DIR_SEED3

``--folder OUT --setting binary`` also combines the runs' fold models into one ensemble model
folder (``OUT/model``, :mod:`braintumor.models.combine`: the mean of their logits, what
``braintumor models ensemble`` writes) and evaluates it on the fold's test split
(``OUT/test``) as ``braintumor evaluate`` would: the shipped form of the ensemble, beside the
averaged answers.

Two runs of different recipes on the same fold compare the same way (each single model is
scored on the common images); ``--folder-part 1`` adds each run's figures per subfolder of the
source (Sartaj's Training and Testing folders differ in where their images come from).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from braintumor.atomic import write_text_atomic
from braintumor.errors import BrainTumorError, DataError
from braintumor.metrics.per_source import HEADLINE, source_metrics

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def prediction_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a fold's ``predictions.csv``, or an error naming the file."""
    if not path.is_file():
        raise DataError(f"{path}: no predictions.csv (is it a finished loso.py run?)")
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise DataError(f"{path}: no predictions")
    return rows


def read_predictions(path: Path) -> tuple[list[str], dict[str, tuple[str, np.ndarray]]]:
    """The class names and, per test id, the true class and the probabilities."""
    rows = prediction_rows(path)
    names = [key.removeprefix("prob_") for key in rows[0] if key.startswith("prob_")]
    return names, {
        row["id"]: (row["true"], np.array([float(row[f"prob_{c}"]) for c in names])) for row in rows
    }


def rounded_metrics(metrics: dict) -> dict:
    """The headline numbers with their intervals, rounded for the results file."""
    out = {"n": metrics["n"]}
    for key in HEADLINE:
        if metrics.get(key) is not None:
            out[key] = round(metrics[key], 4)
            out[f"{key}_ci95"] = [round(v, 4) for v in metrics["ci95"][key]]
    return out


def ensemble_table(runs: list[Path], source: str, folder_part: int | None = None) -> dict:
    """Single-model and mean-ensemble metrics of every subset size of ``runs``; with
    ``folder_part``, also each run's metrics on the images of each value of that component of
    the image id (1 for ``sartaj-4class/Testing/...``: the source's Training and Testing)."""
    loaded = [read_predictions(run / f"test-{source}" / "test" / "predictions.csv") for run in runs]
    names = loaded[0][0]
    if any(other != names for other, _ in loaded[1:]):
        raise DataError("the runs do not share their class names")
    ids = sorted(set(loaded[0][1]).intersection(*(preds for _, preds in loaded[1:])))
    if not ids:
        raise DataError(f"the runs scored no {source} image in common")
    y = np.array([names.index(loaded[0][1][i][0]) for i in ids])
    probs = [np.stack([preds[i][1] for i in ids]) for _, preds in loaded]
    sizes = {}
    for size in range(1, len(runs) + 1):
        members = [
            {
                "runs": [runs[k].name for k in subset],
                **rounded_metrics(
                    source_metrics(y, np.mean([probs[k] for k in subset], axis=0), names)
                ),
            }
            for subset in itertools.combinations(range(len(runs)), size)
        ]
        keys = [k for k in HEADLINE if k in members[0]]
        mean = {k: round(float(np.mean([m[k] for m in members])), 4) for k in keys}
        sizes[str(size)] = {"mean_over_subsets": mean, "subsets": members}
    table = {"source": source, "n_common": len(ids), "classes": names, "by_size": sizes}
    if folder_part is not None:
        folders = np.array([_id_part(i, folder_part) for i in ids])
        table["by_folder"] = {
            folder: [
                {
                    "run": run.name,
                    **rounded_metrics(
                        source_metrics(y[folders == folder], p[folders == folder], names)
                    ),
                }
                for run, p in zip(runs, probs, strict=True)
            ]
            for folder in sorted(set(folders))
        }
    return table


def folder_metrics(runs: list[Path], source: str, setting: str, data_root: Path, out: Path) -> dict:
    """Combine the runs' fold models into ``out/model`` and evaluate it on the fold's test
    split (the first run's ``splits-test-<source>.csv``); the held-out source's figures."""
    from braintumor.data.sources import load_data
    from braintumor.data.splits import TEST, select_samples
    from braintumor.models.combine import combine_model_dirs
    from braintumor.models.folder import load_model_dir
    from braintumor.tasks.registry import EvaluateOptions, get_task
    from loso import SETTINGS, _with_root  # the setting's sources, as the runs trained on them

    models = [run / f"test-{source}" / "model" for run in runs]
    loaded = load_model_dir(combine_model_dirs(models, out / "model").folder)
    task = get_task(loaded.info.task)
    data = [_with_root(value, data_root) for value in SETTINGS[setting]["data"]]
    layout = load_data(data, task.data_kinds[0], loaded.info.class_names)
    test = select_samples(layout.samples, TEST, runs[0] / f"splits-test-{source}.csv")
    metrics = task.evaluate(loaded, test, out / "test", EvaluateOptions())
    return rounded_metrics(metrics["per_source"][source])


def _id_part(image_id: str, part: int) -> str:
    """Component ``part`` of an image id's path, or an error naming the id."""
    parts = image_id.split("/")
    if not 0 <= part < len(parts) - 1:
        raise DataError(f"image id {image_id!r} has no folder at --folder-part {part}")
    return parts[part]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="loso.py run folders of one fold")
    parser.add_argument("--source", required=True, help="the held-out source")
    parser.add_argument("--tag", required=True)
    parser.add_argument(
        "--folder-part",
        type=int,
        help="also score each run per value of this component of the image ids' paths",
    )
    parser.add_argument(
        "--folder",
        type=Path,
        help="also combine the fold models into an ensemble model folder here and evaluate it",
    )
    parser.add_argument("--setting", default="binary", help="loso.py setting of the runs")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    try:
        table = ensemble_table(args.runs, args.source, args.folder_part)
        if args.folder is not None:
            table["folder"] = folder_metrics(
                args.runs, args.source, args.setting, args.data, args.folder
            )
    except BrainTumorError as error:
        sys.exit(f"error: {error}")
    result = {
        "benchmark": "loso-ensemble",
        "command": "python benchmarks/loso_ensemble.py " + shlex.join(sys.argv[1:]),
        **table,
    }
    out = RESULTS / f"loso_ensemble_{args.tag}.json"
    write_text_atomic(out, json.dumps(result, indent=2) + "\n")
    for size, row in table["by_size"].items():
        subsets = len(row["subsets"])
        print(f"{size} model(s), mean over {subsets} subsets: {row['mean_over_subsets']}")
    if "folder" in table:
        print(f"ensemble model folder: {table['folder']}")
    for folder, rows in table.get("by_folder", {}).items():
        for row in rows:
            print(f"{folder}: {row}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
