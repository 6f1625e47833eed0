"""The `mfm` command line: a thin layer over the engine's Python API.

Each subcommand lives in its own module ``cmd_<name>.py`` in this package and defines
``register(subparsers)``, which adds its parser and sets ``func`` (args -> exit code).
Modules are discovered by name, so adding a command touches no shared file.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from mfm_engine.errors import MFMError


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every discovered subcommand."""
    parser = argparse.ArgumentParser(
        prog="mfm",
        description="MFM Studio: contrast CT ↔ synthetic native CT with Flow Matching.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("cmd_"):
            importlib.import_module(f"{__name__}.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, run, and turn engine errors into one plain line on stderr."""
    args = build_parser().parse_args(argv)
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try: a reader that left shows up here, not at exit
        return status
    except BrokenPipeError:
        return _closed_pipe()
    except MFMError as exc:
        print(f"mfm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mfm {args.command}: interrupted", file=sys.stderr)
        return 130


def _closed_pipe() -> int:
    """The reader of our output went away (`mfm info … | head -1`): stop quietly, as `cat` would.

    Python would otherwise print a traceback, and another one at exit when it flushes stdout again;
    pointing stdout at /dev/null stops the second. 128 + SIGPIPE is the shell's status for it.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 128 + 13


if __name__ == "__main__":
    sys.exit(main())
