"""Batched inference of a trained 2D model: class probabilities or tumour probability maps.

Prediction redoes the model folder's own preprocessing (:class:`PreprocessSpec`), runs with
channels_last memory in the chosen precision (:mod:`.precision`: bf16 autocast by default
where it pays, fp32 elsewhere or on request) with batch norm folded into the convolutions
(:mod:`.fold_bn`), and maps segmentation probabilities back to each image's original size.
Inputs read by :func:`.prefetch.load_prepared` arrive prepared.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from braintumor.data.lgg import slice_spec
from braintumor.data.preprocess import (
    PreprocessSpec,
    box_in_frame,
    brain_box,
    normalise_batch,
    prepare_slice,
    restore_mask_size,
)
from braintumor.errors import DataError, ModelFormatError
from braintumor.inference.adapt_bn import adapt_batchnorm
from braintumor.inference.fold_bn import FoldedNetwork
from braintumor.inference.inputs import DECODE_THREADS
from braintumor.inference.network_output import first_output
from braintumor.inference.ood import OODScorer, scorer_of
from braintumor.inference.precision import autocast, resolve_precision
from braintumor.inference.prefetch import PreparedImage, check_raster, full_shape
from braintumor.inference.tta import NO_MIRRORS, left_right, mean_of_mirrors, stack_mirrors
from braintumor.io.base import LoadedImage
from braintumor.models.folder import LoadedModel, ModelInfo
from braintumor.models.registry import logits_to_probs
from braintumor.tasks.registry import CLASSES, IMAGES, MASK, model_task


@dataclass(frozen=True)
class InferenceSettings:
    """How a segmenter's probabilities become a mask, beyond the 0.5 threshold."""

    tta: bool = False
    keep_largest: bool = False
    #: in a patient's stack of slices, only the large 3D components (:mod:`.stack_filter`)
    stack_components: bool = False

    @classmethod
    def of(cls, info: ModelInfo) -> InferenceSettings:
        """The settings saved in a model folder; folders from before they existed get none."""
        saved = info.inference or {}
        return cls(
            tta=bool(saved.get("tta")),
            keep_largest=bool(saved.get("keep_largest")),
            stack_components=bool(saved.get("stack_components")),
        )


def check_2d(loaded_path: object, info: ModelInfo) -> str:
    """The model's output kind (``classes`` or ``mask``); a ModelFormatError unless its task
    takes 2D images."""
    task = model_task(info.task, loaded_path)
    if task.inputs != IMAGES:
        raise ModelFormatError(
            f"{loaded_path}: task {info.task!r} is not a 2D model (a task whose inputs are images)"
        )
    return task.outputs


def model_device(loaded: LoadedModel) -> str:
    """The device the loaded network's parameters sit on."""
    first = next(loaded.model.parameters(), None)
    return str(first.device) if first is not None else "cpu"


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; other names pass through."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def spec_of(info: ModelInfo) -> PreprocessSpec:
    """The model's preprocessing; older folders without one fall back to size and channels."""
    if info.preprocessing:
        return PreprocessSpec.from_dict(info.preprocessing)
    size = info.image_size if isinstance(info.image_size, int) else int(info.image_size[0])
    return PreprocessSpec(image_size=size, in_channels=info.in_channels)


