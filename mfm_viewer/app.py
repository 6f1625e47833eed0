"""``mfm-viewer [PATH] [--series UID|N] [--reference PATH] [--direction c2n|n2c] [--model CKPT|demo]
[--solver S] [--steps N] [--window PRESET] [--translate] [--screenshot FILE] [--size WxH]``.

With no PATH it opens the demo study (a phantom contrast series, its true native as reference)
and the demo model when present, and translates the demo volume at once. ``--screenshot`` renders
offscreen, writes the whole window to a PNG and exits, never waiting for a question (a folder
with several series opens its largest CT series, said on stderr) and never writing settings or
recent files; without a display and without ``--screenshot`` it says what is missing and exits 2.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import traceback
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_NO_DISPLAY = 0, 1, 2
DEMO_MODEL_LABEL = "demo (phantom-trained)"
SCREENSHOT_SIZE = (1600, 1000)
_HEADLESS = ("offscreen", "minimal")


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d{3,5})\s*[x×X]\s*(\d{3,5})\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 1920x1080")
    return int(m.group(1)), int(m.group(2))


def _steps(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 200:
        raise argparse.ArgumentTypeError(f"{value} is outside 1..200")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    from mfm_engine.intensity import ALL_WINDOW_PRESETS
    from mfm_engine.solvers import SOLVERS

    p = argparse.ArgumentParser(
        prog="mfm-viewer", description="MFM Studio viewer: contrast CT ↔ synthetic native CT."
    )
    p.add_argument(
        "path", nargs="?", help="study to open: DICOM folder or file, NIfTI, NRRD, MHA (default: the demo)"
    )
    p.add_argument(
        "--series", metavar="UID|N", help="which series of a DICOM folder: its UID (or key), or its index"
    )
    p.add_argument("--reference", metavar="PATH", help="a real reference (e.g. the native) on the same grid")
    p.add_argument(
        "--direction", choices=("c2n", "n2c"), help="c2n: contrast → native, n2c: native → contrast"
    )
    p.add_argument(
        "--model", metavar="CKPT|demo", help="model checkpoint (.safetensors with its .json), or 'demo'"
    )
    p.add_argument("--solver", choices=list(SOLVERS), help="ODE solver")
    p.add_argument("--steps", type=_steps, metavar="N", help="integration steps (1..200)")
    names = ", ".join(pr.name for pr in ALL_WINDOW_PRESETS)
    p.add_argument("--window", metavar="PRESET", help=f"window preset ({names}) or W/L such as 80/40")
    p.add_argument("--translate", action="store_true", help="translate the whole volume after opening")
    p.add_argument(
        "--screenshot", metavar="FILE.png", help="write the window to a PNG and exit (no display needed)"
    )
    p.add_argument(
        "--size", type=_size, metavar="WxH", help="window size, e.g. 1920x1080 (screenshots: 1600x1000)"
    )
    p.add_argument("--settings", metavar="FILE.ini", help="settings file to use instead of the user's")
    return p


def parse_window(text: str) -> tuple[float, float]:
    """(width, level) from a preset name or 'W/L' text; KeyError naming the known presets."""
    from mfm_engine.intensity import window_preset

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*/\s*(-?\d+(?:\.\d+)?)\s*", text)
    if m:
        return float(m.group(1)), float(m.group(2))
    preset = window_preset(text.strip())
    return preset.width, preset.level


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
    from mfm_viewer.logic.qt_libs import missing_xcb_libraries

    missing = missing_xcb_libraries()
    if missing is not None and missing.libraries:
        return (
            "mfm-viewer: no display could be opened: Qt's xcb plugin cannot load, it lacks "
            f"{', '.join(missing.libraries)}.\n"
            f"Install them ({missing.apt_command()}, or bash scripts/setup.sh as root), "
            "or render without a screen: mfm-viewer --screenshot view.png"
        )
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        why = "DISPLAY and WAYLAND_DISPLAY are unset"
    else:
        shown = os.environ.get("WAYLAND_DISPLAY") or os.environ.get("DISPLAY")
        why = f"the display {shown} refused the connection"
    return (
        f"mfm-viewer: no display could be opened ({why}).\n"
        "Run it in a desktop session, or render without a screen: mfm-viewer --screenshot view.png"
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
        window.engine.add_checkpoint(demo, label=DEMO_MODEL_LABEL, quiet=True)
    if model == "demo":
        if demo is None:
            window.report_error("No demo model", "The demo model is not in assets/demo_model/ of this copy.")
            return False
        return True
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.series is not None and not args.path:
        parser.error("--series chooses among the series of a DICOM folder: give the folder as PATH")
    if args.window:
        try:
            args.window_wl = parse_window(args.window)
        except KeyError as exc:
            parser.error(f"--window: {exc.args[0]}")
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

    # A scripted screenshot reads the settings but writes none (no recent files, no geometry).
    settings = ViewerSettings(args.settings, read_only=bool(args.screenshot))
    window = MainWindow(settings, interactive=not args.screenshot)
    previous_hook, sys.excepthook = sys.excepthook, _plain_excepthook(window)
    try:
        return _run(app, window, args)
    finally:
        sys.excepthook = previous_hook


def _run(app, window, args: argparse.Namespace) -> int:
    """Open what the command line asks for, then run the event loop or write the screenshot."""
    if args.screenshot:
        window.resize(*(args.size or SCREENSHOT_SIZE))
        window.show()
    elif args.size:
        window.resize(*args.size)
        window.show()
    else:
        window.show_first_time()
    failed = not _load_models(window, args.model)
    window.engine.set_choices(direction=args.direction, solver=args.solver, steps=args.steps)
    demo = not args.path
    if args.path:
        failed |= not window.open_study(args.path, series=args.series, direction=args.direction)
    else:
        from mfm_engine.demo import demo_study

        try:
            contrast, native = demo_study()
        except Exception as exc:  # e.g. damaged demo files: say so, keep the empty window
            window.report_error("Cannot open the demo study", f"{type(exc).__name__}: {exc}")
            failed = True
        else:
            window.set_study(contrast, reference=native, direction=args.direction)
    if args.reference and window.session is not None:
        failed |= not window.open_reference(args.reference, resample=False if args.screenshot else None)
    if args.window and window.session is not None:
        window.cursor.set_window(*args.window_wl)
    # The demo is translated at once, so that the first screen shows every pane filled.
    translate = args.translate or (
        demo and window.session is not None and window.engine.translator() is not None
    )
    if translate and window.session is not None:
        if window.engine.translate_volume():
            if args.screenshot or args.translate:
                _wait(app, lambda: not window.engine.busy, 3600)
                failed |= window.session.synthetic is None
        elif args.translate:
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
