"""The 3D iodine view: its Qt-free geometry, then the pane rendering offscreen inside the main window.

Where this machine has no offscreen OpenGL the pane must show a message instead (and the test is
skipped, saying so); everywhere, turning the pane off or feeding it a bad volume leaves the rest of
the window working. Screenshots go to tests/_screenshots/.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_viewer_window import show

from mfm_engine.checkpoint import save_checkpoint
from mfm_engine.models import build_model
from mfm_engine.phantom import make_phantom_pair
from mfm_engine.volume import Volume
from mfm_viewer import view3d
from mfm_viewer.analysis_views import install
from mfm_viewer.logic.view3d_logic import (
    View3DError,
    block_mean,
    downsample_factors,
    iodine_map,
    iodine_stats,
    lps_grid,
)
from mfm_viewer.main_window import MainWindow
from mfm_viewer.settings import ViewerSettings

pytestmark = pytest.mark.gui
SHOTS = Path(__file__).parent / "_screenshots"
TINY = {"name": "timeresnet", "preset": "tiny", "attn_levels": [], "patch_size": 2}


# -- Qt- and vtk-free logic ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "direction",
    [
        np.eye(3),
        np.diag([-1.0, -1.0, 1.0]),  # stored RAS-like: x towards the right, y towards the front
        np.diag([1.0, 1.0, -1.0]),  # slices stored head first
        np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]),  # rows and columns swapped
    ],
)
def test_lps_grid_puts_every_voxel_where_the_volume_says(direction):
    rng = np.random.default_rng(0)
    vol = Volume(rng.normal(size=(4, 5, 6)), (0.7, 0.9, 2.5), (10.0, -20.0, 30.0), direction)
    grid = lps_grid(vol)
    arr = grid.array(vol.hu)  # (S, P, L)
    for ijk in [(0, 0, 0), (5, 4, 3), (2, 1, 3), (5, 0, 1)]:
        world = np.asarray(grid.world(ijk))
        np.testing.assert_allclose(world, vol.index_to_physical(ijk), atol=1e-6)
        # The same voxel sits in the rearranged array at (world − origin) / spacing.
        lps_index = np.round((world - np.asarray(grid.origin)) / np.asarray(grid.spacing)).astype(int)
        assert arr[lps_index[2], lps_index[1], lps_index[0]] == vol.hu[ijk[2], ijk[1], ijk[0]]
    assert all(s > 0 for s in grid.spacing)


def test_iodine_map_sign_follows_the_direction():
    inp = Volume(np.full((2, 3, 3), 200.0), meta={"phase": "arterial"})
    syn = inp.with_hu(np.full((2, 3, 3), 50.0), synthetic=True, provenance={"direction": "c2n"})
    assert np.all(iodine_map(inp, syn) == 150.0)
    native = Volume(np.full((2, 3, 3), 50.0))
    contrast = native.with_hu(np.full((2, 3, 3), 200.0), synthetic=True, provenance={"direction": "n2c"})
    assert np.all(iodine_map(native, contrast) == 150.0)
    with pytest.raises(View3DError):
        iodine_map(inp, Volume(np.zeros((1, 3, 3))))
    assert iodine_stats(np.array([0.0, 10.0, 100.0, 300.0]), 30.0)[0] == 2


def test_block_mean_and_factors():
    a = np.arange(4 * 6 * 9, dtype=np.float32).reshape(4, 6, 9)
    expected = a[:, :6, :8].reshape(4, 3, 2, 4, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(block_mean(a, (1, 2, 2)), expected)
    assert downsample_factors((48, 512, 512)) == (1, 4, 4)
    assert downsample_factors((300, 512, 512), max_dim=160) == (2, 4, 4)


# -- the pane -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pair():
    return make_phantom_pair(5, motion_mm=0, n_slices=10, size=96)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    return save_checkpoint(
        build_model(TINY), path, model_config=TINY, kind="flow", trained_on="untrained test"
    )


@pytest.fixture
def window(qtbot, tmp_path):
    w = MainWindow(ViewerSettings(tmp_path / "viewer.ini"))
    qtbot.addWidget(w)
    show(qtbot, w)
    yield w
    w.close()


def _views(window):
    return getattr(window, "analysis_views", None) or install(window)


def _pane(window, qtbot):
    pane = _views(window).show_3d()
    qtbot.waitUntil(lambda: pane.state != "probing", timeout=120000)
    if pane.state == "failed":
        assert pane.message.text() and pane.stack.currentIndex() == 0
        pytest.skip(f"no offscreen OpenGL here; the pane shows its message instead: {pane.message_text}")
    return pane


def _perfect_synthetic(pair) -> Volume:
    """The phantom's true native, labelled as a model output: what a perfect model would give."""
    return pair.native.with_hu(
        pair.native.hu,
        synthetic=True,
        provenance={"direction": "c2n", "model": "true native (stand-in)", "solver": "-", "steps": 0},
    )


def _shot(widget, name):
    SHOTS.mkdir(exist_ok=True)
    assert widget.grab().save(str(SHOTS / f"{name}.png"), "PNG")


