"""Prediction with any task's model, shared by ``braintumor predict`` and the web app: open the
model folder with its task's predictor, read inputs batch by batch (decoded at the size the
model needs, in threads, the next batch while the network runs on this one:
:mod:`braintumor.inference.prefetch`), and let the task turn each batch into records
(:meth:`braintumor.tasks.Task.predict`). Unreadable inputs become failure records; the others
are still predicted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from braintumor.data.layouts import detect_layout
from braintumor.data.preprocess import PreprocessSpec
from braintumor.errors import DataError, ImageReadError, LayoutError
from braintumor.inference.inputs import unique_stems
from braintumor.inference.outputs import Item
from braintumor.inference.precision import PRECISIONS
from braintumor.inference.predictor import resolve_device
from braintumor.inference.prefetch import load_prepared, prefetched
from braintumor.inference.stack_filter import stacks_of
from braintumor.io import LoadedImage
from braintumor.models.folder import ModelInfo, load_model_dir, read_model_info
from braintumor.tasks.registry import IMAGES, PredictOptions, Task, model_task

BACKENDS = ("torch", "onnx")
#: Called with each input that could not be predicted (the CLI prints it).
OnSkip = Callable[[Exception], None]
#: Called with the number of inputs done after each batch (a progress bar).
OnProgress = Callable[[int], None]


def _ignore(_: Any) -> None:
    return None


def open_predictor(
    model: str | Path, options: PredictOptions, backend: str = "torch", device: str = "auto"
) -> tuple[Task, Any, ModelInfo]:
    """The model's task, what its :meth:`~Task.predict` runs, and the model's description.

    ``backend="onnx"`` runs a 2D model's ``model.onnx`` with onnxruntime (the export extra).
    """
    if backend not in BACKENDS:
        raise DataError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if options.precision not in PRECISIONS:
        raise DataError(
            f"--precision must be one of {', '.join(PRECISIONS)}, got {options.precision!r}"
        )
    if backend == "onnx" and options.adapt_bn:
        raise DataError("--adapt-bn needs --backend torch (an ONNX graph's statistics are fixed)")
    if backend == "onnx":
        try:
            from braintumor.export import OnnxPredictor  # optional extra: onnxruntime
        except ImportError as error:
            raise DataError(
                f"--backend onnx needs the export extra ({error}); pip install 'braintumor[export]'"
            ) from error
        info = read_model_info(model)
        # onnxruntime runs the exported fp32 graph: options.precision does not apply.
        predictor = OnnxPredictor(model, tta=options.tta, batch_size=options.batch_size)
        if options.keep_largest is not None:
            predictor.keep_largest = options.keep_largest
        if options.stack_components is not None:
            predictor.stack_components = options.stack_components
        return model_task(info.task, model), predictor, info
    loaded = load_model_dir(model, device=resolve_device(device))
    task = model_task(loaded.info.task, model)
    return task, task.predictor(loaded, options, device), loaded.info


def _load_one(
    path: Path, stem: str, spec: PreprocessSpec, slice_: str
) -> Item | ImageReadError | DataError:
    """One input read and prepared (a volume as its chosen slice), or the error that stopped it."""
    try:
        image = load_prepared(path, spec, slice_)
    except (ImageReadError, DataError) as error:
        return error
    index = image.meta.get("slice_index")
    return (f"{stem}_z{index}" if index is not None else stem), path, index, image


def adapt_to_inputs(
    predictor: Any, paths: list[Path], slice_: str = "mid", batch_size: int = 16
) -> int:
    """Re-estimate the predictor's batch-norm statistics on the image inputs (one source:
    :meth:`~braintumor.inference.predictor.Predictor.adapt_bn`), read a batch at a time;
    unreadable inputs are left out here and reported by :func:`predict_images`. Returns the
    number of images used (0: the network has no batch norm)."""
    stems = unique_stems(paths)
    jobs = list(zip(paths, stems, strict=True))
    chunks = [jobs[start : start + batch_size] for start in range(0, len(jobs), batch_size)]

    def load(job: tuple[Path, str]) -> Item | ImageReadError | DataError:
        return _load_one(job[0], job[1], predictor.spec, slice_)

    def images() -> Iterator[LoadedImage]:
        for outcomes in prefetched(chunks, load):
            yield from (item[3] for item in outcomes if not isinstance(item, Exception))

    return predictor.adapt_bn(images())


def predict_images(
    task: Task,
    predictor: Any,
    paths: list[Path],
    out: Path,
    options: PredictOptions,
    slice_: str = "mid",
    on_skip: OnSkip = _ignore,
    on_progress: OnProgress = _ignore,
) -> tuple[list[dict], list[dict]]:
    """Records and failures for image inputs, one batch of ``options.batch_size`` at a time;
    the next batch is read while the network runs on the current one."""
    stems = unique_stems(paths)
    jobs = list(zip(paths, stems, strict=True))
    chunks = _chunks(jobs, options.batch_size, predictor.stack_components)

    def load(job: tuple[Path, str]) -> Item | ImageReadError | DataError:
        return _load_one(job[0], job[1], predictor.spec, slice_)

    failures: list[dict] = []
    records: list[dict] = []
    for chunk, outcomes in zip(chunks, prefetched(chunks, load), strict=True):
        items = []
        for (path, stem), outcome in zip(chunk, outcomes, strict=True):
            if isinstance(outcome, Exception):
                failures.append({"id": stem, "path": str(path), "error": str(outcome)})
                on_skip(outcome)
            else:
                items.append(outcome)
        if items:
            records += task.predict(predictor, items, out, options)
        on_progress(len(chunk))
    return records, failures


def _chunks(
    jobs: list[tuple[Path, str]], size: int, by_stack: bool
) -> list[list[tuple[Path, str]]]:
    """Batches of ``size`` inputs; with ``by_stack`` each patient stack is one batch of its
    own, in slice order, so the task can apply its 3D rule (inference/stack_filter.py)."""
    stacks = stacks_of([path for path, _ in jobs]) if by_stack else []
    in_stack = {i for stack in stacks for i in stack}
    rest = [job for i, job in enumerate(jobs) if i not in in_stack]
    return [[jobs[i] for i in stack] for stack in stacks] + [
        rest[start : start + size] for start in range(0, len(rest), size)
    ]


def predict_cases(
    task: Task,
    predictor: Any,
    inputs: list[str],
    out: Path,
    options: PredictOptions,
    on_skip: OnSkip = _ignore,
) -> tuple[list[dict], list[dict]]:
    """Rows (the task's record under ``details``) and failures for case inputs: each input is a
    case folder or a folder of them, found by the layout detector."""
    done, failures = [], []
    for arg in inputs:
        try:
            samples = [s for s in detect_layout(Path(arg)).samples if s.modalities]
            if not samples:
                raise DataError(f"{arg}: no BraTS case (modality files) found")
        except (ImageReadError, DataError, LayoutError) as error:
            failures.append({"id": Path(arg).name, "path": arg, "error": str(error)})
            on_skip(error)
            continue
        for sample in samples:
            try:
                record = task.predict(predictor, [sample], out, options)[0]
            except (ImageReadError, DataError) as error:
                failures.append({"id": sample.id, "path": sample.image, "error": str(error)})
                on_skip(error)
                continue
            volumes = {f"volume_{k}_ml": v for k, v in record.get("volumes_ml", {}).items()}
            done.append(
                {"id": sample.id, "path": sample.image, "status": "ok", **volumes}
                | {"segmentation": record.get("segmentation"), "details": record}
            )
    return done, failures


def takes_images(task: Task) -> bool:
    """Whether the task's predict takes 2D images (else case folders)."""
    return task.inputs == IMAGES
