"""Text laid over a plane view: title, SYNTHETIC badge, orientation letters, slice, window, HU readout.

Plain QLabels on top of the graphics viewport, so they keep their size and place whatever the zoom.
"""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

# Slicer's plane colours: the axial view is red, sagittal yellow, coronal green; crosshair lines
# take the colour of the plane they stand for.
PLANE_COLOURS = {"axial": "#e0504f", "sagittal": "#e8d24a", "coronal": "#5fbf5f"}

_BASE = "background: transparent; font-family: sans-serif;"
_STYLE = {
    "title": _BASE + "color: #f0f0f0; font-size: 12px; font-weight: bold;",
    "letter": _BASE + "color: #ffd45a; font-size: 14px; font-weight: bold;",
    "info": _BASE + "color: #d8d8d8; font-size: 11px;",
    "readout": _BASE + "color: #9fe0ff; font-size: 11px; font-weight: bold;",
    "placeholder": _BASE + "color: #a0a0a0; font-size: 12px;",
    "synthetic": (
        "background: rgba(0, 0, 0, 150); color: #ff8c1a; font-family: sans-serif; font-size: 15px;"
        " font-weight: bold; border: 2px solid #ff8c1a; border-radius: 3px; padding: 1px 5px;"
    ),
}
_MARGIN = 4


class PlaneLabels:
    """The overlay labels of one view, positioned by ``place`` after every resize."""

    def __init__(self, parent: QtWidgets.QWidget) -> None:
        self.parent = parent

        def label(style: str, text: str = "") -> QtWidgets.QLabel:
            lab = QtWidgets.QLabel(text, parent)
            lab.setStyleSheet(_STYLE[style])
            lab.setAttribute(QtCore.Qt.WidgetAttribute.WA_TransparentForMouseEvents)
            return lab

        self.title = label("title")
        self.synthetic = label("synthetic", "SYNTHETIC")
        self.synthetic.setToolTip("Made by a model, not measured by a scanner")
        self.letters = {edge: label("letter") for edge in ("top", "bottom", "left", "right")}
        self.slice_info = label("info")
        self.window_info = label("info")
        self.readout = label("readout")
        self.placeholder = label("placeholder")
        self.placeholder.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.synthetic.hide()
        self.placeholder.hide()

    def all(self) -> list[QtWidgets.QLabel]:
        """Every label, for raising above the viewport."""
        return [
            self.title,
            self.synthetic,
            *self.letters.values(),
            self.slice_info,
            self.window_info,
            self.readout,
            self.placeholder,
        ]

    def set_text(self, label: QtWidgets.QLabel, text: str) -> None:
        """Change a label's text and keep it placed."""
        if label.text() != text:
            label.setText(text)
            self.place()

    def place(self) -> None:
        """Put each label at its edge or corner of the parent."""
        w, h = self.parent.width(), self.parent.height()
        for lab in self.all():
            lab.adjustSize()
            lab.raise_()
        m = _MARGIN
        self.title.move(m, m)
        self.synthetic.move(w - self.synthetic.width() - m, m)
        top, bottom = self.letters["top"], self.letters["bottom"]
        left, right = self.letters["left"], self.letters["right"]
        # The top letter sits below the title row so that neither covers the other.
        badge = self.synthetic.height() if self.synthetic.isVisibleTo(self.parent) else 0
        top.move((w - top.width()) // 2, m + max(self.title.height(), badge))
        bottom.move((w - bottom.width()) // 2, h - bottom.height() - m - self.slice_info.height())
        left.move(m, (h - left.height()) // 2)
        right.move(w - right.width() - m, (h - right.height()) // 2)
        self.slice_info.move(m, h - self.slice_info.height() - m)
        self.window_info.move(w - self.window_info.width() - m, h - self.window_info.height() - m)
        self.readout.move(
            w - self.readout.width() - m, h - self.window_info.height() - self.readout.height() - m
        )
        self.placeholder.setFixedWidth(max(40, w - 8 * m))
        self.placeholder.adjustSize()
        self.placeholder.move(4 * m, (h - self.placeholder.height()) // 2 + 20)
