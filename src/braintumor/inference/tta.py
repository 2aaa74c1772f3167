"""Mirror test-time augmentation, one definition for every task.

A prediction is averaged over mirrored copies of the input, each output mirrored back first
(nnU-Net's TTA). Which axes are mirrored is the caller's choice: the 2D image models mirror
left-right only (brain slices are nearly symmetric about that axis alone; an up-down mirror is
an image no scanner exports), a BraTS case every spatial axis and every combination of them.

Two ways to run the copies, same result: :func:`mirrored_mean` runs them one after another
(a 3D sliding window over eight mirrored volumes at once would need eight times the memory);
:func:`stack_mirrors` + :func:`mean_of_mirrors` put them in one batch, so one forward pass
serves them all and a feature hook (the out-of-distribution score) sees the unmirrored images
first. MONAI's and TorchIO's TTA helpers draw random transforms and invert them one at a time,
which is neither of these, so this module is written here.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch

Flips = Sequence[tuple[int, ...]]
"""Mirrors to average over, each a tuple of tensor axes to flip; ``()`` is the input itself."""

NO_MIRRORS: tuple[tuple[int, ...], ...] = ((),)


def left_right(ndim: int = 4) -> tuple[tuple[int, ...], ...]:
    """The input and its left-right mirror (the last axis) of a tensor of ``ndim`` axes."""
    return ((), (ndim - 1,))


def every_axis(spatial_dims: int) -> tuple[tuple[int, ...], ...]:
    """Every combination of mirrored spatial axes of a (B, C, *spatial) tensor: 4 in 2D, 8
    in 3D, the unmirrored input first."""
    axes = tuple(range(2, 2 + spatial_dims))
    return tuple(c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r))


def _flip(x: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
    return torch.flip(x, axes) if axes else x


def mirrored_mean(
    run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, flips: Flips
) -> torch.Tensor:
    """Mean of ``run`` over the mirrored copies of ``x``, each output mirrored back; the
    copies run one at a time."""
    total: torch.Tensor | None = None
    for axes in flips:
        y = _flip(run(_flip(x, axes)), axes)
        total = y if total is None else total + y
    if total is None:
        raise ValueError("mirrored_mean needs at least one mirror (use NO_MIRRORS for none)")
    return total / len(flips)


def stack_mirrors(x: torch.Tensor, flips: Flips) -> torch.Tensor:
    """The mirrored copies of batch ``x`` one after another along the batch axis, in the order
    of ``flips`` (the unmirrored batch first when ``flips`` starts with ``()``)."""
    return torch.cat([_flip(x, axes) for axes in flips])


def mean_of_mirrors(y: torch.Tensor, flips: Flips, spatial: bool = True) -> torch.Tensor:
    """The mean over the copies of an output of :func:`stack_mirrors`' batch. ``spatial``:
    the output has the input's axes (a map), so each copy is mirrored back; class scores
    (``spatial=False``) are averaged as they are."""
    copies = y.chunk(len(flips))
    if spatial:
        copies = tuple(_flip(c, axes) for c, axes in zip(copies, flips, strict=True))
    return torch.stack(copies).mean(dim=0)
