"""``braintumor demo``: the main job end to end on synthetic phantoms, in a few minutes.

It ends on a few real slices shipped with the package, predicted by the phantom models and by
the reference models of the zoo side by side.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import typer
from rich.console import Console

from braintumor.cli.errors import run_cli
from braintumor.config import load_recipe

# Small enough for about a minute of CPU training per model, big enough to learn.
CLASSIFY_OVERRIDES = ["image_size=96", "max_epochs=40", "max_minutes=1.0"]
SEGMENT_OVERRIDES = ["image_size=96", "max_epochs=60", "max_minutes=1.0"]


@run_cli
def demo_command(
    out: Path = typer.Option(Path("demo-out"), help="Folder for data, runs and predictions."),
    n_per_class: int = typer.Option(120, help="Synthetic slices per class."),
    seed: int = typer.Option(0, help="Seed of the synthetic data."),
) -> None:
    """Synthesise data, train a classifier and a segmenter, evaluate, predict, report."""
    from braintumor.cli.demo_reference import compare_on_examples
    from braintumor.cli.predict import predict_command
    from braintumor.data.synthetic import write_synthetic_dataset
    from braintumor.training.run import train_run
    from braintumor.zoo import zoo_entries

    console = Console()
    if out.exists():
        shutil.rmtree(out)
    data = out / "data"
    console.rule("1/5 synthetic data")
    classify_data = write_synthetic_dataset(data / "classify", "classify", n=n_per_class, seed=seed)
    segment_data = write_synthetic_dataset(
        data / "segment", "segment", n=4 * n_per_class, seed=seed
    )
    console.print(f"classification slices in {classify_data}, slice/mask pairs in {segment_data}")

    console.rule("2/5 classifier (fast-cpu-4class)")
    recipe = load_recipe("fast-cpu-4class", CLASSIFY_OVERRIDES)
    classifier = train_run(recipe, classify_data, out / "runs" / "classifier")
    console.print(f"test accuracy {classifier.metrics['test']['accuracy']:.3f}")

    console.rule("3/5 segmenter (fast-cpu-seg)")
    recipe = load_recipe("fast-cpu-seg", SEGMENT_OVERRIDES)
    segmenter = train_run(recipe, segment_data, out / "runs" / "segmenter")
    console.print(f"test Dice {segmenter.metrics['test']['dice']:.3f}")

    console.rule("4/5 predictions")
    examples = sorted((classify_data).glob("*/*.png"))[::40][:6]
    inputs = [str(p) for p in examples]
    for name, result in (("classifier", classifier), ("segmenter", segmenter)):
        try:
            predict_command([str(result.model_dir), *inputs], out / "predictions" / name)
        except typer.Exit as done:
            if done.exit_code:
                raise

    console.rule("5/5 real slices: phantom models beside the reference models")
    with_reference = {"4class", "seg2d"} <= set(zoo_entries())
    if not with_reference:
        console.print("[yellow]no reference models installed: phantom models only")
    figure = compare_on_examples(
        classifier.model_dir, segmenter.model_dir, out / "real-slices", with_reference
    )
    console.print(f"comparison on real Figshare slices: {figure}")
    console.print(
        f"[green]done[/green]: reports in {out / 'runs'}/*/report.html, "
        f"predictions in {out / 'predictions'} and {out / 'real-slices'}"
    )
