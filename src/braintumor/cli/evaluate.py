"""``braintumor evaluate MODEL DATA``: score a trained model on a labelled dataset folder.

2D models (classify, segment) are scored image by image; BraTS models (brats2d, brats3d) case
by case on a BraTS folder (:func:`braintumor.brats.evaluate.evaluate_cases`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from braintumor.cli.errors import user_errors
from braintumor.data.layouts import DetectedLayout, detect_layout, normalise_split_name
from braintumor.data.samples import Sample
from braintumor.data.splits import read_splits
from braintumor.engine.evaluation import evaluate_model
from braintumor.engine.model_io import LoadedModel, load_model_dir
from braintumor.engine.predictor import resolve_device
from braintumor.errors import DataError


def _console(stderr: bool = False) -> Console:
    # Built per call so that test runners that swap the streams see the output.
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def select_samples(
    samples: list[Sample], split: str | None, splits_csv: Path | None
) -> list[Sample]:
    """Apply a splits.csv (its split or fold per sample id) and keep only ``split``."""
    if splits_csv is not None:
        table = read_splits(splits_csv)
        matched = sum(s.id in table.assignment for s in samples)
        if matched == 0:
            raise DataError(
                f"{splits_csv}: none of its ids is a sample of this dataset; "
                "was it written for another folder?"
            )
        samples = [dataclasses.replace(s, split=table.assignment.get(s.id)) for s in samples]
    if split is None:
        return samples
    wanted = normalise_split_name(split) or split
    kept = [s for s in samples if s.split == wanted]
    if not kept:
        found = sorted({s.split for s in samples if s.split})
        raise DataError(
            f"no sample is in split {split!r}; splits found: {', '.join(found) or 'none'}"
            + ("" if splits_csv else " (pass --splits runs/<name>/splits.csv)")
        )
    return kept


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list) and len(value) == 2:
        return f"[{value[0]:.4f}, {value[1]:.4f}]"
    return str(value)


def headline_table(metrics: dict) -> Table:
    """The numbers a reader looks at first, with their 95% intervals."""
    table = Table(title=f"{metrics['task']}: {metrics['n']} images", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% CI", justify="right")
    if metrics["task"] == "classify":
        ci = metrics.get("ci95") or {}
        macro = metrics["macro"]
        for name, value, interval in (
            ("accuracy", metrics["accuracy"], ci.get("accuracy")),
            ("balanced accuracy", metrics["balanced_accuracy"], None),
            ("macro precision", macro["precision"], None),
            ("macro recall", macro["recall"], None),
            ("macro F1", macro["f1"], ci.get("macro_f1")),
            ("macro ROC-AUC", macro["roc_auc"], ci.get("macro_roc_auc")),
            ("ECE", metrics["ece"], None),
        ):
            table.add_row(name, _fmt(value), _fmt(interval))
        return table
    summary = metrics["summary"]
    for level, prefix in (("per_image", ""), ("per_group", "per patient ")):
        for name, block in summary.get(level, {}).items():
            table.add_row(f"{prefix}{name} (mean)", _fmt(block["mean"]), _fmt(block["ci95"]))
    return table


def brats_table(metrics: dict) -> Table:
    """Mean WT/TC/ET Dice, HD95 and volumes of a BraTS evaluation."""
    table = Table(title=f"BraTS: {metrics['n_cases']} cases", title_justify="left")
    for column in ("region", "Dice", "HD95 (mm)", "sensitivity", "precision"):
        table.add_column(column, justify="left" if column == "region" else "right")
    for region, values in metrics["mean"].items():
        table.add_row(
            region,
            *(_fmt(values[k]) for k in ("dice", "hd95", "sensitivity", "precision")),
        )
    return table


def _evaluate_brats(
    loaded: LoadedModel, layout: DetectedLayout, samples: list[Sample], out: Path, tta: bool
) -> dict:
    """Case-by-case evaluation of a brats2d/brats3d model on a BraTS folder."""
    if layout.task != "brats":
        raise DataError(
            f"{layout.root}: {loaded.path} is a {loaded.info.task} model, but this folder is a "
            f"{layout.name} layout, not BraTS cases"
        )
    from braintumor.brats.evaluate import evaluate_cases  # imports Lightning and MONAI

    return evaluate_cases(loaded, samples, out, tta=tta)


def evaluate_command(
    model: Annotated[Path, typer.Argument(help="Model folder (model.json + model.safetensors).")],
    data: Annotated[Path, typer.Argument(help="Labelled dataset folder (any known layout).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output folder [default: beside the model]."),
    ] = None,
    split: Annotated[
        str | None, typer.Option("--split", help="Only samples of this split, e.g. test.")
    ] = None,
    splits_csv: Annotated[
        Path | None,
        typer.Option("--splits", help="A run's splits.csv giving each sample's split or fold."),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:1...")] = "auto",
    tta: Annotated[
        bool, typer.Option("--tta", help="BraTS models: average over mirrored inputs.")
    ] = False,
) -> None:
    """Evaluate a model: metrics.json, predictions and report.html in the output folder."""
    with user_errors():
        loaded = load_model_dir(model, device=resolve_device(device))
        layout = detect_layout(data)
        samples = select_samples(layout.samples, split, splits_csv)
        if out is None:
            out = model.parent / (f"eval-{data.resolve().name}" + (f"-{split}" if split else ""))
        if loaded.info.task.startswith("brats"):
            result = _evaluate_brats(loaded, layout, samples, out, tta)
            _console().print(brats_table(result))
            _console().print(f"report: {Path(out) / 'report.html'}")
            return
        run_curves = model.parent / "metrics.csv"
        metrics = evaluate_model(
            loaded,
            samples,
            out,
            curves_csv=run_curves if run_curves.is_file() else None,
            batch_size=batch_size,
        )
    console = _console()
    console.print(headline_table(metrics))
    for old, new in (metrics.get("label_mapping") or {}).items():
        console.print(f"label {old} counted as {new} (two-class tumour model)")
    if metrics["skipped"]:
        err = _console(stderr=True)
        err.print(f"[yellow]{len(metrics['skipped'])} unreadable samples left out (metrics.json)")
    console.print(f"report: {Path(out) / 'report.html'}")
