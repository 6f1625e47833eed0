"""The window toolbar: presets (also on number keys 1…), the current W/L, layout and difference display."""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from mfm_engine.intensity import ALL_WINDOW_PRESETS, HEAD_WINDOW_PRESETS, WINDOW_PRESETS
from mfm_viewer.logic.cursor import CursorModel
from mfm_viewer.series_grid import LAYOUTS

# Which presets get a button (and number keys 1…) for which kind of study; all are in "More".
REGION_PRESETS = {"body": WINDOW_PRESETS, "head": HEAD_WINDOW_PRESETS}


class WindowToolbar(QtWidgets.QToolBar):
    """Window presets of the study's region with number-key shortcuts, every preset under "More",
    and a W/L readout that follows drags."""

    def __init__(self, cursor: CursorModel, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__("Window", parent)
        self.setObjectName("window_toolbar")
        self.cursor = cursor
        self.region = ""
        self.group = QtGui.QActionGroup(self)
        self.group.setExclusive(True)
        self.actions_by_name: dict[str, QtGui.QAction] = {}
        self._picked: str | None = None
        self.addWidget(QtWidgets.QLabel(" Window: "))
        self._buttons_end = self.addSeparator()
        self.more_menu = QtWidgets.QMenu("More windows", self)
        for preset in ALL_WINDOW_PRESETS:
            action = self.more_menu.addAction(f"{preset.name}  (W {preset.width:.0f} / L {preset.level:.0f})")
            action.triggered.connect(lambda _=False, p=preset: self._pick(p))
        self.more_button = QtWidgets.QToolButton(self)
        self.more_button.setText("More ▾")
        self.more_button.setToolTip("Every window preset, abdominal and head")
        self.more_button.setMenu(self.more_menu)
        self.more_button.setPopupMode(QtWidgets.QToolButton.ToolButtonPopupMode.InstantPopup)
        self.addWidget(self.more_button)
        self.wl_label = QtWidgets.QLabel()
        self.wl_label.setMinimumWidth(100)
        self.wl_label.setToolTip("Window width / level in HU; drag with the right mouse button to change")
        self.addWidget(self.wl_label)
        cursor.subscribe(self._on_cursor)
        self.set_region("body")

    @property
    def presets(self):
        """The presets with a button now."""
        return REGION_PRESETS[self.region]

    def set_region(self, region: str) -> None:
        """'head' or 'body': which presets get buttons and keys; a window that is none of them
        gives way to the region's first preset (brain for a head, abdomen for a body)."""
        first, changed = self.region == "", region != self.region
        if changed:
            for action in list(self.group.actions()):
                self.group.removeAction(action)
                self.removeAction(action)
                action.deleteLater()
            self.actions_by_name.clear()
            self.region = region
            for n, preset in enumerate(self.presets, start=1):
                action = QtGui.QAction(f"{n} {preset.name}", self)
                action.setCheckable(True)
                action.setShortcut(QtGui.QKeySequence(str(n)))
                action.setToolTip(f"{preset.name}: W {preset.width:.0f} / L {preset.level:.0f}  (key {n})")
                action.triggered.connect(lambda _=False, p=preset: self._pick(p))
                self.group.addAction(action)
                self.insertAction(self._buttons_end, action)
                self.actions_by_name[preset.name] = action
        # At start-up the saved window stays, whatever it is; a change of region brings its own window.
        if changed and not first and self.cursor.window not in {(p.width, p.level) for p in self.presets}:
            self._pick(self.presets[0])
        self._on_cursor("window")

    def _on_cursor(self, what: str) -> None:
        if what != "window":
            return
        w, l = self.cursor.window
        self.wl_label.setText(f"  W {w:.0f}  L {l:.0f}")
        names = [p.name for p in self.presets if (p.width, p.level) == (w, l)]
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
