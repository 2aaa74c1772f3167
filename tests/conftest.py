"""Shared fixtures: where the shared real data lives, and a skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """``$BRAINTUMOR_SHARED_DATA`` or ``../shared/data`` beside the repository."""
    env = os.environ.get("BRAINTUMOR_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public datasets; tests that need them skip with a reason when absent."""
    root = shared_data_root()
    if not root.is_dir():
        pytest.skip(f"real-data test: {root} is absent (set BRAINTUMOR_SHARED_DATA)")
    return root


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses ``shared_data`` as ``realdata``, so ``-m "not realdata"``
    (``make test-fast``) never depends on a test's author remembering the marker."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.realdata)
