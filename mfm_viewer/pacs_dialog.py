"""File ▸ Open from PACS…, File ▸ Send synthetic to PACS…, File ▸ PACS nodes…: hooked onto a MainWindow.

``install(window)`` adds the three actions to the File menu. The dialogs only lay out widgets and
start workers; every network step is `mfm_engine.pacs` (the same code as ``mfm pacs``), run in a
QThread so the window stays responsive, with a progress bar and Cancel. A retrieve lands in the PACS
cache folder (complete, or nothing: see `mfm_engine.pacs.retrieve`) and then opens like any DICOM
folder. Nodes, our AE title and the cache folder live in the PACS config file (docs/pacs.md), shared
with the command line.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from mfm_engine.pacs.errors import PacsCancelled
from mfm_engine.pacs.nodes import PacsConfig, load_config, parse_node, resolve_node, save_config
from mfm_engine.pacs.query import Query, SeriesMatch, StudyMatch, parse_date_range
from mfm_viewer.dialogs import plain_message

COLUMNS = ["Date", "Patient ID", "Patient name", "Accession", "Description", "Modality", "Series", "Images"]
DESCRIPTION_COLUMN = COLUMNS.index("Description")
MODALITIES = ("", "CT", "MR", "PT", "CR", "DX", "US", "NM", "XA")
STUDY_ROLE = QtCore.Qt.ItemDataRole.UserRole
SERIES_ROLE = QtCore.Qt.ItemDataRole.UserRole + 1


class PacsWorker(QtCore.QThread):
    """Run ``fn(progress, cancel)`` off the GUI thread; progress and the outcome come back as signals."""

    progress = QtCore.Signal(int, int)
    done = QtCore.Signal(object)
    failed = QtCore.Signal(str)
    cancelled = QtCore.Signal(str)

    def __init__(self, fn: Callable[[Callable[[int, int], None], threading.Event], Any], parent=None) -> None:
        super().__init__(parent)
        self.fn = fn
        self.cancel_event = threading.Event()

    def cancel(self) -> None:
        """Ask the running step to stop (a retrieve keeps nothing; a send stops between instances)."""
        self.cancel_event.set()

    def run(self) -> None:
        try:
            result = self.fn(lambda done, total: self.progress.emit(done, total), self.cancel_event)
        except PacsCancelled as exc:
            self.cancelled.emit(str(exc))
        except Exception as exc:  # every failure in plain words; the dialog stays usable
            self.failed.emit(plain_message(exc))
        else:
            self.done.emit(result)


class _NodeDialogBase(QtWidgets.QDialog):
    """A node chooser (configured names, or AET@HOST:PORT / a URL typed in), a status line, one worker."""

    started = QtCore.Signal(object)  # the worker, before it starts (tests hook into its signals here)

    def __init__(self, config: PacsConfig | None, parent: QtWidgets.QWidget | None) -> None:
        super().__init__(parent)
        self.config = config or load_config()
        self.worker: PacsWorker | None = None
        self._running = False
        self.node_box = QtWidgets.QComboBox()
        self.node_box.setEditable(True)
        self.node_box.setMinimumWidth(280)
        for name in sorted(self.config.nodes):
            self.node_box.addItem(name)
            self.node_box.setItemData(
                self.node_box.count() - 1, self.config.nodes[name], QtCore.Qt.ItemDataRole.ToolTipRole
            )
        if self.config.default_node:
            self.node_box.setCurrentText(self.config.default_node)
        self.node_box.lineEdit().setPlaceholderText("node name, AET@HOST:PORT or http://…/dicom-web")
        self.status = QtWidgets.QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setVisible(False)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel)

    def client(self):
        """The client for the chosen node (PacsError in plain words when the text is no node)."""
        from mfm_engine.pacs import connect

        return connect(
            resolve_node(self.node_box.currentText().strip() or None, self.config), config=self.config
        )

    def say(self, text: str, error: bool = False) -> None:
        """Show a status line (red for errors)."""
        self.status.setStyleSheet("color: #c0392b;" if error else "")
        self.status.setText(text)

    def busy(self) -> bool:
        """True from a worker's start until its results (and its end) have been handled here."""
        return self._running

    def run_worker(
        self,
        fn: Callable,
        on_done: Callable[[Any], None],
        *,
        what: str,
        with_progress: bool = False,
    ) -> PacsWorker | None:
        """Start ``fn`` in a worker (one at a time); errors and cancels go to the status line."""
        if self.busy():
            return None
        worker = PacsWorker(fn, self)
        self.worker = worker
        worker.done.connect(on_done)
        worker.failed.connect(lambda text: self.say(f"{what} failed: {text}", error=True))
        worker.cancelled.connect(lambda text: self.say(text))
        worker.finished.connect(self._idle)
        if with_progress:
            self.progress.setRange(0, 0)
            self.progress.setVisible(True)
            self.cancel_button.setVisible(True)
            self.cancel_button.setEnabled(True)
            worker.progress.connect(self._on_progress)
        self.say(f"{what}…")
        self._set_enabled(False)
        self._running = True
        self.started.emit(worker)
        worker.start()
        return worker

    def _on_progress(self, done: int, total: int) -> None:
        if total:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
            self.progress.setFormat("%v / %m")
        else:
            self.progress.setRange(0, 0)

    def _idle(self) -> None:
        # Queued after the worker's result signals, so those have been handled by now.
        self._running = False
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
        self._set_enabled(True)

    def _set_enabled(self, enabled: bool) -> None:
        """Subclasses switch their action buttons."""

    def cancel(self) -> None:
        """Cancel the running retrieve or send."""
        if self.busy() and self.worker is not None:
            self.worker.cancel()
            self.cancel_button.setEnabled(False)
            self.say("Cancelling…")

    def wait_idle(self, timeout_ms: int = 60000) -> None:
        """Join the worker (used when closing)."""
        if self.worker is not None:
            self.worker.cancel()
            self.worker.wait(timeout_ms)

    def reject(self) -> None:  # noqa: D102 - closing cancels and waits for the network step
        self.wait_idle()
        super().reject()


