"""``braintumor train`` and ``braintumor recipes``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from braintumor.cli.errors import run_cli
from braintumor.config import load_recipe, recipe_names


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
    from braintumor.training.run import default_run_dir, train_run  # Lightning: slow to import

    overrides = list(set_)
    if weights is not None:
        overrides.append(f"weights={weights}")
    if pretrained is not None:
        overrides.append(f"pretrained={str(pretrained).lower()}")
    resolved = load_recipe(recipe, overrides)
    if resume and run_dir is None:
        raise typer.BadParameter("--resume needs --run-dir")
    folder = run_dir or default_run_dir(resolved)
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
    )
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


def recipes_command() -> None:
    """List the shipped recipes."""
    table = Table(title="recipes")
    for column in ("name", "task", "model", "description"):
        table.add_column(column)
    for name in recipe_names():
        recipe = load_recipe(name)
        table.add_row(name, recipe.task, recipe.model, recipe.description)
    Console().print(table)
