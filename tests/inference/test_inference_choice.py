"""Segmenter inference settings: largest-component masks, and TTA/largest chosen on validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from braintumor.config import load_recipe
from braintumor.data.samples import Sample
from braintumor.errors import RecipeError
from braintumor.inference.choice import choose_inference
from braintumor.inference.outputs import keep_largest_component, tumour_mask
from braintumor.inference.predictor import InferenceSettings, Predictor
from braintumor.io import write_png
from braintumor.models.folder import LoadedModel
from braintumor.recipe_options import InferenceOptions
from model_support import bright_segmenter


def _loaded(inference: dict | None = None) -> LoadedModel:
    return bright_segmenter(inference, image_size=64)


def _val_set(folder: Path, distractor: bool, n: int = 6) -> list[Sample]:
    """Bright square tumours (the truth), with or without a small bright spot that is not."""
    samples = []
    for i in range(n):
        image = np.full((64, 64), 20, dtype=np.uint8)
        mask = np.zeros((64, 64), dtype=np.uint8)
        top = 8 + 3 * i
        image[top : top + 20, 10:30] = 230
        mask[top : top + 20, 10:30] = 255
        if distractor:
            image[50:56, 50:56] = 230
        write_png(image, folder / f"img{i}.png")
        write_png(mask, folder / f"mask{i}.png")
        samples.append(
            Sample(
                id=f"img{i}", image=str(folder / f"img{i}.png"), mask=str(folder / f"mask{i}.png")
            )
        )
    return samples


def test_keep_largest_component_keeps_only_the_biggest_blob() -> None:
    mask = np.zeros((20, 20), dtype=bool)
    mask[1:4, 1:4] = True  # 9 px
    mask[10:16, 10:16] = True  # 36 px
    kept = keep_largest_component(mask)
    assert kept.sum() == 36 and kept[12, 12] and not kept[2, 2]
    assert not keep_largest_component(np.zeros((5, 5), dtype=bool)).any()


def test_tumour_mask_applies_threshold_min_area_and_largest() -> None:
    prob = np.zeros((20, 20), dtype=np.float32)
    prob[1:3, 1:3] = 0.9  # 4 px
    prob[5:8, 5:8] = 0.7  # 9 px
    prob[10:16, 10:16] = 0.6  # 36 px
    prob[18, 18] = 0.4  # under the threshold
    assert tumour_mask(prob).sum() == 49
    assert tumour_mask(prob, min_area=5).sum() == 45
    assert tumour_mask(prob, keep_largest=True).sum() == 36
    assert tumour_mask(prob, threshold=0.65).sum() == 13


def test_validation_picks_largest_component_when_a_distractor_costs_dice(tmp_path) -> None:
    chosen = choose_inference(_loaded(), _val_set(tmp_path, distractor=True), InferenceOptions())
    assert chosen["keep_largest"] is True
    # The model is mirror-symmetric, so TTA cannot beat plain: the simpler setting stays.
    assert chosen["tta"] is False
    scores = chosen["val_dice"]
    assert scores["keep_largest"] > scores["plain"]
    assert scores["keep_largest"] == pytest.approx(1.0, abs=0.02)
    assert chosen["n_val"] == 6


def test_validation_keeps_plain_settings_when_nothing_helps(tmp_path) -> None:
    chosen = choose_inference(_loaded(), _val_set(tmp_path, distractor=False), InferenceOptions())
    assert (chosen["tta"], chosen["keep_largest"]) == (False, False)
    assert len(chosen["val_dice"]) == 4


def test_recipe_can_fix_a_setting_instead_of_choosing(tmp_path) -> None:
    samples = _val_set(tmp_path, distractor=True)
    fixed = choose_inference(_loaded(), samples, InferenceOptions(keep_largest=False))
    assert fixed["keep_largest"] is False
    assert set(fixed["val_dice"]) == {"plain", "tta"}
    both_fixed = choose_inference(
        _loaded(), samples, InferenceOptions(keep_largest=True, tta=False)
    )
    assert both_fixed["chosen_on"] == "recipe" and both_fixed["keep_largest"] is True


def test_predictor_takes_the_model_folders_settings_unless_told_otherwise() -> None:
    loaded = _loaded({"tta": True, "keep_largest": True})
    assert InferenceSettings.of(loaded.info) == InferenceSettings(tta=True, keep_largest=True)
    assert Predictor(loaded).tta is True and Predictor(loaded).keep_largest is True
    assert Predictor(loaded, tta=False).tta is False
    assert Predictor(_loaded()).tta is False and Predictor(_loaded()).keep_largest is False


@pytest.mark.parametrize(
    ("override", "message"),
    [("inference.tta=maybe", "true, false or auto"), ("inference.largest=true", "unknown")],
)
def test_recipe_rejects_bad_inference_settings(override: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        load_recipe("fast-cpu-seg", [override])


def test_a_classifier_recipe_sets_mirror_tta_and_nothing_else() -> None:
    from braintumor.tasks.classification import ClassificationTask

    task = ClassificationTask()
    asked = load_recipe("plain-cpu-4class", ["inference.tta=true"])
    assert task.tune(None, asked, []) == {"tta": True}  # nothing read from validation
    assert task.tune(None, load_recipe("plain-cpu-4class", ["inference.tta=false"]), []) == {}
    assert task.tune(None, load_recipe("plain-cpu-4class"), []) == {}  # auto: off
    with pytest.raises(RecipeError, match="segmenter settings"):
        load_recipe("plain-cpu-4class", ["inference.keep_largest=true"])
