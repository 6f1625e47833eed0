"""One plane of one series: a pyqtgraph ViewBox + ImageItem at physical aspect, driven by the shared cursor.

Mouse (Slicer-like): left click or drag moves the crosshair; middle drag pans; right drag sets
window/level (rightwards widens, upwards raises the level); the wheel scrolls slices and
Ctrl+wheel zooms about the pointer. Keys: Page Up/Down and the arrow keys Up/Down scroll,
+/- zoom, R resets zoom and pan.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from mfm_engine.volume import Plane, Volume
from mfm_viewer.logic.cursor import CursorModel, view_range
from mfm_viewer.logic.difference import diverging_lut, overlay_lut, symmetric_levels
from mfm_viewer.logic.orientation import (
    PLANE_OF_NORMAL,
    DisplayOrientation,
    anatomical_name,
    orientation_for,
)
from mfm_viewer.logic.study_info import slice_position_text
from mfm_viewer.plane_labels import PLANE_COLOURS, PlaneLabels

SliceSource = Callable[[Plane, int], "np.ndarray | None"]

# Which way "forward" (wheel up, Page Up) goes: towards the head, the front, the patient's left.
_FORWARD_LETTER = {"S", "A", "L"}
_ZOOM_STEP = 1.15


class _SliceViewBox(pg.ViewBox):
    """A ViewBox whose mouse gestures drive the shared cursor instead of pyqtgraph's defaults."""

    def __init__(self, owner: PlaneView) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False, enableMouse=False)
        self.owner = owner

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 (Qt naming)
        if ev.button() == QtCore.Qt.MouseButton.LeftButton:
            ev.accept()
            self.owner.move_cursor_to(self.mapToView(ev.pos()))
        else:
            ev.ignore()

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802
        button = ev.button()
        ev.accept()
        if button == QtCore.Qt.MouseButton.LeftButton:
            self.owner.move_cursor_to(self.mapToView(ev.pos()))
        elif button == QtCore.Qt.MouseButton.MiddleButton:
            delta = self.mapToView(ev.lastPos()) - self.mapToView(ev.pos())
            self.owner.pan_by(delta.x(), delta.y())
        elif button == QtCore.Qt.MouseButton.RightButton:
            d = ev.pos() - ev.lastPos()
            self.owner.cursor.drag_window(d.x(), d.y())
        else:
            ev.ignore()

    def wheelEvent(self, ev, axis=None) -> None:  # noqa: N802
        ev.accept()
        delta = ev.delta() if hasattr(ev, "delta") else ev.angleDelta().y()
        if not delta:
            return
        if ev.modifiers() & QtCore.Qt.KeyboardModifier.ControlModifier:
            self.owner.zoom_by(_ZOOM_STEP ** (delta / 120.0), self.mapToView(ev.pos()))
        else:
            # One slice per notch (120); touchpads send smaller deltas, still one slice each.
            notches = int(delta / 120) or (1 if delta > 0 else -1)
            self.owner.scroll(notches)


