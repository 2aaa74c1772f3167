"""A real (tiny) training run stopped by SIGTERM or Ctrl-C: exit 143/130, the last checkpoint
saved, the exact resume command printed, and that command continuing after the saved epoch."""

from __future__ import annotations

import csv
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from braintumor.config import load_recipe
from braintumor.data.synthetic import write_synthetic_dataset
from braintumor.models.folder import load_model_dir
from braintumor.training.run import train_run

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "braintumor.cli"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("cls"), "classify", n=8, size=32)


def _val_epochs(run_dir: Path) -> list[int]:
    with open(run_dir / "logs" / "metrics.csv") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle) if row.get("val/loss")]


def _start_and_stop(data: Path, run_dir: Path, signum: int) -> subprocess.CompletedProcess:
    """Start a run, send ``signum`` once its first checkpoint exists, and wait for it."""
    args = [
        "train", "fast-cpu-4class", "--data", str(data), "--run-dir", str(run_dir),
        "--set", "image_size=32", "--set", "batch_size=4", "--set", "max_epochs=3",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert last.exists(), "no checkpoint was written before the deadline"
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_sigterm_saves_prints_the_resume_command_and_resume_continues(data, tmp_path) -> None:
    run_dir = tmp_path / "run"
    stopped = _start_and_stop(data, run_dir, signal.SIGTERM)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr
    assert not (run_dir / "model").exists()  # stopped: no model, no test evaluation
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"]
    assert f"training stopped, saved after epoch {saved}" in stopped.stderr
    line = next(x for x in stopped.stderr.splitlines() if x.startswith("resume with: "))
    command = shlex.split(line.removeprefix("resume with: "))
    assert command[:2] == ["braintumor", "train"]
    assert command[-3:] == ["--resume", "--run-dir", str(run_dir)]
    before = _val_epochs(run_dir)
    # Up to the saved epoch; the next one too when the signal came before its first batch
    # (it was validated, but the saved epoch's checkpoint stands).
    assert sorted(set(before)) in (list(range(saved + 1)), list(range(saved + 2))), before

    resumed = subprocess.run(
        [*CLI, *command[1:]], capture_output=True, text=True, timeout=600, check=False
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = _val_epochs(run_dir)[len(before) :]
    assert after == list(range(saved + 1, 3)), (saved, before, after)  # on from the saved epoch
    assert load_model_dir(run_dir / "model").info.task == "classify"


def test_last_checkpoint_is_the_newest_epoch_when_the_best_does_not_improve(data, tmp_path):
    # Monitoring the epoch number for its minimum: the best checkpoint stays epoch 0.
    overrides = ["image_size=32", "batch_size=4", "max_epochs=3", "monitor=epoch"]
    recipe = load_recipe("fast-cpu-4class", [*overrides, "monitor_mode=min"])
    result = train_run(recipe, data, tmp_path / "run", progress=False)
    checkpoints = result.run_dir / "checkpoints"
    assert torch.load(checkpoints / "best.ckpt", weights_only=True)["epoch"] == 0
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["epoch"] == 2


def test_ctrl_c_exits_130_with_the_checkpoint_saved(data, tmp_path) -> None:
    run_dir = tmp_path / "run"
    stopped = _start_and_stop(data, run_dir, signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr and "KeyboardInterrupt" not in stopped.stderr
    assert "interrupted (SIGINT" in stopped.stderr
    assert f"--resume --run-dir {run_dir}" in stopped.stderr
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["epoch"] >= 0 and "state_dict" in state
