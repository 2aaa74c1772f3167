"""The README's quickstart, run command by command as written, so that it cannot drift.

The only changes: its example data paths (``~/data/...``, ``scans/``) become synthetic
datasets made by ``braintumor data synth``, and ``train`` gets ``--set max_epochs=2`` so that
the test takes seconds instead of the recipe's 20 minutes.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from braintumor.cli.main import app
from conftest import REPO_ROOT

runner = CliRunner()
SECTION = "## Quickstart on your own data"


def quickstart_commands(readme: Path = REPO_ROOT / "README.md") -> list[list[str]]:
    """The ``braintumor`` commands of the quickstart's first code block, as argument lists."""
    text = readme.read_text()
    assert SECTION in text, f"README.md has no {SECTION!r} section"
    block = re.search(r"```bash\n(.*?)```", text[text.index(SECTION) :], re.DOTALL)
    assert block is not None, "the quickstart has no bash code block"
    commands = []
    for line in block.group(1).splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "braintumor":
            commands.append(words[1:])
    return commands


def _synth(folder: Path, seed: int) -> Path:
    args = ["data", "synth", str(folder), "--task", "classify", "--n", "8", "--size", "64"]
    done = runner.invoke(app, [*args, "--seed", str(seed)])
    assert done.exit_code == 0, done.output
    return folder


@pytest.mark.slow
def test_every_quickstart_command_runs_as_written(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    paths = {
        "~/data/brain-tumor-mri": str(_synth(tmp_path / "mri", seed=1)),
        "~/data/other-dataset": str(_synth(tmp_path / "other", seed=2)),
    }
    scans = Path("scans")
    scans.mkdir()
    for image in sorted(Path(paths["~/data/other-dataset"], "glioma").iterdir())[:3]:
        shutil.copy(image, scans / image.name)
    commands = quickstart_commands()
    assert [c[0] for c in commands] == ["data", "data", "recipes", "train", "evaluate", "predict"]
    for command in commands:
        args = [paths.get(word, word) for word in command]
        assert not [a for a in args if a.startswith("~")], f"unknown example path in {command}"
        if args[0] == "train":
            args += ["--set", "max_epochs=2"]
        done = runner.invoke(app, args)
        assert done.exit_code == 0, (command, done.output, done.exception)
    assert Path("audit.html").is_file()
    assert Path("runs/mri/model/model.json").is_file()
    assert Path("eval-other/metrics.json").is_file()
    assert Path("preds/predictions.csv").read_text().count("\n") == 4  # header + 3 scans