class PlaneView(pg.GraphicsView):
    """One plane of one series with crosshair, letters, slice/window text and HU readout."""

    hovered = QtCore.Signal(object)  # (i, j, k) under the pointer, or None when it leaves the image

    def __init__(self, plane: Plane, cursor: CursorModel, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent, background="k")
        self.plane = plane
        self.cursor = cursor
        self.volume: Volume | None = None
        self.orientation: DisplayOrientation | None = None
        self.kind = "grey"
        self.source: SliceSource | None = None
        self.overlay_source: SliceSource | None = None
        self.diff_range = 200.0
        self.overlay_opacity = 0.6
        self.placeholder_text = ""
        self.show_window_text = True
        self.synthetic = False
        self._shown_index: int | None = None
        self._size_mm = (1.0, 1.0)
        self._pixel_mm = (1.0, 1.0)

        self.setFocusPolicy(QtCore.Qt.FocusPolicy.ClickFocus)
        self.setMinimumSize(120, 120)
        self.view = _SliceViewBox(self)
        self.setCentralItem(self.view)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.overlay = pg.ImageItem(axisOrder="row-major")
        self.overlay.setZValue(1)
        self.view.addItem(self.image)
        self.view.addItem(self.overlay)
        self.overlay.hide()
        self.lines = {}
        for angle in (90, 0):
            line = pg.InfiniteLine(angle=angle, movable=False)
            line.setZValue(2)
            self.view.addItem(line, ignoreBounds=True)
            self.lines[angle] = line
        self.labels = PlaneLabels(self)
        self.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self._unsubscribe = cursor.subscribe(self._on_cursor)

    # -- configuration ----------------------------------------------------------------------
    def set_volume(self, volume: Volume) -> None:
        """Take the geometry (orientation, size, spacing) from ``volume``; every series shares it."""
        self.volume = volume
        o = self.orientation = orientation_for(volume, self.plane)
        shape_xyz = volume.shape[::-1]
        n_v, n_h = o.display_shape(shape_xyz)
        sp_v, sp_h = o.display_spacing(volume.spacing)
        self._pixel_mm = (sp_v, sp_h)
        self._size_mm = (n_h * sp_h, n_v * sp_v)
        for edge, lab in self.labels.letters.items():
            lab.setText(o.letters[edge])
        self.labels.set_wanted(self.labels.regularised, volume.is_regularised)
        # Crosshair lines take the colour of the plane they cut: vertical = the plane of h_axis's normal.
        self.lines[90].setPen(pg.mkPen(PLANE_COLOURS[PLANE_OF_NORMAL[o.h_axis]], width=1))
        self.lines[0].setPen(pg.mkPen(PLANE_COLOURS[PLANE_OF_NORMAL[o.v_axis]], width=1))
        self._shown_index = None
        self._apply_view()
        self.refresh()

    def set_source(
        self,
        source: SliceSource | None,
        kind: str = "grey",
        title: str = "",
        synthetic: bool = False,
        overlay: SliceSource | None = None,
        placeholder: str = "",
    ) -> None:
        """What to show: a slice source ('grey' HU or 'diff' HU), its title, its SYNTHETIC badge."""
        self.source, self.kind, self.overlay_source = source, kind, overlay
        self.placeholder_text = placeholder
        name = anatomical_name(self.volume, self.plane) if self.volume is not None else self.plane.title()
        colour = PLANE_COLOURS[self.plane]
        self.labels.title.setText(f"<span style='color:{colour}'>■</span> {name}")
        self.setToolTip(f"{title} · {name}")
        self.synthetic = synthetic
        self.labels.set_wanted(self.labels.synthetic, synthetic)
        if kind == "diff":
            self.image.setLookupTable(diverging_lut())
        else:
            self.image.setLookupTable(None)
        self.overlay.setLookupTable(overlay_lut(self.overlay_opacity))
        self._shown_index = None
        self.refresh()

    def set_diff_display(self, range_hu: float, opacity: float) -> None:
        """Colour-bar range (±HU) for difference images and overlay opacity (0..1)."""
        self.diff_range, self.overlay_opacity = float(range_hu), float(opacity)
        self.overlay.setLookupTable(overlay_lut(self.overlay_opacity))
        self._update_levels()

    def detach(self) -> None:
        """Stop listening to the cursor (before the view is deleted)."""
        self._unsubscribe()

    # -- drawing ------------------------------------------------------------------------------
    @property
    def slice_index(self) -> int:
        """Index of the slice shown, along this plane's normal."""
        return self.cursor.ijk[self.orientation.normal_axis] if self.orientation else 0

    def refresh(self) -> None:
        """Fetch the current slice again (after the data changed)."""
        self._shown_index = None
        self._update_image()
        self._update_crosshair()

    def _update_image(self) -> None:
        if self.volume is None or self.orientation is None or self.source is None:
            return
        index = self.slice_index
        if index == self._shown_index:
            return
        self._shown_index = index
        data = self.source(self.plane, index)
        rect = QtCore.QRectF(0, 0, *self._size_mm)
        if data is None:
            self.image.hide()
            self.labels.placeholder.setText(self.placeholder_text)
            self.labels.set_wanted(self.labels.placeholder, bool(self.placeholder_text))
        else:
            self.image.setImage(self.orientation.display(data), autoLevels=False, levels=self._levels())
            self.image.setRect(rect)
            self.image.show()
            self.labels.set_wanted(self.labels.placeholder, False)
        over = self.overlay_source(self.plane, index) if self.overlay_source is not None else None
        if over is None:
            self.overlay.hide()
        else:
            self.overlay.setImage(
                self.orientation.display(over), autoLevels=False, levels=symmetric_levels(self.diff_range)
            )
            self.overlay.setRect(rect)
            self.overlay.show()
        # A difference overlay is made from synthetic voxels: the badge says so on a measured image too.
        badge = "SYNTHETIC" if self.synthetic or over is None else "SYNTHETIC Δ overlay"
        self.labels.set_text(self.labels.synthetic, badge)
        self.labels.set_wanted(self.labels.synthetic, self.synthetic or over is not None)
        self._update_slice_text()

    def _levels(self) -> tuple[float, float]:
        return symmetric_levels(self.diff_range) if self.kind == "diff" else self.cursor.levels

    def _update_levels(self) -> None:
        if self.image.image is not None:
            self.image.setLevels(self._levels())
        if self.overlay.image is not None:
            self.overlay.setLevels(symmetric_levels(self.diff_range))
        if self.kind == "diff":
            text = f"±{self.diff_range:.0f} HU"
        elif self.show_window_text:
            text = f"W {self.cursor.width:.0f}  L {self.cursor.level:.0f}"
        else:
            text = ""
        self.labels.set_text(self.labels.window_info, text)

    def _update_slice_text(self) -> None:
        if self.volume is None:
            return
        index = self.slice_index
        n = self.volume.n_slices(self.plane)
        # The scanner's own position of the slice, also where the grid draws it elsewhere.
        where = slice_position_text(self.volume, self.plane, index)
        self.labels.set_text(self.labels.slice_info, f"{index + 1}/{n}   {where}")

    def _update_crosshair(self) -> None:
        if self.volume is None or self.orientation is None:
            return
        row, col = self.orientation.ijk_to_display(self.cursor.ijk, self.volume.shape[::-1])
        sp_v, sp_h = self._pixel_mm
        self.lines[90].setValue((col + 0.5) * sp_h)
        self.lines[0].setValue((row + 0.5) * sp_v)

    def _apply_view(self) -> None:
        (x0, x1), (y0, y1) = view_range(self._size_mm, self.cursor.zoom, self.cursor.centers.get(self.plane))
        self.view.setRange(xRange=(x0, x1), yRange=(y0, y1), padding=0)

    def _on_cursor(self, what: str) -> None:
        if what == "position":
            self._update_image()
            self._update_crosshair()
        elif what == "window":
            self._update_levels()
        elif what == "view":
            self._apply_view()

    # -- interaction --------------------------------------------------------------------------
    def display_to_ijk(self, point: QtCore.QPointF) -> tuple[int, int, int] | None:
        """Voxel under a point in view (display mm) coordinates, or None outside the image."""
        if self.volume is None or self.orientation is None:
            return None
        sp_v, sp_h = self._pixel_mm
        row, col = int(np.floor(point.y() / sp_v)), int(np.floor(point.x() / sp_h))
        n_v, n_h = self.orientation.display_shape(self.volume.shape[::-1])
        if not (0 <= row < n_v and 0 <= col < n_h):
            return None
        return self.orientation.display_to_ijk(row, col, self.cursor.ijk, self.volume.shape[::-1])

    def display_point(self, ijk: tuple[int, int, int]) -> QtCore.QPointF:
        """Centre of voxel (i, j, k)'s pixel in view (display mm) coordinates."""
        row, col = self.orientation.ijk_to_display(ijk, self.volume.shape[::-1])
        sp_v, sp_h = self._pixel_mm
        return QtCore.QPointF((col + 0.5) * sp_h, (row + 0.5) * sp_v)

    def widget_point(self, ijk: tuple[int, int, int]) -> QtCore.QPoint:
        """Where voxel (i, j, k) is in this widget's viewport (for tests and tooltips)."""
        scene = self.view.mapViewToScene(self.display_point(ijk))
        return self.mapFromScene(scene)

    def move_cursor_to(self, point: QtCore.QPointF) -> None:
        """Put the crosshair on the voxel under ``point`` (clamped to the image's edge)."""
        if self.volume is None or self.orientation is None:
            return
        sp_v, sp_h = self._pixel_mm
        n_v, n_h = self.orientation.display_shape(self.volume.shape[::-1])
        row = min(max(int(np.floor(point.y() / sp_v)), 0), n_v - 1)
        col = min(max(int(np.floor(point.x() / sp_h)), 0), n_h - 1)
        self.cursor.set_ijk(
            self.orientation.display_to_ijk(row, col, self.cursor.ijk, self.volume.shape[::-1])
        )

    def scroll(self, steps: int) -> None:
        """Move ``steps`` slices forward (towards S, A or L) or back."""
        if self.volume is None or self.orientation is None:
            return
        axis = self.orientation.normal_axis
        sign = 1 if self.volume.axis_letters(axis)[0] in _FORWARD_LETTER else -1
        self.cursor.step(axis, sign * steps)

    def zoom_by(self, factor: float, anchor: QtCore.QPointF | None = None) -> None:
        """Zoom every view by ``factor``, keeping ``anchor`` (view mm) still in this one."""
        w, h = self._size_mm
        a = (anchor.x(), anchor.y()) if anchor is not None else None
        self.cursor.set_zoom(self.cursor.zoom * factor, self.plane if a else None, a, (w / 2, h / 2))

    def pan_by(self, dx_mm: float, dy_mm: float) -> None:
        """Shift this plane's view (all series) by display mm."""
        w, h = self._size_mm
        self.cursor.pan(self.plane, dx_mm, dy_mm, (w / 2, h / 2))

    def set_placeholder(self, text: str) -> None:
        """The text shown where there is no image yet (e.g. translation progress)."""
        self.placeholder_text = text
        if not self.image.isVisible():
            self.labels.set_text(self.labels.placeholder, text)
            self.labels.set_wanted(self.labels.placeholder, bool(text))

    def set_readout(self, text: str) -> None:
        """The HU readout text (bottom right)."""
        self.labels.set_text(self.labels.readout, text)

    def _on_mouse_moved(self, scene_pos: QtCore.QPointF) -> None:
        self.hovered.emit(self.display_to_ijk(self.view.mapSceneToView(scene_pos)))

    def keyPressEvent(self, ev: QtGui.QKeyEvent) -> None:  # noqa: N802
        key = ev.key()
        keys = QtCore.Qt.Key
        if key in (keys.Key_PageUp, keys.Key_Up):
            self.scroll(1)
        elif key in (keys.Key_PageDown, keys.Key_Down):
            self.scroll(-1)
        elif key in (keys.Key_Plus, keys.Key_Equal):
            self.zoom_by(_ZOOM_STEP)
        elif key == keys.Key_Minus:
            self.zoom_by(1 / _ZOOM_STEP)
        elif key == keys.Key_R:
            self.cursor.reset_view()
        else:
            ev.ignore()
            return
        ev.accept()

    def leaveEvent(self, ev: QtCore.QEvent) -> None:  # noqa: N802
        self.hovered.emit(None)
        super().leaveEvent(ev)

    def resizeEvent(self, ev: QtGui.QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(ev)
        if getattr(self, "labels", None) is None:  # pyqtgraph resizes once inside its own __init__
            return
        self.labels.place()
        self._apply_view()

    def showEvent(self, ev: QtGui.QShowEvent) -> None:  # noqa: N802
        super().showEvent(ev)
        self._update_levels()
        self.labels.place()
