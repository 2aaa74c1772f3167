"""``braintumor predict MODEL INPUTS... --out DIR``: run a trained model on files and folders.

Classification writes ``predictions.csv`` and ``predictions.json``; segmentation writes a mask,
an overlay and a localisation JSON per input plus ``summary.csv``/``summary.json``; slices of
patient folders (LGG ``<patient>/<patient>_N.tif``) also get a per-patient summary
(``patients.csv``, a PNG strip each). Inputs that
cannot be read are listed in those files with their error; the others are still predicted.
Models whose task takes cases (BraTS) are given case folders. The model's task does the work
(:mod:`braintumor.tasks.predict`, shared with the web app); :mod:`braintumor.cli.predict_run`
writes its tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from braintumor.cli.errors import user_errors
from braintumor.cli.predict_run import predict_with
from braintumor.errors import DataError, ImageReadError, LayoutError
from braintumor.inference.mask_formats import MASK_FORMATS
from braintumor.models.folder import read_model_info
from braintumor.tasks.registry import MASK, model_task
from braintumor.zoo import ZOO_PREFIX, default_zoo_models, is_zoo_ref


def _console() -> Console:
    # Built per call so that test runners that swap the streams see the output.
    return Console(highlight=False, soft_wrap=True)


def predict_command(
    arguments: Annotated[
        list[str],
        typer.Argument(
            metavar="[MODEL] INPUTS...",
            help="A model folder or zoo:NAME, then image files, folders (searched recursively) "
            "or globs. Without a model, the shipped reference models for the inputs' kind.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the outputs.")] = Path(
        "predictions"
    ),
    tta: Annotated[
        bool | None,
        typer.Option(
            "--tta/--no-tta",
            help="Average with the horizontally mirrored image. Default: the model's setting "
            "(segmenters choose it on validation; other models: off).",
        ),
    ] = None,
    keep_largest: Annotated[
        bool | None,
        typer.Option(
            "--keep-largest/--all-components",
            help="Segmenters: keep only the largest tumour component. Default: the model's "
            "setting, chosen on validation.",
        ),
    ] = None,
    stack_components: Annotated[
        bool | None,
        typer.Option(
            "--stack-components/--no-stack-components",
            help="Segmenters, patient folders (<patient>/<patient>_N.tif): drop 3D tumour "
            "components under a quarter of the stack's largest. Default: the model's setting, "
            "chosen on validation.",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
    precision: Annotated[
        str,
        typer.Option(
            "--precision",
            help="auto (bf16 on CPUs with AMX, or AMD with AVX512-BF16, else fp32), fp32 or bf16.",
        ),
    ] = "auto",
    slice: Annotated[
        str, typer.Option("--slice", help="Axial slice of a volume for a 2D model: N or 'mid'.")
    ] = "mid",
    min_area: Annotated[
        int, typer.Option("--min-area", min=0, help="Drop tumour components below N pixels.")
    ] = 0,
    threshold: Annotated[
        float,
        typer.Option(
            "--threshold",
            min=0.0,
            max=1.0,
            help="Probability at which a pixel (or a two-class model's positive class) is tumour.",
        ),
    ] = 0.5,
    spacing: Annotated[
        str | None,
        typer.Option(
            "--spacing",
            help="Patient stacks: voxel size DY,DX,DZ in mm, for tumour volumes in mL.",
        ),
    ] = None,
    mask_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="Segmenters: mask files beside the PNG mask and overlay: "
            f"{' or '.join(MASK_FORMATS)} (adds a DICOM SEG over the DICOM input).",
        ),
    ] = "png",
    backend: Annotated[str, typer.Option("--backend", help="torch or onnx.")] = "torch",
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:1...")] = "auto",
    overlays: Annotated[
        bool,
        typer.Option(
            "--overlays/--no-overlays",
            help="Segmenters: overlay PNGs (the mask outlined on the image; BraTS: per case). "
            "--no-overlays writes masks and localisations only, several times faster on "
            "folders of JPEGs.",
        ),
    ] = True,
    adapt_bn: Annotated[
        bool,
        typer.Option(
            "--adapt-bn",
            help="2D models: re-estimate the batch-norm statistics on all the inputs (one "
            "source) before predicting them (AdaBN; the model folder unchanged).",
        ),
    ] = False,
) -> None:
    """Predict classes or tumour masks for images, slices of volumes, or BraTS cases."""
    settings: dict[str, Any] = {
        "tta": tta,
        "keep_largest": keep_largest,
        "stack_components": stack_components,
        "batch_size": batch_size,
        "precision": precision,
        "slice": slice,
        "min_area": min_area,
        "threshold": threshold,
        "backend": backend,
        "device": device,
        "spacing": spacing,
        "adapt_bn": adapt_bn,
        "overlays": overlays,
    }
    with user_errors():
        model, inputs = split_model_argument(arguments)
        if model is None:
            names = default_zoo_models(input_kind(inputs))
            _console().print(
                "no model given: using "
                + ", ".join(f"{ZOO_PREFIX}{n}" for n in names)
                + " (reference models shipped with braintumor; see braintumor models --zoo)"
            )
    if model is not None:
        predict_with(model, inputs, out, mask_format=mask_format, **settings)
        return
    for name in names:
        target = out / name if len(names) > 1 else out
        ref = f"{ZOO_PREFIX}{name}"
        # --format applies to the reference segmenters; the classifiers beside them ignore it.
        fitting = (
            mask_format if model_task(read_model_info(ref).task, ref).outputs == MASK else "png"
        )
        predict_with(ref, inputs, target, mask_format=fitting, **settings)


def split_model_argument(arguments: list[str]) -> tuple[str | None, list[str]]:
    """(model, inputs): the first argument is the model when it is zoo:NAME or a model folder.

    A first argument that does not exist (and is no glob) followed by others is taken as a
    mistyped model, so that the error names it as a model rather than skipping it as an input.
    """
    first = arguments[0] if arguments else ""
    missing = not any(c in first for c in "*?[") and not Path(first).exists()
    if (
        is_zoo_ref(first)
        or (Path(first) / "model.json").is_file()
        or (missing and len(arguments) > 1)
    ):
        if len(arguments) < 2:
            raise DataError(f"{first}: no inputs given after the model")
        return first, arguments[1:]
    if not arguments:
        raise DataError("no inputs given")
    return None, arguments


def input_kind(inputs: list[str]) -> str:
    """``brats`` when an input folder holds BraTS cases (modality volumes), else ``slices``."""
    from braintumor.data.layouts import detect_layout

    for arg in inputs:
        if not Path(arg).is_dir():
            continue
        try:
            layout = detect_layout(Path(arg))
        except (LayoutError, DataError, ImageReadError):
            continue
        if any(sample.modalities for sample in layout.samples):
            return "brats"
    return "slices"
