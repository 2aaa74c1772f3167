"""MixStyle: training batches get mixed feature statistics, evaluation is untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from braintumor.errors import RecipeError
from braintumor.models.mixstyle import MixStyle, add_mixstyle
from braintumor.models.registry import build_model


def _styled_pair() -> torch.Tensor:
    """Two images with the same content and very different per-channel statistics."""
    content = torch.randn(1, 4, 16, 16)
    return torch.cat([content, content * 5.0 + 3.0])


def test_mixing_moves_statistics_between_the_two_images() -> None:
    torch.manual_seed(0)
    layer = nn.Identity()
    layer.register_forward_hook(MixStyle(p=1.0, alpha=1.0))
    x = _styled_pair()
    layer.train()
    low, high = x.mean(dim=(2, 3)).min(dim=0).values, x.mean(dim=(2, 3)).max(dim=0).values
    changed = 0
    for _ in range(8):  # a random permutation of two images keeps them in place half the time
        mixed = layer(x)
        means = mixed.mean(dim=(2, 3))
        assert torch.all(means >= low - 1e-4) and torch.all(means <= high + 1e-4)
        changed += not torch.allclose(mixed, x)
        # The content survives: each mixed map is an affine map of the original one.
        for image in range(2):
            pair = torch.stack([mixed[image, 0].flatten(), x[image, 0].flatten()])
            assert torch.corrcoef(pair)[0, 1] > 0.999
    assert changed >= 1


def test_evaluation_and_p_zero_leave_features_alone() -> None:
    x = _styled_pair()
    layer = nn.Identity()
    layer.register_forward_hook(MixStyle(p=1.0))
    layer.eval()
    assert torch.equal(layer(x), x)
    off = nn.Identity()
    add_mixstyle([off], p=0.0)
    off.train()
    assert not off._forward_hooks and torch.equal(off(x), x)


def test_small_resnet_with_mixstyle_is_the_same_network_at_evaluation() -> None:
    torch.manual_seed(0)
    mixed = build_model("small-resnet", num_classes=2, in_channels=1, mixstyle=1.0)
    plain = build_model("small-resnet", num_classes=2, in_channels=1)
    plain.load_state_dict(mixed.state_dict())  # the same keys: nothing to save or load
    x = torch.randn(4, 1, 64, 64)
    mixed.eval(), plain.eval()
    assert torch.allclose(mixed(x), plain(x))
    mixed.train()
    plain.train()
    mixed.drop_rate = plain.drop_rate = 0.0
    torch.manual_seed(1)
    assert not torch.allclose(mixed(x), plain(x), atol=1e-4)


def test_probability_outside_zero_one_is_refused() -> None:
    with pytest.raises(RecipeError, match="mixstyle"):
        build_model("small-resnet", num_classes=2, in_channels=1, mixstyle=1.5)
