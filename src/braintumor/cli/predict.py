"""``braintumor predict MODEL INPUTS... --out DIR``: run a trained model on files and folders.

Classification writes ``predictions.csv`` and ``predictions.json``; segmentation writes a mask,
an overlay and a localisation JSON per input plus ``summary.csv``/``summary.json``. Inputs that
cannot be read are listed in those files with their error; the others are still predicted.
BraTS models (``brats2d``/``brats3d``) take case folders and go to the BraTS inference code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from braintumor.atomic import write_text_atomic
from braintumor.cli.errors import user_errors
from braintumor.engine.inputs import (
    DECODE_THREADS,
    axial_slice,
    expand_inputs,
    is_volume,
    read_input,
    unique_stems,
)
from braintumor.engine.model_io import ModelInfo, load_model_dir, read_model_info
from braintumor.engine.prediction_outputs import (
    classification_records,
    csv_text,
    segmentation_record,
)
from braintumor.engine.predictor import Predictor, resolve_device
from braintumor.errors import DataError, ImageReadError, LayoutError
from braintumor.io import LoadedImage

BACKENDS = ("torch", "onnx")


def _console(stderr: bool = False) -> Console:
    # Built per call so that test runners that swap the streams see the output.
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _load_batch(
    paths: list[Path], stems: list[str], slice_: str, failures: list[dict]
) -> list[tuple[str, Path, int | None, LoadedImage]]:
    """Read a batch (in threads); volumes become their chosen axial slice; failures recorded."""
    outcomes = DECODE_THREADS.map(_load_one, paths, stems, [slice_] * len(paths))
    loaded = []
    for path, stem, outcome in zip(paths, stems, outcomes, strict=True):
        if isinstance(outcome, Exception):
            failures.append({"id": stem, "path": str(path), "error": str(outcome)})
            _skipped(outcome)
        else:
            loaded.append(outcome)
    return loaded


def _load_one(
    path: Path, stem: str, slice_: str
) -> tuple[str, Path, int | None, LoadedImage] | ImageReadError | DataError:
    """One input read (a volume as its chosen slice), or the error that stopped it."""
    try:
        image = read_input(path)
        index = None
        if is_volume(image):
            image, index = axial_slice(image, slice_)
            stem = f"{stem}_z{index}"
        return stem, path, index, image
    except (ImageReadError, DataError) as error:
        return error


def _skipped(error: Exception) -> None:
    _console(stderr=True).print(Text.assemble(("skipped:", "yellow"), f" {error}"))


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]predict"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_console(stderr=True),
        transient=True,
    )


def _make_predictor(
    model: Path, backend: str, device: str, tta: bool | None, batch_size: int
) -> tuple[Any, ModelInfo]:
    if backend == "onnx":
        try:
            from braintumor.export import OnnxPredictor  # optional extra: onnxruntime
        except ImportError as error:
            raise DataError(
                f"--backend onnx needs the export extra ({error}); pip install 'braintumor[export]'"
            ) from error
        info = read_model_info(model)
        return OnnxPredictor(model, tta=tta, batch_size=batch_size), info
    loaded = load_model_dir(model, device=resolve_device(device))
    if loaded.info.task in ("brats2d", "brats3d"):
        return loaded, loaded.info
    return Predictor(loaded, device=device, tta=tta, batch_size=batch_size), loaded.info


def _predict_brats(
    loaded: Any, inputs: list[str], out: Path, tta: bool
) -> tuple[list[dict], list[dict]]:
    """Each input is a BraTS case folder (or a folder of them), found by the layout detector."""
    from braintumor.brats.inference import predict_case
    from braintumor.data.layouts import detect_layout

    done, failures = [], []
    for arg in inputs:
        try:
            samples = [s for s in detect_layout(Path(arg)).samples if s.modalities]
            if not samples:
                raise DataError(f"{arg}: no BraTS case (modality files) found")
        except (ImageReadError, DataError, LayoutError) as error:
            failures.append({"id": Path(arg).name, "path": arg, "error": str(error)})
            _skipped(error)
            continue
        for sample in samples:
            try:
                record = predict_case(loaded, sample, out, tta=tta)
            except (ImageReadError, DataError) as error:
                failures.append({"id": sample.id, "path": sample.image, "error": str(error)})
                _skipped(error)
                continue
            volumes = {f"volume_{k}_ml": v for k, v in record.get("volumes_ml", {}).items()}
            done.append(
                {"id": sample.id, "path": sample.image, "status": "ok", **volumes}
                | {"segmentation": record.get("segmentation"), "details": record}
            )
    return done, failures


def _write_table(out: Path, name: str, rows: list[dict], payload: dict) -> None:
    write_text_atomic(out / f"{name}.csv", csv_text(rows))
    write_text_atomic(out / f"{name}.json", json.dumps(payload, indent=2, allow_nan=False))


def predict_command(
    model: Annotated[Path, typer.Argument(help="Model folder (model.json + model.safetensors).")],
    inputs: Annotated[
        list[str], typer.Argument(help="Image files, folders (searched recursively) or globs.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the outputs.")],
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
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 16,
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
    backend: Annotated[str, typer.Option("--backend", help="torch or onnx.")] = "torch",
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:1...")] = "auto",
) -> None:
    """Predict classes or tumour masks for images, slices of volumes, or BraTS cases."""
    with user_errors():
        if backend not in BACKENDS:
            raise DataError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if slice != "mid" and not slice.lstrip("-").isdigit():
            raise DataError(f"--slice must be 'mid' or an integer, got {slice!r}")
        predictor, info = _make_predictor(model, backend, device, tta, batch_size)
        out.mkdir(parents=True, exist_ok=True)
        if info.task in ("brats2d", "brats3d"):
            done, failures = _predict_brats(predictor, inputs, out, bool(tta))
            rows = [{k: v for k, v in r.items() if k != "details"} for r in done]
            rows += [{**f, "status": "error"} for f in failures]
            _write_table(
                out,
                "summary",
                rows,
                {"model": str(model), "task": info.task, "cases": done, "errors": failures},
            )
            _finish(out, len(done), failures)
            return
        if keep_largest is not None:
            predictor.keep_largest = keep_largest
        records, failures = _predict_images(
            predictor, info, expand_inputs(inputs), out, batch_size, slice, threshold, min_area
        )
        meta = {
            "model": str(model),
            "task": info.task,
            "class_names": info.class_names,
            "backend": backend,
            "tta": predictor.tta,
            "threshold": threshold,
        }
        if info.task == "classify":
            rows = _flatten(records, failures, info.class_names)
            _write_table(
                out, "predictions", rows, {**meta, "predictions": records, "errors": failures}
            )
        else:
            rows = records + [{**f, "status": "error"} for f in failures]
            payload = {
                **meta,
                "min_area": min_area,
                "keep_largest": predictor.keep_largest,
                "images": records,
                "errors": failures,
            }
            _write_table(out, "summary", rows, payload)
        _finish(out, len(records), failures)


def _predict_images(
    predictor: Any,
    info: ModelInfo,
    paths: list[Path],
    out: Path,
    batch_size: int,
    slice_: str,
    threshold: float,
    min_area: int,
) -> tuple[list[dict], list[dict]]:
    """Read, predict and (for segmentation) write per-image files, one batch at a time."""
    stems = unique_stems(paths)
    failures: list[dict] = []
    records: list[dict] = []
    with _progress() as progress:
        task = progress.add_task("predict", total=len(paths))
        for start in range(0, len(paths), batch_size):
            chunk = slice(start, start + batch_size)
            batch = _load_batch(paths[chunk], stems[chunk], slice_, failures)
            images = [image for _, _, _, image in batch]
            if batch and info.task == "classify":
                probs = predictor.classify(images)
                records += classification_records(batch, probs, info, threshold)
            elif batch:
                for item, prob in zip(batch, predictor.segment(images), strict=True):
                    records.append(
                        segmentation_record(
                            item, prob, out, threshold, min_area, predictor.keep_largest
                        )
                    )
            progress.advance(task, len(paths[chunk]))
    return records, failures


def _flatten(records: list[dict], failures: list[dict], class_names: list[str]) -> list[dict]:
    """predictions.csv rows: one probability column per class, errors at the end."""
    rows = []
    for record in records:
        row = {k: v for k, v in record.items() if k != "probabilities"}
        row |= {f"prob_{name}": record["probabilities"][name] for name in class_names}
        rows.append(row)
    for failure in failures:
        rows.append({**failure, "status": "error"})
    return rows


def _finish(out: Path, n_done: int, failures: list[dict]) -> None:
    console = _console()
    note = f", {len(failures)} unreadable (listed in the outputs)" if failures else ""
    console.print(f"{n_done} predicted{note}; outputs in {out}")
    if n_done == 0:
        _console(stderr=True).print(
            Text.assemble(("error:", "bold red"), " no input could be predicted")
        )
        raise typer.Exit(1)
