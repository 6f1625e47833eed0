"""Glue between the engine panel, the open session and the worker threads.

It loads checkpoints, turns the panel's choices into an EngineKey, asks the preview worker for
the current axial slice whenever a choice or the slice changes (cached per key and slice),
runs whole-volume translations, and computes metrics against the reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtWidgets

from mfm_viewer.dialogs import plain_message
from mfm_viewer.engine_panel import EnginePanel
from mfm_viewer.logic.cursor import CursorModel
from mfm_viewer.logic.engine_key import EngineKey
from mfm_viewer.logic.session import Session
from mfm_viewer.settings import ViewerSettings
from mfm_viewer.workers import CallWorker, PreviewJob, PreviewWorker, VolumeWorker


def slice_metrics(session: Session, index: int) -> dict | None:
    """MAE/SSIM/PSNR of the shown synthetic axial slice against the reference, in the body mask."""
    from mfm_engine.metrics import body_mask, compare

    if session.reference is None:
        return None
    syn = session.synthetic_slice("axial", index)
    if syn is None:
        return None
    ref = session.reference.slice("axial", index)
    mask = body_mask(ref)
    if not mask.any():
        return None
    try:
        return compare(syn, ref, mask)
    except ValueError:  # a mask too thin for SSIM's window: nothing meaningful to show
        return None


def volume_metrics(synthetic, reference) -> dict:
    """MAE/SSIM/PSNR of a synthetic volume against the reference, in the reference's body mask."""
    from mfm_engine.metrics import body_mask, compare

    return compare(synthetic, reference, body_mask(reference))


