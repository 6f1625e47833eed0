"""DICOMweb with dicomweb-client: QIDO-RS (find), WADO-RS (retrieve), STOW-RS (store).

Retrieves follow the same staging / completeness rules as DIMSE ones (see `retrieve`); instances
come as Explicit VR Little Endian (dicomweb-client's default), one at a time, so progress and
cancel work between instances.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from mfm_engine.pacs.client import PacsClient, StoreResult, dicom_files, require_uid
from mfm_engine.pacs.errors import PacsCancelled, PacsConnectionError, PacsError, StoreError
from mfm_engine.pacs.nodes import Node
from mfm_engine.pacs.query import SERIES_RETURN_KEYS, STUDY_RETURN_KEYS, Query, SeriesMatch, StudyMatch
from mfm_engine.pacs.retrieve import CancelFlag, Progress, Receiver, RetrieveResult, is_cancelled

T = TypeVar("T")
# Characters a QIDO-RS value can carry without percent-encoding (RFC 3986 unreserved, plus the
# DICOM wildcards and the date-range dash).
_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_*?")


class _QidoClient(DICOMwebClient):
    """dicomweb-client sending query values unencoded where it can.

    Why: some servers compare percent-encoded values literally (Orthanc 1.10 with its DICOMweb
    plugin 1.7 finds nothing for ``PatientName=BETA%2A``), and dicomweb-client encodes ``*``. Values
    reach this class already reduced to `_PLAIN` characters by `server_filters`.
    """

    def _http_get(self, url, params=None, headers=None, stream=False):  # type: ignore[override]
        if params:
            parts = []
            for key, value in params.items():
                for v in value if isinstance(value, list | tuple | set) else [value]:
                    parts.append(f"{key}={quote(str(v), safe='*?')}")
            url = f"{url}?{'&'.join(parts)}"
        return super()._http_get(url, None, headers, stream)


def server_filters(filters: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(what to send, what to check locally): a character outside `_PLAIN` becomes the wildcard ``*``
    for the server, and that key is then matched exactly here."""
    send, check = {}, {}
    for key, value in filters.items():
        plain = "".join(c if c in _PLAIN else "*" for c in value)
        send[key] = plain
        if plain != value:
            check[key] = value
    return send, check


def _matches(value: str, pattern: str, *, fold_case: bool) -> bool:
    """DICOM wildcard matching (* any run, ? one character), for the keys the server matched loosely."""
    if fold_case:
        value, pattern = value.upper(), pattern.upper()
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


QIDO_PAGE = 200  # results per QIDO-RS request
STOW_BATCH = 16  # instances per STOW-RS request: progress and cancel between batches


