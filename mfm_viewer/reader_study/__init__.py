"""Reader-study widgets: the reader's blinded screen and the coordinator's design dialog and results view.

The logic (design, bundle, store, session, statistics, report) is Qt-free, in ``mfm_engine.reader_study``;
these widgets only call it. Entry points for a menu:

- `open_reader_session(parent, bundle="")` — ask for bundle + reader id, then show the reading window.
- `open_design_dialog(parent, sources=())` — design a study (bundle + separate key).
- `open_results_view(parent)` — analyse bundle + key + results files; export the report.

Stand-alone: ``python -m mfm_viewer.reader_study read|design|results``.
"""

from __future__ import annotations

from typing import Any


def open_reader_session(*args: Any, **kwargs: Any):
    """See `session_window.open_reader_session`."""
    from mfm_viewer.reader_study.session_window import open_reader_session as _open

    return _open(*args, **kwargs)


def open_design_dialog(*args: Any, **kwargs: Any):
    """See `coordinator_view.open_design_dialog`."""
    from mfm_viewer.reader_study.coordinator_view import open_design_dialog as _open

    return _open(*args, **kwargs)


def open_results_view(*args: Any, **kwargs: Any):
    """See `coordinator_view.open_results_view`."""
    from mfm_viewer.reader_study.coordinator_view import open_results_view as _open

    return _open(*args, **kwargs)


__all__ = ["open_design_dialog", "open_reader_session", "open_results_view"]
