"""The main window's Reader study menu: design a study, run a reading session, see the results.

Hooked onto a MainWindow from outside (like the analysis views), so the window's own code does not
grow. The open study is offered as a candidate case when it has a real native (the reference, in a
contrast → native session) and a synthetic native translated from it.
"""

from __future__ import annotations

from typing import Any

from PySide6 import QtGui

from mfm_engine.reader_study.design import CaseSource


def current_case(window: Any) -> list[CaseSource]:
    """The open study as a candidate case, when it holds a real and a synthetic native."""
    session = getattr(window, "session", None)
    if session is None or session.reference is None or session.synthetic is None:
        return []
    if session.synthetic.meta.get("phase") != "native":
        return []  # a native → contrast result is no synthetic native
    label = session.input.meta.get("series_description") or "open study"
    return [
        CaseSource(
            label=str(label),
            native_volume=session.reference,
            synthetic_volume=session.synthetic,
            contrast_volume=session.input,
        )
    ]


def install(window: Any) -> None:
    """Add the Reader study menu to a main window."""
    from mfm_viewer.reader_study import open_design_dialog, open_reader_session, open_results_view

    bar = window.menuBar()
    menu = bar.addMenu("&Reader study")
    help_action = next((a for a in bar.actions() if a.text().replace("&", "") == "Help"), None)
    if help_action is not None:  # keep Help last, where people look for it
        bar.insertMenu(help_action, menu)
    design = QtGui.QAction("&Design a blinded study…", window)
    design.triggered.connect(lambda: open_design_dialog(window, current_case(window)))
    read = QtGui.QAction("Start a &reading session…", window)
    read.triggered.connect(lambda: open_reader_session(window))
    results = QtGui.QAction("&Results and statistics…", window)
    # The results view is a parentless top-level window: keep a reference or Python collects it.
    results.triggered.connect(lambda: setattr(window, "reader_results_view", open_results_view(window)))
    for action in (design, read, results):
        menu.addAction(action)
    window.reader_study_menu = menu
