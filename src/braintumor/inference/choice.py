"""Inference settings of a segmenter, chosen on the validation split after training.

As nnU-Net does for its post-processing, two cheap test-time choices are decided by the
validation data rather than fixed: averaging with the mirrored image (TTA) and keeping only
the largest connected tumour component (most 2D tumour slices show one tumour). Each is
adopted only when it raises the mean validation Dice; the comparison is written into
``model.json`` (``inference``) so evaluate, predict and serve apply the same settings and a
reader sees why.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from braintumor.data.samples import Sample
from braintumor.errors import DataError, ImageReadError
from braintumor.inference.inputs import read_pair
from braintumor.inference.outputs import tumour_mask
from braintumor.inference.predictor import InferenceSettings, Predictor, model_device
from braintumor.io import LoadedImage
from braintumor.metrics.segmentation import segmentation_scores
from braintumor.models.folder import LoadedModel
from braintumor.recipe_options import AUTO, InferenceOptions


def _val_pairs(samples: list[Sample]) -> tuple[list[LoadedImage], list[np.ndarray]]:
    """Readable images with masks and their binary truths (unreadable ones are skipped)."""
    images, truths = [], []
    for sample in samples:
        if not sample.mask:
            continue
        try:
            image, truth = read_pair(sample)
        except (ImageReadError, DataError):
            continue
        images.append(image)
        truths.append(truth)
    return images, truths


def _mean_dice(probs: list[np.ndarray], truths: list[np.ndarray], keep_largest: bool) -> float:
    scores = [
        segmentation_scores(tumour_mask(p, keep_largest=keep_largest), t)["dice"]
        for p, t in zip(probs, truths, strict=True)
    ]
    return float(np.mean(scores))


def _candidates(inference: InferenceOptions) -> list[InferenceSettings]:
    """Every combination the recipe leaves open, simplest first."""
    options = {
        key: (False, True) if value == AUTO else (value,)
        for key, value in asdict(inference).items()
    }
    return [
        InferenceSettings(tta=tta, keep_largest=largest)
        for tta in options["tta"]
        for largest in options["keep_largest"]
    ]


def score_settings(
    loaded: LoadedModel,
    samples: list[Sample],
    candidates: list[InferenceSettings] | None = None,
    batch_size: int = 32,
) -> dict[str, float]:
    """Mean Dice on ``samples`` (with masks) of each candidate, all four by default, keyed
    ``plain``, ``keep_largest``, ``tta``, ``tta+keep_largest``."""
    candidates = candidates or _candidates(InferenceOptions())
    images, truths = _val_pairs(samples)
    if not images:
        return {}
    device = model_device(loaded)
    probs = {
        tta: Predictor(loaded, device=device, tta=tta, batch_size=batch_size).segment(images)
        for tta in sorted({c.tta for c in candidates})
    }
    return {label(c): _mean_dice(probs[c.tta], truths, c.keep_largest) for c in candidates}


def choose_inference(
    loaded: LoadedModel,
    val_samples: list[Sample],
    inference: InferenceOptions,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Pick the settings ``recipe.inference`` leaves at ``auto`` (the default) by mean
    validation Dice; the others are taken as the recipe fixes them.

    Returns what goes into ``model.json``: the chosen ``tta`` and ``keep_largest``, the mean
    validation Dice of every candidate, and the number of validation samples with a mask.
    Without readable validation images an ``auto`` setting stays off.
    """
    candidates = _candidates(inference)
    scores = (
        score_settings(loaded, val_samples, candidates, batch_size) if len(candidates) > 1 else {}
    )
    if not scores:
        return {**asdict(candidates[0]), "chosen_on": "recipe", "val_dice": {}, "n_val": 0}
    # Candidates are ordered simplest first; a later one must beat it, not tie it.
    best = candidates[0]
    for candidate in candidates[1:]:
        if scores[label(candidate)] > scores[label(best)]:
            best = candidate
    return {
        **asdict(best),
        "chosen_on": "validation mean Dice",
        "val_dice": {name: round(value, 4) for name, value in scores.items()},
        "n_val": sum(1 for s in val_samples if s.mask),
    }


def label(settings: InferenceSettings) -> str:
    """``plain``, ``tta``, ``keep_largest`` or ``tta+keep_largest``."""
    parts = [name for name, on in asdict(settings).items() if on]
    return "+".join(parts) or "plain"
