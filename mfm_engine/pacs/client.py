"""What every PACS client offers, whichever protocol: echo, find, retrieve (series or study), store."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from mfm_engine.pacs.errors import PacsCancelled, PacsError, RetrieveError, StoreError
from mfm_engine.pacs.nodes import Node
from mfm_engine.pacs.query import Query, SeriesMatch, StudyMatch
from mfm_engine.pacs.retrieve import (
    CancelFlag,
    Progress,
    RetrieveResult,
    cached_result,
    is_cancelled,
    is_uid,
    mark_study_complete,
)


@dataclass
class StoreResult:
    """What a send did: instances stored, those stored with a warning, and the failures (file, reason)."""

    sent: int = 0
    warnings: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def dicom_files(paths: str | os.PathLike[str] | list[str | os.PathLike[str]]) -> list[Path]:
    """The files to send: given files, plus every non-hidden file under given folders (sorted)."""
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                out.extend(Path(root) / f for f in sorted(files) if not f.startswith("."))
        elif p.is_file():
            out.append(p)
        else:
            raise StoreError(f"{p}: no such file or folder")
    if not out:
        raise StoreError(f"{', '.join(str(i) for i in items)}: no files to send")
    return out


class PacsClient(ABC):
    """A connection recipe for one node; each call opens and closes its own association / requests."""

    node: Node

    @abstractmethod
    def echo(self) -> float:
        """Check the node answers (C-ECHO, or a QIDO-RS request); returns the round-trip time in seconds."""

    @abstractmethod
    def find_studies(self, query: Query) -> list[StudyMatch]:
        """The studies matching a query."""

    @abstractmethod
    def find_series(self, study_uid: str, modality: str = "", series_uid: str = "") -> list[SeriesMatch]:
        """The series of one study (optionally one modality or one series)."""

    @abstractmethod
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
        """Retrieve one series into ``dest`` (``<SOPInstanceUID>.dcm`` files), complete or not at all."""

    @abstractmethod
    def store(
        self, paths: str | os.PathLike[str] | list, *, progress: Progress = None, cancel: CancelFlag = None
    ) -> StoreResult:
        """Send DICOM files (or folders of them) to the node; StoreError when any is refused."""

    def expected_instances(self, study_uid: str, series_uid: str) -> int | None:
        """How many instances the node lists for a series (None when it does not say)."""
        found = self.find_series(study_uid, series_uid=series_uid)
        if not found:
            raise RetrieveError(f"{self.node}: no series {series_uid} in study {study_uid}")
        return found[0].n_instances

    def retrieve_study(
        self,
        study_uid: str,
        dest: str | os.PathLike[str],
        *,
        progress: Progress = None,
        cancel: CancelFlag = None,
        overwrite: bool = False,
        **options,
    ) -> RetrieveResult:
        """Retrieve every series of a study into ``dest/<SeriesInstanceUID>/``, reusing complete ones."""
        dest = Path(dest)
        series = self.find_series(study_uid)
        if not series:
            raise RetrieveError(f"{self.node}: study {study_uid} has no series (or does not exist)")
        known = [s.n_instances for s in series]
        total = sum(n for n in known if n) if all(known) else 0
        done = 0
        method = ""
        for s in series:
            if is_cancelled(cancel):
                raise PacsCancelled(
                    f"retrieve of study {study_uid} cancelled; complete series kept, study not marked"
                )
            target = dest / s.series_uid
            cached = None if overwrite else cached_result(target)
            if cached is not None:
                done += cached.n_instances
                if progress:
                    progress(done, total)
                continue
            base = done

            def series_progress(n: int, _total: int, base: int = base) -> None:
                if progress:
                    progress(base + n, total)

            result = self.retrieve_series(
                study_uid,
                s.series_uid,
                target,
                expected=s.n_instances,
                progress=series_progress,
                cancel=cancel,
                overwrite=overwrite,
                **options,
            )
            done += result.n_instances
            method = result.method
        uids = [s.series_uid for s in series]
        mark_study_complete(dest, study_uid=study_uid, series_uids=uids, node=str(self.node), method=method)
        return RetrieveResult(dest, done, method, series_uids=uids)


def status_text(code: int, table: dict[int, tuple[str, str]], comment: str = "") -> str:
    """'0xA801 Move destination unknown (comment)' for messages."""
    meaning = table.get(code, ("", ""))[1] or "unknown status"
    extra = f": {comment}" if comment else ""
    return f"status 0x{code:04X} {meaning}{extra}"


def require_uid(uid: str, what: str) -> str:
    """A stripped UID; PacsError when it is empty or not digits and dots."""
    text = (uid or "").strip()
    if not is_uid(text):
        raise PacsError(f"{what} UID {uid!r} is not a DICOM UID (numbers and dots, at most 64 characters)")
    return text
