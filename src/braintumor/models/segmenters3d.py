"""3D segmenters from MONAI for multimodal volumes (BraTS: 4 input channels).

All return logits ``(B, num_classes, D, H, W)``. Patch sides must be divisible by 8
(``segresnet``), 16 (``unet3d``), 32 and at least 64 (``swinunetr``), or by
``dynunet``'s total stride.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from monai.networks.nets import DynUNet, SegResNet, SwinUNETR
from torch import nn

from braintumor.errors import RecipeError
from braintumor.models.registry import register
from braintumor.models.segmenters import residual_unet


@register(
    "segresnet",
    task="segment3d",
    source="monai",
    description="MONAI SegResNet (residual encoder, light decoder), 16 initial filters",
    reference="Myronenko 2018, 3D MRI brain tumor segmentation using autoencoder regularization",
)
def build_segresnet(
    *,
    num_classes: int,
    in_channels: int,
    pretrained: bool,
    init_filters: int = 16,
    dropout_prob: float | None = None,
) -> nn.Module:
    """``monai.networks.nets.SegResNet`` with the BraTS block layout (1, 2, 2, 4)."""
    return SegResNet(
        spatial_dims=3,
        init_filters=init_filters,
        in_channels=in_channels,
        out_channels=num_classes,
        blocks_down=(1, 2, 2, 4),
        blocks_up=(1, 1, 1),
        dropout_prob=dropout_prob,
    )


def nnunet_kernels_strides(
    patch_size: Sequence[int], spacing: Sequence[float], max_levels: int = 6
) -> tuple[list[list[int]], list[list[int]]]:
    """nnU-Net-style kernel sizes and strides for a patch, as in MONAI's DynUNet tutorial.

    An axis is halved while it is at least 8 voxels and its spacing is at most twice the finest;
    coarse axes get 1-wide kernels until the others catch up. Returns ``(kernels, strides)``.
    """
    if len(patch_size) != len(spacing):
        raise RecipeError(
            f"dynunet: patch_size {patch_size} and spacing {spacing} differ in length"
        )
    sizes = [int(s) for s in patch_size]
    spacings = [float(s) for s in spacing]
    kernels: list[list[int]] = []
    strides: list[list[int]] = []
    while len(strides) < max_levels - 1:
        ratios = [sp / min(spacings) for sp in spacings]
        stride = [
            2 if ratio <= 2 and size >= 8 else 1 for ratio, size in zip(ratios, sizes, strict=True)
        ]
        if all(s == 1 for s in stride):
            break
        if any(size % s for size, s in zip(sizes, stride, strict=True)):
            raise RecipeError(
                f"dynunet: patch size {tuple(patch_size)} cannot be halved evenly; "
                "use multiples of 16"
            )
        kernels.append([3 if ratio <= 2 else 1 for ratio in ratios])
        strides.append(stride)
        sizes = [size // s for size, s in zip(sizes, stride, strict=True)]
        spacings = [sp * s for sp, s in zip(spacings, stride, strict=True)]
    strides.insert(0, [1] * len(sizes))
    kernels.append([3] * len(sizes))
    return kernels, strides


@register(
    "dynunet",
    task="segment3d",
    source="monai",
    description="MONAI DynUNet, nnU-Net kernels/strides from patch_size (kwarg), no deep sup.",
    reference="Isensee et al. 2021, nnU-Net (Nature Methods)",
)
def build_dynunet(
    *,
    num_classes: int,
    in_channels: int,
    pretrained: bool,
    patch_size: Sequence[int] = (128, 128, 128),
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    deep_supervision: bool = False,
    deep_supr_num: int = 2,
    res_block: bool = True,
) -> nn.Module:
    """``monai.networks.nets.DynUNet`` with filters ``min(32 * 2**i, 320)`` as in nnU-Net."""
    if len(patch_size) != 3:
        raise RecipeError(f"dynunet: patch_size must have 3 sides, got {tuple(patch_size)}")
    kernels, strides = nnunet_kernels_strides(patch_size, spacing)
    return DynUNet(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=num_classes,
        kernel_size=kernels,
        strides=strides,
        upsample_kernel_size=strides[1:],
        filters=[min(32 * 2**i, 320) for i in range(len(strides))],
        norm_name="instance",
        deep_supervision=deep_supervision,
        deep_supr_num=deep_supr_num,
        res_block=res_block,
    )


@register(
    "swinunetr",
    task="segment3d",
    source="monai",
    description="MONAI SwinUNETR (Swin transformer encoder); patch sides 64, 96, 128...",
    reference="Hatamizadeh et al. 2022, Swin UNETR for brain tumor segmentation (BrainLes)",
)
def build_swinunetr(
    *,
    num_classes: int,
    in_channels: int,
    pretrained: bool,
    feature_size: int = 24,
    use_checkpoint: bool = False,
    **kwargs: object,
) -> nn.Module:
    """``monai.networks.nets.SwinUNETR`` in 3D (``feature_size`` must be divisible by 12).

    Other keyword arguments (``depths``, ``num_heads``, ``drop_rate``...) go to SwinUNETR.
    """
    if importlib.util.find_spec("einops") is None:
        # MONAI imports einops lazily and would only fail at the first forward pass
        raise RecipeError("model 'swinunetr' needs the einops package: pip install einops")
    if feature_size % 12:
        raise RecipeError(f"swinunetr: feature_size must be divisible by 12, got {feature_size}")
    return SwinUNETR(
        in_channels=in_channels,
        out_channels=num_classes,
        feature_size=feature_size,
        use_checkpoint=use_checkpoint,
        spatial_dims=3,
        **kwargs,
    )


@register(
    "unet3d",
    task="segment3d",
    source="monai",
    description="MONAI residual U-Net in 3D, channels 16-256 (kwarg channels)",
    reference="Çiçek et al. 2016, 3D U-Net (MICCAI)",
)
def build_unet3d(
    *,
    num_classes: int,
    in_channels: int,
    pretrained: bool,
    channels: Sequence[int] = (16, 32, 64, 128, 256),
    num_res_units: int = 2,
    dropout: float = 0.0,
) -> nn.Module:
    """``monai.networks.nets.UNet`` in 3D (:func:`~braintumor.models.segmenters.residual_unet`)."""
    return residual_unet(3, in_channels, num_classes, channels, num_res_units, dropout)
