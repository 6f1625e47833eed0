"""The translation node's job store: one SQLite file (WAL, synchronous FULL) that survives a crash.

A job is one received series. Its states::

    receiving ─(quiet time)→ received → translating → sending → done
        ↑                                    │            │
        └──── more instances arrive ─────────┴────────────┘      refused / failed: final, with a reason

An instance is acknowledged to the sender only after its file is on disk and its row is committed,
so nothing acknowledged is lost. On start, `recover` puts jobs that were being translated back to
'received' (translation is repeated, its output is identical); jobs in 'sending' resume sending the
same files, whose UIDs are derived from the source, so a PACS that got some of them already keeps
one copy. Each job carries a ``generation``: instances that arrive after a job left 'receiving'
bump it, and a worker's update for an older generation is dropped.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path

STATES = ("receiving", "received", "translating", "sending", "done", "refused", "failed")
FINAL_STATES = ("done", "refused", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    series_uid TEXT NOT NULL UNIQUE,
    study_uid TEXT NOT NULL DEFAULT '',
    calling_ae TEXT NOT NULL DEFAULT '',
    patient_hash TEXT NOT NULL DEFAULT '',
    modality TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    generation INTEGER NOT NULL DEFAULT 1,
    n_instances INTEGER NOT NULL DEFAULT 0,
    first_received REAL NOT NULL,
    last_received REAL NOT NULL,
    updated REAL NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    output_dir TEXT NOT NULL DEFAULT '',
    output_series_uid TEXT NOT NULL DEFAULT '',
    translations INTEGER NOT NULL DEFAULT 0,
    send_attempts INTEGER NOT NULL DEFAULT 0,
    sends_completed INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS instances (
    series_uid TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    path TEXT NOT NULL,
    received REAL NOT NULL,
    PRIMARY KEY (series_uid, sop_uid)
);
"""


@dataclass
class Job:
    """One series' row in the job store."""

    id: int
    series_uid: str
    study_uid: str
    calling_ae: str
    patient_hash: str
    modality: str
    state: str
    generation: int
    n_instances: int
    first_received: float
    last_received: float
    updated: float
    reason: str
    output_dir: str
    output_series_uid: str
    translations: int
    send_attempts: int
    sends_completed: int
    next_attempt: float


_COLUMNS = ", ".join(f.name for f in fields(Job))


