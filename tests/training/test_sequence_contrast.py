"""The sequence-contrast augmentation: tissue grey levels reordered, the slice kept equalised."""

from __future__ import annotations

import pytest
import torch

from braintumor.config import load_recipe
from braintumor.errors import RecipeError
from braintumor.training import augment as aug


def _equalised_slices(n: int) -> torch.Tensor:
    """(n, 1, 16, 16): air (0) around a head whose 255 levels each occur once, shuffled."""
    images = torch.zeros(n, 1, 16, 16)
    for i in range(n):
        head = torch.randperm(255) + 1
        flat = images[i, 0].flatten()
        flat[1:256] = head / 255
        images[i, 0] = flat.view(16, 16)
    return images


def test_levels_are_reordered_but_stay_equalised_and_the_air_stays_black() -> None:
    torch.manual_seed(0)
    x = _equalised_slices(64)
    out = aug.sequence_contrast(x, 1.0)
    air = x == 0
    assert torch.equal(out[air], x[air])
    for before, after in zip(x, out, strict=True):
        # re-equalised: the head's levels are still 1..255, each once
        assert torch.equal(after[before > 0].sort().values, before[before > 0].sort().values)
    # the new level as a function of the old one: monotone would mean no reordering at all
    order = x.flatten(1).argsort(dim=1)
    remapped = torch.gather(out.flatten(1), 1, order)[:, 1:]
    rising = (remapped.diff(dim=1) > 0).all(dim=1)
    falling = (remapped.diff(dim=1) < 0).all(dim=1)
    folded = int((~rising & ~falling).sum())
    # about half the curves fold (the other half are blended too close to the identity)
    assert 15 <= folded <= 50, folded
    assert not torch.equal(out, x)


def test_probability_zero_is_the_identity_and_augment_batch_applies_it() -> None:
    x = _equalised_slices(4)
    assert torch.equal(aug.sequence_contrast(x, 0.0), x)
    torch.manual_seed(1)
    cfg = aug.AugmentConfig.from_dict({"hflip": 0.0, "sequence_contrast": 1.0})
    out, _ = aug.augment_batch(x, None, cfg)
    assert torch.equal(out[x == 0], x[x == 0]) and not torch.equal(out, x)


def test_the_recipe_needs_equalised_slices() -> None:
    recipe = load_recipe("fast-cpu-4class", overrides=["augment.sequence_contrast=0.3"])
    assert recipe.augment["sequence_contrast"] == 0.3
    with pytest.raises(RecipeError, match=r"sequence_contrast needs preprocess\.intensity"):
        load_recipe(
            "fast-cpu-4class",
            overrides=["augment.sequence_contrast=0.3", "preprocess.intensity=percentile"],
        )
