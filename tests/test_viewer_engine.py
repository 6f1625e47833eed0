"""The main window with a real (tiny, untrained) checkpoint: live preview, cache, volume, cancel, export.

The model is untrained, so its HU mean nothing; what is checked is that the viewer shows exactly
what the engine computes, at the right place, and that threads start, stop and cancel cleanly.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import SimpleITK as sitk
from PySide6 import QtCore
from test_viewer_window import mini_study, shot, show

from mfm_engine.checkpoint import save_checkpoint
from mfm_engine.io.study import read_study
from mfm_engine.metrics import body_mask, compare
from mfm_engine.models import build_model
from mfm_engine.translate import Translator
from mfm_viewer.main_window import MainWindow
from mfm_viewer.settings import ViewerSettings
from mfm_viewer.workers import ENGINE_LOCK

pytestmark = pytest.mark.gui
# Small and without attention, so a 64² slice takes milliseconds on a CPU.
TINY = {"name": "timeresnet", "preset": "tiny", "attn_levels": [], "patch_size": 2}


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny_flow"
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


def _study(n_slices=8):
    contrast, labels = mini_study(shape=(n_slices, 64, 64))
    native, _ = mini_study(shape=(n_slices, 64, 64), phase="native")
    return contrast, native, labels


def _wait_preview(qtbot, window):
    qtbot.waitUntil(lambda: not window.engine.preview_pending, timeout=60000)


def _wait_volume(qtbot, window):
    qtbot.waitUntil(lambda: not window.engine.busy, timeout=120000)


def test_live_preview_shows_the_engine_result_and_is_cached(window, qtbot, tiny_checkpoint):
    contrast, native, labels = _study()
    window.set_study(contrast, reference=native)
    assert window.engine_panel.preview_status.text() == "no model loaded"
    assert window.open_checkpoint(tiny_checkpoint)
    translator = window.engine.translator()
    assert window.engine_panel.device.text() == str(translator.device)  # "cpu", or "cuda:0" on a GPU
    _wait_preview(qtbot, window)
    k = window.cursor.ijk[2]
    # The same checkpoint on the same device, called directly (the GUI worker is idle now).
    expected = Translator.from_checkpoint(tiny_checkpoint, device=str(translator.device)).translate_slice(
        contrast.hu[k], direction="c2n", solver="euler", steps=1
    )
    view = window.grid.view("synthetic", "axial")
    tol = 1e-3 if translator.device.type == "cpu" else 2.0  # GPU autocast may round differently
    np.testing.assert_allclose(view.image.image, expected.hu, atol=tol)
    shown = view.image.image  # LPS identity: the axial view is the array as it is
    assert view.labels.synthetic.isVisible() and view.labels.synthetic.text() == "SYNTHETIC"
    assert window.engine_panel.preview_status.text().startswith("NFE 1 ·")
    # The HU readout under the aorta is the synthetic value there, for every pane.
    j, i = (int(v) for v in np.round(np.argwhere(labels["aorta"][k]).mean(axis=0)))
    values = window.grid.readouts((i, j, k))
    assert values["synthetic"] == pytest.approx(float(shown[j, i]), abs=1e-3)
    assert values["input"] == 300.0 and values["reference"] == 40.0
    assert values["diff_input"] == pytest.approx(float(shown[j, i]) - 300.0, abs=1e-3)
    # Slice metrics against the reference, in its body mask.
    ref = native.hu[k]
    want = compare(shown, ref, body_mask(ref))
    assert window.engine_panel.metrics_text("slice")[0] == f"{want['mae_hu']:.1f} HU"
    shot(window, "10_live_preview")

    # Heun takes two evaluations per step: a new preview, then back to Euler comes from the cache.
    window.engine_panel.solver.setCurrentText("heun")
    window.engine_panel.steps.setValue(2)
    _wait_preview(qtbot, window)
    assert window.engine_panel.preview_status.text().startswith("NFE 4 ·")
    window.engine_panel.solver.setCurrentText("euler")
    window.engine_panel.steps.setValue(1)
    assert not window.engine.preview_pending
    assert window.engine_panel.preview_status.text().endswith("(cached)")
    np.testing.assert_array_equal(view.image.image, shown)

    # Native → contrast is the same field integrated the other way: a different image.
    window.engine_panel.direction.setCurrentIndex(window.engine_panel.direction.findData("n2c"))
    _wait_preview(qtbot, window)
    assert window.grid.headers["synthetic"].text().startswith("SYNTHETIC contrast")
    view = window.grid.view("synthetic", "axial")  # the column was rebuilt with its new title
    assert not np.allclose(view.image.image, shown, atol=1.0)


def test_translate_volume_fills_every_plane_and_exports_dicom(window, qtbot, tiny_checkpoint, tmp_path):
    contrast, native, _ = _study()
    window.set_study(contrast, reference=native)
    assert window.open_checkpoint(tiny_checkpoint)
    coronal = window.grid.view("synthetic", "coronal")
    assert coronal.image.isVisible() is False and coronal.labels.placeholder.isVisible()
    with qtbot.waitSignal(window.engine.volume_finished, timeout=120000) as outcome:
        assert window.engine.translate_volume()
    assert outcome.args == ["done"]
    syn = window.session.synthetic
    assert syn.is_synthetic and syn.meta["provenance"]["solver"] == "euler"
    device = str(window.engine.translator().device)
    expected = Translator.from_checkpoint(tiny_checkpoint, device=device).translate_volume(contrast)
    # fp32 on a CPU is bit-stable; GPU autocast (bf16) may round differently between runs.
    np.testing.assert_allclose(syn.hu, expected.hu, atol=1e-3 if device == "cpu" else 2.0)
    assert window.engine_panel.progress.value() == contrast.shape[0]
    assert coronal.image.isVisible()
    np.testing.assert_allclose(coronal.image.image, syn.hu[::-1, window.cursor.ijk[1], :], atol=1e-3)
    qtbot.waitUntil(lambda: window.engine_panel.metrics_text("volume")[0] not in ("—", "…"), timeout=60000)
    want = compare(syn, native, body_mask(native))
    assert window.engine_panel.metrics_text("volume") == (
        f"{want['mae_hu']:.1f} HU",
        f"{want['ssim']:.3f}",
        f"{want['psnr_db']:.1f} dB",
    )
    shot(window, "11_volume_translated")

    # Differences as an overlay on the grey images, with the colour bar.
    toolbar = window.display_toolbar
    toolbar.diff_combo.setCurrentIndex(toolbar.diff_combo.findData("overlay"))
    toolbar.range_spin.setValue(300)
    axial = window.grid.view("input", "axial")
    assert axial.overlay.isVisible() and window.grid.colorbar.isVisible()
    k = window.cursor.ijk[2]
    # (the axial synthetic slice is the cached preview: batch arithmetic differs in the last bits;
    # differences take both images from -1000 HU up, the models' range)
    np.testing.assert_allclose(
        axial.overlay.image,
        np.maximum(syn.hu[k], -1000) - np.maximum(contrast.hu[k], -1000),
        atol=1e-2 if device == "cpu" else 4.0,
    )
    assert tuple(axial.overlay.levels) == (-300.0, 300.0)
    assert axial.labels.synthetic.isVisible() and axial.labels.synthetic.text() == "SYNTHETIC Δ overlay"
    assert "diff_input" not in {key for key, _ in window.grid.views}
    shot(window, "13_difference_overlay")

    # Export as DICOM and read it back (our reader and SimpleITK's).
    folder = tmp_path / "synthetic_dicom"
    assert window.export_synthetic(folder, "dicom")
    back = read_study(folder)
    assert back.shape == syn.shape and back.is_synthetic
    np.testing.assert_allclose(back.hu, syn.hu, atol=1.0)  # stored as whole HU
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    np.testing.assert_allclose(sitk.GetArrayFromImage(reader.Execute()), back.hu, atol=1.0)
    import pydicom

    first = pydicom.dcmread(sorted(folder.glob("*.dcm"))[0])
    assert "DERIVED" in first.ImageType and first.SeriesDescription.upper().startswith("SYNTHETIC")
    nifti = window.export_synthetic(tmp_path / "synthetic.nii.gz", "nifti")
    np.testing.assert_allclose(sitk.GetArrayFromImage(sitk.ReadImage(str(nifti))), syn.hu, atol=1.0)


def _start_blocked(window):
    """Start a volume translation while the engine is held, so the test decides when it may run."""
    ENGINE_LOCK.acquire()
    try:
        assert window.engine.translate_volume()
        assert window.engine.busy and window.engine_panel.cancel_button.isEnabled()
    except BaseException:
        ENGINE_LOCK.release()
        raise
    return window.engine.volume_worker


def test_cancel_mid_volume(window, qtbot, tiny_checkpoint):
    contrast, _, _ = _study(n_slices=24)
    window.set_study(contrast)
    assert window.open_checkpoint(tiny_checkpoint)
    _wait_preview(qtbot, window)
    worker = _start_blocked(window)
    seen = []

    def cancel_after_first_batch(done, total):  # runs in the worker thread, before its next batch
        seen.append(done)
        if done > 0:
            worker.cancel()

    worker.progress.connect(cancel_after_first_batch, QtCore.Qt.ConnectionType.DirectConnection)
    with qtbot.waitSignal(window.engine.volume_finished, timeout=60000) as outcome:
        ENGINE_LOCK.release()
    assert outcome.args == ["cancelled"]
    assert 0 < max(seen) < contrast.shape[0]
    assert window.session.synthetic is None and not window.engine.busy
    assert window.engine_panel.translate_button.isEnabled()
    assert "cancelled" in window.engine_panel.volume_status.text().lower()
    shot(window, "12_cancelled")


def test_opening_another_study_or_closing_cancels_translation(window, qtbot, tiny_checkpoint):
    contrast, _, _ = _study()
    window.set_study(contrast)
    assert window.open_checkpoint(tiny_checkpoint)
    _start_blocked(window)
    other, _ = mini_study(shape=(5, 48, 48))
    with qtbot.waitSignal(window.engine.volume_finished, timeout=60000) as outcome:
        window.set_study(other)  # cancels; the worker stops as soon as it gets the engine
        ENGINE_LOCK.release()
    assert outcome.args == ["cancelled"]
    assert window.session.input is other and window.session.synthetic is None
    _wait_preview(qtbot, window)
    assert window.grid.view("synthetic", "axial").image.image.shape == (48, 48)

    _start_blocked(window)
    # The GUI thread is about to block in close(), so another thread lets the engine go.
    threading.Timer(0.3, ENGINE_LOCK.release).start()
    window.close()  # waits for the worker, which sees the cancel flag and stops
    assert window.engine.volume_worker is None or window.engine.volume_worker.isFinished()
    assert window.engine.preview_worker.isFinished()


def test_stale_preview_requests_are_dropped(window, qtbot, tiny_checkpoint):
    contrast, _, _ = _study(n_slices=8)
    window.set_study(contrast)
    assert window.open_checkpoint(tiny_checkpoint)
    _wait_preview(qtbot, window)
    key, worker = window.engine.current_key(), window.engine.preview_worker
    first = window.cursor.ijk[2]
    ENGINE_LOCK.acquire()  # the worker takes the next request, then waits for the engine
    try:
        axial = window.grid.view("input", "axial")
        axial.scroll(-1)
        qtbot.waitUntil(lambda: worker._pending is None)  # picked up: now blocked on the lock
        dropped = worker.dropped
        for _ in range(3):
            axial.scroll(-1)  # three quick scrolls: each replaces the one before
    finally:
        ENGINE_LOCK.release()
    _wait_preview(qtbot, window)
    assert worker.dropped - dropped == 2
    cache = window.session.previews
    assert cache.get(key, first - 1) is not None and cache.get(key, first - 4) is not None
    assert cache.get(key, first - 2) is None and cache.get(key, first - 3) is None
    assert window.grid.view("synthetic", "axial").slice_index == first - 4


def test_demo_model_removes_iodine_from_the_aorta(window, qtbot):
    """With the shipped demo model, the live preview of the demo study turns the aorta native."""
    from mfm_engine.demo import demo_checkpoint, demo_recipe
    from mfm_engine.phantom import make_phantom_pair

    ckpt = demo_checkpoint()
    if ckpt is None:
        pytest.skip("the demo model is not in assets/ (it comes with the training issue)")
    pair = make_phantom_pair(int(demo_recipe()["seed"]), motion_mm=0.0, n_slices=4)
    window.set_study(pair.contrast, reference=pair.native)
    assert window.open_checkpoint(ckpt)
    aorta = pair.label_mask("aorta")
    k = int(np.argmax(aorta.sum(axis=(1, 2))))
    window.cursor.set_axis(2, k)
    _wait_preview(qtbot, window)
    syn = window.grid.view("synthetic", "axial")
    assert syn.slice_index == k
    synthetic_hu = window.session.slice("synthetic", "axial", k)[aorta[k]].mean()
    native_hu, contrast_hu = pair.native.hu[k][aorta[k]].mean(), pair.contrast.hu[k][aorta[k]].mean()
    # Most of the enhancement (≈ 300 HU in the phantom's aorta) is gone.
    assert abs(synthetic_hu - native_hu) < 0.25 * (contrast_hu - native_hu)
    shot(window, "14_demo_model_preview")