class OpenFromPacsDialog(_NodeDialogBase):
    """Query a PACS, browse studies and their series, retrieve one into the cache and open it."""

    opened = QtCore.Signal(str)  # the retrieved folder

    def __init__(self, config: PacsConfig | None = None, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(config, parent)
        self.setWindowTitle("Open from PACS")
        self.retrieved_folder: Path | None = None
        self.patient_id = QtWidgets.QLineEdit()
        self.patient_name = QtWidgets.QLineEdit()
        self.patient_name.setPlaceholderText("wildcards: DOE^*")
        self.dates = QtWidgets.QLineEdit()
        self.dates.setPlaceholderText("YYYYMMDD, YYYYMMDD-YYYYMMDD, A-, -B")
        self.modality = QtWidgets.QComboBox()
        for m in MODALITIES:
            self.modality.addItem(m or "any", m)
        self.accession = QtWidgets.QLineEdit()
        self.search_button = QtWidgets.QPushButton("Search")
        self.search_button.setDefault(True)
        self.search_button.clicked.connect(self.search)

        form = QtWidgets.QGridLayout()
        form.addWidget(QtWidgets.QLabel("Node"), 0, 0)
        form.addWidget(self.node_box, 0, 1, 1, 3)
        form.addWidget(QtWidgets.QLabel("Patient ID"), 1, 0)
        form.addWidget(self.patient_id, 1, 1)
        form.addWidget(QtWidgets.QLabel("Patient name"), 1, 2)
        form.addWidget(self.patient_name, 1, 3)
        form.addWidget(QtWidgets.QLabel("Study date"), 2, 0)
        form.addWidget(self.dates, 2, 1)
        form.addWidget(QtWidgets.QLabel("Modality"), 2, 2)
        form.addWidget(self.modality, 2, 3)
        form.addWidget(QtWidgets.QLabel("Accession"), 3, 0)
        form.addWidget(self.accession, 3, 1)
        form.addWidget(self.search_button, 3, 3)

        self.tree = QtWidgets.QTreeWidget()
        self.tree.setHeaderLabels(COLUMNS)
        self.tree.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.itemExpanded.connect(self._load_series)
        self.tree.itemDoubleClicked.connect(lambda item, _col: self.retrieve())
        self.tree.setRootIsDecorated(True)
        self.tree.setUniformRowHeights(True)

        self.method = QtWidgets.QComboBox()
        self.method.addItem("C-GET", "get")
        self.method.addItem("C-MOVE", "move")
        self.method.setToolTip("How a DIMSE node sends the images (DICOMweb nodes use WADO-RS)")
        self.retrieve_button = QtWidgets.QPushButton("Retrieve and open")
        self.retrieve_button.clicked.connect(self.retrieve)
        close = QtWidgets.QPushButton("Close")
        close.clicked.connect(self.reject)
        bottom = QtWidgets.QHBoxLayout()
        bottom.addWidget(QtWidgets.QLabel("Retrieve by"))
        bottom.addWidget(self.method)
        bottom.addStretch(1)
        bottom.addWidget(self.progress, 3)
        bottom.addWidget(self.cancel_button)
        bottom.addWidget(self.retrieve_button)
        bottom.addWidget(close)

        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.status)
        layout.addLayout(bottom)
        self.resize(1000, 560)

    def _set_enabled(self, enabled: bool) -> None:
        for w in (self.search_button, self.retrieve_button, self.tree):
            w.setEnabled(enabled)

    # -- search ---------------------------------------------------------------------------------
    def query(self) -> Query:
        """The form as a Query (PacsError for a malformed date range)."""
        start, end = parse_date_range(self.dates.text())
        return Query(
            patient_id=self.patient_id.text().strip(),
            patient_name=self.patient_name.text().strip(),
            date_from=start,
            date_to=end,
            modality=str(self.modality.currentData() or ""),
            accession=self.accession.text().strip(),
        )

    def search(self) -> None:
        """Find studies matching the form; fills the table."""
        try:
            query, client = self.query(), self.client()
        except Exception as exc:
            self.say(plain_message(exc), error=True)
            return
        self.tree.clear()
        self.run_worker(lambda _p, _c: client.find_studies(query), self._show_studies, what="Searching")

    def _show_studies(self, studies: list[StudyMatch]) -> None:
        for study in studies:
            item = QtWidgets.QTreeWidgetItem(
                [
                    _date(study.study_date),
                    study.patient_id,
                    study.patient_name.replace("^", " ").strip(),
                    study.accession,
                    study.description,
                    "/".join(study.modalities),
                    "" if study.n_series is None else str(study.n_series),
                    "" if study.n_instances is None else str(study.n_instances),
                ]
            )
            item.setData(0, STUDY_ROLE, study)
            item.setChildIndicatorPolicy(QtWidgets.QTreeWidgetItem.ChildIndicatorPolicy.ShowIndicator)
            self.tree.addTopLevelItem(item)
        self._fit_columns()
        n = len(studies)
        self.say(
            f"{n} stud{'y' if n == 1 else 'ies'} found" + (" — expand one to see its series" if n else "")
        )

    def _fit_columns(self) -> None:
        for col in range(self.tree.columnCount()):
            self.tree.resizeColumnToContents(col)
        # Descriptions are long: give them what the other columns leave.
        header = self.tree.header()
        header.setSectionResizeMode(DESCRIPTION_COLUMN, QtWidgets.QHeaderView.ResizeMode.Stretch)

    def _load_series(self, item: QtWidgets.QTreeWidgetItem) -> None:
        study: StudyMatch | None = item.data(0, STUDY_ROLE)
        if study is None or item.childCount() or self.busy():
            return
        try:
            client = self.client()
        except Exception as exc:
            self.say(plain_message(exc), error=True)
            return
        self.run_worker(
            lambda _p, _c: client.find_series(study.study_uid),
            lambda series: self._show_series(item, series),
            what="Listing series",
        )

    def _show_series(self, parent: QtWidgets.QTreeWidgetItem, series: list[SeriesMatch]) -> None:
        for s in series:
            child = QtWidgets.QTreeWidgetItem(
                [
                    _date(s.series_date),
                    "",
                    "",
                    "",
                    s.description,
                    s.modality,
                    f"#{s.number}" if s.number is not None else "",
                    "" if s.n_instances is None else str(s.n_instances),
                ]
            )
            child.setData(0, SERIES_ROLE, s)
            parent.addChild(child)
        if not series:
            parent.setChildIndicatorPolicy(QtWidgets.QTreeWidgetItem.ChildIndicatorPolicy.DontShowIndicator)
        self._fit_columns()
        self.say(f"{len(series)} series — pick one (or the whole study) and Retrieve")

    # -- retrieve -------------------------------------------------------------------------------
    def selected(self) -> tuple[StudyMatch | None, SeriesMatch | None]:
        """(study, series) of the selected row; series is None when a study row is selected."""
        items = self.tree.selectedItems()
        if not items:
            return None, None
        item = items[0]
        series: SeriesMatch | None = item.data(0, SERIES_ROLE)
        if series is not None:
            return item.parent().data(0, STUDY_ROLE), series
        return item.data(0, STUDY_ROLE), None

    def retrieve(self) -> None:
        """Retrieve the selected series (or study) into the cache, then open it."""
        from mfm_engine.pacs.retrieve import cache_folder, cached_result

        study, series = self.selected()
        if study is None:
            self.say("Select a study or one of its series first.", error=True)
            return
        try:
            client = self.client()
            target = cache_folder(self.config.cache, study.study_uid, series.series_uid if series else None)
        except Exception as exc:
            self.say(plain_message(exc), error=True)
            return
        if series is not None:
            cached = cached_result(target)
            if cached is not None:  # a complete earlier retrieve: no need to ask the PACS again
                self._retrieved(cached)
                return
        options = {} if client.node.is_dicomweb else {"method": self.method.currentData()}

        def work(progress, cancel):
            if series is not None:
                return client.retrieve_series(
                    study.study_uid, series.series_uid, target, expected=series.n_instances,
                    progress=progress, cancel=cancel, **options,
                )  # fmt: skip
            return client.retrieve_study(study.study_uid, target, progress=progress, cancel=cancel, **options)

        self.run_worker(work, self._retrieved, what="Retrieving", with_progress=True)

    def _retrieved(self, result: Any) -> None:
        self.retrieved_folder = Path(result.folder)
        how = "from the cache" if result.from_cache else f"by {result.method}"
        self.say(f"{result.n_instances} image(s) {how} in {result.folder}")
        self.opened.emit(str(result.folder))


