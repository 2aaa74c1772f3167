"""What every user error on the command line looks like, for the tests to check."""

from __future__ import annotations

from typer.testing import Result


def assert_one_line_error(result: Result, *fragments: str) -> None:
    """Exit code 2 and exactly one stderr line, ``error: ...`` holding every fragment."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and "Usage" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
