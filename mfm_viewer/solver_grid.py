"""The solver comparison view: the current axial slice translated with many solver × steps settings.

Each tile is one setting's synthetic slice (labelled SYNTHETIC) with its NFE and wall time and, with
a reference loaded, MAE / SSIM / PSNR in the reference's body mask. A toggle shows every tile's
difference to the reference (or, without one, to the most accurate setting) in the diverging map with
a HU colour bar; the last tile is the disagreement map (max − min over the settings) over the grey
input. Tiles fill in as a worker thread finishes them (cheapest first); moving the crosshair to another
slice drops the rest of the old request. Below: the table and a quality-versus-NFE plot, with export
of the table (CSV / Markdown) and of the grid (PNG). Mode "checkpoints" puts every loaded model side
by side at fixed settings instead.

The widget only lays out and listens; the arithmetic is in ``logic.solver_grid_logic`` and the runs
are ``mfm_engine.compare.run_setting``, the same code as ``mfm compare``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from mfm_engine.compare import DEFAULT_GRID, CompareError, Setting, markdown_table, parse_grid, write_csv
from mfm_viewer.colorbar import ColorBar, GradientBar
from mfm_viewer.dialogs import plain_message
from mfm_viewer.logic.cursor import CursorModel
from mfm_viewer.logic.difference import suggested_range
from mfm_viewer.logic.orientation import DisplayOrientation, normal_position_text, orientation_for
from mfm_viewer.logic.solver_grid_logic import (
    ResultCache,
    TileResult,
    TileSpec,
    base_spec,
    differences,
    diverging_rgb,
    grey_rgb,
    grid_shape,
    plan_tiles,
    plot_series,
    run_order,
    spread,
    spread_lut,
    spread_overlay_rgb,
)
from mfm_viewer.workers import ENGINE_LOCK

SYNTHETIC_ORANGE = "#ff8c1a"
_FORWARD_LETTER = {"S", "A", "L"}
_SERIES_COLOURS = ("#4fa3ff", "#ff8c1a", "#5fbf5f", "#e0504f", "#c77dff", "#e8d24a", "#3dd6c6", "#ff6fb5")


# -- the context: what the main window knows ----------------------------------------------------
@dataclass
class GridContext:
    """How the grid reads the main window: the open session, the loaded models, the engine's choice."""

    session: Callable[[], Any]  # -> Session | None
    models: Callable[[], list[tuple[str, str]]]  # -> [(label, model_id)]
    translator: Callable[[str], Any]  # model_id -> Translator | None
    current: Callable[[], tuple[str | None, str, str, int]]  # -> (model_id, direction, solver, steps)


def context_for(window: Any) -> GridContext:
    """A GridContext reading a MainWindow (its session and its engine controller)."""
    engine = window.engine

    def current() -> tuple[str | None, str, str, int]:
        c = engine.panel.choices()
        return (c["model"] or None, c["direction"], c["solver"], int(c["steps"]))

    return GridContext(
        session=lambda: window.session,
        models=lambda: [(label, mid) for label, mid in engine.models],
        translator=lambda mid: engine.translators.get(mid),
        current=current,
    )


# -- the worker ---------------------------------------------------------------------------------
@dataclass
class GridJob:
    """Run these tiles on one axial slice (copies owned by the job)."""

    generation: int
    index: int
    specs: list[TileSpec]  # in run order
    translators: dict[str, Any]
    hu: np.ndarray
    reference: np.ndarray | None


class SolverGridWorker(QtCore.QThread):
    """Runs the tiles of the latest request one after another; a newer request or Cancel stops the rest."""

    tile_started = QtCore.Signal(int, object)  # generation, TileSpec
    tile_done = QtCore.Signal(int, object)  # generation, TileResult
    tile_failed = QtCore.Signal(int, object, str)  # generation, TileSpec, message
    job_finished = QtCore.Signal(int, str)  # generation, 'done' | 'cancelled' | 'superseded'

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self._cond = threading.Condition()
        self._pending: GridJob | None = None
        self._stop = False
        self._cancel = threading.Event()
        self.dropped = 0  # requests replaced before they started (stale slices)

    def request(self, job: GridJob) -> None:
        """Queue ``job``; a request not yet started is dropped, a running one stops after its tile."""
        with self._cond:
            if self._pending is not None:
                self.dropped += 1
            self._pending = job
            self._cancel.clear()
            self._cond.notify()

    def cancel(self) -> bool:
        """Stop after the running tile and drop what is queued; True when a queued job was dropped."""
        with self._cond:
            dropped = self._pending is not None
            self._pending = None
            self._cancel.set()
        return dropped

    def stop(self) -> None:
        """End the thread after the running tile."""
        with self._cond:
            self._stop = True
            self._pending = None
            self._cancel.set()
            self._cond.notify()

    def _interrupted(self) -> str | None:
        with self._cond:
            if self._stop or self._cancel.is_set():
                return "cancelled"
            if self._pending is not None:
                return "superseded"
        return None

    def run(self) -> None:
        from mfm_engine.compare import run_setting
        from mfm_engine.metrics import body_mask

        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                job, self._pending = self._pending, None
            outcome = "done"
            mask = body_mask(job.reference) if job.reference is not None else None
            for spec in job.specs:
                if (why := self._interrupted()) is not None:
                    outcome = why
                    break
                self.tile_started.emit(job.generation, spec)
                try:
                    translator = job.translators[spec.model_id]
                    with ENGINE_LOCK:
                        run = run_setting(
                            translator,
                            job.hu,
                            spec.setting,
                            direction=spec.direction,
                            reference=job.reference,
                            mask=mask,
                            model=spec.model_label,
                        )
                except Exception as exc:  # plain words in the tile; the other tiles carry on
                    self.tile_failed.emit(job.generation, spec, plain_message(exc))
                    continue
                row = run.row
                metrics = (
                    None
                    if job.reference is None
                    else {"mae_hu": row.mae_hu, "ssim": row.ssim, "psnr_db": row.psnr_db}
                )
                result = TileResult(
                    spec, job.index, run.hu, row.nfe, row.seconds, metrics, solver=row.solver, steps=row.steps
                )
                self.tile_done.emit(job.generation, result)
            self.job_finished.emit(job.generation, outcome)


