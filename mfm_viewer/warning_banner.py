"""The reading-warnings banner above the views: a count, the first warning, and the full list on demand.

It stays while the study is open (unlike the status bar, which is for transient messages) and can
be collapsed to its one header line.
"""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from mfm_viewer.logic.study_info import warning_topic

_STYLE = (
    "QFrame#warning_banner { background: #4a3a10; border: 1px solid #c9a227; }"
    " QLabel { color: #ffe9a8; background: transparent; }"
    " QToolButton { color: #ffe9a8; background: transparent; border: none; font-weight: bold; }"
)


class WarningBanner(QtWidgets.QFrame):
    """Persistent, collapsible list of a study's reading warnings (hidden when there are none)."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("warning_banner")
        self.setStyleSheet(_STYLE)
        self.warnings: list[str] = []
        self.toggle = QtWidgets.QToolButton(self)
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(QtCore.Qt.ArrowType.RightArrow)
        self.toggle.setToolTip("Show or hide every reading warning")
        self.toggle.toggled.connect(self.set_expanded)
        self.summary = QtWidgets.QLabel(self)
        self.summary.setSizePolicy(
            QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred
        )
        self.details = QtWidgets.QLabel(self)
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.setSizePolicy(
            QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred
        )
        self.details.hide()
        top = QtWidgets.QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.toggle)
        top.addWidget(self.summary, 1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(6, 2, 6, 3)
        layout.setSpacing(2)
        layout.addLayout(top)
        layout.addWidget(self.details)
        self.hide()

    @property
    def count(self) -> int:
        """Number of warnings shown."""
        return len(self.warnings)

    @property
    def expanded(self) -> bool:
        """True when every warning is listed."""
        return self.toggle.isChecked()

    def set_warnings(self, warnings: list[str]) -> None:
        """Show a study's warnings (none: the banner hides)."""
        self.warnings = list(warnings)
        n = len(self.warnings)
        self.toggle.setText(f"⚠ {n} reading warning{'s' if n != 1 else ''}")
        self.details.setText("\n".join(f"• {w}" for w in self.warnings))
        self.summary.setToolTip("\n".join(self.warnings))
        self.setToolTip("\n".join(self.warnings))
        self._update_summary()
        self.setVisible(n > 0)

    def set_expanded(self, expanded: bool) -> None:
        """List every warning (True) or only the header line."""
        if self.toggle.isChecked() != expanded:
            self.toggle.setChecked(expanded)  # comes back here through toggled
            return
        self.toggle.setArrowType(
            QtCore.Qt.ArrowType.DownArrow if expanded else QtCore.Qt.ArrowType.RightArrow
        )
        self.details.setVisible(expanded)
        self._update_summary()

    def _update_summary(self) -> None:
        if not self.warnings:
            self.summary.setText("")
            return
        first = " · ".join(warning_topic(w) for w in self.warnings)
        first += "   (click ▸ to read)" if not self.expanded else ""
        width = max(40, self.summary.width())
        self.summary.setText(
            self.summary.fontMetrics().elidedText(first, QtCore.Qt.TextElideMode.ElideRight, width)
        )

    def resizeEvent(self, ev) -> None:  # noqa: N802
        super().resizeEvent(ev)
        self._update_summary()
