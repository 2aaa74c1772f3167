"""A small residual CNN trained from scratch (system 001's final classifier).

Built from timm's own ResNet with BasicBlocks, one block per stage and narrow widths, so it
shares timm's tested residual code rather than re-implementing it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from timm.models.resnet import BasicBlock, ResNet
from torch import nn

from braintumor.errors import RecipeError
from braintumor.models.mixstyle import add_mixstyle
from braintumor.models.registry import CLASSIFIER, register


@register(
    "small-resnet",
    task=CLASSIFIER,
    source="braintumor",
    description="Small residual CNN (timm BasicBlock, 1 block/stage, widths 32-256), from scratch",
    reference="System 001 (small residual CNN, ~92% on 4 classes); He et al. 2016 (CVPR)",
    gradcam_layer="layer4",
)
def build_small_resnet(
    *,
    num_classes: int,
    in_channels: int,
    pretrained: bool,
    widths: Sequence[int] = (32, 64, 128, 256),
    layers: Sequence[int] = (1, 1, 1, 1),
    drop_rate: float = 0.2,
    mixstyle: float = 0.0,
) -> nn.Module:
    """timm ``ResNet(BasicBlock, layers, channels=widths)``; there are no pretrained weights.

    ``mixstyle``: probability of mixing feature statistics between training images after the
    first two stages (:mod:`braintumor.models.mixstyle`); 0 leaves the network as it is.
    """
    if len(widths) != 4 or len(layers) != 4:
        raise RecipeError("small-resnet: widths and layers need 4 entries each")
    model = ResNet(
        block=BasicBlock,
        layers=tuple(layers),
        channels=tuple(widths),
        stem_width=widths[0],
        num_classes=num_classes,
        in_chans=in_channels,
        drop_rate=drop_rate,
    )
    add_mixstyle([cast(nn.Module, model.layer1), cast(nn.Module, model.layer2)], mixstyle)
    return model
