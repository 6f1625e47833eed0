"""Worker threads: live slice previews (latest request wins), whole-volume translation, any slow call.

The model runs here, never in the GUI thread, so the interface stays responsive. One lock
serialises the engine between the preview and the volume workers (a torch module is not
meant to be driven by two threads at once).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PySide6 import QtCore

from mfm_viewer.dialogs import plain_message
from mfm_viewer.logic.engine_key import EngineKey, SlicePreview

ENGINE_LOCK = threading.Lock()


@dataclass
class PreviewJob:
    """Translate one axial slice with given settings."""

    translator: Any
    key: EngineKey
    index: int
    hu: np.ndarray  # (H, W) HU, a copy owned by the job
    generation: int  # the study it belongs to; results for an older study are dropped
    # (x, y) mm of the study's pixels, so the preview is resampled exactly as the volume would be.
    pixel_spacing_mm: tuple[float, float] | None = None
    # The study's 3×3 direction, so the preview is turned to the training orientation as the volume is.
    volume_direction: np.ndarray | None = None


class PreviewWorker(QtCore.QThread):
    """A long-lived thread that translates the most recent slice request; older pending ones are dropped."""

    done = QtCore.Signal(object, object)  # PreviewJob, SlicePreview
    failed = QtCore.Signal(object, str)  # PreviewJob, message

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self._cond = threading.Condition()
        self._pending: PreviewJob | None = None
        self._stop = False
        self.dropped = 0  # requests replaced before they started (for tests and the benchmark)

    def request(self, job: PreviewJob) -> None:
        """Queue ``job``, replacing any request that has not started yet."""
        with self._cond:
            if self._pending is not None:
                self.dropped += 1
            self._pending = job
            self._cond.notify()

    def stop(self) -> None:
        """Finish the running job, drop the pending one, end the thread."""
        with self._cond:
            self._stop = True
            self._pending = None
            self._cond.notify()

    def run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                job, self._pending = self._pending, None
            try:
                with ENGINE_LOCK:
                    res = job.translator.translate_slice(
                        job.hu,
                        direction=job.key.direction,
                        solver=job.key.solver,
                        steps=job.key.steps,
                        pixel_spacing_mm=job.pixel_spacing_mm,
                        volume_direction=job.volume_direction,
                    )
                self.done.emit(
                    job, SlicePreview(np.asarray(res.hu, dtype=np.float32), int(res.nfe), float(res.seconds))
                )
            except Exception as exc:  # shown to the user in plain words; the thread carries on
                self.failed.emit(job, plain_message(exc))


class VolumeWorker(QtCore.QThread):
    """Translate a whole volume once, with progress and cancellation."""

    progress = QtCore.Signal(int, int)
    done = QtCore.Signal(object)  # the synthetic Volume
    cancelled = QtCore.Signal()
    failed = QtCore.Signal(str)

    def __init__(
        self, translator: Any, volume: Any, key: EngineKey, parent: QtCore.QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.translator, self.volume, self.key = translator, volume, key
        self.cancel_event = threading.Event()

    def cancel(self) -> None:
        """Ask the translation to stop at the next batch."""
        self.cancel_event.set()

    def run(self) -> None:
        from mfm_engine.translate import TranslationCancelled

        try:
            with ENGINE_LOCK:
                if self.cancel_event.is_set():
                    raise TranslationCancelled("cancelled before it started")
                out = self.translator.translate_volume(
                    self.volume,
                    direction=self.key.direction,
                    solver=self.key.solver,
                    steps=self.key.steps,
                    progress=lambda done, total: self.progress.emit(done, total),
                    cancel=self.cancel_event,
                )
        except TranslationCancelled:
            self.cancelled.emit()
        except Exception as exc:  # plain words for the user
            self.failed.emit(plain_message(exc))
        else:
            self.done.emit(out)


class CallWorker(QtCore.QThread):
    """Run one slow function (e.g. volume metrics) off the GUI thread."""

    done = QtCore.Signal(object)
    failed = QtCore.Signal(str)

    def __init__(self, fn: Callable[[], Any], parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.fn = fn

    def run(self) -> None:
        try:
            result = self.fn()
        except Exception as exc:
            self.failed.emit(plain_message(exc))
        else:
            self.done.emit(result)
