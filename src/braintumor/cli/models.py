"""``braintumor models``: the registered networks, the shipped reference models, model cards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from braintumor.cli.errors import user_errors

models_app = typer.Typer(
    help="List the registered networks (--zoo: the shipped reference models); print a card; "
    "add out-of-distribution statistics to a model folder; average models into an ensemble.",
    invoke_without_command=True,
)

TaskOption = Annotated[
    str | None,
    typer.Option("--task", help="Only this task: classify, segment2d or segment3d."),
]
FormatOption = Annotated[
    str, typer.Option("--format", help="table (rich) or markdown (for documentation).")
]
ZooOption = Annotated[
    bool, typer.Option("--zoo", help="List the reference models shipped with the package.")
]


def model_rows(task: str | None = None, num_classes: int = 2) -> list[dict[str, str]]:
    """One row per registered model; sizes are counted on the meta device (nothing allocated)."""
    from braintumor.models import list_models
    from braintumor.models.registry import meta_size

    rows = []
    for spec in list_models(task):
        try:
            params, size = meta_size(spec.name, num_classes=num_classes)
            params_text, size_text, note = f"{params / 1e6:.2f}", f"{size:.1f}", ""
        except Exception as exc:  # a model with a missing optional dependency still gets a row
            params_text, size_text, note = "n/a", "n/a", f" ({exc})"
        rows.append(
            {
                "name": spec.name,
                "task": spec.task,
                "source": spec.source,
                "params (M)": params_text,
                "size (MB)": size_text,
                "description": spec.description + note,
            }
        )
    return rows


def markdown_table(rows: list[dict[str, str]]) -> str:
    """The rows as a GitHub markdown table."""
    if not rows:
        return ""
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row[k].replace("|", "\\|") for k in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def zoo_rows() -> list[dict[str, str]]:
    """One row per shipped reference model: reference, task, headline figures, summary."""
    from braintumor.zoo import ZOO_PREFIX, zoo_entries

    return [
        {
            "model": ZOO_PREFIX + entry.name,
            "task": entry.task,
            "headline (test split, 95% interval)": "; ".join(
                f"{k} {v}" for k, v in entry.headline.items()
            ),
            "description": entry.summary,
        }
        for entry in zoo_entries().values()
    ]


def _show_zoo(output_format: str) -> None:
    with user_errors():
        rows = zoo_rows()
    console = Console(highlight=False, soft_wrap=True)
    if not rows:
        console.print("no reference models are installed")
        return
    if output_format == "markdown":
        console.out(markdown_table(rows), end="")
        return
    table = Table(title="Reference models (zoo:NAME)", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in rows[0]:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row.values())
    console.print(table)
    console.print("cards: braintumor models card zoo:NAME")


def _show(task: str | None, output_format: str, zoo: bool = False) -> None:
    with user_errors():
        if output_format not in ("table", "markdown"):
            from braintumor.errors import RecipeError

            raise RecipeError(f"--format must be table or markdown, got {output_format!r}")
        if zoo:
            _show_zoo(output_format)
            return
        rows = model_rows(task)
    console = Console(highlight=False, soft_wrap=output_format == "markdown")
    if output_format == "markdown":
        console.out(markdown_table(rows), end="")
        return
    table = Table(
        title="Registered models (2 outputs; 3 input channels, 4 for 3D)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for column in ("name", "task", "source", "params (M)", "size (MB)"):
        numeric = column.startswith(("params", "size"))
        table.add_column(column, justify="right" if numeric else "left", no_wrap=True)
    # a narrow terminal keeps the numbers readable and leaves the descriptions out
    wide = console.width >= 110
    if wide:
        table.add_column("description", overflow="fold")
    for row in rows:
        values = list(row.values())
        table.add_row(*(values if wide else values[:-1]))
    console.print(table)
    if not wide:
        console.print("(descriptions: a wider terminal, or --format markdown)")


@models_app.callback()
def models_main(
    ctx: typer.Context,
    task: TaskOption = None,
    output_format: FormatOption = "table",
    zoo: ZooOption = False,
) -> None:
    """List every registered model (same as ``braintumor models list``)."""
    if ctx.invoked_subcommand is None:
        _show(task, output_format, zoo)


@models_app.command("list")
def list_command(
    task: TaskOption = None, output_format: FormatOption = "table", zoo: ZooOption = False
) -> None:
    """Show name, task, source, parameters (millions), size (MB) and description."""
    _show(task, output_format, zoo)


@models_app.command("card")
def card_command(
    model: Annotated[str, typer.Argument(help="Model folder or zoo:NAME.")],
    loso: Annotated[
        Path | None,
        typer.Option(
            "--loso",
            help="A benchmarks/loso.py results file: print the card with its "
            "leave-one-source-out section from these figures (the folder is not changed).",
        ),
    ] = None,
) -> None:
    """Print a model's card (its README.md; rendered from model.json for older folders)."""
    from braintumor.errors import DataError
    from braintumor.models.card import read_card
    from braintumor.models.card_loso import loso_section, read_loso_results, replace_loso_section
    from braintumor.models.folder import read_model_info
    from braintumor.zoo import resolve_model_ref

    with user_errors():
        text = read_card(model)
        if loso is not None:
            info = read_model_info(resolve_model_ref(model))
            results = read_loso_results(loso)
            measured = results.get("task", "classify")  # older results files name no task
            if info.task != measured:
                raise DataError(
                    f"--loso: {loso} holds a {measured} model's leave-one-source-out figures; "
                    f"{model} is a {info.task} model"
                )
            section = loso_section(results, info.recipe, loso.name)
            text = replace_loso_section(text, section)
    typer.echo(text, nl=False)


