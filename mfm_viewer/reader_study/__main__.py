"""``python -m mfm_viewer.reader_study read [BUNDLE] | design | results``: the reader-study windows."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Open the reading window, the design dialog or the results view; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m mfm_viewer.reader_study", description="MFM Studio reader-study windows."
    )
    sub = parser.add_subparsers(dest="what", required=True)
    read = sub.add_parser("read", help="read a study as a reader (blinded)")
    read.add_argument("bundle", nargs="?", default="", help="the study folder you were given")
    sub.add_parser("design", help="design a study (coordinator)")
    results = sub.add_parser("results", help="analyse the readers' answers (coordinator)")
    results.add_argument("--bundle", default="")
    results.add_argument("--key", default="")
    results.add_argument("results", nargs="*", help="results .sqlite files")
    args = parser.parse_args(argv)

    from PySide6 import QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([sys.argv[0]])
    app.setApplicationName("mfm-reader-study")
    if args.what == "read":
        from mfm_viewer.reader_study.session_window import open_reader_session

        window = open_reader_session(None, args.bundle)
        if window is None:
            return 0
    elif args.what == "design":
        from mfm_viewer.reader_study.coordinator_view import DesignDialog

        return 0 if DesignDialog().exec() else 0
    else:
        from mfm_viewer.reader_study.coordinator_view import ResultsView

        window = ResultsView()
        if args.results:
            window.load(args.bundle, args.key, args.results)
        else:
            window.set_inputs(args.bundle, args.key, [])
        window.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
