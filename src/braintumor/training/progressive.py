"""Progressive resizing: the first epochs train on smaller images, the rest at full size.

A small CNN's step costs about the square of the image side, and early epochs learn coarse
shapes that a smaller image shows as well (fast.ai's progressive resizing; Touvron et al.,
2019, on training below the test resolution). The side grows linearly from
``progressive_start`` to the recipe's ``image_size`` over the first half of training, in
steps of 16 pixels so that only a few input shapes reach oneDNN; validation and inference
always see the full size. Images are shrunk on the batch, after the cache (area-averaged by
:func:`torch.nn.functional.interpolate` with antialiasing), so the cache stays one size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Sides are multiples of this (a U-Net's or ResNet's downsampling divides them evenly).
SIDE_STEP = 16
#: Share of training over which the side grows to full size.
RAMP = 0.5


def training_side(start: int, final: int, progress: float) -> int:
    """The image side at ``progress`` (0 to 1) of training: ``start`` growing to ``final``
    by :data:`RAMP`, rounded down to a multiple of :data:`SIDE_STEP` (never below ``start``)."""
    if progress >= RAMP or start >= final:
        return final
    side = start + (final - start) * progress / RAMP
    return max(start, min(final, int(side) // SIDE_STEP * SIDE_STEP))


def shrink(images: torch.Tensor, side: int) -> torch.Tensor:
    """(B, C, H, W) images resized to ``side`` x ``side`` (unchanged when already there)."""
    if images.shape[-1] == side and images.shape[-2] == side:
        return images
    return F.interpolate(images, size=(side, side), mode="bilinear", antialias=True)
