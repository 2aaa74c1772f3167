"""Start a segmenter's outputs at a prior tumour probability instead of at 0.5.

A freshly built network emits logits near 0, so every pixel starts at probability 0.5 of
tumour. Where tumour covers about 1% of the pixels, the first steps of a BCE + Dice loss are
spent pulling 99% of the pixels down, and with a small learning rate and a short budget the
network may never leave that start (system 003's ``unet-lgg`` on LGG fold 3: validation Dice
0.04 for 11 epochs). Setting the output layer's bias to ``log(p / (1 - p))`` starts every
pixel at probability ``p`` (the prior initialisation of Lin et al. 2017, *Focal Loss for Dense
Object Detection*, section 4.1).

Which layer is the output layer differs between MONAI, smp and our own networks, so it is
found by running the network once and recording the last executed convolution or linear layer
whose output channels are the model's outputs; a second run then checks that moving its bias
moved every logit by the same amount (no normalisation or activation after it). Written here
because neither MONAI nor smp offers an output-bias initialiser for their networks.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from braintumor.errors import RecipeError

_BIASED_LAYERS = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Linear,
)


def prior_logit(prior: float) -> float:
    """The logit ``log(p / (1 - p))`` whose sigmoid is ``prior`` (0 < prior < 1)."""
    if not 0.0 < prior < 1.0:
        raise ValueError(f"a prior probability lies strictly between 0 and 1, not {prior}")
    return math.log(prior / (1.0 - prior))


def _output_width(layer: nn.Module) -> int:
    width = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
    assert isinstance(width, int)  # every kind in _BIASED_LAYERS stores it as an int
    return width


def _find_output_layer(model: nn.Module, example: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    """The last layer run on ``example`` that has a bias and as many outputs as the model, and
    the model's output on ``example``. Raises RecipeError when the network has no such layer."""
    executed: list[nn.Module] = []
    hooks = [
        layer.register_forward_hook(lambda module, _inputs, _output: executed.append(module))
        for layer in model.modules()
        if isinstance(layer, _BIASED_LAYERS) and layer.bias is not None
    ]
    try:
        output = model(example)
    finally:
        for hook in hooks:
            hook.remove()
    if not isinstance(output, torch.Tensor):
        raise RecipeError(
            f"output_prior: {type(model).__name__} returns {type(output).__name__}, not one "
            "tensor of logits"
        )
    width = output.shape[1]
    candidates = [layer for layer in executed if _output_width(layer) == width]
    if not candidates:
        raise RecipeError(
            f"output_prior: {type(model).__name__} has no output layer with a bias "
            f"for its {width} output channel(s)"
        )
    return candidates[-1], output


@torch.no_grad()
def set_output_prior(model: nn.Module, prior: float, example: torch.Tensor) -> None:
    """Set ``model``'s output bias so that every output starts near sigmoid probability ``prior``.

    ``example`` is one input the model accepts (e.g. a random ``(1, C, H, W)`` tensor, which
    unlike zeros reaches every path of the network); the model is run on it twice, in eval
    mode, and given back in the mode it came in. Raises RecipeError when moving the found
    layer's bias does not move the logits one for one (an activation or a normalisation
    follows it), leaving the model unchanged.
    """
    was_training = model.training
    model.eval()
    try:
        layer, before = _find_output_layer(model, example)
        assert isinstance(layer.bias, torch.Tensor)  # only biased layers are candidates
        original = layer.bias.detach().clone()
        target = prior_logit(prior)
        layer.bias.fill_(target)
        shift = model(example) - before
        expected = (target - original).view(1, -1, *([1] * (before.ndim - 2)))
        if not torch.allclose(shift, expected.expand_as(shift), atol=1e-3, rtol=1e-3):
            layer.bias.copy_(original)
            raise RecipeError(
                f"output_prior: the last biased layer of {type(model).__name__} "
                f"({type(layer).__name__}) is followed by a non-linear step; its outputs "
                "cannot be started at a prior"
            )
    finally:
        model.train(was_training)
