"""``braintumor data`` commands on small synthetic datasets, and the user-error exit path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from braintumor.cli.data import data_app
from braintumor.data.splits import read_splits

runner = CliRunner()


@pytest.fixture(scope="module")
def classify_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "classify"
    result = runner.invoke(
        data_app,
        ["synth", str(out), "--task", "classify", "--n", "12", "--size", "64", "--seed", "3"],
    )
    assert result.exit_code == 0, result.output
    assert "wrote a synthetic classify dataset" in result.stdout
    return out


def test_info(classify_set: Path) -> None:
    result = runner.invoke(data_app, ["info", str(classify_set)])
    assert result.exit_code == 0, result.output
    assert "class-folders" in result.stdout and "classify" in result.stdout
    assert "48" in result.stdout  # 4 classes x 12 images in the total column


def test_audit_writes_reports(classify_set: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        data_app,
        [
            "audit",
            str(classify_set),
            "--json",
            str(tmp_path / "a.json"),
            "--html",
            str(tmp_path / "a.html"),
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "duplicate groups" in result.stdout
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["n_samples"] == 48
    assert report["layout"] == "class-folders"
    assert sum(report["counts"]["all"].values()) == 48
    assert "<table>" in (tmp_path / "a.html").read_text()


def test_split_fractions_and_folds(classify_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "splits.csv"
    result = runner.invoke(
        data_app,
        [
            "split",
            str(classify_set),
            "--out",
            str(out),
            "--fractions",
            "0.6,0.2,0.2",
            "--seed",
            "1",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "groups for 48 samples" in result.stdout
    table = read_splits(out)
    assert table.column == "split" and len(table.assignment) == 48
    assert set(table.assignment.values()) == {"train", "val", "test"}
    folds = tmp_path / "folds.csv"
    result = runner.invoke(
        data_app,
        ["split", str(classify_set), "--out", str(folds), "--folds", "4", "--workers", "1"],
    )
    assert result.exit_code == 0, result.output
    assert sorted(set(read_splits(folds).assignment.values())) == ["0", "1", "2", "3"]


def test_split_respect_given_test_without_one_is_a_user_error(
    classify_set: Path, tmp_path: Path
) -> None:
    result = runner.invoke(
        data_app,
        [
            "split",
            str(classify_set),
            "--out",
            str(tmp_path / "s.csv"),
            "--respect-given-test",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 2
    assert "no test split" in result.stderr
    assert not (tmp_path / "s.csv").exists()


def test_segment_synth_audit_has_no_mask_problems(tmp_path: Path) -> None:
    out = tmp_path / "seg"
    assert (
        runner.invoke(
            data_app, ["synth", str(out), "--task", "segment", "--n", "8", "--size", "64"]
        ).exit_code
        == 0
    )
    result = runner.invoke(
        data_app, ["audit", str(out), "--json", str(tmp_path / "s.json"), "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "s.json").read_text())
    assert report["n_samples"] == 8 and report["mask_problems"] == []


@pytest.mark.parametrize("command", ["info", "audit"])
def test_empty_folder_is_one_line_error(command: str, tmp_path: Path) -> None:
    result = runner.invoke(data_app, [command, str(tmp_path)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_bad_fractions_and_task_are_user_errors(classify_set: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        data_app,
        [
            "split",
            str(classify_set),
            "--out",
            str(tmp_path / "x"),
            "--fractions",
            "0.7,0.3",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 2 and "--fractions" in result.stderr
    result = runner.invoke(data_app, ["synth", str(tmp_path / "y"), "--task", "nope"])
    assert result.exit_code == 2 and "unknown synthetic task" in result.stderr
