"""Leave one source out for a 2D segmenter, for real on phantoms: each held-out source gets
Dice and IoU per slice with intervals, the mean and worst source, and a report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from braintumor.cli.main import app
from braintumor.data.synthetic import write_segmentation_dataset

pytestmark = pytest.mark.slow
runner = CliRunner()


def test_segmenter_loso_runs_end_to_end_and_learns(tmp_path: Path) -> None:
    first = write_segmentation_dataset(tmp_path / "first", n=120, seed=1)
    second = write_segmentation_dataset(tmp_path / "second", n=40, seed=2)
    run_dir = tmp_path / "loso"
    args = ["train", "fast-cpu-seg", "--data", f"first={first}", "--data", f"second={second}"]
    args += ["--protocol", "loso", "--test-source", "second", "--run-dir", str(run_dir)]
    for item in ("image_size=96", "max_epochs=40", "max_minutes=null", "compile=false"):
        args += ["--set", item]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "second (held out, n=40) dice=" in result.output
    summary = json.loads((run_dir / "loso.json").read_text())
    assert summary["task"] == "segment"
    (fold,) = summary["folds"]
    figures = fold["metrics"]["second"]
    assert figures["n"] == 40 and figures["dice"] >= 0.6, figures  # it learned
    low, high = figures["ci95"]["dice"]
    assert low <= figures["dice"] <= high
    assert summary["summary"]["dice"]["worst_source"] == "second"
    assert "Per held-out source" in (run_dir / "report.html").read_text()
