"""Dilated U-Net: a U-Net whose bottleneck is a cascade of atrous convolutions (system 002).

References: Ronneberger et al. 2015 (U-Net, MICCAI); Yu & Koltun 2016, "Multi-Scale Context
Aggregation by Dilated Convolutions" (ICLR); the cascaded, summed dilated centre follows
Zhou, Zhang & Wu 2018, "D-LinkNet" (CVPR workshops). No library ships this variant, so it is
written here with MONAI conv blocks. The bottleneck applies 3x3 convs with dilation rates
1, 2, 4, 8 one after another and sums their outputs, widening the receptive field at the
coarsest scale without more pooling; like D-LinkNet's centre it keeps the deepest
encoder width. Encoder/decoder follow system 002's Keras U-Net (two 3x3
conv-ReLU per level, 2x2 transposed-conv upsampling, concatenated skips), with BatchNorm.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.nets.basic_unet import TwoConv
from torch import nn

from braintumor.errors import RecipeError
from braintumor.models.registry import register


class DilatedBottleneck(nn.Module):
    """Cascaded dilated 3x3 conv-BN-ReLU layers; the output is the sum of every layer's output."""

    def __init__(self, in_channels: int, channels: int, rates: Sequence[int], dropout: float):
        super().__init__()
        self.layers = nn.ModuleList()
        for i, rate in enumerate(rates):
            self.layers.append(
                Convolution(
                    2,
                    in_channels if i == 0 else channels,
                    channels,
                    kernel_size=3,
                    dilation=rate,
                    act="relu",
                    norm="batch",
                    dropout=dropout or None,
                )
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Sum of the cascade's outputs (receptive field 3, 7, 15, 31 px at this scale)."""
        total = None
        for layer in self.layers:
            x = layer(x)
            total = x if total is None else total + x
        return total


class DilatedUNet(nn.Module):
    """U-Net with ``levels`` poolings and a dilated bottleneck; any input size."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        base_filters: int = 64,
        levels: int = 4,
        rates: Sequence[int] = (1, 2, 4, 8),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if levels < 1 or not rates:
            raise RecipeError("dilated-unet: levels must be >= 1 and rates non-empty")
        widths = [base_filters * 2**i for i in range(levels)]
        self.encoders = nn.ModuleList(
            TwoConv(2, in_channels if i == 0 else widths[i - 1], widths[i], "relu", "batch", True)
            for i in range(levels)
        )
        # as in D-LinkNet the dilated centre keeps the deepest width (no 2x wider level)
        deepest = widths[-1]
        self.bottleneck = DilatedBottleneck(deepest, deepest, rates, dropout)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in range(levels - 1, -1, -1):
            below = deepest if i == levels - 1 else widths[i + 1]
            self.ups.append(nn.ConvTranspose2d(below, widths[i], 2, stride=2))
            self.decoders.append(TwoConv(2, 2 * widths[i], widths[i], "relu", "batch", True))
        self.head = nn.Conv2d(widths[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` -> logits ``(B, out_channels, H, W)``."""
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips), strict=True):
            x = up(x)
            if x.shape[-2:] != skip.shape[-2:]:  # odd sizes: pad the upsampled map to the skip
                x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = decoder(torch.cat([x, skip], dim=1))
        return self.head(x)


@register(
    "dilated-unet",
    task="segment2d",
    source="braintumor",
    description="U-Net 64-512 with a dilated bottleneck (rates 1,2,4,8; system 002)",
    reference="System 002; Yu & Koltun 2016 (ICLR); Zhou et al. 2018, D-LinkNet (CVPRW)",
)
def build_dilated_unet(
    *,
    num_classes: int,
    in_channels: int,
    pretrained: bool,
    base_filters: int = 64,
    levels: int = 4,
    rates: Sequence[int] = (1, 2, 4, 8),
    dropout: float = 0.0,
) -> nn.Module:
    """Dilated U-Net; ``dropout`` applies in the bottleneck (system 002's dropout variant)."""
    return DilatedUNet(in_channels, num_classes, base_filters, levels, rates, dropout)
