"""The main window: menus, toolbars, the series grid, the engine dock, the status bar, drag and drop."""

from __future__ import annotations

import datetime as _dt
import sys
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from mfm_engine.errors import GeometryMismatchError, SeriesChoiceError
from mfm_engine.volume import Volume
from mfm_viewer.analysis_views import install as install_analysis_views
from mfm_viewer.dialogs import SeriesPickerDialog, ask_resample, plain_message, show_error
from mfm_viewer.engine_controller import EngineController
from mfm_viewer.engine_panel import EnginePanel
from mfm_viewer.logic.cursor import CursorModel
from mfm_viewer.logic.engine_key import default_direction
from mfm_viewer.logic.reference import resample_onto
from mfm_viewer.logic.series_choice import pick_largest_ct
from mfm_viewer.logic.session import SYNTHETIC, Session
from mfm_viewer.logic.study_info import is_head, reading_warnings
from mfm_viewer.pacs_dialog import install as install_pacs
from mfm_viewer.reader_study.menu import install as install_reader_study
from mfm_viewer.series_grid import SeriesGrid
from mfm_viewer.settings import ViewerSettings
from mfm_viewer.warning_banner import WarningBanner
from mfm_viewer.window_toolbar import DisplayToolbar, WindowToolbar

STUDY_FILTER = "Studies (*.nii *.nii.gz *.nrrd *.mha *.mhd *.dcm);;DICOM file (*.dcm *);;All files (*)"
HELP_TEXT = """<b>Mouse</b><br>
Left click / drag: move the crosshair (all views follow)<br>
Wheel: next / previous slice · Ctrl+wheel: zoom about the pointer<br>
Middle drag: pan · Right drag: window (left/right) and level (up/down)<br><br>
<b>Keys</b><br>
1…7: window presets · Page Up/Down or ↑/↓: slices · +/−: zoom · R: reset zoom and pan<br>
Ctrl+O: open study · Ctrl+Shift+O: open DICOM folder · Ctrl+Shift+R: open reference<br>
Ctrl+T: translate volume · Esc: cancel translation · Ctrl+Shift+S: screenshot"""


