"""Starting a segmenter's outputs at a prior tumour probability (models.output_prior)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from braintumor.config import load_recipe
from braintumor.errors import RecipeError
from braintumor.models import build_model, list_models
from braintumor.models.output_prior import prior_logit, set_output_prior
from braintumor.training.module import SegmentationModule

_SEGMENTERS_2D = [spec.name for spec in list_models("segment2d")]


@pytest.mark.parametrize("name", _SEGMENTERS_2D)
def test_every_2d_segmenter_starts_at_the_prior(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=1, in_channels=3)
    example = torch.zeros(1, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        before = model(example)
    set_output_prior(model, 0.01, example)
    assert model.training is False  # given back in the mode it came in
    with torch.no_grad():
        after = model(example)
    shift = (after - before).flatten()
    # every logit moved by the same amount, and the mean start is the prior's logit
    assert torch.allclose(shift, shift[:1].expand_as(shift), atol=1e-3)
    assert shift.abs().max() > 0.5
    if after.std() < 1.0:  # a fresh network's logits scatter little around its bias
        assert torch.sigmoid(after).median() < 0.05


def test_a_layer_followed_by_an_activation_is_refused_and_left_as_it_was() -> None:
    model = nn.Sequential(nn.Conv2d(3, 1, 3, padding=1), nn.Sigmoid())
    original = model[0].bias.detach().clone()
    with pytest.raises(RecipeError, match="non-linear"):
        set_output_prior(model, 0.01, torch.randn(1, 3, 8, 8))
    assert torch.equal(model[0].bias, original)


def test_a_network_without_an_output_bias_is_refused() -> None:
    model = nn.Sequential(nn.Conv2d(3, 1, 3, padding=1, bias=False))
    with pytest.raises(RecipeError, match="no output layer with a bias"):
        set_output_prior(model, 0.01, torch.zeros(1, 3, 8, 8))


def test_prior_logit_inverts_the_sigmoid() -> None:
    assert torch.sigmoid(torch.tensor(prior_logit(0.01))).item() == pytest.approx(0.01)
    with pytest.raises(ValueError):
        prior_logit(1.0)


def test_the_recipe_option_reaches_the_training_module() -> None:
    recipe = load_recipe("fast-cpu-lgg", ["output_prior=0.02", "image_size=64", "compile=false"])
    module = SegmentationModule(recipe, 1, 3, multilabel=True)
    module.eval()
    with torch.no_grad():
        probs = torch.sigmoid(module.model(torch.zeros(1, 3, 64, 64)))
    assert 0.005 < probs.median().item() < 0.08
    plain = SegmentationModule(load_recipe("fast-cpu-lgg", ["image_size=64"]), 1, 3, True)
    plain.eval()
    with torch.no_grad():
        assert torch.sigmoid(plain.model(torch.zeros(1, 3, 64, 64))).median() > 0.2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["output_prior=1.5"], "between 0 and 1"),
        (["output_prior=yes"], "between 0 and 1"),
    ],
)
def test_bad_priors_are_refused_when_the_recipe_loads(overrides: list[str], message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        load_recipe("fast-cpu-lgg", overrides)


def test_classifiers_have_no_output_prior() -> None:
    with pytest.raises(RecipeError, match="segmenters only"):
        load_recipe("fast-cpu-4class", ["output_prior=0.1"])


def test_a_3d_segmenter_is_probed_at_the_recipe_patch_size() -> None:
    recipe = load_recipe("fast-cpu-brats3d", ["output_prior=0.05"])
    module = SegmentationModule(recipe, 3, 4, multilabel=True)
    module.eval()
    with torch.no_grad():
        probs = torch.sigmoid(module.model(torch.zeros(1, 4, 32, 32, 32)))
    assert probs.shape[1] == 3
    assert 0.01 < probs.median().item() < 0.2


def test_softmax_label_maps_have_no_single_prior() -> None:
    recipe = load_recipe("fast-cpu-brats3d", ["output_prior=0.05"])
    with pytest.raises(RecipeError, match="softmax"):
        SegmentationModule(recipe, 4, 4, multilabel=False)
