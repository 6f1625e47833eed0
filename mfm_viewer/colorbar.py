"""A vertical colour bar in HU for the difference maps (blue negative, white 0, red positive)."""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from mfm_viewer.logic.difference import diverging_lut


class ColorBar(QtWidgets.QWidget):
    """Gradient with tick labels from −range to +range HU."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.range_hu = 200.0
        self.setMinimumWidth(74)
        self.setMaximumWidth(90)
        self._lut = diverging_lut()
        self.setToolTip("Difference in HU: red = synthetic higher, blue = synthetic lower")

    def set_range(self, range_hu: float) -> None:
        """Show ±``range_hu``."""
        self.range_hu = float(range_hu)
        self.update()

    def paintEvent(self, ev: QtGui.QPaintEvent) -> None:  # noqa: N802
        p = QtGui.QPainter(self)
        p.fillRect(self.rect(), QtGui.QColor("#202020"))
        font = p.font()
        font.setPixelSize(11)
        p.setFont(font)
        metrics = QtGui.QFontMetrics(font)
        top, bottom = 26, self.height() - 14
        bar = QtCore.QRect(6, top, 16, max(10, bottom - top))
        grad = QtGui.QLinearGradient(0, bar.top(), 0, bar.bottom())
        n = len(self._lut)
        for i in range(0, n, 8):
            r, g, b, _ = (int(v) for v in self._lut[n - 1 - i])  # top of the bar = +range
            grad.setColorAt(i / (n - 1), QtGui.QColor(r, g, b))
        r, g, b, _ = (int(v) for v in self._lut[0])
        grad.setColorAt(1.0, QtGui.QColor(r, g, b))
        p.fillRect(bar, grad)
        p.setPen(QtGui.QColor("#e0e0e0"))
        p.drawText(QtCore.QRect(0, 4, self.width(), 18), QtCore.Qt.AlignmentFlag.AlignHCenter, "Δ HU")
        for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
            y = bar.top() + frac * bar.height()
            value = self.range_hu * (1 - 2 * frac)
            p.drawLine(bar.right(), int(y), bar.right() + 4, int(y))
            text = f"{value:+.0f}" if value else "0"
            p.drawText(bar.right() + 7, int(y + metrics.ascent() / 2 - 1), text)
        p.end()
