"""A reader's answers file: append-only, one commit per answer, resumable, truth-free; killed with SIGKILL."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from reader_study_support import make_bundle, scripted_choice, tiny_checkpoint

from mfm_engine.reader_study import ReaderStudyError, ReadingSession
from mfm_engine.reader_study.bundle import manifest_sha256
from mfm_engine.reader_study.store import ReaderStore, read_results

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def paired(tmp_path_factory, ckpt):
    return make_bundle(tmp_path_factory.mktemp("paired"), ckpt, mode="paired", n=6, candidates=6)


@pytest.fixture(scope="module")
def revisable(tmp_path_factory, ckpt):
    return make_bundle(tmp_path_factory.mktemp("rev"), ckpt, mode="single", n=4, allow_revisions=True)


def _open(result, path: Path, reader: str = "R1") -> ReaderStore:
    return ReaderStore.open(path, result.manifest, manifest_sha256(result.bundle), reader)


def test_answers_are_committed_append_only_and_checked(paired, tmp_path):
    store = _open(paired, tmp_path / "r1.sqlite")
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    first = store.order[0]
    saved = store.record(first, "left", 4, 12.5)
    # Another connection (another process, say) sees it at once: it is committed.
    other = sqlite3.connect(tmp_path / "r1.sqlite")
    assert other.execute("SELECT case_id, choice, confidence FROM answers").fetchall() == [(first, "left", 4)]
    with pytest.raises(ReaderStudyError, match="already answered"):
        store.record(first, "right", 5, 1.0)
    with pytest.raises(ReaderStudyError, match="does not allow"):
        store.revise(first, "right", 5, 1.0)
    # Not even SQL can change or remove an answer.
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        other.execute("UPDATE answers SET choice = 'right'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        other.execute("DELETE FROM answers")
    with pytest.raises(sqlite3.DatabaseError, match="write-once"):
        other.execute("UPDATE study SET value = 'R2' WHERE key = 'reader_id'")
    other.close()
    for bad in (("real", 3, 1.0), ("left", 0, 1.0), ("left", 6, 1.0), ("left", 3, -1.0), ("left", 2.5, 1.0)):
        with pytest.raises(ReaderStudyError):
            store.record(store.order[1], *bad)
    with pytest.raises(ReaderStudyError, match="not part of this study"):
        store.record("case-nothere", "left", 3, 1.0)
    assert store.final_answers() == {first: saved}
    assert store.next_position() == 1
    store.close()


def test_resume_and_refuse_other_reader_or_study(paired, revisable, tmp_path):
    path = tmp_path / "r.sqlite"
    store = _open(paired, path)
    order = list(store.order)
    store.record(order[0], "right", 2, 3.0)
    store.record(order[1], "left", 5, 4.0)
    store.close()
    again = _open(paired, path)
    assert again.order == order and again.next_position() == 2
    again.close()
    with pytest.raises(ReaderStudyError, match="answers of reader 'R1', not 'R2'"):
        _open(paired, path, "R2")
    with pytest.raises(ReaderStudyError, match="belongs to study"):
        _open(revisable, path)
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 10)
    with pytest.raises(ReaderStudyError, match="junk.sqlite"):
        _open(paired, tmp_path / "junk.sqlite")


def test_revisions_are_new_rows_and_the_last_counts(revisable, tmp_path):
    session = ReadingSession(revisable.bundle, "R1", tmp_path)
    first = session.case_id
    session.answer("real", 2)
    session.answer("synthetic", 3)
    session.go_to(0)
    assert session.case_id == first and session.current_answer().choice == "real"
    session.revise("synthetic", 4, reason="second look")
    assert session.position == 2  # back to the first unanswered case
    with pytest.raises(ReaderStudyError, match="answer the current case first"):
        session.go_to(3)
    session.close()
    res = read_results(session.store.path)
    assert [(a.case_id, a.choice, a.is_revision) for a in res.answers][-1] == (first, "synthetic", True)
    assert res.answers[-1].revision_of == res.answers[0].seq
    assert res.final[first].choice == "synthetic" and res.revised_cases == [first]


def test_session_forbids_going_back_without_revisions(paired, tmp_path):
    session = ReadingSession(paired.bundle, "R9", tmp_path)
    session.answer("left", 3)
    with pytest.raises(ReaderStudyError, match="does not allow going back"):
        session.go_to(0)
    session.close()


def test_results_file_holds_no_truth(paired, tmp_path):
    session = ReadingSession(paired.bundle, "R1", tmp_path)
    rng = random.Random(3)
    while not session.finished:
        session.log_window(500, 60, "reader")
        session.answer(*scripted_choice(rng, session.choices))
    session.close()
    path = session.store.path
    con = sqlite3.connect(path)
    columns = {
        table: [r[1] for r in con.execute(f"PRAGMA table_info({table})")]
        for (table,) in con.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
        )
    }
    study = dict(con.execute("SELECT key, value FROM study"))
    con.close()
    assert columns == {
        "study": ["key", "value"],
        "answers": [
            "seq",
            "case_id",
            "position",
            "choice",
            "confidence",
            "seconds",
            "answered_at",
            "revision_of",
            "reason",
        ],
        "events": ["seq", "at", "case_id", "kind", "width", "level", "detail"],
    }
    assert set(study) == {
        "format",
        "version",
        "study_id",
        "manifest_sha256",
        "reader_id",
        "mode",
        "allow_revisions",
        "order",
        "created",
    }
    raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    key = paired.key
    for case in key.cases.values():
        for s in (
            case.patient,
            *case.sources.values(),
            str(case.provenance.get("model")),
            str(case.provenance.get("checkpoint")),
        ):
            assert s.encode() not in raw, f"results file mentions {s!r}"
    for word in (b"phantom", b"timeresnet", b"truth", b"provenance", key.bundle_sha256.encode()):
        assert word not in raw
    res = read_results(path)
    assert res.window_changes == 6 and len(res.answers) == 6


CHILD_WIDGETS = r"""
import random, sys, time
from PySide6 import QtWidgets
app = QtWidgets.QApplication([])
from mfm_engine.reader_study.session import ReadingSession
from mfm_viewer.reader_study.session_window import ReaderSessionWindow

