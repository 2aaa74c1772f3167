"""Two-view consistency: the Jensen-Shannon term, the training step that uses it, and that it
makes a classifier answer alike for two perturbations of one slice."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from braintumor.config import Recipe
from braintumor.data.preprocess import PreprocessSpec
from braintumor.errors import RecipeError
from braintumor.training.consistency import jensen_shannon, two_view_loss
from braintumor.training.module import ClassificationModule, SegmentationModule


def test_jensen_shannon_is_zero_for_equal_answers_and_ln2_for_opposite_certain_ones():
    logits = torch.randn(5, 4)
    assert jensen_shannon(logits, logits).item() == pytest.approx(0.0, abs=1e-6)
    sure_a = torch.tensor([[50.0, -50.0]])
    sure_b = torch.tensor([[-50.0, 50.0]])
    assert jensen_shannon(sure_a, sure_b).item() == pytest.approx(math.log(2), rel=1e-4)
    a, b = torch.randn(6, 3), torch.randn(6, 3)
    assert jensen_shannon(a, b).item() == pytest.approx(jensen_shannon(b, a).item())
    assert 0.0 < jensen_shannon(a, b).item() < math.log(2)


def test_jensen_shannon_takes_single_logit_binary_heads():
    one = torch.tensor([[2.0], [-1.0]])
    two = torch.cat([torch.zeros_like(one), one], dim=1)  # softmax([0, z]) = [1 - s(z), s(z)]
    other = torch.tensor([[0.5], [1.5]])
    other_two = torch.cat([torch.zeros_like(other), other], dim=1)
    assert jensen_shannon(one, other).item() == pytest.approx(
        jensen_shannon(two, other_two).item(), rel=1e-5
    )


def test_two_view_loss_is_the_loss_on_both_views_plus_the_weighted_divergence():
    logits = torch.randn(8, 3)
    labels = torch.tensor([0, 1, 2, 1])
    loss = two_view_loss(F.cross_entropy, logits, labels, 3.0)
    expected = F.cross_entropy(logits, labels.repeat(2)) + 3.0 * jensen_shannon(
        logits[:4], logits[4:]
    )
    assert loss.item() == pytest.approx(expected.item())


def _recipe(**augment: float) -> Recipe:
    return Recipe(name="r", task="classify", model="m", augment=dict(augment))


class _Recorder(torch.nn.Module):
    """A linear classifier that keeps the last batch it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(16 * 16, 2)
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x
        return self.fc(x.flatten(1))


def test_the_training_step_shows_the_network_two_differently_augmented_copies():
    net = _Recorder()
    module = ClassificationModule(
        _recipe(consistency=2.0, noise=0.1), net, ["a", "b"], PreprocessSpec(in_channels=1)
    )
    module.log = lambda *args, **kwargs: None  # type: ignore[method-assign]  # no trainer here
    images = torch.randint(0, 255, (3, 1, 16, 16), dtype=torch.uint8)
    loss = module.training_step({"image": images, "label": torch.tensor([0, 1, 0])}, 0)
    assert net.seen is not None and net.seen.shape[0] == 6
    assert not torch.allclose(net.seen[:3], net.seen[3:])  # independent noise per copy
    logits = net.fc(net.seen.flatten(1))
    expected = two_view_loss(module.loss_fn, logits, torch.tensor([0, 1, 0]), 2.0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_consistency_does_not_combine_with_mixing_or_segmentation():
    with pytest.raises(RecipeError, match="consistency"):
        ClassificationModule(
            _recipe(consistency=1.0, mixup=0.2), _Recorder(), ["a", "b"], PreprocessSpec()
        )
    recipe = Recipe(name="r", task="segment", model="unet", augment={"consistency": 1.0})
    net = torch.nn.Conv2d(1, 1, 1)
    with pytest.raises(RecipeError, match="classifiers only"):
        SegmentationModule(recipe, 1, 1, multilabel=True, model=net, spec=PreprocessSpec())


def _disagreement(weight: float) -> float:
    """Train a linear classifier on heavily noised copies; its answers' divergence between two
    noisy views of unseen slices."""
    torch.manual_seed(0)
    net = torch.nn.Linear(64, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(150):
        labels = torch.randint(0, 2, (32,))
        clean = torch.randn(32, 64) * 0.1 + labels[:, None].float() * 0.3
        views = torch.cat([clean + torch.randn_like(clean), clean + torch.randn_like(clean)])
        loss = two_view_loss(F.cross_entropy, net(views), labels, weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        labels = torch.randint(0, 2, (500,))
        clean = torch.randn(500, 64) * 0.1 + labels[:, None].float() * 0.3
        return jensen_shannon(
            net(clean + torch.randn_like(clean)), net(clean + torch.randn_like(clean))
        ).item()


def test_training_with_the_term_makes_two_views_agree():
    assert _disagreement(5.0) < 0.5 * _disagreement(0.0)
