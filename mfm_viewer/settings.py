"""Persistent viewer settings (QSettings): last folder, window, layout, difference display, engine, recents.

Tests and scripts point it elsewhere with ``ViewerSettings(path)`` or the ``MFM_VIEWER_SETTINGS``
environment variable (an .ini file), so a user's own settings are never touched.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PySide6 import QtCore

from mfm_engine.intensity import DEFAULT_WINDOW
from mfm_viewer.logic.recent import push_recent

ENV_VAR = "MFM_VIEWER_SETTINGS"


class ViewerSettings:
    """Typed access to the viewer's QSettings."""

    def __init__(self, path: str | os.PathLike[str] | None = None, read_only: bool = False) -> None:
        # Read-only (scripted screenshots): values set during the run live in memory only, so the
        # user's file, window geometry and recent lists stay as they were.
        self.read_only = read_only
        self._memory: dict[str, Any] = {}
        path = path or os.environ.get(ENV_VAR)
        if path:
            self.qs = QtCore.QSettings(str(path), QtCore.QSettings.Format.IniFormat)
        else:
            self.qs = QtCore.QSettings(
                QtCore.QSettings.Format.IniFormat,
                QtCore.QSettings.Scope.UserScope,
                "MFM Studio",
                "mfm-viewer",
            )

    def value(self, key: str, default: Any = None) -> Any:
        """The raw stored value (the in-memory one first when read-only)."""
        if key in self._memory:
            return self._memory[key]
        return self.qs.value(key, default)

    def _get(self, key: str, default: Any, kind: type) -> Any:
        value = self.value(key, default)
        try:
            if kind is list:
                if value is None or value == "":
                    return []
                return [str(v) for v in (value if isinstance(value, list) else [value])]
            if kind is bool:
                return value if isinstance(value, bool) else str(value).lower() in ("true", "1", "yes")
            return kind(value)
        except (TypeError, ValueError):
            return default  # a hand-edited or old file must not stop the viewer

    def _set(self, key: str, value: Any) -> None:
        if self.read_only:
            self._memory[key] = value
        else:
            self.qs.setValue(key, value)

    # -- values -------------------------------------------------------------------------------
    @property
    def last_folder(self) -> str:
        """Folder of the last file dialog."""
        return self._get("files/last_folder", str(Path.home()), str)

    @last_folder.setter
    def last_folder(self, value: str) -> None:
        self._set("files/last_folder", value)

    @property
    def window(self) -> tuple[float, float]:
        """Last (width, level) in HU."""
        return (
            self._get("display/window_width", DEFAULT_WINDOW.width, float),
            self._get("display/window_level", DEFAULT_WINDOW.level, float),
        )

    @window.setter
    def window(self, value: tuple[float, float]) -> None:
        self._set("display/window_width", float(value[0]))
        self._set("display/window_level", float(value[1]))

    def get(self, key: str, default: Any) -> Any:
        """A value of the same type as ``default`` (layout, diff mode, engine choices…)."""
        return self._get(key, default, type(default))

    def set(self, key: str, value: Any) -> None:
        """Store a value (raw: QByteArray geometry, numbers, strings)."""
        self._set(key, value)

    def recent(self, kind: str) -> list[str]:
        """Recent 'studies' or 'checkpoints', newest first."""
        return self._get(f"recent/{kind}", [], list)

    def add_recent(self, kind: str, path: str) -> list[str]:
        """Put ``path`` first in a recent list; returns the list."""
        items = push_recent(self.recent(kind), str(path))
        self._set(f"recent/{kind}", items)
        return items

    def sync(self) -> None:
        """Write to disk now (nothing when read-only)."""
        if not self.read_only:
            self.qs.sync()
