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

from braintumor.cli.errors import user_errors
from braintumor.data.layouts import detect_layout
from braintumor.data.layouts_base import DATA_DESCRIPTIONS
from braintumor.data.splits import select_samples
from braintumor.errors import DataError
from braintumor.inference.predictor import resolve_device
from braintumor.models.folder import load_model_dir
from braintumor.preflight import check_output_folder, removed_on_user_error
from braintumor.runfolder import RunFolder
from braintumor.tasks import task_of


def _console(stderr: bool = False) -> Console:
    # Built per call so that test runners that swap the streams see the output.
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _one_dataset(positional: Path | None, option: Path | None) -> Path:
    """The dataset folder, given either as the second argument or with ``--data``."""
    if positional is not None and option is not None and positional != option:
        raise DataError(f"two datasets given ({positional} and --data {option}); give one")
    data = positional or option
    if data is None:
        raise DataError("no dataset given: braintumor evaluate MODEL DATA (or --data DATA)")
    return data


def evaluate_command(
    model: Annotated[Path, typer.Argument(help="Model folder (model.json + model.safetensors).")],
    data: Annotated[
        Path | None, typer.Argument(help="Labelled dataset folder (any known layout).")
    ] = None,
    data_option: Annotated[
        Path | None,
        typer.Option("--data", help="The dataset folder, given as in `train` (instead of DATA)."),
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
) -> None:
    """Evaluate a model: metrics.json, predictions and report.html in the output folder."""
    with user_errors():
        data = _one_dataset(data, data_option)
        loaded = load_model_dir(model, device=resolve_device(device))
        layout = detect_layout(data)
        samples = select_samples(layout.samples, split, splits_csv)
        if out is None:
            out = model.parent / (f"eval-{data.resolve().name}" + (f"-{split}" if split else ""))
        task = task_of(loaded)
        if layout.task not in task.data_kinds:
            raise DataError(
                f"{layout.root}: {loaded.path} is a {loaded.info.task} model, but this folder is "
                f"a {layout.name} layout, not {DATA_DESCRIPTIONS[task.data_kinds[0]]}"
            )
        check_output_folder(out)
        run = RunFolder.of_model(model)
        with removed_on_user_error(out):  # a failed evaluation leaves no output folder
            metrics = task.evaluate(
                loaded,
                samples,
                out,
                curves_csv=run.curves() if run is not None else None,
                batch_size=batch_size,
                tta=tta,
            )
    console = _console()
    console.print(task.summary_table(metrics))
    for old, new in (metrics.get("label_mapping") or {}).items():
        console.print(f"label {old} counted as {new} (two-class tumour model)")
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