class Predictor:
    """Run a loaded 2D model (task ``classify`` or ``segment``) on :class:`LoadedImage` lists.

    ``tta=True`` averages the prediction of each image and of its left-right mirror in one
    batched forward pass (:mod:`.tta`; a segmentation map of the mirror is flipped back
    first); ``None`` takes the model folder's own setting (:class:`InferenceSettings`), as
    does :attr:`keep_largest`.
    With ``ood=True`` and a model that holds OOD statistics, :meth:`classify_scored` and
    :meth:`segment_scored` also return each image's out-of-distribution score (:attr:`ood`).
    ``precision`` (``auto``, ``fp32``, ``bf16``) is resolved by
    :func:`~.precision.resolve_precision` into :attr:`precision`.
    """

    #: the OOD scorer; None without statistics (and for the ONNX predictor)
    ood: OODScorer | None = None
    #: the arithmetic of the forward pass: ``fp32`` or ``bf16`` (autocast)
    precision: str = "fp32"

    def __init__(
        self,
        loaded: LoadedModel,
        device: str = "cpu",
        tta: bool | None = None,
        batch_size: int = 16,
        ood: bool = True,
        precision: str = "auto",
    ) -> None:
        self.outputs = check_2d(loaded.path, loaded.info)
        if batch_size < 1:
            raise DataError(f"batch size must be at least 1, got {batch_size}")
        self.loaded = loaded
        self.info = loaded.info
        self.spec = spec_of(loaded.info)
        self.device = torch.device(resolve_device(device))
        self.precision = resolve_precision(precision, self.device)
        self.model = loaded.model.to(self.device, memory_format=torch.channels_last).eval()
        # What runs: a copy with batch norm folded into the convolutions; ``model`` keeps its
        # batch-norm layers for AdaBN (adapt_bn, evaluation.adaptation).
        self.network = FoldedNetwork(self.model)
        settings = InferenceSettings.of(loaded.info)
        self.tta = settings.tta if tta is None else tta
        self.keep_largest = settings.keep_largest
        self.stack_components = settings.stack_components
        self.batch_size = batch_size
        if ood:
            self.ood = scorer_of(loaded)

    @property
    def _flips(self) -> tuple[tuple[int, ...], ...]:
        """The mirrors a batch is averaged over (:mod:`.tta`): left-right with TTA."""
        return left_right() if self.tta else NO_MIRRORS

    @property
    def task(self) -> str:
        """``classify`` or ``segment``."""
        return self.info.task

    @property
    def class_names(self) -> list[str]:
        """The model's class names, in output order."""
        return list(self.info.class_names)

    def _ready(self, image: LoadedImage) -> np.ndarray | None:
        """The network input a :class:`PreparedImage` carries for this model's spec."""
        if isinstance(image, PreparedImage) and image.spec == self.spec:
            return image.network_input
        return None

    def _crop_box(self, image: LoadedImage) -> tuple[int, int, int, int] | None:
        """The brain crop of ``image.array`` for this model's spec: the one its preparation
        took, else found again."""
        if isinstance(image, PreparedImage) and image.spec == self.spec:
            return image.crop_box
        return brain_box(image.array, slice_spec(image.path, image.array, self.spec))

    def prepare(self, image: LoadedImage) -> torch.Tensor:
        """One 2D image -> uint8 tensor (C, S, S) exactly as training prepared it."""
        ready = self._ready(image)
        if ready is not None:
            return torch.from_numpy(ready)
        check_raster(image)
        spec = slice_spec(image.path, image.array, self.spec)  # LGG: FLAIR, not a mix
        return torch.from_numpy(prepare_slice(image.array, spec))

    def batch_input(self, images: list[LoadedImage]) -> torch.Tensor:
        """uint8 (B, C, S, S) of a batch; images not prepared yet are prepared in threads."""
        if all(self._ready(image) is not None for image in images):
            # Not through the decode threads: they may be busy reading the next batch.
            return torch.stack([self.prepare(image) for image in images])
        return torch.stack(list(DECODE_THREADS.map(self.prepare, images)))

    def _forward(self, images: list[LoadedImage]) -> torch.Tensor:
        """Raw outputs of one batch; with TTA the mirrored half follows the original half."""
        x = normalise_batch(self.batch_input(images).to(self.device), self.spec)
        x = stack_mirrors(x, self._flips)
        with torch.inference_mode(), autocast(self.precision, self.device):
            return first_output(self.network.current()(x)).float()

    def adapt_bn(self, images: Iterable[LoadedImage]) -> int:
        """Re-estimate the network's batch-norm statistics on the unlabelled ``images`` of one
        source, prepared as for prediction (:mod:`braintumor.inference.adapt_bn`); later
        predictions use them. Reads ``images`` once, a batch at a time. Returns the number of
        images (0 for a network without batch norm, which is left as it is)."""
        return adapt_batchnorm(self.model, self._inputs(images))

    def _inputs(self, images: Iterable[LoadedImage]) -> Iterator[torch.Tensor]:
        """Normalised network inputs of ``images``, a batch at a time."""
        for chunk in _chunks(images, self.batch_size):
            batch = torch.stack(list(DECODE_THREADS.map(self.prepare, chunk))).to(self.device)
            yield normalise_batch(batch, self.spec)

    def raw_outputs(self, images: list[LoadedImage]) -> torch.Tensor:
        """Raw network outputs of one batch (logits; with TTA the mirrored half follows)."""
        return self._forward(images)

    def _scored_forward(self, images: list[LoadedImage]) -> tuple[torch.Tensor, np.ndarray | None]:
        """Raw outputs, and the OOD score of each (unmirrored) image when the model has one."""
        if self.ood is None:
            return self._forward(images), None
        with self.ood.tap.attached(self.network.current()) as tap:
            out = self._forward(images)
        n = len(images)
        return out, self.ood.score(tap.features[:n], out[:n])

    def _batches(self, images: list[LoadedImage]) -> list[list[LoadedImage]]:
        return [images[i : i + self.batch_size] for i in range(0, len(images), self.batch_size)]

    def classify(self, images: list[LoadedImage]) -> np.ndarray:
        """Class probabilities (N, K) in the order of ``class_names``; rows sum to 1."""
        return self.classify_scored(images)[0]

    def classify_scored(self, images: list[LoadedImage]) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`classify`, and the OOD scores (N,) (None without statistics)."""
        if self.outputs != CLASSES:
            raise ModelFormatError(f"{self.loaded.path}: a {self.task} model cannot classify")
        parts, scores = [], []
        for chunk in self._batches(images):
            logits, score = self._scored_forward(chunk)
            probs = mean_of_mirrors(logits_to_probs(logits), self._flips, spatial=False)
            parts.append(probs.cpu().numpy())
            scores.append(score)
        if not parts:
            return np.zeros((0, len(self.class_names)), dtype=np.float32), None
        probs = np.concatenate(parts).astype(np.float32)
        if probs.shape[1] != len(self.class_names):
            raise ModelFormatError(
                f"{self.loaded.path}: model gives {probs.shape[1]} probabilities but "
                f"model.json names {len(self.class_names)} classes"
            )
        return probs, _joined(scores)

    def segment(self, images: list[LoadedImage]) -> list[np.ndarray]:
        """Tumour probability maps, float32 (H, W) at each image's original size."""
        return self.segment_scored(images)[0]

    def segment_scored(
        self, images: list[LoadedImage]
    ) -> tuple[list[np.ndarray], np.ndarray | None]:
        """:meth:`segment`, and the OOD scores (N,) (None without statistics)."""
        if self.outputs != MASK:
            raise ModelFormatError(f"{self.loaded.path}: a {self.task} model cannot segment")
        maps: list[np.ndarray] = []
        scores = []
        for chunk in self._batches(images):
            logits, score = self._scored_forward(chunk)
            scores.append(score)
            if logits.ndim != 4:
                raise ModelFormatError(
                    f"{self.loaded.path}: segmentation output has shape {tuple(logits.shape)}, "
                    "expected (B, C, H, W)"
                )
            if logits.shape[1] == 1:
                prob = torch.sigmoid(logits[:, 0])
            else:  # several classes: tumour = anything but background (channel 0)
                prob = 1.0 - torch.softmax(logits, dim=1)[:, 0]
            prob = mean_of_mirrors(prob[:, None], self._flips)[:, 0]
            for image, square in zip(chunk, prob.cpu().numpy(), strict=True):
                maps.append(self.restore(square, image))
        return maps, _joined(scores)

    def restore(self, square: np.ndarray, image: LoadedImage) -> np.ndarray:
        """Undo resize, padding and (when the spec crops) the brain crop of ``image``'s map, at
        the image's size as stored (a JPEG decoded reduced has its crop scaled up to it)."""
        height, width = full_shape(image)
        box = self._crop_box(image)
        if box is None:
            return restore_mask_size(square, height, width).astype(np.float32)
        y0, y1, x0, x1 = box_in_frame(box, image.array.shape[:2], (height, width))
        full = np.zeros((height, width), dtype=np.float32)
        full[y0:y1, x0:x1] = restore_mask_size(square, y1 - y0, x1 - x0)
        return full


def _chunks(images: Iterable[LoadedImage], size: int) -> Iterator[list[LoadedImage]]:
    """Batches of ``size`` (at least 2); a last batch of one image joins the one before (batch
    norm in training mode needs more than one value per channel)."""
    size = max(size, 2)
    chunk: list[LoadedImage] = []
    for image in images:
        chunk.append(image)
        if len(chunk) == 2 * size:
            yield chunk[:size]
            chunk = chunk[size:]
    if len(chunk) > size + 1:
        yield chunk[:size]
        chunk = chunk[size:]
    if chunk:
        yield chunk


def _joined(scores: list[np.ndarray | None]) -> np.ndarray | None:
    """Per-batch OOD scores as one array; None when the model has no statistics."""
    if not scores or any(part is None for part in scores):
        return None
    return np.concatenate([part for part in scores if part is not None])