class JobStore:
    """Thread-safe access to the jobs database (one connection, one lock; WAL lets others read)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed row (an acknowledged instance) survives power loss, not just a process kill.
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def _one(self, sql: str, args: tuple = ()) -> Job | None:
        row = self._conn.execute(f"SELECT {_COLUMNS} FROM jobs {sql}", args).fetchone()
        return Job(*row) if row else None

    def get(self, series_uid: str) -> Job | None:
        """The job of a series, or None."""
        with self._lock:
            return self._one("WHERE series_uid = ?", (series_uid,))

    def get_id(self, job_id: int) -> Job | None:
        """A job by id, or None."""
        with self._lock:
            return self._one("WHERE id = ?", (job_id,))

    def jobs(self) -> list[Job]:
        """Every job, oldest first."""
        with self._lock:
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM jobs ORDER BY id").fetchall()
        return [Job(*r) for r in rows]

    def instances(self, series_uid: str) -> list[tuple[str, str]]:
        """(SOP Instance UID, file path) of every instance received for a series."""
        with self._lock:
            return self._conn.execute(
                "SELECT sop_uid, path FROM instances WHERE series_uid = ? ORDER BY sop_uid", (series_uid,)
            ).fetchall()

    def has_instance(self, series_uid: str, sop_uid: str) -> bool:
        """True when this instance was received (and committed) before."""
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM instances WHERE series_uid = ? AND sop_uid = ?", (series_uid, sop_uid)
            ).fetchone()
        return row is not None

    def record_instance(
        self,
        series_uid: str,
        sop_uid: str,
        path: str,
        *,
        study_uid: str = "",
        calling_ae: str = "",
        patient_hash: str = "",
        modality: str = "",
        now: float | None = None,
    ) -> tuple[Job, bool]:
        """Commit one received instance; returns (its job, whether the instance was new).

        A new instance for a job that already left 'receiving' reopens it (generation + 1).
        """
        now = time.time() if now is None else now
        with self._lock, self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            cur = self._conn.execute(
                "INSERT OR IGNORE INTO instances (series_uid, sop_uid, path, received) VALUES (?, ?, ?, ?)",
                (series_uid, sop_uid, path, now),
            )
            new = cur.rowcount == 1
            job = self._one("WHERE series_uid = ?", (series_uid,))
            if job is None:
                self._conn.execute(
                    "INSERT INTO jobs (series_uid, study_uid, calling_ae, patient_hash, modality, state, "
                    "n_instances, first_received, last_received, updated) "
                    "VALUES (?, ?, ?, ?, ?, 'receiving', 1, ?, ?, ?)",
                    (series_uid, study_uid, calling_ae, patient_hash, modality, now, now, now),
                )
            elif new:
                if job.state == "receiving":
                    self._conn.execute(
                        "UPDATE jobs SET n_instances = n_instances + 1, last_received = ?, updated = ? "
                        "WHERE id = ?",
                        (now, now, job.id),
                    )
                else:
                    # Late instances: the series was not complete after all; start over with all of them.
                    self._conn.execute(
                        "UPDATE jobs SET state = 'receiving', generation = generation + 1, "
                        "n_instances = n_instances + 1, last_received = ?, updated = ?, reason = ?, "
                        "output_dir = '', output_series_uid = '', send_attempts = 0, next_attempt = 0 "
                        "WHERE id = ?",
                        (now, now, f"more instances arrived while {job.state}", job.id),
                    )
            job = self._one("WHERE series_uid = ?", (series_uid,))
        assert job is not None
        return job, new

    def refuse(
        self,
        series_uid: str,
        reason: str,
        *,
        study_uid: str = "",
        calling_ae: str = "",
        patient_hash: str = "",
        modality: str = "",
        now: float | None = None,
    ) -> tuple[Job, bool]:
        """Record a series refused on arrival (e.g. not CT); returns (job, whether it is new)."""
        now = time.time() if now is None else now
        with self._lock, self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            job = self._one("WHERE series_uid = ?", (series_uid,))
            if job is not None:
                return job, False
            self._conn.execute(
                "INSERT INTO jobs (series_uid, study_uid, calling_ae, patient_hash, modality, state, reason, "
                "first_received, last_received, updated) VALUES (?, ?, ?, ?, ?, 'refused', ?, ?, ?, ?)",
                (series_uid, study_uid, calling_ae, patient_hash, modality, reason, now, now, now),
            )
            job = self._one("WHERE series_uid = ?", (series_uid,))
        assert job is not None
        return job, True

    def promote_quiet(self, quiet_seconds: float, now: float | None = None) -> int:
        """'receiving' → 'received' for jobs with no new instance for ``quiet_seconds``; returns how many."""
        now = time.time() if now is None else now
        with self._lock, self._conn:
            cur = self._conn.execute(
                "UPDATE jobs SET state = 'received', updated = ? "
                "WHERE state = 'receiving' AND last_received <= ?",
                (now, now - quiet_seconds),
            )
            return cur.rowcount

    def recover(self) -> list[Job]:
        """After a restart: interrupted translations go back to 'received'; returns the unfinished jobs."""
        with self._lock, self._conn:
            self._conn.execute(
                "UPDATE jobs SET state = 'received', updated = ? WHERE state = 'translating'", (time.time(),)
            )
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE state NOT IN ('done', 'refused', 'failed') ORDER BY id"
            ).fetchall()
        return [Job(*r) for r in rows]

    def next_job(self, now: float | None = None) -> Job | None:
        """The next job: a due resend first (it is nearly done), then the oldest received series."""
        now = time.time() if now is None else now
        with self._lock:
            job = self._one("WHERE state = 'sending' AND next_attempt <= ? ORDER BY id LIMIT 1", (now,))
            return job or self._one("WHERE state = 'received' ORDER BY last_received, id LIMIT 1")

    def update(self, job: Job, **changes: object) -> Job | None:
        """Change a job if its generation is still ``job.generation``; the new row, or None if it moved on."""
        unknown = set(changes) - {f.name for f in fields(Job)}
        if unknown:
            raise ValueError(f"unknown job field(s): {', '.join(sorted(unknown))}")
        if "state" in changes and changes["state"] not in STATES:
            raise ValueError(f"unknown job state {changes['state']!r}")
        changes.setdefault("updated", time.time())
        assignments = ", ".join(f"{k} = ?" for k in changes)
        with self._lock, self._conn:
            cur = self._conn.execute(
                f"UPDATE jobs SET {assignments} WHERE id = ? AND generation = ?",
                (*changes.values(), job.id, job.generation),
            )
            if cur.rowcount == 0:
                return None
            return self._one("WHERE id = ?", (job.id,))

    def bump(self, job: Job, column: str) -> None:
        """Add one to a counter column (translations, send_attempts, sends_completed)."""
        if column not in ("translations", "send_attempts", "sends_completed"):
            raise ValueError(f"{column} is not a counter")
        with self._lock, self._conn:
            self._conn.execute(f"UPDATE jobs SET {column} = {column} + 1 WHERE id = ?", (job.id,))
