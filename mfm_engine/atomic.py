"""Atomic text files: written under a temporary name, fsynced, then renamed into place.

An interrupted write never leaves a file that looks complete; readers see the old file or the new
one. Used by the reader study, the PACS settings and the training module's caches and reports.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 text to ``path`` (its folder created as needed) via a unique temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
