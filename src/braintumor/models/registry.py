"""The model registry: every network the toolkit can train, by name, with what it is for.

Conventions every builder follows, so training, Grad-CAM and export can treat models alike:

* ``build_model(name, num_classes=K, in_channels=C)``: ``num_classes`` is the number of output
  channels (classes for a classifier, output maps for a segmenter); ``in_channels`` is the number
  of input channels (1 for grey slices, 3 for RGB / the LGG 3-sequence tif, 4 for BraTS).
* Classifiers return raw logits of shape ``(B, K)``. The one exception is a binary model with a
  single logit (``ModelSpec.single_logit``, e.g. ``resnet50-maxpool-head``): it takes
  ``num_classes=2`` and returns ``(B, 1)``; apply a sigmoid at use. :func:`logits_to_probs`
  turns either form into class probabilities ``(B, K)``.
* 2D segmenters return logits ``(B, K, H, W)`` at the input resolution; 3D segmenters
  ``(B, K, D, H, W)``. No activation is applied inside any model.
* ``ModelSpec.gradcam_layer`` is the dotted path of the module whose activations Grad-CAM uses
  (``None`` where no single layer is meaningful). For vision transformers it names the last
  block's ``norm1`` and ``vit_tokens`` is true: the activations are tokens ``(B, N, D)`` to be
  reshaped to a grid after dropping ``model.num_prefix_tokens`` leading tokens.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import torch
from torch import nn

from braintumor.errors import BrainTumorError, ModelFormatError, RecipeError

#: The kinds of network (``ModelSpec.task``): classifier, 2D segmenter, 3D segmenter.
Kind = Literal["classify", "segment2d", "segment3d"]
Source = Literal["timm", "monai", "smp", "braintumor"]
Builder = Callable[..., nn.Module]

KINDS: tuple[str, ...] = get_args(Kind)
CLASSIFIER, SEGMENTER_2D, SEGMENTER_3D = KINDS
SOURCES: tuple[str, ...] = ("timm", "monai", "smp", "braintumor")

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """What a registered model is: its name, task, where its code comes from and how to build it.

    ``builder(num_classes=..., in_channels=..., pretrained=..., **kwargs)`` returns the module.
    """

    name: str
    task: Kind
    source: Source
    description: str
    reference: str
    builder: Builder = field(repr=False, compare=False)
    gradcam_layer: str | None = None
    vit_tokens: bool = False
    single_logit: bool = False
    #: whether ``pretrained=True`` can fetch hub weights for (part of) this model; for the
    #: others :func:`build_model` refuses it, so their builders never see ``pretrained=True``
    has_pretrained: bool = False


_REGISTRY: dict[str, ModelSpec] = {}


def register(
    name: str,
    *,
    task: Kind,
    source: Source,
    description: str,
    reference: str,
    gradcam_layer: str | None = None,
    vit_tokens: bool = False,
    single_logit: bool = False,
    has_pretrained: bool = False,
) -> Callable[[Builder], Builder]:
    """Decorator that registers ``builder`` under ``name``; the builder is returned unchanged."""
    if task not in KINDS:
        raise RecipeError(f"model {name!r}: task {task!r} is not one of {', '.join(KINDS)}")
    if source not in SOURCES:
        raise RecipeError(f"model {name!r}: source {source!r} is not one of {', '.join(SOURCES)}")

    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise RecipeError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(
            name=name,
            task=task,
            source=source,
            description=description,
            reference=reference,
            builder=builder,
            gradcam_layer=gradcam_layer,
            vit_tokens=vit_tokens,
            single_logit=single_logit,
            has_pretrained=has_pretrained,
        )
        return builder

    return decorator


def list_models(task: str | None = None) -> list[ModelSpec]:
    """All registered models (optionally of one task), grouped by task then sorted by name."""
    if task is not None and task not in KINDS:
        raise RecipeError(f"unknown task {task!r}; expected one of {', '.join(KINDS)}")
    specs = [s for s in _REGISTRY.values() if task is None or s.task == task]
    return sorted(specs, key=lambda s: (KINDS.index(s.task), s.name))


def get_spec(name: str) -> ModelSpec:
    """The spec registered under ``name``; an unknown name raises RecipeError with close matches."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `braintumor models`"
        raise RecipeError(f"unknown model {name!r}{hint}") from None


