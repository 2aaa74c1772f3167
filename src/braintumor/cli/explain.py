"""``braintumor explain``: Grad-CAM overlays and class probabilities for images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from braintumor.atomic import write_text_atomic
from braintumor.cli.errors import user_errors
from braintumor.errors import DataError, ImageReadError
from braintumor.inference.inputs import (
    axial_slice,
    expand_inputs,
    is_volume,
    read_input,
    unique_stems,
)
from braintumor.inference.predictor import Predictor
from braintumor.models.folder import load_model_dir
from braintumor.preflight import check_output_folder


def explain_command(
    model: Annotated[
        Path, typer.Argument(help="Classifier folder (model.json + weights) or zoo:NAME.")
    ],
    inputs: Annotated[
        list[str], typer.Argument(help="Image files, folders (searched recursively) or globs.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the overlays.")],
    target: Annotated[
        str | None,
        typer.Option("--target", help="Class to explain (name or index) [default: predicted]."),
    ] = None,
    slice: Annotated[
        str, typer.Option("--slice", help="Axial slice of a volume: N or 'mid'.")
    ] = "mid",
) -> None:
    """Write a Grad-CAM overlay per image and explanations.json with the probabilities."""
    from braintumor.explain import check_explainable, explain_image, resolve_target

    with user_errors():
        check_output_folder(out)
        loaded = load_model_dir(model)
        check_explainable(loaded)
        resolve_target(target, loaded.info.class_names)
        predictor = Predictor(loaded)
        paths = expand_inputs(inputs)
        out.mkdir(parents=True, exist_ok=True)  # only once there is something to explain
        records, failures = [], []
        console = Console(highlight=False)
        for path, stem in zip(paths, unique_stems(paths), strict=True):
            try:
                image = read_input(path)
                if is_volume(image):
                    image, index = axial_slice(image, slice)
                    stem = f"{stem}_z{index}"
                result = explain_image(
                    loaded, image, out, target=target, predictor=predictor, name=stem
                )
            except (ImageReadError, DataError) as error:
                failures.append({"id": stem, "path": str(path), "error": str(error)})
                Console(stderr=True, highlight=False).print(f"skipped: {error}")
                continue
            result.pop("overlay")
            result.update(id=stem, path=str(path), overlay_path=Path(result["overlay_path"]).name)
            records.append(result)
            console.print(
                f"{stem}: {result['predicted_class']} "
                f"({result['probabilities'][result['predicted_class']]:.3f}), "
                f"Grad-CAM of {result['target_class']} -> {result['overlay_path']}"
            )
        payload = {"model": str(model), "explanations": records, "errors": failures}
        write_text_atomic(out / "explanations.json", json.dumps(payload, indent=2))
        if failures and not records:
            raise typer.Exit(1)
