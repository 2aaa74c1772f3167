"""``braintumor export``: a model folder to ONNX, checked against PyTorch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from braintumor.cli.errors import user_errors
from braintumor.errors import DataError
from braintumor.inference.inputs import axial_slice, expand_inputs, is_volume, read_input
from braintumor.models.folder import load_model_dir
from braintumor.preflight import check_output_file
from braintumor.zoo import ZOO_PREFIX, is_zoo_ref

FORMATS = ("onnx",)


def export_command(
    model: Annotated[
        Path, typer.Argument(help="Model folder (model.json + model.safetensors) or zoo:NAME.")
    ],
    format: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Output file [default: MODEL/model.onnx; zoo:NAME: ./NAME.onnx].",
        ),
    ] = None,
    opset: Annotated[int, typer.Option("--opset", min=11, help="ONNX opset version.")] = 17,
    check_images: Annotated[
        list[str] | None,
        typer.Option(
            "--check-images",
            help="Real images (files, folders, globs) for the parity check, besides random inputs.",
        ),
    ] = None,
    max_check_images: Annotated[int, typer.Option("--max-check-images", min=0)] = 16,
    tolerance: Annotated[
        float, typer.Option("--tolerance", min=0.0, help="Largest allowed |ONNX - PyTorch|.")
    ] = 1e-4,
) -> None:
    """Export a 2D model to ONNX (dynamic batch) and check onnxruntime against PyTorch."""
    with user_errors():
        if format not in FORMATS:
            raise DataError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
        if out is None and is_zoo_ref(model):
            out = Path(f"{str(model)[len(ZOO_PREFIX) :]}.onnx")  # never into the installed package
        if out is not None:
            check_output_file(out)
        from braintumor.export import export_onnx, parity_path  # optional extra: onnx

        images = []
        for path in expand_inputs(check_images)[:max_check_images] if check_images else []:
            image = read_input(path)
            images.append(axial_slice(image)[0] if is_volume(image) else image)
        loaded = load_model_dir(model)
        written = export_onnx(loaded, out, opset=opset, parity_images=images, tolerance=tolerance)
        parity = json.loads(parity_path(written).read_text())
        Console(highlight=False).print(
            f"wrote {written} (max |ONNX - PyTorch| = {parity['max_abs_diff']:.2e} over "
            f"{len(parity['checks'])} checks, {parity['n_real_images']} real images)"
        )
