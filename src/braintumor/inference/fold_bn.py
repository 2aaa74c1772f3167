"""Batch norm folded into the convolution before it, for prediction.

In eval mode a ``BatchNorm2d`` right after a ``Conv2d`` is a fixed affine map per channel, so
it can be merged into the convolution's weights and bias (PyTorch's ``fuse_conv_bn_eval``):
one pass over the activations fewer per pair. On the shipped classifiers (21 pairs) that is
about a fifth of the network's time on a 2-core CPU (docs/benchmarks.md, "Predict on files").

torch.fx finds the pairs. Unlike ``torch.fx.experimental.optimization.fuse``, which returns a
``GraphModule``, the copy keeps the model's own class and ``forward`` (timm's
``forward_features``, the module names the out-of-distribution tap hooks): only the pairs'
modules are swapped, the convolution for the folded one and the batch norm for an identity.
"""

from __future__ import annotations

import copy
import warnings
from collections import Counter

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from braintumor.inference.adapt_bn import bn_state
from braintumor.inference.network_output import first_output


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """``(conv, batch norm)`` module names where the batch norm (with running statistics)
    reads only that convolution's output and each module is called once; empty for a model
    torch.fx cannot trace."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception:  # data-dependent control flow: such a model simply runs unfolded
        return []
    calls = [node for node in graph.nodes if node.op == "call_module"]
    called = Counter(node.target for node in calls)
    pairs = []
    for node in calls:
        norm = model.get_submodule(str(node.target))
        source = node.args[0] if node.args else None
        if not (isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats):
            continue
        if not (isinstance(source, fx.Node) and source.op == "call_module"):
            continue
        if not isinstance(model.get_submodule(str(source.target)), nn.Conv2d):
            continue
        if len(source.users) == 1 and called[source.target] == called[node.target] == 1:
            pairs.append((str(source.target), str(node.target)))
    return pairs


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attribute = name.rpartition(".")
    setattr(model.get_submodule(parent), attribute, module)


def fold_batchnorm(model: nn.Module, pairs: list[tuple[str, str]]) -> nn.Module:
    """An eval-mode copy of ``model`` with each pair of :func:`conv_bn_pairs` folded; the
    model itself is not changed. Its outputs equal the model's in eval mode up to rounding."""
    folded = copy.deepcopy(model).eval()
    for conv_name, norm_name in pairs:
        conv = folded.get_submodule(conv_name)
        norm = folded.get_submodule(norm_name)
        assert isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)
        fused = fuse_conv_bn_eval(conv, norm)
        fused.weight.data = fused.weight.data.contiguous(memory_format=torch.channels_last)
        _replace(folded, conv_name, fused)
        _replace(folded, norm_name, nn.Identity())
    return folded


class FoldedNetwork:
    """The network a predictor runs: ``model`` with batch norm folded, folded again whenever
    the model's batch-norm statistics change (AdaBN writes them into ``model``, and
    ``evaluate --adapt-bn`` swaps them per source). ``model``'s weights must stay fixed.
    ``fold=False`` runs the model as it is (the reference the benchmarks compare with); so
    does a model in training mode, or one whose folded copy answers differently on a probe."""

    def __init__(self, model: nn.Module, fold: bool = True) -> None:
        self.model = model
        # A model in training mode would update its statistics on the probe: not folded.
        self.pairs = conv_bn_pairs(model) if fold and not model.training else []
        self._folded: nn.Module | None = None
        self._stats: dict[str, torch.Tensor] = {}
        if self.pairs and not self._agrees(self.current()):
            # A forward that needs more of a batch norm than its output (its statistics read
            # directly, say): such a model runs unfolded rather than answer differently.
            warnings.warn(
                f"{type(model).__name__}: batch norm not folded (on a 64 px probe the folded "
                "copy answered differently, or the probe did not run)",
                stacklevel=2,
            )
            self.pairs, self._folded = [], None

    def _agrees(self, folded: nn.Module) -> bool:
        """Whether ``folded`` and the model give the same outputs (to 1e-3 of their scale) on
        a random 64 px probe; False when the probe does not fit the model."""
        conv = next(m for m in self.model.modules() if isinstance(m, nn.Conv2d))
        generator = torch.Generator().manual_seed(0)
        probe = torch.randn(2, conv.in_channels, 64, 64, generator=generator)
        probe = probe.to(conv.weight.device).contiguous(memory_format=torch.channels_last)
        try:
            with torch.inference_mode():
                expected = first_output(self.model(probe)).float()
                got = first_output(folded(probe)).float()
        except Exception:  # the probe does not fit, or the copy lacks what forward reads
            return False
        scale = expected.abs().max().clamp_min(1e-6)
        return expected.shape == got.shape and bool((expected - got).abs().max() <= 1e-3 * scale)

    def current(self) -> nn.Module:
        """The folded copy for the model's present statistics (the model itself when there
        is nothing to fold)."""
        if not self.pairs:
            return self.model
        stats = bn_state(self.model)
        same = self._stats.keys() == stats.keys() and all(
            torch.equal(value, self._stats[key]) for key, value in stats.items()
        )
        if self._folded is None or not same:
            self._folded = fold_batchnorm(self.model, self.pairs)
            self._stats = stats
        return self._folded
