"""The main window's Reader study menu offers the open study as a case and opens the coordinator's tools."""

from __future__ import annotations

import pytest
from PySide6 import QtWidgets

from mfm_viewer.main_window import MainWindow
from mfm_viewer.reader_study.coordinator_view import DesignDialog, ResultsView
from mfm_viewer.reader_study.menu import current_case
from mfm_viewer.settings import ViewerSettings
from tests.test_viewer_window import mini_study

pytestmark = pytest.mark.gui


def _action(window: MainWindow, text: str):
    menu = window.reader_study_menu
    return next(a for a in menu.actions() if a.text().replace("&", "").startswith(text))


def test_menu_sits_before_help_and_offers_the_open_study(qtbot, tmp_path):
    window = MainWindow(ViewerSettings(tmp_path / "viewer.ini"))
    qtbot.addWidget(window)
    titles = [a.text().replace("&", "") for a in window.menuBar().actions()]
    assert titles.index("Reader study") == titles.index("Help") - 1

    contrast, _ = mini_study()
    native, _ = mini_study(phase="native")
    window.set_study(contrast, reference=native)
    assert current_case(window) == []  # no synthetic yet: nothing to compare the real native with

    synthetic = native.with_hu(native.hu + 5.0, synthetic=True, phase="native")
    window.session.set_synthetic(synthetic, None)
    (case,) = current_case(window)
    assert case.native_volume is native and case.synthetic_volume is synthetic

    _action(window, "Design").trigger()
    dialogs = [
        w for w in QtWidgets.QApplication.topLevelWidgets() if isinstance(w, DesignDialog) and w.isVisible()
    ]
    assert dialogs and dialogs[-1].table.rowCount() == 1
    for d in dialogs:
        d.close()

    _action(window, "Results").trigger()
    views = [
        w for w in QtWidgets.QApplication.topLevelWidgets() if isinstance(w, ResultsView) and w.isVisible()
    ]
    assert views
    for v in views:
        v.close()
    window.close()
