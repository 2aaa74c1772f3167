"""One version source: pyproject reads ``braintumor.__version__``, the CLI prints it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import braintumor
from braintumor.cli.main import app

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_reads_the_version_from_the_package():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "braintumor.__version__"}


def test_cli_version_is_the_package_version():
    assert re.fullmatch(r"\d+\.\d+\.\d+(\S*)?", braintumor.__version__)
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == braintumor.__version__
