"""Shared set-up for tests that need a 2D model in memory without training one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from braintumor.data.preprocess import PreprocessSpec
from braintumor.models.folder import LoadedModel, ModelInfo


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
