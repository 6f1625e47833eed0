"""Text laid over a plane view: title, SYNTHETIC badge, orientation letters, slice, window, HU readout.

Plain QLabels on top of the graphics viewport, so they keep their size and place whatever the zoom.
Every label sits on its own dark translucent backdrop, so it reads on black air, on bone and on
the near-white of a difference map alike. ``place`` never lets two labels overlap or leave the
view: corner texts that do not fit side by side are stacked, and in a view too small for a label
that label is left out (placed in order: badge, title, slice text, window, readout, letters).
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6 import QtCore, QtWidgets

# Slicer's plane colours: the axial view is red, sagittal yellow, coronal green; crosshair lines
# take the colour of the plane they stand for.
PLANE_COLOURS = {"axial": "#e0504f", "sagittal": "#e8d24a", "coronal": "#5fbf5f"}


@dataclass(frozen=True)
class LabelStyle:
    """Text colour, backdrop (RGBA, alpha 0..255), font size (px) and weight of one kind of label."""

    colour: str
    backdrop: tuple[int, int, int, int]
    size_px: int
    bold: bool = False
    border: str = ""

    def sheet(self) -> str:
        """The Qt style sheet."""
        r, g, b, a = self.backdrop
        border = (
            f" border: 2px solid {self.border}; border-radius: 3px;"
            if self.border
            else " border-radius: 2px;"
        )
        return (
            f"background: rgba({r}, {g}, {b}, {a}); color: {self.colour}; font-family: sans-serif;"
            f" font-size: {self.size_px}px; font-weight: {'bold' if self.bold else 'normal'};"
            f" padding: 0px 3px;{border}"
        )


_DARK = (0, 0, 0, 170)
STYLES: dict[str, LabelStyle] = {
    "title": LabelStyle("#f0f0f0", _DARK, 12, bold=True),
    "letter": LabelStyle("#ffd45a", _DARK, 14, bold=True),
    "info": LabelStyle("#e8e8e8", _DARK, 11),
    "readout": LabelStyle("#9fe0ff", _DARK, 11, bold=True),
    "placeholder": LabelStyle("#d0d0d0", _DARK, 12),
    "synthetic": LabelStyle("#ff9c33", (0, 0, 0, 190), 13, bold=True, border="#ff8c1a"),
    "regularised": LabelStyle("#ffd45a", _DARK, 11, bold=True),
}
_MARGIN = 3
_GAP = 2


class PlaneLabels:
    """The overlay labels of one view, positioned by ``place`` after every resize."""

    def __init__(self, parent: QtWidgets.QWidget) -> None:
        self.parent = parent
        self.kinds: dict[QtWidgets.QLabel, str] = {}

        def label(style: str, text: str = "") -> QtWidgets.QLabel:
            lab = QtWidgets.QLabel(text, parent)
            lab.setStyleSheet(STYLES[style].sheet())
            lab.setAttribute(QtCore.Qt.WidgetAttribute.WA_TransparentForMouseEvents)
            self.kinds[lab] = style
            return lab

        self.title = label("title")
        self.synthetic = label("synthetic", "SYNTHETIC")
        self.synthetic.setToolTip("Made by a model, not measured by a scanner")
        self.letters = {edge: label("letter") for edge in ("top", "bottom", "left", "right")}
        self.slice_info = label("info")
        self.regularised = label("regularised", "displayed regularised")
        self.regularised.setToolTip(
            "The scanner placed these slices unevenly or tilted; they are drawn on a regular grid. "
            "Positions shown are the scanner's own."
        )
        self.window_info = label("info")
        self.readout = label("readout")
        self.placeholder = label("placeholder")
        self.placeholder.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.synthetic.hide()
        self.placeholder.hide()
        self.regularised.hide()
        self.wanted: dict[QtWidgets.QLabel, bool] = {lab: True for lab in self.kinds}
        self.wanted[self.synthetic] = self.wanted[self.placeholder] = self.wanted[self.regularised] = False

    def all(self) -> list[QtWidgets.QLabel]:
        """Every label, for raising above the viewport."""
        return list(self.kinds)

    def set_text(self, label: QtWidgets.QLabel, text: str) -> None:
        """Change a label's text and keep it placed."""
        if label.text() == text:
            return
        old_size, was_shown = label.size(), bool(label.text())
        label.setText(text)
        label.adjustSize()
        # Scrolling changes digits, rarely a size: only a new size (or a label appearing or
        # going) needs the whole layout again; the rest keeps its place.
        if label.size() != old_size or was_shown != bool(text) or label is self.placeholder:
            self.place()

    def set_wanted(self, label: QtWidgets.QLabel, wanted: bool) -> None:
        """Whether a label should show (``place`` may still hide it when the view is too small)."""
        if self.wanted.get(label) != wanted:
            self.wanted[label] = wanted
            self.place()

    def shown(self) -> list[QtWidgets.QLabel]:
        """The labels visible now, with text."""
        return [lab for lab in self.kinds if lab.isVisibleTo(self.parent) and lab.text()]

    def place(self) -> None:
        """Put each label at its edge or corner, stacking or hiding so that none overlaps another."""
        w, h = self.parent.width(), self.parent.height()
        m, gap = _MARGIN, _GAP
        # Decide first, show and hide once at the end: no flicker of labels shown then hidden.
        show = {lab: self.wanted[lab] and bool(lab.text()) for lab in self.kinds}
        for lab in self.kinds:
            if show[lab]:
                lab.adjustSize()
        taken: list[QtCore.QRect] = []

        def put(lab: QtWidgets.QLabel, x: int, y: int) -> bool:
            rect = QtCore.QRect(x, y, lab.width(), lab.height())
            inside = rect.left() >= 0 and rect.top() >= 0 and rect.right() < w and rect.bottom() < h
            if not show[lab] or not inside or any(rect.intersects(r) for r in taken):
                show[lab] = False
                return False
            if lab.pos() != rect.topLeft():
                lab.move(x, y)
            taken.append(rect)
            return True

        def size(lab: QtWidgets.QLabel) -> tuple[int, int]:
            return (lab.width(), lab.height()) if show[lab] else (0, 0)

        # Top band: title left, badge right; the badge drops below the title when both do not fit.
        tw, th = size(self.title)
        bw, bh = size(self.synthetic)
        put(self.synthetic, w - bw - m, m)
        if tw + bw + 2 * m + gap <= w:
            put(self.title, m, m)
            top_band = m + max(th, bh)
        else:
            put(self.title, m, m + bh + gap)
            top_band = m + bh + gap + th
        # Bottom band: slice text left, window right; stacked (window above) when they collide.
        sw, sh = size(self.slice_info)
        ww, wh = size(self.window_info)
        rw, rh = size(self.readout)
        gw, gh = size(self.regularised)
        bottom = h - m
        put(self.slice_info, m, bottom - sh)
        left_top = bottom - sh - (gap if sh else 0)
        if gw:
            put(self.regularised, m, left_top - gh)
            left_top -= gh + gap
        if sw + ww + 2 * m + gap <= w and (not gh or gw + ww + 2 * m + gap <= w):
            put(self.window_info, w - ww - m, bottom - wh)
            right_top = bottom - wh - (gap if wh else 0)
        else:
            put(self.window_info, w - ww - m, left_top - wh)
            right_top = left_top = left_top - wh - (gap if wh else 0)
        put(self.readout, w - rw - m, right_top - rh)
        right_top -= rh + (gap if rh else 0)
        bottom_band = min(left_top, right_top)
        # Letters: top and bottom centred inside the bands, left and right at mid-height.
        top, low = self.letters["top"], self.letters["bottom"]
        left, right = self.letters["left"], self.letters["right"]
        put(top, (w - top.width()) // 2, top_band + gap)
        put(low, (w - low.width()) // 2, bottom_band - low.height())
        put(left, m, (h - left.height()) // 2)
        put(right, w - right.width() - m, (h - right.height()) // 2)
        # The placeholder takes the middle, between the letters.
        if show[self.placeholder]:
            inner = max(40, w - 2 * (max(left.width(), right.width()) + m + gap))
            self.placeholder.setFixedWidth(inner)
            self.placeholder.setFixedHeight(self.placeholder.heightForWidth(inner))
            y = max(top_band + top.height() + 2 * gap, (h - self.placeholder.height()) // 2)
            put(self.placeholder, (w - inner) // 2, y)
        for lab, visible in show.items():
            if visible:
                lab.raise_()
            if lab.isVisibleTo(self.parent) != visible:
                lab.setVisible(visible)
