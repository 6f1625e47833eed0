"""The ``mfm-viewer`` command: scripted screenshots, bad input, and no display."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PySide6 import QtGui
from test_viewer_engine import tiny_checkpoint  # noqa: F401 (a fixture)
from test_viewer_window import SHOTS, mini_study

from mfm_engine.io.write import write_study
from mfm_viewer.app import EXIT_FAILED, EXIT_NO_DISPLAY, EXIT_OK, main

pytestmark = pytest.mark.gui


def test_screenshot_of_a_translated_study_with_reference(qapp, tmp_path, tiny_checkpoint, capsys):  # noqa: F811
    contrast, _ = mini_study(shape=(6, 48, 48))
    native, _ = mini_study(shape=(6, 48, 48), phase="native")
    study = write_study(contrast, tmp_path / "contrast.nii.gz")
    reference = write_study(native, tmp_path / "native.nii.gz")
    SHOTS.mkdir(exist_ok=True)
    png = SHOTS / "20_cli_translate.png"
    png.unlink(missing_ok=True)
    args = [
        str(study),
        "--reference",
        str(reference),
        "--model",
        str(tiny_checkpoint),
        "--translate",
        "--screenshot",
        str(png),
        "--settings",
        str(tmp_path / "viewer.ini"),
    ]
    assert main(args) == EXIT_OK
    image = QtGui.QImage(str(png))
    assert (image.width(), image.height()) == (1600, 1000)
    assert "wrote" in capsys.readouterr().out


def test_screenshot_with_a_bad_study_fails_in_plain_words(qapp, tmp_path, capsys):
    png = tmp_path / "never.png"
    missing = tmp_path / "no_such_study.nii.gz"
    assert (
        main([str(missing), "--screenshot", str(png), "--settings", str(tmp_path / "v.ini")]) == EXIT_FAILED
    )
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err


def test_without_a_display_it_says_so(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["MFM_VIEWER_SETTINGS"] = str(tmp_path / "v.ini")
    out = subprocess.run(
        [sys.executable, "-m", "mfm_viewer.app"], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == EXIT_NO_DISPLAY
    assert "no display could be opened" in out.stderr and "Traceback" not in out.stderr


def test_demo_study_screenshot(qapp, tmp_path):
    """No PATH: the demo study (512² phantom, its native as reference) and the demo model when shipped."""
    png = SHOTS / "21_demo.png"
    png.unlink(missing_ok=True)
    assert main(["--screenshot", str(png), "--settings", str(tmp_path / "v.ini")]) == EXIT_OK
    assert QtGui.QImage(str(png)).width() == 1600
