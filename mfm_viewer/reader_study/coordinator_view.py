"""The coordinator's side: a dialog that designs a study (bundle + key), and a results view.

Both only gather inputs and show outputs; the work is the Qt-free engine's
(`mfm_engine.reader_study.design.create_study`, `analysis.analyze_files`, `report.write_report`).
The results view shows the truth-bearing numbers, so it belongs on the coordinator's machine only.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from mfm_engine.intensity import WINDOW_PRESETS
from mfm_engine.reader_study.analysis import StudyAnalysis, analyze_files
from mfm_engine.reader_study.design import (
    CaseSource,
    DesignResult,
    SynthesisSettings,
    create_study,
    describe_design,
    parse_seeds,
    phantom_sources,
    read_cases_csv,
)
from mfm_engine.reader_study.report import write_report
from mfm_viewer.dialogs import plain_message

_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"]


def _solver_names() -> list[str]:
    from mfm_engine.solvers import SOLVERS

    return list(SOLVERS)


class DesignWorker(QtCore.QThread):
    """Run `create_study` off the GUI thread, with progress and cancel."""

    progress = QtCore.Signal(int, int, str)
    done = QtCore.Signal(object)  # DesignResult
    failed = QtCore.Signal(str)

    def __init__(self, kwargs: dict, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.kwargs = kwargs
        self.cancel_event = threading.Event()

    def run(self) -> None:
        try:
            result = create_study(
                **self.kwargs, progress=lambda d, t, s: self.progress.emit(d, t, s), cancel=self.cancel_event
            )
        except Exception as exc:  # plain words for the coordinator
            self.failed.emit(plain_message(exc))
        else:
            self.done.emit(result)


def _path_row(parent: QtWidgets.QWidget, edit: QtWidgets.QLineEdit, pick) -> QtWidgets.QHBoxLayout:
    row = QtWidgets.QHBoxLayout()
    row.addWidget(edit, 1)
    button = QtWidgets.QPushButton("Browse…", parent)
    button.clicked.connect(pick)
    row.addWidget(button)
    return row


class DesignDialog(QtWidgets.QDialog):
    """Choose candidate studies, mode, number of cases, seed, model/solver/steps; write the bundle and key."""

    created = QtCore.Signal(object)  # DesignResult

    def __init__(self, parent: QtWidgets.QWidget | None = None, sources: Sequence[CaseSource] = ()) -> None:
        super().__init__(parent)
        self.setWindowTitle("Design a blinded reader study")
        self.sources: list[CaseSource] = []
        self.result: DesignResult | None = None
        self.worker: DesignWorker | None = None
        layout = QtWidgets.QVBoxLayout(self)

        cand = QtWidgets.QGroupBox(
            "Candidate studies (each: a real native, and a synthetic native or a contrast series)"
        )
        cand_layout = QtWidgets.QVBoxLayout(cand)
        self.table = QtWidgets.QTableWidget(0, 4, cand)
        self.table.setHorizontalHeaderLabels(
            ["Case", "Real native", "Synthetic native", "Contrast (to translate)"]
        )
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        cand_layout.addWidget(self.table)
        buttons = QtWidgets.QHBoxLayout()
        add_csv = QtWidgets.QPushButton("Add from CSV…", cand)
        add_csv.setToolTip("A CSV with columns id, native, synthetic and/or contrast (study paths)")
        add_csv.clicked.connect(self._add_csv)
        self.seeds_edit = QtWidgets.QLineEdit(cand)
        self.seeds_edit.setPlaceholderText("phantom seeds, e.g. 1-20")
        self.phantom_slices = QtWidgets.QSpinBox(cand)
        self.phantom_slices.setRange(1, 200)
        self.phantom_slices.setValue(16)
        self.phantom_slices.setSuffix(" slices")
        self.phantom_size = QtWidgets.QSpinBox(cand)
        self.phantom_size.setRange(32, 512)
        self.phantom_size.setValue(256)
        self.phantom_size.setSuffix(" px")
        add_phantoms = QtWidgets.QPushButton("Add phantom patients", cand)
        add_phantoms.clicked.connect(self._add_phantoms)
        clear = QtWidgets.QPushButton("Clear", cand)
        clear.clicked.connect(self.clear_sources)
        for w in (add_csv, self.seeds_edit, self.phantom_slices, self.phantom_size, add_phantoms, clear):
            buttons.addWidget(w)
        cand_layout.addLayout(buttons)
        layout.addWidget(cand, 1)

        form = QtWidgets.QFormLayout()
        self.mode_combo = QtWidgets.QComboBox(self)
        self.mode_combo.addItem("paired — real and synthetic side by side; pick the synthetic", "paired")
        self.mode_combo.addItem("single image — one volume per case, half real; real or synthetic?", "single")
        form.addRow("Mode:", self.mode_combo)
        self.n_spin = QtWidgets.QSpinBox(self)
        self.n_spin.setRange(1, 10000)
        self.n_spin.setValue(20)
        form.addRow("Number of cases:", self.n_spin)
        self.seed_spin = QtWidgets.QSpinBox(self)
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setValue(1)
        form.addRow("Seed (case choice and sides):", self.seed_spin)
        self.model_edit = QtWidgets.QLineEdit(self)
        self.model_edit.setPlaceholderText(
            "checkpoint .safetensors — needed when a case has no synthetic yet"
        )
        form.addRow("Model:", _path_row(self, self.model_edit, self._pick_model))
        engine = QtWidgets.QHBoxLayout()
        self.solver_combo = QtWidgets.QComboBox(self)
        self.solver_combo.addItems(_solver_names())
        self.steps_spin = QtWidgets.QSpinBox(self)
        self.steps_spin.setRange(1, 1000)
        self.steps_spin.setValue(10)
        self.device_combo = QtWidgets.QComboBox(self)
        self.device_combo.addItems(["auto", "cpu", "cuda", "mps"])
        for label, w in (
            ("solver", self.solver_combo),
            ("steps", self.steps_spin),
            ("device", self.device_combo),
        ):
            engine.addWidget(QtWidgets.QLabel(label, self))
            engine.addWidget(w)
        engine.addStretch(1)
        form.addRow("Synthesis:", engine)
        self.window_combo = QtWidgets.QComboBox(self)
        for preset in WINDOW_PRESETS:
            self.window_combo.addItem(
                f"{preset.name}  (W {preset.width:g} / L {preset.level:g})", preset.name
            )
        self.window_combo.setCurrentIndex(self.window_combo.findData("abdomen (Slicer)"))
        form.addRow("Readers' initial window:", self.window_combo)
        self.revisions_check = QtWidgets.QCheckBox(
            "Readers may change an answered case (recorded as a revision)", self
        )
        form.addRow("", self.revisions_check)
        self.bundle_edit = QtWidgets.QLineEdit(self)
        form.addRow("Bundle folder (for readers):", _path_row(self, self.bundle_edit, self._pick_bundle))
        self.key_edit = QtWidgets.QLineEdit(self)
        form.addRow("Key file (keep it yourself):", _path_row(self, self.key_edit, self._pick_key))
        layout.addLayout(form)

        self.progress = QtWidgets.QProgressBar(self)
        self.progress.hide()
        layout.addWidget(self.progress)
        self.message = QtWidgets.QLabel(self)
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.message)
        box = QtWidgets.QDialogButtonBox(self)
        self.create_button = box.addButton("Create study", QtWidgets.QDialogButtonBox.ButtonRole.AcceptRole)
        self.cancel_button = box.addButton(QtWidgets.QDialogButtonBox.StandardButton.Close)
        self.create_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self._cancel_or_close)
        layout.addWidget(box)
        self.add_sources(sources)
        self.resize(900, 700)

    # -- candidates -----------------------------------------------------------------------------
    def add_sources(self, sources: Sequence[CaseSource]) -> None:
        """Add candidate studies to the table."""
        for s in sources:
            self.sources.append(s)
            row = self.table.rowCount()
            self.table.insertRow(row)
            if s.phantom_seed is not None:
                cells = [s.label, "phantom native", "— (made now)", "phantom arterial"]
            else:
                cells = [
                    s.label,
                    s.native_path or "(loaded)",
                    s.synthetic_path or ("(loaded)" if s.synthetic_volume is not None else "— (made now)"),
                    s.contrast_path or ("(loaded)" if s.contrast_volume is not None else ""),
                ]
            for col, text in enumerate(cells):
                item = QtWidgets.QTableWidgetItem(str(text))
                item.setToolTip(str(text))
                self.table.setItem(row, col, item)
        self.table.resizeColumnToContents(0)

    def clear_sources(self) -> None:
        """Remove every candidate."""
        self.sources.clear()
        self.table.setRowCount(0)

    def _add_csv(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Cases CSV", "", "CSV (*.csv);;All files (*)")
        if path:
            try:
                self.add_sources(read_cases_csv(path))
            except Exception as exc:
                self._say(plain_message(exc), error=True)

    def _add_phantoms(self) -> None:
        try:
            seeds = parse_seeds([self.seeds_edit.text()])
        except Exception as exc:
            self._say(plain_message(exc), error=True)
            return
        if not seeds:
            self._say("Type phantom seeds first, e.g. 1-20.", error=True)
            return
        self.add_sources(phantom_sources(seeds, self.phantom_slices.value(), self.phantom_size.value()))

    def _pick_model(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Model checkpoint", "", "Checkpoints (*.safetensors)"
        )
        if path:
            self.model_edit.setText(path)

    def _pick_bundle(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "New bundle folder", "reader-study")
        if path:
            self.bundle_edit.setText(path)
            if not self.key_edit.text():
                self.key_edit.setText(str(Path(path).with_name(Path(path).name + "-KEY.json")))

    def _pick_key(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Key file", "study-KEY.json", "JSON (*.json)")
        if path:
            self.key_edit.setText(path)

    # -- running --------------------------------------------------------------------------------
    def settings(self) -> dict:
        """The `create_study` keyword arguments the form describes."""
        model = self.model_edit.text().strip()
        synthesis = (
            SynthesisSettings(
                model,
                self.solver_combo.currentText(),
                self.steps_spin.value(),
                self.device_combo.currentText(),
            )
            if model
            else None
        )
        return dict(
            sources=list(self.sources),
            out=self.bundle_edit.text().strip(),
            key_path=self.key_edit.text().strip(),
            mode=self.mode_combo.currentData(),
            n=self.n_spin.value(),
            seed=self.seed_spin.value(),
            synthesis=synthesis,
            window=self.window_combo.currentData(),
            allow_revisions=self.revisions_check.isChecked(),
            source_description=f"{len(self.sources)} studies chosen in the viewer",
        )

    def start(self) -> None:
        """Check the form and create the study in a worker thread."""
        kwargs = self.settings()
        if not kwargs["sources"]:
            self._say("Add candidate studies first.", error=True)
            return
        if not kwargs["out"] or not kwargs["key_path"]:
            self._say("Choose a bundle folder and a key file.", error=True)
            return
        self.create_button.setEnabled(False)
        self.cancel_button.setText("Cancel")
        self.progress.setRange(0, kwargs["n"])
        self.progress.setValue(0)
        self.progress.show()
        self._say("Creating the study…")
        self.worker = DesignWorker(kwargs, self)
        self.worker.progress.connect(self._on_progress)
        self.worker.done.connect(self._on_done)
        self.worker.failed.connect(self._on_failed)
        self.worker.start()

    def _on_progress(self, done: int, total: int, text: str) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        self._say(text)

    def _on_done(self, result: DesignResult) -> None:
        self.result = result
        self._finish()
        self._say(describe_design(result))
        self.created.emit(result)

    def _on_failed(self, message: str) -> None:
        self._finish()
        self._say(message, error=True)

    def _finish(self) -> None:
        self.progress.hide()
        self.create_button.setEnabled(True)
        self.cancel_button.setText("Close")

    def _cancel_or_close(self) -> None:
        if self.worker is not None and self.worker.isRunning():
            self.worker.cancel_event.set()
            self._say("Cancelling after the current case…")
        else:
            self.reject()

    def _say(self, text: str, error: bool = False) -> None:
        self.message.setStyleSheet("color: #b00020;" if error else "")
        self.message.setText(text)


# -- results ---------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return "–" if math.isnan(x) else f"{100 * x:.1f} %"


def _ci(ci: tuple[float, float]) -> str:
    return "–" if math.isnan(ci[0]) else f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f} %"


def _num(x: float, digits: int = 3) -> str:
    return "–" if math.isnan(x) else f"{x:.{digits}f}"


class ResultsView(QtWidgets.QWidget):
    """Bundle + key + readers' results → per-reader table, pooled estimate, agreement, plots, report."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Reader study — results (coordinator only: shows the truth)")
        self.analysis: StudyAnalysis | None = None
        self.result_paths: list[str] = []
        layout = QtWidgets.QVBoxLayout(self)

        inputs = QtWidgets.QFormLayout()
        self.bundle_edit = QtWidgets.QLineEdit(self)
        inputs.addRow("Bundle:", _path_row(self, self.bundle_edit, self._pick_bundle))
        self.key_edit = QtWidgets.QLineEdit(self)
        inputs.addRow("Key:", _path_row(self, self.key_edit, self._pick_key))
        self.results_label = QtWidgets.QLabel("no results files", self)
        pick_results = QtWidgets.QPushButton("Choose results files…", self)
        pick_results.clicked.connect(self._pick_results)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.results_label, 1)
        row.addWidget(pick_results)
        analyse = QtWidgets.QPushButton("Analyse", self)
        analyse.clicked.connect(self.analyse)
        row.addWidget(analyse)
        self.export_button = QtWidgets.QPushButton("Export report…", self)
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(self._export)
        row.addWidget(self.export_button)
        inputs.addRow("Results:", row)
        layout.addLayout(inputs)

        self.summary = QtWidgets.QLabel(self)
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.summary.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.summary)
        self.table = QtWidgets.QTableWidget(0, 0, self)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        layout.addWidget(self.table, 1)

        plots = QtWidgets.QHBoxLayout()
        self.accuracy_plot = pg.PlotWidget(background="w")
        self.roc_plot = pg.PlotWidget(background="w")
        for plot in (self.accuracy_plot, self.roc_plot):
            plot.setMinimumHeight(260)
            plots.addWidget(plot, 1)
        layout.addLayout(plots, 3)
        self.resize(1200, 860)

    # -- inputs ---------------------------------------------------------------------------------
    def _pick_bundle(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Bundle folder", self.bundle_edit.text())
        if folder:
            self.bundle_edit.setText(folder)

    def _pick_key(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Key file", "", "JSON (*.json)")
        if path:
            self.key_edit.setText(path)

    def _pick_results(self) -> None:
        paths, _ = QtWidgets.QFileDialog.getOpenFileNames(self, "Readers' results", "", "Results (*.sqlite)")
        if paths:
            self.set_inputs(self.bundle_edit.text(), self.key_edit.text(), paths)

    def set_inputs(self, bundle: str | Path, key: str | Path, results: Sequence[str | Path]) -> None:
        """Fill the three inputs (without analysing)."""
        self.bundle_edit.setText(str(bundle))
        self.key_edit.setText(str(key))
        self.result_paths = [str(p) for p in results]
        names = ", ".join(Path(p).name for p in self.result_paths)
        self.results_label.setText(
            f"{len(self.result_paths)} file(s): {names}" if names else "no results files"
        )

    def load(self, bundle: str | Path, key: str | Path, results: Sequence[str | Path]) -> bool:
        """Set the inputs and analyse; False (with the reason shown) when they do not belong together."""
        self.set_inputs(bundle, key, results)
        return self.analyse()

    def analyse(self) -> bool:
        """Run the analysis on the current inputs and show it."""
        try:
            analysis = analyze_files(
                self.bundle_edit.text().strip(), self.key_edit.text().strip(), self.result_paths
            )
        except Exception as exc:
            self.analysis = None
            self.export_button.setEnabled(False)
            self.summary.setText(f"<span style='color:#b00020'>Refused: {plain_message(exc)}</span>")
            self.table.setRowCount(0)
            self.accuracy_plot.clear()
            self.roc_plot.clear()
            return False
        self.show_analysis(analysis)
        return True

    def _export(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Write the report into")
        if folder and self.analysis is not None:
            self.export(folder)

    def export(self, folder: str | Path) -> list[Path]:
        """Write the Markdown/CSV/iMRMC/PNG report into ``folder``."""
        if self.analysis is None:
            return []
        paths = write_report(self.analysis, folder)
        self.summary.setText(self.summary.text() + f"<br>Report written to {folder}")
        return paths

    # -- showing --------------------------------------------------------------------------------
    def show_analysis(self, a: StudyAnalysis) -> None:
        """Fill the summary, the table and the plots."""
        self.analysis = a
        self.export_button.setEnabled(True)
        p = a.pooled
        if p.n_answers and not math.isnan(p.low):
            pooled = (
                f"Pooled proportion correct <b>{_pct(p.proportion)}</b> "
                f"(95 % CI {_pct(p.low)}–{_pct(p.high)}, "
                f"p = {_num(p.p_value)} vs 50 %) — logistic GEE clustered by case, readers fixed."
            )
        else:
            pooled = f"Pooled proportion correct {_pct(p.proportion)} (no interval: all answers alike)."
        ag = a.agreement
        agreement = (
            f"{ag.method} = {_num(ag.kappa)} on {ag.n_cases} cases."
            if ag.method
            else "One reader: no agreement."
        )
        question = "paired forced choice" if a.mode == "paired" else "single image, real or synthetic"
        notes = "".join(f"<br><i>{n}</i>" for n in a.notes)
        self.summary.setText(
            f"<b>Study {a.study_id}</b> — {question}, {a.n_cases} cases, {len(a.readers)} reader(s).<br>"
            f"{pooled}<br>{agreement}{notes}"
        )
        if a.mode == "paired":
            header = [
                "Reader",
                "Answered",
                "Correct",
                "Accuracy",
                "95 % CI (Wilson)",
                "p (exact, vs 50 %)",
                "d′",
                "Mean time (s)",
                "Window changes",
                "Revisions",
            ]
        else:
            header = [
                "Reader",
                "Answered",
                "Accuracy",
                "95 % CI (Wilson)",
                "p (exact, vs 50 %)",
                "Sensitivity",
                "Specificity",
                "ROC AUC",
                "d′",
                "Mean time (s)",
                "Window changes",
                "Revisions",
            ]
        self.table.setColumnCount(len(header))
        self.table.setHorizontalHeaderLabels(header)
        self.table.setRowCount(len(a.readers))
        for row, r in enumerate(a.readers):
            tail = [_num(r.mean_seconds, 1), str(r.window_changes), str(r.revisions)]
            if a.mode == "paired":
                cells = [
                    r.reader,
                    f"{r.n_answered}/{r.n_cases}",
                    str(r.n_correct),
                    _pct(r.accuracy),
                    _ci(r.ci),
                    _num(r.p_value),
                    _num(r.dprime, 2),
                    *tail,
                ]
            else:
                cells = [
                    r.reader,
                    f"{r.n_answered}/{r.n_cases}",
                    _pct(r.accuracy),
                    _ci(r.ci),
                    _num(r.p_value),
                    f"{_pct(r.sensitivity)} ({_ci(r.sensitivity_ci)})",
                    f"{_pct(r.specificity)} ({_ci(r.specificity_ci)})",
                    _num(r.auc),
                    _num(r.dprime, 2),
                    *tail,
                ]
            for col, text in enumerate(cells):
                self.table.setItem(row, col, QtWidgets.QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        self._plot_accuracy(a)
        self._plot_roc(a)

    def _plot_accuracy(self, a: StudyAnalysis) -> None:
        plot = self.accuracy_plot
        plot.clear()
        items = [(r.reader, r.accuracy, r.ci, _COLOURS[i % len(_COLOURS)]) for i, r in enumerate(a.readers)]
        if a.pooled.n_answers and len(a.readers) > 1 and not math.isnan(a.pooled.low):
            items.append(("pooled", a.pooled.proportion, (a.pooled.low, a.pooled.high), "#000000"))
        plot.setTitle("Accuracy per reader (95 % intervals)", color="k")
        plot.setLabel("left", "proportion correct", color="k")
        plot.setYRange(0, 1, padding=0.02)
        plot.setXRange(-0.6, len(items) - 0.4, padding=0)
        plot.addItem(
            pg.InfiniteLine(
                pos=0.5, angle=0, pen=pg.mkPen("#888888", width=1, style=QtCore.Qt.PenStyle.DashLine)
            )
        )
        for x, (_name, acc, ci, colour) in enumerate(items):
            if not math.isnan(ci[0]):
                plot.addItem(
                    pg.ErrorBarItem(
                        x=np.array([x], dtype=float),
                        y=np.array([acc], dtype=float),
                        top=np.array([ci[1] - acc], dtype=float),
                        bottom=np.array([acc - ci[0]], dtype=float),
                        beam=0.2,
                        pen=pg.mkPen(colour, width=2),
                    )
                )
            plot.addItem(pg.ScatterPlotItem([x], [acc], size=12, brush=pg.mkBrush(colour), pen=pg.mkPen("k")))
        plot.getAxis("bottom").setTicks([[(x, name) for x, (name, *_rest) in enumerate(items)]])

    def _plot_roc(self, a: StudyAnalysis) -> None:
        plot = self.roc_plot
        plot.clear()
        if a.mode != "single":
            plot.setTitle("ROC: single-image studies only (paired: accuracy is the 2AFC AUC)", color="k")
            plot.hide()
            return
        plot.show()
        plot.setTitle("ROC from choice + confidence (1–10 rating)", color="k")
        plot.setLabel("bottom", "false-positive rate (real called synthetic)", color="k")
        plot.setLabel("left", "true-positive rate", color="k")
        plot.setRange(xRange=(0, 1), yRange=(0, 1), padding=0.02)
        plot.setLimits(xMin=-0.05, xMax=1.05, yMin=-0.05, yMax=1.05)
        legend = plot.addLegend(offset=(-10, -10), labelTextColor="k")
        plot.plot([0, 1], [0, 1], pen=pg.mkPen("#888888", style=QtCore.Qt.PenStyle.DashLine))
        for i, r in enumerate(a.readers):
            fpr, tpr = r.roc
            if fpr:
                plot.plot(
                    fpr,
                    tpr,
                    pen=pg.mkPen(_COLOURS[i % len(_COLOURS)], width=2),
                    symbol="o",
                    symbolSize=5,
                    symbolBrush=_COLOURS[i % len(_COLOURS)],
                    name=f"{r.reader} (AUC {_num(r.auc, 2)})",
                )
        legend.setBrush(pg.mkBrush(255, 255, 255, 220))


def open_design_dialog(
    parent: QtWidgets.QWidget | None = None, sources: Sequence[CaseSource] = ()
) -> DesignDialog:
    """Show the design dialog (non-modal) with optional candidate studies already listed."""
    dialog = DesignDialog(parent, sources)
    dialog.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.show()
    return dialog


def open_results_view(parent: QtWidgets.QWidget | None = None) -> ResultsView:
    """Show an empty results view in its own window."""
    view = ResultsView(None)
    view.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
    view.show()
    return view