# -- tiles --------------------------------------------------------------------------------------
def _qimage(rgb: np.ndarray) -> QtGui.QImage:
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape
    # copy(): the QImage must own its pixels once the numpy array goes away.
    return QtGui.QImage(rgb.data, w, h, 3 * w, QtGui.QImage.Format.Format_RGB888).copy()


class SolverTile(QtWidgets.QWidget):
    """One image with a heading (setting, SYNTHETIC badge) and a footer (cost, metrics)."""

    clicked = QtCore.Signal(int, int)  # displayed (row, col) of the pixel under a left click
    wheeled = QtCore.Signal(int)  # notches

    HEADER, FOOTER = 22, 34
    MIN_TEXT_WIDTH = 190  # pixels the footer's two lines need

    def __init__(self, title: str, synthetic: bool, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.synthetic = synthetic
        self.status = "waiting…"
        self.cost_text = ""
        self.metrics_text = ""
        self.note = ""
        self.image: QtGui.QImage | None = None
        self.pixel_mm = (1.0, 1.0)  # (row, col) size of a displayed pixel
        self.crosshair: tuple[int, int] | None = None
        self.setMinimumSize(150, 170)
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Expanding)

    def set_image(self, rgb: np.ndarray | None) -> None:
        """Show an (H, W, 3) uint8 image (None: the status text instead)."""
        self.image = None if rgb is None else _qimage(rgb)
        self.update()

    def image_rect(self) -> QtCore.QRectF:
        """Where the image is drawn: fitted at physical aspect between heading and footer."""
        area = QtCore.QRectF(2, self.HEADER, self.width() - 4, self.height() - self.HEADER - self.FOOTER)
        if self.image is None or area.width() <= 0 or area.height() <= 0:
            return area
        w_mm = self.image.width() * self.pixel_mm[1]
        h_mm = self.image.height() * self.pixel_mm[0]
        scale = min(area.width() / w_mm, area.height() / h_mm)
        w, h = w_mm * scale, h_mm * scale
        return QtCore.QRectF(area.center().x() - w / 2, area.center().y() - h / 2, w, h)

    def paintEvent(self, ev: QtGui.QPaintEvent) -> None:  # noqa: N802
        p = QtGui.QPainter(self)
        p.fillRect(self.rect(), QtGui.QColor("#111111"))
        font = p.font()
        font.setPixelSize(12)
        font.setBold(True)
        p.setFont(font)
        p.fillRect(QtCore.QRect(0, 0, self.width(), self.HEADER), QtGui.QColor("#2a2a2a"))
        badge_w = 0
        if self.synthetic:
            small = QtGui.QFont(font)
            small.setPixelSize(10)
            p.setFont(small)
            badge_w = QtGui.QFontMetrics(small).horizontalAdvance("SYNTHETIC") + 10
            badge = QtCore.QRect(self.width() - badge_w - 4, 3, badge_w, self.HEADER - 6)
            p.setPen(QtGui.QPen(QtGui.QColor(SYNTHETIC_ORANGE), 1.5))
            p.drawRoundedRect(badge, 3, 3)
            p.drawText(badge, QtCore.Qt.AlignmentFlag.AlignCenter, "SYNTHETIC")
            p.setFont(font)
        p.setPen(QtGui.QColor("#f0f0f0"))
        room = max(self.width() - badge_w - 16, 10)
        title = QtGui.QFontMetrics(font).elidedText(self.title, QtCore.Qt.TextElideMode.ElideRight, room)
        p.drawText(QtCore.QRect(6, 0, room, self.HEADER), _ALIGN_LEFT, title)
        rect = self.image_rect()
        if self.image is not None:
            p.setRenderHint(QtGui.QPainter.RenderHint.SmoothPixmapTransform, False)
            p.drawImage(rect, self.image)
            if self.crosshair is not None:
                row, col = self.crosshair
                sx = rect.width() / self.image.width()
                sy = rect.height() / self.image.height()
                x, y = rect.left() + (col + 0.5) * sx, rect.top() + (row + 0.5) * sy
                p.setPen(QtGui.QPen(QtGui.QColor(224, 80, 79, 150), 1))
                p.drawLine(QtCore.QPointF(x, rect.top()), QtCore.QPointF(x, rect.bottom()))
                p.drawLine(QtCore.QPointF(rect.left(), y), QtCore.QPointF(rect.right(), y))
        else:
            p.setPen(QtGui.QColor("#a0a0a0"))
            font.setBold(False)
            p.setFont(font)
            p.drawText(
                rect, QtCore.Qt.AlignmentFlag.AlignCenter | QtCore.Qt.TextFlag.TextWordWrap, self.status
            )
        font.setBold(False)
        font.setPixelSize(11)
        p.setFont(font)
        fm = QtGui.QFontMetrics(font)
        width = self.width() - 8
        if self.note and self.image is not None:
            p.setPen(QtGui.QColor("#202020"))
            note = fm.elidedText(self.note, QtCore.Qt.TextElideMode.ElideRight, int(rect.width()) - 8)
            box = QtCore.QRectF(rect.left(), rect.top(), fm.horizontalAdvance(note) + 8, 16)
            p.fillRect(box, QtGui.QColor(0, 0, 0, 160))
            p.setPen(QtGui.QColor("#9fe0ff"))
            p.drawText(box.adjusted(4, 0, 0, 0), _ALIGN_LEFT, note)
        footer = QtCore.QRect(4, self.height() - self.FOOTER, width, self.FOOTER // 2)
        p.setPen(QtGui.QColor("#e0e0e0"))
        p.drawText(
            footer, _ALIGN_LEFT, fm.elidedText(self.cost_text, QtCore.Qt.TextElideMode.ElideRight, width)
        )
        p.setPen(QtGui.QColor("#9fe0ff"))
        metrics = fm.elidedText(self.metrics_text, QtCore.Qt.TextElideMode.ElideRight, width)
        p.drawText(footer.translated(0, self.FOOTER // 2), _ALIGN_LEFT, metrics)
        p.end()

    def _pixel_at(self, pos: QtCore.QPointF) -> tuple[int, int] | None:
        if self.image is None:
            return None
        rect = self.image_rect()
        if not rect.contains(pos):
            return None
        col = int((pos.x() - rect.left()) / rect.width() * self.image.width())
        row = int((pos.y() - rect.top()) / rect.height() * self.image.height())
        return min(row, self.image.height() - 1), min(col, self.image.width() - 1)

    def mousePressEvent(self, ev: QtGui.QMouseEvent) -> None:  # noqa: N802
        hit = self._pixel_at(ev.position())
        if ev.button() == QtCore.Qt.MouseButton.LeftButton and hit is not None:
            self.clicked.emit(*hit)
            ev.accept()
        else:
            super().mousePressEvent(ev)

    def wheelEvent(self, ev: QtGui.QWheelEvent) -> None:  # noqa: N802
        delta = ev.angleDelta().y()
        if delta:
            self.wheeled.emit(int(delta / 120) or (1 if delta > 0 else -1))
        ev.accept()


_ALIGN_LEFT = QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignVCenter


class SpreadBar(GradientBar):
    """The disagreement map's bar, 0 … range HU."""

    title_lines = ("spread", "HU")

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(spread_lut(), 50.0, parent)
        self.setFixedWidth(80)
        self.setToolTip("Disagreement: max − min HU over the settings at each pixel")

    def tick_text(self, frac: float) -> str:
        return f"{self.range_hu * (1 - frac):.0f}"


# -- the view -----------------------------------------------------------------------------------
INPUT_TILE, REFERENCE_TILE, SPREAD_TILE = "input", "reference", "spread"


class SolverGridView(QtWidgets.QWidget):
    """Tiles of one axial slice under many settings, with table, quality-vs-NFE plot and export."""

    tiles_changed = QtCore.Signal()  # a tile was filled or the layout rebuilt (for tests and listeners)

    def __init__(
        self, cursor: CursorModel, context: GridContext, parent: QtWidgets.QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("MFM Studio — solver comparison")
        self.cursor = cursor
        self.context = context
        self.mode = "solvers"
        self.settings_text = {"solvers": ",".join(s.token for s in DEFAULT_GRID), "checkpoints": ""}
        self.diff_mode = False
        self.range_hu = 0.0  # 0 = automatic
        self.cache = ResultCache()
        self.specs: list[TileSpec] = []
        self.results: dict[TileSpec, TileResult] = {}
        self.failures: dict[TileSpec, str] = {}
        self.running: TileSpec | None = None
        self.generation = 0
        self.busy = False
        self.index = -1
        self._signature: tuple | None = None
        self._cache_owner: tuple | None = None
        self._orientation: DisplayOrientation | None = None
        self._pixel_mm = (1.0, 1.0)
        self._grid_shape: tuple[int, int] | None = None
        self.plot_series: dict[str, list[tuple[int, float, str]]] = {}
        self.tiles: dict[Any, SolverTile] = {}
        self.worker = SolverGridWorker(self)
        self.worker.tile_started.connect(self._on_tile_started)
        self.worker.tile_done.connect(self._on_tile_done)
        self.worker.tile_failed.connect(self._on_tile_failed)
        self.worker.job_finished.connect(self._on_job_finished)
        self.worker.start()
        self._build()
        self._unsubscribe = cursor.subscribe(self._on_cursor)
        # The main window has no signal for every change the grid cares about (reference opened,
        # model added): a cheap signature check while the view is visible catches them all.
        self._poll = QtCore.QTimer(self)
        self._poll.setInterval(400)
        self._poll.timeout.connect(self.refresh)
        self.resize(1500, 1000)

    # -- building -----------------------------------------------------------------------------
    def _build(self) -> None:
        bar = QtWidgets.QHBoxLayout()
        self.mode_box = QtWidgets.QComboBox()
        self.mode_box.addItem("Solvers (current model)", "solvers")
        self.mode_box.addItem("Checkpoints (fixed settings)", "checkpoints")
        self.mode_box.currentIndexChanged.connect(lambda _i: self.set_mode(self.mode_box.currentData()))
        self.settings_edit = QtWidgets.QLineEdit(self.settings_text["solvers"])
        self.settings_edit.setToolTip("solver:steps, comma-separated (e.g. euler:1,heun:2,rk4:1,dopri5)")
        self.settings_edit.editingFinished.connect(self._on_settings_edited)
        self.default_button = QtWidgets.QPushButton("Default")
        self.default_button.clicked.connect(self._reset_settings)
        self.diff_check = QtWidgets.QCheckBox("Difference")
        self.diff_check.setToolTip(
            "Each tile minus the reference (or, without one, minus the most accurate tile)"
        )
        self.diff_check.toggled.connect(self.set_diff_mode)
        self.range_spin = QtWidgets.QSpinBox()
        self.range_spin.setRange(0, 2000)
        self.range_spin.setSingleStep(10)
        self.range_spin.setSpecialValueText("auto")
        self.range_spin.setPrefix("±")
        self.range_spin.setSuffix(" HU")
        self.range_spin.valueChanged.connect(self._on_range)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.rerun_button = QtWidgets.QPushButton("Run")
        self.rerun_button.setToolTip("Run the tiles that are missing (after Cancel)")
        self.rerun_button.clicked.connect(lambda: self.refresh(force=True))
        export_table = QtWidgets.QPushButton("Export table…")
        export_table.clicked.connect(self._choose_table_file)
        export_png = QtWidgets.QPushButton("Export PNG…")
        export_png.clicked.connect(self._choose_png_file)
        for w in (QtWidgets.QLabel("Compare"), self.mode_box, QtWidgets.QLabel("Settings")):
            bar.addWidget(w)
        bar.addWidget(self.settings_edit, 1)
        for w in (
            self.default_button,
            self.diff_check,
            self.range_spin,
            self.rerun_button,
            self.cancel_button,
            export_table,
            export_png,
        ):
            bar.addWidget(w)

        self.heading = QtWidgets.QLabel("")
        self.heading.setStyleSheet("color: #f0f0f0; background: #2a2a2a; font-weight: bold; padding: 4px;")
        self.status = QtWidgets.QLabel("")
        self.status.setStyleSheet("color: #c0c0c0; padding: 2px 4px;")

        self.tiles_area = QtWidgets.QWidget()
        self.tiles_area.setStyleSheet("background: #111111;")
        area = QtWidgets.QHBoxLayout(self.tiles_area)
        area.setContentsMargins(2, 2, 2, 2)
        area.setSpacing(4)
        self.tiles_box = QtWidgets.QWidget()
        self.tile_grid = QtWidgets.QGridLayout(self.tiles_box)
        self.tile_grid.setContentsMargins(0, 0, 0, 0)
        self.tile_grid.setSpacing(4)
        area.addWidget(self.tiles_box, 1)
        self.colorbar = ColorBar(self.tiles_area)
        self.colorbar.setToolTip("Difference in HU: red = tile higher, blue = tile lower")
        self.spreadbar = SpreadBar(self.tiles_area)
        area.addWidget(self.colorbar)
        area.addWidget(self.spreadbar)
        grid_panel = QtWidgets.QWidget()
        gl = QtWidgets.QVBoxLayout(grid_panel)
        gl.setContentsMargins(0, 0, 0, 0)
        gl.setSpacing(0)
        gl.addWidget(self.heading)
        gl.addWidget(self.tiles_area, 1)
        self.grid_panel = grid_panel

        self.table = QtWidgets.QTableWidget(0, 8)
        self.table.setHorizontalHeaderLabels(
            ["model", "solver", "steps", "NFE", "seconds", "MAE (HU)", "SSIM", "PSNR (dB)"]
        )
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.plot = pg.PlotWidget(background="#181818")
        self.plot.setLogMode(x=True, y=False)
        self.plot.setLabel("bottom", "NFE (network evaluations, log scale)")
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.plot.addLegend(offset=(-10, 10))
        self.plot.setTitle("Quality versus cost")
        self.plot.getViewBox().setDefaultPadding(0.1)  # room for the point labels at the edges

        lower = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        lower.addWidget(self.table)
        lower.addWidget(self.plot)
        lower.setSizes([700, 700])
        split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        split.addWidget(grid_panel)
        split.addWidget(lower)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        split.setSizes([700, 300])

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(bar)
        layout.addWidget(split, 1)
        layout.addWidget(self.status)
        self._update_bars()

    # -- controls -----------------------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        """'solvers' (settings of the current model) or 'checkpoints' (every loaded model)."""
        if mode == self.mode:
            return
        self.mode = mode
        index = self.mode_box.findData(mode)
        if self.mode_box.currentIndex() != index:
            self.mode_box.blockSignals(True)
            self.mode_box.setCurrentIndex(index)
            self.mode_box.blockSignals(False)
        text = self.settings_text.get(mode) or self._engine_setting_text()
        self.settings_edit.setText(text)
        self.refresh(force=True)

    def set_settings(self, text: str) -> bool:
        """Use a new settings list ('euler:1,heun:2,…'); False (and a status message) when it is not valid."""
        try:
            parse_grid(text)
        except CompareError as exc:
            self.status.setText(str(exc))
            return False
        self.settings_edit.setText(text)
        self.settings_text[self.mode] = text
        self.refresh(force=True)
        return True

    def set_diff_mode(self, on: bool) -> None:
        """Show each tile's difference (True) or its grey image (False)."""
        self.diff_mode = bool(on)
        if self.diff_check.isChecked() != self.diff_mode:
            self.diff_check.setChecked(self.diff_mode)
        self._update_bars()
        self._render_all()

    def _on_range(self, value: int) -> None:
        self.range_hu = float(value)
        self._render_all()

    def _on_settings_edited(self) -> None:
        if self.settings_edit.text() != self.settings_text.get(self.mode):
            self.set_settings(self.settings_edit.text())

    def _reset_settings(self) -> None:
        text = (
            ",".join(s.token for s in DEFAULT_GRID) if self.mode == "solvers" else self._engine_setting_text()
        )
        self.set_settings(text)

    def _engine_setting_text(self) -> str:
        _model, _direction, solver, steps = self.context.current()
        return f"{solver}:{steps}"

    def cancel(self) -> None:
        """Stop the running comparison after its current tile; the finished tiles stay."""
        if self.worker.cancel():
            self._on_job_finished(self.generation, "cancelled")  # it never started: no signal will come
        elif self.busy:
            self.status.setText("Cancelling after the running tile…")

    # -- the request --------------------------------------------------------------------------
    def _settings(self) -> list[Setting]:
        # The applied list, not the edit box: half-typed text must not start runs.
        text = self.settings_text.get(self.mode) or self._engine_setting_text()
        try:
            return parse_grid(text)
        except CompareError as exc:
            self.status.setText(str(exc))
            return []

    def refresh(self, force: bool = False) -> None:
        """Bring the tiles in line with the slice, the session and the settings; run what is missing."""
        if not self.isVisible() and not force:
            return
        session = self.context.session()
        model, direction, _solver, _steps = self.context.current()
        models = tuple(self.context.models())
        index = self.cursor.ijk[2]
        if session is not None and index >= session.input.shape[0]:
            return  # the cursor is about to be reshaped for a new study
        owner = (
            id(session),
            id(session.input) if session else None,
            id(session.reference) if session else None,
        )
        if owner != self._cache_owner:
            self.cache.clear()  # another study, or a reference that changes every tile's metrics
            self._cache_owner = owner
        specs = plan_tiles(self.mode, self._settings(), [(lbl, mid) for lbl, mid in models], model, direction)
        signature = (owner, tuple(specs), index, self.mode)
        if signature == self._signature and not force:
            return
        self._signature = signature
        self.index = index
        layout_changed = specs != self.specs or session is None
        self.specs = specs
        self.results = {}
        self.failures = {}
        self.running = None
        if session is not None:
            self._orientation = orientation_for(session.input, "axial")
            self._pixel_mm = self._orientation.display_spacing(session.input.spacing)
        for spec in specs:
            cached = self.cache.get(spec, index)
            if cached is not None:
                self.results[spec] = cached
        if layout_changed or not self.tiles:
            self._rebuild_tiles()
        self._update_heading()
        self._render_all()
        missing = [s for s in specs if s not in self.results]
        if session is None or not missing:
            self.worker.cancel()
            self.generation += 1  # whatever still runs belongs to an older request now
            self.busy = False
            self._update_status()
            return
        translators = {s.model_id: self.context.translator(s.model_id) for s in missing}
        order = [missing[i] for i in run_order(missing)]
        self.generation += 1
        ref = session.reference.slice("axial", index).copy() if session.reference is not None else None
        job = GridJob(
            self.generation, index, order, translators, session.input.slice("axial", index).copy(), ref
        )
        self.busy = True
        self.worker.request(job)
        self._update_status()

    def _rebuild_tiles(self) -> None:
        for tile in self.tiles.values():
            # Hidden at once: deleteLater alone leaves the old tile painted until the next event loop turn.
            tile.hide()
            self.tile_grid.removeWidget(tile)
            tile.deleteLater()
        self.tiles = {}
        self._grid_shape = None
        session = self.context.session()
        keys: list[Any] = []
        if session is not None:
            keys.append(INPUT_TILE)
            if session.reference is not None:
                keys.append(REFERENCE_TILE)
            keys += self.specs
            if len(self.specs) >= 2:
                keys.append(SPREAD_TILE)
        for key in keys:
            tile = self._make_tile(key)
            tile.pixel_mm = self._pixel_mm
            tile.clicked.connect(self._on_tile_clicked)
            tile.wheeled.connect(self._on_tile_wheel)
            self.tiles[key] = tile
        self._relayout()
        self.table.setColumnHidden(0, self.mode == "solvers")
        self.tiles_changed.emit()

    def _relayout(self) -> None:
        """Put the tiles in the rows × columns that make their images largest in the space there is."""
        n = len(self.tiles)
        session = self.context.session()
        aspect = 1.0
        if session is not None and self._orientation is not None:
            n_v, n_h = self._orientation.display_shape(session.input.shape[::-1])
            aspect = (n_v * self._pixel_mm[0]) / max(n_h * self._pixel_mm[1], 1e-6)
        width, height = self.tiles_box.width(), self.tiles_box.height()
        if width < 200 or height < 150:  # not laid out yet: assume the window's usual share
            width, height = 1300, 620
        extra = SolverTile.HEADER + SolverTile.FOOTER + 4
        shape = grid_shape(n, aspect, width, height, extra_h=extra, min_w=SolverTile.MIN_TEXT_WIDTH)
        if shape == self._grid_shape:
            return
        self._grid_shape = shape
        rows, cols = shape
        for tile in self.tiles.values():
            self.tile_grid.removeWidget(tile)
        for c in range(self.tile_grid.columnCount()):
            self.tile_grid.setColumnStretch(c, 0)
        for r in range(self.tile_grid.rowCount()):
            self.tile_grid.setRowStretch(r, 0)
        for k, tile in enumerate(self.tiles.values()):
            self.tile_grid.addWidget(tile, k // max(cols, 1), k % max(cols, 1))
            tile.show()
        for c in range(max(cols, 1)):
            self.tile_grid.setColumnStretch(c, 1)
        for r in range(max(rows, 1)):
            self.tile_grid.setRowStretch(r, 1)

    def _make_tile(self, key: Any) -> SolverTile:
        session = self.context.session()
        if key == INPUT_TILE:
            phase = session.input.meta.get("phase") or ""
            return SolverTile(f"Input{' · ' + phase if phase else ''}", session.input.is_synthetic)
        if key == REFERENCE_TILE:
            phase = session.reference.meta.get("phase") or ""
            return SolverTile(f"Reference{' · ' + phase if phase else ''}", session.reference.is_synthetic)
        if key == SPREAD_TILE:
            return SolverTile("Disagreement", True)
        title = key.title if self.mode == "solvers" else f"{key.model_label} · {key.title}"
        return SolverTile(title, True)

    # -- results ------------------------------------------------------------------------------
    def _on_tile_started(self, generation: int, spec: TileSpec) -> None:
        if generation == self.generation and spec in self.tiles:
            self.running = spec
            self.tiles[spec].status = "running…"
            self.tiles[spec].update()
            self._update_status()

    def _on_tile_done(self, generation: int, result: TileResult) -> None:
        self.cache.put(result)  # also when stale: going back to that slice is then instant
        if generation != self.generation or result.spec not in self.tiles:
            return
        self.results[result.spec] = result
        self.running = None
        self._render_all()
        self._update_status()
        self.tiles_changed.emit()

    def _on_tile_failed(self, generation: int, spec: TileSpec, message: str) -> None:
        if generation != self.generation or spec not in self.tiles:
            return
        self.failures[spec] = message
        self.tiles[spec].status = f"failed: {message}"
        self.tiles[spec].update()
        self._update_status()

    def _on_job_finished(self, generation: int, outcome: str) -> None:
        if generation != self.generation:
            return
        self.busy = False
        self.running = None
        if outcome == "cancelled":
            for spec, tile in self.tiles.items():
                if isinstance(spec, TileSpec) and spec not in self.results and spec not in self.failures:
                    tile.status = "cancelled"
                    tile.update()
        self._update_status(outcome)
        self.tiles_changed.emit()

    @property
    def finished(self) -> bool:
        """True when no tile of the current request is still to come."""
        return not self.busy

    def ordered_results(self) -> list[TileResult]:
        """Finished tiles in display order."""
        return [self.results[s] for s in self.specs if s in self.results]

    # -- drawing ------------------------------------------------------------------------------
    def _display(self, hu2d: np.ndarray) -> np.ndarray:
        return self._orientation.display(hu2d) if self._orientation is not None else hu2d

    def _base(self) -> TileResult | None:
        spec = base_spec(self.specs)
        return None if spec is None else self.results.get(spec)

    def _diff_range(self, diffs: dict) -> float:
        if self.range_hu > 0:
            return self.range_hu
        session = self.context.session()
        if not diffs or session is None:
            return 200.0
        from mfm_engine.metrics import body_mask

        mask = body_mask(session.input.slice("axial", self.index))
        stacked = np.stack(list(diffs.values()))
        return suggested_range(stacked, np.broadcast_to(mask, stacked.shape) if mask.any() else None)

    def _render_all(self) -> None:
        session = self.context.session()
        if session is None or not self.tiles or self.index < 0 or self.index >= session.input.shape[0]:
            return
        levels = self.cursor.levels
        inp = session.input.slice("axial", self.index)
        ref = session.reference.slice("axial", self.index) if session.reference is not None else None
        grey_input = grey_rgb(self._display(inp), levels)
        cross = self._crosshair()
        results = self.ordered_results()
        base = self._base()
        diffs = differences(results, ref, base) if self.diff_mode else {}
        diff_range = self._diff_range(diffs) if self.diff_mode else 0.0
        if self.diff_mode:
            self.colorbar.set_range(diff_range)
        against = "reference" if ref is not None else (base.spec.title if base is not None else "—")
        for key, tile in self.tiles.items():
            tile.crosshair = cross
            if key == INPUT_TILE:
                tile.set_image(grey_input)
                tile.cost_text = "measured" if not session.input.is_synthetic else "synthetic input"
                tile.metrics_text = ""
            elif key == REFERENCE_TILE:
                tile.set_image(grey_rgb(self._display(ref), levels))
                tile.cost_text = "measured: the metrics' reference"
                tile.metrics_text = ""
            elif key == SPREAD_TILE:
                self._render_spread(tile, results, grey_input)
            else:
                self._render_result(tile, key, grey_input, diffs, diff_range, against, base)
        self._update_table(results)
        self._update_plot(results, base, inp)

    def _render_result(self, tile, spec, grey_input, diffs, diff_range, against, base) -> None:
        result = self.results.get(spec)
        if result is None:
            tile.set_image(None)
            tile.status = self.failures.get(spec, "running…" if spec == self.running else "waiting…")
            tile.cost_text, tile.metrics_text, tile.note = "", "", ""
            return
        tile.title = result.label if self.mode == "solvers" else f"{spec.model_label} · {result.label}"
        if self.diff_mode and spec in diffs:
            tile.set_image(diverging_rgb(self._display(diffs[spec]), diff_range))
            is_base = base is not None and spec == base.spec and against != "reference"
            tile.note = "difference base" if is_base else f"Δ vs {against}"
        else:
            tile.set_image(grey_rgb(self._display(result.hu), self.cursor.levels))
            tile.note = ""
        m = result.metrics
        tile.cost_text = f"NFE {result.nfe} · {result.seconds:.2f} s"
        if m and m.get("mae_hu") is not None:
            tile.cost_text += f" · PSNR {m['psnr_db']:.1f} dB"
            tile.metrics_text = f"MAE {m['mae_hu']:.1f} HU · SSIM {m['ssim']:.3f}"
        else:
            tile.metrics_text = "no reference: no metrics" if m is None else "metrics: body mask too small"

    def _render_spread(self, tile: SolverTile, results: list[TileResult], grey_input: np.ndarray) -> None:
        s = spread(results)
        if s is None:
            tile.set_image(None)
            tile.status = "needs two finished tiles"
            tile.cost_text, tile.metrics_text = "", ""
            return
        from mfm_engine.metrics import body_mask

        session = self.context.session()
        mask = body_mask(session.input.slice("axial", self.index))
        inside = s[mask] if mask.any() else s.ravel()
        rng = suggested_range(s, mask if mask.any() else None)
        self.spreadbar.set_range(rng)
        tile.set_image(spread_overlay_rgb(grey_input, self._display(s), rng))
        tile.cost_text = f"max − min of {len(results)}/{len(self.specs)} settings"
        tile.metrics_text = f"body: median {np.median(inside):.0f} · p99 {np.percentile(inside, 99):.0f} HU"
        tile.note = ""

    def _crosshair(self) -> tuple[int, int] | None:
        session = self.context.session()
        if session is None or self._orientation is None:
            return None
        return self._orientation.ijk_to_display(self.cursor.ijk, session.input.shape[::-1])

    def _update_bars(self) -> None:
        self.colorbar.setVisible(self.diff_mode)
        self.spreadbar.setVisible(True)

    def _update_heading(self) -> None:
        session = self.context.session()
        if session is None:
            self.heading.setText("No study open")
            return
        n = session.input.shape[0]
        where = normal_position_text(session.input, "axial", self.index)
        _model, direction, _s, _n = self.context.current()
        arrow = "contrast → native" if direction == "c2n" else "native → contrast"
        what = "solver settings" if self.mode == "solvers" else "checkpoints"
        phantom = "  ·  PHANTOM" if session.input.meta.get("phantom") else ""
        self.heading.setText(f"Axial slice {self.index + 1}/{n} ({where})  ·  {arrow}  ·  {what}{phantom}")
        if not self.specs:
            none = "No model loaded: open a checkpoint in the main window."
            self.status.setText(none if self.mode == "solvers" else "No checkpoints loaded.")

    def _update_status(self, outcome: str | None = None) -> None:
        if not self.specs:
            return
        done = len(self.results)
        total = len(self.specs)
        if self.busy:
            running = f", running {self.running.title}" if self.running is not None else ""
            text = f"{done}/{total} settings done{running}…"
        elif outcome == "cancelled":
            text = f"Cancelled: {done}/{total} settings done (Run continues)."
        else:
            text = f"{done}/{total} settings done."
        if self.failures:
            text += f"  {len(self.failures)} failed."
        self.status.setText(text)

    def _update_table(self, results: list[TileResult]) -> None:
        self.table.setRowCount(len(results))
        for r, result in enumerate(results):
            row = result.row()

            def fmt(v, digits):
                return "" if v is None else f"{v:.{digits}f}"

            cells = [
                row.model,
                row.solver,
                str(row.steps),
                str(row.nfe),
                f"{row.seconds:.3f}",
                fmt(row.mae_hu, 2),
                fmt(row.ssim, 4),
                fmt(row.psnr_db, 2),
            ]
            for c, text in enumerate(cells):
                item = QtWidgets.QTableWidgetItem(text)
                if c >= 2:
                    item.setTextAlignment(
                        QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter
                    )
                self.table.setItem(r, c, item)

    def _update_plot(self, results: list[TileResult], base: TileResult | None, inp: np.ndarray) -> None:
        from mfm_engine.metrics import body_mask

        self.plot.clear()
        mask = body_mask(inp)
        title, series = plot_series(results, self.mode, base, mask if mask.any() else None)
        self.plot.setLabel("left", title)
        self.plot_series = series
        for n, (name, points) in enumerate(sorted(series.items())):
            colour = _SERIES_COLOURS[n % len(_SERIES_COLOURS)]
            xs = [float(p[0]) for p in points]
            ys = [p[1] for p in points]
            self.plot.plot(
                xs,
                ys,
                pen=pg.mkPen(colour, width=2),
                symbol="o",
                symbolBrush=colour,
                symbolPen=None,
                symbolSize=8,
                name=name,
            )
            for x, y, label in points:
                text = pg.TextItem(label, color=colour, anchor=(0, 1))
                text.setPos(np.log10(max(x, 1)), y)  # item positions are in the log-x view coordinates
                self.plot.addItem(text)
        nfes = [max(float(p[0]), 1.0) for points in series.values() for p in points]
        if nfes:
            # Extra room on the right, where the legend sits, so that it never hides the costliest point.
            lo, hi = np.log10(min(nfes)), np.log10(max(nfes))
            span = max(hi - lo, 0.3)
            self.plot.setXRange(lo - 0.1 * span, hi + 0.4 * span, padding=0)

    # -- interaction --------------------------------------------------------------------------
    def _on_cursor(self, what: str) -> None:
        if what == "position":
            if self.cursor.ijk[2] != self.index:
                self.refresh()
            else:
                cross = self._crosshair()
                for tile in self.tiles.values():
                    tile.crosshair = cross
                    tile.update()
        elif what == "window":
            self._render_all()

    def _on_tile_clicked(self, row: int, col: int) -> None:
        session = self.context.session()
        if session is None or self._orientation is None:
            return
        shape_xyz = session.input.shape[::-1]
        self.cursor.set_ijk(self._orientation.display_to_ijk(row, col, self.cursor.ijk, shape_xyz))

    def _on_tile_wheel(self, notches: int) -> None:
        session = self.context.session()
        if session is None:
            return
        sign = 1 if session.input.axis_letters(2)[0] in _FORWARD_LETTER else -1
        self.cursor.step(2, sign * notches)

    # -- export -------------------------------------------------------------------------------
    def export_table(self, path: str | Path) -> Path:
        """Write the finished tiles' table: Markdown for .md, else CSV."""
        path = Path(path)
        rows = [r.row() for r in self.ordered_results()]
        if path.suffix.lower() in (".md", ".markdown"):
            path.write_text(markdown_table(rows), encoding="utf-8")
            return path
        return write_csv(rows, path)

    def export_png(self, path: str | Path) -> bool:
        """Write the grid (heading, tiles, colour bars) to a PNG."""
        path = Path(path)
        if path.suffix.lower() != ".png":
            path = path.with_suffix(".png")
        return self.grid_panel.grab().save(str(path), "PNG")

    def _choose_table_file(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Export table", "solver_comparison.csv", "CSV (*.csv);;Markdown (*.md)"
        )
        if path:
            try:
                self.export_table(path)
            except Exception as exc:
                self.status.setText(f"Could not write {path}: {plain_message(exc)}")
            else:
                self.status.setText(f"Table written to {path}")

    def _choose_png_file(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Export grid", "solver_grid.png", "PNG image (*.png)"
        )
        if path:
            ok = self.export_png(path)
            self.status.setText(f"Grid written to {path}" if ok else f"Could not write {path}")

    # -- life cycle ---------------------------------------------------------------------------
    def resizeEvent(self, ev: QtGui.QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(ev)
        if self.tiles:
            QtCore.QTimer.singleShot(0, self._relayout)  # once the new size has reached the tile box

    def showEvent(self, ev: QtGui.QShowEvent) -> None:  # noqa: N802
        super().showEvent(ev)
        self._poll.start()
        self.refresh(force=True)

    def hideEvent(self, ev: QtGui.QHideEvent) -> None:  # noqa: N802
        self._poll.stop()
        self.cancel()
        super().hideEvent(ev)

    def shutdown(self) -> None:
        """Stop listening and join the worker (before the window goes away)."""
        self._poll.stop()
        self._unsubscribe()
        self.worker.stop()
        self.worker.wait()
