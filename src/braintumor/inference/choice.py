"""Inference settings of a segmenter, chosen on the validation split after training.

As nnU-Net does for its post-processing, cheap test-time choices are decided by the
validation data rather than fixed: averaging with the mirrored image (TTA), keeping only
the largest connected tumour component (most 2D tumour slices show one tumour) and, when the
validation slices form patient stacks, dropping small 3D components across a stack
(:mod:`.stack_filter`). Each is
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
from braintumor.inference.stack_filter import filter_stacks, stacks_of
from braintumor.io import LoadedImage
from braintumor.metrics.segmentation import segmentation_scores
from braintumor.models.folder import LoadedModel
from braintumor.recipe_options import AUTO, InferenceOptions


def readable_pairs(
    samples: list[Sample],
) -> tuple[list[LoadedImage], list[np.ndarray], list[str]]:
    """Readable images with masks, their binary truths and their paths (unreadable ones are
    skipped)."""
    images, truths, paths = [], [], []
    for sample in samples:
        if not sample.mask:
            continue
        try:
            image, truth = read_pair(sample)
        except (ImageReadError, DataError):
            continue
        images.append(image)
        truths.append(truth)
        paths.append(sample.image)
    return images, truths, paths


def _mean_dice(
    probs: list[np.ndarray],
    truths: list[np.ndarray],
    paths: list[str],
    settings: InferenceSettings,
) -> float:
    masks = [tumour_mask(p, keep_largest=settings.keep_largest) for p in probs]
    if settings.stack_components:
        masks = filter_stacks(masks, paths)
    scores = [segmentation_scores(m, t)["dice"] for m, t in zip(masks, truths, strict=True)]
    return float(np.mean(scores))


def _candidates(inference: InferenceOptions, stacks: bool = False) -> list[InferenceSettings]:
    """Every combination the recipe leaves open, simplest first. The stack rule is a candidate
    only when ``stacks`` (the validation slices form patient stacks): elsewhere it does
    nothing."""
    options = {
        key: (False, True) if value == AUTO else (value,)
        for key, value in asdict(inference).items()
    }
    if not stacks:
        options["stack_components"] = (False,)
    return [
        InferenceSettings(tta=tta, keep_largest=largest, stack_components=stack)
        for tta in options["tta"]
        for largest in options["keep_largest"]
        for stack in options["stack_components"]
    ]


def score_settings(
    loaded: LoadedModel,
    samples: list[Sample],
    candidates: list[InferenceSettings] | None = None,
    batch_size: int = 32,
) -> dict[str, float]:
    """Mean Dice on ``samples`` (with masks) of each candidate, keyed as :func:`label` names
    them (``plain``, ``keep_largest``, ``tta``, ``tta+keep_largest``, and with
    ``+stack_components`` when the samples form stacks). By default every candidate."""
    candidates = candidates or _candidates(InferenceOptions(), has_stacks(samples))
    images, truths, paths = readable_pairs(samples)
    if not images:
        return {}
    device = model_device(loaded)
    probs = {
        tta: Predictor(loaded, device=device, tta=tta, batch_size=batch_size).segment(images)
        for tta in sorted({c.tta for c in candidates})
    }
    return {label(c): _mean_dice(probs[c.tta], truths, paths, c) for c in candidates}


def has_stacks(samples: list[Sample]) -> bool:
    """True when some of ``samples`` are slices of one patient stack (:mod:`.stack_filter`)."""
    return bool(stacks_of([s.image for s in samples if s.mask]))


def choose_inference(
    loaded: LoadedModel,
    val_samples: list[Sample],
    inference: InferenceOptions,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Pick the settings ``recipe.inference`` leaves at ``auto`` (the default) by mean
    validation Dice; the others are taken as the recipe fixes them.

    Returns what goes into ``model.json``: the chosen ``tta``, ``keep_largest`` and
    ``stack_components``, the mean
    validation Dice of every candidate, and the number of validation samples with a mask.
    Without readable validation images an ``auto`` setting stays off.
    """
    candidates = _candidates(inference, has_stacks(val_samples))
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
    """The settings that are on, joined by ``+`` (``tta+keep_largest``), or ``plain``."""
    parts = [name for name, on in asdict(settings).items() if on]
    return "+".join(parts) or "plain"
