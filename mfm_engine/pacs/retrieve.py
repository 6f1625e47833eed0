"""Where retrieved instances go, and the rule that an incomplete retrieve never looks complete.

Every retrieve writes into a hidden staging folder beside its target (``.NAME.<random>.partial``;
the study reader skips hidden folders). Only when every instance the PACS listed has arrived, no
sub-operation failed and nothing was cancelled is a marker file (``.mfm-retrieve.json``, also hidden)
written into it and the folder renamed into place in one step. A crash, a cancel, a full disk or a
short delivery leaves at most a hidden ``.partial`` folder, removed by the next retrieve of that target.

Cache layout: ``<cache>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``; a study
folder gets its own marker once all its series are complete.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mfm_engine.cancel import CancelFlag, is_cancelled  # noqa: F401  (re-exported to the clients)
from mfm_engine.pacs.errors import PacsCancelled, RetrieveError

MARKER = ".mfm-retrieve.json"
MARKER_FORMAT = "mfm-retrieve"
MARKER_VERSION = 1

Progress = Callable[[int, int], object] | None  # (instances done, instances expected or 0 when unknown)


def cache_folder(root: str | os.PathLike[str], study_uid: str, series_uid: str | None = None) -> Path:
    """The cache folder of a study, or of one of its series."""
    _check_uid(study_uid, "study")
    path = Path(root) / study_uid
    if series_uid:
        _check_uid(series_uid, "series")
        path = path / series_uid
    return path


_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def is_uid(text: str) -> bool:
    """True for a DICOM UID: numbers separated by single dots, at most 64 characters."""
    return bool(text) and len(text) <= 64 and _UID_RE.match(text) is not None


def _check_uid(uid: str, what: str) -> None:
    # UIDs become folder and file names: anything else ('..', '/') could escape the cache.
    if not is_uid(uid):
        raise RetrieveError(f"{what} UID {uid!r} is not a DICOM UID (numbers and dots, at most 64)")


@dataclass
class RetrieveResult:
    """A complete retrieve: the folder, how many instances, how, and whether it came from the cache."""

    folder: Path
    n_instances: int
    method: str
    from_cache: bool = False
    series_uids: list[str] = field(default_factory=list)


def read_marker(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The completeness marker of a retrieve folder, or None when it is absent, unreadable or foreign."""
    path = Path(folder) / MARKER
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != MARKER_FORMAT:
        return None
    return doc


