"""Most-recently-used lists (studies, checkpoints). Qt-free."""

from __future__ import annotations


def push_recent(items: list[str], path: str, limit: int = 10) -> list[str]:
    """``path`` first, then the others without it, at most ``limit`` entries."""
    return ([path] + [p for p in items if p != path])[:limit]