class MainWindow(QtWidgets.QMainWindow):
    """MFM Studio's viewer window."""

    def __init__(
        self,
        settings: ViewerSettings | None = None,
        parent: QtWidgets.QWidget | None = None,
        interactive: bool = True,
    ) -> None:
        super().__init__(parent)
        self.settings = settings or ViewerSettings()
        # Not interactive (scripted screenshots): never wait on a question; choose and say so on stderr.
        self.interactive = interactive
        self.session: Session | None = None
        self.last_message: QtWidgets.QMessageBox | None = None
        self.export_notes: list[str] = []  # what the last export could not keep of the source
        self.setWindowTitle("MFM Studio")
        self.setAcceptDrops(True)

        self.cursor = CursorModel((1, 1, 1), *self.settings.window)
        self.grid = SeriesGrid(self.cursor)
        self.welcome = QtWidgets.QLabel(
            "Open a study (File ▸ Open, Ctrl+O) or drop a DICOM folder, NIfTI, NRRD or MHA file here."
        )
        self.welcome.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.stack = QtWidgets.QStackedWidget()
        self.stack.addWidget(self.welcome)
        self.stack.addWidget(self.grid)
        self.banner = WarningBanner()
        self.banner.set_expanded(self.settings.get("display/warnings_expanded", False))
        self.banner.toggle.toggled.connect(lambda on: self.settings.set("display/warnings_expanded", on))
        central = QtWidgets.QWidget()
        column = QtWidgets.QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.banner)
        column.addWidget(self.stack, 1)
        self.setCentralWidget(central)

        self.window_toolbar = WindowToolbar(self.cursor, self)
        self.display_toolbar = DisplayToolbar(self)
        self.addToolBar(self.window_toolbar)
        self.addToolBar(self.display_toolbar)
        self.display_toolbar.restore(
            self.settings.get("display/layout", "three planes"),
            self.settings.get("display/diff_mode", "panes"),
            self.settings.get("display/diff_range", 200.0),
            self.settings.get("display/overlay_opacity", 0.6),
        )
        self.display_toolbar.changed.connect(self._on_display_changed)
        self.grid.layout_name = self.display_toolbar.layout_name
        self.grid.diff_mode = self.display_toolbar.diff_mode
        self.grid.set_diff_display(self.display_toolbar.diff_range, self.display_toolbar.opacity)

        self.engine_panel = EnginePanel()
        dock = QtWidgets.QDockWidget("Engine", self)
        dock.setObjectName("engine_dock")
        dock.setWidget(self.engine_panel)
        dock.setFeatures(
            QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetFloatable
        )
        self.addDockWidget(QtCore.Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self.engine = EngineController(self.engine_panel, self.cursor, self.settings, self)
        self.engine.synthetic_changed.connect(self._on_synthetic_changed)
        self.engine.progress.connect(lambda done, total: self.grid.set_translating((done, total)))
        self.engine.status.connect(lambda text: self.statusBar().showMessage(text, 10000))
        self.engine.error.connect(self.report_error)
        self.engine_panel.open_checkpoint_requested.connect(self.choose_checkpoint)

        self.hover_label = QtWidgets.QLabel("")
        self.hover_label.setAlignment(
            QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter
        )
        # No stretch: messages (warnings, "Reference opened") keep the rest of the bar.
        self.statusBar().addPermanentWidget(self.hover_label)
        self.grid.hover_text.connect(self.hover_label.setText)
        self.cursor.subscribe(self._on_cursor)
        self._build_menus()
        # View ▸ Solver comparison… and View ▸ 3D iodine view, made on first use (analysis_views.py).
        self.analysis_views = install_analysis_views(self)
        install_pacs(self)  # File ▸ Open from PACS…, Send synthetic to PACS…, PACS nodes… (pacs_dialog.py)
        install_reader_study(self)  # Reader study ▸ design, reading session, results (reader_study/menu.py)
        self.resize(1500, 950)

    def _fit_toolbars(self) -> None:
        """Both toolbars on one row when they fit, else the display toolbar on a second row (never '»')."""
        need = self.window_toolbar.sizeHint().width() + self.display_toolbar.sizeHint().width() + 16
        two_rows = need > self.width()
        if two_rows != self.toolBarBreak(self.display_toolbar):
            if two_rows:
                self.insertToolBarBreak(self.display_toolbar)
            else:
                self.removeToolBarBreak(self.display_toolbar)

    def resizeEvent(self, ev: QtGui.QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(ev)
        self._fit_toolbars()

    def show_first_time(self) -> None:
        """Show the window maximised, or as it was left when that was at least 90% of this screen.

        A window restored small (another screen, an old session) is what made the first screen
        unreadable, so a smaller saved geometry gives way to the whole screen.
        """
        geometry = self.settings.value("window/geometry")
        screen = self.screen() or QtGui.QGuiApplication.primaryScreen()
        available = screen.availableGeometry() if screen is not None else None
        if (
            isinstance(geometry, QtCore.QByteArray)
            and not geometry.isEmpty()
            and self.restoreGeometry(geometry)
        ):
            fits = available is None or (
                available.contains(self.frameGeometry().center())
                and self.width() >= 0.9 * available.width()
                and self.height() >= 0.9 * available.height()
            )
            if fits or self.isMaximized():
                self.show()
                return
        if available is not None:
            self.setGeometry(available)  # a window manager that ignores "maximised" still gets the screen
        self.showMaximized()

    # -- menus ----------------------------------------------------------------------------------------
    def _action(self, menu: QtWidgets.QMenu, text: str, slot, shortcut: str | None = None) -> QtGui.QAction:
        action = menu.addAction(text)
        action.triggered.connect(lambda _=False: slot())
        if shortcut:
            action.setShortcut(QtGui.QKeySequence(shortcut))
        return action

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self._action(file_menu, "&Open study file…", self.choose_study_file, "Ctrl+O")
        self._action(file_menu, "Open DICOM &folder…", self.choose_study_folder, "Ctrl+Shift+O")
        self.recent_menu = file_menu.addMenu("Recent studies")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        file_menu.addSeparator()
        self._action(
            file_menu, "Open &reference file…", lambda: self.choose_reference(folder=False), "Ctrl+Shift+R"
        )
        self._action(file_menu, "Open reference DICOM folder…", lambda: self.choose_reference(folder=True))
        self._action(file_menu, "Close reference", self.close_reference)
        file_menu.addSeparator()
        self._action(file_menu, "Open &checkpoint…", self.choose_checkpoint)
        file_menu.addSeparator()
        self._action(file_menu, "Export synthetic as &DICOM…", lambda: self.choose_export("dicom"))
        self._action(file_menu, "Export synthetic as &NIfTI…", lambda: self.choose_export("nifti"))
        self._action(file_menu, "Save &screenshot (PNG)…", self.choose_screenshot, "Ctrl+Shift+S")
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, "Ctrl+Q")
        view_menu = self.menuBar().addMenu("&View")
        self._action(view_menu, "Reset zoom and pan", self.cursor.reset_view)
        engine_menu = self.menuBar().addMenu("&Engine")
        self._action(engine_menu, "&Translate volume", self.engine.translate_volume, "Ctrl+T")
        self._action(engine_menu, "&Cancel translation", self.engine.cancel, "Esc")
        help_menu = self.menuBar().addMenu("&Help")
        self._action(help_menu, "Mouse and keys", self._show_help, "F1")

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        items = self.settings.recent("studies")
        if not items:
            self.recent_menu.addAction("(none)").setEnabled(False)
        for path in items:
            self.recent_menu.addAction(path).triggered.connect(lambda _=False, p=path: self.open_study(p))

    def _show_help(self) -> None:
        QtWidgets.QMessageBox.information(self, "Mouse and keys", HELP_TEXT)

    # -- messages -------------------------------------------------------------------------------------
    def report_error(self, title: str, text: str) -> None:
        """Tell the user in plain words (non-blocking box, remembered in ``last_message``)."""
        self.last_message = show_error(self, title, text)
        self.statusBar().showMessage(text.splitlines()[0], 10000)

    # -- studies --------------------------------------------------------------------------------------
    def _remember_folder(self, path: str) -> None:
        p = Path(path)
        self.settings.last_folder = str(p if p.is_dir() else p.parent)

    def choose_study_file(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open study", self.settings.last_folder, STUDY_FILTER
        )
        if path:
            self.open_study(path)

    def choose_study_folder(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(
            self, "Open DICOM folder", self.settings.last_folder
        )
        if path:
            self.open_study(path)

    def _read(self, path: str, what: str, series: str | int | None = None) -> Volume | None:
        """read_study with the series picker; any error becomes a dialog and None."""
        from mfm_engine.io.study import read_study

        QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)
        try:
            try:
                return read_study(path, series=series)
            except SeriesChoiceError as choice:
                if not self.interactive:
                    index, why = pick_largest_ct(choice.series)
                    print(f"mfm-viewer: {path}: {why}", file=sys.stderr)
                    return read_study(path, series=index)
                QtWidgets.QApplication.restoreOverrideCursor()
                dialog = SeriesPickerDialog(path, choice.series, self)
                if dialog.exec() != QtWidgets.QDialog.DialogCode.Accepted:
                    QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)
                    return None
                QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)
                return read_study(path, series=dialog.chosen_key())
        except Exception as exc:  # every failure in words; the open study stays as it was
            self.report_error(f"Cannot open {what}", f"Could not open {path}:\n{plain_message(exc)}")
            return None
        finally:
            QtWidgets.QApplication.restoreOverrideCursor()

    def open_study(
        self,
        path: str | Path,
        reference: str | Path | None = None,
        series: str | int | None = None,
        direction: str | None = None,
    ) -> bool:
        """Open a study (DICOM folder or file, NIfTI, NRRD, MHA); False (and a dialog) when it fails."""
        path = str(path)
        volume = self._read(path, "study", series)
        if volume is None:
            return False
        self._remember_folder(path)
        self.settings.add_recent("studies", path)
        self.set_study(volume, direction=direction)
        if reference is not None:
            self.open_reference(reference)
        return True

    def set_study(
        self, volume: Volume, reference: Volume | None = None, direction: str | None = None
    ) -> None:
        """Show an in-memory volume as the input (cancelling work on the previous one).

        The direction is ``direction`` when given; else the one the study's known phase calls for
        (native → n2c, contrast → c2n); with no known phase the panel keeps its (saved) choice.
        """
        session = Session(volume)
        if reference is not None:
            session.set_reference(reference)
        phase = volume.meta.get("phase")
        wanted = direction
        if (
            wanted is None
            and phase
            and (self.session is None or self.session.input.meta.get("phase") != phase)
        ):
            wanted = default_direction(phase)
        if wanted is not None:
            index = self.engine_panel.direction.findData(wanted)
            if index >= 0 and self.engine_panel.direction.currentIndex() != index:
                self.engine_panel.direction.blockSignals(True)
                self.engine_panel.direction.setCurrentIndex(index)
                self.engine_panel.direction.blockSignals(False)
        # Old views and workers go first: the cursor is about to take the new volume's shape.
        self.engine.set_session(None)
        self.grid.set_session(None)
        self.cursor.reshape(volume.shape[::-1])
        self.session = session
        self.grid.set_session(session)
        self.stack.setCurrentWidget(self.grid)
        self.engine.set_session(session)
        self.window_toolbar.set_region("head" if is_head(volume) else "body")
        self._update_banner()
        self._update_title()

    def _update_banner(self) -> None:
        """The input's reading warnings, then the reference's (marked so)."""
        if self.session is None:
            self.banner.set_warnings([])
            return
        warnings = reading_warnings(self.session.input)
        if self.session.reference is not None:
            warnings += [f"Reference: {w}" for w in reading_warnings(self.session.reference)]
        self.banner.set_warnings(warnings)

    def _update_title(self) -> None:
        if self.session is None:
            self.setWindowTitle("MFM Studio")
            return
        meta = self.session.input.meta
        name = meta.get("series_description") or Path(meta.get("source_path", "study")).name
        self.setWindowTitle(f"MFM Studio — {name}" + ("  [PHANTOM]" if meta.get("phantom") else ""))

    # -- reference ------------------------------------------------------------------------------------
    def choose_reference(self, folder: bool = False) -> None:
        if self.session is None:
            self.report_error("No study", "Open a study first; the reference is compared with it.")
            return
        if folder:
            path = QtWidgets.QFileDialog.getExistingDirectory(
                self, "Open reference folder", self.settings.last_folder
            )
        else:
            path, _ = QtWidgets.QFileDialog.getOpenFileName(
                self, "Open reference", self.settings.last_folder, STUDY_FILTER
            )
        if path:
            self.open_reference(path)

    def open_reference(self, path: str | Path, resample: bool | None = None) -> bool:
        """Open a reference for the input; on another grid it is refused, or resampled if asked/allowed."""
        if self.session is None:
            self.report_error("No study", "Open a study first; the reference is compared with it.")
            return False
        volume = self._read(str(path), "reference")
        return volume is not None and self.set_reference(volume, resample)

    def set_reference(self, volume: Volume, resample: bool | None = None) -> bool:
        """Attach an in-memory reference; ``resample=None`` asks when the grids differ."""
        try:
            self.session.set_reference(volume)
        except GeometryMismatchError as exc:
            if resample is None:
                resample = ask_resample(self, str(exc))
            if not resample:
                self.report_error("Reference refused", str(exc))
                return False
            self.session.set_reference(resample_onto(volume, self.session.input))
            self.statusBar().showMessage("Reference resampled onto the input grid", 10000)
        else:
            self.statusBar().showMessage("Reference opened", 5000)
        self.grid.rebuild()
        self.engine.update_reference_state()
        self._update_banner()
        return True

    def close_reference(self) -> None:
        if self.session is not None:
            self.session.set_reference(None)
            self.grid.rebuild()
            self.engine.update_reference_state()
            self._update_banner()

    # -- checkpoint -----------------------------------------------------------------------------------
    def choose_checkpoint(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self,
            "Open checkpoint",
            self.settings.last_folder,
            "Checkpoints (*.safetensors *.json);;All files (*)",
        )
        if path:
            self.open_checkpoint(path)

    def open_checkpoint(self, path: str | Path, label: str | None = None) -> bool:
        """Load a model checkpoint; errors become a dialog and leave the current model selected."""
        ok = self.engine.add_checkpoint(path, label)
        if ok:
            self._remember_folder(str(path))
        if ok and self.session is not None:
            self.grid.rebuild()
        return ok

    # -- export ---------------------------------------------------------------------------------------
    def _synthetic_for_export(self) -> Volume | None:
        if self.session is None or self.session.synthetic is None:
            self.report_error("Nothing to export", "Translate the volume first (Engine ▸ Translate volume).")
            return None
        return self.session.synthetic

    def choose_export(self, fmt: str) -> None:
        volume = self._synthetic_for_export()
        if volume is None:
            return
        stamp = _dt.datetime.now().strftime("%Y%m%d_%H%M%S")
        name = f"synthetic_{volume.meta.get('phase', 'series')}_{stamp}"
        if fmt == "dicom":
            parent = QtWidgets.QFileDialog.getExistingDirectory(
                self, "Export DICOM series into folder", self.settings.last_folder
            )
            if not parent:
                return
            target = Path(parent)
            if target.exists() and any(target.iterdir()):
                target = target / name  # never write into a folder that holds other files
        else:
            path, _ = QtWidgets.QFileDialog.getSaveFileName(
                self,
                "Export NIfTI",
                str(Path(self.settings.last_folder) / f"{name}.nii.gz"),
                "NIfTI (*.nii.gz *.nii)",
            )
            if not path:
                return
            target = Path(path)
        self.export_synthetic(target, fmt)

    def export_synthetic(self, path: str | Path, fmt: str = "dicom"):
        """Write the synthetic volume as a DICOM series (with the source's patient/study) or NIfTI."""
        from mfm_engine.io.write import write_study

        volume = self._synthetic_for_export()
        if volume is None:
            return None
        volume = self._with_reading_warnings(volume)
        notes: list[str] = []
        try:
            written = write_study(volume, path, format=fmt, source=self.session.input, notes=notes)
        except Exception as exc:
            self.report_error("Export failed", f"Could not write {path}:\n{plain_message(exc)}")
            return None
        self.export_notes = notes
        if notes:
            # What the file could not keep of the source is worth a box, not a 10-second status line.
            lines = "\n\n".join(f"• {note}" for note in notes)
            text = f"Exported to {path}, but:\n\n{lines}"
            self.last_message = show_error(self, "Exported, with notes", text)
        self.statusBar().showMessage(f"Exported the synthetic volume to {path}", 10000)
        return written

    def _with_reading_warnings(self, volume: Volume) -> Volume:
        """A shallow copy whose metadata carries the input's reading warnings (DICOM/NIfTI provenance)."""
        from dataclasses import replace

        warnings = reading_warnings(self.session.input) if self.session is not None else []
        meta = dict(volume.meta)
        meta["warnings"] = list(dict.fromkeys([*(meta.get("warnings") or []), *warnings]))
        provenance = dict(meta.get("provenance") or {})
        provenance["source_reading_warnings"] = warnings
        meta["provenance"] = provenance
        return replace(volume, meta=meta)

    # -- screenshot -----------------------------------------------------------------------------------
    def choose_screenshot(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self,
            "Save screenshot",
            str(Path(self.settings.last_folder) / "mfm_viewer.png"),
            "PNG image (*.png)",
        )
        if path:
            self.save_screenshot(path)

    def save_screenshot(self, path: str | Path) -> bool:
        """Write the whole window to a PNG."""
        path = Path(path)
        if path.suffix.lower() != ".png":
            path = path.with_suffix(".png")
        # Lay out what changed since the last event-loop turn (e.g. the status bar's HU readout).
        for widget in (self.statusBar(), self.window_toolbar, self.display_toolbar, self.banner, self):
            if widget.layout() is not None:
                widget.layout().activate()
        image = self.grab().toImage()
        image.setText("Software", "MFM Studio viewer")
        if self.session is not None:
            # The banner is in the picture; the PNG's text chunks keep the warnings as text too.
            image.setText("Source", str(self.session.input.meta.get("source_path", "")))
            for n, warning in enumerate(reading_warnings(self.session.input), start=1):
                image.setText(f"Reading warning {n}", warning)
        ok = image.save(str(path), "PNG")
        if not ok:
            self.report_error("Screenshot failed", f"Could not write {path}")
        return ok

    # -- events ---------------------------------------------------------------------------------------
    def _on_display_changed(self) -> None:
        t = self.display_toolbar
        self.grid.layout_name = t.layout_name
        self.grid.diff_mode = t.diff_mode
        self.grid.rebuild()
        self.grid.set_diff_display(t.diff_range, t.opacity)
        for key, value in (
            ("layout", t.layout_name),
            ("diff_mode", t.diff_mode),
            ("diff_range", t.diff_range),
            ("overlay_opacity", t.opacity),
        ):
            self.settings.set(f"display/{key}", value)

    def _on_synthetic_changed(self) -> None:
        session = self.session
        if session is None:
            return
        if session.synthetic is not None and not session.synthetic_is_current:
            note = f"other planes: {session.synthetic_key.short_label()}, translate again to update"
        elif session.synthetic is not None:
            note = session.synthetic_key.short_label()
        else:
            note = session.current_key.short_label() if session.current_key else ""
        self.grid.synthetic_note = note
        self.grid.translating = self.engine.translating
        self.grid.rebuild(keys={SYNTHETIC})
        self.grid.set_translating(self.engine.translating)  # only the synthetic and difference images changed

    def _on_cursor(self, what: str) -> None:
        if what == "window":
            self.settings.window = self.cursor.window

    def dragEnterEvent(self, ev: QtGui.QDragEnterEvent) -> None:  # noqa: N802
        if ev.mimeData().hasUrls() and any(u.isLocalFile() for u in ev.mimeData().urls()):
            ev.acceptProposedAction()

    def dropEvent(self, ev: QtGui.QDropEvent) -> None:  # noqa: N802
        paths = [u.toLocalFile() for u in ev.mimeData().urls() if u.isLocalFile()]
        if paths:
            ev.acceptProposedAction()
            self.open_study(paths[0])

    def closeEvent(self, ev: QtGui.QCloseEvent) -> None:  # noqa: N802
        self.engine.shutdown()
        self.settings.set("window/geometry", self.saveGeometry())
        self.settings.sync()
        super().closeEvent(ev)
