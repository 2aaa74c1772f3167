"""ONNX export of a 2D model folder, with a parity check, and an onnxruntime predictor.

``export_onnx`` writes ``model.onnx`` (dynamic batch axis) and ``model.parity.json`` beside
it, after checking that onnxruntime on the CPU reproduces the PyTorch float32 outputs on random
inputs and on real images prepared exactly as the model's preprocessing says.
``OnnxPredictor`` is a :class:`~braintumor.inference.predictor.Predictor` whose network is the ONNX
file: the same ``classify`` / ``segment`` results without PyTorch weights.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from braintumor.atomic import atomic_path, write_text_atomic
from braintumor.data.lgg import slice_spec
from braintumor.data.preprocess import normalise_batch, prepare_slice
from braintumor.errors import DataError, ModelFormatError
from braintumor.inference.network_output import first_output
from braintumor.inference.predictor import InferenceSettings, Predictor, spec_of
from braintumor.inference.tta import stack_mirrors
from braintumor.io.base import LoadedImage
from braintumor.models.folder import LoadedModel, read_model_info
from braintumor.tasks.registry import IMAGES, model_task

ONNX_FILE = "model.onnx"
DEFAULT_TOLERANCE = 1e-4


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise DataError(
            f"ONNX needs the export extra ({error}); pip install 'braintumor[export]'"
        ) from error
    return onnxruntime


class _SingleOutput(nn.Module):
    """Networks that return (main, aux) or {"out": ...} export their main output only."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return first_output(self.net(x))


def parity_path(onnx_path: str | Path) -> Path:
    """Where the parity figures of ``onnx_path`` are written: ``<stem>.parity.json``."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(f"{onnx_path.stem}.parity.json")


def _session(path: Path) -> Any:
    ort = _import_onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initialisers are noise here
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _max_diff(session: Any, net: nn.Module, x: torch.Tensor) -> float:
    with torch.inference_mode():
        expected = net(x).float().numpy()
    got = session.run(None, {"input": x.numpy()})[0]
    if got.shape != expected.shape:
        raise ModelFormatError(
            f"ONNX output shape {got.shape} differs from PyTorch's {expected.shape}"
        )
    return float(np.max(np.abs(got - expected))) if got.size else 0.0


def export_onnx(
    loaded: LoadedModel,
    out_path: str | Path | None = None,
    opset: int = 17,
    parity_images: Sequence[LoadedImage] = (),
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 0,
) -> Path:
    """Export a 2D model to ONNX and check it against PyTorch; returns the ONNX path.

    ``out_path`` defaults to ``model.onnx`` in the model folder. Parity: onnxruntime (CPU) and
    PyTorch (float32, CPU) outputs on random inputs of batch 1 and 3 (the batch axis is dynamic)
    and on ``parity_images`` after the model's own preprocessing must agree within
    ``tolerance`` (max absolute difference of the raw outputs), else :class:`ModelFormatError`
    and nothing is left at ``out_path``.
    """
    info = loaded.info
    if model_task(info.task, loaded.path).inputs != IMAGES:
        raise ModelFormatError(
            f"{loaded.path}: ONNX export covers 2D models (tasks on images); "
            f"this one is {info.task!r}"
        )
    out_path = Path(out_path) if out_path is not None else Path(loaded.path) / ONNX_FILE
    spec = spec_of(info)
    net = _SingleOutput(copy.deepcopy(loaded.model).float().cpu()).eval()
    net = net.to(memory_format=torch.contiguous_format)
    example = torch.zeros(1, spec.in_channels, spec.image_size, spec.image_size)
    generator = torch.Generator().manual_seed(seed)
    checks: list[dict[str, Any]] = []
    with atomic_path(out_path) as tmp, warnings.catch_warnings():
        # Instance norm always uses input statistics; the exporter warns about it regardless.
        warnings.filterwarnings("ignore", message=".*instance_norm.*")
        torch.onnx.export(
            net,
            (example,),
            str(tmp),
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            opset_version=opset,
            dynamo=False,  # the TorchScript exporter handles every model in the registry
        )
        session = _session(tmp)
        for batch in (1, 3):
            x = torch.randn(batch, *example.shape[1:], generator=generator)
            checks.append(
                {"input": f"random batch {batch}", "max_abs_diff": _max_diff(session, net, x)}
            )
        for image in parity_images:
            own_spec = slice_spec(image.path, image.array, spec)
            prepared = torch.from_numpy(prepare_slice(image.array, own_spec))[None]
            x = normalise_batch(prepared, spec).contiguous()
            checks.append({"input": str(image.path), "max_abs_diff": _max_diff(session, net, x)})
        worst = max(check["max_abs_diff"] for check in checks)
        if not worst < tolerance:
            bad = next(c for c in checks if c["max_abs_diff"] == worst)
            raise ModelFormatError(
                f"{out_path}: ONNX output differs from PyTorch by {worst:.3g} "
                f"(tolerance {tolerance:g}) on {bad['input']}; not exported"
            )
    report = {
        "onnx": out_path.name,
        "opset": opset,
        "architecture": info.architecture,
        "task": info.task,
        "tolerance": tolerance,
        "max_abs_diff": worst,
        "n_real_images": len(parity_images),
        "checks": checks,
        "onnxruntime": _import_onnxruntime().__version__,
        "torch": torch.__version__,
    }
    write_text_atomic(parity_path(out_path), json.dumps(report, indent=2))
    return out_path


class OnnxPredictor(Predictor):
    """:class:`Predictor` over ``model.onnx`` with onnxruntime on the CPU (no PyTorch weights).

    ``model_dir`` is the model folder (its ``model.json`` gives classes and preprocessing);
    ``onnx_path`` defaults to its ``model.onnx``.
    """

    def __init__(
        self,
        model_dir: str | Path,
        onnx_path: str | Path | None = None,
        tta: bool | None = None,
        batch_size: int = 16,
    ) -> None:
        model_dir = Path(model_dir)
        info = read_model_info(model_dir)
        task = model_task(info.task, model_dir)
        if task.inputs != IMAGES:
            raise ModelFormatError(f"{model_dir}: task {info.task!r} has no ONNX predictor")
        self.outputs = task.outputs
        if batch_size < 1:
            raise DataError(f"batch size must be at least 1, got {batch_size}")
        onnx_path = Path(onnx_path) if onnx_path is not None else model_dir / ONNX_FILE
        if not onnx_path.is_file():
            raise ModelFormatError(
                f"{onnx_path}: missing; run `braintumor export {model_dir}` first"
            )
        # Predictor's state without a torch network: prepare/_restore/classify/segment reuse it.
        self.loaded = LoadedModel(model=nn.Identity(), info=info, path=model_dir)
        self.info = info
        self.spec = spec_of(info)
        self.device = torch.device("cpu")
        self.model = self.loaded.model
        settings = InferenceSettings.of(info)
        self.tta = settings.tta if tta is None else tta
        self.keep_largest = settings.keep_largest
        self.stack_components = settings.stack_components
        self.batch_size = batch_size
        try:
            self.session = _session(onnx_path)
        except DataError:
            raise
        except Exception as error:  # onnxruntime raises its own untyped failures
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ModelFormatError(f"{onnx_path}: not a loadable ONNX model ({message})") from error
        self.onnx_path = onnx_path

    def _forward(self, images: list[LoadedImage]) -> torch.Tensor:
        batch = torch.stack([self.prepare(image) for image in images])
        x = normalise_batch(batch, self.spec).contiguous()
        x = stack_mirrors(x, self._flips)
        return torch.from_numpy(self.session.run(None, {"input": x.numpy()})[0]).float()
