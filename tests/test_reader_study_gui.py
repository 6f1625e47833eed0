"""The reader-study widgets offscreen: whole paired and single-image sessions by a scripted reader, the
coordinator's design dialog and results view. Screenshots go to tests/_screenshots/ for a human to look at."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from PySide6 import QtCore, QtGui, QtWidgets
from reader_study_support import make_bundle, scripted_choice, tiny_checkpoint
from torch_threads import one_torch_thread

from mfm_engine.reader_study import ReadingSession, read_results
from mfm_engine.reader_study.design import SynthesisSettings, phantom_sources
from mfm_viewer.plane_view import PlaneView
from mfm_viewer.reader_study.coordinator_view import DesignDialog, ResultsView
from mfm_viewer.reader_study.session_window import ReaderSessionWindow
from tests.test_viewer_window import _send_mouse  # one real-event helper for every GUI test

pytestmark = pytest.mark.gui
SHOTS = Path(__file__).parent / "_screenshots"


def shot(widget: QtWidgets.QWidget, name: str) -> Path:
    SHOTS.mkdir(exist_ok=True)
    path = SHOTS / f"{name}.png"
    QtWidgets.QApplication.processEvents()
    assert widget.grab().save(str(path))
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def paired(tmp_path_factory, ckpt):
    return make_bundle(tmp_path_factory.mktemp("paired"), ckpt, mode="paired", n=4, candidates=4)


@pytest.fixture(scope="module")
def single(tmp_path_factory, ckpt):
    return make_bundle(tmp_path_factory.mktemp("single"), ckpt, mode="single", n=4, candidates=4)


def right_drag(view: PlaneView, dx: int, dy: int, steps: int = 5) -> None:
    """A real press–move–release right-button drag on a view (window/level)."""
    vp = view.viewport()
    start = QtCore.QPoint(vp.width() // 2, vp.height() // 2)
    button, none = QtCore.Qt.MouseButton.RightButton, QtCore.Qt.MouseButton.NoButton
    # Let pending layout and paint events settle first: a press that lands before the view has its
    # final geometry is not seen as the start of a drag (seen once on a loaded machine).
    QtWidgets.QApplication.processEvents()
    _send_mouse(vp, QtCore.QEvent.Type.MouseButtonPress, start, button, button)
    for s in range(1, steps + 1):
        _send_mouse(
            vp,
            QtCore.QEvent.Type.MouseMove,
            start + QtCore.QPoint(dx * s // steps, dy * s // steps),
            none,
            button,
        )
        QtWidgets.QApplication.processEvents()
    _send_mouse(vp, QtCore.QEvent.Type.MouseButtonRelease, start + QtCore.QPoint(dx, dy), button, none)


def wheel(view: PlaneView, notches: int) -> None:
    vp = view.viewport()
    pos = QtCore.QPointF(vp.width() / 2, vp.height() / 2)
    event = QtGui.QWheelEvent(
        pos,
        QtCore.QPointF(vp.mapToGlobal(pos.toPoint())),
        QtCore.QPoint(0, 0),
        QtCore.QPoint(0, 120 * notches),
        QtCore.Qt.MouseButton.NoButton,
        QtCore.Qt.KeyboardModifier.NoModifier,
        QtCore.Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QtWidgets.QApplication.sendEvent(vp, event)


def click(qtbot, button: QtWidgets.QAbstractButton) -> None:
    """A left click on a radio button's indicator (its middle may lie past the text, outside the hit area)."""
    qtbot.mouseClick(button, QtCore.Qt.MouseButton.LeftButton, pos=QtCore.QPoint(8, button.height() // 2))


def visible_texts(window: QtWidgets.QWidget) -> list[str]:
    """Every text a reader can see or hover: labels, buttons, group titles, tooltips, window title."""
    texts = [window.windowTitle()]
    for w in window.findChildren(QtWidgets.QWidget):
        if not w.isVisible():
            continue
        for getter in ("text", "title", "toolTip", "windowTitle", "placeholderText"):
            fn = getattr(w, getter, None)
            if callable(fn):
                try:
                    value = fn()
                except TypeError:
                    continue
                if isinstance(value, str) and value:
                    texts.append(value)
    for action in window.findChildren(QtGui.QAction):
        texts += [action.text(), action.toolTip()]
    return texts


def check_blinded(window: ReaderSessionWindow, result) -> None:
    """Nothing on screen names a file, a case id, a source, the model, or marks a volume SYNTHETIC."""
    secrets = {f.path.split("/")[-1].split(".")[0] for c in result.manifest.cases for f in c.files.values()}
    secrets |= set(result.manifest.case_ids) | {
        str(result.bundle),
        result.bundle.name,
        result.manifest.study_id,
    }
    for case in result.key.cases.values():
        secrets |= {case.patient, *case.sources.values(), str(case.provenance.get("model"))}
    joined = "\n".join(visible_texts(window))
    for s in secrets:
        assert s not in joined, f"the reader's screen shows {s!r}"
    for word in ("PHANTOM", "phantom", "tiny", "SYNTHETIC", "model:", "solver", "steps", ".nii"):
        assert word not in joined, f"the reader's screen shows {word!r}"
    for panel in window.panels.values():
        for view in panel.views.values():
            assert not view.labels.synthetic.isVisible()


def run_session(window: ReaderSessionWindow, result, qtbot, screenshot: str) -> list[tuple[str, str, int]]:
    """A scripted reader: look (scroll, window drag), then tick an answer and a confidence and save."""
    rng = random.Random(screenshot)
    given = []
    first_panel = next(iter(window.panels.values()))
    while window.session.case_id is not None:
        # Every case opens at the study's window and the same zoom.
        assert window.cursor.window == (350.0, 40.0)
        assert window.cursor.zoom == 1.0
        assert window.window_toolbar.actions_by_name["abdomen (Slicer)"].isChecked()
        check_blinded(window, result)
        axial = first_panel.views["axial"]
        k0 = window.cursor.ijk[2]
        wheel(axial, -1)
        assert window.cursor.ijk[2] != k0
        for panel in window.panels.values():  # linked: every view shows the same slice
            assert panel.views["axial"].slice_index == window.cursor.ijk[2]
        right_drag(axial, 40, -20)
        assert window.cursor.width > 350.0
        if not given:
            window.reset_window()
            shot(window, screenshot)
            assert not window.save_button.isEnabled()
        choice, confidence = scripted_choice(rng, window.session.choices)
        click(qtbot, window.choice_buttons[choice])
        assert not window.save_button.isEnabled()
        click(qtbot, window.confidence_buttons[confidence])
        assert window.save_button.isEnabled()
        case_id = window.session.case_id
        with qtbot.waitSignal(window.answered):
            qtbot.mouseClick(window.save_button, QtCore.Qt.MouseButton.LeftButton)
        given.append((case_id, choice, confidence))
    return given


@pytest.mark.parametrize("which", ["paired", "single"])
def test_full_session_through_the_widgets(which, request, qtbot, tmp_path):
    result = request.getfixturevalue(which)
    window = ReaderSessionWindow(ReadingSession(result.bundle, "R1", tmp_path))
    qtbot.addWidget(window)
    window.resize(1500, 950)
    window.show()
    qtbot.waitExposed(window)
    assert set(window.panels) == ({"left", "right"} if which == "paired" else {"image"})
    assert window.progress_label.text() == "Case 1 of 4"
    given = run_session(window, result, qtbot, f"reader_study_{which}")
    assert window.progress_label.text() == "All 4 cases answered"
    assert window.done_page.isVisible() and not window.save_button.isEnabled()
    assert not window.back_button.isVisible()  # this study does not allow changes
    shot(window, f"reader_study_{which}_done")
    path = window.session.store.path
    window.close()
    res = read_results(path)
    assert [(a.case_id, a.choice, a.confidence) for a in res.answers] == given
    assert res.order == [c for c, _, _ in given]
    assert all(a.seconds >= 0 for a in res.answers)
    windows = [e for e in res.events if e["kind"] == "window"]
    assert sum(e["detail"] == "initial" for e in windows) == 4
    assert sum(e["detail"] == "reader" for e in windows) >= 8  # each drag and reset, logged
    assert all(e["case_id"] in dict.fromkeys(c for c, _, _ in given) for e in windows)


def test_changing_an_answer_where_allowed(ckpt, tmp_path, qtbot):
    result = make_bundle(tmp_path, ckpt, mode="single", n=2, allow_revisions=True)
    window = ReaderSessionWindow(ReadingSession(result.bundle, "R2", tmp_path / "results"))
    qtbot.addWidget(window)
    window.show()
    window.choice_buttons["real"].click()
    window.confidence_buttons[2].click()
    window.save_button.click()
    assert window.back_button.isVisible() and window.back_button.isEnabled()
    window.back_button.click()
    assert window.progress_label.text().startswith("Case 1 of 2  (answered")
    assert window.choice_buttons["real"].isChecked() and window.confidence_buttons[2].isChecked()
    assert window.save_button.text() == "Save changed answer"
    window.choice_buttons["synthetic"].click()
    window.save_button.click()
    assert window.progress_label.text() == "Case 2 of 2"
    path = window.session.store.path
    window.close()
    res = read_results(path)
    assert [(a.choice, a.is_revision) for a in res.answers] == [("real", False), ("synthetic", True)]


def test_a_damaged_case_is_reported_not_crashed(paired, tmp_path, qtbot):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(paired.bundle, copy)
    session = ReadingSession(copy, "R1", tmp_path / "results")
    second = session.order[1]
    for f in paired.manifest.case(second).files.values():
        (copy / f.path).write_bytes(b"broken")
    window = ReaderSessionWindow(session)
    qtbot.addWidget(window)
    window.show()
    window.choice_buttons["left"].click()
    window.confidence_buttons[3].click()
    window.save_button.click()
    # The second case is damaged: its images are not shown, the first case's are gone, no answer possible.
    assert session.case_id == second
    assert "cannot be shown" in window.saved_label.text() and "changed after" in window.saved_label.text()
    assert all(panel.isHidden() for panel in window.panels.values())
    assert window.progress_label.text() == "Case 2 of 4"
    window.choice_buttons["right"].click()
    window.confidence_buttons[3].click()
    assert not window.save_button.isEnabled()
    window.close()


def test_design_dialog_creates_a_study(ckpt, tmp_path, qtbot):
    dialog = DesignDialog(sources=phantom_sources([1, 2, 3], n_slices=2, size=32))
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.table.rowCount() == 3
    dialog.mode_combo.setCurrentIndex(dialog.mode_combo.findData("single"))
    dialog.n_spin.setValue(2)
    dialog.seed_spin.setValue(8)
    dialog.model_edit.setText(str(ckpt))
    dialog.steps_spin.setValue(1)
    dialog.device_combo.setCurrentText("cpu")
    dialog.bundle_edit.setText(str(tmp_path / "study"))
    dialog.key_edit.setText(str(tmp_path / "study-KEY.json"))
    settings = dialog.settings()
    assert settings["window"] == "abdomen (Slicer)" and settings["synthesis"] == SynthesisSettings(
        str(ckpt), "euler", 1, "cpu"
    )
    with one_torch_thread(), qtbot.waitSignal(dialog.created, timeout=120_000) as blocker:
        dialog.create_button.click()
    result = blocker.args[0]
    assert result.manifest.mode == "single" and len(result.manifest.cases) == 2
    assert "study-KEY.json" in dialog.message.text()
    shot(dialog, "reader_study_design_dialog")
    dialog.bundle_edit.setText("")
    dialog.create_button.click()
    assert "Choose a bundle folder" in dialog.message.text()


def test_results_view(single, paired, tmp_path, qtbot):
    paths = []
    for reader, skill in (("R1", 0.9), ("R2", 0.6), ("R3", 0.5)):
        rng = random.Random(reader)
        session = ReadingSession(single.bundle, reader, tmp_path)
        while not session.finished:
            truth = single.key.cases[session.case_id].truth["image"]
            other = "real" if truth == "synthetic" else "synthetic"
            session.answer(truth if rng.random() < skill else other, rng.randint(1, 5))
        session.close()
        paths.append(session.store.path)
    view = ResultsView()
    qtbot.addWidget(view)
    view.resize(1200, 860)
    view.show()
    assert view.load(single.bundle, single.key_path, paths)
    assert view.table.rowCount() == 3
    assert [view.table.item(r, 0).text() for r in range(3)] == ["R1", "R2", "R3"]
    assert "Fleiss' kappa" in view.summary.text() and "GEE" in view.summary.text()
    assert view.roc_plot.isVisible()
    accuracy_items = view.accuracy_plot.listDataItems() + view.accuracy_plot.getPlotItem().items
    assert len(accuracy_items) >= 4
    shot(view, "reader_study_results")
    written = view.export(tmp_path / "report")
    assert (tmp_path / "report" / "report.md") in written
    assert not view.load(single.bundle, paired.key_path, paths)
    assert re.search("Refused: .*belongs to study", view.summary.text())
    assert view.table.rowCount() == 0 and not view.export_button.isEnabled()
