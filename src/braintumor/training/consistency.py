"""Consistency between two augmented views of each training slice (AugMix's Jensen-Shannon term).

A classifier trained on perturbed slices can still answer differently for two perturbations of
the same slice when it sits near a class boundary: the invariance benchmark counts those as
flipped answers. Hendrycks et al. (2020, AugMix) add the Jensen-Shannon divergence between the
predictions on differently augmented copies to the loss, which pulls them together. timm ships
that loss (``timm.loss.JsdCrossEntropy``) only bundled with its cross-entropy and for softmax
logits; the recipes' losses (class weights, a single-logit BCE, focal) need the divergence on
its own, so it is written here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from braintumor.models import logits_to_probs

# Probabilities are clamped before the logarithm, as timm's JsdCrossEntropy does.
_EPS = 1e-7


def jensen_shannon(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of JS(p_a, p_b) in nats (0 to ln 2), from (B, K) or (B, 1) logits."""
    p_a = logits_to_probs(logits_a.float())
    p_b = logits_to_probs(logits_b.float())
    log_mean = ((p_a + p_b) / 2).clamp(_EPS, 1.0).log()
    kl_a = (p_a * (p_a.clamp(_EPS, 1.0).log() - log_mean)).sum(dim=1)
    kl_b = (p_b * (p_b.clamp(_EPS, 1.0).log() - log_mean)).sum(dim=1)
    return ((kl_a + kl_b) / 2).mean()


def two_view_loss(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    logits: torch.Tensor,
    labels: torch.Tensor,
    weight: float,
) -> torch.Tensor:
    """Loss on a batch laid out as two views, ``logits = cat(view_a, view_b)``: the task loss on
    both views plus ``weight`` times their Jensen-Shannon divergence."""
    view_a, view_b = logits.chunk(2)
    return loss_fn(logits, torch.cat([labels, labels])) + weight * jensen_shannon(view_a, view_b)
