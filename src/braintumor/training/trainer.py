"""Lightning Trainer set-up: precision, callbacks, loggers, resume, devices."""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import shutil
import sys
import sysconfig
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    RichProgressBar,
)
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from braintumor.config import Recipe
from braintumor.inference.precision import bf16_pays
from braintumor.runfolder import RunFolder
from braintumor.training.averaging import EmaOverEpochs
from braintumor.training.elapsed import ElapsedMinutes
from braintumor.training.interrupt import GracefulStop


def resolve_precision(recipe: Recipe, accelerator: str) -> str:
    """``auto``: bf16/fp16 AMP on a GPU, bf16 autocast on a CPU where it pays
    (:func:`~braintumor.inference.precision.bf16_pays`), else fp32."""
    if recipe.precision != "auto":
        return recipe.precision
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if bf16_pays() else "32-true"


#: The time budget (minutes) from which ``compile: auto`` compiles. Measured for fast-cpu-seg
#: on 2 cores with a cold inductor cache: compiling the training graph takes 41 s and the
#: validation graph 15 s; steps then run about 15% faster (128 px), which pays back after
#: about 7 minutes, so 10 leaves a margin for slower compiles.
AUTO_COMPILE_MINUTES = 10.0


def inductor_available(accelerator: str) -> bool:
    """Whether torch.compile's inductor backend can build kernels for ``accelerator`` here:
    Triton for a CUDA GPU; for the CPU, a C++ compiler on PATH and the Python headers; not
    on Apple GPUs (MPS) or Windows."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return importlib.util.find_spec("triton") is not None
    on_mps = accelerator == "mps" or (accelerator in ("auto", "gpu") and _mps_available())
    if on_mps or sys.platform == "win32":  # inductor's support there is experimental
        return False
    compilers = [c for c in (os.environ.get("CXX"), "c++", "g++", "clang++") if c]
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    return any(shutil.which(c) for c in compilers) and headers.is_file()


def _mps_available() -> bool:
    return torch.backends.mps.is_available()


def resolve_compile(recipe: Recipe, accelerator: str) -> bool:
    """The recipe's ``compile`` as a decision: ``auto`` compiles a run whose ``max_minutes``
    budget is at least :data:`AUTO_COMPILE_MINUTES` when inductor is available."""
    if recipe.compile != "auto":
        return bool(recipe.compile)
    budget = recipe.max_minutes
    long_run = budget is not None and budget >= AUTO_COMPILE_MINUTES
    return long_run and inductor_available(accelerator)


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest resume file of a run, if any."""
    path = RunFolder(run_dir).last_checkpoint
    return path if path.is_file() else None


