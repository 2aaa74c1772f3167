"""ResUNet++: residual U-Net with squeeze-excitation, an ASPP bridge and attention.

Reference: Jha, Smedsrud, Riegler et al. 2019, "ResUNet++: An Advanced Architecture for
Medical Image Segmentation" (IEEE ISM). No maintained library ships it, so it is written here
after the authors' Keras code (github.com/DebeshJha/ResUNetPlusPlus): a stem and three strided
residual units each followed by squeeze-excitation; an ASPP bridge (rates 1, 6, 12, 18,
branches summed); three decoder steps "attention -> upsample -> concat skip -> residual unit";
a final ASPP and a 1x1 conv. Squeeze-excitation (r=8) and the ASPP branches use MONAI blocks.
``bridge=False`` replaces the ASPP bridge by the identity (system 002's "nobridge" variant).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import ChannelSELayer
from torch import nn

from braintumor.errors import RecipeError
from braintumor.models.registry import register


def _bn_relu_conv(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
    )


class ResidualUnit(nn.Module):
    """Pre-activation residual unit (BN-ReLU-conv x2 + 1x1 projection), then SE (r=8)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, stem: bool = False):
        super().__init__()
        if stem:  # the first unit sees the raw image: plain conv first, no pre-activation
            first: nn.Module = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
                nn.Conv2d(out_channels, out_channels, 3, padding=1),
            )
        else:
            first = nn.Sequential(
                _bn_relu_conv(in_channels, out_channels, stride),
                _bn_relu_conv(out_channels, out_channels),
            )
        self.body = first
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=stride), nn.BatchNorm2d(out_channels)
        )
        self.se = ChannelSELayer(2, out_channels, r=min(8, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual sum of body and projection, recalibrated by squeeze-excitation."""
        return self.se(self.body(x) + self.shortcut(x))


class SummedASPP(nn.Module):
    """ASPP as in ResUNet++: parallel dilated 3x3 conv-BN branches, summed, then a 1x1 conv.

    (MONAI's SimpleASPP concatenates its branches; the paper's code sums them.)
    """

    def __init__(self, in_channels: int, out_channels: int, rates: Sequence[int] = (1, 6, 12, 18)):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 3, padding=rate, dilation=rate),
                nn.BatchNorm2d(out_channels),
            )
            for rate in rates
        )
        self.project = nn.Conv2d(out_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Sum of the dilated branches, projected by a 1x1 conv."""
        return self.project(torch.stack([branch(x) for branch in self.branches]).sum(0))


class SkipAttention(nn.Module):
    """ResUNet++ attention: the finer encoder map, pooled, gates the coarser decoder map."""

    def __init__(self, skip_channels: int, decoder_channels: int) -> None:
        super().__init__()
        self.skip = _bn_relu_conv(skip_channels, decoder_channels)
        self.decoder = _bn_relu_conv(decoder_channels, decoder_channels)
        self.attend = _bn_relu_conv(decoder_channels, decoder_channels)

    def forward(self, skip: torch.Tensor, decoder: torch.Tensor) -> torch.Tensor:
        """Weights at the decoder map's resolution, multiplied into the decoder map."""
        pooled = F.adaptive_max_pool2d(self.skip(skip), decoder.shape[-2:])
        return self.attend(pooled + self.decoder(decoder)) * decoder


class ResUNetPlusPlus(nn.Module):
    """ResUNet++ for 2D slices of any size; logits ``(B, out_channels, H, W)``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        filters: Sequence[int] = (16, 32, 64, 128, 256),
        bridge: bool = True,
    ) -> None:
        super().__init__()
        if len(filters) != 5:
            raise RecipeError(f"resunetpp: filters needs 5 widths, got {tuple(filters)}")
        f = list(filters)
        self.encoder = nn.ModuleList(
            [
                ResidualUnit(in_channels, f[0], stem=True),
                ResidualUnit(f[0], f[1], stride=2),
                ResidualUnit(f[1], f[2], stride=2),
                ResidualUnit(f[2], f[3], stride=2),
            ]
        )
        self.bridge: nn.Module = SummedASPP(f[3], f[4]) if bridge else nn.Identity()
        below = f[4] if bridge else f[3]
        self.attention = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for skip_width, width in ((f[2], f[3]), (f[1], f[2]), (f[0], f[1])):
            self.attention.append(SkipAttention(skip_width, below))
            self.decoder.append(ResidualUnit(below + skip_width, width))
            below = width
        self.out_aspp = SummedASPP(below, f[0])
        self.head = nn.Conv2d(f[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` -> logits ``(B, out_channels, H, W)``."""
        skips = []
        for unit in self.encoder:
            x = unit(x)
            skips.append(x)
        x = self.bridge(skips[-1])
        for attention, unit, skip in zip(
            self.attention, self.decoder, reversed(skips[:-1]), strict=True
        ):
            x = attention(skip, x)
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = unit(torch.cat([x, skip], dim=1))
        return self.head(self.out_aspp(x))


@register(
    "resunetpp",
    task="segment2d",
    source="braintumor",
    description="ResUNet++ (residual units, SE, ASPP bridge, attention); bridge=False variant",
    reference="Jha et al. 2019, ResUNet++: An Advanced Architecture for Medical Image "
    "Segmentation (IEEE ISM)",
)
def build_resunetpp(
    *,
    num_classes: int,
    in_channels: int,
    pretrained: bool,
    filters: Sequence[int] = (16, 32, 64, 128, 256),
    bridge: bool = True,
) -> nn.Module:
    """ResUNet++ with encoder widths ``filters[:4]`` and an ASPP bridge of ``filters[4]``."""
    return ResUNetPlusPlus(in_channels, num_classes, filters, bridge)
