"""Multi-source training for real on phantoms that differ by source: leave-one-source-out runs
end to end from the command line, and pooling sources beats one source on a shifted one."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from braintumor.cli.main import app
from braintumor.config import load_recipe
from braintumor.data.synth_sources import write_source_shift_datasets
from braintumor.protocols.loso import run_loso

pytestmark = pytest.mark.slow
runner = CliRunner()
# Small and epoch-bound (not time-bound), so the result does not depend on the machine's load.
OVERRIDES = [
    "image_size=64",
    "max_minutes=10",
    "max_epochs=12",
    "batch_size=16",
    "model_args.layers=[1,1,1,1]",
    "augment.rotate=0",
]


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A reference source and two sources rendered darker (gamma, window, bias, noise)."""
    return write_source_shift_datasets(
        tmp_path_factory.mktemp("shift"),
        ["reference", "dark", "dark"],
        n_per_class=60,
        size=64,
        seed=0,
        kinds=("glioma", "no_tumor"),
    )


@pytest.fixture(scope="module")
def multi_run(shifted: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    ref, dark1, dark2 = shifted
    run_dir = tmp_path_factory.mktemp("runs") / "multi"
    args = ["train", "plain-cpu-binary", "--data", f"ref={ref}", "--data", f"dark1={dark1}"]
    args += ["--data", f"dark2={dark2}", "--protocol", "loso", "--test-source", "dark2"]
    args += ["--run-dir", str(run_dir), "--adapt-bn"]
    for item in OVERRIDES:
        args += ["--set", item]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "dark2 (held out, n=120)" in result.output
    assert "dark2 (held out, batch norm adapted, n=120)" in result.output
    return run_dir


def _tumour_probs(evaluation: Path) -> dict[str, float]:
    with (evaluation / "predictions.csv").open() as handle:
        return {row["id"]: float(row["prob_tumor"]) for row in csv.DictReader(handle)}


def test_loso_runs_end_to_end(multi_run: Path) -> None:
    summary = json.loads((multi_run / "loso.json").read_text())
    (fold,) = summary["folds"]
    assert fold["test_sources"] == ["dark2"] and fold["n_test"] == 120
    metrics = fold["metrics"]["dark2"]
    assert set(metrics["ci95"]) >= {"balanced_accuracy", "tumor_auc", "sensitivity"}
    assert summary["summary"]["balanced_accuracy"]["worst_source"] == "dark2"
    assert "Per source" in (multi_run / "report.html").read_text()
    adapted = fold["metrics_adapted"]["dark2"]
    assert adapted["n"] == 120 and fold["adapt_bn"]["images"] == {"dark2": 120}
    fold_dir = multi_run / "test-dark2"
    plain, shifted = _tumour_probs(fold_dir / "test"), _tumour_probs(fold_dir / "test-adapted")
    assert max(abs(plain[i] - shifted[i]) for i in plain) > 1e-3
    assert summary["summary_adapted"]["balanced_accuracy"]["worst_source"] == "dark2"
    assert "batch norm adapted" in (multi_run / "report.html").read_text()
    model = json.loads((multi_run / "test-dark2" / "model" / "model.json").read_text())
    assert model["class_names"] == ["no_tumor", "tumor"]
    sampling = model["data_fingerprint"]["sampling"]
    assert sampling["mode"] == "source x class balanced"
    assert set(sampling["counts"]) == {"ref", "dark1"}


def test_pooled_sources_beat_one_source_on_the_shifted_one(
    multi_run: Path, shifted: list[Path], tmp_path: Path
) -> None:
    ref, _, dark2 = shifted
    # The plain recipe, here and in the fixture: the sources differ in contrast, bias field and
    # noise, which the default recipe's invariance options already remove from one source,
    # leaving pooling little to show.
    recipe = load_recipe("plain-cpu-binary", OVERRIDES)
    single = run_loso(
        recipe, [f"ref={ref}", f"dark2={dark2}"], tmp_path / "single", ["dark2"], progress=False
    )
    multi = json.loads((multi_run / "loso.json").read_text())
    pooled = multi["folds"][0]["metrics"]["dark2"]
    alone = single["folds"][0]["metrics"]["dark2"]
    # Measured on a 2-core CPU with one and two threads: pooled 0.83-0.87 balanced accuracy
    # (AUC 0.91-0.93), alone 0.51 (0.56-0.58). With 8 epochs pooled was 0.65-0.73 (AUC
    # 0.73-0.84), too near these bounds.
    assert pooled["tumor_auc"] >= 0.75, pooled
    assert pooled["balanced_accuracy"] >= alone["balanced_accuracy"] + 0.15, (pooled, alone)


def test_evaluate_reports_each_source(multi_run: Path, shifted: list[Path], tmp_path: Path) -> None:
    ref, _, dark2 = shifted
    out = tmp_path / "eval"
    args = ["evaluate", str(multi_run / "test-dark2" / "model"), f"ref={ref}", f"dark2={dark2}"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "per source" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["per_source"]) == {"ref", "dark2"}
    assert metrics["per_source"]["ref"]["n"] == 120
    assert "Per source" in (out / "report.html").read_text()