def build_trainer(
    recipe: Recipe,
    run_dir: Path,
    devices: Any = "auto",
    nodes: int = 1,
    accelerator: str = "auto",
    strategy: str = "auto",
    progress: bool = True,
    started: float | None = None,
) -> tuple[L.Trainer, ModelCheckpoint]:
    """A Trainer wired to the run folder: best + last checkpoints, CSV and TensorBoard logs.

    The last checkpoint (the resume file) has its own callback that saves after every epoch:
    Lightning's ``save_last`` writes it only when the best checkpoint improved, so a resume
    would repeat the epochs trained since the best one. ``started`` (a :func:`time.monotonic`
    reading) is when the run began, for the ``time/minutes`` column; default: now.
    """
    folder = RunFolder(run_dir)
    best = ModelCheckpoint(
        dirpath=folder.checkpoints,
        filename="best",
        monitor=recipe.monitor,
        mode=recipe.monitor_mode,
        save_top_k=1,
        enable_version_counter=False,
    )
    last = ModelCheckpoint(
        dirpath=folder.checkpoints,
        filename=folder.last_checkpoint.stem,
        monitor=None,  # no metric: the newest epoch replaces the previous one
        save_top_k=1,
        enable_version_counter=False,
    )
    callbacks: list[Any] = [
        best,
        last,
        LearningRateMonitor(logging_interval="epoch"),
        GracefulStop(),
        ElapsedMinutes(started),
    ]
    if recipe.early_stopping_patience:
        callbacks.append(
            EarlyStopping(
                monitor=recipe.monitor,
                mode=recipe.monitor_mode,
                patience=recipe.early_stopping_patience,
            )
        )
    if recipe.ema_epochs:
        callbacks.append(EmaOverEpochs(recipe.ema_epochs))
    if progress:
        callbacks.append(RichProgressBar(leave=True))
    loggers = [
        _csv_logger_keeping_history(run_dir),
        TensorBoardLogger(
            run_dir, name=RunFolder(run_dir).tensorboard.name, version="", default_hp_metric=False
        ),
    ]
    if strategy == "auto" and _device_count(devices, accelerator) * nodes > 1:
        strategy = "ddp"
    max_time = timedelta(minutes=recipe.max_minutes) if recipe.max_minutes else None
    trainer = L.Trainer(
        default_root_dir=run_dir,
        accelerator=accelerator,
        devices=devices,
        num_nodes=nodes,
        strategy=strategy,
        precision=resolve_precision(recipe, accelerator),
        max_epochs=recipe.max_epochs,
        max_time=max_time,
        callbacks=callbacks,
        logger=loggers,
        log_every_n_steps=5,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    return trainer, best


def _csv_logger_keeping_history(run_dir: Path) -> CSVLogger:
    """A CSV logger that appends to an earlier ``metrics.csv`` (a resumed run's history).

    Lightning's CSV writer deletes an existing metrics file when it starts; the old rows are
    put back right after, and the writer is told the old header so that its first save
    (which may carry fewer columns) appends or widens the file instead of failing. Flushed
    at every log call, so a killed run keeps its curves up to the kill.
    """
    run = RunFolder(run_dir)
    logger = CSVLogger(run_dir, name=run.logs.name, version="", flush_logs_every_n_steps=1)
    metrics_file = run.metrics_csv
    history = metrics_file.read_text() if metrics_file.is_file() else ""
    header = next(csv.reader(io.StringIO(history)), [])
    writer = logger.experiment  # creating the writer deletes the file
    if header:
        metrics_file.write_text(history)
        writer.metrics_keys = header  # same column order as the file it appends to
    return logger


def _device_count(devices: Any, accelerator: str) -> int:
    if isinstance(devices, int):
        return devices
    if isinstance(devices, str) and devices.isdigit():
        return int(devices)
    if isinstance(devices, list | tuple):
        return len(devices)
    return 1 if accelerator == "cpu" or not torch.cuda.is_available() else torch.cuda.device_count()


def fit(
    recipe: Recipe,
    module: L.LightningModule,
    datamodule: L.LightningDataModule,
    run_dir: Path,
    resume: bool = False,
    devices: Any = "auto",
    nodes: int = 1,
    accelerator: str = "auto",
    progress: bool = True,
    started: float | None = None,
) -> tuple[L.Trainer, Path | None]:
    """Train (or resume) and return the trainer and the best checkpoint path; ``started``:
    see :func:`build_trainer`."""
    L.seed_everything(recipe.seed, workers=True, verbose=False)
    os.environ.setdefault("TORCH_DISTRIBUTED_DEBUG", "OFF")
    trainer, best = build_trainer(
        recipe, run_dir, devices, nodes, accelerator, progress=progress, started=started
    )
    ckpt = last_checkpoint(run_dir) if resume else None
    # Resume files are plain tensors and primitives: never unpickle code from them.
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
    best_path = Path(best.best_model_path) if best.best_model_path else last_checkpoint(run_dir)
    return trainer, best_path


def load_best_weights(module: L.LightningModule, checkpoint: Path) -> None:
    """Load a checkpoint's state dict into ``module`` without unpickling objects."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    module.load_state_dict(state["state_dict"])
