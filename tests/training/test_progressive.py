"""Progressive resizing: the side schedule, the batch shrink, the recipe check, and a classifier
whose early epochs see the smaller images and whose validation sees the full ones."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from braintumor.config import load_recipe
from braintumor.data.preprocess import PreprocessSpec
from braintumor.errors import RecipeError
from braintumor.models import build_model
from braintumor.training.module import ClassificationModule
from braintumor.training.progressive import shrink, training_side


def test_side_grows_from_start_to_full_over_the_first_half() -> None:
    sides = [training_side(64, 128, p / 10) for p in range(11)]
    assert sides[0] == 64 and sides[5:] == [128] * 6
    assert sides == sorted(sides) and all(s % 16 == 0 for s in sides)
    assert training_side(128, 128, 0.0) == 128


def test_shrink_resizes_only_when_needed() -> None:
    images = torch.rand(2, 1, 128, 128)
    assert shrink(images, 128) is images
    small = shrink(images, 64)
    assert small.shape == (2, 1, 64, 64)
    # Area-like averaging: a shrunk image keeps its mean grey level.
    assert small.mean().item() == pytest.approx(images.mean().item(), abs=0.01)


@pytest.mark.parametrize("bad", [8, 256, 64.5, True])
def test_recipe_rejects_a_start_outside_the_image(bad: object) -> None:
    with pytest.raises(RecipeError, match="progressive_start"):
        load_recipe("plain-cpu-4class", [f"progressive_start={bad}"])


def test_segmenters_refuse_progressive_resizing() -> None:
    from braintumor.training.module import SegmentationModule

    recipe = load_recipe("fast-cpu-seg", ["progressive_start=64"])
    spec = PreprocessSpec.from_dict({"image_size": 128, "in_channels": 1})
    with pytest.raises(RecipeError, match="classifiers only"):
        SegmentationModule(recipe, 1, 1, multilabel=True, spec=spec)


def test_classifier_trains_small_early_and_validates_at_full_size() -> None:
    recipe = load_recipe(
        "plain-cpu-4class", ["progressive_start=64", "max_epochs=10", "max_minutes=null"]
    )
    model = build_model("small-resnet", num_classes=2, in_channels=1, layers=[1, 1, 1, 1])
    spec = PreprocessSpec.from_dict({**recipe.preprocess, "image_size": 128, "in_channels": 1})
    module = ClassificationModule(recipe, model, ["a", "b"], spec)
    images = torch.randint(0, 255, (2, 1, 128, 128), dtype=torch.uint8)
    seen = []
    for epoch in (0, 3, 5):
        # What the hook reads of a Lightning trainer.
        module._trainer = SimpleNamespace(max_epochs=10, callbacks=[], current_epoch=epoch)
        module.on_train_epoch_start()
        seen.append(module._inputs(images, train=True, side=module.train_side).shape[-1])
        # What batch-norm re-estimation sees: the side validation sees, not this epoch's.
        assert module.training_inputs({"image": images}).shape[-1] == 128
    assert seen == [64, 96, 128]
    assert module._inputs(images, train=False).shape[-1] == 128
