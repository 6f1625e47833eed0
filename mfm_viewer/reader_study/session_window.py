"""The reader's screen: blinded cases one after another, the answer panel, nothing that names the truth.

What the reader sees: "Case k of n", the study's question, the case's volume(s) in linked axial /
coronal / sagittal views (the viewer's `PlaneView`s sharing one `CursorModel`: scroll, zoom, pan,
crosshair, right-drag window, window presets), and the answer panel (choice, confidence 1–5, save).
What the reader never sees: file names, series descriptions, a SYNTHETIC badge, engine controls.
Every case starts at the study's initial window and the same zoom; every window change is logged.

All decisions and all saving are the Qt-free `ReadingSession`'s; this window draws and forwards clicks.
"""

from __future__ import annotations

from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from mfm_engine.reader_study.common import QUESTIONS
from mfm_engine.reader_study.session import ReadingSession
from mfm_engine.volume import Plane, Volume
from mfm_viewer.dialogs import plain_message
from mfm_viewer.logic.cursor import CursorModel
from mfm_viewer.plane_view import PlaneView
from mfm_viewer.window_toolbar import WindowToolbar

CHOICE_LABELS = {
    "left": "The LEFT volume is synthetic",
    "right": "The RIGHT volume is synthetic",
    "real": "Real (acquired by a scanner)",
    "synthetic": "Synthetic (made by a model)",
}
SIDE_TITLES = {"left": "LEFT", "right": "RIGHT", "image": ""}
CONFIDENCE_LABELS = {1: "1 — guessing", 2: "2", 3: "3 — fairly sure", 4: "4", 5: "5 — certain"}
_FLUSH_MS = 1000
_HEADER_STYLE = "color: #f0f0f0; background: #2a2a2a; font-weight: bold; font-size: 14px; padding: 4px;"


