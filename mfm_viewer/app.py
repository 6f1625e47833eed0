"""``mfm-viewer [PATH] [--reference PATH] [--model CKPT] [--translate] [--screenshot FILE.png]``.

With no PATH it opens the demo study (a phantom contrast series, its true native as reference)
and the demo model when present. ``--screenshot`` renders offscreen, writes the whole window to
a PNG and exits; without a display and without ``--screenshot`` it says so and exits 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_NO_DISPLAY = 0, 1, 2
_HEADLESS = ("offscreen", "minimal")


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="mfm-viewer", description="MFM Studio viewer: contrast CT ↔ synthetic native CT."
    )
    p.add_argument(
        "path", nargs="?", help="study to open: DICOM folder or file, NIfTI, NRRD, MHA (default: the demo)"
    )
    p.add_argument("--reference", metavar="PATH", help="a real reference (e.g. the native) on the same grid")
    p.add_argument("--model", metavar="CKPT", help="model checkpoint (.safetensors with its .json)")
    p.add_argument("--translate", action="store_true", help="translate the whole volume after opening")
    p.add_argument(
        "--screenshot", metavar="FILE.png", help="write the window to a PNG and exit (no display needed)"
    )
    p.add_argument("--settings", metavar="FILE.ini", help="settings file to use instead of the user's")
    return p


def _choose_platform(screenshot: bool) -> bool:
    """Pick the Qt platform before QApplication exists; True when the user forced one."""
    if os.environ.get("QT_QPA_PLATFORM"):
        return True
    if screenshot:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    elif sys.platform.startswith("linux"):
        # Qt tries these in order; ending with offscreen lets us notice "no display" instead of aborting.
        native = "wayland;xcb" if os.environ.get("WAYLAND_DISPLAY") else "xcb"
        os.environ["QT_QPA_PLATFORM"] = f"{native};offscreen"
    return False


def _no_display_message() -> str:
    return (
        "mfm-viewer: no display could be opened (DISPLAY / WAYLAND_DISPLAY unset, or Qt's xcb plugin is "
        "missing a system library such as libxcb-cursor0).\n"
        "Run it in a desktop session, install the missing library (sudo apt-get install libxcb-cursor0), "
        "or render without a screen: mfm-viewer --screenshot view.png"
    )


def _wait(app, condition, timeout_s: float) -> bool:
    """Process events until ``condition()`` or the timeout; True when it held."""
    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > end:
            return False
        app.processEvents()
        time.sleep(0.01)
    return True


def _load_models(window, model: str | None) -> bool:
    """The demo model (when shipped), then ``--model`` or the last used one; False when ``--model`` failed."""
    from mfm_engine.demo import demo_checkpoint

    demo = demo_checkpoint()
    if demo is not None:
        window.engine.add_checkpoint(demo, label="demo model (phantom-trained)", quiet=True)
    if model:
        return window.open_checkpoint(model)
    saved = window.settings.get("engine/model", "")
    if saved and Path(saved).exists() and (demo is None or Path(saved).resolve() != Path(demo).resolve()):
        window.engine.add_checkpoint(saved, quiet=True)
    return True


def _plain_excepthook(window):
    """An unexpected error in a slot: details on the terminal, plain words in a dialog."""

    def hook(exc_type, exc, tb) -> None:
        traceback.print_exception(exc_type, exc, tb)
        window.report_error(
            "Unexpected error",
            f"Something went wrong: {exc_type.__name__}: {exc}\n"
            "The open study is unchanged. Details were printed on the terminal, for a bug report.",
        )

    return hook


def main(argv: list[str] | None = None) -> int:
    """Run the viewer; returns the process exit code."""
    args = build_parser().parse_args(argv)
    forced = _choose_platform(bool(args.screenshot))
    from PySide6 import QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([sys.argv[0]])
    if app.platformName() in _HEADLESS and not args.screenshot and not forced:
        print(_no_display_message(), file=sys.stderr)
        return EXIT_NO_DISPLAY
    app.setApplicationName("mfm-viewer")
    app.setOrganizationName("MFM Studio")

    from mfm_viewer.main_window import MainWindow
    from mfm_viewer.settings import ViewerSettings

    window = MainWindow(ViewerSettings(args.settings))
    previous_hook, sys.excepthook = sys.excepthook, _plain_excepthook(window)
    try:
        return _run(app, window, args)
    finally:
        sys.excepthook = previous_hook


def _run(app, window, args: argparse.Namespace) -> int:
    """Open what the command line asks for, then run the event loop or write the screenshot."""
    if args.screenshot:
        window.resize(1600, 1000)
    window.show()
    failed = not _load_models(window, args.model)
    if args.path:
        failed |= not window.open_study(args.path)
    else:
        from mfm_engine.demo import demo_study

        try:
            contrast, native = demo_study()
        except Exception as exc:  # e.g. damaged demo files: say so, keep the empty window
            window.report_error("Cannot open the demo study", f"{type(exc).__name__}: {exc}")
            failed = True
        else:
            window.set_study(contrast, reference=native)
    if args.reference and window.session is not None:
        failed |= not window.open_reference(args.reference, resample=False if args.screenshot else None)
    if args.translate and window.session is not None:
        if window.engine.translate_volume():
            _wait(app, lambda: not window.engine.busy, 3600)
            failed |= window.session.synthetic is None
        else:
            window.report_error("Cannot translate", "No model is loaded: open one with --model CKPT.")
            failed = True
    if not args.screenshot:
        return app.exec()
    _wait(app, lambda: not window.engine.preview_pending, 120)
    # Volume metrics are computed in background threads after a translation: show them, not "—".
    _wait(app, lambda: not window.engine.metrics_pending, 120)
    for _ in range(5):
        app.processEvents()
    ok = window.save_screenshot(args.screenshot)
    if window.last_message is not None:
        print(f"mfm-viewer: {window.last_message.text()}", file=sys.stderr)
    window.close()
    if not ok:
        return EXIT_FAILED
    print(f"wrote {args.screenshot}")
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
