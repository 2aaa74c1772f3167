"""Patient-grouped k-fold cross-validation: K runs, each testing on one fold.

Folds hold whole groups (patients merged with their exact and near-duplicate copies); each
fold's run picks its validation patients from the other folds. Per-patient volume Dice is
reported per fold and pooled over all folds (every patient is tested exactly once), with
percentile-bootstrap 95% intervals over patients.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from braintumor.atomic import write_text_atomic
from braintumor.config import Recipe
from braintumor.data.layouts import detect_layout
from braintumor.data.splits import check_no_leak, kfold_splits, read_splits, write_splits
from braintumor.errors import DataError
from braintumor.metrics.patient import detection_scores
from braintumor.metrics.segmentation import value_summary
from braintumor.training.run import train_run
from braintumor.training.splits import leak_groups

console = Console(stderr=True)
FOLDS_FILE = "folds.csv"
SUMMARY_FILE = "kfold.json"
#: A finished fold's wall time, kept in its folder so that a resumed or merged run reports it.
FOLD_SECONDS_FILE = "fold_seconds.json"
N_BOOTSTRAP = 1000


def _fold_table(layout: Any, recipe: Recipe, folds: int, splits_csv: Path | None, out: Path) -> int:
    """Write ``out`` (id, fold, group) from ``splits_csv`` or fresh grouped folds; returns K."""
    if splits_csv is not None:
        table = read_splits(splits_csv)
        if table.column != "fold":
            raise DataError(
                f"{splits_csv}: --protocol kfold needs a fold file (data split --folds)"
            )
        missing = [s.id for s in layout.samples if s.id not in table.assignment]
        if missing:
            raise DataError(
                f"{splits_csv}: {len(missing)} samples have no fold (first: {missing[0]})"
            )
        assignment = [table.assignment[s.id] for s in layout.samples]
        groups = [table.groups[s.id] for s in layout.samples]
    else:
        groups = leak_groups(layout, recipe)
        assignment = kfold_splits(layout.samples, folds, recipe.seed, groups)
    check_no_leak(layout.samples, assignment, groups)
    if not out.is_file():
        write_splits(out, layout.samples, assignment, groups, column="fold")
    return len(set(assignment))


def _slice_rows(fold_dir: Path) -> list[dict]:
    """The test predictions of one fold's run (one row per slice)."""
    with open(fold_dir / "test" / "predictions.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _fold_summary(metrics: dict, rows: list[dict], seconds: float | None) -> dict:
    per_patient = metrics.get("per_patient") or {}
    dice = [float(r["dice"]) for r in rows if r.get("dice") not in (None, "")]
    return {
        "n_slices": len(rows),
        "patients": [p["patient"] for p in per_patient.get("patients", [])],
        "patient_dice": per_patient.get("dice"),
        "slice_dice_mean": sum(dice) / len(dice) if dice else None,
        "detection": per_patient.get("detection"),
        "tta": metrics.get("tta"),
        "keep_largest": metrics.get("keep_largest"),
        "stack_components": metrics.get("stack_components"),
        "seconds": seconds,
    }


def _single_source(data: Path | Sequence[str | Path]) -> Path:
    """k-fold splits one dataset by patient: several ``--data`` sources are a user error."""
    if isinstance(data, str | Path):
        return Path(data)
    if len(data) != 1:
        raise DataError(f"--protocol kfold takes one --data folder, got {len(data)}")
    return Path(data[0])


def run_kfold(
    recipe: Recipe,
    data: Path | Sequence[str | Path],
    run_dir: Path,
    folds: int = 5,
    splits_csv: Path | None = None,
    resume: bool = False,
    devices: Any = "auto",
    nodes: int = 1,
    accelerator: str = "auto",
    only_folds: Sequence[int] | None = None,
    **_: Any,
) -> dict[str, Any]:
    """Train ``recipe`` once per fold in ``run_dir/fold-<k>`` and pool the test patients.

    ``splits_csv`` may be a fold file from ``braintumor data split --folds``; without one the
    folds are made here. With ``resume`` finished folds are kept and an unfinished one
    resumes. ``only_folds`` (0-based) runs those folds alone and pools only their patients.
    Writes ``run_dir/folds.csv`` and ``run_dir/kfold.json``; returns the summary.
    """
    data = _single_source(data)
    if recipe.task != "segment":
        raise DataError(
            f"--protocol kfold reports per-patient Dice: {recipe.name} is not a segmenter"
        )
    layout = detect_layout(data)
    if not resume and run_dir.exists() and any(run_dir.iterdir()):
        raise DataError(f"{run_dir}: run folder exists; pass --resume or choose another --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    fold_file = run_dir / FOLDS_FILE
    k = _fold_table(
        layout, recipe, folds, splits_csv if not fold_file.is_file() else fold_file, fold_file
    )
    per_fold: list[dict] = []
    patients: list[dict] = []
    slices: list[dict] = []
    for fold in range(k):
        if only_folds is not None and fold not in only_folds:
            continue
        fold_dir = run_dir / f"fold-{fold}"
        done = fold_dir / "metrics.json"
        seconds = None
        if not done.is_file():
            console.print(f"[bold]fold {fold + 1}/{k}[/bold] -> {fold_dir}")
            start = time.perf_counter()
            fold_recipe = dataclasses.replace(
                recipe, extra=dataclasses.replace(recipe.extra, fold=fold)
            )
            train_run(
                fold_recipe,
                data,
                fold_dir,
                splits_csv=fold_file,
                resume=resume and fold_dir.is_dir(),
                devices=devices,
                nodes=nodes,
                accelerator=accelerator,
            )
            seconds = round(time.perf_counter() - start, 1)
            write_text_atomic(fold_dir / FOLD_SECONDS_FILE, json.dumps({"seconds": seconds}))
        elif (fold_dir / FOLD_SECONDS_FILE).is_file():
            seconds = json.loads((fold_dir / FOLD_SECONDS_FILE).read_text())["seconds"]
        metrics = json.loads((fold_dir / "test" / "metrics.json").read_text())
        rows = _slice_rows(fold_dir)
        per_fold.append({"fold": fold, **_fold_summary(metrics, rows, seconds)})
        patients.extend(
            {"fold": fold, **p} for p in (metrics.get("per_patient") or {}).get("patients", [])
        )
        slices.extend(rows)
    summary = _pooled(recipe, data, k, per_fold, patients, slices)
    write_text_atomic(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2))
    return summary


def _pooled(
    recipe: Recipe,
    data: Path,
    k: int,
    per_fold: list[dict],
    patients: list[dict],
    slices: list[dict],
) -> dict[str, Any]:
    """Every patient once (tested in its own fold): per-patient and slice-level figures."""
    counts = [{key: int(float(r[key])) for key in ("truth_px", "predicted_px")} for r in slices]
    dice = [float(r["dice"]) for r in slices if r.get("dice") not in (None, "")]
    iou = [float(r["iou"]) for r in slices if r.get("iou") not in (None, "")]
    tumour_dice = [
        float(r["dice"])
        for r in slices
        if int(float(r["truth_px"])) > 0 and r.get("dice") not in (None, "")
    ]
    return {
        "protocol": "kfold",
        "recipe": recipe.name,
        "data": str(data),
        "folds": k,
        "per_fold": per_fold,
        "pooled": {
            "n_patients": len(patients),
            "n_slices": len(slices),
            "patient_dice": value_summary([p["dice"] for p in patients], N_BOOTSTRAP, 0),
            "patient_iou": value_summary([p["iou"] for p in patients], N_BOOTSTRAP, 1),
            "slice_dice": value_summary(dice, N_BOOTSTRAP, 2),
            "slice_iou": value_summary(iou, N_BOOTSTRAP, 3),
            "tumour_slice_dice": value_summary(tumour_dice, N_BOOTSTRAP, 4),
            "detection": detection_scores(counts),
        },
        "patients": patients,
        "seconds": sum(f["seconds"] or 0.0 for f in per_fold),
    }
