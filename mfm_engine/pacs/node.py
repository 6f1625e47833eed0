"""The translation node: a storage SCP that turns arterial CT series into synthetic natives and sends them on.

A department routes CT series to it (``AET@HOST:PORT``); it accepts them only from calling AE titles
on its allow-list, writes every instance to disk and commits it to the job store *before* it answers
success, waits until a series has been quiet for a while, translates it, writes the synthetic series
(DERIVED, SyntheticData YES, see `mfm_engine.io.dicom_write`) and C-STOREs (or STOW-RSes) it to the
destination. The synthetic series' UIDs are derived from the source series, its instances and the
settings (model weights, solver, steps, direction), so a resend after a crash repeats the same UIDs
and the destination keeps one copy. Listens on 127.0.0.1 unless told otherwise.

Logging: one INFO line per job when it ends (done / refused / failed), patient ids only as a salted
hash; warnings for rejected associations, refused instances and send retries.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, build_context, evt
from pynetdicom.sop_class import Verification

from mfm_engine.errors import MFMError
from mfm_engine.pacs.dimse import RECEIVE_TRANSFER_SYNTAXES
from mfm_engine.pacs.errors import PacsConnectionError, PacsError
from mfm_engine.pacs.jobs import Job, JobStore
from mfm_engine.pacs.nodes import APP_DIR, Node, validate_ae_title
from mfm_engine.pacs.retrieve import is_uid

log = logging.getLogger("mfm.node")

# UUIDv5 namespace of the node's derived UIDs (2.25.<uuid>): the same input always gives the same UID.
UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://mfm-studio.invalid/pacs-node/derived-uid")
CT_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image Storage",
}
# Status codes (PS3.4 B.2.3) with an ErrorComment, so the sender's log says why.
STATUS_NOT_CT = 0xA900  # data set does not match what this SCP stores
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000
MAX_RETRY_DELAY_S = 300.0


def default_state_dir(ae_title: str) -> Path:
    """Where a node keeps its jobs and files ($XDG_STATE_HOME/mfm-studio/node-<AET>)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in ae_title)
    return Path(base) / APP_DIR / f"node-{safe}"


def derived_uid(*parts: str) -> str:
    """A DICOM UID (2.25.<int>) that depends only on ``parts`` (UUIDv5)."""
    return f"2.25.{uuid.uuid5(UID_NAMESPACE, '|'.join(parts)).int}"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class NodeSettings:
    """Everything a translation node needs; `mfm node` fills it from flags."""

    model: str
    send_to: Node
    ae_title: str = "MFM"
    port: int = 11112
    host: str = "127.0.0.1"
    solver: str = "euler"
    steps: int = 8
    direction: str = "c2n"
    device: str = "auto"
    allow: list[str] = field(
        default_factory=list
    )  # calling AE titles; empty with allow_any=False rejects all
    allow_any: bool = False
    quiet_seconds: float = 10.0
    state_dir: Path | None = None
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        self.ae_title = validate_ae_title(self.ae_title, "the node's AE title")
        self.allow = [validate_ae_title(a, "allowed calling AE title") for a in self.allow]
        if not self.allow and not self.allow_any:
            raise PacsError(
                "the node needs an allow-list of calling AE titles (--allow AET ...) or --allow-any"
            )
        if not 0 < int(self.port) < 65536:
            raise PacsError(f"port {self.port} is outside 1..65535")
        if self.quiet_seconds < 0:
            raise PacsError(f"quiet time must be >= 0 seconds, got {self.quiet_seconds}")
        if isinstance(self.steps, bool) or int(self.steps) < 1:
            raise PacsError(f"steps must be a whole number >= 1, got {self.steps}")
        self.state_dir = Path(self.state_dir) if self.state_dir else default_state_dir(self.ae_title)


