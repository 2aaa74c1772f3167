"""The demo's last step: phantom-trained and reference models side by side on real slices.

The real slices are a few Figshare images shipped with the package (CC BY 4.0, see
``examples/figshare/ATTRIBUTION.md``); their file names start with the true class.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from braintumor.cli.predict import predict_command

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples" / "figshare"


def example_slices() -> list[Path]:
    """The shipped real example slices (``<class>_<number>.png``)."""
    return sorted(EXAMPLES_DIR.glob("*.png"))


def _predict(arguments: list[str], out: Path) -> None:
    try:
        predict_command(arguments, out)
    except typer.Exit as done:
        if done.exit_code:
            raise


def _probabilities(folder: Path) -> dict[str, dict[str, float]]:
    payload = json.loads((folder / "predictions.json").read_text())
    return {p["id"]: p["probabilities"] for p in payload["predictions"]}


def _caption(probs: dict[str, float]) -> str:
    ranked = sorted(probs.items(), key=lambda kv: -kv[1])[:2]
    return ", ".join(f"{name} {p:.2f}" for name, p in ranked)


def compare_on_examples(
    classifier: Path, segmenter: Path, out: Path, with_reference: bool = True
) -> Path:
    """Predict the examples with the phantom models and the reference models; one figure.

    Writes predictions under ``out/phantom-*`` and ``out/reference`` and returns the PNG with
    one row per slice: outline and class probabilities of each pair of models.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    slices = [str(p) for p in example_slices()]
    _predict([str(classifier), *slices], out / "phantom-classifier")
    _predict([str(segmenter), *slices], out / "phantom-segmenter")
    columns = [
        ("models trained on phantoms", out / "phantom-classifier", out / "phantom-segmenter")
    ]
    if with_reference:
        _predict(slices, out / "reference")  # no model: the reference models pick themselves
        columns.append(
            (
                "reference models zoo:4class + zoo:seg2d",
                out / "reference" / "4class",
                out / "reference" / "seg2d",
            )
        )
    fig, axes = plt.subplots(
        len(slices), len(columns), figsize=(3.2 * len(columns), 3.0 * len(slices)), squeeze=False
    )
    for col, (title, cls_dir, seg_dir) in enumerate(columns):
        probs = _probabilities(cls_dir)
        for row, path in enumerate(slices):
            stem = Path(path).stem
            ax = axes[row][col]
            ax.imshow(Image.open(seg_dir / f"{stem}_overlay.png"))
            truth = stem.split("_")[0]
            ax.set_title(f"{title}\n" if row == 0 else "", fontsize=8)
            ax.set_xlabel(f"true: {truth}; {_caption(probs[stem])}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("Real Figshare slices (CC BY 4.0, Jun Cheng): outline and top-2 probabilities")
    fig.tight_layout(rect=(0, 0, 1, 0.97))  # room for the title above the columns
    figure = out / "comparison.png"
    fig.savefig(figure, dpi=80)
    plt.close(fig)
    return figure