class SendToPacsDialog(_NodeDialogBase):
    """Send the synthetic volume, as a DICOM series of the source's study, to a node."""

    sent = QtCore.Signal(object)  # StoreResult

    def __init__(
        self,
        volume: Any,
        source: Any,
        config: PacsConfig | None = None,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(config, parent)
        self.setWindowTitle("Send synthetic series to PACS")
        self.volume, self.source = volume, source
        z, y, x = volume.shape
        what = QtWidgets.QLabel(
            f"<b>{volume.meta.get('series_description') or 'synthetic series'}</b><br>"
            f"{x}×{y}×{z} voxels; sent as a new DERIVED series (SyntheticData YES) in the source's study."
        )
        what.setWordWrap(True)
        self.send_button = QtWidgets.QPushButton("Send")
        self.send_button.setDefault(True)
        self.send_button.clicked.connect(self.send)
        close = QtWidgets.QPushButton("Close")
        close.clicked.connect(self.reject)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(QtWidgets.QLabel("Node"))
        row.addWidget(self.node_box, 1)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.progress, 1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.send_button)
        buttons.addWidget(close)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(what)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self.resize(560, 200)

    def _set_enabled(self, enabled: bool) -> None:
        self.send_button.setEnabled(enabled)

    def send(self) -> None:
        """Write the series into the cache's outbox, send it, then remove the copy."""
        from mfm_engine.io.dicom_write import write_dicom_series

        try:
            client = self.client()
        except Exception as exc:
            self.say(plain_message(exc), error=True)
            return
        outbox = self.config.cache / ".outbox" / uuid.uuid4().hex
        volume, source = self.volume, self.source
        self._node_text = str(client.node)

        def work(progress, cancel):
            try:
                write_dicom_series(volume, outbox, source=source)
                return client.store(outbox, progress=progress, cancel=cancel)
            finally:
                shutil.rmtree(outbox, ignore_errors=True)

        self.run_worker(work, self._sent, what="Sending", with_progress=True)

    def _sent(self, result: Any) -> None:
        note = f" ({len(result.warnings)} with a warning)" if result.warnings else ""
        self.say(f"Stored {result.sent} image(s) at {self._node_text}{note}.")
        self.sent.emit(result)


