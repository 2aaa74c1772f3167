"""``braintumor train`` and ``braintumor recipes``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from braintumor.cli.errors import run_cli
from braintumor.config import load_recipe, recipe_names
from braintumor.errors import DataError

if TYPE_CHECKING:
    from braintumor.training.interrupt import TrainingInterrupted


def _devices(text: str) -> int | str:
    return int(text) if text.isdigit() else text


@run_cli
def train_command(
    recipe: str = typer.Argument("fast-cpu-4class", help="Recipe name or YAML path."),
    data: Path = typer.Option(..., "--data", help="Dataset folder (any supported layout)."),
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
    try:
        result = train_run(
            resolved,
            data,
            folder,
            test_data=test_data,
            splits_csv=splits,
            resume=resume,
            devices=_devices(devices),
            nodes=nodes,
            accelerator=accelerator,
            name=name,
        )
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
    err.print(f"resume with: {resume_command(sys.argv[1:], stop.run_dir)}", markup=False)


def recipes_command() -> None:
    """List the shipped recipes."""
    table = Table(title="recipes")
    for column in ("name", "task", "model", "description"):
        table.add_column(column)
    for name in recipe_names():
        recipe = load_recipe(name)
        table.add_row(name, recipe.task, recipe.model, recipe.description)
    Console().print(table)