bundle, results, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
window = ReaderSessionWindow(ReadingSession(bundle, "R1", results))
window.show()
app.processEvents()
rng = random.Random(7)
for _ in range(k):
    case_id = window.session.case_id
    choice, confidence = rng.choice(window.session.choices), rng.randint(1, 5)
    window.choice_buttons[choice].click()
    window.confidence_buttons[confidence].click()
    window.cursor.set_window(500.0, 60.0)
    window.save_button.click()
    print("ANSWERED", case_id, choice, confidence, flush=True)
print("READY", flush=True)
while True:  # a reader looking at the next case when the power goes
    app.processEvents()
    time.sleep(0.05)
"""

CHILD_BUSY = r"""
import random, sys
from mfm_engine.reader_study.session import ReadingSession

session = ReadingSession(sys.argv[1], "R1", sys.argv[2])
rng = random.Random(3)
while True:  # answer everything, then keep changing answers: always in the middle of a write
    if session.finished:
        session.go_to(rng.randrange(session.n_cases))
        saved = session.revise(rng.choice(session.choices), rng.randint(1, 5))
    else:
        saved = session.answer(rng.choice(session.choices), rng.randint(1, 5))
    print("SAVED", saved.seq, saved.case_id, saved.choice, saved.confidence, flush=True)
"""


def _spawn(code: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    # A file, not a pipe: a chatty child must never block on a full stderr pipe.
    err = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
    )
    # A safety net, not a timing assertion: never leave a stuck child behind.
    timer = threading.Timer(300, lambda: proc.poll() is None and proc.kill())
    timer.daemon = True
    timer.start()
    proc.safety_timer = timer  # type: ignore[attr-defined]
    proc.err_file = err  # type: ignore[attr-defined]
    return proc


def _read_until(proc: subprocess.Popen, done) -> list[str]:
    lines = []
    while True:
        line = proc.stdout.readline()
        if not line:
            proc.wait()
            proc.err_file.seek(0)
            pytest.fail(
                f"the child process ended early (rc {proc.returncode}): {proc.err_file.read()[-2000:]}"
            )
        lines.append(line.split())
        if done(lines):
            return lines


def _kill(proc: subprocess.Popen) -> None:
    proc.safety_timer.cancel()
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    proc.stdout.close()
    proc.err_file.close()


def test_sigkill_mid_session_loses_nothing_and_resumes_through_the_widgets(paired, tmp_path, qtbot):
    from mfm_viewer.reader_study.session_window import ReaderSessionWindow

    results = tmp_path / "answers"
    k = 3
    proc = _spawn(CHILD_WIDGETS, str(paired.bundle), str(results), str(k))
    lines = _read_until(proc, lambda ls: ls[-1] == ["READY"])
    _kill(proc)
    given = [(cid, choice, int(conf)) for _, cid, choice, conf in lines[:-1]]
    assert len(given) == k

    [path] = list(results.glob("*.sqlite"))
    res = read_results(path)  # read-only, straight after the kill (the WAL is still there)
    assert [(a.case_id, a.choice, a.confidence) for a in res.answers] == given
    assert res.window_changes >= k  # each case's window change went in with its answer
    assert [a.position for a in res.answers] == list(range(k))

    # Reopen: the first unanswered case, in the widgets.
    window = ReaderSessionWindow(ReadingSession(paired.bundle, "R1", results))
    qtbot.addWidget(window)
    window.show()
    assert window.session.position == k
    assert window.session.case_id == res.order[k]
    assert window.progress_label.text().startswith(f"Case {k + 1} of 6")
    rng = random.Random(9)
    while window.session.case_id is not None:
        choice, confidence = scripted_choice(rng, window.session.choices)
        window.choice_buttons[choice].click()
        window.confidence_buttons[confidence].click()
        window.save_button.click()
    window.close()
    final = read_results(path)
    assert len(final.answers) == 6 and not final.revised_cases
    assert [(a.case_id, a.choice, a.confidence) for a in final.answers[:k]] == given


def test_sigkill_during_writes_keeps_every_acknowledged_answer(ckpt, tmp_path):
    bundle = make_bundle(tmp_path, ckpt, mode="paired", n=3, allow_revisions=True)
    results = tmp_path / "busy"
    proc = _spawn(CHILD_BUSY, str(bundle.bundle), str(results))
    lines = _read_until(proc, lambda ls: len(ls) >= 40)  # well into the revisions, mid-write
    _kill(proc)
    [path] = list(results.glob("*.sqlite"))
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    rows = {a.seq: a for a in read_results(path).answers}
    for _, seq, cid, choice, conf in lines:
        a = rows[int(seq)]
        assert (a.case_id, a.choice, a.confidence) == (cid, choice, int(conf))
    assert len(lines) <= len(rows) <= len(lines) + 1  # at most the answer being written when killed
    # The killed file opens for a new session, which goes on appending.
    session = ReadingSession(bundle.bundle, "R1", results)
    assert session.finished
    session.go_to(0)
    saved = session.revise("left", 1)
    assert saved.seq == max(rows) + 1
    session.close()
