"""Shared set-up for tests that need a 2D model (in memory, or saved as a folder) without
training one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from braintumor.data.preprocess import PreprocessSpec
from braintumor.models import build_model
from braintumor.models.folder import LoadedModel, ModelInfo, save_model_dir


def loaded_2d(
    task: str,
    model: nn.Module,
    class_names: list[str],
    image_size: int = 32,
    path: Path = Path("test-model"),
    spec: dict[str, Any] | None = None,
    **info: Any,
) -> LoadedModel:
    """``model`` (put in eval mode) as if loaded from a grey ``image_size`` model folder.

    ``spec`` adds :class:`PreprocessSpec` fields; ``info`` adds :class:`ModelInfo` fields.
    """
    preprocessing = PreprocessSpec(image_size=image_size, in_channels=1, **(spec or {}))
    description = ModelInfo(
        task=task,
        architecture=info.pop("architecture", "test"),
        num_outputs=info.pop("num_outputs", len(class_names)),
        in_channels=1,
        class_names=class_names,
        image_size=image_size,
        preprocessing=preprocessing.to_dict(),
        **info,
    )
    return LoadedModel(model=model.eval(), info=description, path=path)


def save_untrained(
    folder: Path,
    task: str,
    arch: str,
    class_names: list[str],
    model_args: dict[str, Any],
    num_outputs: int | None = None,
    image_size: int = 32,
    seed: int = 0,
    **info: Any,
) -> Path:
    """An untrained ``arch`` (seeded) saved as a grey ``image_size`` model folder at ``folder``.

    ``num_outputs`` defaults to one per class for classifiers, one for segmenters; ``info``
    adds :class:`ModelInfo` fields (metrics, recipe...).
    """
    torch.manual_seed(seed)
    outputs = num_outputs or (len(class_names) if task == "classify" else 1)
    net = build_model(arch, num_classes=outputs, in_channels=1, **model_args)
    description = ModelInfo(
        task=task,
        architecture=arch,
        num_outputs=outputs,
        in_channels=1,
        class_names=class_names,
        image_size=image_size,
        model_args=model_args,
        preprocessing=PreprocessSpec(image_size=image_size, in_channels=1).to_dict(),
        **info,
    )
    return save_model_dir(net, description, folder)


class BrightIsTumour(nn.Module):
    """Calls every pixel brighter than half the image's maximum tumour: no learning needed."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = x.amin(dim=(2, 3), keepdim=True)
        high = x.amax(dim=(2, 3), keepdim=True)
        return 50.0 * (x - 0.5 * (low + high))


def bright_segmenter(inference: dict | None = None, image_size: int = 64) -> LoadedModel:
    """:class:`BrightIsTumour` as a loaded grey segmenter with these inference settings."""
    return loaded_2d(
        "segment",
        BrightIsTumour(),
        ["background", "tumor"],
        image_size=image_size,
        num_outputs=1,
        inference=inference or {},
    )
