"""Shared test setup: offscreen Qt, the real-data folder, small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before any Qt import anywhere in the suite: there is no screen on CI.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# precision="auto" on a CPU measures bf16 against fp32 and caches the choice per machine; the suite
# runs fp32 so its numbers do not depend on the machine (tests of the choice unset this).
os.environ["MFM_CPU_PRECISION"] = "fp32"

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _private_user_cache(tmp_path_factory):
    """Nothing the suite measures or caches lands in the user's own cache folder."""
    old = os.environ.get("MFM_STUDIO_CACHE_DIR")
    os.environ["MFM_STUDIO_CACHE_DIR"] = str(tmp_path_factory.mktemp("user_cache"))
    yield
    if old is None:
        os.environ.pop("MFM_STUDIO_CACHE_DIR", None)
    else:
        os.environ["MFM_STUDIO_CACHE_DIR"] = old


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
