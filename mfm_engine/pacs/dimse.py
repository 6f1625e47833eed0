"""DIMSE with pynetdicom: C-ECHO, C-FIND (study, series), C-GET, C-MOVE to our own storage SCP, C-STORE.

Each call opens its own association and releases it, so a client object is just a recipe (node,
calling AE, timeouts) and is safe to share between threads. pynetdicom reports association
failures only in its log; `_associate` listens to that log so our error says *why* (connection
refused, AE title not recognised, timed out) instead of just "failed".
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, StoragePresentationContexts, build_context, build_role, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.status import (
    QR_FIND_SERVICE_CLASS_STATUS,
    QR_GET_SERVICE_CLASS_STATUS,
    QR_MOVE_SERVICE_CLASS_STATUS,
    STORAGE_SERVICE_CLASS_STATUS,
    VERIFICATION_SERVICE_CLASS_STATUS,
)

from mfm_engine.pacs.client import PacsClient, StoreResult, dicom_files, require_uid, status_text
from mfm_engine.pacs.errors import PacsCancelled, PacsConnectionError, PacsError, RetrieveError, StoreError
from mfm_engine.pacs.nodes import DEFAULT_CALLING_AE, DEFAULT_MOVE_PORT, Node, validate_ae_title
from mfm_engine.pacs.query import Query, SeriesMatch, StudyMatch, series_identifier
from mfm_engine.pacs.retrieve import CancelFlag, Progress, Receiver, RetrieveResult, is_cancelled

log = logging.getLogger(__name__)

# Transfer syntaxes we take in as a storage SCP: uncompressed, deflate, and the still-image codecs a
# PACS may hold (the study reader decodes them or names the package that would). No video.
RECEIVE_TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian first: what we prefer
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.5",
]
# An association carries at most 128 presentation contexts: 120 storage classes + the Q/R one fit.
STORAGE_CONTEXTS = [
    build_context(cx.abstract_syntax, RECEIVE_TRANSFER_SYNTAXES) for cx in StoragePresentationContexts
]
SUCCESS, PENDING = 0x0000, (0xFF00, 0xFF01)
OUT_OF_RESOURCES = 0xA700
CANCEL = 0xFE00


class _LogCapture(logging.Handler):
    """Collects pynetdicom's error lines while an association is being set up."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def _captured_pynetdicom_errors() -> Iterator[_LogCapture]:
    logger = logging.getLogger("pynetdicom")
    capture = _LogCapture()
    logger.addHandler(capture)
    # The reasons are logged at ERROR; an application that silenced pynetdicom must not lose them here.
    level = logger.level
    if logger.getEffectiveLevel() > logging.ERROR:
        logger.setLevel(logging.ERROR)
    try:
        yield capture
    finally:
        logger.removeHandler(capture)
        logger.setLevel(level)


def _after(lines: list[str], prefix: str) -> str:
    for line in lines:
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    return ""


def _status(ds: Dataset | None) -> tuple[int | None, str]:
    if ds is None or "Status" not in ds:
        return None, ""
    return int(ds.Status), str(ds.get("ErrorComment", "") or "").strip()


