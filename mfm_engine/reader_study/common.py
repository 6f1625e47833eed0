"""Shared pieces of the reader study: the error type, answer vocabularies, hashing and atomic writes."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from mfm_engine.errors import MFMError

MODES = ("paired", "single")
# What a reader may answer, per mode: paired = which side is synthetic; single = what this image is.
CHOICES: dict[str, tuple[str, str]] = {"paired": ("left", "right"), "single": ("real", "synthetic")}
CONFIDENCE_MIN, CONFIDENCE_MAX = 1, 5
QUESTIONS = {
    "paired": "One of the two volumes is synthetic. Which one?",
    "single": "Is this volume real or synthetic?",
}
# Reader ids become part of a file name; keep them to something every file system accepts.
_READER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.@-]{0,63}$")


class ReaderStudyError(MFMError):
    """A reader-study bundle, key or results file is missing, damaged, or does not belong with the others."""


def check_mode(mode: str) -> str:
    """Return ``mode`` when it is 'paired' or 'single'; otherwise raise ReaderStudyError."""
    if mode not in MODES:
        raise ReaderStudyError(f"unknown reader-study mode {mode!r}; use 'paired' or 'single'")
    return mode


def check_reader_id(reader_id: str) -> str:
    """A reader id stripped of surrounding blanks; refused when empty, too long or with odd characters."""
    rid = (reader_id or "").strip()
    if not _READER_ID.match(rid):
        raise ReaderStudyError(
            f"reader id {reader_id!r} is not usable: give 1–64 characters (letters, digits, space, _ . @ -), "
            "starting with a letter or digit"
        )
    return rid


def reader_file_stem(reader_id: str) -> str:
    """A file-name-safe form of a reader id."""
    return re.sub(r"[^A-Za-z0-9_.@-]", "_", check_reader_id(reader_id))


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def canonical_json(doc: Any) -> str:
    """JSON text with sorted keys and a trailing newline, so equal documents hash equally."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def read_json(path: Path, what: str) -> dict[str, Any]:
    """Parse a JSON object from ``path``; a missing or malformed file is a ReaderStudyError naming it."""
    if not path.is_file():
        raise ReaderStudyError(f"{path}: {what} not found")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReaderStudyError(f"{path}: cannot read the {what}: {exc}") from exc
    if not isinstance(doc, dict):
        raise ReaderStudyError(f"{path}: the {what} is not a JSON object")
    return doc