@models_app.command("calibrate-ood")
def calibrate_ood_command(
    model: Annotated[Path, typer.Argument(help="Model folder (model.json + model.safetensors).")],
    data: Annotated[Path, typer.Option("--data", help="The images the model was trained on.")],
    splits_csv: Annotated[
        Path | None,
        typer.Option(
            "--splits",
            help="A run's splits.csv (train and val splits). Default: the model's run folder's, "
            "else a grouped 80/20 split of the data without its test samples.",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
) -> None:
    """Add out-of-distribution statistics to a model folder (e.g. one made before they existed)."""
    with user_errors():
        from braintumor.data.layouts import detect_layout
        from braintumor.inference.ood_fit import calibrate_model_dir, calibration_splits

        pinned = model.parent / "splits.csv"
        if splits_csv is None and pinned.is_file():
            splits_csv = pinned
        train, val = calibration_splits(detect_layout(data), splits_csv)
        stats = calibrate_model_dir(model, train, val, batch_size=batch_size)
    Console(highlight=False).print(
        f"{model}: out-of-distribution statistics from {stats.details['n_train']} training "
        f"images ({stats.method} on {stats.layer!r}); threshold {stats.threshold:.4g} accepts "
        f"{stats.details['val_accepted']:.1%} of {stats.details['n_val']} validation images"
        + (f" (splits from {splits_csv})" if splits_csv else "")
    )


@models_app.command("ensemble")
def ensemble_command(
    members: Annotated[
        list[str],
        typer.Argument(
            help="Two or more model folders (or zoo:NAME) of one recipe, trained on the same "
            "data, e.g. with different seeds."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The ensemble model folder to write.")],
    name: Annotated[str, typer.Option("--name", help="Its name (default: the folder's).")] = "",
) -> None:
    """Average trained models into one model folder (a deep ensemble: the mean of their logits)."""
    with user_errors():
        from braintumor.models.combine import combine_model_dirs

        combined = combine_model_dirs(members, out, name)
    console = Console(highlight=False)
    console.print(
        f"{combined.folder}: an ensemble of {combined.members} models; measure it with "
        f"`braintumor evaluate {combined.folder} DATA`"
    )
    for note in combined.notes:
        console.print(f"[yellow]note: {note}")
