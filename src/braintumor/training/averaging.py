"""Weights averaged over the last epochs of training (an exponential moving average).

Averaging the weights along the training trajectory lands in a flatter region of the loss,
which is what carries over to images from unseen sources (Izmailov et al., UAI 2018; Cha et
al., "SWAD", NeurIPS 2021). Lightning's :class:`WeightAveraging` callback keeps the average,
validates with it, writes it into every checkpoint's ``state_dict`` (the current weights go to
``current_model_state``, so a resumed run continues both) and leaves it in the model when
training ends. Two things are added here:

- The horizon is given in epochs, not as a per-step decay: an epoch is 60 steps on LGG and 300
  on pooled sources, and a decay that suits one averages nothing, or the untrained start, on
  the other.
- Batch-norm statistics are re-estimated for the averaged weights before each validation, on
  the most recent training batches (as SWA's ``update_bn`` does on a whole epoch). Averaging
  the running statistics along with the weights, as Lightning does by default, gives
  statistics of no network in particular: measured on a held-out-sartaj fold, the averaged
  network then answered one class for its first five epochs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, cast

import lightning as L
import torch
from lightning.pytorch.callbacks import WeightAveraging
from torch.optim.swa_utils import update_bn

#: A training batch as the data modules give it (image, label or mask tensors).
Batch = dict[str, torch.Tensor]

#: Training images kept for re-estimating batch-norm statistics, and the memory they may take
#: (3D patches are large: the byte cap binds first there).
BN_SAMPLES = 512
BN_BYTES = 256 * 2**20


def ema_decay(epochs: float, steps_per_epoch: int) -> float:
    """Per-step decay whose averaging horizon (1 / (1 - decay) steps) is ``epochs`` epochs."""
    if epochs <= 0:
        raise ValueError(f"the averaging horizon must be positive, not {epochs!r} epochs")
    return 1.0 - 1.0 / max(1.0, epochs * max(1, steps_per_epoch))


class EmaOverEpochs(WeightAveraging):
    """Exponential moving average of the weights with a horizon of ``epochs`` epochs, updated
    after every optimiser step; batch-norm statistics recomputed for it before validation."""

    def __init__(self, epochs: float) -> None:
        super().__init__(use_buffers=False, avg_fn=self._average)
        self.epochs = epochs
        self.decay = ema_decay(epochs, 1)  # set from the real epoch length when training starts
        self._recent: deque[Batch] = deque()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        steps = int(trainer.num_training_batches) // max(1, trainer.accumulate_grad_batches)
        self.decay = ema_decay(self.epochs, steps)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self._keep(batch)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_epoch_start(trainer, pl_module)  # the average is now in pl_module
        if self._average_model is not None and self._recent:
            self._reestimate_batch_norm(trainer, pl_module)

    def _keep(self, batch: Batch) -> None:
        tensors = {k: v.detach().clone() for k, v in batch.items() if isinstance(v, torch.Tensor)}
        self._recent.append(tensors)
        while len(self._recent) > 1 and (
            _samples(self._recent) - _samples([self._recent[0]]) >= BN_SAMPLES
            or _bytes(self._recent) > BN_BYTES
        ):
            self._recent.popleft()

    def _reestimate_batch_norm(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        network = pl_module.model
        assert isinstance(network, torch.nn.Module)  # every recipe module keeps its network here
        inputs_of = cast(Callable[[Batch], torch.Tensor], pl_module.training_inputs)
        # Eager: a compiled network would compile once more for no-grad training mode.
        eager = torch.compiler.set_stance("force_eager")
        with torch.no_grad(), trainer.precision_plugin.forward_context(), eager:
            update_bn((inputs_of(b) for b in self._recent), network)

    def _average(
        self, averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor
    ) -> torch.Tensor:
        return torch.lerp(current, averaged, self.decay)


def _samples(batches: Any) -> int:
    return sum(len(batch["image"]) for batch in batches)


def _bytes(batches: Any) -> int:
    return sum(t.numel() * t.element_size() for batch in batches for t in batch.values())
