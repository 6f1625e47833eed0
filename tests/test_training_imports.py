"""DESIGN.md's import contract for training: it uses the engine only, never the viewer or Qt."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import training

FORBIDDEN = ("PySide6", "pyqtgraph", "vtk", "mfm_viewer")


def test_training_imports_no_viewer_or_qt():
    modules = [
        m.name
        for m in pkgutil.walk_packages(training.__path__, "training.")
        if not m.name.endswith("__main__")
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "import training.__main__\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"training pulled in: {out.stdout.strip()}"
    assert len(modules) >= 10


def test_cli_help_lists_every_command():
    out = subprocess.run(
        [sys.executable, "-m", "training", "--help"], capture_output=True, text=True, check=True
    )
    for cmd in ("prepare", "phantom-data", "fit", "evaluate", "demo-report"):
        assert cmd in out.stdout
