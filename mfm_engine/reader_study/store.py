"""One reader's answers in a SQLite file that survives being killed at any moment.

Durability: WAL journal, ``PRAGMA synchronous=FULL`` and one committed transaction per answer, so an
answer the interface has acknowledged is on disk; a kill (even SIGKILL, even mid-write) loses at
most the answer being written, never an earlier one. Reopening resumes at the first unanswered case.

Honesty: the ``answers`` table is append-only (triggers refuse UPDATE and DELETE), one first answer
per case (a unique index), and a change — only when the study allows it — is a new row that names
the row it revises. The file holds the reader's answers and the study's ids, never the truth.

Window changes and other interface events go to ``events``; they are buffered and committed with the
next answer, by `flush` (the widget calls it every second) and on close.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mfm_engine.reader_study.bundle import Manifest, reader_order
from mfm_engine.reader_study.common import (
    CHOICES,
    CONFIDENCE_MAX,
    CONFIDENCE_MIN,
    ReaderStudyError,
    check_reader_id,
)

STORE_FORMAT = "mfm-studio reader-study answers"
STORE_VERSION = 1
RESULTS_SUFFIX = ".sqlite"

_SCHEMA: tuple[str, ...] = (
    """
    CREATE TABLE study (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )
    """,
    """
    CREATE TRIGGER study_no_update BEFORE UPDATE ON study
        BEGIN SELECT RAISE(ABORT, 'the study description of a results file is write-once'); END
    """,
    """
    CREATE TRIGGER study_no_delete BEFORE DELETE ON study
        BEGIN SELECT RAISE(ABORT, 'the study description of a results file is write-once'); END
    """,
    """
    CREATE TABLE answers (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        case_id     TEXT    NOT NULL,
        position    INTEGER NOT NULL,
        choice      TEXT    NOT NULL CHECK (choice IN ('left', 'right', 'real', 'synthetic')),
        confidence  INTEGER NOT NULL CHECK (confidence BETWEEN 1 AND 5),
        seconds     REAL    NOT NULL CHECK (seconds >= 0),
        answered_at TEXT    NOT NULL,
        revision_of INTEGER REFERENCES answers(seq),
        reason      TEXT    NOT NULL DEFAULT ''
    )
    """,
    """
    CREATE UNIQUE INDEX answers_one_first_answer ON answers(case_id) WHERE revision_of IS NULL
    """,
    """
    CREATE TRIGGER answers_no_update BEFORE UPDATE ON answers
        BEGIN SELECT RAISE(ABORT, 'answers are append-only: a change is a new revision row'); END
    """,
    """
    CREATE TRIGGER answers_no_delete BEFORE DELETE ON answers
        BEGIN SELECT RAISE(ABORT, 'answers are append-only: a change is a new revision row'); END
    """,
    """
    CREATE TABLE events (
        seq     INTEGER PRIMARY KEY AUTOINCREMENT,
        at      TEXT NOT NULL,
        case_id TEXT,
        kind    TEXT NOT NULL,
        width   REAL,
        level   REAL,
        detail  TEXT NOT NULL DEFAULT ''
    )
    """,
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Answer:
    """One row of the answers table."""

    seq: int
    case_id: str
    position: int
    choice: str
    confidence: int
    seconds: float
    answered_at: str
    revision_of: int | None = None
    reason: str = ""

    @property
    def is_revision(self) -> bool:
        """True for a row that changes an earlier answer."""
        return self.revision_of is not None


@dataclass
class ReaderResults:
    """Everything a results file holds, read back for analysis."""

    path: Path
    reader_id: str
    study_id: str
    manifest_sha256: str
    mode: str
    order: list[str]
    answers: list[Answer]  # every row, revisions included, in the order written
    window_changes: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def final(self) -> dict[str, Answer]:
        """The answer that counts per case: the latest row for it."""
        out: dict[str, Answer] = {}
        for a in self.answers:
            out[a.case_id] = a
        return out

    @property
    def revised_cases(self) -> list[str]:
        """Cases whose answer was changed at least once."""
        return sorted({a.case_id for a in self.answers if a.is_revision})


def default_results_path(folder: str | os.PathLike[str], manifest: Manifest, reader_id: str) -> Path:
    """``<folder>/<study id>-<reader>.sqlite``."""
    from mfm_engine.reader_study.common import reader_file_stem

    return Path(folder) / f"{manifest.study_id}-{reader_file_stem(reader_id)}{RESULTS_SUFFIX}"


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=10.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _row_to_answer(row: tuple) -> Answer:
    return Answer(
        int(row[0]),
        row[1],
        int(row[2]),
        row[3],
        int(row[4]),
        float(row[5]),
        row[6],
        None if row[7] is None else int(row[7]),
        row[8] or "",
    )


_ANSWER_COLUMNS = "seq, case_id, position, choice, confidence, seconds, answered_at, revision_of, reason"


class ReaderStore:
    """A reader's open results file: record answers (committed at once), revisions, and interface events."""

    def __init__(self, path: Path, conn: sqlite3.Connection, info: dict[str, str]) -> None:
        self.path = path
        self._conn = conn
        self.reader_id = info["reader_id"]
        self.study_id = info["study_id"]
        self.manifest_sha256 = info["manifest_sha256"]
        self.mode = info["mode"]
        self.allow_revisions = info["allow_revisions"] == "1"
        self.order: list[str] = json.loads(info["order"])
        self._pending: list[tuple] = []

    # -- opening ------------------------------------------------------------------------------------
    @classmethod
    def open(
        cls, path: str | os.PathLike[str], manifest: Manifest, manifest_sha256: str, reader_id: str
    ) -> ReaderStore:
        """Create a reader's results file, or reopen it to resume; refuses another reader's or study's."""
        rid = check_reader_id(reader_id)
        target = Path(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            conn = _connect(target)
        except (OSError, sqlite3.Error) as exc:
            raise ReaderStudyError(f"{target}: cannot open the results file: {exc}") from exc
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables:
                info = {
                    "format": STORE_FORMAT,
                    "version": str(STORE_VERSION),
                    "study_id": manifest.study_id,
                    "manifest_sha256": manifest_sha256,
                    "reader_id": rid,
                    "mode": manifest.mode,
                    "allow_revisions": "1" if manifest.settings.allow_revisions else "0",
                    "order": json.dumps(reader_order(manifest, rid)),
                    "created": _now(),
                }
                # Schema and description in one transaction: a kill leaves either nothing or a whole file.
                conn.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.executemany("INSERT INTO study (key, value) VALUES (?, ?)", sorted(info.items()))
                conn.execute("COMMIT")
            else:
                info = cls._read_info(conn, target)
                problems = []
                if info["study_id"] != manifest.study_id:
                    problems.append(f"it belongs to study {info['study_id']!r}, not {manifest.study_id!r}")
                elif info["manifest_sha256"] != manifest_sha256:
                    problems.append("the bundle's manifest was changed since these answers were started")
                if info["reader_id"] != rid:
                    problems.append(f"it holds the answers of reader {info['reader_id']!r}, not {rid!r}")
                if problems:
                    raise ReaderStudyError(
                        f"{target}: this results file cannot be continued: " + "; ".join(problems)
                    )
        except sqlite3.Error as exc:
            conn.close()
            raise ReaderStudyError(f"{target}: not a usable results file: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return cls(target, conn, info)

    @staticmethod
    def _read_info(conn: sqlite3.Connection, where: Path) -> dict[str, str]:
        try:
            info = dict(conn.execute("SELECT key, value FROM study").fetchall())
        except sqlite3.Error as exc:
            raise ReaderStudyError(f"{where}: not a reader-study results file ({exc})") from exc
        if info.get("format") != STORE_FORMAT:
            raise ReaderStudyError(f"{where}: not a reader-study results file")
        if info.get("version") != str(STORE_VERSION):
            raise ReaderStudyError(f"{where}: results file version {info.get('version')!r} is not supported")
        return info

    # -- reading ------------------------------------------------------------------------------------
    def answers(self) -> list[Answer]:
        """Every answer row, revisions included, in the order written."""
        rows = self._conn.execute(f"SELECT {_ANSWER_COLUMNS} FROM answers ORDER BY seq").fetchall()
        return [_row_to_answer(r) for r in rows]

    def final_answers(self) -> dict[str, Answer]:
        """The answer that counts per case (the latest row)."""
        out: dict[str, Answer] = {}
        for a in self.answers():
            out[a.case_id] = a
        return out

    def next_position(self) -> int | None:
        """Place in this reader's order of the first unanswered case; None when all are answered."""
        done = {r[0] for r in self._conn.execute("SELECT case_id FROM answers")}
        for i, cid in enumerate(self.order):
            if cid not in done:
                return i
        return None

    # -- writing ------------------------------------------------------------------------------------
    def _check(self, case_id: str, choice: str, confidence: int, seconds: float) -> int:
        if case_id not in self.order:
            raise ReaderStudyError(f"{self.path}: case {case_id!r} is not part of this study")
        if choice not in CHOICES[self.mode]:
            raise ReaderStudyError(f"answer {choice!r} is not one of {CHOICES[self.mode]} ({self.mode} mode)")
        if (
            isinstance(confidence, bool)
            or not isinstance(confidence, int)
            or not (CONFIDENCE_MIN <= confidence <= CONFIDENCE_MAX)
        ):
            raise ReaderStudyError(
                f"confidence must be a whole number {CONFIDENCE_MIN}–{CONFIDENCE_MAX}, got {confidence!r}"
            )
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0):
            raise ReaderStudyError(f"reading time must be a finite number of seconds ≥ 0, got {seconds!r}")
        return self.order.index(case_id)

    def _write_answer(self, row: tuple) -> Answer:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            self._write_pending()
            cur = self._conn.execute(
                "INSERT INTO answers (case_id, position, choice, confidence, seconds, answered_at, "
                "revision_of, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.IntegrityError) and "answers.case_id" in str(exc):
                raise ReaderStudyError(
                    f"case {row[0]!r} is already answered; its answer cannot be replaced"
                ) from exc
            raise ReaderStudyError(f"{self.path}: the answer could not be saved: {exc}") from exc
        return Answer(int(cur.lastrowid), *row)

    def record(self, case_id: str, choice: str, confidence: int, seconds: float) -> Answer:
        """Save the first answer to a case, committed before returning; refuses a case already answered."""
        position = self._check(case_id, choice, confidence, seconds)
        if self._latest(case_id) is not None:
            raise ReaderStudyError(f"case {case_id!r} is already answered; its answer cannot be replaced")
        return self._write_answer(
            (case_id, position, choice, int(confidence), float(seconds), _now(), None, "")
        )

    def revise(self, case_id: str, choice: str, confidence: int, seconds: float, reason: str = "") -> Answer:
        """Record a change of an answered case as a new row (only when the study allows revisions)."""
        position = self._check(case_id, choice, confidence, seconds)
        if not self.allow_revisions:
            raise ReaderStudyError("this study does not allow answers to be changed")
        latest = self._latest(case_id)
        if latest is None:
            raise ReaderStudyError(f"case {case_id!r} has no answer yet to revise")
        return self._write_answer(
            (case_id, position, choice, int(confidence), float(seconds), _now(), latest.seq, str(reason))
        )

    def _latest(self, case_id: str) -> Answer | None:
        row = self._conn.execute(
            f"SELECT {_ANSWER_COLUMNS} FROM answers WHERE case_id = ? ORDER BY seq DESC LIMIT 1", (case_id,)
        ).fetchone()
        return _row_to_answer(row) if row else None

    def log_event(
        self,
        kind: str,
        case_id: str | None = None,
        width: float | None = None,
        level: float | None = None,
        detail: str = "",
    ) -> None:
        """Queue an interface event (e.g. 'window' with width/level); written by the next flush or answer."""
        self._pending.append((_now(), case_id, str(kind), width, level, str(detail)))

    def _write_pending(self) -> None:
        if self._pending:
            self._conn.executemany(
                "INSERT INTO events (at, case_id, kind, width, level, detail) VALUES (?, ?, ?, ?, ?, ?)",
                self._pending,
            )
            self._pending.clear()

    def flush(self) -> None:
        """Commit queued events."""
        if not self._pending:
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            self._write_pending()
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise ReaderStudyError(f"{self.path}: events could not be saved: {exc}") from exc

    def close(self) -> None:
        """Flush, fold the WAL into the main file (so the .sqlite alone holds everything) and close."""
        try:
            self.flush()
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._conn.close()


def read_results(path: str | os.PathLike[str]) -> ReaderResults:
    """Read a results file (read-only; a -wal file left by a killed session is included)."""
    target = Path(path)
    if not target.is_file():
        raise ReaderStudyError(f"{target}: results file not found")
    try:
        conn = sqlite3.connect(f"{target.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ReaderStudyError(f"{target}: cannot open the results file: {exc}") from exc
    try:
        info = ReaderStore._read_info(conn, target)
        rows = conn.execute(f"SELECT {_ANSWER_COLUMNS} FROM answers ORDER BY seq").fetchall()
        events = [
            {"at": r[0], "case_id": r[1], "kind": r[2], "width": r[3], "level": r[4], "detail": r[5]}
            for r in conn.execute("SELECT at, case_id, kind, width, level, detail FROM events ORDER BY seq")
        ]
    except sqlite3.Error as exc:
        raise ReaderStudyError(f"{target}: the results file is damaged or not a results file: {exc}") from exc
    finally:
        conn.close()
    return ReaderResults(
        target,
        info["reader_id"],
        info["study_id"],
        info["manifest_sha256"],
        info["mode"],
        json.loads(info["order"]),
        [_row_to_answer(r) for r in rows],
        sum(1 for e in events if e["kind"] == "window"),
        events,
    )
