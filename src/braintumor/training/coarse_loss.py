"""The loss of a batch that mixes typed samples with tumours of unknown type.

A typed sample gets the recipe's loss. A coarse one (label :data:`COARSE_INDEX`: a tumour whose
type nobody recorded, :mod:`braintumor.data.coarse_labels`) gets the negative log of the
probability that it is one of the tumour types, the softmax summed over them: the likelihood of
what its label says, the usual treatment of partial labels. No library ships this for a
softmax classifier, so it is written here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

#: The label index of a sample that is one of several classes, type unknown.
COARSE_INDEX = -1


class CoarseLabelLoss(torch.nn.Module):
    """``loss_fn`` on typed rows, -log P(any of ``members``) on rows labelled
    :data:`COARSE_INDEX`; each row weighs the same in the batch mean."""

    members: torch.Tensor  # a registered buffer: it moves with the module

    def __init__(
        self,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        members: Sequence[int],
    ) -> None:
        super().__init__()
        self.loss_fn = loss_fn
        self.register_buffer("members", torch.tensor(list(members), dtype=torch.long))

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        coarse = labels == COARSE_INDEX
        n_coarse = int(coarse.sum())
        if n_coarse == 0:
            return self.loss_fn(logits, labels)
        typed = ~coarse
        n_typed = len(labels) - n_coarse
        log_probs = logits[coarse].float().log_softmax(dim=1)
        total = -log_probs.index_select(1, self.members).logsumexp(dim=1).sum()
        if n_typed:
            total = total + self.loss_fn(logits[typed], labels[typed]) * n_typed
        return total / len(labels)
