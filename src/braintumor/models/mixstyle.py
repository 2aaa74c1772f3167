"""MixStyle (Zhou et al., ICLR 2021): mix the feature statistics of two training images.

A CNN's early feature maps carry an image's "style" (contrast, texture, scanner and export
fingerprint) in their per-channel mean and standard deviation. During training, MixStyle
re-normalises each image's early features to a random convex mix of its own statistics and
those of another image in the batch, so the network sees styles between the sources it is
trained on and leans less on any one of them. It has no parameters and does nothing at
evaluation time, so a model trained with it loads, predicts and exports as one without it.

Written here because no maintained package on PyPI ships it (the authors' Dassl toolbox is
not installable as a library); the code follows the paper's algorithm 1 (random mixing).
"""

from __future__ import annotations

import torch
from torch import nn

from braintumor.errors import RecipeError


class MixStyle:
    """A forward hook that mixes styles in the output of the module it is attached to.

    ``p`` is the probability that a training batch is mixed; ``alpha`` the Beta(alpha,
    alpha) concentration of the mixing weights (0.1 in the paper: mostly near 0 or 1).
    The decision is taken by a tensor, not in Python, so a compiled graph stays whole.
    """

    def __init__(self, p: float = 0.5, alpha: float = 0.1, eps: float = 1e-6) -> None:
        if not 0.0 <= p <= 1.0:
            raise RecipeError(f"mixstyle must be a probability in [0, 1], got {p}")
        self.p = p
        self.beta = torch.distributions.Beta(alpha, alpha)
        self.eps = eps

    def __call__(self, module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if not module.training or self.p == 0.0 or output.shape[0] < 2:
            return output
        features = output.float()
        mean = features.mean(dim=(2, 3), keepdim=True).detach()
        std = (features.var(dim=(2, 3), keepdim=True) + self.eps).sqrt().detach()
        batch = features.shape[0]
        weight = self.beta.sample((batch, 1, 1, 1)).to(features.device)
        other = torch.randperm(batch, device=features.device)
        mixed_mean = weight * mean + (1 - weight) * mean[other]
        mixed_std = weight * std + (1 - weight) * std[other]
        mixed = ((features - mean) / std * mixed_std + mixed_mean).to(output.dtype)
        apply = torch.rand((), device=features.device) < self.p
        return torch.where(apply, mixed, output)


def add_mixstyle(layers: list[nn.Module], p: float, alpha: float = 0.1) -> None:
    """Attach MixStyle after each of ``layers`` (the paper: after the first two ResNet
    stages; later stages carry the content the classes depend on)."""
    if p == 0.0:
        return
    for layer in layers:
        layer.register_forward_hook(MixStyle(p, alpha))
