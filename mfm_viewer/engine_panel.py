"""The engine panel: direction, model, solver, steps, device; preview cost; volume translation; metrics.

Widgets only: it emits what the user asked for and shows what it is told (EngineController drives it).
"""

from __future__ import annotations

import math

from PySide6 import QtCore, QtWidgets

from mfm_engine.solvers import SOLVERS
from mfm_viewer.logic.engine_key import DIRECTIONS

SOLVER_NAMES = list(SOLVERS)
NO_MODEL = "no model loaded"


def format_metrics(values: dict | None) -> tuple[str, str, str]:
    """(MAE, SSIM, PSNR) texts for a metrics dict, dashes when absent."""
    if not values:
        return "—", "—", "—"
    psnr = values.get("psnr_db", math.nan)
    psnr_text = "∞ dB" if math.isinf(psnr) else f"{psnr:.1f} dB"
    return f"{values.get('mae_hu', math.nan):.1f} HU", f"{values.get('ssim', math.nan):.3f}", psnr_text


class ElidingComboBox(QtWidgets.QComboBox):
    """A combo box that shortens its shown text with '…' to its width (the full text is the tooltip)."""

    def paintEvent(self, ev) -> None:  # noqa: N802
        style = self.style()
        painter = QtWidgets.QStylePainter(self)
        opt = QtWidgets.QStyleOptionComboBox()
        self.initStyleOption(opt)
        painter.drawComplexControl(QtWidgets.QStyle.ComplexControl.CC_ComboBox, opt)
        field = style.subControlRect(
            QtWidgets.QStyle.ComplexControl.CC_ComboBox,
            opt,
            QtWidgets.QStyle.SubControl.SC_ComboBoxEditField,
            self,
        )
        opt.currentText = self.fontMetrics().elidedText(
            opt.currentText, QtCore.Qt.TextElideMode.ElideRight, max(10, field.width() - 4)
        )
        painter.drawControl(QtWidgets.QStyle.ControlElement.CE_ComboBoxLabel, opt)

    def shown_text(self) -> str:
        """The text as painted (for tests)."""
        opt = QtWidgets.QStyleOptionComboBox()
        self.initStyleOption(opt)
        field = self.style().subControlRect(
            QtWidgets.QStyle.ComplexControl.CC_ComboBox,
            opt,
            QtWidgets.QStyle.SubControl.SC_ComboBoxEditField,
            self,
        )
        return self.fontMetrics().elidedText(
            self.currentText(), QtCore.Qt.TextElideMode.ElideRight, max(10, field.width() - 4)
        )


