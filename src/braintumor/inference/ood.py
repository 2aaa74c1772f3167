"""Out-of-distribution (OOD) score of a 2D model's inputs: is this image like its training data?

Two standard scores, both "higher = less like the training inputs":

* ``mahalanobis`` (Lee et al. 2018, "A Simple Unified Framework for Detecting
  Out-of-Distribution Samples and Adversarial Attacks", NeurIPS): the smallest squared
  Mahalanobis distance from an image's pooled features to the class means of the training
  split, under one covariance shared by all classes. Classifiers use the input of their last
  linear layer (the penultimate, pooled features); segmenters the global-average-pooled output
  of their bottleneck (the deepest, smallest feature map), with a single mean.
* ``energy`` (Liu et al. 2020, "Energy-based Out-of-distribution Detection", NeurIPS):
  ``-logsumexp(logits)`` of a classifier.

The statistics live in the model folder (:class:`~braintumor.models.ood_stats.OODStats`:
``ood.safetensors`` + the ``ood`` block of ``model.json``); the threshold is the validation
split's 95th percentile, so 95% of in-distribution inputs are accepted. This module computes
the scores; :mod:`ood_fit` fits the statistics.

pytorch-ood (0.4.0) has both detectors, but its Mahalanobis inverts the raw scatter matrix
with a 1e-6 ridge, which is singular when the features outnumber the training images (small
datasets, wide backbones). Here scikit-learn's Ledoit-Wolf estimate gives a well-conditioned
shared covariance, and each score is one line of torch, so no new dependency is needed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from braintumor.errors import ModelFormatError
from braintumor.models.folder import LoadedModel
from braintumor.models.ood_stats import OODStats


def feature_layer(model: nn.Module, classifier: bool, in_channels: int, image_size: int) -> str:
    """Dotted name of the module whose features the Mahalanobis score uses.

    Classifiers: the last linear layer (timm's ``get_classifier()`` where it is one), read at
    its input. Segmenters: the module that finishes last among those whose output has the
    smallest spatial size in a probe forward pass: the bottleneck, read at its output.
    """
    names = {module: name for name, module in model.named_modules()}
    if classifier:
        getter = getattr(model, "get_classifier", None)
        head = getter() if callable(getter) else None
        if isinstance(head, nn.Linear) and head in names:
            return names[head]
        linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ModelFormatError("classifier has no linear layer to take features from")
        return linears[-1]
    seen: list[tuple[int, str]] = []

    def record(module: nn.Module, _args: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.ndim == 4 and module is not model:
            seen.append((output.shape[2] * output.shape[3], names[module]))

    hooks = [m.register_forward_hook(record) for m in names if m is not model]
    try:
        device = next(model.parameters()).device
        with torch.inference_mode():
            model(torch.zeros(1, in_channels, image_size, image_size, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    if not seen:
        raise ModelFormatError("segmenter has no 4D feature map to take features from")
    smallest = min(area for area, _ in seen)
    return [name for area, name in seen if area == smallest][-1]


def pool(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) feature maps or (B, N, D) tokens -> (B, D) by averaging; (B, D) as is."""
    if features.ndim == 4:
        return features.float().mean(dim=(2, 3))
    if features.ndim == 3:
        return features.float().mean(dim=1)
    return features.float().flatten(1)


class FeatureTap:
    """Collect the pooled features of one named module of ``model`` (or of a copy of it)
    during forward passes."""

    def __init__(self, model: nn.Module, layer: str, at_input: bool) -> None:
        self.layer = layer
        try:
            model.get_submodule(layer)
        except AttributeError as exc:
            raise ModelFormatError(f"OOD feature layer {layer!r} is not in the model") from exc
        self.at_input = at_input
        self.parts: list[torch.Tensor] = []

    def _input(self, _module: nn.Module, args: tuple) -> None:
        self.parts.append(pool(args[0]))

    def _output(self, _module: nn.Module, _args: Any, output: Any) -> None:
        self.parts.append(pool(output))

    @contextlib.contextmanager
    def attached(self, model: nn.Module) -> Iterator[FeatureTap]:
        """Hook the layer in ``model``, the network that runs (the tap's own, or a copy of it
        such as a predictor's batch-norm-folded one, :mod:`.fold_bn`), for the duration of
        the block; ``features`` then holds what passed."""
        self.parts = []
        module = model.get_submodule(self.layer)
        if self.at_input:
            hook = module.register_forward_pre_hook(self._input)
        else:
            hook = module.register_forward_hook(self._output)
        try:
            yield self
        finally:
            hook.remove()

    @property
    def features(self) -> torch.Tensor:
        """(N, D) features of every image seen while attached, in order."""
        return torch.cat(self.parts) if self.parts else torch.zeros(0, 0)


def energy_score(logits: torch.Tensor) -> torch.Tensor:
    """``-logsumexp(logits)`` per image; one logit ``z`` counts as the pair ``(0, z)``."""
    logits = logits.float()
    if logits.shape[1] == 1:
        logits = torch.cat([torch.zeros_like(logits), logits], dim=1)
    return -torch.logsumexp(logits, dim=1)


def mahalanobis_score(
    features: torch.Tensor, means: torch.Tensor, precision: torch.Tensor
) -> torch.Tensor:
    """Smallest squared Mahalanobis distance of each row of ``features`` to a class mean."""
    centred = features.float()[:, None, :] - means[None, :, :]  # (N, K, D)
    return torch.einsum("nkd,de,nke->nk", centred, precision, centred).min(dim=1).values


class OODScorer:
    """Score batches during a :class:`~braintumor.inference.predictor.Predictor` forward pass."""

    def __init__(self, stats: OODStats, model: nn.Module) -> None:
        self.stats = stats
        device = next(model.parameters()).device
        self.means = torch.from_numpy(stats.means).to(device)
        self.precision = torch.from_numpy(stats.precision).to(device)
        self.tap = FeatureTap(model, stats.layer, stats.at_input)

    @property
    def threshold(self) -> float:
        """Scores above this are flagged."""
        return self.stats.threshold

    @property
    def method(self) -> str:
        """``mahalanobis`` or ``energy``."""
        return self.stats.method

    def scores(self, features: torch.Tensor, logits: torch.Tensor) -> dict[str, np.ndarray]:
        """Every score the statistics support, for features (N, D) and raw outputs (N, ...)."""
        out = {"mahalanobis": mahalanobis_score(features, self.means, self.precision)}
        if logits.ndim == 2:
            out["energy"] = energy_score(logits)
        return {k: v.cpu().numpy().astype(np.float64) for k, v in out.items()}

    def score(self, features: torch.Tensor, logits: torch.Tensor) -> np.ndarray:
        """The chosen score, (N,)."""
        return self.scores(features, logits)[self.method]

    def flags(self, scores: np.ndarray) -> np.ndarray:
        """True where an input lies beyond the threshold."""
        return np.asarray(scores) > self.threshold


def scorer_of(loaded: LoadedModel) -> OODScorer | None:
    """The scorer of a loaded model, or None for folders made before OOD statistics existed."""
    return None if loaded.ood is None else OODScorer(loaded.ood, loaded.model)


def ood_fields(score: float | None, scorer: OODScorer | None) -> dict[str, Any]:
    """The ``ood`` / ``ood_score`` fields of one output record (none without statistics)."""
    if scorer is None or score is None:
        return {}
    return {"ood": bool(score > scorer.threshold), "ood_score": float(score)}


def ood_summary(scores: np.ndarray | None, scorer: OODScorer | None) -> dict[str, Any] | None:
    """How many of a set of inputs were flagged, for metrics.json and predict's JSON."""
    if scorer is None or scores is None:
        return None
    flagged = scorer.flags(scores)
    return {
        "method": scorer.method,
        "threshold": scorer.threshold,
        "n_flagged": int(flagged.sum()),
        "flagged_rate": float(flagged.mean()) if len(flagged) else 0.0,
    }
