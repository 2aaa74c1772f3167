"""The one mirror-TTA definition: sequential and batched forms agree, mirrors are undone."""

import pytest
import torch

from braintumor.inference.tta import (
    NO_MIRRORS,
    every_axis,
    left_right,
    mean_of_mirrors,
    mirrored_mean,
    stack_mirrors,
)


def test_every_axis_lists_each_combination_once_unmirrored_first():
    assert every_axis(2) == ((), (2,), (3,), (2, 3))
    flips3 = every_axis(3)
    assert len(flips3) == 8 and len(set(flips3)) == 8 and flips3[0] == ()
    assert left_right() == ((), (3,))


def test_identity_network_is_unchanged_by_tta():
    """Mirroring the input and then the output back is the identity: the mean is the input."""
    x = torch.randn(2, 3, 5, 7, 4)
    assert torch.allclose(mirrored_mean(lambda t: t, x, every_axis(3)), x)
    y = mean_of_mirrors(stack_mirrors(x, every_axis(3)), every_axis(3))
    assert torch.allclose(y, x)


def test_batched_and_sequential_forms_agree_on_a_non_symmetric_network():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(2, 3, 3, padding=1)
    x = torch.randn(4, 2, 9, 11)
    with torch.no_grad():
        sequential = mirrored_mean(conv, x, every_axis(2))
        batched = mean_of_mirrors(conv(stack_mirrors(x, every_axis(2))), every_axis(2))
        plain = conv(x)
    assert torch.allclose(sequential, batched, atol=1e-6)
    assert not torch.allclose(sequential, plain, atol=1e-3)  # the mirrors did change it


def test_class_scores_are_averaged_without_mirroring():
    scores = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    assert torch.equal(
        mean_of_mirrors(scores, left_right(), spatial=False), torch.full((2, 2), 0.5)
    )


def test_no_mirrors_runs_once_and_empty_flips_is_an_error():
    calls = []
    x = torch.ones(1, 1, 2, 2)
    mirrored_mean(lambda t: calls.append(1) or t, x, NO_MIRRORS)
    assert calls == [1]
    with pytest.raises(ValueError, match="at least one mirror"):
        mirrored_mean(lambda t: t, x, ())
