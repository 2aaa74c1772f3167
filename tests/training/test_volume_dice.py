"""The validation monitor of the 2D segmenters: per-patient pooled Dice, not a slice mean."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from braintumor.data.samples import Sample
from braintumor.training.datamodule import group_indices
from braintumor.training.volume_dice import NO_GROUP, VolumeDice


def _slices(*filled: int, side: int = 4) -> torch.Tensor:
    """(B, 1, side, side) binary masks with the first ``filled[i]`` pixels of slice i set."""
    masks = torch.zeros(len(filled), 1, side * side)
    for i, n in enumerate(filled):
        masks[i, 0, :n] = 1
    return masks.reshape(len(filled), 1, side, side)


def test_empty_predictions_on_empty_slices_do_not_raise_the_score() -> None:
    truth = _slices(8, 0, 0, 0)  # one tumour slice, three empty ones, one patient
    nothing = _slices(0, 0, 0, 0)
    groups = torch.zeros(4, dtype=torch.long)
    metric = VolumeDice()
    metric.update(nothing, truth, groups)
    assert metric.compute().item() == pytest.approx(0.0)  # the slice mean would be 0.75
    metric.reset()
    metric.update(truth, truth, groups)
    assert metric.compute().item() == pytest.approx(1.0)


def test_pixels_pool_per_patient_and_patients_average() -> None:
    truth = _slices(8, 8, 4, 0)
    pred = _slices(8, 0, 4, 2)
    metric = VolumeDice()
    # Patient 0: slices 0 and 1 (overlap 8 of 8 + 16); patient 1: slices 2 and 3.
    metric.update(pred[:3], truth[:3], torch.tensor([0, 0, 1]))  # two batches, one patient split
    metric.update(pred[3:], truth[3:], torch.tensor([1]))
    first, second = 2 * 8 / (8 + 16), 2 * 4 / (6 + 4)
    assert metric.compute().item() == pytest.approx((first + second) / 2)


def test_slices_without_a_patient_pool_together_and_an_empty_patient_scores_one() -> None:
    truth, pred = _slices(4, 0, 0), _slices(2, 0, 0)
    metric = VolumeDice()
    metric.update(pred, truth, torch.tensor([NO_GROUP, NO_GROUP, 5]))
    assert metric.compute().item() == pytest.approx((2 * 2 / 6 + 1.0) / 2)


def test_group_indices_number_patients_in_order_and_mark_missing_ones() -> None:
    samples = [
        Sample(id=str(i), image=f"{i}.png", group=g) for i, g in enumerate(["b", "a", None, "b"])
    ]
    assert group_indices(samples).tolist() == [0, 1, NO_GROUP, 0]
    assert group_indices(samples).dtype == np.int64
