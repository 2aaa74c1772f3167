"""Mixup and CutMix for the classifiers: each batch is blended with itself reversed.

timm's :class:`~timm.data.Mixup` mixes the batch the same way but returns soft targets, which
the recipes' losses (class weights, a single-logit BCE, focal) do not take. So the images are
mixed here, with timm's CutMix box (:func:`timm.data.mixup.cutmix_bbox_and_lam`), and the loss
is mixed instead of the labels: ``lam * loss(y) + (1 - lam) * loss(y reversed)`` (Zhang et al.
2018), the same objective for cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from timm.data.mixup import cutmix_bbox_and_lam


@dataclass
class Mixed:
    """A mixed batch: the images, the share ``lam`` of the originals in them."""

    images: torch.Tensor
    lam: float

    def loss(
        self,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        logits: torch.Tensor,
        labels: torch.Tensor,
    ) -> torch.Tensor:
        """``loss_fn`` against both label sets, weighted by their shares of the images."""
        if self.lam >= 1.0:
            return loss_fn(logits, labels)
        return self.lam * loss_fn(logits, labels) + (1.0 - self.lam) * loss_fn(
            logits, labels.flip(0)
        )


def mix_batch(images: torch.Tensor, mixup: float, cutmix: float, rng: np.random.Generator) -> Mixed:
    """``images`` (B, C, H, W) mixed with the batch reversed.

    ``mixup`` and ``cutmix`` are the alphas of the Beta distributions lam is drawn from; zero
    disables one. With both set, each batch gets one of the two with equal chance (timm's
    default switch probability). Neither set: the batch unchanged (lam 1).
    """
    kinds = [kind for kind, alpha in (("mixup", mixup), ("cutmix", cutmix)) if alpha > 0]
    if not kinds or images.shape[0] < 2:
        return Mixed(images, 1.0)
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "mixup":
        lam = float(rng.beta(mixup, mixup))
        return Mixed(images.mul(lam).add_(images.flip(0), alpha=1.0 - lam), lam)
    (y0, y1, x0, x1), lam = cutmix_bbox_and_lam(images.shape, float(rng.beta(cutmix, cutmix)))
    mixed = images.clone()
    mixed[..., y0:y1, x0:x1] = images.flip(0)[..., y0:y1, x0:x1]
    return Mixed(mixed, float(lam))
