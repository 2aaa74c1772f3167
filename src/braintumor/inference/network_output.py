"""The prediction among what a network's forward returns."""

from __future__ import annotations

import torch

from braintumor.errors import ModelFormatError


def first_output(out: object) -> torch.Tensor:
    """Some networks return (main, auxiliary...) or {"out": ...}; the first is the prediction.

    Raises :class:`ModelFormatError` when no tensor is found there.
    """
    if isinstance(out, dict):
        out = out.get("out", next(iter(out.values())))
    if isinstance(out, list | tuple):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise ModelFormatError(f"model returned {type(out).__name__}, expected a tensor")
    return out
