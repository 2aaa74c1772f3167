"""Several trained networks of one kind as one model: their logits averaged (a deep ensemble).

Networks trained with different seeds (and so different training / validation draws) make
different mistakes on a source none of them saw; averaging their answers is the remedy for a
shift that Lakshminarayanan et al. (2017) and Ovadia et al. (2019) found most robust, and what
nnU-Net does with its fold models. The ensemble is one ``nn.Module`` whose output is the mean of
its members' logits, so prediction, evaluation, TTA, export, serving and batch-norm adaptation
treat it as any network. For a softmax the mean of logits is the normalised geometric mean of
the members' probabilities, and it keeps logits meaningful for the energy score.

A model folder holds an ensemble when its ``model.json`` says ``members: K`` (K > 1); the
weights of member ``i`` are stored under ``members.i.``. No library offers a module that
averages the outputs of networks loaded from files of this format, so this small one is
written here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

#: where the first member's modules sit inside an ensemble (its OOD layer, its Grad-CAM layer)
FIRST_MEMBER = "members.0."


class Ensemble(nn.Module):
    """Networks that take the same input; the output is the mean of their logits."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of the members' logits for ``x``."""
        total = self.members[0](x)
        for member in self.members[1:]:
            total = total + member(x)
        return total / len(self.members)


def first_member(net: nn.Module) -> tuple[nn.Module, str]:
    """The network whose layers name an ensemble's features and explanations, and the prefix
    of its module names: the first member for an ensemble, ``net`` itself otherwise."""
    if isinstance(net, Ensemble):
        return net.members[0], FIRST_MEMBER
    return net, ""
