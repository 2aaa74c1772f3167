"""Slice classifiers from timm (ResNet, EfficientNet, HRNet incl. SSLD weights, ViT, ConvNeXt).

Every model here is ``timm.create_model(arch, num_classes=K, in_chans=C)``; nothing is
hand-written. ``pretrained=True`` fetches the named pretrained tag from the Hugging Face hub
(timm adapts the first convolution when ``in_channels`` is not 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import timm
from torch import nn

from braintumor.models.registry import CLASSIFIER, Builder, register


@dataclass(frozen=True)
class _TimmEntry:
    name: str
    arch: str  # timm architecture, optionally with a pretrained tag ("arch.tag")
    description: str
    reference: str
    gradcam_layer: str
    vit_tokens: bool = False


_RESNET = "He et al. 2016, Deep Residual Learning for Image Recognition (CVPR)"
_HRNET = "Wang et al. 2020, Deep High-Resolution Representation Learning (TPAMI)"
_SSLD = (
    "Wang et al. 2020 HRNet (TPAMI); SSLD weights: Cui et al. 2021, Beyond Self-Supervision: "
    "A Simple Yet Effective Network Distillation (PaddleClas)"
)
_VIT = "Dosovitskiy et al. 2021, An Image is Worth 16x16 Words (ICLR)"

_ENTRIES: tuple[_TimmEntry, ...] = (
    _TimmEntry(
        "resnet10t", "resnet10t", "ResNet-10-T, tiered stem; fast on a CPU", _RESNET, "layer4"
    ),
    _TimmEntry("resnet18", "resnet18", "ResNet-18", _RESNET, "layer4"),
    _TimmEntry("resnet34", "resnet34", "ResNet-34", _RESNET, "layer4"),
    _TimmEntry("resnet50", "resnet50", "ResNet-50 (baseline of system 000)", _RESNET, "layer4"),
    _TimmEntry(
        "efficientnet_b0",
        "efficientnet_b0",
        "EfficientNet-B0",
        "Tan & Le 2019, EfficientNet: Rethinking Model Scaling for CNNs (ICML)",
        "bn2",
    ),
    _TimmEntry("hrnet_w18", "hrnet_w18", "HRNet-W18-C", _HRNET, "final_layer"),
    _TimmEntry("hrnet_w48", "hrnet_w48", "HRNet-W48-C", _HRNET, "final_layer"),
    _TimmEntry("hrnet_w64", "hrnet_w64", "HRNet-W64-C (system 000)", _HRNET, "final_layer"),
    _TimmEntry(
        "hrnet_w18_ssld",
        "hrnet_w18_ssld.paddle_in1k",
        "HRNet-W18-C with SSLD-distilled ImageNet weights (system 000)",
        _SSLD,
        "final_layer",
    ),
    _TimmEntry(
        "hrnet_w48_ssld",
        "hrnet_w48_ssld.paddle_in1k",
        "HRNet-W48-C with SSLD-distilled ImageNet weights (system 000, best)",
        _SSLD,
        "final_layer",
    ),
    _TimmEntry(
        "vit_small_patch16_224",
        "vit_small_patch16_224",
        "ViT-S/16; img_size=N for other resolutions",
        _VIT,
        "blocks.11.norm1",
        vit_tokens=True,
    ),
    _TimmEntry(
        "vit_base_patch16_224",
        "vit_base_patch16_224",
        "ViT-B/16; img_size=N for other resolutions",
        _VIT,
        "blocks.11.norm1",
        vit_tokens=True,
    ),
    _TimmEntry(
        "convnext_tiny",
        "convnext_tiny",
        "ConvNeXt-T",
        "Liu et al. 2022, A ConvNet for the 2020s (CVPR)",
        "stages.3",
    ),
)


def timm_builder(arch: str) -> Builder:
    """A registry builder that creates the timm architecture ``arch`` (``"name[.tag]"``)."""

    def build(
        *, num_classes: int, in_channels: int, pretrained: bool, **kwargs: object
    ) -> nn.Module:
        return timm.create_model(
            arch, pretrained=pretrained, num_classes=num_classes, in_chans=in_channels, **kwargs
        )

    build.__doc__ = f"timm.create_model({arch!r}, num_classes=..., in_chans=...)"
    return build


for _entry in _ENTRIES:
    register(
        _entry.name,
        task=CLASSIFIER,
        source="timm",
        description=_entry.description,
        reference=_entry.reference,
        gradcam_layer=_entry.gradcam_layer,
        vit_tokens=_entry.vit_tokens,
        has_pretrained=True,
    )(timm_builder(_entry.arch))
