"""``braintumor train`` and ``braintumor recipes``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from braintumor.cli.errors import run_cli
from braintumor.config import Recipe, load_recipe, recipe_names
from braintumor.errors import DataError

if TYPE_CHECKING:
    from braintumor.training.interrupt import TrainingInterrupted


def _devices(text: str) -> int | str:
    return int(text) if text.isdigit() else text


@run_cli
def train_command(
    recipe: str = typer.Argument("fast-cpu-4class", help="Recipe name or YAML path."),
    data: list[str] = typer.Option(
        ...,
        "--data",
        help="Dataset folder (any supported layout); repeat to pool several. NAME=PATH names "
        "a source, PATH:CLASS[,CLASS] keeps only those classes of it.",
    ),
    test_data: Path | None = typer.Option(
        None, help="Another dataset to evaluate on after training (cross-dataset test)."
    ),
    splits: Path | None = typer.Option(None, help="splits.csv from `braintumor data split`."),
    run_dir: Path | None = typer.Option(None, help="Run folder (default runs/<recipe>-<time>)."),
    name: str | None = typer.Option(
        None, "--name", help="The model's name on the web page (default: the run folder's name)."
    ),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe key: key=value."),
    weights: Path | None = typer.Option(None, help="Local weights file to start from."),
    pretrained: bool | None = typer.Option(
        None, "--pretrained/--no-pretrained", help="Hub weights (needs internet)."
    ),
    devices: str = typer.Option("auto", help="Devices per node: auto, 1, 2, ..."),
    nodes: int = typer.Option(1, help="Number of nodes (Lightning DDP)."),
    accelerator: str = typer.Option("auto", help="auto, cpu, gpu."),
    resume: bool = typer.Option(
        False, help="Resume the run in --run-dir from its last checkpoint."
    ),
    protocol: str | None = typer.Option(
        None,
        help="Protocol: loso (leave one --data source out) or kfold (patient-grouped k-fold).",
    ),
    test_source: list[str] = typer.Option(
        [], help="Protocol: hold out this source (repeat for one fold each)."
    ),
    val_source: list[str] = typer.Option(
        [], help="Protocol: validate on this source instead of a carved split."
    ),
    copies: str = typer.Option(
        "auto",
        help="Protocol: remove cross-source copies of the held-out source from train, from "
        "test, or auto (train unless that loses a class).",
    ),
    folds: int = typer.Option(5, min=2, help="Number of folds for --protocol kfold."),
    adapt_bn: bool = typer.Option(
        False,
        "--adapt-bn",
        help="--protocol loso: also report each held-out source with the batch-norm statistics "
        "re-estimated on its images (AdaBN).",
    ),
    members: int = typer.Option(
        1,
        min=1,
        help="Train this many models (seeds seed, seed+1, ...) on one split and write their "
        "ensemble to RUN/model, evaluated on the test split.",
    ),
) -> None:
    """Train a recipe on your data; writes a run folder with the best model and a report."""
    from braintumor.training.interrupt import TrainingInterrupted
    from braintumor.training.run import default_run_dir, train_run  # Lightning: slow to import

    overrides = list(set_)
    if weights is not None:
        overrides.append(f"weights={weights}")
    if pretrained is not None:
        overrides.append(f"pretrained={str(pretrained).lower()}")
    if resume and run_dir is None:
        raise DataError("--resume needs --run-dir: the run folder to resume")
    resolved = load_recipe(recipe, overrides)
    folder = run_dir or default_run_dir(resolved)
    protocol = protocol or resolved.extra.protocol
    if protocol is None and (test_source or val_source):
        protocol = "loso"
    if adapt_bn and protocol != "loso":
        raise DataError(
            "--adapt-bn goes with --protocol loso; for a trained model: braintumor evaluate "
            "MODEL DATA --adapt-bn"
        )
    if members > 1 and (protocol is not None or test_data is not None):
        raise DataError(
            "--members trains one ensemble on one split; it goes without --protocol and "
            "--test-data (evaluate the ensemble with braintumor evaluate RUN/model DATA)"
        )
    if protocol is not None:
        options = {
            "test_sources": list(test_source),
            "val_sources": list(val_source),
            "copies": copies,
            "folds": folds,
            "splits_csv": splits,
            "resume": resume,
            "devices": _devices(devices),
            "nodes": nodes,
            "accelerator": accelerator,
            "adapt_bn": adapt_bn,
        }
        _run_protocol(protocol, resolved, data, folder, options)
        return
    try:
        common: dict[str, Any] = {
            "splits_csv": splits,
            "resume": resume,
            "name": name,
            "devices": _devices(devices),
            "nodes": nodes,
            "accelerator": accelerator,
        }
        if members > 1:
            from braintumor.training.members import train_members

            result = train_members(resolved, data, folder, members, **common)
        else:
            result = train_run(resolved, data, folder, test_data=test_data, **common)
    except TrainingInterrupted as stop:
        _say_how_to_resume(stop)
        raise typer.Exit(stop.exit_code) from stop
    except KeyboardInterrupt:  # before or after the training loop: nothing to resume from
        Console(stderr=True).print("[yellow]interrupted")
        raise typer.Exit(130) from None
    if result.model_dir is None:
        return
    console = Console()
    console.print(f"[green]model[/green] {result.model_dir}")
    for split, values in result.metrics.items():
        shown = {k: v for k, v in values.items() if isinstance(v, int | float)}
        console.print(
            f"[bold]{split}[/bold] " + "  ".join(f"{k}={v:.4g}" for k, v in shown.items())
        )
    report = result.run_dir / "report.html"
    if report.is_file():
        console.print(f"[green]report[/green] {report}")


def _say_how_to_resume(stop: TrainingInterrupted) -> None:
    from braintumor.training.interrupt import resume_command

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    last = stop.run_dir / "checkpoints" / "last.ckpt"
    err.print(f"[yellow]interrupted ({stop}); last checkpoint: {last}")
    err.print(f"resume with: {resume_command(sys.argv[1:], stop.resume_dir)}", markup=False)


def _run_protocol(name: str, recipe: Recipe, data: list[str], folder: Path, options: dict) -> None:
    """Run a registered protocol and print its per-source summary."""
    from braintumor.protocols import PROTOCOLS  # trains: imports Lightning

    if name not in PROTOCOLS:
        raise typer.BadParameter(f"--protocol must be one of {', '.join(sorted(PROTOCOLS))}")
    summary = PROTOCOLS[name](recipe, data, folder, **options)
    console = Console()
    # Each protocol's summary has its own shape ("folds" is a list for loso, K for kfold).
    _SUMMARY_PRINTERS[summary["protocol"]](console, summary)
    report = folder / "report.html"
    console.print(f"[green]report[/green] {report if report.is_file() else folder / 'kfold.json'}")


def _print_source_folds(console: Console, summary: dict) -> None:
    """Leave-one-source-out: each held-out source's metrics, then mean and worst; the same
    with batch norm adapted when the protocol ran with ``--adapt-bn``."""
    _print_held_out(console, summary, "metrics", "summary", "held out")
    notes = {(f.get("adapt_bn") or {}).get("note") for f in summary.get("folds", [])}
    for note in sorted(n for n in notes if n):
        console.print(f"[yellow]warning:[/yellow] {note}")
    label = "held out, batch norm adapted"
    _print_held_out(console, summary, "metrics_adapted", "summary_adapted", label)


def _print_held_out(
    console: Console, summary: dict, metrics_key: str, summary_key: str, label: str
) -> None:
    from braintumor.models.card_loso import loso_columns

    keys = [key for key, _ in loso_columns(summary.get("task"))]
    for fold in summary.get("folds", []):
        for source, m in fold.get(metrics_key, {}).items():
            shown = "  ".join(f"{k}={m[k]:.4g}" for k in keys if m.get(k) is not None)
            console.print(f"[bold]{source}[/bold] ({label}, n={m['n']}) {shown}")
    for key, values in summary.get(summary_key, {}).items():
        console.print(
            f"{key} ({label}): mean {values['mean']:.4g}, worst {values['worst']:.4g} "
            f"({values['worst_source']})"
        )


def _print_patient_folds(console: Console, summary: dict) -> None:
    """k-fold: each fold's per-patient Dice, then the pooled figure with its interval."""
    for fold in summary.get("per_fold", []):
        dice = (fold.get("patient_dice") or {}).get("mean")
        shown = "n/a" if dice is None else f"{dice:.4f}"
        console.print(
            f"fold {fold['fold']}: per-patient Dice {shown} ({len(fold['patients'])} patients)"
        )
    pooled = summary.get("pooled", {}).get("patient_dice") or {}
    if pooled.get("mean") is not None:
        low, high = pooled["ci95"] or (pooled["mean"], pooled["mean"])
        console.print(
            f"[bold]pooled[/bold] per-patient Dice mean {pooled['mean']:.4f} "
            f"(95% CI {low:.4f} to {high:.4f}), median {pooled['median']:.4f}, n={pooled['n']}"
        )


#: The terminal summary of each protocol, by the ``protocol`` its summary names.
_SUMMARY_PRINTERS: dict[str, Callable[[Console, dict], None]] = {
    "loso": _print_source_folds,
    "kfold": _print_patient_folds,
}


def recipes_command() -> None:
    """List the shipped recipes."""
    table = Table(title="recipes")
    for column in ("name", "task", "model", "description"):
        table.add_column(column)
    for name in recipe_names():
        recipe = load_recipe(name)
        table.add_row(name, recipe.task, recipe.model, recipe.description)
    Console().print(table)
