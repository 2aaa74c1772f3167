"""2D segmenters from MONAI and segmentation-models-pytorch (smp).

All return logits ``(B, num_classes, H, W)`` at the input size. smp encoders take
``pretrained=True`` as ImageNet encoder weights (needs internet); otherwise they start random.
Inputs must be divisible by 16 (MONAI nets, four poolings) or 32 (smp nets, five).
"""

from __future__ import annotations

from collections.abc import Sequence

import segmentation_models_pytorch as smp
from monai.networks.nets import AttentionUnet, UNet
from torch import nn

from braintumor.models.registry import Builder, register

_UNET = "Ronneberger et al. 2015, U-Net (MICCAI)"
_DEFAULT_CHANNELS: tuple[int, ...] = (32, 64, 128, 256, 512)


@register(
    "unet",
    task="segment2d",
    source="monai",
    description="MONAI residual U-Net, channels 32-512 (kwarg channels)",
    reference=_UNET,
)
def build_unet(
    *,
    num_classes: int,
    in_channels: int,
    pretrained: bool,
    channels: Sequence[int] = _DEFAULT_CHANNELS,
    num_res_units: int = 2,
    dropout: float = 0.0,
) -> nn.Module:
    """``monai.networks.nets.UNet`` in 2D (:func:`residual_unet`)."""
    return residual_unet(2, in_channels, num_classes, channels, num_res_units, dropout)


def residual_unet(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    channels: Sequence[int],
    num_res_units: int,
    dropout: float,
) -> nn.Module:
    """``monai.networks.nets.UNet`` with stride-2 steps between the ``channels`` levels."""
    return UNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=tuple(channels),
        strides=(2,) * (len(channels) - 1),
        num_res_units=num_res_units,
        dropout=dropout,
    )


@register(
    "attention-unet",
    task="segment2d",
    source="monai",
    description="MONAI Attention U-Net (attention gates on the skips), channels 32-512",
    reference="Oktay et al. 2018, Attention U-Net: Learning Where to Look for the Pancreas (MIDL)",
)
def build_attention_unet(
    *,
    num_classes: int,
    in_channels: int,
    pretrained: bool,
    channels: Sequence[int] = _DEFAULT_CHANNELS,
    dropout: float = 0.0,
) -> nn.Module:
    """``monai.networks.nets.AttentionUnet`` in 2D."""
    return AttentionUnet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=num_classes,
        channels=tuple(channels),
        strides=(2,) * (len(channels) - 1),
        dropout=dropout,
    )


def smp_builder(architecture: type[nn.Module], encoder: str) -> Builder:
    """A registry builder for an smp ``architecture`` on the named ``encoder``."""

    def build(
        *, num_classes: int, in_channels: int, pretrained: bool, **kwargs: object
    ) -> nn.Module:
        return architecture(
            encoder_name=encoder,
            encoder_weights="imagenet" if pretrained else None,
            in_channels=in_channels,
            classes=num_classes,
            **kwargs,
        )

    build.__doc__ = f"smp.{architecture.__name__}(encoder_name={encoder!r}, ...)"
    return build


_SMP_MODELS: tuple[tuple[str, type[nn.Module], str, str, str], ...] = (
    (
        "resnet50-unet",
        smp.Unet,
        "resnet50",
        "U-Net on a ResNet-50 encoder (systems 001 and 003)",
        f"{_UNET}; He et al. 2016 (CVPR)",
    ),
    (
        "resnet18-unet",
        smp.Unet,
        "resnet18",
        "U-Net on a ResNet-18 encoder; fast on a CPU",
        f"{_UNET}; He et al. 2016 (CVPR)",
    ),
    (
        "unetplusplus",
        smp.UnetPlusPlus,
        "resnet50",
        "U-Net++ (nested dense skips) on ResNet-50",
        "Zhou et al. 2018, UNet++: A Nested U-Net Architecture (DLMIA)",
    ),
    (
        "deeplabv3plus",
        smp.DeepLabV3Plus,
        "resnet50",
        "DeepLabV3+ (atrous spatial pyramid pooling) on ResNet-50",
        "Chen et al. 2018, Encoder-Decoder with Atrous Separable Convolution (ECCV)",
    ),
    (
        "pspnet",
        smp.PSPNet,
        "resnet50",
        "PSPNet (pyramid pooling module) on ResNet-50",
        "Zhao et al. 2017, Pyramid Scene Parsing Network (CVPR)",
    ),
    (
        "fpn",
        smp.FPN,
        "resnet50",
        "Feature Pyramid Network decoder on ResNet-50",
        "Kirillov et al. 2019, Panoptic Feature Pyramid Networks (CVPR)",
    ),
)

for _name, _arch, _encoder, _description, _reference in _SMP_MODELS:
    register(
        _name,
        task="segment2d",
        source="smp",
        description=_description,
        reference=_reference,
        has_pretrained=True,
    )(smp_builder(_arch, _encoder))