def cached_result(folder: str | os.PathLike[str]) -> RetrieveResult | None:
    """A RetrieveResult for a folder that holds a complete earlier retrieve (marker and every file)."""
    folder = Path(folder)
    doc = read_marker(folder)
    if doc is None:
        return None
    files = doc.get("files") or []
    if not files or not all((folder / f).is_file() for f in files):
        return None  # someone deleted files since: not complete any more
    return RetrieveResult(
        folder=folder,
        n_instances=len(files),
        method=str(doc.get("method", "")),
        from_cache=True,
        series_uids=list(doc.get("series_uids") or []),
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def disk_problem(exc: OSError, folder: Path) -> str:
    """A plain description of a write failure in the cache (full disk, read-only, no permission)."""
    if exc.errno == errno.ENOSPC:
        return f"no space left on the device holding {folder}"
    if exc.errno == errno.EDQUOT:
        return f"the disk quota is exhausted for {folder}"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write into {folder} ({exc.strerror}); is it read-only?"
    return f"cannot write into {folder}: {exc.strerror or _first_line(exc)}"


def prepare_target(target: Path, overwrite: bool) -> None:
    """Refuse a target that holds something other than an earlier retrieve; clear stale staging folders."""
    if target.exists() and not target.is_dir():
        raise RetrieveError(f"{target}: exists and is not a folder")
    if target.is_dir() and any(target.iterdir()):
        if read_marker(target) is None and not _only_retrieve_folders(target):
            raise RetrieveError(
                f"{target}: the folder is not empty and holds no earlier retrieve; "
                "choose an empty or new folder"
            )
        if not overwrite:
            raise RetrieveError(
                f"{target}: already holds a retrieve; pass overwrite=True (--overwrite) to replace it"
            )
    parent = target.parent
    if parent.is_dir():
        for stale in parent.glob(f".{target.name}.*.partial"):
            shutil.rmtree(stale, ignore_errors=True)


def _only_retrieve_folders(folder: Path) -> bool:
    # A study folder whose retrieve was cut off: complete series folders (or hidden staging) only.
    for child in folder.iterdir():
        if child.name.startswith("."):
            continue
        if not child.is_dir() or read_marker(child) is None:
            return False
    return True


class Receiver:
    """Collects the instances of one retrieve in a staging folder; thread-safe (network threads call it).

    ``accept`` stores one instance and answers whether to go on; ``finish`` checks completeness and
    renames the folder into place, or raises and removes it.
    """

    def __init__(
        self,
        target: Path,
        *,
        study_uid: str,
        series_uid: str | None,
        expected: int | None,
        node: str,
        method: str,
        progress: Progress = None,
        cancel: CancelFlag = None,
        overwrite: bool = False,
    ) -> None:
        self.target = Path(target)
        self.study_uid = study_uid
        self.series_uid = series_uid
        self.expected = expected
        self.node = node
        self.method = method
        self.progress = progress
        self.cancel = cancel
        self.overwrite = overwrite
        self.files: list[str] = []
        self.series_uids: set[str] = set()
        self.errors: list[str] = []
        self.foreign = 0  # instances of other studies/series that arrived during a C-MOVE
        self.callback_error: BaseException | None = None
        self._lock = threading.Lock()
        self._stopped = False
        prepare_target(self.target, overwrite)
        self.staging = self.target.with_name(f".{self.target.name}.{uuid.uuid4().hex[:12]}.partial")
        try:
            self.staging.mkdir(parents=True)
        except OSError as exc:
            raise RetrieveError(
                f"{self.target}: cannot start the retrieve: {disk_problem(exc, self.target.parent)}"
            ) from exc

    # -- called from network threads ---------------------------------------------------------------
    @property
    def stopped(self) -> bool:
        """True once the retrieve should stop (cancelled, a write failed, or the progress callback raised)."""
        return self._stopped or is_cancelled(self.cancel)

    def wants(self, study_uid: str, series_uid: str) -> bool:
        """Whether an arriving instance belongs to this retrieve."""
        return study_uid == self.study_uid and (self.series_uid is None or series_uid == self.series_uid)

    def accept(self, sop_uid: str, series_uid: str, write: Callable[[Path], None]) -> bool:
        """Store one instance with ``write(path)``; False (and nothing kept) when it failed or we stop."""
        if self.stopped:
            return False
        _check_uid(sop_uid, "SOP instance")
        rel = f"{sop_uid}.dcm" if self.series_uid else f"{series_uid}/{sop_uid}.dcm"
        path = self.staging / rel
        try:
            path.parent.mkdir(exist_ok=True)
            write(path)
        except OSError as exc:
            path.unlink(missing_ok=True)
            with self._lock:
                self.errors.append(disk_problem(exc, self.target.parent))
                self._stopped = True
            return False
        with self._lock:
            if rel not in self.files:
                self.files.append(rel)
            self.series_uids.add(series_uid)
            done = len(self.files)
        if self.progress is not None:
            try:
                self.progress(done, self.expected or 0)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread by finish()
                with self._lock:
                    self.callback_error = exc
                    self._stopped = True
        return True

    # -- called by the client when the retrieve is over --------------------------------------------
    def discard(self) -> None:
        """Remove the staging folder (nothing of this retrieve is kept)."""
        shutil.rmtree(self.staging, ignore_errors=True)

    def finish(self, *, failed: int = 0, pacs_note: str = "") -> RetrieveResult:
        """Check completeness and move the folder into place; otherwise remove it and raise."""
        n = len(self.files)
        what = f"series {self.series_uid}" if self.series_uid else f"study {self.study_uid}"
        try:
            if self.callback_error is not None:
                raise self.callback_error
            if is_cancelled(self.cancel):
                raise PacsCancelled(
                    f"retrieve of {what} from {self.node} cancelled after {n} instance(s); nothing kept"
                )
            if self.errors:
                raise RetrieveError(
                    f"retrieve of {what} from {self.node} stopped after {n} instance(s): "
                    f"{self.errors[0]}; nothing kept"
                )
            if failed:
                raise RetrieveError(
                    f"retrieve of {what} from {self.node}: the PACS reported {failed} failed sub-operation(s)"
                    f"{' (' + pacs_note + ')' if pacs_note else ''}; received {n}; nothing kept"
                )
            if n == 0:
                raise RetrieveError(
                    f"retrieve of {what} from {self.node} brought no instances"
                    f"{' (' + pacs_note + ')' if pacs_note else ''}; check the UIDs with a find"
                )
            if self.expected is not None and n < self.expected:
                raise RetrieveError(
                    f"retrieve of {what} from {self.node} incomplete: received {n} of the {self.expected} "
                    f"instance(s) the PACS listed{' (' + pacs_note + ')' if pacs_note else ''}; nothing kept"
                )
            self._write_marker()
            self._move_into_place()
        except BaseException:
            self.discard()
            raise
        return RetrieveResult(self.target, n, self.method, series_uids=sorted(self.series_uids))

    def _write_marker(self) -> None:
        doc = {
            "format": MARKER_FORMAT,
            "version": MARKER_VERSION,
            "node": self.node,
            "method": self.method,
            "study_uid": self.study_uid,
            "series_uid": self.series_uid,
            "series_uids": sorted(self.series_uids),
            "expected": self.expected,
            "files": sorted(self.files),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        try:
            with open(self.staging / MARKER, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise RetrieveError(
                f"{self.target}: {disk_problem(exc, self.target.parent)}; nothing kept"
            ) from exc

    def _move_into_place(self) -> None:
        try:
            if self.target.is_dir():
                old = self.target.with_name(f".{self.target.name}.{uuid.uuid4().hex[:12]}.old")
                os.replace(self.target, old)
                os.replace(self.staging, self.target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(self.staging, self.target)
        except OSError as exc:
            raise RetrieveError(
                f"{self.target}: could not move the finished retrieve into place: "
                f"{disk_problem(exc, self.target.parent)}; nothing kept"
            ) from exc


def mark_study_complete(
    folder: Path, *, study_uid: str, series_uids: list[str], node: str, method: str
) -> None:
    """Write the study-level marker once every series folder in it is complete (atomically)."""
    files = []
    for uid in series_uids:
        doc = read_marker(folder / uid)
        if doc is None:
            raise RetrieveError(
                f"{folder / uid}: series folder is not complete; the study is not marked complete"
            )
        files += [f"{uid}/{f}" for f in doc.get("files") or []]
    doc = {
        "format": MARKER_FORMAT,
        "version": MARKER_VERSION,
        "node": node,
        "method": method,
        "study_uid": study_uid,
        "series_uid": None,
        "series_uids": sorted(series_uids),
        "expected": len(files),
        "files": sorted(files),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    tmp = folder / f"{MARKER}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
        os.replace(tmp, folder / MARKER)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise RetrieveError(f"{folder}: {disk_problem(exc, folder)}") from exc
