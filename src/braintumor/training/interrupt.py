"""Stop a training run cleanly on SIGTERM or Ctrl-C, and say how to resume it.

The first signal asks Lightning to stop after the running batch (as early stopping does):
the cut-short epoch is validated and ``last.ckpt`` is saved (unless no batch of it had run:
the previous epoch's checkpoint stands), then :func:`raise_if_interrupted` raises
:class:`TrainingInterrupted`. A second signal ends the process at once.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving its last checkpoint."""

    def __init__(self, signum: int, run_dir: Path, saved_epoch: int | None) -> None:
        self.signum = signum
        self.run_dir = run_dir
        #: the folder ``--resume --run-dir`` takes (an ensemble's, when a member stopped)
        self.resume_dir = run_dir
        #: the epoch the last checkpoint holds (None: stopped before the first one)
        self.saved_epoch = saved_epoch
        #: the shell convention for a process ended by a signal (130 Ctrl-C, 143 SIGTERM)
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        saved = "no checkpoint yet" if saved_epoch is None else f"saved after epoch {saved_epoch}"
        super().__init__(f"{name}: training stopped, {saved}")


class GracefulStop(Callback):
    """Turn the first SIGINT/SIGTERM during training into ``trainer.should_stop``."""

    def __init__(self) -> None:
        self.signum: int | None = None
        #: the epoch of the newest checkpoint the trainer wrote
        self.saved_epoch: int | None = None
        self._trainer: L.Trainer | None = None
        self._previous: dict[int, Any] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Under DDP the ranks must stop together; Lightning's own SIGTERM handling does that.
        if trainer.world_size > 1 or threading.current_thread() is not threading.main_thread():
            return
        self._trainer = trainer
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # asked twice: stop now, without saving
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        if self._trainer is not None:
            self._trainer.should_stop = True
        sys.stderr.write(
            f"\n{signal.Signals(signum).name}: stopping after this batch and saving the last "
            "checkpoint (signal again to stop at once)\n"
        )

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self.saved_epoch = int(checkpoint["epoch"])

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore()


def raise_if_interrupted(trainer: L.Trainer, run_dir: Path) -> None:
    """Raise :class:`TrainingInterrupted` when a signal cut the run short."""
    stop = next((c for c in trainer.callbacks if isinstance(c, GracefulStop)), None)
    if stop is not None and stop.signum is not None:
        raise TrainingInterrupted(stop.signum, run_dir, stop.saved_epoch)


def resume_command(argv: list[str], run_dir: Path) -> str:
    """The ``braintumor train`` command line of ``argv`` (without the program name) that
    resumes the run in ``run_dir``: ``--resume --run-dir`` replace any given before."""
    args: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--run-dir":
            skip = True
        elif arg.startswith("--run-dir=") or arg in ("--resume", "--no-resume"):
            continue
        else:
            args.append(arg)
    return shlex.join(["braintumor", *args, "--resume", "--run-dir", str(run_dir)])
