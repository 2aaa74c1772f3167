"""One model on all the inputs of ``braintumor predict``: the task predicts, this module writes
the tables (``predictions.*`` or ``summary.*``, ``patients.csv``), warns about inputs out of the
model's distribution and reports what was done.

Split from :mod:`braintumor.cli.predict`, which parses the command line and chooses the models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from braintumor.atomic import write_text_atomic
from braintumor.cli.errors import user_errors
from braintumor.cli.predict_summary import answers_count, answers_table
from braintumor.errors import DataError
from braintumor.inference.adapt_bn import NO_BATCHNORM
from braintumor.inference.inputs import expand_inputs
from braintumor.inference.mask_formats import check_mask_format, write_dicom_segs
from braintumor.inference.ood import OODScorer, ood_summary
from braintumor.inference.outputs import csv_text
from braintumor.patient_stack import is_reference_mask, stack_summaries
from braintumor.preflight import check_output_folder
from braintumor.tasks.predict import (
    adapt_to_inputs,
    open_predictor,
    predict_cases,
    predict_images,
    takes_images,
)
from braintumor.tasks.registry import CLASSES, PredictOptions


def _console(stderr: bool = False) -> Console:
    # Built per call so that test runners that swap the streams see the output.
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


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


def _write_table(out: Path, name: str, rows: list[dict], payload: dict) -> None:
    write_text_atomic(out / f"{name}.csv", csv_text(rows))
    write_text_atomic(out / f"{name}.json", json.dumps(payload, indent=2, allow_nan=False))


def predict_with(
    model: str | Path,
    inputs: list[str],
    out: Path,
    *,
    tta: bool | None,
    keep_largest: bool | None,
    stack_components: bool | None = None,
    batch_size: int,
    slice: str,
    min_area: int,
    precision: str = "auto",
    threshold: float,
    backend: str,
    device: str,
    spacing: str | None,
    adapt_bn: bool,
    mask_format: str = "png",
    overlays: bool = True,
) -> None:
    """``model`` on all ``inputs``; writes the tables for its task into ``out`` (a user error
    is one line and exit code 1, see :func:`braintumor.cli.errors.user_errors`)."""
    with user_errors():
        if slice != "mid" and not slice.lstrip("-").isdigit():
            raise DataError(f"--slice must be 'mid' or an integer, got {slice!r}")
        options = PredictOptions(
            threshold=threshold,
            min_area=min_area,
            keep_largest=keep_largest,
            stack_components=stack_components,
            tta=tta,
            batch_size=batch_size,
            precision=precision,
            adapt_bn=adapt_bn,
            overlays=overlays,
        )
        check_output_folder(out)
        task, predictor, info = open_predictor(model, options, backend, device)
        paths = expand_inputs(inputs) if takes_images(task) else []
        check_mask_format(mask_format, task, paths)
        if not takes_images(task) and adapt_bn:
            raise DataError(f"--adapt-bn: not available for {info.task} models (BraTS cases)")
        if not takes_images(task):
            out.mkdir(parents=True, exist_ok=True)
            options.tta = bool(tta)
            done, failures = predict_cases(task, predictor, inputs, out, options, _skipped)
            rows = [{k: v for k, v in r.items() if k != "details"} for r in done]
            rows += [{**f, "status": "error"} for f in failures]
            _write_table(
                out,
                task.table,
                rows,
                {"model": str(model), "task": info.task, "cases": done, "errors": failures},
            )
            _finish(out, len(done), failures)
            return
        voxel = _parse_spacing(spacing)
        # A patient folder's reference masks (<patient>_N_mask.tif) are not inputs.
        paths = [p for p in expand_inputs(inputs) if not is_reference_mask(p)]
        if not paths:
            raise DataError(f"no image files found in {' '.join(inputs)} (only reference masks)")
        adapted = _adapt(predictor, model, paths, slice, batch_size) if adapt_bn else None
        out.mkdir(parents=True, exist_ok=True)  # only once there is something to predict
        with _progress() as progress:
            bar = progress.add_task("predict", total=len(paths))
            records, failures = predict_images(
                task,
                predictor,
                paths,
                out,
                options,
                slice,
                on_skip=_skipped,
                on_progress=lambda n: progress.advance(bar, n),
            )
        if mask_format == "dicom-seg":
            records = write_dicom_segs(records, failures, out, info.name or "braintumor")
        meta = {
            "model": str(model),
            "task": info.task,
            "class_names": info.class_names,
            "backend": backend,
            "precision": getattr(predictor, "precision", "fp32"),
            "tta": predictor.tta,
            "threshold": threshold,
        }
        if adapted is not None:
            meta["adapt_bn"] = adapted
        ood = ood_summary(_scores(records), predictor.ood)
        if ood is not None:
            meta["ood"] = ood
            _warn_ood(records, predictor.ood)
        if task.outputs == CLASSES:
            rows = _flatten(records, failures, info.class_names)
            payload = {**meta, "predictions": records, "errors": failures}
        else:
            rows = records + [{**f, "status": "error"} for f in failures]
            patients = stack_summaries(records, out, voxel)
            payload = {
                **meta,
                "min_area": min_area,
                "keep_largest": predictor.keep_largest,
                "stack_components": predictor.stack_components,
                "images": records,
                "patients": patients,
                "errors": failures,
            }
            if patients:
                write_text_atomic(out / "patients.csv", csv_text(patients))
        _write_table(out, task.table, rows, payload)
        _show_answers(records, task.outputs, str(model))
        _finish(out, len(records), failures)


def _show_answers(records: list[dict], outputs: str, model: str) -> None:
    if records:
        console = _console()
        console.print(answers_table(records, outputs, title=model))
        console.print(answers_count(records, outputs))


def _adapt(predictor: Any, model: str | Path, paths: list[Path], slice_: str, size: int) -> dict:
    """``--adapt-bn``: batch norm re-estimated on every input; what ``predictions.json`` keeps."""
    n = adapt_to_inputs(predictor, paths, slice_, size)
    if n == 0:
        _console(stderr=True).print(f"[yellow]warning:[/yellow] {model} {NO_BATCHNORM}")
        return {"images": 0, "note": NO_BATCHNORM}
    _console(stderr=True).print(
        f"batch norm adapted on {n} input images (AdaBN); no out-of-distribution scores"
    )
    return {"images": n}


def _parse_spacing(text: str | None) -> tuple[float, float, float] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(v > 0 for v in values):
        raise DataError(f"--spacing must be three positive numbers DY,DX,DZ in mm, got {text!r}")
    return values


def _scores(records: list[dict]) -> np.ndarray | None:
    """The OOD scores of the predicted records (None when the model has no statistics)."""
    if not records or "ood_score" not in records[0]:
        return None
    return np.asarray([record["ood_score"] for record in records])


#: flagged inputs named one per line; more are counted
MAX_OOD_LINES = 10


def _warn_ood(records: list[dict], scorer: OODScorer) -> None:
    """One warning line per input beyond the model's OOD threshold (the first few), then a count."""
    flagged = [record for record in records if record.get("ood")]
    err = _console(stderr=True)
    for record in flagged[:MAX_OOD_LINES]:
        err.print(
            Text.assemble(
                ("warning:", "yellow"),
                f" {record['path']}: unlike the model's training images (out-of-distribution "
                f"score {record['ood_score']:.4g} > {scorer.threshold:.4g}); "
                "its prediction may be meaningless",
            )
        )
    if len(flagged) > MAX_OOD_LINES:
        err.print(
            Text.assemble(
                ("warning:", "yellow"),
                f" {len(flagged) - MAX_OOD_LINES} more inputs out of distribution "
                "(column ood in the outputs)",
            )
        )


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
