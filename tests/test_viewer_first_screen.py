"""The first screen (issue 15, point 2): it fits 1280×720 and 1920×1080, every annotation reads on any
background, the demo is translated at once with progress, and idle panes say what to do."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtWidgets
from test_viewer_engine import tiny_checkpoint  # noqa: F401 (a fixture)
from test_viewer_window import SHOTS

from mfm_engine.demo import demo_checkpoint, demo_study
from mfm_viewer.app import DEMO_MODEL_LABEL, main
from mfm_viewer.main_window import MainWindow
from mfm_viewer.plane_labels import STYLES
from mfm_viewer.settings import ViewerSettings

pytestmark = pytest.mark.gui
SIZES = [(1280, 720), (1920, 1080)]


@pytest.fixture(scope="module")
def demo():
    return demo_study()


@pytest.fixture
def window(qtbot, tmp_path):
    w = MainWindow(ViewerSettings(tmp_path / "viewer.ini"))
    qtbot.addWidget(w)
    yield w
    w.close()


def _rect_in(widget: QtWidgets.QWidget, ancestor: QtWidgets.QWidget) -> QtCore.QRect:
    return QtCore.QRect(widget.mapTo(ancestor, QtCore.QPoint(0, 0)), widget.size())


def _checkpoint(tiny):
    return demo_checkpoint() or tiny


def _open_first_screen(qtbot, window, demo, size, tiny) -> None:
    contrast, native = demo
    window.resize(*size)
    window.show()
    qtbot.waitExposed(window)
    assert window.engine.add_checkpoint(_checkpoint(tiny), label=DEMO_MODEL_LABEL)
    window.set_study(contrast, reference=native)
    qtbot.waitUntil(lambda: not window.engine.preview_pending, timeout=60000)
    # Every view shows its HU readout, as when the pointer is over it: the fullest annotation state.
    for view in window.grid.views.values():
        view.set_readout("Δ -1000 HU" if view.kind == "diff" else "-1000 HU")
    for _ in range(3):
        QtWidgets.QApplication.processEvents()


@pytest.mark.parametrize(
    "display", [("three planes", "panes"), ("axial only", "overlay")], ids=lambda d: d[0]
)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_nothing_is_clipped_or_overlapping(qtbot, window, demo, size, display, tiny_checkpoint):  # noqa: F811
    bar = window.display_toolbar
    bar.layout_combo.setCurrentText(display[0])
    bar.diff_combo.setCurrentIndex(bar.diff_combo.findData(display[1]))
    _open_first_screen(qtbot, window, demo, size, tiny_checkpoint)
    grid = window.grid
    if display == ("three planes", "panes"):
        assert len(grid.specs) == 5 and len(grid.views) == 15  # input, synthetic, reference, two differences
    else:
        assert len(grid.specs) == 3 and len(grid.views) == 3  # differences drawn over input and reference
    # Toolbars: nothing folded away behind '»'.
    for bar in (window.window_toolbar, window.display_toolbar):
        ext = bar.findChild(QtWidgets.QToolButton, "qt_toolbar_ext_button")
        assert ext is None or not ext.isVisible(), f"{bar.windowTitle()} toolbar collapsed at {size}"
    # Column headers: inside the grid, apart, the whole text shown (two lines at most) or elided with
    # the whole text in the tooltip; PHANTOM and SYNTHETIC are never cut.
    grid_rect = grid.rect()
    headers = list(grid.headers.values())
    for header in headers:
        r = _rect_in(header, grid)
        assert grid_rect.contains(r), (header.full_text, r)
        assert header.toolTip() == header.full_text
        lines = header.text().split("\n")
        assert all(
            header.fontMetrics().horizontalAdvance(line) <= header.contentsRect().width() for line in lines
        )
        assert len(lines) * header.fontMetrics().height() <= header.contentsRect().height()
        for word in ("PHANTOM", "SYNTHETIC"):
            if word in header.full_text:
                assert word in header.text(), (header.full_text, header.text())
        if size == (1920, 1080):
            assert not header.elided, header.text()
    for a, b in itertools.combinations(headers, 2):
        assert not _rect_in(a, grid).intersects(_rect_in(b, grid))
    # Every annotation of every view: inside its view, none over another, the ones that matter shown.
    for (key, plane), view in grid.views.items():
        shown = view.labels.shown()
        view_rect = view.rect()
        for lab in shown:
            assert view_rect.contains(lab.geometry()), (key, plane, lab.text(), lab.geometry(), view_rect)
            # The whole text fits its label (a wrapped one grows downwards, never cut).
            need_h = lab.heightForWidth(lab.width()) if lab.wordWrap() else lab.sizeHint().height()
            assert lab.height() >= need_h, (key, plane, lab.text(), lab.height(), need_h)
            if not lab.wordWrap():
                assert lab.width() >= lab.sizeHint().width(), (key, plane, lab.text())
        for a, b in itertools.combinations(shown, 2):
            assert not a.geometry().intersects(b.geometry()), (key, plane, a.text(), b.text())
        must = [view.labels.title, view.labels.slice_info, *view.labels.letters.values()]
        if view.synthetic or view.overlay_source is not None:
            must.append(view.labels.synthetic)
        if view.show_window_text:
            must.append(view.labels.window_info)
        for lab in must:
            assert lab in shown, (key, plane, lab.text(), size)
    # The engine dock: the model's whole name is in the tooltip when the list is narrower.
    assert DEMO_MODEL_LABEL in window.engine_panel.model.toolTip()
    SHOTS.mkdir(exist_ok=True)
    name = display[0].replace(" ", "_")
    assert window.save_screenshot(SHOTS / f"41_first_screen_{size[0]}x{size[1]}_{name}.png")


def _relative_luminance(rgb) -> float:
    def channel(c: float) -> float:
        c = c / 255.0
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a, b) -> float:
    la, lb = sorted((_relative_luminance(a), _relative_luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


@pytest.mark.parametrize("kind", sorted(STYLES))
def test_every_annotation_style_has_a_backdrop_that_reads_on_white_and_black(kind):
    style = STYLES[kind]
    colour = QtGui.QColor(style.colour)
    fg = (colour.red(), colour.green(), colour.blue())
    r, g, b, a = style.backdrop
    for under in ((255, 255, 255), (0, 0, 0), (128, 128, 128)):
        alpha = a / 255.0
        backdrop = tuple(alpha * c + (1 - alpha) * u for c, u in zip((r, g, b), under, strict=True))
        assert _contrast(fg, backdrop) >= 4.5, (kind, under, _contrast(fg, backdrop))


def test_annotations_read_on_a_white_difference_map(qtbot, window, tiny_checkpoint):  # noqa: F811
    """A difference of 0 HU is drawn white: the labels there still sit on a dark backdrop."""
    from test_viewer_window import mini_study

    contrast, _ = mini_study(shape=(6, 64, 64))
    window.resize(1280, 720)
    window.show()
    qtbot.waitExposed(window)
    window.set_study(contrast)
    assert window.open_checkpoint(tiny_checkpoint)
    qtbot.waitUntil(lambda: not window.engine.preview_pending, timeout=60000)
    view = window.grid.view("diff_input", "axial")
    # Make the shown difference exactly 0 everywhere: a white image under every label.
    view.source = lambda plane, index: np.zeros(view.volume.slice(plane, index).shape, np.float32)
    view.refresh()
    view.set_readout("Δ 0 HU")
    QtWidgets.QApplication.processEvents()
    image = view.grab().toImage().convertToFormat(QtGui.QImage.Format.Format_RGB888)
    pixels = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    pixels = pixels[:, : image.width() * 3].reshape(image.height(), image.width(), 3).astype(float)
    ratio = image.width() / view.width()
    assert pixels.mean() > 150  # mostly the white map
    for lab in view.labels.shown():
        g = lab.geometry()
        box = pixels[
            int(g.top() * ratio) : int((g.bottom() + 1) * ratio),
            int(g.left() * ratio) : int((g.right() + 1) * ratio),
        ]
        luminance = box.mean(axis=2)
        # The backdrop darkens the box; the text on it is bright.
        assert np.median(luminance) < 110, (lab.text(), np.median(luminance))
        assert luminance.max() > 180, lab.text()


def test_idle_progress_says_not_translated_yet_and_counts_slices_while_translating(
    qtbot,
    window,
    tiny_checkpoint,  # noqa: F811
):
    from test_viewer_window import mini_study

    contrast, _ = mini_study(shape=(8, 48, 48))
    window.resize(1280, 720)
    window.show()
    window.set_study(contrast)
    assert window.open_checkpoint(tiny_checkpoint)
    bar = window.engine_panel.progress
    assert bar.text() == "volume not translated yet"
    coronal = window.grid.view("synthetic", "coronal")
    assert "not translated yet" in coronal.labels.placeholder.text()
    seen = []
    window.engine.progress.connect(lambda done, total: seen.append((done, total, bar.text())))
    with qtbot.waitSignal(window.engine.volume_finished, timeout=120000):
        assert window.engine.translate_volume()
        assert "/ 8 slices" in bar.text()
    assert seen and all(total == 8 and text == f"{done} / 8 slices" for done, total, text in seen)
    assert bar.text() == "translated: 8 slices"
    assert coronal.image.isVisible() and not coronal.labels.placeholder.isVisible()


def test_first_launch_translates_the_demo_and_fills_every_pane(qapp, tmp_path, monkeypatch):
    """No PATH: the demo opens and is translated at once; the screenshot shows no empty pane."""
    if demo_checkpoint() is None:
        pytest.skip("the demo model is not shipped in assets/demo_model/")
    seen = {}

    def record(self, path):
        seen["synthetic"] = self.session.synthetic is not None
        seen["placeholders"] = [
            v.labels.placeholder.text() for v in self.grid.views.values() if v.labels.placeholder.isVisible()
        ]
        seen["progress"] = self.engine_panel.progress.text()
        return QtGui.QImage(8, 8, QtGui.QImage.Format.Format_RGB32).save(str(path))

    monkeypatch.setattr(MainWindow, "save_screenshot", record)
    assert (
        main(
            [
                "--screenshot",
                str(tmp_path / "first.png"),
                "--size",
                "1280x720",
                "--settings",
                str(tmp_path / "v.ini"),
            ]
        )
        == 0
    )
    assert seen == {"synthetic": True, "placeholders": [], "progress": "translated: 48 slices"}


def test_the_window_opens_filling_the_screen(qtbot, tmp_path):
    w = MainWindow(ViewerSettings(tmp_path / "viewer.ini"))
    qtbot.addWidget(w)
    w.show_first_time()
    qtbot.waitExposed(w)
    available = w.screen().availableGeometry()
    assert w.width() >= 0.9 * available.width() and w.height() >= 0.9 * available.height()
    w.close()


def test_a_saved_geometry_too_small_for_the_screen_gives_way_to_maximised(qtbot, tmp_path):
    settings = ViewerSettings(tmp_path / "viewer.ini")
    small = MainWindow(settings)
    qtbot.addWidget(small)
    small.resize(640, 400)
    small.show()
    small.close()  # saves its geometry
    settings.sync()
    w = MainWindow(ViewerSettings(tmp_path / "viewer.ini"))
    qtbot.addWidget(w)
    w.show_first_time()
    available = w.screen().availableGeometry()
    assert w.width() >= 0.9 * available.width() and w.height() >= 0.9 * available.height()
    w.close()


def test_a_long_model_name_elides_with_its_whole_name_in_the_tooltip(qtbot):
    from mfm_viewer.engine_panel import EnginePanel

    panel = EnginePanel()
    qtbot.addWidget(panel)
    long_name = "TimeResNet paper (phantom, 124.6 M parameters, trained 2026-11-30, best.safetensors)"
    panel.set_models([(long_name, "/models/best.safetensors")], "/models/best.safetensors")
    panel.resize(260, 500)
    panel.show()
    qtbot.waitExposed(panel)
    shown = panel.model.shown_text()
    assert shown.endswith("…") and len(shown) < len(long_name)
    assert long_name in panel.model.toolTip() and "/models/best.safetensors" in panel.model.toolTip()