class EnginePanel(QtWidgets.QWidget):
    """Controls of the translation engine and what it last did."""

    settings_changed = QtCore.Signal()
    open_checkpoint_requested = QtCore.Signal()
    translate_requested = QtCore.Signal()
    cancel_requested = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        form = QtWidgets.QFormLayout()
        self.direction = QtWidgets.QComboBox()
        for code, label in DIRECTIONS.items():
            self.direction.addItem(label, code)
        self.model = ElidingComboBox()
        self.model.setSizeAdjustPolicy(
            QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.model.setMinimumContentsLength(21)
        self.open_button = QtWidgets.QPushButton("Open checkpoint…")
        self.solver = QtWidgets.QComboBox()
        self.solver.addItems(SOLVER_NAMES)
        self.steps = QtWidgets.QSpinBox()
        self.steps.setRange(1, 200)
        self.steps.setToolTip("Integration steps (adaptive dopri5: the initial number of steps)")
        self.live = QtWidgets.QCheckBox("Live preview of the axial slice")
        self.live.setChecked(True)
        self.device = QtWidgets.QLabel("—")
        self.preview_status = QtWidgets.QLabel(NO_MODEL)
        self.preview_status.setWordWrap(True)
        form.addRow("Direction", self.direction)
        form.addRow("Model", self.model)
        form.addRow("", self.open_button)
        form.addRow("Solver", self.solver)
        form.addRow("Steps", self.steps)
        form.addRow("Device", self.device)
        form.addRow(self.live)
        form.addRow("Preview", self.preview_status)

        self.translate_button = QtWidgets.QPushButton("Translate volume")
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setTextVisible(True)
        self.set_idle()
        self.volume_status = QtWidgets.QLabel("")
        self.volume_status.setWordWrap(True)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.translate_button)
        buttons.addWidget(self.cancel_button)

        metrics_box = QtWidgets.QGroupBox("Against the reference (body mask)")
        grid = QtWidgets.QGridLayout(metrics_box)
        self.metric_labels: dict[tuple[str, int], QtWidgets.QLabel] = {}
        for col, name in enumerate(("MAE", "SSIM", "PSNR"), start=1):
            grid.addWidget(QtWidgets.QLabel(f"<b>{name}</b>"), 0, col)
        for row, which in enumerate(("slice", "volume"), start=1):
            grid.addWidget(QtWidgets.QLabel(which), row, 0)
            for col in range(3):
                lab = QtWidgets.QLabel("—")
                grid.addWidget(lab, row, col + 1)
                self.metric_labels[(which, col)] = lab
        self.metrics_note = QtWidgets.QLabel("Open a reference (File ▸ Open reference) to measure.")
        self.metrics_note.setWordWrap(True)
        grid.addWidget(self.metrics_note, 3, 0, 1, 4)

        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(form)
        layout.addSpacing(8)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.volume_status)
        layout.addSpacing(8)
        layout.addWidget(metrics_box)
        layout.addStretch(1)

        for signal in (
            self.direction.currentIndexChanged,
            self.model.currentIndexChanged,
            self.solver.currentIndexChanged,
            self.steps.valueChanged,
            self.live.toggled,
        ):
            signal.connect(self.settings_changed)
        self.model.currentIndexChanged.connect(self._model_tooltip)
        self.open_button.clicked.connect(self.open_checkpoint_requested)
        self.translate_button.clicked.connect(self.translate_requested)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.set_models([], None)

    # -- reading the controls ---------------------------------------------------------------
    def choices(self) -> dict:
        """{'direction', 'model' (path or None), 'solver', 'steps', 'live'}."""
        return {
            "direction": self.direction.currentData(),
            "model": self.model.currentData(),
            "solver": self.solver.currentText(),
            "steps": self.steps.value(),
            "live": self.live.isChecked(),
        }

    def restore(self, choices: dict) -> None:
        """Set the controls (from saved settings) without signalling each change."""
        widgets = (self.direction, self.solver, self.steps, self.live)
        for w in widgets:
            w.blockSignals(True)
        index = self.direction.findData(choices.get("direction", "c2n"))
        if index >= 0:
            self.direction.setCurrentIndex(index)
        if choices.get("solver") in SOLVER_NAMES:
            self.solver.setCurrentText(choices["solver"])
        self.steps.setValue(int(choices.get("steps", 1)))
        self.live.setChecked(bool(choices.get("live", True)))
        for w in widgets:
            w.blockSignals(False)

    def _model_tooltip(self) -> None:
        # The list is narrower than some names: the whole name and the file are in the tooltip.
        path = self.model.currentData()
        self.model.setToolTip(f"{self.model.currentText()}\n{path}" if path else self.model.currentText())

    # -- showing state ------------------------------------------------------------------------
    def set_models(self, models: list[tuple[str, str]], current: str | None) -> None:
        """Fill the model list with (label, path) pairs and select ``current``."""
        self.model.blockSignals(True)
        self.model.clear()
        for label, path in models:
            self.model.addItem(label, path)
            self.model.setItemData(
                self.model.count() - 1, f"{label}\n{path}", QtCore.Qt.ItemDataRole.ToolTipRole
            )
        if not models:
            self.model.addItem(NO_MODEL, None)
        index = self.model.findData(current) if current else -1
        self.model.setCurrentIndex(max(index, 0))
        self.model.blockSignals(False)
        self._model_tooltip()
        has_model = bool(models)
        for w in (self.direction, self.solver, self.steps, self.live, self.translate_button):
            w.setEnabled(has_model)
        if not has_model:
            self.preview_status.setText(NO_MODEL)
            self.device.setText("—")

    def set_busy(self, busy: bool) -> None:
        """While a volume translates: Translate disabled, Cancel enabled."""
        self.translate_button.setEnabled(not busy and self.model.currentData() is not None)
        self.cancel_button.setEnabled(busy)

    def set_progress(self, done: int, total: int) -> None:
        """Slices done of total, while a volume translates."""
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress.setFormat(f"{done} / {total} slices")

    def set_idle(self, n_slices: int | None = None, translated: bool = False) -> None:
        """No translation running: 'not translated yet', or the volume done."""
        total = max(n_slices or 1, 1)
        self.progress.setRange(0, total)
        self.progress.setValue(total if translated else 0)
        if translated:
            self.progress.setFormat(f"translated: {n_slices} slices" if n_slices else "translated")
        else:
            self.progress.setFormat("volume not translated yet")

    def set_metrics(self, which: str, values: dict | None) -> None:
        """Show 'slice' or 'volume' metrics (None clears them)."""
        for col, text in enumerate(format_metrics(values)):
            self.metric_labels[(which, col)].setText(text)

    def set_metrics_pending(self, which: str) -> None:
        """Metrics of a row are being computed: an ellipsis, not a dash."""
        for col in range(3):
            self.metric_labels[(which, col)].setText("…")

    def metrics_text(self, which: str) -> tuple[str, str, str]:
        """The shown (MAE, SSIM, PSNR) texts of a row (for tests and screenshots)."""
        return tuple(self.metric_labels[(which, col)].text() for col in range(3))  # type: ignore[return-value]
