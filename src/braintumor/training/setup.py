"""The Lightning module and data module of the 2D image tasks (classification, segmentation)
from decoded slices; their :class:`~braintumor.tasks.Task` implementations call these."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from rich.console import Console

from braintumor.config import Recipe
from braintumor.data.balance import sampling_plan
from braintumor.data.cache import DecodedSlices, decode_slices
from braintumor.data.coarse_labels import coarse_members, fine_class_names
from braintumor.data.preprocess import PreprocessSpec
from braintumor.data.samples import Sample
from braintumor.errors import DataError, RecipeError
from braintumor.models import build_model
from braintumor.tasks.registry import TaskSetup
from braintumor.training.augment import AugmentConfig
from braintumor.training.coarse_loss import COARSE_INDEX
from braintumor.training.datamodule import (
    SliceDataModule,
    SliceDataset,
    group_indices,
    tumour_weights,
)
from braintumor.training.module import ClassificationModule, SegmentationModule

console = Console(stderr=True)


def preprocess_spec(recipe: Recipe) -> PreprocessSpec:
    """The recipe's preprocessing with its input size and channel count.

    A ``keep`` recipe that chooses ``channels`` must feed that many to the network.
    """
    spec = PreprocessSpec.from_dict(
        {**recipe.preprocess, "image_size": recipe.image_size, "in_channels": recipe.in_channels}
    )
    chosen = spec.channels
    if chosen is not None:
        if not isinstance(chosen, list) or not all(isinstance(c, int) for c in chosen):
            raise RecipeError(f"preprocess.channels must be a list of channel numbers: {chosen!r}")
        if spec.color == "keep" and len(chosen) != recipe.in_channels:
            raise RecipeError(
                f"preprocess.channels {chosen} gives {len(chosen)} channel(s) but in_channels is "
                f"{recipe.in_channels} (add --set in_channels={len(chosen)})"
            )
    return spec


def _decode(samples: list[Sample], spec: PreprocessSpec, masks: bool, split: str) -> DecodedSlices:
    decoded = decode_slices(samples, spec, with_masks=masks, description=f"decoding {split}")
    for sample_id, problem in decoded.failures[:10]:
        console.print(f"[yellow]skipped {sample_id}: {problem}")
    if len(decoded.failures) > 10:
        console.print(f"[yellow]... and {len(decoded.failures) - 10} more unreadable files")
    return decoded


def _train_dataset(
    recipe: Recipe, decoded: DecodedSlices, labels: np.ndarray | None = None
) -> SliceDataset:
    """The training split with the recipe's per-image (numpy) augmentations."""
    augment = AugmentConfig.from_dict(recipe.augment)
    return SliceDataset(
        decoded,
        labels,
        histogram_match=augment.histogram_match,
        seed=recipe.seed,
        jpeg=augment.jpeg,
        jpeg_quality=augment.jpeg_quality,
    )


def _class_weights(labels: np.ndarray, k: int) -> torch.Tensor:
    """Inverse-frequency weights of the typed labels (coarse ones, -1, have no class)."""
    counts = np.bincount(labels[labels >= 0], minlength=k).astype(np.float64)
    weights = counts.sum() / (k * np.maximum(counts, 1))
    return torch.tensor(weights, dtype=torch.float32)


def build_classification(recipe: Recipe, splits: dict[str, list[Sample]]) -> TaskSetup:
    """Decoded slices + a timm (or own) classifier.

    Tumours of unknown type in the training split (:mod:`braintumor.data.coarse_labels`)
    train with label :data:`COARSE_INDEX`; the network outputs the typed classes only.
    """
    spec = preprocess_spec(recipe)
    class_names = fine_class_names(splits["train"])
    if len(class_names) < 2:
        raise DataError(f"need at least two classes to train, found {class_names}")
    index = {name: i for i, name in enumerate(class_names)}
    coarse = coarse_members(s.label for s in splits["train"])
    index.update({label: COARSE_INDEX for label in coarse})
    decoded = {name: _decode(splits[name], spec, False, name) for name in ("train", "val")}
    unknown = sorted({s.label for s in decoded["val"].samples} - set(class_names))
    if unknown:
        raise DataError(f"validation labels {unknown} do not occur in training")
    labels = {
        name: np.array([index[s.label] for s in d.samples], dtype=np.int64)
        for name, d in decoded.items()
    }
    model = build_model(
        recipe.model,
        num_classes=len(class_names),
        in_channels=recipe.in_channels,
        pretrained=recipe.pretrained,
        weights=recipe.weights,
        **recipe.model_args,
    )
    weights = _class_weights(labels["train"], len(class_names)) if recipe.class_weights else None
    members = [index[m] for members in coarse.values() for m in members]
    module = ClassificationModule(
        recipe, model, class_names, spec, class_weights=weights, coarse_classes=members
    )
    draw_weights, sampling = sampling_plan(decoded["train"].samples, recipe.sampling)
    _show_sampling(sampling)
    datamodule = SliceDataModule(
        _train_dataset(recipe, decoded["train"], labels["train"]),
        SliceDataset(decoded["val"], labels["val"]),
        batch_size=recipe.batch_size,
        num_workers=recipe.num_workers,
        seed=recipe.seed,
        train_weights=draw_weights,
    )
    return TaskSetup(
        module, datamodule, class_names, len(class_names), spec.to_dict(), sampling=sampling
    )


def _show_sampling(sampling: dict[str, Any]) -> None:
    """Per source: the classes it gives to training and their share of the draws."""
    if len(sampling["counts"]) > 1 or sampling["mode"] != "shuffle":
        console.print(f"training draws: {sampling['mode']}")
        for source, counts in sampling["counts"].items():
            shares = sampling["draw_share"][source]
            cells = ", ".join(f"{c} {n} ({shares[c]:.1%} of draws)" for c, n in counts.items())
            console.print(f"  {source}: {cells}", markup=False)
    for warning in sampling["warnings"]:
        console.print(f"[yellow]warning: {warning}")


def build_segmentation(recipe: Recipe, splits: dict[str, list[Sample]]) -> TaskSetup:
    """Decoded slice/mask pairs + a binary tumour segmenter."""
    spec = preprocess_spec(recipe)
    decoded = {name: _decode(splits[name], spec, True, name) for name in ("train", "val")}
    module = SegmentationModule(recipe, 1, recipe.in_channels, multilabel=True, spec=spec)
    weights = None
    if recipe.positive_fraction is not None:
        weights = tumour_weights(decoded["train"].masks, recipe.positive_fraction)
    datamodule = SliceDataModule(
        _train_dataset(recipe, decoded["train"]),
        SliceDataset(decoded["val"], groups=group_indices(decoded["val"].samples)),
        batch_size=recipe.batch_size,
        num_workers=recipe.num_workers,
        seed=recipe.seed,
        train_weights=weights,
    )
    return TaskSetup(module, datamodule, ["background", "tumor"], 1, spec.to_dict())
