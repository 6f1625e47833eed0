"""``mfm-viewer`` on a real X server (Xvfb), not Qt's offscreen platform: the README's first command.

It starts Xvfb, launches the viewer on the demo study through Qt's xcb plugin (the path a desktop
user takes, which needs the system libraries ``scripts/setup.sh`` installs), grabs the screen through
the X server (ImageMagick ``import``), checks that the window shows images, and quits it with Ctrl+Q
(xdotool; without it the process is terminated). Skips with
a reason where Xvfb, ImageMagick or one of Qt's xcb libraries is missing (``.ci/run`` installs them).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mfm_viewer.logic.qt_libs import missing_xcb_libraries

pytestmark = pytest.mark.gui
SHOTS = Path(__file__).parent / "_screenshots"
SCREEN = (1280, 800)
TITLE = "MFM Studio"


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (Debian package {package}); .ci/run installs it")
    return path


@pytest.fixture
def x_server():
    """A fresh Xvfb display (its number chosen by Xvfb itself); yields ':N'."""
    xvfb = _need("Xvfb", "xvfb")
    missing = missing_xcb_libraries()
    if missing is not None and missing.libraries:
        pytest.skip(f"Qt's xcb plugin lacks {', '.join(missing.libraries)}: {missing.apt_command()}")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [xvfb, "-displayfd", str(write_fd), "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24"]
        + ["-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    if not number.isdigit():
        proc.kill()
        pytest.skip("Xvfb did not start")
    try:
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _window(display: str) -> tuple[str, int, int, int, int] | None:
    """(id, x, y, width, height) of the viewer's top-level window, once it is mapped."""
    env = {**os.environ, "DISPLAY": display}
    out = subprocess.run(["xwininfo", "-root", "-tree"], env=env, capture_output=True, text=True, timeout=10)
    for line in out.stdout.splitlines():
        m = re.match(r'\s*(0x[0-9a-f]+) "([^"]*)".*?(\d+)x(\d+)\+-?\d+\+-?\d+\s+\+(-?\d+)\+(-?\d+)', line)
        if m and m.group(2).startswith(TITLE):
            w, h, x, y = (int(m.group(i)) for i in (3, 4, 5, 6))
            if w > 200 and h > 200:
                return m.group(1), x, y, w, h
    return None


def _grab(display: str, path: Path) -> np.ndarray:
    """The whole X screen as an (h, w, 3) uint8 array, grabbed through the X server."""
    from PIL import Image

    env = {**os.environ, "DISPLAY": display}
    subprocess.run(["import", "-window", "root", str(path)], env=env, check=True, timeout=30)
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _image_tiles(screen: np.ndarray, box: tuple[int, int, int, int]) -> int:
    """How many tiles of the window's view area hold a CT-like image (many grey levels, real contrast)."""
    _, x, y, w, h = box
    # The views fill the window below the menu and toolbars, left of the engine dock.
    area = screen[y + 110 : y + h - 30, x : x + int(w * 0.72)].astype(np.int32)
    grey = area.mean(axis=2)
    rows, cols = 3, 5
    th, tw = grey.shape[0] // rows, grey.shape[1] // cols
    count = 0
    for r in range(rows):
        for c in range(cols):
            tile = grey[r * th : (r + 1) * th, c * tw : (c + 1) * tw]
            if tile.std() > 15 and len(np.unique(tile.astype(np.uint8))) > 40:
                count += 1
    return count


def _press_ctrl_q(display: str, window_id: str) -> bool:
    """Focus the window and type Ctrl+Q with xdotool; False when xdotool is not installed."""
    xdotool = shutil.which("xdotool")
    if xdotool is None:
        return False
    env = {**os.environ, "DISPLAY": display}
    subprocess.run([xdotool, "windowfocus", "--sync", window_id], env=env, timeout=10, check=False)
    subprocess.run([xdotool, "key", "ctrl+q"], env=env, timeout=10, check=True)
    return True


def test_the_viewer_opens_the_demo_on_a_real_x_server(x_server, tmp_path):
    _need("import", "imagemagick")
    _need("xwininfo", "x11-utils")
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env.update(DISPLAY=x_server, MFM_VIEWER_SETTINGS=str(tmp_path / "viewer.ini"), OMP_NUM_THREADS="1")
    script = Path(sys.executable).with_name("mfm-viewer")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "mfm_viewer.app"]
    log = tmp_path / "viewer.log"
    with log.open("w") as out:
        viewer = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 45
        box, tiles, screen = None, 0, None
        while time.monotonic() < deadline and viewer.poll() is None:
            box = box or _window(x_server)
            if box is not None:
                screen = _grab(x_server, tmp_path / "screen.png")
                tiles = _image_tiles(screen, box)
                if tiles >= 3:
                    break
            time.sleep(1.0)
        assert viewer.poll() is None, f"the viewer exited with {viewer.returncode}:\n{log.read_text()}"
        assert box is not None, f"no '{TITLE}' window appeared on {x_server}:\n{log.read_text()}"
        SHOTS.mkdir(exist_ok=True)
        shutil.copy(tmp_path / "screen.png", SHOTS / "40_xvfb_demo.png")
        # A maximised (or screen-filling) window: at least 90% of the screen each way.
        assert box[3] >= 0.9 * SCREEN[0] and box[4] >= 0.9 * SCREEN[1] - 40, box
        assert tiles >= 3, f"only {tiles} view tiles show an image; see {SHOTS / '40_xvfb_demo.png'}"
        # Close it as a user would (Ctrl+Q to the focused window, typed through the X server): the
        # translation still running is cancelled and the viewer ends cleanly.
        quit_sent = _press_ctrl_q(x_server, box[0])
        if quit_sent:
            assert viewer.wait(timeout=30) == 0, log.read_text()
    finally:
        if viewer.poll() is None:
            viewer.terminate()
            try:
                viewer.wait(timeout=20)
            except subprocess.TimeoutExpired:
                viewer.kill()
                viewer.wait()
    assert "Traceback" not in log.read_text()