class EngineController(QtCore.QObject):
    """Owns translators and workers; keeps the panel, the session and the grid in step."""

    synthetic_changed = QtCore.Signal()
    status = QtCore.Signal(str)
    error = QtCore.Signal(str, str)  # title, plain message
    volume_finished = QtCore.Signal(str)  # 'done' | 'cancelled' | 'failed'
    progress = QtCore.Signal(int, int)  # slices done, total, while a volume translates

    def __init__(
        self,
        panel: EnginePanel,
        cursor: CursorModel,
        settings: ViewerSettings,
        parent: QtCore.QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.panel, self.cursor, self.settings = panel, cursor, settings
        self.session: Session | None = None
        self.generation = 0
        self.models: list[tuple[str, str]] = []
        self.translators: dict[str, Any] = {}
        self.volume_worker: VolumeWorker | None = None
        self.translating: tuple[int, int] | None = None  # (done, total) while a volume translates
        self._call_workers: set[CallWorker] = set()
        self._axial_index = -1
        self._awaiting: tuple[EngineKey, int] | None = None  # the preview the views are waiting for
        self.preview_worker = PreviewWorker(self)
        self.preview_worker.done.connect(self._on_preview_done)
        self.preview_worker.failed.connect(self._on_preview_failed)
        self.preview_worker.start()
        panel.settings_changed.connect(self._on_settings_changed)
        panel.translate_requested.connect(self.translate_volume)
        panel.cancel_requested.connect(self.cancel)
        cursor.subscribe(self._on_cursor)
        panel.restore(self._saved_choices())

    # -- models -------------------------------------------------------------------------------
    def _saved_choices(self) -> dict:
        s = self.settings
        return {
            "direction": s.get("engine/direction", "c2n"),
            "solver": s.get("engine/solver", "euler"),
            "steps": s.get("engine/steps", 1),
            "live": s.get("engine/live", True),
        }

    def add_checkpoint(
        self, path: str | Path, label: str | None = None, select: bool = True, quiet: bool = False
    ) -> bool:
        """Load a checkpoint into the model list; errors become a plain-words dialog (or a status line)."""
        from mfm_engine.translate import Translator

        key = str(Path(path).resolve())
        if key not in self.translators:
            try:
                QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)
                try:
                    translator = Translator.from_checkpoint(key, device="auto")
                finally:
                    QtWidgets.QApplication.restoreOverrideCursor()
            except Exception as exc:  # every failure is shown in words; the current model stays
                message = f"Could not open the checkpoint {path}:\n{plain_message(exc)}"
                if quiet:
                    self.status.emit(message.replace("\n", " "))
                else:
                    self.error.emit("Cannot open checkpoint", message)
                return False
            self.translators[key] = translator
            name = label or f"{translator.model_name} ({Path(key).stem})"
            self.models.append((name, key))
            self.settings.add_recent("checkpoints", key)
        current = key if select else self.panel.choices()["model"]
        self.panel.set_models(self.models, current)
        self._on_settings_changed()
        return True

    def translator(self) -> Any | None:
        """The selected model's Translator, or None."""
        path = self.panel.choices()["model"]
        return self.translators.get(path) if path else None

    def current_key(self) -> EngineKey | None:
        """The panel's settings as a cache key, or None without a model."""
        c = self.panel.choices()
        if not c["model"]:
            return None
        return EngineKey(c["model"], c["direction"], c["solver"], int(c["steps"]))

    # -- session --------------------------------------------------------------------------------
    def set_session(self, session: Session | None) -> None:
        """A new study: cancel work for the old one, then preview the new one."""
        self.cancel()
        self.generation += 1
        self._awaiting = None
        self.session = session
        self._axial_index = -1
        self.panel.set_metrics("slice", None)
        self.panel.set_metrics("volume", None)
        self.panel.volume_status.setText("")
        self.panel.set_idle()
        if session is not None:
            session.current_key = self.current_key()
        self.update_reference_state()
        self.request_preview()

    def update_reference_state(self) -> None:
        """After a reference was opened or closed: metrics note and figures."""
        has_ref = self.session is not None and self.session.reference is not None
        self.panel.metrics_note.setVisible(not has_ref)
        self._update_slice_metrics()
        self._start_volume_metrics()

    # -- reacting to the panel and the cursor ---------------------------------------------------
    def _on_settings_changed(self) -> None:
        c = self.panel.choices()
        for name in ("direction", "solver", "steps", "live"):
            self.settings.set(f"engine/{name}", c[name])
        if c["model"]:
            self.settings.set("engine/model", c["model"])
        translator = self.translator()
        self.panel.device.setText(str(translator.device) if translator is not None else "—")
        if self.session is not None:
            self.session.current_key = self.current_key()
            self.synthetic_changed.emit()
        self.request_preview()

    def _on_cursor(self, what: str) -> None:
        if what == "position" and self.cursor.ijk[2] != self._axial_index:
            self.request_preview()

    def request_preview(self) -> None:
        """Translate the current axial slice with the current settings, unless already known."""
        self._axial_index = index = self.cursor.ijk[2]
        session, key, translator = self.session, self.current_key(), self.translator()
        if session is None or key is None or translator is None:
            if key is None:
                self.panel.preview_status.setText("no model loaded")
            return
        if index >= session.input.shape[0]:
            return  # the cursor is about to be reshaped for this study
        self._awaiting = None  # whatever ran before is stale now; its result is only cached
        cached = session.previews.get(key, index)
        if cached is not None:
            self._show_preview_cost(cached, cached=True)
            self._update_slice_metrics()
            return
        if session.synthetic_is_current:
            self.panel.preview_status.setText("from the translated volume")
            self._update_slice_metrics()
            return
        if not self.panel.choices()["live"]:
            self.panel.preview_status.setText("live preview off")
            return
        self.panel.preview_status.setText(f"translating slice {index + 1}…")
        self._awaiting = (key, index)
        hu = session.input.slice("axial", index).copy()
        spacing = (session.input.spacing[0], session.input.spacing[1])
        direction = session.input.direction.copy()
        self.preview_worker.request(
            PreviewJob(translator, key, index, hu, self.generation, spacing, direction)
        )

    def _show_preview_cost(self, preview, cached: bool = False) -> None:
        note = " (cached)" if cached else ""
        self.panel.preview_status.setText(f"NFE {preview.nfe} · {preview.seconds:.2f} s{note}")

    @property
    def preview_pending(self) -> bool:
        """True while the preview of the current slice and settings is being computed."""
        return self._awaiting is not None

    def _on_preview_done(self, job: PreviewJob, preview) -> None:
        if self._awaiting == (job.key, job.index):
            self._awaiting = None
        if job.generation != self.generation or self.session is None:
            return  # made for a study that is no longer open
        self.session.previews.put(job.key, job.index, preview)
        if job.key == self.current_key() and job.index == self.cursor.ijk[2]:
            self._show_preview_cost(preview)
            self.synthetic_changed.emit()
            self._update_slice_metrics()

    def _on_preview_failed(self, job: PreviewJob, message: str) -> None:
        if self._awaiting == (job.key, job.index):
            self._awaiting = None
        if job.generation == self.generation and job.key == self.current_key():
            self.panel.preview_status.setText(message)
            self.status.emit(f"Preview failed: {message}")

    def _update_slice_metrics(self) -> None:
        if self.session is None:
            return
        self.panel.set_metrics("slice", slice_metrics(self.session, self.cursor.ijk[2]))

    # -- whole volume ---------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """True while a volume translation runs (or is finishing after Cancel)."""
        return self.volume_worker is not None

    def translate_volume(self) -> bool:
        """Start translating the whole input with the current settings; False when it cannot start."""
        session, key, translator = self.session, self.current_key(), self.translator()
        if session is None or key is None or translator is None or self.busy:
            return False
        worker = VolumeWorker(translator, session.input, key, self)
        worker.generation = self.generation
        worker.progress.connect(self._on_volume_progress)
        worker.done.connect(lambda vol, w=worker: self._on_volume_done(w, vol))
        worker.cancelled.connect(
            lambda w=worker: self._on_volume_end(w, "cancelled", "Translation cancelled.")
        )
        worker.failed.connect(lambda msg, w=worker: self._on_volume_failed(w, msg))
        self.volume_worker = worker
        self.panel.set_busy(True)
        self.panel.set_progress(0, session.input.shape[0])
        self.translating = (0, session.input.shape[0])
        self.synthetic_changed.emit()  # the empty planes say "translating…" now
        self.panel.volume_status.setText(f"Translating {session.input.shape[0]} slices ({key.label()})…")
        worker.start()
        return True

    def _on_volume_progress(self, done: int, total: int) -> None:
        self.panel.set_progress(done, total)
        self.translating = (done, total)
        self.progress.emit(done, total)

    def set_choices(
        self, direction: str | None = None, solver: str | None = None, steps: int | None = None
    ) -> None:
        """Set direction, solver and steps (from the command line); None keeps the current one."""
        p = self.panel
        if direction is not None:
            index = p.direction.findData(direction)
            if index >= 0:
                p.direction.setCurrentIndex(index)
        if solver is not None:
            p.solver.setCurrentText(solver)
        if steps is not None:
            p.steps.setValue(int(steps))

    def cancel(self) -> None:
        """Cancel a running volume translation (it stops at the next batch)."""
        if self.volume_worker is not None:
            self.volume_worker.cancel()
            self.panel.volume_status.setText("Cancelling…")

    def _on_volume_done(self, worker: VolumeWorker, volume) -> None:
        if worker.generation == self.generation and self.session is not None:
            self.session.set_synthetic(volume, worker.key)
            prov = volume.meta.get("provenance", {})
            self.synthetic_changed.emit()
            self._update_slice_metrics()
            self._start_volume_metrics()
            cost = f"NFE {prov.get('nfe', '?')}, {prov.get('seconds', 0):.1f} s"
            text = f"Translated: {worker.key.label()}, {cost}"
            self._on_volume_end(worker, "done", text)
        else:
            self._on_volume_end(worker, "cancelled", "")

    def _on_volume_failed(self, worker: VolumeWorker, message: str) -> None:
        self._on_volume_end(worker, "failed", f"Translation failed: {message}")
        if worker.generation == self.generation:
            self.error.emit("Translation failed", message)

    def _on_volume_end(self, worker: VolumeWorker, outcome: str, text: str) -> None:
        worker.wait()
        if self.volume_worker is worker:
            self.volume_worker = None
            self.translating = None
            done = outcome == "done" and self.session is not None and self.session.synthetic is not None
            self.panel.set_idle(self.session.input.shape[0] if done else None, translated=done)
            self.synthetic_changed.emit()
        if text:
            self.panel.volume_status.setText(text)
            self.status.emit(text)
        self.panel.set_busy(False)
        worker.deleteLater()
        self.volume_finished.emit(outcome)

    @property
    def metrics_pending(self) -> bool:
        """True while a background metrics computation is still running."""
        return bool(self._call_workers)

    def _start_volume_metrics(self) -> None:
        session = self.session
        if session is None or session.reference is None or session.synthetic is None:
            self.panel.set_metrics("volume", None)
            return
        worker = CallWorker(lambda s=session.synthetic, r=session.reference: volume_metrics(s, r), self)
        generation = self.generation
        self.panel.set_metrics_pending("volume")

        def show(values, g=generation) -> None:
            if g == self.generation:
                self.panel.set_metrics("volume", values)

        worker.done.connect(show)
        worker.failed.connect(lambda msg: self.status.emit(f"Volume metrics failed: {msg}"))
        worker.finished.connect(lambda w=worker: self._call_finished(w))
        self._call_workers.add(worker)
        worker.start()

    def _call_finished(self, worker: CallWorker) -> None:
        self._call_workers.discard(worker)
        worker.deleteLater()

    # -- shutdown -------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cancel and join every thread (closing the window)."""
        if self.volume_worker is not None:
            self.volume_worker.cancel()
            self.volume_worker.wait()
        self.preview_worker.stop()
        self.preview_worker.wait()
        for worker in list(self._call_workers):
            worker.wait()
