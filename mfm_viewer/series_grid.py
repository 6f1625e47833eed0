"""Series side by side: one column per pane (input, synthetic, reference, differences), one row per plane.

Every view listens to the same CursorModel, so crosshair, slice, zoom, pan and window are linked.
"""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from mfm_engine.volume import PLANES, Plane
from mfm_viewer.colorbar import ColorBar
from mfm_viewer.logic.cursor import CursorModel
from mfm_viewer.logic.orientation import true_voxel_position
from mfm_viewer.logic.session import SYNTHETIC, PaneSpec, Session
from mfm_viewer.plane_view import PlaneView

# Short names for the status bar's probe (every pane's HU on one line).
_SHORT_NAMES = {
    "input": "input",
    "synthetic": "SYNTHETIC",
    "reference": "reference",
    "diff_input": "Δ input",
    "diff_reference": "Δ reference",
}

LAYOUTS: dict[str, tuple[Plane, ...]] = {"three planes": PLANES, "axial only": ("axial",)}

_HEADER = "color: #f0f0f0; background: #2a2a2a; font-weight: bold; padding: 3px;"
_HEADER_SYNTHETIC = "color: #ff8c1a; background: #2a2a2a; font-weight: bold; padding: 3px;"


def _placeholder(spec: PaneSpec, plane: Plane, translating: tuple[int, int] | None = None) -> str:
    if spec.key == SYNTHETIC or spec.kind == "diff":
        if translating is not None:
            done, total = translating
            return f"Translating the volume… {done} / {total} slices"
        if plane == "axial":
            return "No synthetic slice yet: open a model, or change a setting to preview this slice."
        return "Volume not translated yet: Translate volume (Ctrl+T)"
    return ""


