"""Dialogs: plain-words errors, the series picker, the reference-geometry question."""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from mfm_engine.errors import MFMError


def plain_message(exc: BaseException) -> str:
    """The user-facing text of an error: the MFMError message, or the exception's own words."""
    if isinstance(exc, MFMError):
        return str(exc)
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def show_error(parent: QtWidgets.QWidget | None, title: str, text: str) -> QtWidgets.QMessageBox:
    """A non-blocking warning box in plain words (no traceback); returned so callers/tests can read it."""
    box = QtWidgets.QMessageBox(
        QtWidgets.QMessageBox.Icon.Warning, title, text, QtWidgets.QMessageBox.StandardButton.Ok, parent
    )
    box.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
    box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box


class SeriesPickerDialog(QtWidgets.QDialog):
    """Choose one series of a DICOM folder that holds several."""

    def __init__(self, folder: str, series: list, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Choose a series")
        self.series = series
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(QtWidgets.QLabel(f"{folder} holds {len(series)} series. Which one?"))
        self.table = QtWidgets.QTableWidget(len(series), 4, self)
        self.table.setHorizontalHeaderLabels(["Description", "Modality", "Slices", "Series UID"])
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        for row, s in enumerate(series):
            values = [
                getattr(s, "description", "") or "(no description)",
                getattr(s, "modality", "") or "",
                str(getattr(s, "n_slices", "")),
                getattr(s, "uid", "") or "",
            ]
            for col, value in enumerate(values):
                self.table.setItem(row, col, QtWidgets.QTableWidgetItem(str(value)))
        self.table.resizeColumnsToContents()
        self.table.selectRow(0)
        self.table.doubleClicked.connect(self.accept)
        layout.addWidget(self.table)
        buttons = QtWidgets.QDialogButtonBox(
            QtWidgets.QDialogButtonBox.StandardButton.Open | QtWidgets.QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(720, 320)

    def chosen_index(self) -> int:
        """Row of the chosen series."""
        return max(0, self.table.currentRow())

    def chosen_key(self) -> str | int:
        """What ``read_study(series=...)`` needs: the series key (unique), else its index."""
        index = self.chosen_index()
        return getattr(self.series[index], "key", "") or index


def ask_resample(parent: QtWidgets.QWidget | None, message: str) -> bool:
    """Ask whether to resample a reference on another grid; False refuses it."""
    box = QtWidgets.QMessageBox(
        QtWidgets.QMessageBox.Icon.Question,
        "Reference on another grid",
        message + "\n\nResample the reference onto the input grid?",
        parent=parent,
    )
    resample = box.addButton("Resample onto input grid", QtWidgets.QMessageBox.ButtonRole.AcceptRole)
    box.addButton("Do not open", QtWidgets.QMessageBox.ButtonRole.RejectRole)
    box.exec()
    return box.clickedButton() is resample
