"""``braintumor evaluate MODEL DATA``: score a trained model on a labelled dataset folder.

The model's task (:func:`braintumor.tasks.task_of`) evaluates it: 2D models image by image,
BraTS models case by case on a BraTS folder. A model folder inside a run folder gets the run's
training curves in its report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from braintumor.cli.errors import user_errors
from braintumor.data.layouts import DetectedLayout
from braintumor.data.layouts_base import CLASSIFY_DATA, DATA_DESCRIPTIONS
from braintumor.data.sources import load_data
from braintumor.data.splits import select_samples
from braintumor.errors import DataError
from braintumor.inference.predictor import resolve_device
from braintumor.models.folder import load_model_dir
from braintumor.preflight import check_output_folder, removed_on_user_error
from braintumor.runfolder import RunFolder
from braintumor.tasks.registry import EvaluateOptions, task_of


def _console(stderr: bool = False) -> Console:
    # Built per call so that test runners that swap the streams see the output.
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _datasets(positional: list[str] | None, option: list[str] | None) -> list[str]:
    """The dataset folder(s), given as arguments after MODEL or with ``--data`` (or both)."""
    data = list(dict.fromkeys([*(positional or []), *(option or [])]))
    if not data:
        raise DataError("no dataset given: braintumor evaluate MODEL DATA (or --data DATA)")
    return data


def _load(kind: str, class_names: list[str], data: list[str]) -> DetectedLayout:
    """The samples of one or several folders (of layout ``kind``); several are mapped onto the
    model's classes."""
    classes = class_names if len(data) > 1 and kind == CLASSIFY_DATA else None
    return load_data(data, kind, classes)


def per_source_table(per_source: dict[str, dict]) -> Table:
    """Balanced accuracy, tumour AUC, sensitivity and specificity of each test source."""
    from braintumor.metrics.per_source import HEADLINE

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    table = Table(title="per source", title_justify="left")
    table.add_column("source")
    table.add_column("n", justify="right")
    for key in HEADLINE:
        table.add_column(key.replace("_", " "), justify="right")
    for source, m in per_source.items():
        table.add_row(source, str(m["n"]), *(fmt(m.get(key)) for key in HEADLINE))
    return table


def _say_adaptation(record: dict | None) -> None:
    """What ``--adapt-bn`` did: the images of each source, or why it did nothing."""
    if record is None:
        return
    if not record["layers"]:
        _console(stderr=True).print(f"[yellow]warning:[/yellow] {record['note']}")
        return
    sources = ", ".join(f"{source} {n}" for source, n in record["images"].items())
    _console().print(
        f"batch norm adapted ({record['layers']} layers) on the images of each source: "
        f"{sources}; no out-of-distribution scores"
    )


def evaluate_command(
    model: Annotated[
        Path, typer.Argument(help="Model folder (model.json + model.safetensors) or zoo:NAME.")
    ],
    data: Annotated[
        list[str] | None,
        typer.Argument(
            help="Labelled dataset folder(s) (any known layout); several give metrics per "
            "source (NAME=PATH names one, PATH:CLASS keeps only that class)."
        ),
    ] = None,
    data_option: Annotated[
        list[str] | None,
        typer.Option("--data", help="A dataset folder, given as in `train` (instead of DATA)."),
    ] = None,
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
    adapt_bn: Annotated[
        bool,
        typer.Option(
            "--adapt-bn",
            help="2D models: re-estimate the batch-norm statistics on each source's images "
            "before predicting it (AdaBN; labels unused, the model folder unchanged).",
        ),
    ] = False,
) -> None:
    """Evaluate a model: metrics.json, predictions and report.html in the output folder."""
    with user_errors():
        data = _datasets(data, data_option)
        loaded = load_model_dir(model, device=resolve_device(device))
        task = task_of(loaded)
        layout = _load(task.data_kinds[0], loaded.info.class_names, data)
        samples = select_samples(layout.samples, split, splits_csv)
        if out is None:
            names = "+".join(sorted({s.source or "data" for s in layout.samples}))
            out = model.parent / (f"eval-{names}" + (f"-{split}" if split else ""))
        if layout.task not in task.data_kinds:
            raise DataError(
                f"{layout.root}: {loaded.path} is a {loaded.info.task} model, but this folder is "
                f"a {layout.name} layout, not {DATA_DESCRIPTIONS[task.data_kinds[0]]}"
            )
        check_output_folder(out)
        run = RunFolder.of_model(model)
        with removed_on_user_error(out):  # a failed evaluation leaves no output folder
            curves = run.curves() if run is not None else None
            options = EvaluateOptions(curves, batch_size, tta, adapt_bn)
            metrics = task.evaluate(loaded, samples, out, options)
    console = _console()
    console.print(task.summary_table(metrics))
    if len(metrics.get("per_source") or {}) > 1:
        console.print(per_source_table(metrics["per_source"]))
    for old, new in (metrics.get("label_mapping") or {}).items():
        console.print(f"label {old} counted as {new} (two-class tumour model)")
    _say_adaptation(metrics.get("adapt_bn"))
    ood = metrics.get("ood")
    if ood and ood["n_flagged"]:
        _console(stderr=True).print(
            f"[yellow]warning:[/yellow] {ood['n_flagged']} of {metrics['n']} images "
            f"({ood['flagged_rate']:.1%}) look unlike the model's training images "
            f"(out-of-distribution score above {ood['threshold']:.4g}; column ood in "
            "predictions.csv); about 5% of in-distribution images are flagged by design"
        )
    if metrics.get("skipped"):
        err = _console(stderr=True)
        err.print(f"[yellow]{len(metrics['skipped'])} unreadable samples left out (metrics.json)")
    console.print(f"report: {Path(out) / 'report.html'}")
