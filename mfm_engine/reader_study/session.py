"""A reader's session, without widgets: which case is on screen, its volumes, the clock, and saving answers.

The reader's window (``mfm_viewer.reader_study.session_window``) only draws what this says and calls
`answer` / `revise`; a script can drive the same object without a screen (the kill-and-resume test does).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from mfm_engine.reader_study.bundle import Manifest, load_case_volume, manifest_sha256, read_manifest
from mfm_engine.reader_study.common import QUESTIONS, ReaderStudyError
from mfm_engine.reader_study.store import Answer, ReaderStore, default_results_path
from mfm_engine.volume import Volume

Clock = Callable[[], float]


class ReadingSession:
    """One reader working through one bundle: current case, its volumes, timing, answers saved at once."""

    def __init__(
        self,
        bundle: str | os.PathLike[str],
        reader_id: str,
        results: str | os.PathLike[str] | None = None,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self.bundle = Path(bundle)
        self.manifest: Manifest = read_manifest(self.bundle)
        folder_or_file = (
            Path(results) if results is not None else self.bundle.parent / f"{self.bundle.name}-results"
        )
        path = (
            folder_or_file
            if folder_or_file.suffix == ".sqlite"
            else default_results_path(folder_or_file, self.manifest, reader_id)
        )
        self.store = ReaderStore.open(path, self.manifest, manifest_sha256(self.bundle), reader_id)
        self.clock = clock
        self.position: int | None = None  # place in the reader's order of the case on screen
        self._shown_at: float | None = None
        self._volumes: dict[str, Volume] = {}
        self.store.log_event("session_opened", detail=f"resume at {self.store.next_position()}")
        self.go_to_next_unanswered()

    # -- what is on screen --------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        """'paired' or 'single'."""
        return self.manifest.mode

    @property
    def question(self) -> str:
        """The question the reader answers for every case."""
        return QUESTIONS[self.mode]

    @property
    def choices(self) -> tuple[str, str]:
        """The two possible answers."""
        return self.manifest.choices

    @property
    def n_cases(self) -> int:
        """Cases in the study."""
        return len(self.store.order)

    @property
    def order(self) -> list[str]:
        """This reader's case order."""
        return list(self.store.order)

    @property
    def case_id(self) -> str | None:
        """Id of the case on screen (None once every case is answered)."""
        return None if self.position is None else self.store.order[self.position]

    @property
    def finished(self) -> bool:
        """True when every case has an answer."""
        return self.store.next_position() is None

    @property
    def n_answered(self) -> int:
        """Cases with an answer."""
        return len(self.store.final_answers())

    def current_answer(self) -> Answer | None:
        """The saved answer of the case on screen (None when it has none yet)."""
        cid = self.case_id
        return None if cid is None else self.store.final_answers().get(cid)

    @property
    def can_revise(self) -> bool:
        """True when the study allows answered cases to be changed."""
        return self.store.allow_revisions

    def volumes(self) -> dict[str, Volume]:
        """The case's volumes by side ('left'/'right', or 'image'), loaded and hash-checked once per case."""
        cid = self.case_id
        if cid is None:
            return {}
        if not self._volumes:
            case = self.manifest.case(cid)
            self._volumes = {side: load_case_volume(self.bundle, f) for side, f in case.files.items()}
        return self._volumes

    # -- moving -------------------------------------------------------------------------------------
    def _show(self, position: int | None) -> None:
        self.position = position
        self._volumes = {}
        self._shown_at = self.clock() if position is not None else None
        if position is not None:
            self.store.log_event("case_shown", self.store.order[position], detail=str(position))

    def go_to_next_unanswered(self) -> None:
        """Show the first unanswered case in this reader's order (or nothing when all are done)."""
        self._show(self.store.next_position())

    def go_to(self, position: int) -> None:
        """Show an earlier, answered case again — only where the study allows revisions."""
        if not 0 <= position < self.n_cases:
            raise ReaderStudyError(f"there is no case {position + 1} (the study has {self.n_cases})")
        nxt = self.store.next_position()
        if nxt is not None and position > nxt:
            raise ReaderStudyError("cases are read in order: answer the current case first")
        if position != nxt and not self.can_revise:
            raise ReaderStudyError("this study does not allow going back to answered cases")
        self._show(position)

    def elapsed(self) -> float:
        """Seconds the case on screen has been shown (in this run of the program)."""
        return 0.0 if self._shown_at is None else max(0.0, self.clock() - self._shown_at)

    # -- answering ----------------------------------------------------------------------------------
    def answer(self, choice: str, confidence: int) -> Answer:
        """Save the answer to the case on screen (committed before this returns) and move to the next case."""
        cid = self.case_id
        if cid is None:
            raise ReaderStudyError("every case is already answered")
        saved = self.store.record(cid, choice, confidence, self.elapsed())
        self.go_to_next_unanswered()
        return saved

    def revise(self, choice: str, confidence: int, reason: str = "") -> Answer:
        """Change the saved answer of the case on screen (a new, marked row); then on to unanswered cases."""
        cid = self.case_id
        if cid is None:
            raise ReaderStudyError("no case is on screen")
        saved = self.store.revise(cid, choice, confidence, self.elapsed(), reason)
        self.go_to_next_unanswered()
        return saved

    def log_window(self, width: float, level: float, how: str = "") -> None:
        """Record a window change on the case on screen (committed with the next flush or answer)."""
        self.store.log_event("window", self.case_id, float(width), float(level), how)

    def flush(self) -> None:
        """Commit queued interface events."""
        self.store.flush()

    def close(self) -> None:
        """Save everything and close the results file."""
        self.store.log_event("session_closed", self.case_id)
        self.store.close()
