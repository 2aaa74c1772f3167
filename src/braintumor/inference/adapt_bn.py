"""Test-time adaptation of batch-norm statistics to a new source (AdaBN, Li et al. 2016).

A network trained on some scanners normalises each feature map with the mean and variance it
saw in training. AdaBN forgets those running statistics and re-estimates them on the
unlabelled images of one new source: every batch-norm layer recomputes its running mean and
variance as the cumulative average over the batches of that source, while the rest of the
network stays in eval mode (dropout off), no gradient is taken and no label is read. Only the
in-memory buffers change; the weights on disk are never written. :func:`bn_state` and
:func:`load_bn_state` keep and restore the statistics, so that each source of an evaluation is
adapted on its own images from the same trained network.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from braintumor.errors import DataError

#: The buffers of a batch-norm layer that AdaBN re-estimates.
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
NO_BATCHNORM = "has no batch-norm layers: --adapt-bn changes nothing"


def batchnorm_layers(model: nn.Module) -> dict[str, _BatchNorm]:
    """The batch-norm layers of ``model`` that keep running statistics, by module name."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, _BatchNorm) and module.track_running_stats
    }


def bn_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every batch-norm running statistic (``<layer>.<buffer>`` -> tensor)."""
    return {
        f"{name}.{buffer}": getattr(layer, buffer).detach().clone()
        for name, layer in batchnorm_layers(model).items()
        for buffer in BN_BUFFERS
    }


def load_bn_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Put statistics taken by :func:`bn_state` back into the same network."""
    for name, layer in batchnorm_layers(model).items():
        for buffer in BN_BUFFERS:
            getattr(layer, buffer).copy_(state[f"{name}.{buffer}"])


def adapt_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Re-estimate ``model``'s batch-norm statistics on ``batches`` of network inputs.

    The running statistics are reset and recomputed as the cumulative average over the
    batches (``momentum=None``), with only the batch-norm layers in training mode, under
    ``torch.no_grad``. The model is left in eval mode with each layer's momentum as it was.
    Returns the number of images seen; a model without batch norm is left as it is (0).
    Raises :class:`DataError` when ``batches`` is empty or a batch holds one image; on any
    error the trained statistics are put back.
    """
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    trained = bn_state(model)
    momenta = {name: layer.momentum for name, layer in layers.items()}
    model.eval()
    for layer in layers.values():
        layer.reset_running_stats()
        layer.momentum = None
        layer.train()
    seen = 0
    try:
        with torch.no_grad():
            for batch in batches:
                if batch.shape[0] < 2:
                    raise DataError(
                        "--adapt-bn needs two or more images of a source at a time, got one"
                    )
                model(batch)
                seen += int(batch.shape[0])
        if seen == 0:
            raise DataError("--adapt-bn: no readable image to adapt the batch-norm statistics on")
    except BaseException:
        load_bn_state(model, trained)  # a failed adaptation leaves the trained statistics
        raise
    finally:
        for name, layer in layers.items():
            layer.momentum = momenta[name]
        model.eval()
    return seen
