"""ResNet-50 Attention U-Net: a timm ResNet-50 encoder and a decoder with attention gates.

References: Oktay et al. 2018, "Attention U-Net: Learning Where to Look for the Pancreas"
(MIDL); He et al. 2016 (ResNet). System 003 used this pairing for LGG segmentation. smp has
ResNet encoders but no attention-gated decoder and MONAI's AttentionUnet has no pretrained
encoder, so the decoder is written here; the gates are MONAI's ``AttentionBlock``.
"""

from __future__ import annotations

from collections.abc import Sequence

import timm
import torch
import torch.nn.functional as F
from monai.networks.nets.attentionunet import AttentionBlock
from monai.networks.nets.basic_unet import TwoConv
from torch import nn

from braintumor.errors import RecipeError
from braintumor.models.registry import register


class DecoderStep(nn.Module):
    """Upsample the coarser map to the skip's size, gate the skip with it, concat, two convs."""

    def __init__(self, below: int, skip: int, out: int) -> None:
        super().__init__()
        self.gate = AttentionBlock(spatial_dims=2, f_int=max(skip // 2, 8), f_g=below, f_l=skip)
        self.convs = TwoConv(2, below + skip, out, "relu", "batch", False)

    def forward(self, below: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Decoder map at the skip's resolution with ``out`` channels."""
        below = F.interpolate(below, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.convs(torch.cat([below, self.gate(g=below, x=skip)], dim=1))


class AttentionResUNet(nn.Module):
    """ResNet encoder (timm ``features_only``, strides 2..32) + attention-gated U-Net decoder.

    Any input size (the decoder resizes to each skip); output ``(B, out_channels, H, W)`` logits.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        encoder: str = "resnet50",
        pretrained: bool = False,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
    ) -> None:
        super().__init__()
        if len(decoder_channels) != 5:
            raise RecipeError(
                f"resnet50-attention-unet: decoder_channels needs 5 widths, "
                f"got {tuple(decoder_channels)}"
            )
        self.encoder = timm.create_model(
            encoder, features_only=True, pretrained=pretrained, in_chans=in_channels
        )
        widths = self.encoder.feature_info.channels()  # resnet50: 64, 256, 512, 1024, 2048
        below = widths[-1]
        self.steps = nn.ModuleList()
        for skip, out in zip(reversed(widths[:-1]), decoder_channels[:4], strict=True):
            self.steps.append(DecoderStep(below, skip, out))
            below = out
        # the stem map is at half resolution: one last upsampling step without a skip
        self.final = TwoConv(2, below, decoder_channels[4], "relu", "batch", False)
        self.head = nn.Conv2d(decoder_channels[4], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` -> logits ``(B, out_channels, H, W)``."""
        size = x.shape[-2:]
        features = self.encoder(x)
        y = features[-1]
        for step, skip in zip(self.steps, reversed(features[:-1]), strict=True):
            y = step(y, skip)
        y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        return self.head(self.final(y))


@register(
    "resnet50-attention-unet",
    task="segment2d",
    source="braintumor",
    description="ResNet-50 (timm) encoder, U-Net decoder with attention gates (system 003)",
    reference="Oktay et al. 2018, Attention U-Net (MIDL); He et al. 2016 (CVPR)",
    gradcam_layer=None,
    has_pretrained=True,
)
def build_attention_resunet(
    *,
    num_classes: int,
    in_channels: int,
    pretrained: bool,
    decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
) -> nn.Module:
    """ResNet-50 Attention U-Net; ``pretrained=True`` loads timm's ImageNet encoder weights."""
    return AttentionResUNet(
        in_channels, num_classes, "resnet50", pretrained, decoder_channels=decoder_channels
    )