class PacsNodesDialog(_NodeDialogBase):
    """The PACS settings: named nodes (with Echo), our AE title, the default node, C-MOVE port, cache."""

    def __init__(self, config: PacsConfig | None = None, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(config, parent)
        self.setWindowTitle("PACS nodes")
        cfg = self.config
        self.table = QtWidgets.QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Name", "Node (AET@HOST:PORT or DICOMweb URL)"])
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        for name in sorted(cfg.nodes):
            self.add_row(name, cfg.nodes[name])
        add = QtWidgets.QPushButton("Add")
        add.clicked.connect(lambda: self.add_row("", ""))
        remove = QtWidgets.QPushButton("Remove")
        remove.clicked.connect(lambda: self.table.removeRow(self.table.currentRow()))
        self.echo_button = QtWidgets.QPushButton("Echo")
        self.echo_button.setToolTip("C-ECHO (DIMSE) or a QIDO-RS request (DICOMweb) to the selected node")
        self.echo_button.clicked.connect(self.echo)
        side = QtWidgets.QVBoxLayout()
        for b in (add, remove, self.echo_button):
            side.addWidget(b)
        side.addStretch(1)
        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.table, 1)
        top.addLayout(side)

        self.calling_ae = QtWidgets.QLineEdit(cfg.calling_ae)
        self.calling_ae.setMaxLength(16)
        self.default_node = QtWidgets.QLineEdit(cfg.default_node)
        self.move_port = QtWidgets.QSpinBox()
        self.move_port.setRange(1, 65535)
        self.move_port.setValue(cfg.move_port)
        self.cache_dir = QtWidgets.QLineEdit(str(cfg.cache))
        form = QtWidgets.QFormLayout()
        form.addRow("Our AE title", self.calling_ae)
        form.addRow("Default node (name)", self.default_node)
        form.addRow("C-MOVE port (our storage SCP)", self.move_port)
        form.addRow("Cache folder", self.cache_dir)
        buttons = QtWidgets.QDialogButtonBox(
            QtWidgets.QDialogButtonBox.StandardButton.Save | QtWidgets.QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(top, 1)
        layout.addLayout(form)
        layout.addWidget(self.status)
        layout.addWidget(buttons)
        self.resize(640, 420)

    def add_row(self, name: str, address: str) -> int:
        """Append a node row; returns its index."""
        row = self.table.rowCount()
        self.table.insertRow(row)
        self.table.setItem(row, 0, QtWidgets.QTableWidgetItem(name))
        self.table.setItem(row, 1, QtWidgets.QTableWidgetItem(address))
        self.table.setCurrentCell(row, 0)
        return row

    def _set_enabled(self, enabled: bool) -> None:
        self.echo_button.setEnabled(enabled)

    def _rows(self) -> dict[str, str]:
        nodes: dict[str, str] = {}
        for row in range(self.table.rowCount()):
            name = (self.table.item(row, 0).text() if self.table.item(row, 0) else "").strip()
            address = (self.table.item(row, 1).text() if self.table.item(row, 1) else "").strip()
            if not name and not address:
                continue
            if not name:
                raise ValueError(f"row {row + 1}: give the node {address!r} a name")
            parse_node(address, name=name)
            nodes[name] = address
        return nodes

    def echo(self) -> None:
        """Echo the selected row's node with our (edited) AE title."""
        from mfm_engine.pacs import connect

        row = self.table.currentRow()
        item = self.table.item(row, 1) if row >= 0 else None
        if item is None or not item.text().strip():
            self.say("Select a node row with an address first.", error=True)
            return
        try:
            node = parse_node(item.text())
            cfg = PacsConfig(
                calling_ae=self.calling_ae.text().strip() or "MFM", timeout_s=self.config.timeout_s
            )
            client = connect(node, config=cfg)
        except Exception as exc:
            self.say(plain_message(exc), error=True)
            return
        self.run_worker(
            lambda _p, _c: client.echo(),
            lambda seconds: self.say(f"{node} answered in {seconds * 1000:.0f} ms."),
            what=f"Echo {node}",
        )

    def save(self) -> None:
        """Validate and write the config file; the dialog closes when it is saved."""
        from mfm_engine.pacs.nodes import validate_ae_title

        try:
            cfg = PacsConfig(
                calling_ae=validate_ae_title(self.calling_ae.text(), "our AE title"),
                default_node=self.default_node.text().strip(),
                nodes=self._rows(),
                move_port=self.move_port.value(),
                move_host=self.config.move_host,
                cache_dir=self.cache_dir.text().strip(),
                timeout_s=self.config.timeout_s,
                path=self.config.path,
            )
            if cfg.default_node and cfg.default_node not in cfg.nodes:
                raise ValueError(f"the default node {cfg.default_node!r} is not among the nodes")
            save_config(cfg)
        except Exception as exc:
            self.say(plain_message(exc), error=True)
            return
        self.config = cfg
        self.accept()


def _date(text: str) -> str:
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) == 8 and text.isdigit() else text


