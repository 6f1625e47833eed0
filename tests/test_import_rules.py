"""DESIGN.md's import contract: the engine never pulls in Qt, vtk, the viewer or training."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import mfm_engine

FORBIDDEN = ("PySide6", "pyqtgraph", "vtk", "mfm_viewer", "training")


def test_engine_imports_no_gui_or_training():
    modules = [
        m.name
        for m in pkgutil.walk_packages(mfm_engine.__path__, "mfm_engine.")
        if not m.name.endswith("__main__")  # importing it would run the CLI
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"mfm_engine pulled in: {out.stdout.strip()}"
    assert len(modules) > 3