def test_pane_renders_the_iodine_map_offscreen(window, qtbot, pair):
    window.set_study(pair.contrast, reference=pair.native)
    pane = _pane(window, qtbot)
    assert pane.state == "no data" and "Translate the volume first" in pane.message.text()
    assert pane.translate_button.isVisibleTo(pane)
    window.session.set_synthetic(_perfect_synthetic(pair), None)
    with qtbot.waitSignal(pane.rendered, timeout=60000):
        pane.refresh()
    assert pane.state == "ready" and pane.stack.currentIndex() == 1
    image = pane.last_image
    drawn = view3d.foreground_pixels(image)
    assert drawn > 0.02 * image.shape[0] * image.shape[1], f"only {drawn} pixels drawn"
    # Iodine is drawn red to yellow: many clearly red pixels, which the outline and background lack.
    red = (image[..., 0].astype(int) - image[..., 2].astype(int)) > 80
    assert red.sum() > 200
    assert pane.badge.text() == "SYNTHETIC" and "input − synthetic native" in pane.caption.text()
    _shot(pane, "view3d")
    _shot(window, "main_window_3d")

    # Rotation changes the picture; reset brings the front view back exactly.
    front = image.copy()
    with qtbot.waitSignal(pane.rendered, timeout=60000):
        pane.rotate(90.0, 0.0)
    assert not np.array_equal(pane.last_image, front)
    _shot(pane, "view3d_rotated")
    with qtbot.waitSignal(pane.rendered, timeout=60000):
        pane.reset_view()
    np.testing.assert_array_equal(pane.last_image, front)

    # The crosshair follows the main window's cursor.
    i, j, k = window.cursor.ijk
    with qtbot.waitSignal(pane.rendered, timeout=60000):
        window.cursor.set_ijk((i // 3, j, k))
    assert not np.array_equal(pane.last_image, front)

    # A higher threshold shows less iodine.
    with qtbot.waitSignal(pane.rendered, timeout=60000):
        pane.threshold.setValue(900)
    red_high = ((pane.last_image[..., 0].astype(int) - pane.last_image[..., 2].astype(int)) > 80).sum()
    assert red_high < red.sum()


def test_translate_button_then_render_with_a_real_model(window, qtbot, pair, ckpt):
    window.set_study(pair.contrast)
    assert window.open_checkpoint(ckpt)
    pane = _pane(window, qtbot)
    with qtbot.waitSignal(pane.rendered, timeout=120000):
        pane.translate_button.click()  # Engine ▸ Translate volume; the pane follows when it is done
    assert window.session.synthetic is not None and pane.state == "ready"
    assert "tiny" in pane.info.text()


def test_bad_volume_is_a_message_not_a_crash(window, qtbot, pair):
    window.set_study(pair.contrast)
    pane = _pane(window, qtbot)
    window.session.set_synthetic(Volume(np.zeros((2, 8, 8), np.float32), meta={"synthetic": True}), None)
    pane.refresh()
    assert pane.state == "no data" and "Cannot show this volume in 3D" in pane.message.text()
    window.session.set_synthetic(_perfect_synthetic(pair), None)
    with qtbot.waitSignal(pane.rendered, timeout=60000):
        pane.refresh()
    assert pane.state == "ready"


def test_turned_off_pane_fails_soft(window, qtbot, pair, monkeypatch):
    monkeypatch.setenv("MFM_VIEW3D", "off")
    view3d.reset_probe()
    try:
        window.set_study(pair.contrast)
        pane = _views(window).show_3d()
        qtbot.waitUntil(lambda: pane.state != "probing", timeout=30000)
        assert pane.state == "failed" and pane.renderer is None
        assert "turned off" in pane.message.text() and "rest of the viewer works" in pane.message.text()
        _shot(pane, "view3d_unavailable")
        # The rest of the window carries on.
        i, j, k = window.cursor.ijk
        window.cursor.set_ijk((i, j, (k + 1) % pair.contrast.shape[0]))
        assert window.grid.view("input", "axial").slice_index == (k + 1) % pair.contrast.shape[0]
    finally:
        view3d.reset_probe()


def test_a_crashing_opengl_is_caught_by_the_probe(window, qtbot, pair, monkeypatch):
    """vtk forced onto OSMesa: without libOSMesa the test render segfaults, in the probe's process only."""
    monkeypatch.setenv("VTK_DEFAULT_OPENGL_WINDOW", "vtkOSOpenGLRenderWindow")
    view3d.reset_probe()
    try:
        window.set_study(pair.contrast)
        pane = _views(window).show_3d()
        qtbot.waitUntil(lambda: pane.state != "probing", timeout=120000)
        if pane.state == "failed":
            assert "Offscreen OpenGL does not work here" in pane.message.text()
        else:  # OSMesa is installed here: the pane works through it
            assert pane.state == "no data" and "Translate the volume first" in pane.message.text()
        # Either way this process is alive and the window still answers.
        i, j, k = window.cursor.ijk
        window.cursor.set_ijk((i, j, (k + 1) % pair.contrast.shape[0]))
        assert window.grid.view("input", "axial").slice_index == (k + 1) % pair.contrast.shape[0]
    finally:
        view3d.reset_probe()
