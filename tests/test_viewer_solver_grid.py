"""The solver comparison view, offscreen, on a phantom study with a tiny (untrained) checkpoint.

Each tile must show exactly what the engine gives when called directly (Translator + metrics.compare
in the reference's body mask); the crosshair drives the slice; stale requests are dropped; Cancel
stops after the running tile; differences and the disagreement map are the numpy arithmetic.
Screenshots go to tests/_screenshots/ for a human to look at.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6 import QtCore, QtGui
from test_viewer_window import show

from mfm_engine.checkpoint import save_checkpoint
from mfm_engine.compare import Setting
from mfm_engine.metrics import body_mask, compare
from mfm_engine.models import build_model
from mfm_engine.phantom import make_phantom_pair
from mfm_engine.translate import Translator
from mfm_viewer.analysis_views import install
from mfm_viewer.logic.orientation import orientation_for
from mfm_viewer.logic.solver_grid_logic import (
    ResultCache,
    TileResult,
    TileSpec,
    diverging_rgb,
    grey_rgb,
    grid_shape,
    plan_tiles,
    run_order,
    spread,
    spread_overlay_rgb,
)
from mfm_viewer.main_window import MainWindow
from mfm_viewer.settings import ViewerSettings
from mfm_viewer.workers import ENGINE_LOCK

pytestmark = pytest.mark.gui
SHOTS = Path(__file__).parent / "_screenshots"
TINY = {"name": "timeresnet", "preset": "tiny", "attn_levels": [], "patch_size": 2}
GRID = "euler:1,euler:2,heun:1,rk4:1,adams:3"


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: a 64² tiny network runs much faster than with threads fighting other jobs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _checkpoint(path, seed):
    torch.manual_seed(seed)
    return save_checkpoint(
        build_model(TINY), path, model_config=TINY, kind="flow", trained_on="untrained test"
    )


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_a", 0)


@pytest.fixture(scope="module")
def ckpt_b(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_b", 1)


@pytest.fixture(scope="module")
def pair():
    return make_phantom_pair(11, motion_mm=0, n_slices=4, size=64)


@pytest.fixture
def window(qtbot, tmp_path):
    w = MainWindow(ViewerSettings(tmp_path / "viewer.ini"))
    qtbot.addWidget(w)
    show(qtbot, w)
    yield w
    w.close()


def _views(window):
    return getattr(window, "analysis_views", None) or install(window)


def _open(window, qtbot, pair, ckpt, reference=True, settings=GRID):
    window.set_study(pair.contrast, reference=pair.native if reference else None)
    assert window.open_checkpoint(ckpt)
    grid = _views(window).show_solver_grid()
    qtbot.addWidget(grid)
    grid.resize(1500, 1000)
    assert grid.set_settings(settings)
    _wait(qtbot, grid)
    return grid


def _wait(qtbot, grid):
    qtbot.waitUntil(lambda: grid.finished and len(grid.results) == len(grid.specs), timeout=60000)


def _shot(widget, name):
    SHOTS.mkdir(exist_ok=True)
    path = SHOTS / f"{name}.png"
    assert widget.grab().save(str(path), "PNG")
    return path


def _pixels(image: QtGui.QImage) -> np.ndarray:
    img = image.convertToFormat(QtGui.QImage.Format.Format_RGB888)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    return np.frombuffer(img.constBits(), np.uint8).reshape(h, bpl)[:, : 3 * w].reshape(h, w, 3).copy()


# -- Qt-free logic ------------------------------------------------------------------------------
def test_logic_plan_order_cache_and_pixels():
    settings = [Setting("dopri5"), Setting("rk4", 2), Setting("euler", 1), Setting("heun", 1)]
    specs = plan_tiles("solvers", settings, [("A", "a"), ("B", "b")], "a", "c2n")
    assert [s.model_id for s in specs] == ["a"] * 4
    assert [specs[i].setting for i in run_order(specs)] == [
        Setting("euler", 1),
        Setting("heun", 1),
        Setting("rk4", 2),
        Setting("dopri5"),
    ]
    both = plan_tiles("checkpoints", settings[:1], [("A", "a"), ("B", "b")], "a", "n2c")
    assert [(s.model_label, s.direction) for s in both] == [("A", "n2c"), ("B", "n2c")]
    assert plan_tiles("solvers", settings, [], None, "c2n") == []
    cache = ResultCache(max_items=2)
    for k in range(3):
        cache.put(TileResult(specs[0], k, np.zeros((2, 2), np.float32), 1, 0.1))
    assert len(cache) == 2 and cache.get(specs[0], 0) is None and cache.get(specs[0], 2) is not None
    assert grid_shape(13, 1.0, 1600, 600, extra_h=60) == (2, 7)
    assert grid_shape(1, 1.0, 100, 100) == (1, 1)
    d = diverging_rgb(np.array([[-300.0, 0.0, 300.0]]), 200.0)
    assert (
        np.abs(d[0, 1].astype(int) - 247).max() <= 3 and d[0, 0, 2] > d[0, 0, 0] and d[0, 2, 0] > d[0, 2, 2]
    )
    grey = grey_rgb(np.array([[-200.0, 40.0, 300.0]]), (-160.0, 240.0))
    assert grey[0, :, 0].tolist() == [0, 128, 255]
    over = spread_overlay_rgb(grey, np.array([[0.0, 0.0, 50.0]]), 50.0)
    assert np.array_equal(over[0, :2], grey[0, :2]) and not np.array_equal(over[0, 2], grey[0, 2])


def test_spread_is_numpy_max_minus_min():
    rng = np.random.default_rng(1)
    spec = TileSpec("a", "A", "c2n", Setting("euler"))
    results = [TileResult(spec, 0, rng.normal(0, 50, (5, 6)).astype(np.float32), 1, 0.0) for _ in range(3)]
    np.testing.assert_allclose(spread(results), np.ptp(np.stack([r.hu for r in results]), axis=0), atol=1e-4)
    assert spread(results[:1]) is None


# -- the widget against the engine --------------------------------------------------------------
def test_tiles_match_the_engine_and_follow_the_crosshair(window, qtbot, pair, ckpt, tmp_path):
    grid = _open(window, qtbot, pair, ckpt)
    direct = Translator.from_checkpoint(ckpt, device="cpu")
    k = window.cursor.ijk[2]
    assert grid.index == k
    assert [s.setting.token for s in grid.specs] == GRID.split(",")
    ref = pair.native.hu[k]
    mask = body_mask(ref)
    for spec in grid.specs:
        result = grid.results[spec]
        expected = direct.translate_slice(
            pair.contrast.hu[k], solver=spec.setting.solver, steps=spec.setting.steps
        )
        np.testing.assert_allclose(result.hu, expected.hu, atol=1e-3)
        assert result.nfe == expected.nfe
        values = compare(expected.hu, ref, mask)
        for name in ("mae_hu", "ssim", "psnr_db"):
            assert result.metrics[name] == pytest.approx(values[name], rel=1e-4, abs=1e-4)
        tile = grid.tiles[spec]
        assert tile.synthetic and tile.cost_text.startswith(f"NFE {expected.nfe} · ")
        assert f"PSNR {values['psnr_db']:.1f} dB" in tile.cost_text
        assert tile.metrics_text == f"MAE {values['mae_hu']:.1f} HU · SSIM {values['ssim']:.3f}"
        # The grey image is the tile's own HU in the shared display window.
        o = orientation_for(pair.contrast, "axial")
        np.testing.assert_array_equal(
            _pixels(tile.image), grey_rgb(o.display(result.hu), window.cursor.levels)
        )
    assert not grid.tiles["input"].synthetic and grid.tiles["spread"].synthetic
    assert grid.table.rowCount() == len(grid.specs)
    assert grid.table.item(3, 1).text() == "rk4" and grid.table.item(3, 3).text() == "4"
    series = grid.plot_series
    assert sorted(series) == ["adams", "euler", "heun", "rk4"]
    assert [p[0] for p in series["euler"]] == [1, 2]
    _shot(grid, "solver_grid")

    # The main window's crosshair drives the slice.
    k2 = (k + 1) % pair.contrast.shape[0]
    i, j, _ = window.cursor.ijk
    window.cursor.set_ijk((i, j, k2))
    _wait(qtbot, grid)
    assert grid.index == k2 and {r.index for r in grid.results.values()} == {k2}
    expected = direct.translate_slice(pair.contrast.hu[k2], solver="heun", steps=1)
    heun = next(s for s in grid.specs if s.setting == Setting("heun", 1))
    np.testing.assert_allclose(grid.results[heun].hu, expected.hu, atol=1e-3)
    # Back to the first slice: every tile comes from the cache at once.
    window.cursor.set_ijk((i, j, k))
    assert grid.finished and len(grid.results) == len(grid.specs)

    # Text still being typed in the settings box starts nothing until it is entered.
    grid.settings_edit.setText("euler:7")
    grid.refresh(force=True)
    assert [s.setting.token for s in grid.specs] == GRID.split(",") and grid.finished

    # Export: CSV and Markdown tables of the tiles, PNG of the grid.
    table = grid.export_table(tmp_path / "grid.csv")
    with table.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["solver"] for r in rows] == [s.setting.solver for s in grid.specs]
    assert float(rows[0]["mae_hu"]) == pytest.approx(grid.results[grid.specs[0]].metrics["mae_hu"], abs=1e-3)
    md = grid.export_table(tmp_path / "grid.md").read_text()
    assert md.startswith("| solver | steps | NFE |") and md.count("\n") == 2 + len(grid.specs)
    png = tmp_path / "grid.png"
    assert grid.export_png(png)
    assert QtGui.QImage(str(png)).width() > 500


def test_difference_mode_and_disagreement_map(window, qtbot, pair, ckpt):
    grid = _open(window, qtbot, pair, ckpt)
    grid.set_diff_mode(True)
    assert grid.colorbar.isVisible()
    k = grid.index
    o = orientation_for(pair.contrast, "axial")
    ref = pair.native.hu[k]
    diffs = [grid.results[s].hu - ref for s in grid.specs]
    rng = grid.colorbar.range_hu
    assert rng >= 10
    for spec, diff in zip(grid.specs, diffs, strict=True):
        tile = grid.tiles[spec]
        np.testing.assert_array_equal(_pixels(tile.image), diverging_rgb(o.display(diff), rng))
        assert tile.note == "Δ vs reference"
    # The disagreement tile: max − min of the tiles over the grey input.
    hus = np.stack([grid.results[s].hu for s in grid.specs])
    spread_hu = np.ptp(hus, axis=0)
    expected = spread_overlay_rgb(
        grey_rgb(o.display(pair.contrast.hu[k]), window.cursor.levels),
        o.display(spread_hu),
        grid.spreadbar.range_hu,
    )
    np.testing.assert_array_equal(_pixels(grid.tiles["spread"].image), expected)
    _shot(grid, "solver_grid_difference")
    grid.set_diff_mode(False)
    assert not grid.colorbar.isVisible()


def test_without_reference_differences_go_to_the_most_accurate_setting(window, qtbot, pair, ckpt):
    grid = _open(window, qtbot, pair, ckpt, reference=False, settings="euler:1,heun:1,rk4:1")
    assert "reference" not in grid.tiles
    base = next(s for s in grid.specs if s.setting == Setting("rk4", 1))
    for spec in grid.specs:
        assert grid.results[spec].metrics is None
        assert grid.tiles[spec].metrics_text == "no reference: no metrics"
    grid.set_diff_mode(True)
    assert grid.tiles[base].note == "difference base"
    euler = grid.specs[0]
    o = orientation_for(pair.contrast, "axial")
    diff = grid.results[euler].hu - grid.results[base].hu
    np.testing.assert_array_equal(
        _pixels(grid.tiles[euler].image), diverging_rgb(o.display(diff), grid.colorbar.range_hu)
    )
    assert grid.plot.getPlotItem().getAxis("left").labelText == "MAE vs most accurate setting (HU)"
    _shot(grid, "solver_grid_no_reference")


def test_stale_slices_are_dropped_and_cancel_stops(window, qtbot, pair, ckpt):
    grid = _open(window, qtbot, pair, ckpt, settings="euler:1")
    i, j, k = window.cursor.ijk
    others = [n for n in range(pair.contrast.shape[0]) if n != k]
    with ENGINE_LOCK:  # the worker blocks in its first tile: requests pile up behind it
        assert grid.set_settings("euler:1,euler:2,heun:1")
        for n in others:
            window.cursor.set_ijk((i, j, n))
    _wait(qtbot, grid)
    assert grid.index == others[-1] and {r.index for r in grid.results.values()} == {others[-1]}
    assert grid.worker.dropped >= 1
    skipped = others[1:-1]
    assert all(grid.cache.get(s, n) is None for s in grid.specs for n in skipped)

    with ENGINE_LOCK:
        assert grid.set_settings("euler:3,euler:4,euler:5,heun:2")
        grid.cancel()
    qtbot.waitUntil(lambda: grid.finished, timeout=60000)
    assert len(grid.results) <= 1
    assert "Cancelled" in grid.status.text()
    assert any(t.status == "cancelled" for s, t in grid.tiles.items() if isinstance(s, TileSpec))
    grid.rerun_button.click()
    _wait(qtbot, grid)
    assert len(grid.results) == 4


def test_checkpoint_comparison_and_tile_click(window, qtbot, pair, ckpt, ckpt_b, tmp_path):
    grid = _open(window, qtbot, pair, ckpt, settings="euler:1")
    assert window.open_checkpoint(ckpt_b)
    grid.set_mode("checkpoints")
    assert grid.set_settings("euler:1")
    _wait(qtbot, grid)
    assert len(grid.specs) == 2 and grid.specs[0].model_id != grid.specs[1].model_id
    k = grid.index
    for spec, path in zip(grid.specs, (ckpt, ckpt_b), strict=True):
        expected = Translator.from_checkpoint(path, device="cpu").translate_slice(pair.contrast.hu[k])
        np.testing.assert_allclose(grid.results[spec].hu, expected.hu, atol=1e-3)
        assert grid.tiles[spec].title.startswith(spec.model_label)
    assert not grid.table.isColumnHidden(0)
    # A regression baseline joins the comparison: one pass, whatever the solver setting.
    torch.manual_seed(3)
    reg = save_checkpoint(
        build_model(TINY),
        tmp_path / "reg",
        model_config=TINY,
        kind="regression",
        trained_on="test",
        direction="c2n",
    )
    assert window.open_checkpoint(reg)
    _wait(qtbot, grid)
    assert len(grid.specs) == 3
    baseline = grid.results[grid.specs[2]]
    assert (baseline.nfe, baseline.label, baseline.row().solver) == (1, "single pass", "single pass")
    assert grid.tiles[grid.specs[2]].title.endswith("· single pass")
    _shot(grid, "solver_grid_checkpoints")
    # A click on a tile moves the shared crosshair to that pixel.
    tile = grid.tiles[grid.specs[0]]
    rect = tile.image_rect()
    o = orientation_for(pair.contrast, "axial")
    n_v, n_h = o.display_shape(pair.contrast.shape[::-1])
    row, col = int(0.75 * n_v), int(0.25 * n_h)
    x = rect.left() + (col + 0.5) * rect.width() / n_h
    y = rect.top() + (row + 0.5) * rect.height() / n_v
    before = window.cursor.ijk
    qtbot.mouseClick(tile, QtCore.Qt.MouseButton.LeftButton, pos=QtCore.QPoint(round(x), round(y)))
    assert window.cursor.ijk == o.display_to_ijk(row, col, before, pair.contrast.shape[::-1])
