"""The validation Dice a segmenter's checkpoint is chosen by: pooled per patient, not per slice.

The mean of slice Dice scores an empty slice predicted empty as 1 (the empty-mask rule). On
data where most slices show no tumour (LGG stacks: about two-thirds) a network that predicts
nothing then scores well, and the checkpoint chosen by that mean is the one that finds the
least tumour. :class:`VolumeDice` sums the overlap and the predicted and true pixels over all
the validation slices of a patient (its volume Dice, as the test metrics report LGG) and
averages over patients; slices with no patient id are pooled together into one volume. An
empty slice predicted empty adds nothing to a sum, a missed tumour or a false alarm lowers it.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

#: Group index of the validation slices that carry no patient id (pooled together).
NO_GROUP = -1


class VolumeDice(Metric):
    """Mean over patients of the Dice of their pooled validation pixels, per output channel.

    ``update(pred, truth, groups)`` takes binary (B, K, ...) predictions and truths and a (B,)
    tensor of patient indices (:data:`NO_GROUP` for slices without one). A patient (or
    channel) with no truth and no prediction in any slice scores 1, the empty-mask rule for a
    whole volume; the value is the mean over patients and channels.
    """

    full_state_update = False
    # Lists of per-batch tensors (one tensor each after a distributed sync).
    groups: list[torch.Tensor]
    overlap: list[torch.Tensor]
    total: list[torch.Tensor]

    def __init__(self) -> None:
        super().__init__()
        self.add_state("groups", default=[], dist_reduce_fx="cat")
        self.add_state("overlap", default=[], dist_reduce_fx="cat")
        self.add_state("total", default=[], dist_reduce_fx="cat")

    def update(self, pred: torch.Tensor, truth: torch.Tensor, groups: torch.Tensor) -> None:
        """Add a batch: per slice and channel, the overlap and the predicted + true pixels."""
        dims = tuple(range(2, pred.ndim))
        self.groups.append(groups.reshape(-1).long())
        self.overlap.append((pred * truth).sum(dims).float())
        self.total.append((pred.sum(dims) + truth.sum(dims)).float())

    def compute(self) -> torch.Tensor:
        """The mean volume Dice over the patients (and channels) seen since the last reset."""
        groups, overlap, total = (dim_zero_cat(x) for x in (self.groups, self.overlap, self.total))
        ids, index = torch.unique(groups, return_inverse=True)
        shape = (len(ids), overlap.shape[1])
        summed_overlap = overlap.new_zeros(shape).index_add_(0, index, overlap)
        summed_total = total.new_zeros(shape).index_add_(0, index, total)
        dice = torch.where(
            summed_total > 0,
            2 * summed_overlap / summed_total.clamp(min=1),
            torch.ones_like(summed_total),
        )
        return dice.mean()
