"""docs/training.md's quick start runs as written: phantom-data → prepare → fit → evaluate."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "training.md"


def _quick_start() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_quick_start_has_the_four_steps():
    cmds = _quick_start()
    assert [shlex.split(c)[3] for c in cmds] == ["phantom-data", "prepare", "fit", "evaluate"]


def test_readme_shows_the_same_quick_start():
    """The README's training commands are the ones test_quick_start_runs runs."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Training", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    assert [line for line in block.splitlines() if line.strip()] == _quick_start()


@pytest.mark.slow
def test_quick_start_runs(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for cmd in _quick_start():
        args = shlex.split(cmd)
        assert args[:3] == [".venv/bin/python", "-m", "training"]
        args = [sys.executable, *args[1:]]
        # Paths stay as written, relative to a scratch folder, except the shipped config.
        args = [str(ROOT / a) if a.startswith("training/configs/") else a for a in args]
        proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{cmd}\n{proc.stderr[-3000:]}"
    report = (tmp_path / "runs" / "cache" / "phantom_smoke" / "prepare_report.txt").read_text()
    assert report.count("registered (SyNOnly)") == 6
    tables = (tmp_path / "runs" / "phantom_smoke" / "eval" / "tables.md").read_text()
    for title in ("Table 3", "Table 4", "Table 5", "Organs — contrast → native, Test"):
        assert title in tables