def build_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int = 3,
    pretrained: bool = False,
    weights: str | Path | None = None,
    **kwargs: object,
) -> nn.Module:
    """Build the registered model ``name``.

    ``pretrained=True`` asks the model's library for ImageNet weights (needs internet);
    ``weights=FILE`` loads a local ``.safetensors`` / ``.pth`` state dict instead, keeping
    every tensor whose shape fits (see :func:`braintumor.models.weights.load_weights`).
    Extra ``kwargs`` go to the builder (e.g. ``img_size`` for ViT, ``channels`` for a U-Net).
    """
    spec = get_spec(name)
    if num_classes < 1 or in_channels < 1:
        raise RecipeError(
            f"model {name!r}: num_classes ({num_classes}) and in_channels ({in_channels}) "
            "must be positive"
        )
    if pretrained and weights is not None:
        raise RecipeError(f"model {name!r}: give either pretrained=True or weights=FILE, not both")
    if pretrained and not spec.has_pretrained:
        raise RecipeError(f"model {name!r} has no pretrained weights; train it from scratch")
    try:
        model = spec.builder(
            num_classes=num_classes, in_channels=in_channels, pretrained=pretrained, **kwargs
        )
    except BrainTumorError:
        raise
    except TypeError as exc:
        # an option the builder (or the library behind it) does not accept
        raise RecipeError(f"model {name!r}: bad option: {exc}") from exc
    except Exception as exc:
        if pretrained:
            # hub downloads fail in many ways (offline, proxy, missing tag): one clear line
            raise ModelFormatError(
                f"model {name!r}: could not fetch pretrained weights ({exc}); "
                "without internet, pass a local file with weights=FILE"
            ) from exc
        raise
    if weights is not None:
        # imported here: weights.py imports this module's siblings, not the reverse
        from braintumor.models.weights import load_weights

        report = load_weights(model, weights, strict=False)
        if report.missing or report.skipped:
            _log.warning("%s: %s", Path(weights).name, report.summary())
    return model


def meta_size(
    name: str, *, num_classes: int = 2, in_channels: int | None = None, **kwargs: object
) -> tuple[int, float]:
    """(parameters, MiB) of model ``name``, built on the meta device where its code allows.

    ``in_channels`` defaults to 4 for 3D segmenters (BraTS) and 3 otherwise.
    """
    spec = get_spec(name)
    if in_channels is None:
        in_channels = 4 if spec.task == "segment3d" else 3
    try:
        with torch.device("meta"):
            model = build_model(name, num_classes=num_classes, in_channels=in_channels, **kwargs)
    except RuntimeError:
        # a few constructors read tensor values (e.g. SwinUNETR's drop-path schedule)
        model = build_model(name, num_classes=num_classes, in_channels=in_channels, **kwargs)
    return count_parameters(model), model_size_mb(model)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (works on meta-device models, which hold no data)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def model_size_mb(model: nn.Module) -> float:
    """Size of the parameters and buffers in MiB, as they would be saved (dtype-aware)."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def logits_to_probs(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities ``(B, K)`` from classifier logits ``(B, K)`` or single-logit ``(B, 1)``.

    A single logit ``z`` is the positive class: probabilities ``[1 - sigmoid(z), sigmoid(z)]``.
    """
    if logits.ndim != 2:
        raise ValueError(f"classifier logits must be (B, K); got shape {tuple(logits.shape)}")
    if logits.shape[1] == 1:
        positive = torch.sigmoid(logits)
        return torch.cat([1 - positive, positive], dim=1)
    return torch.softmax(logits, dim=1)
