"""Shared test setup: offscreen Qt, the real-data folder, small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before any Qt import anywhere in the suite: there is no screen on CI.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real CT folder beside the project (../shared/data); skips where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real CT data folder not present at {SHARED_DATA}")
    return SHARED_DATA


def shared_subfolder(name: str) -> Path:
    """One dataset folder under ../shared/data, skipping the test where it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real CT data {name!r} not present at {path}")
    return path


@pytest.fixture
def single_torch_thread():
    """Torch on one thread for the test (``pytestmark = pytest.mark.usefixtures(...)`` in a module)."""
    from torch_threads import one_torch_thread

    with one_torch_thread():
        yield
