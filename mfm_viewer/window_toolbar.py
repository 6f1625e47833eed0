"""The window toolbar: presets (also on number keys 1…), the current W/L, layout and difference display."""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from mfm_engine.intensity import WINDOW_PRESETS
from mfm_viewer.logic.cursor import CursorModel
from mfm_viewer.series_grid import LAYOUTS


class WindowToolbar(QtWidgets.QToolBar):
    """Window presets with number-key shortcuts, and a W/L readout that follows drags."""

    def __init__(self, cursor: CursorModel, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__("Window", parent)
        self.setObjectName("window_toolbar")
        self.cursor = cursor
        self.group = QtGui.QActionGroup(self)
        self.group.setExclusive(True)
        self.actions_by_name: dict[str, QtGui.QAction] = {}
        self._picked: str | None = None
        self.addWidget(QtWidgets.QLabel(" Window: "))
        for n, preset in enumerate(WINDOW_PRESETS, start=1):
            action = QtGui.QAction(f"{n} {preset.name}", self)
            action.setCheckable(True)
            action.setShortcut(QtGui.QKeySequence(str(n)))
            action.setToolTip(f"{preset.name}: W {preset.width:.0f} / L {preset.level:.0f}  (key {n})")
            action.triggered.connect(lambda _=False, p=preset: self._pick(p))
            self.group.addAction(action)
            self.addAction(action)
            self.actions_by_name[preset.name] = action
        self.addSeparator()
        self.wl_label = QtWidgets.QLabel()
        self.wl_label.setMinimumWidth(120)
        self.wl_label.setToolTip("Window width / level in HU; drag with the right mouse button to change")
        self.addWidget(self.wl_label)
        cursor.subscribe(self._on_cursor)
        self._on_cursor("window")

    def _on_cursor(self, what: str) -> None:
        if what != "window":
            return
        w, l = self.cursor.window
        self.wl_label.setText(f"  W {w:.0f}  L {l:.0f}")
        names = [p.name for p in WINDOW_PRESETS if (p.width, p.level) == (w, l)]
        # Soft tissue and mediastinum share W/L: keep whichever the user picked.
        name = self._picked if self._picked in names else (names[0] if names else None)
        if name is None:
            self.group.setExclusive(False)
            for action in self.group.actions():
                action.setChecked(False)
            self.group.setExclusive(True)
        else:
            self.actions_by_name[name].setChecked(True)

    def _pick(self, preset) -> None:
        self._picked = preset.name
        self.cursor.set_window(preset.width, preset.level)
        self._on_cursor("window")


class DisplayToolbar(QtWidgets.QToolBar):
    """Layout (three planes / axial only), difference display (panes / overlay / off), range, opacity."""

    changed = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__("Display", parent)
        self.setObjectName("display_toolbar")
        self.layout_combo = QtWidgets.QComboBox()
        self.layout_combo.addItems(list(LAYOUTS))
        self.layout_combo.setToolTip("Show all three planes, or the axial plane only (larger)")
        self.diff_combo = QtWidgets.QComboBox()
        for label, mode in (("as panes", "panes"), ("as overlay", "overlay"), ("off", "off")):
            self.diff_combo.addItem(label, mode)
        self.diff_combo.setToolTip("Difference maps (synthetic − input, synthetic − reference)")
        self.range_spin = QtWidgets.QSpinBox()
        self.range_spin.setRange(5, 2000)
        self.range_spin.setSingleStep(10)
        self.range_spin.setSuffix(" HU")
        self.range_spin.setPrefix("± ")
        self.range_spin.setValue(200)
        self.range_spin.setToolTip("Colour-bar range of the difference maps (centred on 0 HU)")
        self.opacity_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(60)
        self.opacity_slider.setMaximumWidth(90)
        self.opacity_slider.setToolTip("Opacity of the difference overlay")
        self.addWidget(QtWidgets.QLabel(" Layout: "))
        self.addWidget(self.layout_combo)
        self.addWidget(QtWidgets.QLabel("  Differences: "))
        self.addWidget(self.diff_combo)
        self.addWidget(self.range_spin)
        self.addWidget(QtWidgets.QLabel("  Overlay opacity: "))
        self.addWidget(self.opacity_slider)
        for signal in (
            self.layout_combo.currentIndexChanged,
            self.diff_combo.currentIndexChanged,
            self.range_spin.valueChanged,
            self.opacity_slider.valueChanged,
        ):
            signal.connect(self.changed)

    @property
    def layout_name(self) -> str:
        """'three planes' or 'axial only'."""
        return self.layout_combo.currentText()

    @property
    def diff_mode(self) -> str:
        """'panes', 'overlay' or 'off'."""
        return self.diff_combo.currentData()

    @property
    def diff_range(self) -> float:
        """± HU of the colour bar."""
        return float(self.range_spin.value())

    @property
    def opacity(self) -> float:
        """Overlay opacity 0..1."""
        return self.opacity_slider.value() / 100.0

    def restore(self, layout: str, diff_mode: str, diff_range: float, opacity: float) -> None:
        """Set every control (from saved settings) without emitting ``changed`` for each."""
        self.blockSignals(True)
        for w in (self.layout_combo, self.diff_combo, self.range_spin, self.opacity_slider):
            w.blockSignals(True)
        if layout in LAYOUTS:
            self.layout_combo.setCurrentText(layout)
        index = self.diff_combo.findData(diff_mode)
        if index >= 0:
            self.diff_combo.setCurrentIndex(index)
        self.range_spin.setValue(int(diff_range))
        self.opacity_slider.setValue(int(round(opacity * 100)))
        for w in (self.layout_combo, self.diff_combo, self.range_spin, self.opacity_slider):
            w.blockSignals(False)
        self.blockSignals(False)
