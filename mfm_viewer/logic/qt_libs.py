"""Which system libraries Qt's xcb platform plugin lacks, and the Debian packages that hold them. Qt-free.

Found by running ``ldd`` on PySide6's ``plugins/platforms/libqxcb.so`` (without importing Qt, which
would abort when a library is missing). ``python -m mfm_viewer.logic.qt_libs`` prints the package
names (one line, nothing when none is missing); ``scripts/setup.sh`` installs them.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# Debian names a shared library's package after its soname: libNAME.so.V → libNAMEV, with a
# hyphen when NAME ends in a digit (libxkbcommon-x11.so.0 → libxkbcommon-x11-0). The exceptions
# Qt's plugin can meet, and the usual ones spelled out:
DEBIAN_PACKAGES = {
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libGLX.so.0": "libglx0",
    "libOpenGL.so.0": "libopengl0",
    "libGLdispatch.so.0": "libglvnd0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libgobject-2.0.so.0": "libglib2.0-0",
    "libpng16.so.16": "libpng16-16",
    "libz.so.1": "zlib1g",
    "libzstd.so.1": "libzstd1",
}


def debian_package(soname: str) -> str:
    """The Debian/Ubuntu package that ships a shared library, from the table or Debian's naming rule."""
    if soname in DEBIAN_PACKAGES:
        return DEBIAN_PACKAGES[soname]
    m = re.fullmatch(r"lib(.+)\.so\.(\d+)(?:\.\d+)*", soname)
    if not m:
        return soname
    name, version = m.group(1).lower(), m.group(2)
    return f"lib{name}{'-' if name[-1].isdigit() else ''}{version}"


@dataclass(frozen=True)
class MissingLibraries:
    """What the xcb plugin lacks: sonames and the packages that provide them."""

    plugin: Path
    libraries: tuple[str, ...]

    @property
    def packages(self) -> tuple[str, ...]:
        """Debian packages to install, each once, in the order first needed."""
        return tuple(dict.fromkeys(debian_package(lib) for lib in self.libraries))

    def apt_command(self) -> str:
        """The exact install line."""
        return "sudo apt-get install " + " ".join(self.packages)


def xcb_plugin() -> Path | None:
    """PySide6's libqxcb.so, or None when PySide6 (or its xcb plugin) is not installed."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        for candidate in (
            Path(root) / "Qt" / "plugins" / "platforms" / "libqxcb.so",
            Path(root) / "plugins" / "platforms" / "libqxcb.so",
        ):
            if candidate.exists():
                return candidate
    return None


def parse_ldd(text: str) -> tuple[str, ...]:
    """Sonames that ``ldd`` reports 'not found', each once, in order."""
    found = re.findall(r"^\s*(\S+)\s*=>\s*not found", text, flags=re.M)
    return tuple(dict.fromkeys(found))


def missing_xcb_libraries() -> MissingLibraries | None:
    """What libqxcb.so lacks (possibly nothing); None when it cannot be checked (no plugin, no ldd)."""
    plugin = xcb_plugin()
    ldd = shutil.which("ldd")
    if plugin is None or ldd is None or not sys.platform.startswith("linux"):
        return None
    try:
        out = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return MissingLibraries(plugin, parse_ldd(out.stdout + out.stderr))


def main() -> int:
    """Print the missing packages on one line (nothing when none is missing)."""
    missing = missing_xcb_libraries()
    if missing is None:
        print("mfm: could not check Qt's xcb plugin (PySide6 or ldd missing)", file=sys.stderr)
        return 1
    if missing.packages:
        print(" ".join(missing.packages))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
