"""Losses: each falls as predictions approach the target; exp-log against a hand computation;
MONAI Dice loss against 1 - Dice on hard masks; target handling and bad requests."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from braintumor.errors import DataError, RecipeError
from braintumor.losses import CLASSIFY_LOSSES, SEGMENT_LOSSES, build_loss, to_onehot

STEPS = (-2.0, -0.5, 0.5, 2.0, 5.0)  # confidence in the right answer, wrong to right


def _binary_target() -> torch.Tensor:
    torch.manual_seed(0)
    return (torch.rand(2, 1, 12, 12) > 0.6).float()


def _label_map() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randint(0, 3, (2, 12, 12))


def _decreasing(values: list[float]) -> bool:
    return all(b < a for a, b in itertools.pairwise(values))


@pytest.mark.parametrize("name", SEGMENT_LOSSES)
def test_segmentation_losses_fall_toward_binary_target(name: str) -> None:
    loss = build_loss(name, "segment")
    target = _binary_target()
    sign = 2 * target - 1
    values = [loss(step * sign, target).item() for step in STEPS]
    assert _decreasing(values), values


@pytest.mark.parametrize("name", SEGMENT_LOSSES)
def test_segmentation_losses_fall_toward_multiclass_target(name: str) -> None:
    loss = build_loss(name, "segment3d")
    labels = _label_map()
    onehot = to_onehot(labels, 3)
    values = [loss(step * (2 * onehot - 1), onehot).item() for step in STEPS]
    assert _decreasing(values), values
    # an integer label map is one-hot encoded first: same value
    logits = torch.randn(2, 3, 12, 12)
    assert loss(logits, labels).item() == pytest.approx(loss(logits, onehot).item(), rel=1e-5)


@pytest.mark.parametrize("name", CLASSIFY_LOSSES)
def test_classification_losses_fall_toward_labels(name: str) -> None:
    # no label smoothing here: with it, over-confident logits rightly cost more again
    loss = build_loss(name, "classify")
    labels = torch.tensor([0, 1, 1, 0])
    if name == "bce":
        direction = (2 * labels - 1).float().unsqueeze(1)
    else:
        direction = 2 * torch.nn.functional.one_hot(labels, 4).float() - 1
    values = [loss(step * direction, labels).item() for step in STEPS]
    assert _decreasing(values), values


def test_bce_label_smoothing_is_keras_style() -> None:
    loss = build_loss("bce", "classify", label_smoothing=0.01)
    logit = torch.tensor([[3.0]])
    p = 1 / (1 + math.exp(-3.0))
    y = 1 * 0.99 + 0.005
    expected = -(y * math.log(p) + (1 - y) * math.log(1 - p))
    assert loss(logit, torch.tensor([1])).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(DataError, match="one logit"):
        loss(torch.zeros(2, 3), torch.tensor([0, 1]))


def test_dice_loss_equals_one_minus_dice_on_hard_masks() -> None:
    target = _binary_target()
    torch.manual_seed(5)
    predicted = (torch.rand(2, 1, 12, 12) > 0.5).float()
    logits = 40.0 * (2 * predicted - 1)  # sigmoid is 0 or 1 to float precision
    loss = build_loss("dice", "segment2d")(logits, target).item()
    dice = []
    for p, t in zip(predicted, target, strict=True):
        dice.append(2 * (p * t).sum().item() / (p.sum().item() + t.sum().item()))
    assert loss == pytest.approx(1 - sum(dice) / len(dice), abs=1e-4)


def test_exp_log_matches_hand_computation_softmax() -> None:
    # one image, two classes, two pixels: labels (0, 1)
    logits = torch.tensor([[[[2.0, 0.5]], [[0.0, 1.5]]]])  # (1, 2, 1, 2)
    target = to_onehot(torch.tensor([[[[0, 1]]]]), 2)  # label map (B, 1, H, W)
    weight, gamma, smooth = 0.7, 0.3, 1.0
    e = math.exp
    p0 = [e(2.0) / (e(2.0) + e(0.0)), e(0.5) / (e(0.5) + e(1.5))]  # class-0 probabilities
    p = [p0, [1 - p0[0], 1 - p0[1]]]
    t = [[1, 0], [0, 1]]
    dice = [
        (2 * sum(t[c][x] * p[c][x] for x in range(2)) + smooth)
        / (sum(t[c][x] + p[c][x] for x in range(2)) + smooth)
        for c in range(2)
    ]
    dice_term = sum((-math.log(d)) ** gamma for d in dice) / 2
    w = [math.sqrt(2 / 1), math.sqrt(2 / 1)]  # each label covers one of two pixels
    ce_term = (w[0] * (-math.log(p[0][0])) ** gamma + w[1] * (-math.log(p[1][1])) ** gamma) / 2
    expected = weight * dice_term + (1 - weight) * ce_term
    loss = build_loss("exp-log", "segment", weight=weight, gamma_dice=gamma, gamma_ce=gamma)
    assert loss(logits, target).item() == pytest.approx(expected, rel=1e-5)


def test_exp_log_matches_hand_computation_sigmoid() -> None:
    # one binary image of four pixels, one of them tumour; Dice share 0.2 (system 002)
    z = [1.0, -1.0, -2.0, 0.5]
    t = [1, 0, 0, 0]
    logits = torch.tensor(z).reshape(1, 1, 2, 2)
    target = torch.tensor(t, dtype=torch.float32).reshape(1, 1, 2, 2)
    p = [1 / (1 + math.exp(-v)) for v in z]
    dice = (2 * sum(a * b for a, b in zip(t, p, strict=True)) + 1) / (sum(t) + sum(p) + 1)
    dice_term = (-math.log(dice)) ** 0.3
    w_pos, w_neg = math.sqrt(4 / 1), math.sqrt(4 / 3)
    ce = [
        w_pos * (-math.log(pi)) ** 0.3 if ti else w_neg * (-math.log(1 - pi)) ** 0.3
        for pi, ti in zip(p, t, strict=True)
    ]
    expected = 0.2 * dice_term + 0.8 * sum(ce) / 4
    loss = build_loss("exp-log", "segment", weight=0.2)
    assert loss(logits, target).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(RecipeError, match="weight"):
        build_loss("exp-log", "segment", weight=1.5)


def test_overlapping_region_targets_use_sigmoid() -> None:
    # nested BraTS-like regions: channels do not sum to one, so each gets its own sigmoid
    wt = (torch.rand(1, 1, 8, 8) > 0.3).float()
    target = torch.cat([wt, wt * (torch.rand(1, 1, 8, 8) > 0.5)], dim=1)
    logits = torch.randn(1, 2, 8, 8)
    auto = build_loss("dice", "segment")(logits, target)
    explicit = build_loss("dice", "segment", multilabel=True)(logits, target)
    softmax = build_loss("dice", "segment", multilabel=False)(logits, target)
    assert auto.item() == pytest.approx(explicit.item())
    assert auto.item() != pytest.approx(softmax.item())


def test_weighted_ce_uses_given_class_weights() -> None:
    labels = _label_map()
    logits = torch.randn(2, 3, 12, 12)
    weights = [0.2, 1.0, 3.0]
    loss = build_loss("weighted-ce", "segment", weight=weights)(logits, labels)
    expected = torch.nn.functional.cross_entropy(logits, labels, weight=torch.tensor(weights))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_to_onehot_and_bad_requests() -> None:
    onehot = to_onehot(torch.tensor([[[0, 2], [1, 2]]]), 3)
    assert onehot.shape == (1, 3, 2, 2) and onehot.sum(1).eq(1).all()
    assert onehot[0, 2].tolist() == [[0.0, 1.0], [0.0, 1.0]]
    with pytest.raises(DataError, match="do not fit"):
        to_onehot(torch.tensor([[0, 3]]), 3)
    with pytest.raises(RecipeError, match="unknown segmentation loss"):
        build_loss("dise", "segment")
    with pytest.raises(RecipeError, match="unknown classification loss"):
        build_loss("dice", "classify")
    with pytest.raises(RecipeError, match="unknown task"):
        build_loss("dice", "detect")
    with pytest.raises(RecipeError, match="bad option"):
        build_loss("tversky", "segment", gamma=3)
    with pytest.raises(DataError, match="does not match"):
        build_loss("dice", "segment")(torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 4, 4))