class CasePanel(QtWidgets.QWidget):
    """One volume of a case in three linked planes: a large axial view over coronal and sagittal."""

    hovered_voxel = QtCore.Signal(object, object)  # (i, j, k) or None, and the plane under the pointer

    def __init__(self, side: str, cursor: CursorModel, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.side = side
        self.volume: Volume | None = None
        layout = QtWidgets.QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.header = QtWidgets.QLabel(SIDE_TITLES[side], self)
        self.header.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.header.setStyleSheet(_HEADER_STYLE)
        self.header.setVisible(bool(SIDE_TITLES[side]))
        self.views: dict[Plane, PlaneView] = {
            p: PlaneView(p, cursor, self) for p in ("axial", "coronal", "sagittal")
        }
        layout.addWidget(self.header, 0, 0, 1, 2)
        layout.addWidget(self.views["axial"], 1, 0, 1, 2)
        layout.addWidget(self.views["coronal"], 2, 0)
        layout.addWidget(self.views["sagittal"], 2, 1)
        layout.setRowStretch(1, 3)
        layout.setRowStretch(2, 2)
        for plane, view in self.views.items():
            view.hovered.connect(self._on_hover)
            # The window is shared by every view and shown in the toolbar: say it once per panel.
            view.show_window_text = plane == "axial"

    def show_volume(self, volume: Volume) -> None:
        """Show a new case's volume: no title but the side, never a SYNTHETIC badge."""
        self.volume = volume

        def source(plane: Plane, index: int, vol=volume):
            return vol.slice(plane, index)

        for view in self.views.values():
            view.set_volume(volume)
            view.set_source(source, "grey", SIDE_TITLES[self.side] or "Case", synthetic=False)
            view.set_readout("")

    def readout(self, ijk: tuple[int, int, int] | None, plane: Plane | None) -> None:
        """Show the HU under the pointer in this panel's view of ``plane`` (clear the others)."""
        for p, view in self.views.items():
            if ijk is None or p != plane or self.volume is None:
                view.set_readout("")
            else:
                i, j, k = ijk
                view.set_readout(f"{self.volume.hu[k, j, i]:.0f} HU")

    def _on_hover(self, ijk) -> None:
        sender = self.sender()
        plane = sender.plane if isinstance(sender, PlaneView) else None
        self.hovered_voxel.emit(ijk, plane)

    def detach(self) -> None:
        """Stop listening to the cursor."""
        for view in self.views.values():
            view.detach()


class ReaderSessionWindow(QtWidgets.QMainWindow):
    """The blinded reading window for one reader and one bundle."""

    answered = QtCore.Signal(str)  # case id, after the answer is committed
    study_finished = QtCore.Signal()

    def __init__(self, session: ReadingSession, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.setWindowTitle(f"MFM Studio — reader study — reader {session.store.reader_id}")
        s = session.manifest.settings
        self.initial_window = (s.window_width, s.window_level)
        self.cursor = CursorModel((1, 1, 1), *self.initial_window)
        self._applying_initial = False
        self.cursor.subscribe(self._on_cursor)

        toolbar = WindowToolbar(self.cursor, self)
        toolbar.setMovable(False)
        reset = QtGui.QAction("Reset window", self)
        reset.setToolTip(f"Back to the study's window: W {s.window_width:g} / L {s.window_level:g}")
        reset.triggered.connect(self.reset_window)
        fit = QtGui.QAction("Fit views", self)
        fit.setToolTip("Zoom to fit and centre every view (key R in a view)")
        fit.triggered.connect(self.cursor.reset_view)
        toolbar.addSeparator()
        toolbar.addAction(reset)
        toolbar.addAction(fit)
        self.addToolBar(toolbar)
        self.window_toolbar = toolbar

        central = QtWidgets.QWidget(self)
        outer = QtWidgets.QVBoxLayout(central)
        outer.setContentsMargins(4, 4, 4, 4)
        self.progress_label = QtWidgets.QLabel(central)
        self.progress_label.setStyleSheet("font-size: 15px; font-weight: bold; padding: 2px;")
        outer.addWidget(self.progress_label)
        body = QtWidgets.QHBoxLayout()
        outer.addLayout(body, 1)

        self.images = QtWidgets.QWidget(central)
        self.images.setStyleSheet("background: #111111;")
        images_layout = QtWidgets.QHBoxLayout(self.images)
        images_layout.setContentsMargins(0, 0, 0, 0)
        images_layout.setSpacing(6)
        sides = ("left", "right") if session.mode == "paired" else ("image",)
        self.panels: dict[str, CasePanel] = {}
        for side in sides:
            panel = CasePanel(side, self.cursor, self.images)
            panel.hovered_voxel.connect(self._on_hover)
            images_layout.addWidget(panel, 1)
            self.panels[side] = panel
        body.addWidget(self.images, 1)
        body.addWidget(self._build_answer_panel(central))
        self.setCentralWidget(central)

        self.done_page = QtWidgets.QLabel(self.images)
        self.done_page.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.done_page.setStyleSheet("color: #f0f0f0; font-size: 18px;")
        self.done_page.hide()

        self._flush_timer = QtCore.QTimer(self)
        self._flush_timer.setInterval(_FLUSH_MS)
        self._flush_timer.timeout.connect(self._flush)
        self._flush_timer.start()
        self.show_current_case()

    # -- building -------------------------------------------------------------------------------
    def _build_answer_panel(self, parent: QtWidgets.QWidget) -> QtWidgets.QWidget:
        panel = QtWidgets.QWidget(parent)
        panel.setFixedWidth(300)
        layout = QtWidgets.QVBoxLayout(panel)
        layout.setContentsMargins(6, 0, 0, 0)
        self.question_label = QtWidgets.QLabel(QUESTIONS[self.session.mode], panel)
        self.question_label.setWordWrap(True)
        self.question_label.setStyleSheet("font-size: 14px; font-weight: bold;")
        layout.addWidget(self.question_label)

        choice_box = QtWidgets.QGroupBox("Your answer", panel)
        choice_layout = QtWidgets.QVBoxLayout(choice_box)
        self.choice_group = QtWidgets.QButtonGroup(self)
        self.choice_buttons: dict[str, QtWidgets.QRadioButton] = {}
        for choice in self.session.choices:
            button = QtWidgets.QRadioButton(CHOICE_LABELS[choice], choice_box)
            self.choice_group.addButton(button)
            choice_layout.addWidget(button)
            self.choice_buttons[choice] = button
        layout.addWidget(choice_box)

        confidence_box = QtWidgets.QGroupBox("How sure are you?", panel)
        confidence_layout = QtWidgets.QVBoxLayout(confidence_box)
        self.confidence_group = QtWidgets.QButtonGroup(self)
        self.confidence_buttons: dict[int, QtWidgets.QRadioButton] = {}
        for level, text in CONFIDENCE_LABELS.items():
            button = QtWidgets.QRadioButton(text, confidence_box)
            self.confidence_group.addButton(button, level)
            confidence_layout.addWidget(button)
            self.confidence_buttons[level] = button
        layout.addWidget(confidence_box)

        self.save_button = QtWidgets.QPushButton("Save answer and go on", panel)
        self.save_button.setMinimumHeight(36)
        self.save_button.clicked.connect(self.save_answer)
        layout.addWidget(self.save_button)
        self.saved_label = QtWidgets.QLabel(panel)
        self.saved_label.setWordWrap(True)
        layout.addWidget(self.saved_label)

        nav = QtWidgets.QHBoxLayout()
        self.back_button = QtWidgets.QPushButton("◀ Previous case", panel)
        self.back_button.clicked.connect(self.go_back)
        self.resume_button = QtWidgets.QPushButton("Next unanswered ▶", panel)
        self.resume_button.clicked.connect(self.go_to_unanswered)
        nav.addWidget(self.back_button)
        nav.addWidget(self.resume_button)
        layout.addLayout(nav)
        for button in (self.back_button, self.resume_button):
            button.setVisible(self.session.can_revise)

        layout.addStretch(1)
        help_text = QtWidgets.QLabel(
            "Wheel: scroll slices · Ctrl+wheel: zoom · middle drag: pan · right drag: window · "
            "left click: move the crosshair · keys 1–7: window presets",
            panel,
        )
        help_text.setWordWrap(True)
        help_text.setStyleSheet("color: #666666; font-size: 11px;")
        layout.addWidget(help_text)
        reader = QtWidgets.QLabel(f"Reader: {self.session.store.reader_id}", panel)
        reader.setStyleSheet("color: #444444;")
        layout.addWidget(reader)
        for group in (self.choice_group, self.confidence_group):
            group.buttonToggled.connect(lambda *_: self._update_save_button())
        return panel

    # -- showing cases --------------------------------------------------------------------------
    def show_current_case(self) -> bool:
        """Draw the case the session has on screen, at the initial window and zoom, or the end page.

        False when the case's files cannot be shown (the reason is in the answer panel).
        """
        session = self.session
        self._clear_answer()
        if session.case_id is None:
            self._show_done()
            return True
        try:
            volumes = session.volumes()
        except Exception as exc:  # a damaged or missing case file: say so, do not crash
            # Never leave the previous case's images up under this case's answer panel.
            for panel in self.panels.values():
                panel.setVisible(False)
            for button in (*self.choice_buttons.values(), *self.confidence_buttons.values()):
                button.setEnabled(False)
            self.save_button.setEnabled(False)
            self.progress_label.setText(f"Case {(session.position or 0) + 1} of {session.n_cases}")
            self._set_status(
                f"This case cannot be shown: {plain_message(exc)} Please tell the study coordinator.",
                error=True,
            )
            return False
        self.done_page.hide()
        first = next(iter(volumes.values()))
        self._applying_initial = True
        try:
            self.cursor.reshape(first.shape[::-1])
            self.cursor.set_window(*self.initial_window)
        finally:
            self._applying_initial = False
        for side, panel in self.panels.items():
            panel.show_volume(volumes[side])
            panel.setVisible(True)
        session.log_window(*self.initial_window, "initial")
        position = session.position or 0
        saved = session.current_answer()
        state = "  (answered — you may change it)" if saved is not None else ""
        self.progress_label.setText(f"Case {position + 1} of {session.n_cases}{state}")
        if saved is not None:
            self.choice_buttons[saved.choice].setChecked(True)
            self.confidence_buttons[saved.confidence].setChecked(True)
            self.save_button.setText("Save changed answer")
            self._set_status(
                f"Saved answer: {CHOICE_LABELS[saved.choice].lower()}, confidence {saved.confidence}."
            )
        else:
            self.save_button.setText("Save answer and go on")
        self.back_button.setEnabled(session.can_revise and position > 0)
        self.resume_button.setEnabled(session.can_revise and saved is not None)
        self._update_save_button()
        return True

    def _show_done(self) -> None:
        for panel in self.panels.values():
            panel.setVisible(False)
        n = self.session.n_cases
        self.progress_label.setText(f"All {n} cases answered")
        self.done_page.setText(
            f"All {n} cases are answered and saved.\nThank you — you may close this window."
        )
        self.done_page.setGeometry(self.images.rect())
        self.done_page.show()
        self.done_page.raise_()
        for button in (*self.choice_buttons.values(), *self.confidence_buttons.values(), self.save_button):
            button.setEnabled(False)
        self.back_button.setEnabled(self.session.can_revise)
        self.resume_button.setEnabled(False)
        self.study_finished.emit()

    def _clear_answer(self) -> None:
        for group in (self.choice_group, self.confidence_group):
            group.setExclusive(False)
            for button in group.buttons():
                button.setChecked(False)
                button.setEnabled(True)
            group.setExclusive(True)
        self._set_status("")

    def _update_save_button(self) -> None:
        ready = (
            self.chosen() is not None
            and self.confidence() is not None
            and self.session.case_id is not None
            and not all(panel.isHidden() for panel in self.panels.values())
        )
        self.save_button.setEnabled(ready)

    def _set_status(self, text: str, error: bool = False) -> None:
        self.saved_label.setStyleSheet("color: #b00020;" if error else "color: #1b5e20;")
        self.saved_label.setText(text)

    # -- answering ------------------------------------------------------------------------------
    def chosen(self) -> str | None:
        """The choice ticked in the panel, or None."""
        return next((c for c, b in self.choice_buttons.items() if b.isChecked()), None)

    def confidence(self) -> int | None:
        """The confidence ticked in the panel, or None."""
        level = self.confidence_group.checkedId()
        return level if level in CONFIDENCE_LABELS else None

    def save_answer(self) -> bool:
        """Save the ticked answer (committed at once), then show the next unanswered case."""
        choice, confidence = self.chosen(), self.confidence()
        case_id = self.session.case_id
        if choice is None or confidence is None or case_id is None:
            self._set_status("Tick an answer and a confidence first.", error=True)
            return False
        try:
            if self.session.current_answer() is not None:
                self.session.revise(choice, confidence, reason="changed by the reader")
            else:
                self.session.answer(choice, confidence)
        except Exception as exc:
            self._set_status(f"Not saved: {plain_message(exc)}", error=True)
            return False
        self.answered.emit(case_id)
        if self.show_current_case() and self.session.case_id is not None:
            self._set_status("Previous answer saved.")
        return True

    def go_back(self) -> None:
        """Show the previous case (only where the study allows changing answers)."""
        position = self.session.position if self.session.position is not None else self.session.n_cases
        try:
            self.session.go_to(max(0, position - 1))
        except Exception as exc:
            self._set_status(plain_message(exc), error=True)
            return
        self.show_current_case()

    def go_to_unanswered(self) -> None:
        """Back to the first unanswered case."""
        self.session.go_to_next_unanswered()
        self.show_current_case()

    # -- window logging, hover, closing ---------------------------------------------------------
    def reset_window(self) -> None:
        """Back to the study's initial window."""
        self.cursor.set_window(*self.initial_window)

    def _on_cursor(self, what: str) -> None:
        if what == "window" and not self._applying_initial and self.session.case_id is not None:
            self.session.log_window(self.cursor.width, self.cursor.level, "reader")

    def _on_hover(self, ijk, plane) -> None:
        for panel in self.panels.values():
            panel.readout(ijk, plane)

    def _flush(self) -> None:
        try:
            self.session.flush()
        except Exception as exc:
            self._set_status(f"Could not save the window log: {plain_message(exc)}", error=True)

    def resizeEvent(self, ev: QtGui.QResizeEvent) -> None:  # noqa: N802 (Qt naming)
        super().resizeEvent(ev)
        if getattr(self, "done_page", None) is not None and self.done_page.isVisible():
            self.done_page.setGeometry(self.images.rect())

    def closeEvent(self, ev: QtGui.QCloseEvent) -> None:  # noqa: N802
        self._flush_timer.stop()
        for panel in self.panels.values():
            panel.detach()
        try:
            self.session.close()
        except Exception:  # noqa: BLE001 — closing must not be blocked; answers are already committed
            pass
        super().closeEvent(ev)


class StartSessionDialog(QtWidgets.QDialog):
    """Ask for the bundle, the reader id and where answers go; opens the `ReadingSession`."""

    def __init__(self, parent: QtWidgets.QWidget | None = None, bundle: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Start a reader-study session")
        self.session: ReadingSession | None = None
        form = QtWidgets.QFormLayout(self)
        self.bundle_edit = QtWidgets.QLineEdit(bundle, self)
        browse = QtWidgets.QPushButton("Browse…", self)
        browse.clicked.connect(self._browse_bundle)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.bundle_edit, 1)
        row.addWidget(browse)
        form.addRow("Study folder:", row)
        self.reader_edit = QtWidgets.QLineEdit(self)
        self.reader_edit.setPlaceholderText("e.g. R1 (the same id resumes your session)")
        form.addRow("Reader id:", self.reader_edit)
        self.results_edit = QtWidgets.QLineEdit(self)
        self.results_edit.setPlaceholderText("default: a '-results' folder beside the study folder")
        browse_results = QtWidgets.QPushButton("Browse…", self)
        browse_results.clicked.connect(self._browse_results)
        row2 = QtWidgets.QHBoxLayout()
        row2.addWidget(self.results_edit, 1)
        row2.addWidget(browse_results)
        form.addRow("Save answers in:", row2)
        self.error_label = QtWidgets.QLabel(self)
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #b00020;")
        form.addRow(self.error_label)
        buttons = QtWidgets.QDialogButtonBox(
            QtWidgets.QDialogButtonBox.StandardButton.Ok | QtWidgets.QDialogButtonBox.StandardButton.Cancel,
            self,
        )
        buttons.button(QtWidgets.QDialogButtonBox.StandardButton.Ok).setText("Start")
        buttons.accepted.connect(self.start)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.resize(620, 180)

    def _browse_bundle(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Study folder", self.bundle_edit.text())
        if folder:
            self.bundle_edit.setText(folder)

    def _browse_results(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Save answers in", self.results_edit.text())
        if folder:
            self.results_edit.setText(folder)

    def start(self) -> None:
        """Open (or resume) the session; errors stay in the dialog in plain words."""
        results = self.results_edit.text().strip() or None
        try:
            self.session = ReadingSession(self.bundle_edit.text().strip(), self.reader_edit.text(), results)
        except Exception as exc:
            self.error_label.setText(plain_message(exc))
            return
        self.accept()


def open_reader_session(
    parent: QtWidgets.QWidget | None = None, bundle: str | Path = ""
) -> ReaderSessionWindow | None:
    """Ask for bundle and reader id, then show the reading window (None when cancelled)."""
    dialog = StartSessionDialog(parent, str(bundle))
    if dialog.exec() != QtWidgets.QDialog.DialogCode.Accepted or dialog.session is None:
        return None
    window = ReaderSessionWindow(dialog.session, parent)
    window.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
    window.resize(1500, 950)
    window.show()
    return window