class DicomWebClient(PacsClient):
    """QIDO-RS / WADO-RS / STOW-RS against one DICOMweb base URL."""

    def __init__(self, node: Node, *, timeout: float = 30.0) -> None:
        if not node.is_dicomweb:
            raise PacsError(f"{node} is a DIMSE node; DICOMweb needs an http(s):// URL")
        self.node = node
        self.timeout = float(timeout)
        self._client = _QidoClient(node.url, timeout=self.timeout)
        # No hidden retries with back-off (~30 s on a dead server): callers decide; the node retries itself.
        self._client.set_http_retry_params(retry=False)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one request, turning network and HTTP failures into PacsErrors that name the node."""
        try:
            return fn()
        except requests.exceptions.ConnectionError as exc:
            text = str(exc).lower()
            detail = (
                "connection refused (is the server running, is the port right?)"
                if "refused" in text
                else _short(exc)
            )
            raise PacsConnectionError(f"cannot reach {self.node} for {what}: {detail}") from exc
        except requests.exceptions.Timeout as exc:
            raise PacsConnectionError(f"{self.node} did not answer {what} within {self.timeout:g} s") from exc
        except requests.exceptions.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else 0
            hint = {
                401: "authentication required",
                403: "not allowed",
                404: "not found (wrong UID, or the URL is not the DICOMweb root?)",
                409: "conflict: the server refused the instances",
                413: "the request is too large for the server",
                415: "the server does not accept this media type",
            }.get(code, "")
            raise PacsError(
                f"{self.node}: {what} failed with HTTP {code}{' — ' + hint if hint else ''}"
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise PacsConnectionError(f"{self.node}: {what} failed: {_short(exc)}") from exc

    def _paged(self, what: str, page: Callable[[int], list[dict]], uid_tag: str) -> list[dict]:
        """Every result of a QIDO-RS search, page by page, each UID once.

        Paged by hand: some servers ignore ``offset`` for some keys (Orthanc's plugin 1.7 does for
        ModalitiesInStudy) and send the first page again; a page with no new UID ends the search.
        """
        out: dict[str, dict] = {}
        offset = 0
        while True:
            items = self._call(what, lambda offset=offset: page(offset))
            new = 0
            for item in items:
                uid = str(((item.get(uid_tag) or {}).get("Value") or [""])[0])
                if uid not in out:
                    out[uid] = item
                    new += 1
            if len(items) < QIDO_PAGE or new == 0:
                return list(out.values())
            offset += len(items)

    # -- verification / query -------------------------------------------------------------------
    def echo(self) -> float:
        """A one-result QIDO-RS study search; returns the round-trip time in seconds."""
        start = time.perf_counter()
        self._call("a QIDO-RS request", lambda: self._client.search_for_studies(limit=1))
        return time.perf_counter() - start

    def find_studies(self, query: Query) -> list[StudyMatch]:
        """QIDO-RS study search; newest first."""
        send, check = server_filters(query.qido_filters())
        found = self._paged(
            "the study search",
            lambda offset: self._client.search_for_studies(
                fields=list(STUDY_RETURN_KEYS), search_filters=send, limit=QIDO_PAGE, offset=offset
            ),
            "0020000D",
        )
        matches = []
        for item in found:
            ds = Dataset.from_json(item)
            if all(_matches(_plain_text(ds, k), v, fold_case=k == "PatientName") for k, v in check.items()):
                matches.append(StudyMatch.from_dataset(ds))
        return sorted(matches, key=lambda s: (s.study_date, s.study_time), reverse=True)

    def find_series(self, study_uid: str, modality: str = "", series_uid: str = "") -> list[SeriesMatch]:
        """QIDO-RS series search within a study; by series number."""
        study_uid = require_uid(study_uid, "study")
        filters: dict[str, Any] = {}
        if modality:
            filters["Modality"] = "".join(c for c in modality if c in _PLAIN)
        if series_uid:
            filters["SeriesInstanceUID"] = require_uid(series_uid, "series")
        found = self._paged(
            "the series search",
            lambda offset: self._client.search_for_series(
                study_instance_uid=study_uid,
                fields=list(SERIES_RETURN_KEYS),
                search_filters=filters,
                limit=QIDO_PAGE,
                offset=offset,
            ),
            "0020000E",
        )
        matches = []
        for item in found:
            ds = Dataset.from_json(item)
            if not ds.get("StudyInstanceUID"):
                ds.StudyInstanceUID = study_uid  # QIDO may leave out the key of the URL's level
            matches.append(SeriesMatch.from_dataset(ds))
        return sorted(matches, key=lambda s: (s.number is None, s.number or 0, s.series_uid))

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
    ) -> RetrieveResult:
        """WADO-RS of one series into ``dest``, complete or not at all."""
        study_uid = require_uid(study_uid, "study")
        series_uid = require_uid(series_uid, "series")
        if expected is None:
            expected = self.expected_instances(study_uid, series_uid)
        receiver = Receiver(
            Path(dest),
            study_uid=study_uid,
            series_uid=series_uid,
            expected=expected,
            node=str(self.node),
            method="WADO-RS",
            progress=progress,
            cancel=cancel,
            overwrite=overwrite,
        )
        what = f"the WADO-RS retrieve of series {series_uid}"
        try:
            instances: Iterator[Dataset] = self._call(
                what, lambda: self._client.iter_series(study_uid, series_uid)
            )
            with contextlib.closing(instances) if hasattr(instances, "close") else contextlib.nullcontext():
                while True:
                    ds = self._call(what, lambda: next(instances, None))
                    if ds is None:
                        break
                    if not receiver.accept(
                        str(ds.SOPInstanceUID),
                        str(ds.get("SeriesInstanceUID", series_uid)),
                        lambda path, ds=ds: ds.save_as(path, enforce_file_format=True),
                    ):
                        break
        except PacsError as exc:
            receiver.discard()
            raise type(exc)(f"{exc}; after {len(receiver.files)} instance(s), nothing kept") from exc
        except BaseException:
            receiver.discard()
            raise
        return receiver.finish()

    # -- store ----------------------------------------------------------------------------------
    def store(
        self, paths: str | os.PathLike[str] | list, *, progress: Progress = None, cancel: CancelFlag = None
    ) -> StoreResult:
        """STOW-RS in batches; StoreError (after trying all) when any instance is refused."""
        files = dicom_files(paths)
        for path in files:  # check them all first: nothing is sent when one is not DICOM
            try:
                pydicom.dcmread(path, stop_before_pixels=True)
            except (InvalidDicomError, OSError, ValueError) as exc:
                raise StoreError(f"{path}: not a DICOM file ({exc}); nothing was sent") from exc
        result = StoreResult()
        n = len(files)
        for start in range(0, n, STOW_BATCH):
            if is_cancelled(cancel):
                raise PacsCancelled(f"send to {self.node} cancelled after {result.sent} of {n} instance(s)")
            batch = files[start : start + STOW_BATCH]
            datasets = [pydicom.dcmread(p) for p in batch]
            by_uid = {str(ds.SOPInstanceUID): str(p) for ds, p in zip(datasets, batch, strict=True)}
            try:
                answer = self._call(
                    "the STOW-RS store", lambda datasets=datasets: self._client.store_instances(datasets)
                )
            except PacsConnectionError:
                raise
            except PacsError as exc:
                result.failed += [(p, str(exc)) for p in by_uid.values()]
                continue
            failed = {
                str(item.get("ReferencedSOPInstanceUID", "")): item
                for item in answer.get("FailedSOPSequence", [])
            }
            for uid, path in by_uid.items():
                if uid in failed:
                    reason = failed[uid].get("FailureReason", "")
                    result.failed.append((path, f"failure reason {reason}" if reason != "" else "refused"))
                else:
                    result.sent += 1
            if progress:
                progress(min(start + STOW_BATCH, n), n)
        if result.failed:
            first, why = result.failed[0]
            raise StoreError(
                f"{self.node} refused {len(result.failed)} of {n} instance(s) ({result.sent} stored); "
                f"first: {first}: {why}"
            )
        return result


def _plain_text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value)


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
