"""``train --members K``: K seeds of a recipe on one split, shipped as one ensemble folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from braintumor.cli.main import app
from braintumor.data.synthetic import write_synthetic_dataset
from braintumor.models.ensemble import Ensemble
from braintumor.models.folder import load_model_dir
from cli_support import assert_one_line_error

pytestmark = pytest.mark.slow
runner = CliRunner()
SETTINGS = ["image_size=64", "max_epochs=40", "max_minutes=null", "compile=false"]


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("seg"), "segment", n=120, seed=3)


def _train(data: Path, run: Path, *extra: str):
    args = ["train", "fast-cpu-seg", "--data", str(data), "--run-dir", str(run)]
    for setting in SETTINGS:
        args += ["--set", setting]
    return runner.invoke(app, [*args, "--members", "2", *extra])


def test_two_members_share_one_split_and_their_ensemble_learns(
    phantoms: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    result = _train(phantoms, run)
    assert result.exit_code == 0, result.output
    splits = (run / "splits.csv").read_text()
    seeds = []
    for k in (1, 2):
        member = run / f"member-{k}"
        assert (member / "splits.csv").read_text() == splits  # one split for both
        seeds.append(yaml.safe_load((member / "recipe.yaml").read_text())["seed"])
    assert seeds[1] == seeds[0] + 1
    loaded = load_model_dir(run / "model")
    assert isinstance(loaded.model, Ensemble) and loaded.info.members == 2
    assert loaded.info.metrics["test_images_trained_on"] == 0
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert test["dice"] >= 0.7, f"ensemble test Dice {test['dice']:.3f} after 40 epochs each"
    assert loaded.info.metrics["test_dice"] == test["dice"]
    assert (run / "report.html").is_file() and (run / "model" / "README.md").is_file()
    # a second call with --resume keeps both finished members and only re-combines, also when
    # given the run's own splits.csv
    again = _train(phantoms, run, "--resume", "--splits", str(run / "splits.csv"))
    assert again.exit_code == 0, again.output
    assert again.output.count("finished before, kept") == 2
    assert (run / "splits.csv").read_text() == splits


def test_members_refuse_a_protocol_and_an_existing_run(phantoms: Path, tmp_path: Path) -> None:
    refused = _train(phantoms, tmp_path / "a", "--protocol", "kfold")
    assert_one_line_error(refused, "--members", "--protocol")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    assert_one_line_error(_train(phantoms, taken), "run folder exists")
    assert (taken / "notes.txt").read_text() == "mine"