class ElidedLabel(QtWidgets.QLabel):
    """A header that fits its width: one line, else two (broken at ' · ' or '  ('), and only then
    shortened with '…'; the whole text is always the tooltip."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.full_text = ""
        self._lines = 1

    def set_full_text(self, text: str) -> None:
        """Show ``text``, elided to fit."""
        self.full_text = text
        self.setToolTip(text)
        self._elide()

    def _elide(self) -> None:
        fm = self.fontMetrics()
        room = max(10, self.contentsRect().width() - 2)
        text = self.full_text
        lines = [text]
        if fm.horizontalAdvance(text) > room:
            breaks = [i for sep in (" · ", "  (") for i in range(len(text)) if text.startswith(sep, i)]
            fitting = [i for i in breaks if fm.horizontalAdvance(text[:i]) <= room]
            cut = max(fitting) if fitting else (min(breaks) if breaks else None)
            if cut is None:
                lines = [text]
            else:
                lines = [text[:cut], text[cut:].strip(" ·")]
        shown = [fm.elidedText(line, QtCore.Qt.TextElideMode.ElideRight, room) for line in lines]
        self.setText("\n".join(shown))
        if len(lines) != self._lines:
            self._lines = len(lines)
            # The tallest header sets its row; the others fill it (no gap above a one-line header).
            self.setMinimumHeight(fm.height() * len(lines) + 10)

    @property
    def elided(self) -> bool:
        """True when some of the text is cut (not merely wrapped)."""
        return "…" in self.text() and "…" not in self.full_text

    def resizeEvent(self, ev) -> None:  # noqa: N802
        super().resizeEvent(ev)
        self._elide()


class SeriesGrid(QtWidgets.QWidget):
    """The grid of PlaneViews plus, when differences are shown, a colour bar."""

    hover_text = QtCore.Signal(str)  # HU of every pane at the voxel under the pointer ('' when none)

    def __init__(self, cursor: CursorModel, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.cursor = cursor
        self.session: Session | None = None
        self.specs: list[PaneSpec] = []
        self.views: dict[tuple[str, Plane], PlaneView] = {}
        self.headers: dict[str, QtWidgets.QLabel] = {}
        self.layout_name = "three planes"
        self.diff_mode = "panes"
        self.diff_range = 200.0
        self.overlay_opacity = 0.6
        self.synthetic_note = ""
        self.translating: tuple[int, int] | None = None
        self.colorbar = ColorBar(self)
        self._grid = QtWidgets.QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(2)
        self.setStyleSheet("background: #111111;")

    # -- building ---------------------------------------------------------------------------
    def set_session(self, session: Session | None) -> None:
        """Show a (new) session: rebuild the columns."""
        self.session = session
        self.rebuild(force=True)

    def set_layout_name(self, name: str) -> None:
        """'three planes' or 'axial only'."""
        if name not in LAYOUTS:
            raise KeyError(f"unknown layout {name!r}; known: {', '.join(LAYOUTS)}")
        self.layout_name = name
        self.rebuild()

    def set_diff_mode(self, mode: str) -> None:
        """'panes' (own columns), 'overlay' (on the grey images) or 'off'."""
        self.diff_mode = mode
        self.rebuild()

    def set_diff_display(self, range_hu: float, opacity: float) -> None:
        """Colour-bar range and overlay opacity for every difference image."""
        self.diff_range, self.overlay_opacity = float(range_hu), float(opacity)
        self.colorbar.set_range(range_hu)
        for view in self.views.values():
            view.set_diff_display(self.diff_range, self.overlay_opacity)
            if view.kind == "diff" or view.overlay_source is not None:
                view.refresh()

    def rebuild(self, force: bool = False, keys: set[str] | None = None) -> None:
        """Lay the panes out again if their list changed (or ``force``); otherwise refresh the images."""
        specs = self.session.panes(self.diff_mode) if self.session is not None else []
        planes = LAYOUTS[self.layout_name]
        wanted = [(s.key, p) for s in specs for p in planes]
        if not force and specs == self.specs and list(self.views) == wanted:
            self._update_headers()
            self.refresh(keys)
            return
        self._clear()
        self.specs = specs
        # One or two series: a row per series with the planes side by side keeps the views near
        # square; more series: a column per series, a row per plane.
        by_rows = len(planes) > 1 and len(specs) < len(planes)
        for s_index, spec in enumerate(specs):
            header = ElidedLabel(self)
            header.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
            # Long titles must not widen their column: every column gets the same share.
            header.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
            header.setMinimumWidth(10)
            header.setMinimumHeight(header.fontMetrics().height() + 10)
            self.headers[spec.key] = header
            if by_rows:
                self._grid.addWidget(header, 2 * s_index, 0, 1, len(planes))
            else:
                self._grid.addWidget(header, 0, s_index)
            for p_index, plane in enumerate(planes):
                view = PlaneView(plane, self.cursor, self)
                # The window is shared: say it once (first series), differences say their range.
                view.show_window_text = s_index == 0 or spec.kind == "diff"
                view.set_diff_display(self.diff_range, self.overlay_opacity)
                view.set_volume(self.session.input)
                self._configure(view, spec, plane)
                view.hovered.connect(self._on_hover)
                self.views[(spec.key, plane)] = view
                if by_rows:
                    self._grid.addWidget(view, 2 * s_index + 1, p_index)
                else:
                    self._grid.addWidget(view, p_index + 1, s_index)
        n_cols = len(planes) if by_rows else len(specs)
        view_rows = [2 * s + 1 for s in range(len(specs))] if by_rows else list(range(1, len(planes) + 1))
        has_diff = any(s.kind == "diff" or s.overlay for s in specs)
        if has_diff:
            self._grid.addWidget(self.colorbar, 0, n_cols, max(view_rows) + 1, 1)
        self.colorbar.setVisible(has_diff)
        # Shown now, not at the next event-loop turn (a screenshot may come first).
        for widget in (*self.headers.values(), *self.views.values()):
            widget.show()
        for col in range(n_cols):
            self._grid.setColumnStretch(col, 1)
        for row in view_rows:
            self._grid.setRowStretch(row, 1)
        self._update_headers()

    def _configure(self, view: PlaneView, spec: PaneSpec, plane: Plane) -> None:
        session = self.session

        def source(p, i, key=spec.key):
            return session.slice(key, p, i)

        overlay = None
        if spec.overlay:

            def overlay(p, i, key=spec.overlay):
                return session.slice(key, p, i)

        view.set_source(
            source,
            spec.kind,
            spec.title,
            spec.synthetic,
            overlay,
            _placeholder(spec, plane, self.translating),
        )

    def set_translating(self, state: tuple[int, int] | None) -> None:
        """(done, total) slices while the volume translates, None otherwise: the empty panes say so."""
        self.translating = state
        for (key, plane), view in self.views.items():
            spec = next(s for s in self.specs if s.key == key)
            view.set_placeholder(_placeholder(spec, plane, state))

    def _clear(self) -> None:
        # Hidden at once: deleteLater only runs when control is back in the event loop.
        for view in self.views.values():
            view.detach()
            self._grid.removeWidget(view)
            view.hide()
            view.deleteLater()
        for header in self.headers.values():
            self._grid.removeWidget(header)
            header.hide()
            header.deleteLater()
        self._grid.removeWidget(self.colorbar)
        for col in range(self._grid.columnCount()):
            self._grid.setColumnStretch(col, 0)
        for row in range(self._grid.rowCount()):
            self._grid.setRowStretch(row, 0)
        self.views.clear()
        self.headers.clear()
        self.specs = []

    def _update_headers(self) -> None:
        for spec in self.specs:
            header = self.headers[spec.key]
            text = spec.title
            if spec.key == SYNTHETIC:
                text = spec.title.replace("Synthetic", "SYNTHETIC", 1)
                text += f"  ({self.synthetic_note})" if self.synthetic_note else ""
            elif spec.overlay:
                text += "  + difference overlay"
            header.set_full_text(text)
            header.setStyleSheet(_HEADER_SYNTHETIC if spec.synthetic else _HEADER)

    def set_synthetic_note(self, note: str) -> None:
        """A short note in the synthetic column's header (settings, staleness)."""
        self.synthetic_note = note
        self._update_headers()

    # -- updates ------------------------------------------------------------------------------
    def refresh(self, keys: set[str] | None = None) -> None:
        """Fetch the slices again (all panes, or only those in ``keys``)."""
        for (key, _plane), view in self.views.items():
            spec = next(s for s in self.specs if s.key == key)
            if keys is None or key in keys or spec.kind == "diff" or spec.overlay:
                view.refresh()

    def view(self, key: str, plane: Plane) -> PlaneView:
        """The view of one pane and plane."""
        return self.views[(key, plane)]

    def readouts(self, ijk: tuple[int, int, int]) -> dict[str, float | None]:
        """HU of every pane at a voxel."""
        return {s.key: self.session.hu_at(s.key, ijk) for s in self.specs} if self.session else {}

    def _on_hover(self, ijk) -> None:
        sender = self.sender()
        hovered_plane = sender.plane if isinstance(sender, PlaneView) else None
        values = self.readouts(ijk) if ijk is not None else {}
        parts = []
        for (key, plane), view in self.views.items():
            value = values.get(key)
            if plane == hovered_plane and value is not None:
                view.set_readout(f"{'Δ ' if view.kind == 'diff' else ''}{value:.0f} HU")
            else:
                view.set_readout("")
        if ijk is None:
            self.hover_text.emit("")
            return
        for spec in self.specs:
            value = values.get(spec.key)
            if value is not None:
                parts.append(f"{_SHORT_NAMES.get(spec.key, spec.title)} {value:.0f}")
        i, j, k = ijk
        # Where the scanner measured this voxel (for a regularised stack not where the grid draws it).
        x, y, z = true_voxel_position(self.session.input, ijk)
        values_text = " · ".join(parts) + " HU" if parts else ""
        self.hover_text.emit(f"voxel ({i}, {j}, {k})  LPS ({x:.1f}, {y:.1f}, {z:.1f}) mm   {values_text}")
