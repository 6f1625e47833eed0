"""The one cancel-flag convention of long work (translation, study design, PACS retrieves)."""

from __future__ import annotations

import threading
from collections.abc import Callable

#: A threading.Event, or a callable answering "stop now?"; None never cancels.
CancelFlag = threading.Event | Callable[[], bool] | None


def is_cancelled(flag: CancelFlag) -> bool:
    """True when a cancel flag (an Event or a callable) is set."""
    if flag is None:
        return False
    if isinstance(flag, threading.Event):
        return flag.is_set()
    return bool(flag())
