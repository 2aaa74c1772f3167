"""Wall-clock minutes since the run started, logged beside each validation epoch's metrics.

``time/minutes`` in ``logs/metrics.csv`` lets a curve be read against time (how long until a
model is good enough: ``benchmarks/time_to_accuracy.py``) as well as against epochs. The clock
starts when :func:`~braintumor.training.run.train_run` starts, so reading the data, decoding
it into the cache and compiling are counted. Lightning's ``Timer`` callback measures its own
stages only and does not log them, hence this small callback.
"""

from __future__ import annotations

import time

import lightning as L
from lightning.pytorch.callbacks import Callback

ELAPSED_KEY = "time/minutes"


class ElapsedMinutes(Callback):
    """Log the minutes since ``started`` (a :func:`time.monotonic` reading) at the end of
    every validation epoch. A resumed run's clock starts again at its resume."""

    def __init__(self, started: float | None = None) -> None:
        self.started = time.monotonic() if started is None else started

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        minutes = (time.monotonic() - self.started) / 60.0
        pl_module.log(ELAPSED_KEY, minutes, on_epoch=True, sync_dist=False, rank_zero_only=True)
