"""The missing-sequence augmentation: channels replaced by the fill channel, never the fill."""

from __future__ import annotations

import pytest
import torch

from braintumor.errors import RecipeError
from braintumor.training import augment as aug


def _three_sequences(n: int = 64) -> torch.Tensor:
    """A batch whose three channels differ everywhere (0.2, 0.5, 0.8)."""
    return torch.tensor([0.2, 0.5, 0.8]).view(1, 3, 1, 1).expand(n, 3, 8, 8).clone()


def test_replaced_channels_copy_flair_and_flair_is_never_touched() -> None:
    x = _three_sequences()
    torch.manual_seed(0)
    out = aug.missing_sequence(x, 0.5, fill=1)
    assert torch.equal(out[:, 1], x[:, 1])
    for channel in (0, 2):
        replaced = (out[:, channel] == x[:, 1]).flatten(1).all(1)
        kept = (out[:, channel] == x[:, channel]).flatten(1).all(1)
        assert bool((replaced ^ kept).all()), "a channel was neither kept nor replaced whole"
        assert 10 < int(replaced.sum()) < 54, "probability 0.5 should replace about half"


def test_probability_zero_and_one_channel_inputs_are_identities() -> None:
    x = _three_sequences(4)
    assert torch.equal(aug.missing_sequence(x, 0.0, fill=1), x)
    grey = x[:, :1]
    assert torch.equal(aug.missing_sequence(grey, 1.0, fill=0), grey)


def test_augment_batch_applies_it_from_the_recipe_and_checks_the_fill_channel() -> None:
    cfg = aug.AugmentConfig.from_dict({"hflip": 0.0, "missing_sequence": 1.0})
    out, _ = aug.augment_batch(_three_sequences(4), None, cfg)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 2], out[:, 1])
    bad = aug.AugmentConfig(hflip=0.0, missing_sequence=0.5, missing_sequence_fill=3)
    with pytest.raises(RecipeError, match="missing_sequence_fill=3"):
        aug.augment_batch(_three_sequences(4), None, bad)
