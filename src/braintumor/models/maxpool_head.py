"""ResNet-50 with a global-max-pool dense head for binary tumour detection (system 004).

The head follows the Keras model of system 004: GlobalMaxPool -> Dense 512 ReLU -> BatchNorm
-> Dropout 0.5 -> Dense 1 (sigmoid at use). Keras blocks conv1-conv3 (timm ``conv1``/``bn1``,
``layer1``, ``layer2``) are frozen; ``layer3`` / ``layer4`` and the head train.
"""

from __future__ import annotations

import timm
import torch
from torch import nn

from braintumor.errors import RecipeError
from braintumor.models.registry import CLASSIFIER, register

#: backbone modules that stay frozen (Keras conv1, conv2_x, conv3_x)
FROZEN_PREFIXES: tuple[str, ...] = ("conv1", "bn1", "layer1", "layer2")


class MaxPoolHeadResNet(nn.Module):
    """timm ResNet-50 features, global max pool, a 512-unit dense head and one logit.

    Frozen blocks get ``requires_grad=False`` and their BatchNorms stay in eval mode even while
    the model trains, so their running statistics keep the pretrained values.
    """

    def __init__(
        self,
        in_channels: int = 3,
        pretrained: bool = False,
        hidden: int = 512,
        dropout: float = 0.5,
        freeze: bool = True,
    ) -> None:
        super().__init__()
        # num_classes=0 leaves timm's pooled features; global_pool="max" is GlobalMaxPool2D
        self.backbone = timm.create_model(
            "resnet50",
            pretrained=pretrained,
            num_classes=0,
            global_pool="max",
            in_chans=in_channels,
        )
        self.head = nn.Sequential(
            nn.Linear(self.backbone.num_features, hidden),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(hidden),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )
        self.frozen: tuple[str, ...] = FROZEN_PREFIXES if freeze else ()
        for name in self.frozen:
            getattr(self.backbone, name).requires_grad_(False)

    def train(self, mode: bool = True) -> MaxPoolHeadResNet:
        """Switch train/eval mode, keeping the frozen blocks (and their BatchNorms) in eval."""
        super().train(mode)
        for name in self.frozen:
            getattr(self.backbone, name).eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` -> one logit per image ``(B, 1)``."""
        return self.head(self.backbone(x))


@register(
    "resnet50-maxpool-head",
    task=CLASSIFIER,
    source="timm",
    description="ResNet-50, global max pool, Dense 512/BN/Dropout, 1 logit; conv1-3 frozen",
    reference="System 004 (ResNet50 binary detection); He et al. 2016 (CVPR)",
    gradcam_layer="backbone.layer4",
    single_logit=True,
    has_pretrained=True,
)
def build_maxpool_head(
    *, num_classes: int, in_channels: int, pretrained: bool, **kwargs: object
) -> nn.Module:
    """Binary detector: ``num_classes`` must be 2 (the output is a single logit ``(B, 1)``)."""
    if num_classes != 2:
        raise RecipeError(
            f"model 'resnet50-maxpool-head' is binary (one logit): num_classes must be 2, "
            f"got {num_classes}"
        )
    return MaxPoolHeadResNet(in_channels=in_channels, pretrained=pretrained, **kwargs)
