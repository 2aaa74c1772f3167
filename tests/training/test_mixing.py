"""Mixup and CutMix: what the mixed batch holds, and the loss mixed with the same shares."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from braintumor.config import Recipe
from braintumor.errors import RecipeError
from braintumor.training.mixing import mix_batch
from braintumor.training.module import SegmentationModule


def _batch() -> torch.Tensor:
    images = torch.zeros(4, 1, 16, 16)
    for i in range(4):
        images[i] = float(i)  # image i is constant i
    return images


def test_nothing_set_leaves_the_batch_unchanged():
    images = _batch()
    mixed = mix_batch(images, 0.0, 0.0, np.random.default_rng(0))
    assert mixed.lam == 1.0 and torch.equal(mixed.images, images)


def test_mixup_blends_each_image_with_its_mirror_in_the_batch():
    images = _batch()
    mixed = mix_batch(images, 0.4, 0.0, np.random.default_rng(1))
    assert 0.0 < mixed.lam < 1.0
    expected = mixed.lam * images + (1 - mixed.lam) * images.flip(0)
    assert torch.allclose(mixed.images, expected)


def test_cutmix_pastes_a_box_whose_area_matches_lam():
    np.random.seed(3)  # timm draws the box position from numpy's global generator
    images = _batch()
    mixed = mix_batch(images, 0.0, 1.0, np.random.default_rng(2))
    first = mixed.images[0, 0]
    pasted = (first == 3.0).float().mean().item()  # image 0 gets pieces of image 3
    assert set(first.unique().tolist()) <= {0.0, 3.0}
    assert pasted == pytest.approx(1.0 - mixed.lam)
    assert 0.0 < pasted < 1.0


def test_the_loss_is_mixed_with_the_image_shares():
    images = _batch()
    mixed = mix_batch(images, 0.4, 0.0, np.random.default_rng(5))
    logits = torch.randn(4, 3)
    labels = torch.tensor([0, 1, 2, 0])
    loss = mixed.loss(F.cross_entropy, logits, labels)
    expected = mixed.lam * F.cross_entropy(logits, labels) + (1 - mixed.lam) * F.cross_entropy(
        logits, labels.flip(0)
    )
    assert loss.item() == pytest.approx(expected.item())


def test_segmentation_recipes_refuse_mixing():
    recipe = Recipe(name="r", task="segment", model="unet", augment={"mixup": 0.2}, model_args={})
    net = torch.nn.Conv2d(1, 1, 1)
    with pytest.raises(RecipeError, match="classifiers only"):
        SegmentationModule(recipe, 1, 1, multilabel=True, model=net, spec=object())  # type: ignore[arg-type]
