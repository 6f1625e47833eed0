"""Vertical colour bars in HU: the diverging one of the difference maps, the sequential one of the
solver-disagreement map. One painter draws both; each bar says only its colours, title and ticks."""

from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from mfm_viewer.logic.difference import diverging_lut


class GradientBar(QtWidgets.QWidget):
    """A gradient from ``lut[0]`` (bottom) to ``lut[-1]`` (top) with a title and HU tick labels."""

    title_lines: tuple[str, ...] = ("HU",)
    tick_fractions: tuple[float, ...] = (0.0, 0.5, 1.0)  # 0 = top of the bar, 1 = bottom

    def __init__(self, lut: np.ndarray, range_hu: float, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.range_hu = float(range_hu)
        self._lut = np.asarray(lut)[:, :3]

    def set_range(self, range_hu: float) -> None:
        """Change the HU range the bar spans."""
        self.range_hu = float(range_hu)
        self.update()

    def tick_text(self, frac: float) -> str:
        """The label at ``frac`` of the bar's height from its top."""
        raise NotImplementedError

    def paintEvent(self, ev: QtGui.QPaintEvent) -> None:  # noqa: N802
        p = QtGui.QPainter(self)
        p.fillRect(self.rect(), QtGui.QColor("#202020"))
        font = p.font()
        font.setPixelSize(11)
        p.setFont(font)
        metrics = QtGui.QFontMetrics(font)
        top, bottom = 10 + 15 * len(self.title_lines), self.height() - 14
        bar = QtCore.QRect(6, top, 16, max(10, bottom - top))
        grad = QtGui.QLinearGradient(0, bar.top(), 0, bar.bottom())
        n = len(self._lut)
        for i in list(range(0, n, 8)) + [n - 1]:
            r, g, b = (int(v) for v in self._lut[n - 1 - i])  # top of the bar = the highest value
            grad.setColorAt(i / (n - 1), QtGui.QColor(r, g, b))
        p.fillRect(bar, grad)
        p.setPen(QtGui.QColor("#e0e0e0"))
        for row, line in enumerate(self.title_lines):
            p.drawText(
                QtCore.QRect(0, 4 + 15 * row, self.width(), 16), QtCore.Qt.AlignmentFlag.AlignHCenter, line
            )
        for frac in self.tick_fractions:
            y = bar.top() + frac * bar.height()
            p.drawLine(bar.right(), int(y), bar.right() + 4, int(y))
            p.drawText(bar.right() + 7, int(y + metrics.ascent() / 2 - 1), self.tick_text(frac))
        p.end()


class ColorBar(GradientBar):
    """The difference maps' bar, −range … +range HU (blue negative, white 0, red positive)."""

    title_lines = ("Δ HU",)
    tick_fractions = (0.0, 0.25, 0.5, 0.75, 1.0)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(diverging_lut(), 200.0, parent)
        self.setMinimumWidth(74)
        self.setMaximumWidth(90)
        self.setToolTip("Difference in HU: red = synthetic higher, blue = synthetic lower")

    def tick_text(self, frac: float) -> str:
        value = self.range_hu * (1 - 2 * frac)
        return f"{value:+.0f}" if value else "0"
