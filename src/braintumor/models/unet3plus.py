"""UNet 3+: a U-Net whose every decoder level sees every encoder scale (full-scale skips).

Reference: Huang, Lin, Tong et al. 2020, "UNet 3+: A Full-Scale Connected UNet for Medical
Image Segmentation" (ICASSP). No maintained library ships it, so it is written here from the
paper's Fig. 1 / Eq. 1, using MONAI's conv blocks. Deep supervision and the classification-
guided module of the paper are left out (system 002 trains without them).

Each decoder node ``X_De^i`` concatenates, at scale ``i``: the finer encoder maps ``X_En^j``
(j < i) max-pooled down, ``X_En^i`` itself, and the coarser decoder maps ``X_De^j`` (j > i, the
deepest being the last encoder level) upsampled bilinearly; each passes a 3x3 conv to
``base_filters`` channels, and the ``levels * base_filters`` concatenation is fused by a 3x3
conv-BN-ReLU. ``bridge=False`` is system 002's "nobridge" variant: the deepest (16x) encoder
level is dropped, leaving four scales.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.nets.basic_unet import TwoConv
from torch import nn

from braintumor.models.registry import register


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Module:
    return Convolution(2, in_channels, out_channels, kernel_size=3, act="relu", norm="batch")


class UNet3Plus(nn.Module):
    """UNet 3+ for 2D slices; returns logits ``(B, out_channels, H, W)`` for any input size."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        base_filters: int = 64,
        bridge: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.levels = 5 if bridge else 4
        filters = [base_filters * 2**i for i in range(self.levels)]
        self.encoders = nn.ModuleList()
        for i, width in enumerate(filters):
            source = in_channels if i == 0 else filters[i - 1]
            # dropout only in the two deepest levels, where the seed U-Nets put it
            drop = dropout if i >= self.levels - 2 else 0.0
            self.encoders.append(TwoConv(2, source, width, "relu", "batch", True, drop))
        cat = base_filters
        fused = cat * self.levels
        # path[i][j]: the 3x3 conv taking scale j into decoder node i (decoder nodes 0..L-2)
        self.paths = nn.ModuleList()
        self.fuse = nn.ModuleList()
        for i in range(self.levels - 1):
            row = nn.ModuleList()
            for j in range(self.levels):
                # an encoder map (finer, same scale, or the deepest) or a fused decoder node
                width = filters[j] if j <= i or j == self.levels - 1 else fused
                row.append(_conv_bn_relu(width, cat))
            self.paths.append(row)
            self.fuse.append(_conv_bn_relu(fused, fused))
        self.head = nn.Conv2d(fused, out_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` -> logits ``(B, out_channels, H, W)``."""
        encoded: list[torch.Tensor] = []
        for i, encoder in enumerate(self.encoders):
            x = encoder(x if i == 0 else F.max_pool2d(x, 2))
            encoded.append(x)
        deepest = self.levels - 1
        decoded: dict[int, torch.Tensor] = {deepest: encoded[deepest]}
        for i in range(self.levels - 2, -1, -1):
            size = encoded[i].shape[-2:]
            parts = []
            for j in range(self.levels):
                if j < i:
                    source = F.max_pool2d(encoded[j], kernel_size=2 ** (i - j))
                elif j == i:
                    source = encoded[i]
                else:
                    source = F.interpolate(
                        decoded[j], size=size, mode="bilinear", align_corners=False
                    )
                parts.append(self.paths[i][j](source))
            decoded[i] = self.fuse[i](torch.cat(parts, dim=1))
        return self.head(decoded[0])


@register(
    "unet3plus",
    task="segment2d",
    source="braintumor",
    description="UNet 3+ (full-scale skips), base 64 filters; bridge=False = system 002 nobridge",
    reference="Huang et al. 2020, UNet 3+: A Full-Scale Connected UNet (ICASSP)",
)
def build_unet3plus(
    *,
    num_classes: int,
    in_channels: int,
    pretrained: bool,
    base_filters: int = 64,
    bridge: bool = True,
    dropout: float = 0.0,
) -> nn.Module:
    """UNet 3+ with ``base_filters * 2**i`` encoder widths; no pretrained weights exist."""
    return UNet3Plus(in_channels, num_classes, base_filters, bridge, dropout)
