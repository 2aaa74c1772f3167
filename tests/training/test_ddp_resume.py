"""Through the command line: DDP on the CPU (2 processes, gloo) and resuming a killed run."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from braintumor.data.synthetic import write_synthetic_dataset
from braintumor.models.folder import load_model_dir

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "braintumor.cli"]


def _run(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("cls"), "classify", n=24, size=64)


def test_ddp_on_cpu_with_two_processes_writes_a_normal_model(data, tmp_path) -> None:
    run_dir = tmp_path / "ddp"
    done = _run(
        [
            "train", "fast-cpu-4class", "--data", str(data), "--run-dir", str(run_dir),
            "--devices", "2", "--accelerator", "cpu",
            "--set", "image_size=32", "--set", "max_epochs=1", "--set", "batch_size=8",
        ]
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ddp" in (done.stdout + done.stderr).lower() or "distributed" in done.stderr.lower()
    loaded = load_model_dir(run_dir / "model")
    assert loaded.info.class_names == ["glioma", "meningioma", "no_tumor", "pituitary"]
    assert (run_dir / "report.html").is_file()


def test_run_killed_mid_training_resumes_and_finishes(data, tmp_path) -> None:
    run_dir = tmp_path / "killed"
    args = [
        "train", "fast-cpu-4class", "--data", str(data), "--run-dir", str(run_dir),
        "--set", "image_size=32", "--set", "batch_size=4", "--set", "max_epochs=4",
    ]  # fmt: skip
    process = subprocess.Popen([*CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert last.exists(), "no checkpoint was written before the deadline"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run_dir / "model").exists()  # killed before the end: no half-written model
    done = _run([*args, "--resume"])
    assert done.returncode == 0, done.stderr[-3000:]
    with open(run_dir / "logs" / "metrics.csv") as handle:
        epochs = [int(r["epoch"]) for r in csv.DictReader(handle) if r.get("val/loss")]
    # Resumed after epoch 0 (its checkpoint existed): epochs 1-3 ran once each. The kill may
    # land between the checkpoint and the log line of epoch 0, so that row is not required.
    assert sorted(e for e in epochs if e > 0) == [1, 2, 3]
    assert epochs.count(0) <= 1
    assert load_model_dir(run_dir / "model").info.task == "classify"