# -- the hook ---------------------------------------------------------------------------------------
class PacsActions(QtCore.QObject):
    """The File-menu actions of one main window and the dialogs they open."""

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.open_dialog: OpenFromPacsDialog | None = None
        self.send_dialog: SendToPacsDialog | None = None
        self.nodes_dialog: PacsNodesDialog | None = None

    def _config(self) -> PacsConfig | None:
        try:
            return load_config()
        except Exception as exc:  # a broken config file is named and explained, not a crash
            self.window.report_error("PACS settings", plain_message(exc))
            return None

    def open_from_pacs(self) -> OpenFromPacsDialog | None:
        """Show the query dialog; a retrieved series opens in the window."""
        cfg = self._config()
        if cfg is None:
            return None
        dialog = OpenFromPacsDialog(cfg, self.window)
        dialog.opened.connect(self._open_folder)
        self.open_dialog = dialog
        dialog.show()
        return dialog

    def _open_folder(self, folder: str) -> None:
        if self.window.open_study(folder) and self.open_dialog is not None:
            self.open_dialog.accept()

    def send_to_pacs(self) -> SendToPacsDialog | None:
        """Show the send dialog for the current synthetic volume."""
        session = getattr(self.window, "session", None)
        if session is None or session.synthetic is None:
            self.window.report_error(
                "Nothing to send", "Translate the volume first (Engine ▸ Translate volume)."
            )
            return None
        cfg = self._config()
        if cfg is None:
            return None
        dialog = SendToPacsDialog(session.synthetic, session.input, cfg, self.window)
        self.send_dialog = dialog
        dialog.show()
        return dialog

    def nodes(self) -> PacsNodesDialog | None:
        """Show the PACS settings with the Echo button."""
        cfg = self._config()
        if cfg is None:
            return None
        dialog = PacsNodesDialog(cfg, self.window)
        self.nodes_dialog = dialog
        dialog.show()
        return dialog