class DimseClient(PacsClient):
    """C-ECHO / C-FIND / C-GET / C-MOVE / C-STORE against one DIMSE node."""

    def __init__(
        self,
        node: Node,
        *,
        calling_ae: str = DEFAULT_CALLING_AE,
        timeout: float = 30.0,
        move_port: int = DEFAULT_MOVE_PORT,
        move_host: str = "0.0.0.0",
        move_ae: str | None = None,
    ) -> None:
        if node.is_dicomweb:
            raise PacsError(f"{node} is a DICOMweb node; DIMSE needs AET@HOST:PORT")
        self.node = node
        self.calling_ae = validate_ae_title(calling_ae, "our calling AE title")
        self.move_ae = validate_ae_title(move_ae or self.calling_ae, "our C-MOVE destination AE title")
        self.timeout = float(timeout)
        self.move_port = int(move_port)
        self.move_host = move_host

    # -- association ----------------------------------------------------------------------------
    def _new_ae(self) -> AE:
        ae = AE(ae_title=self.calling_ae)
        ae.acse_timeout = self.timeout
        ae.dimse_timeout = self.timeout
        ae.network_timeout = self.timeout
        ae.connection_timeout = min(self.timeout, 10.0)
        return ae

    def _check_reachable(self, purpose: str) -> None:
        # Tried first with a plain socket: pynetdicom 3.0 leaks its socket when the TCP connect
        # fails, and this also gives the OS's own reason (refused, timed out, unknown host).
        try:
            with socket.create_connection((self.node.host, self.node.port), timeout=min(self.timeout, 10.0)):
                pass
        except TimeoutError as exc:
            raise PacsConnectionError(
                f"cannot reach {self.node} for {purpose}: connection timed out "
                "(is the host right, is a firewall in the way?)"
            ) from exc
        except ConnectionRefusedError as exc:
            raise PacsConnectionError(
                f"cannot reach {self.node} for {purpose}: connection refused: nothing listens on that port "
                "(is the PACS running, is the port right?)"
            ) from exc
        except socket.gaierror as exc:
            raise PacsConnectionError(
                f"cannot reach {self.node} for {purpose}: unknown host {self.node.host!r}"
            ) from exc
        except OSError as exc:
            raise PacsConnectionError(
                f"cannot reach {self.node} for {purpose}: {exc.strerror or exc}"
            ) from exc

    def _associate(self, ae: AE, purpose: str, **kwargs: Any) -> Association:
        """Open an association, or raise PacsConnectionError saying why it failed."""
        self._check_reachable(purpose)
        with _captured_pynetdicom_errors() as capture:
            assoc = ae.associate(self.node.host, self.node.port, ae_title=self.node.ae_title, **kwargs)
        if assoc.is_established:
            return assoc
        lines = capture.lines
        where = f"{self.node}"
        if assoc.is_rejected:
            reason = _after(lines, "Reason:") or "no reason given"
            hint = ""
            low = reason.lower()
            if "called ae" in low:
                hint = f"; check the node's AE title ({self.node.ae_title!r} was called)"
            elif "calling ae" in low:
                hint = f"; the node does not accept our AE title {self.calling_ae!r} (add it on the PACS)"
            raise PacsConnectionError(f"{where} rejected the association for {purpose}: {reason}{hint}")
        if any("No accepted presentation contexts" in line for line in lines):
            raise PacsConnectionError(
                f"{where} accepted the association but none of the services needed for {purpose}"
            )
        tcp = _after(lines, "TCP Initialisation Error:")
        if tcp:
            if "refused" in tcp.lower():
                detail = "connection refused: nothing listens there (is the PACS running, is the port right?)"
            elif "timed out" in tcp.lower():
                detail = "connection timed out (is the host right, is a firewall in the way?)"
            else:
                detail = tcp
            raise PacsConnectionError(f"cannot reach {where} for {purpose}: {detail}")
        if assoc.is_aborted:
            raise PacsConnectionError(
                f"{where} aborted the association for {purpose} (the PACS log may say why)"
            )
        if any("ACSE timeout" in line for line in lines):
            raise PacsConnectionError(
                f"{where} did not answer the association request for {purpose} in {self.timeout:g} s"
            )
        raise PacsConnectionError(
            f"could not open an association with {where} for {purpose}: "
            f"{'; '.join(lines) or 'unknown reason'}"
        )

    def _lost(self, assoc: Association, what: str) -> str:
        """Why a request got no answer: the peer aborted (often: it does not know us) or timed out."""
        how = "aborted the association during" if assoc.is_aborted else "gave no answer to"
        return (
            f"{self.node} {how} {what}: it may not accept our AE title {self.calling_ae!r} for this "
            "(add it to the PACS's known modalities; Orthanc: DicomModalities), or the connection was lost, "
            f"or nothing came within {self.timeout:g} s"
        )

    @contextlib.contextmanager
    def _association(self, ae: AE, purpose: str, **kwargs: Any) -> Iterator[Association]:
        assoc = self._associate(ae, purpose, **kwargs)
        # pynetdicom 3.0 skips close() when shutdown() fails, which it does once the peer has vanished
        # (a PACS killed mid-transfer): keep our own handle and close it at the end, whatever happened.
        raw = getattr(getattr(assoc.dul, "socket", None), "socket", None)
        try:
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()
            if raw is not None:
                with contextlib.suppress(OSError):
                    raw.close()

    # -- verification -----------------------------------------------------------------------------
    def echo(self) -> float:
        """C-ECHO; returns the round-trip time in seconds."""
        ae = self._new_ae()
        ae.add_requested_context(Verification)
        start = time.perf_counter()
        with self._association(ae, "C-ECHO") as assoc:
            code, comment = _status(assoc.send_c_echo())
        if code is None:
            raise PacsConnectionError(self._lost(assoc, "the C-ECHO"))
        if code != SUCCESS:
            raise PacsError(
                f"{self.node} answered the C-ECHO with "
                f"{status_text(code, VERIFICATION_SERVICE_CLASS_STATUS, comment)}"
            )
        return time.perf_counter() - start

    # -- query ----------------------------------------------------------------------------------
    def _find(self, identifier: Dataset, what: str) -> list[Dataset]:
        ae = self._new_ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        out: list[Dataset] = []
        with self._association(ae, f"C-FIND ({what})") as assoc:
            for status, ident in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind):
                code, comment = _status(status)
                if code is None:
                    raise PacsConnectionError(self._lost(assoc, f"the {what} query"))
                if code in PENDING:
                    if ident is not None:
                        out.append(ident)
                elif code == SUCCESS:
                    break
                else:
                    raise PacsError(
                        f"{self.node} refused the {what} query: "
                        f"{status_text(code, QR_FIND_SERVICE_CLASS_STATUS, comment)}"
                    )
        return out

    def find_studies(self, query: Query) -> list[StudyMatch]:
        """C-FIND at STUDY level; newest study first."""
        found = [StudyMatch.from_dataset(ds) for ds in self._find(query.study_identifier(), "study")]
        return sorted(found, key=lambda s: (s.study_date, s.study_time), reverse=True)

    def find_series(self, study_uid: str, modality: str = "", series_uid: str = "") -> list[SeriesMatch]:
        """C-FIND at SERIES level within a study; by series number."""
        study_uid = require_uid(study_uid, "study")
        if series_uid:
            series_uid = require_uid(series_uid, "series")
        found = [
            SeriesMatch.from_dataset(ds)
            for ds in self._find(series_identifier(study_uid, modality, series_uid), "series")
        ]
        return sorted(found, key=lambda s: (s.number is None, s.number or 0, s.series_uid))

    # -- retrieve -------------------------------------------------------------------------------
    def retrieve_series(
        self,
        study_uid: str,
        series_uid: str,
        dest: str | os.PathLike[str],
        *,
        expected: int | None = None,
        progress: Progress = None,
        cancel: CancelFlag = None,
        overwrite: bool = False,
        method: str = "get",
    ) -> RetrieveResult:
        """C-GET (``method='get'``) or C-MOVE to our own storage SCP (``'move'``) of one series."""
        study_uid = require_uid(study_uid, "study")
        series_uid = require_uid(series_uid, "series")
        if method not in ("get", "move"):
            raise PacsError(f"retrieve method must be 'get' or 'move', got {method!r}")
        if expected is None:
            expected = self.expected_instances(study_uid, series_uid)
        receiver = Receiver(
            Path(dest),
            study_uid=study_uid,
            series_uid=series_uid,
            expected=expected,
            node=str(self.node),
            method="C-GET" if method == "get" else "C-MOVE",
            progress=progress,
            cancel=cancel,
            overwrite=overwrite,
        )
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "SERIES"
        identifier.StudyInstanceUID = study_uid
        identifier.SeriesInstanceUID = series_uid
        try:
            if method == "get":
                failed, note = self._c_get(identifier, receiver)
            else:
                failed, note = self._c_move(identifier, receiver)
        except BaseException:
            receiver.discard()
            raise
        return receiver.finish(failed=failed, pacs_note=note)

    def _store_handler(self, receiver: Receiver):
        def handle(event: evt.Event) -> int:
            try:
                ds = event.dataset
                sop = str(event.request.AffectedSOPInstanceUID)
                study, series = str(ds.get("StudyInstanceUID", "")), str(ds.get("SeriesInstanceUID", ""))
            except Exception as exc:  # noqa: BLE001 - a dataset we cannot decode is refused, not fatal
                log.warning("refused an instance that could not be decoded: %s", exc)
                return 0xC210
            if not receiver.wants(study, series):
                receiver.foreign += 1
                return 0xA900  # not what we asked for (another retrieve's instance)
            data = event.encoded_dataset()
            ok = receiver.accept(sop, series, lambda path: path.write_bytes(data))
            if ok:
                return SUCCESS
            return CANCEL if is_cancelled(receiver.cancel) else OUT_OF_RESOURCES

        return handle

    def _watch(self, assoc: Association, responses, receiver: Receiver, table, what: str) -> tuple[int, str]:
        """Follow C-GET / C-MOVE responses; abort on cancel. Returns (failed sub-operations, note)."""
        failed, note = 0, ""
        final = False
        for status, _ident in responses:
            if receiver.stopped:
                assoc.abort()
                return failed, note
            code, comment = _status(status)
            if code is None:
                n = len(receiver.files)
                if n:  # it was answering: the connection broke (the PACS stopped, the network failed)
                    raise RetrieveError(
                        f"the connection to {self.node} was lost during the {what}, cut off after {n} "
                        "instance(s); nothing kept"
                    )
                raise RetrieveError(f"{self._lost(assoc, 'the ' + what)}; nothing kept")
            if code in PENDING:
                continue
            final = True
            failed = int(status.get("NumberOfFailedSuboperations", 0) or 0)
            if code == SUCCESS:
                break
            if code == 0xB000:
                failed = max(failed, 1)
                note = status_text(code, table, comment)
                break
            if code == CANCEL:
                note = "the PACS cancelled the operation"
                failed = max(failed, 1)
                break
            fix = (
                f"add {self.move_ae} → this computer, port {self.move_port}, to the PACS's modalities "
                "(Orthanc: DicomModalities), or use C-GET"
            )
            if code == 0xA801:
                raise RetrieveError(
                    f"{self.node} does not know our AE title {self.move_ae!r} as a C-MOVE destination: {fix}"
                )
            hint = (
                f"; if it does not know {self.move_ae!r} as a C-MOVE destination, {fix}"
                if what == "C-MOVE"
                else ""
            )
            raise RetrieveError(f"{self.node} refused the {what}: {status_text(code, table, comment)}{hint}")
        if not final and not receiver.stopped:
            raise RetrieveError(f"{self.node}: the {what} ended without a final status; nothing kept")
        return failed, note

    def _c_get(self, identifier: Dataset, receiver: Receiver) -> tuple[int, str]:
        ae = self._new_ae()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        for cx in STORAGE_CONTEXTS:
            ae.add_requested_context(cx.abstract_syntax, cx.transfer_syntax)
        roles = [build_role(cx.abstract_syntax, scp_role=True) for cx in STORAGE_CONTEXTS]
        handlers = [(evt.EVT_C_STORE, self._store_handler(receiver))]
        with self._association(ae, "C-GET", ext_neg=roles, evt_handlers=handlers) as assoc:
            responses = assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet)
            return self._watch(assoc, responses, receiver, QR_GET_SERVICE_CLASS_STATUS, "C-GET")

    def _c_move(self, identifier: Dataset, receiver: Receiver) -> tuple[int, str]:
        scp = AE(ae_title=self.move_ae)
        scp.network_timeout = self.timeout
        scp.dimse_timeout = self.timeout
        scp.supported_contexts = STORAGE_CONTEXTS
        try:
            server = scp.start_server(
                (self.move_host, self.move_port),
                block=False,
                evt_handlers=[(evt.EVT_C_STORE, self._store_handler(receiver))],
            )
        except OSError as exc:
            raise RetrieveError(
                f"cannot listen on {self.move_host}:{self.move_port} for the C-MOVE ({exc.strerror or exc}); "
                "set another move_port (the PACS must know it) or use C-GET"
            ) from exc
        try:
            ae = self._new_ae()
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
            with self._association(ae, "C-MOVE") as assoc:
                responses = assoc.send_c_move(
                    identifier, self.move_ae, StudyRootQueryRetrieveInformationModelMove
                )
                return self._watch(assoc, responses, receiver, QR_MOVE_SERVICE_CLASS_STATUS, "C-MOVE")
        finally:
            server.shutdown()

    # -- store ----------------------------------------------------------------------------------
    def store(
        self, paths: str | os.PathLike[str] | list, *, progress: Progress = None, cancel: CancelFlag = None
    ) -> StoreResult:
        """C-STORE every file; StoreError (after trying all) when any is refused, naming the first."""
        files = dicom_files(paths)
        headers: list[tuple[Path, str, str]] = []
        for path in files:
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except (InvalidDicomError, OSError, ValueError) as exc:
                raise StoreError(f"{path}: not a DICOM file ({exc}); nothing was sent") from exc
            sop_class = str(ds.get("SOPClassUID", "") or getattr(ds.file_meta, "MediaStorageSOPClassUID", ""))
            if not sop_class or "SOPInstanceUID" not in ds:
                raise StoreError(f"{path}: has no SOP Class / SOP Instance UID; nothing was sent")
            headers.append(
                (path, sop_class, str(ds.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian)))
            )
        syntaxes: dict[str, list[str]] = {}
        for _path, sop_class, ts in headers:
            syntaxes.setdefault(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
            if ts not in syntaxes[sop_class]:
                syntaxes[sop_class].append(ts)
        if len(syntaxes) > 127:
            raise StoreError(
                f"{len(syntaxes)} different SOP classes in one send; at most 127 fit one association"
            )
        ae = self._new_ae()
        for sop_class, ts in syntaxes.items():
            ae.add_requested_context(sop_class, ts)
        result = StoreResult()
        n = len(headers)
        with self._association(ae, "C-STORE") as assoc:
            for i, (path, _sop_class, _ts) in enumerate(headers):
                if is_cancelled(cancel):
                    raise PacsCancelled(
                        f"send to {self.node} cancelled after {result.sent} of {n} instance(s)"
                    )
                try:
                    status = assoc.send_c_store(path)
                except ValueError as exc:  # no accepted context for this class / transfer syntax
                    result.failed.append((str(path), f"the node accepts no context for it ({exc})"))
                    continue
                code, comment = _status(status)
                if code is None:
                    raise StoreError(
                        f"{self.node}: the connection was lost while sending {path.name} "
                        f"({result.sent} of {n} stored before); send again (a PACS ignores duplicates)"
                    )
                if code == SUCCESS:
                    result.sent += 1
                elif code in (0xB000, 0xB006, 0xB007):
                    result.sent += 1
                    result.warnings.append(
                        (str(path), status_text(code, STORAGE_SERVICE_CLASS_STATUS, comment))
                    )
                else:
                    result.failed.append(
                        (str(path), status_text(code, STORAGE_SERVICE_CLASS_STATUS, comment))
                    )
                if progress:
                    progress(i + 1, n)
        if result.failed:
            first, why = result.failed[0]
            raise StoreError(
                f"{self.node} refused {len(result.failed)} of {n} instance(s) ({result.sent} stored); "
                f"first: {first}: {why}"
            )
        return result