class TranslationNode:
    """The running node: storage SCP threads take series in; one worker thread translates and sends."""

    def __init__(self, settings: NodeSettings, translator: Any = None) -> None:
        self.settings = settings
        self.state_dir: Path = settings.state_dir  # type: ignore[assignment]
        self.incoming = self.state_dir / "incoming"
        self.output = self.state_dir / "output"
        self._translator = translator
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._server = None
        self._worker: threading.Thread | None = None
        self.store: JobStore | None = None
        self._salt = ""
        self._settings_key = ""

    # -- lifecycle --------------------------------------------------------------------------------
    def _prepare(self) -> None:
        try:
            for folder in (self.state_dir, self.incoming, self.output):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PacsError(
                f"{self.state_dir}: cannot create the node's state folder: {exc.strerror or exc}"
            ) from exc
        salt_file = self.state_dir / "patient-hash-salt"
        if not salt_file.exists():
            tmp = salt_file.with_suffix(".tmp")
            tmp.write_text(secrets.token_hex(16))
            os.replace(tmp, salt_file)
        self._salt = salt_file.read_text().strip()
        self.store = JobStore(self.state_dir / "jobs.sqlite3")

    def _load_translator(self) -> Any:
        if self._translator is None:
            from mfm_engine.translate import Translator

            self._translator = Translator.from_checkpoint(self.settings.model, device=self.settings.device)
        tr = self._translator
        if not tr.supports(self.settings.direction):
            raise PacsError(f"{self.settings.model}: this model cannot translate {self.settings.direction}")
        weights = getattr(tr, "checkpoint", None) or self.settings.model
        ident = file_sha256(weights) if weights and Path(weights).is_file() else str(weights)
        s = self.settings
        self._settings_key = f"{ident}|{tr.kind}|{s.solver}|{s.steps}|{s.direction}"
        return tr

    def start(self) -> None:
        """Open the job store, resume unfinished jobs, start listening and the worker thread."""
        self._load_translator()  # first: a bad checkpoint fails before anything is created
        self._prepare()
        assert self.store is not None
        resumed = self.store.recover()
        if resumed:
            log.info(
                "resuming %d unfinished job(s): %s",
                len(resumed),
                ", ".join(f"{j.id} ({j.state})" for j in resumed),
            )
        s = self.settings
        ae = AE(ae_title=s.ae_title)
        ae.network_timeout = s.timeout_s
        ae.dimse_timeout = s.timeout_s
        ae.require_called_aet = True  # a caller using another AE title has the wrong node
        ae.require_calling_aet = [] if s.allow_any else list(s.allow)
        ae.supported_contexts = [
            build_context(Verification),
            *(
                build_context(cx.abstract_syntax, RECEIVE_TRANSFER_SYNTAXES)
                for cx in StoragePresentationContexts
            ),
        ]
        handlers = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_C_ECHO, lambda event: 0x0000),
        ]
        try:
            self._server = ae.start_server((s.host, s.port), block=False, evt_handlers=handlers)
        except OSError as exc:
            self.store.close()
            raise PacsError(f"cannot listen on {s.host}:{s.port}: {exc.strerror or exc}") from exc
        self._worker = threading.Thread(target=self._work, name="mfm-node-worker", daemon=True)
        self._worker.start()
        who = "any calling AE title" if s.allow_any else "calling AE titles " + ", ".join(s.allow)
        log.info(
            "node %s listening on %s:%d (accepting %s; quiet time %g s); sending %s to %s; state in %s",
            s.ae_title, s.host, s.port, who, s.quiet_seconds, s.direction, s.send_to, self.state_dir,
        )  # fmt: skip

    def request_stop(self) -> None:
        """Ask `serve_forever` to return (safe from a signal handler)."""
        self._stop.set()
        self._wake.set()

    def stop(self) -> None:
        """Stop listening and let the worker finish its current step."""
        self._stop.set()
        self._wake.set()
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._worker is not None:
            self._worker.join(timeout=60)
        if self.store is not None:
            self.store.close()
            self.store = None

    def serve_forever(self) -> None:
        """Start, then block until `stop` is called (from a signal handler or another thread)."""
        self.start()
        try:
            while not self._stop.wait(0.5):
                pass
        finally:
            self.stop()

    # -- receiving ------------------------------------------------------------------------------
    def patient_hash(self, patient_id: str) -> str:
        """A salted, shortened hash of a patient id: the same patient gives the same hash on this node."""
        return hashlib.sha256(f"{self._salt}|{patient_id}".encode()).hexdigest()[:12]

    def _on_rejected(self, event: evt.Event) -> None:
        rq = event.assoc.requestor
        calling = str(rq.ae_title).strip()
        called = str(getattr(rq.primitive, "called_ae_title", "") or "").strip()
        s = self.settings
        if not s.allow_any and calling not in s.allow:
            why = f"calling AE title {calling!r} is not on the allow-list ({', '.join(s.allow)})"
        elif called and called != s.ae_title:
            why = f"it called AE title {called!r}, not this node's {s.ae_title!r}"
        else:
            why = "too many associations or a failed negotiation"
        log.warning("rejected an association from %s at %s: %s", calling, rq.address, why)

    @staticmethod
    def _status(code: int, comment: str) -> Dataset:
        ds = Dataset()
        ds.Status = code
        ds.ErrorComment = comment[:64]
        return ds

    def _on_store(self, event: evt.Event) -> Dataset | int:
        calling = event.assoc.requestor.ae_title.strip()
        try:
            ds = event.dataset
            series_uid = str(ds.SeriesInstanceUID)
            sop_uid = str(event.request.AffectedSOPInstanceUID)
            study_uid = str(ds.get("StudyInstanceUID", ""))
            modality = str(ds.get("Modality", "")).upper()
            patient = self.patient_hash(str(ds.get("PatientID", "")))
        except Exception as exc:  # noqa: BLE001 - one broken instance must not stop the server
            log.warning("refused an instance from %s that could not be decoded: %s", calling, exc)
            return self._status(STATUS_CANNOT_UNDERSTAND, "MFM node: could not decode the data set")
        if not is_uid(series_uid) or not is_uid(sop_uid):
            log.warning("refused an instance from %s: missing or invalid Series/SOP Instance UID", calling)
            return self._status(STATUS_CANNOT_UNDERSTAND, "MFM node: missing or invalid UIDs")
        store = self.store
        assert store is not None
        sop_class = str(event.request.AffectedSOPClassUID)
        if modality != "CT" or sop_class not in CT_SOP_CLASSES:
            what = f"modality {modality or 'unknown'}" + (
                f", SOP class {sop_class}" if sop_class not in CT_SOP_CLASSES else ""
            )
            reason = f"not a CT image ({what}); this node translates CT only"
            job, new = store.refuse(
                series_uid,
                reason,
                study_uid=study_uid,
                calling_ae=calling,
                patient_hash=patient,
                modality=modality,
            )
            if new:
                self._log_job(job, "refused")
            return self._status(STATUS_NOT_CT, "MFM node translates CT images only")
        if store.has_instance(series_uid, sop_uid):
            return 0x0000  # a resend of something we hold: acknowledged again, nothing changes
        folder = self.incoming / series_uid
        path = folder / f"{sop_uid}.dcm"
        tmp = folder / f".{sop_uid}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(event.encoded_dataset())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            log.warning("could not store an instance from %s in %s: %s", calling, folder, exc.strerror or exc)
            return self._status(
                STATUS_OUT_OF_RESOURCES, f"MFM node cannot store: {exc.strerror or 'disk error'}"
            )
        # A late instance reopens a finished or refused job: with it the series may be complete now.
        store.record_instance(
            series_uid,
            sop_uid,
            str(path),
            study_uid=study_uid,
            calling_ae=calling,
            patient_hash=patient,
            modality=modality,
        )
        self._wake.set()
        return 0x0000

    # -- the worker -------------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            store = self.store
            if store is None:
                return
            try:
                store.promote_quiet(self.settings.quiet_seconds)
                job = store.next_job()
                if job is None:
                    self._wake.wait(0.2)
                    self._wake.clear()
                    continue
                if job.state == "received":
                    self._translate(job)
                elif job.state == "sending":
                    self._send(job)
            except Exception:  # noqa: BLE001 - the worker must survive anything; the job says what failed
                log.exception("node worker error (the node keeps running)")
                self._stop.wait(1.0)

    def _translate(self, job: Job) -> None:
        from mfm_engine.io.dicom_write import write_dicom_series
        from mfm_engine.io.study import read_study

        store = self.store
        assert store is not None
        current = store.update(job, state="translating", reason="")
        if current is None:
            return
        store.bump(current, "translations")
        job = current
        s = self.settings
        start = time.perf_counter()
        try:
            volume = read_study(self.incoming / job.series_uid)
        except MFMError as exc:
            self._finish(job, "refused", f"unreadable series: {_first_line(exc)}")
            return
        problem = _refusal(volume)
        if problem:
            self._finish(job, "refused", problem)
            return
        try:
            synthetic = self._translator.translate_volume(
                volume, direction=s.direction, solver=s.solver, steps=s.steps
            )
        except MFMError as exc:
            self._finish(job, "failed", f"translation failed: {_first_line(exc)}")
            return
        seconds = time.perf_counter() - start
        sop_uids = [str(u) for u in (volume.meta.get("dicom") or {}).get("sop_instance_uids") or []]
        instances_hash = hashlib.sha256("|".join(sorted(sop_uids)).encode()).hexdigest()
        key = f"{job.series_uid}|{instances_hash}|{self._settings_key}"
        out_series = derived_uid("series", key)
        target = self.output / f"{job.series_uid}.g{job.generation}"
        shutil.rmtree(target, ignore_errors=True)  # an interrupted earlier attempt
        try:
            notes: list[str] = []
            files = write_dicom_series(synthetic, target, source=volume, notes=notes)
            for note in notes:  # the node has no screen: its log is where a user looks
                log.warning("series %s: %s", job.series_uid, note)
            # The slice index too: a multi-frame source repeats one SOP Instance UID for every frame.
            uids = [derived_uid("instance", key, u, str(k)) for k, u in enumerate(sop_uids)]
            _set_uids(files, out_series, uids or None)
        except (MFMError, OSError) as exc:
            shutil.rmtree(target, ignore_errors=True)
            self._finish(job, "failed", f"could not write the synthetic series: {_first_line(exc)}")
            return
        moved = store.update(
            job,
            state="sending",
            output_dir=str(target),
            output_series_uid=out_series,
            send_attempts=0,
            next_attempt=0,
            reason=f"translated {volume.shape[0]} slice(s) in {seconds:.1f} s",
        )
        if moved is None:
            shutil.rmtree(target, ignore_errors=True)  # newer instances arrived meanwhile: redo later

    def _client(self):
        dest = self.settings.send_to
        if dest.is_dicomweb:
            from mfm_engine.pacs.dicomweb import DicomWebClient

            return DicomWebClient(dest, timeout=self.settings.timeout_s)
        from mfm_engine.pacs.dimse import DimseClient

        return DimseClient(dest, calling_ae=self.settings.ae_title, timeout=self.settings.timeout_s)

    def _send(self, job: Job) -> None:
        store = self.store
        assert store is not None
        folder = Path(job.output_dir)
        if not job.output_dir or not folder.is_dir() or not any(folder.glob("*.dcm")):
            store.update(
                job, state="received", reason="synthetic series missing before sending; translating again"
            )
            return
        store.bump(job, "send_attempts")
        start = time.perf_counter()
        try:
            result = self._client().store(folder)
        except PacsConnectionError as exc:
            attempts = job.send_attempts + 1
            delay = min(MAX_RETRY_DELAY_S, 2.0 ** min(attempts, 9))
            store.update(
                job, next_attempt=time.time() + delay, reason=f"send attempt {attempts} failed: {exc}"
            )
            log.warning(
                "job %d: sending to %s failed (%s); retrying in %.0f s",
                job.id,
                self.settings.send_to,
                exc,
                delay,
            )
            return
        except PacsError as exc:
            self._finish(job, "failed", f"the destination refused the synthetic series: {_first_line(exc)}")
            return
        store.bump(job, "sends_completed")
        seconds = time.perf_counter() - start
        done = self._finish(job, "done", f"{job.reason}; sent {result.sent} instance(s) in {seconds:.1f} s")
        if done is not None:
            shutil.rmtree(folder, ignore_errors=True)  # delivered; the source stays in incoming/

    def _finish(self, job: Job, state: str, reason: str) -> Job | None:
        store = self.store
        assert store is not None
        final = store.update(job, state=state, reason=reason)
        if final is not None:
            self._log_job(final, state)
        return final

    def _log_job(self, job: Job, state: str) -> None:
        """The one line a job gets: outcome, series, hashed patient, caller, and why / what was sent."""
        s = self.settings
        head = (
            f"job {job.id} {state}: series {job.series_uid} (patient #{job.patient_hash or '-'}, "
            f"from {job.calling_ae or '?'}, {job.n_instances} instance(s))"
        )
        if state == "done":
            log.info(
                "%s → synthetic %s series %s sent to %s (%s×%d): %s",
                head, "native" if s.direction == "c2n" else "contrast", job.output_series_uid, s.send_to,
                s.solver, s.steps, job.reason,
            )  # fmt: skip
        else:
            log.info("%s: %s", head, job.reason)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _refusal(volume: Any) -> str:
    """Why a read series is not translated ('' when it is fine): not CT, or missing slices."""
    modality = str(volume.meta.get("modality", "")).upper()
    if modality and modality != "CT":
        return f"not a CT series (modality {modality})"
    if volume.meta.get("synthetic"):
        return "the series is already synthetic (SyntheticData YES); not translated again"
    gaps = [w for w in volume.warnings if w.startswith("missing slice")]
    if gaps:
        return f"series with missing instances: {gaps[0]}"
    if volume.shape[0] < 1:
        return "the series holds no slices"
    return ""


def _set_uids(files: list[Path], series_uid: str, instance_uids: list[str] | None) -> None:
    """Give a written series the node's derived UIDs (series, and each instance when known)."""
    if instance_uids is not None and len(instance_uids) != len(files):
        instance_uids = None
    for k, path in enumerate(files):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = series_uid
        if instance_uids is not None:
            ds.SOPInstanceUID = instance_uids[k]
        else:
            ds.SOPInstanceUID = derived_uid("instance", series_uid, str(k))
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(path, enforce_file_format=True)