def _file_menu(window: QtWidgets.QMainWindow) -> QtWidgets.QMenu:
    for action in window.menuBar().actions():
        menu = action.menu()
        if menu is not None and action.text().replace("&", "") == "File":
            return menu
    return window.menuBar().addMenu("&File")


def install(window: QtWidgets.QMainWindow) -> PacsActions:
    """Add Open from PACS…, Send synthetic to PACS… and PACS nodes… to ``window``'s File menu."""
    actions = PacsActions(window)
    menu = _file_menu(window)
    # After "Recent studies" (the first separator), so the open actions stay together.
    anchor = next((a for a in menu.actions() if a.isSeparator()), None)
    items = []
    for text, slot, shortcut in (
        ("Open from &PACS…", actions.open_from_pacs, "Ctrl+Shift+P"),
        ("Send synthetic to PACS…", actions.send_to_pacs, None),
        ("PACS nodes…", actions.nodes, None),
    ):
        action = QtGui.QAction(text, menu)
        action.triggered.connect(lambda _=False, slot=slot: slot())
        if shortcut:
            action.setShortcut(QtGui.QKeySequence(shortcut))
        items.append(action)
    separator = QtGui.QAction(menu)
    separator.setSeparator(True)
    for action in [separator, *items]:
        if anchor is not None:
            menu.insertAction(anchor, action)
        else:
            menu.addAction(action)
    window.pacs_actions = actions
    return actions
