"""The real main window, offscreen: open a study, linked crosshair, slices, windows, references, errors.

Every test saves a screenshot of the window to tests/_screenshots/ (git-ignored) for a human to look at.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtWidgets

from mfm_engine.intensity import window_preset
from mfm_engine.io.write import write_study
from mfm_engine.volume import Volume
from mfm_viewer.main_window import MainWindow
from mfm_viewer.settings import ViewerSettings

pytestmark = pytest.mark.gui
SHOTS = Path(__file__).parent / "_screenshots"
LIVER_HU, AORTA_HU, BODY_HU = 60.0, 300.0, 40.0


def mini_study(shape=(16, 64, 64), spacing=(5.0, 5.0, 5.0), phase="arterial") -> tuple[Volume, dict]:
    """A small labelled body (soft tissue, liver on the patient's right, aorta, spine), LPS identity."""
    z, y, x = np.indices(shape)
    nz, ny, nx = shape
    cx, cy = nx / 2, ny / 2 + 2
    hu = np.full(shape, -1000.0, np.float32)
    body = ((x - cx) / (0.44 * nx)) ** 2 + ((y - cy) / (0.32 * ny)) ** 2 < 1
    hu[body] = BODY_HU
    liver = body & (
        ((x - 0.3 * nx) / (0.14 * nx)) ** 2 + ((y - cy + 3) / (0.14 * ny)) ** 2 < 1
    )  # low x = right
    hu[liver] = LIVER_HU
    aorta = ((x - cx - 2) ** 2 + (y - cy - 4) ** 2) < (0.05 * nx) ** 2
    hu[aorta] = AORTA_HU if phase == "arterial" else BODY_HU
    spine = ((x - cx) ** 2 + (y - cy - 12 * ny / 64) ** 2) < (0.07 * nx) ** 2
    hu[spine] = 700.0
    meta = {"phase": phase, "series_description": f"test body ({phase})", "modality": "CT"}
    labels = {"liver": liver, "aorta": aorta, "body": body}
    return Volume(hu, spacing, (-160.0, -150.0, -40.0), np.eye(3), meta), labels


def shot(window: MainWindow, name: str) -> Path:
    """Save the window to tests/_screenshots/<name>.png."""
    SHOTS.mkdir(exist_ok=True)
    path = SHOTS / f"{name}.png"
    assert window.save_screenshot(path)
    return path


@pytest.fixture
def window(qtbot, tmp_path):
    w = MainWindow(ViewerSettings(tmp_path / "viewer.ini"))
    qtbot.addWidget(w)
    show(qtbot, w)
    yield w
    w.close()


def _voxel(mask: np.ndarray) -> tuple[int, int, int]:
    """(i, j, k) of the voxel at a (convex) mask's centre."""
    k, j, i = np.round(np.argwhere(mask).mean(axis=0)).astype(int)
    assert mask[k, j, i]
    return int(i), int(j), int(k)


def show(qtbot, w: MainWindow) -> None:
    """Show and activate a window: number-key shortcuts only reach the active window."""
    w.resize(1400, 900)
    w.show()
    w.activateWindow()
    qtbot.waitExposed(w)
    qtbot.waitUntil(w.isActiveWindow)


def _send_mouse(widget, kind, pos, button, buttons):
    event = QtGui.QMouseEvent(
        kind,
        QtCore.QPointF(pos),
        QtCore.QPointF(widget.mapToGlobal(pos)),
        button,
        buttons,
        QtCore.Qt.KeyboardModifier.NoModifier,
    )
    QtWidgets.QApplication.sendEvent(widget, event)


def drag(view, start: QtCore.QPoint, end: QtCore.QPoint, button=QtCore.Qt.MouseButton.RightButton, steps=6):
    """A real press–move–release drag on a view's viewport (QTest cannot move with a button held)."""
    vp = view.viewport()
    none = QtCore.Qt.MouseButton.NoButton
    _send_mouse(vp, QtCore.QEvent.Type.MouseButtonPress, start, button, button)
    for s in range(1, steps + 1):
        p = start + (end - start) * (s / steps)
        _send_mouse(vp, QtCore.QEvent.Type.MouseMove, p, none, button)
    _send_mouse(vp, QtCore.QEvent.Type.MouseButtonRelease, end, button, none)


def wheel(view, steps: int, modifiers=QtCore.Qt.KeyboardModifier.NoModifier):
    """Mouse-wheel notches over the middle of a view."""
    vp = view.viewport()
    pos = QtCore.QPointF(vp.width() / 2, vp.height() / 2)
    event = QtGui.QWheelEvent(
        pos,
        QtCore.QPointF(vp.mapToGlobal(pos.toPoint())),
        QtCore.QPoint(0, 0),
        QtCore.QPoint(0, 120 * steps),
        QtCore.Qt.MouseButton.NoButton,
        modifiers,
        QtCore.Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QtWidgets.QApplication.sendEvent(vp, event)


def test_open_study_file_and_linked_crosshair(window, qtbot, tmp_path):
    vol, labels = mini_study()
    path = write_study(vol, tmp_path / "study.nii.gz")
    assert window.open_study(path)
    assert window.session.input.shape == vol.shape
    np.testing.assert_allclose(window.session.input.hu, vol.hu, atol=0.5)
    shot(window, "01_opened")

    grid, cursor = window.grid, window.cursor
    axial, coronal, sagittal = (grid.view("input", p) for p in ("axial", "coronal", "sagittal"))
    i, j, k = _voxel(labels["aorta"])
    qtbot.mouseClick(axial.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=axial.widget_point((i, j, k)))
    assert cursor.ijk[:2] == (i, j)
    assert (axial.slice_index, coronal.slice_index, sagittal.slice_index) == (cursor.ijk[2], j, i)
    # Independent of the orientation code: with LPS identity, coronal/sagittal show superior at the
    # top (flip z) and axial shows anterior (low y) at the top, patient-right (low x) on the left.
    np.testing.assert_array_equal(sagittal.image.image, vol.hu[::-1, :, i])
    np.testing.assert_array_equal(coronal.image.image, vol.hu[::-1, j, :])
    assert {e: lab.text() for e, lab in axial.labels.letters.items()} == {
        "top": "A",
        "bottom": "P",
        "left": "R",
        "right": "L",
    }
    assert sagittal.labels.letters["left"].text() == "A" and coronal.labels.letters["top"].text() == "S"

    # A click in the coronal view moves the axial slice; the sagittal view follows the column.
    target = (i - 3, j, 4)
    qtbot.mouseClick(coronal.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=coronal.widget_point(target))
    assert cursor.ijk == target
    assert axial.slice_index == 4 and sagittal.slice_index == i - 3
    np.testing.assert_array_equal(axial.image.image, vol.hu[4])
    assert axial.labels.slice_info.text().startswith("5/16")
    assert "z -20.0 mm" in axial.labels.slice_info.text()  # origin −40 + 4 × 5 mm

    # Dragging with the left button in the sagittal view moves the crosshair along.
    drag(
        sagittal,
        sagittal.widget_point((0, 10, 4)),
        sagittal.widget_point((0, 20, 8)),
        QtCore.Qt.MouseButton.LeftButton,
    )
    assert cursor.ijk[1:] == (20, 8)

    # Wheel and Page Up/Down scroll the axial slices (forward = towards the head).
    wheel(axial, 2)
    assert axial.slice_index == 10
    axial.setFocus()
    qtbot.keyClick(axial, QtCore.Qt.Key.Key_PageDown)
    assert axial.slice_index == 9
    shot(window, "02_crosshair_moved")


def test_window_presets_keys_and_right_drag(window, qtbot):
    vol, labels = mini_study()
    window.set_study(vol)
    axial = window.grid.view("input", "axial")
    i, j, k = _voxel(labels["liver"])
    window.cursor.set_ijk((i, j, k))
    assert window.cursor.window == (400.0, 40.0)  # abdomen is the default
    assert tuple(axial.image.levels) == (-160.0, 240.0)

    qtbot.keyClick(window, "2")  # liver: W 150 / L 60
    liver = window_preset("liver")
    assert window.cursor.window == (liver.width, liver.level)
    for view in window.grid.views.values():
        assert tuple(view.image.levels) == (liver.low, liver.high)
    assert window.window_toolbar.actions_by_name["liver"].isChecked()
    assert "W 150  L 60" in window.window_toolbar.wl_label.text()
    # The rendered grey of the liver is (60 − (−15)) / 150 = 0.5 of white.
    qtbot.wait(10)
    image = axial.grab().toImage()
    # A liver pixel off both crosshair lines (they run through the cursor voxel's row and column).
    assert labels["liver"][k, j - 1, i - 1]
    p = axial.widget_point((i - 1, j - 1, k))
    grey = QtGui.QColor(image.pixel(p)).red()
    assert abs(grey - 0.5 * 255) <= 3
    shot(window, "03_liver_window")

    qtbot.keyClick(window, "4")  # bone
    assert window.cursor.window == (1800.0, 400.0)
    start = axial.widget_point((i, j, k))
    drag(axial, start, start + QtCore.QPoint(60, -40))  # right drag: wider and higher
    w, l = window.cursor.window
    assert w > 1800 and l > 400
    assert not any(a.isChecked() for a in window.window_toolbar.actions_by_name.values())
    assert f"W {w:.0f}" in axial.labels.window_info.text()
    shot(window, "04_window_dragged")


def test_reference_on_another_grid_is_refused_and_can_be_resampled(window, tmp_path):
    vol, _ = mini_study()
    window.set_study(vol)
    other, _ = mini_study(shape=(12, 48, 48), spacing=(6.0, 6.0, 6.0), phase="native")
    path = write_study(other, tmp_path / "native_other_grid.nii.gz")
    assert not window.open_reference(path, resample=False)
    text = window.last_message.text()
    assert str(path) in text and vol.geometry_text() in text and "48×48×12 voxels" in text
    assert "Traceback" not in text
    assert window.session.reference is None
    assert window.open_reference(path, resample=True)
    assert window.session.reference.shape == vol.shape
    assert [s.key for s in window.session.panes()] == ["input", "reference"]
    shot(window, "05_reference_resampled")


def test_bad_files_give_plain_messages_and_keep_the_study(window, tmp_path):
    vol, _ = mini_study()
    window.set_study(vol)
    session = window.session
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"this is not a NIfTI file")
    for bad in (broken, tmp_path / "missing_folder", tmp_path):
        assert not window.open_study(bad)
        text = window.last_message.text()
        assert str(bad) in text and "Traceback" not in text
        assert window.session is session  # the open study is untouched
    not_ckpt = tmp_path / "model.safetensors"
    not_ckpt.write_bytes(b"\x00" * 64)
    assert not window.open_checkpoint(not_ckpt)
    assert str(not_ckpt) in window.last_message.text()
    assert window.engine_panel.model.currentText() == "no model loaded"
    shot(window, "06_error_message")


def test_series_picker_opens_the_chosen_series(window, qtbot, tmp_path):
    from mfm_engine.io.dicom_write import write_dicom_series

    first, _ = mini_study(shape=(6, 32, 32))
    second, _ = mini_study(shape=(9, 32, 32), phase="native")
    folder = tmp_path / "two_series"
    write_dicom_series(first, folder / "a", series_description="first")
    write_dicom_series(second, folder / "b", series_description="second")

    def choose_second():
        dialog = QtWidgets.QApplication.activeModalWidget()
        dialog.table.selectRow([s.description for s in dialog.series].index("second"))
        dialog.accept()

    QtCore.QTimer.singleShot(200, choose_second)
    assert window.open_study(folder)
    assert window.session.input.shape == (9, 32, 32)


def test_layout_overlay_and_settings_persist(qtbot, tmp_path):
    ini = tmp_path / "viewer.ini"
    w = MainWindow(ViewerSettings(ini))
    qtbot.addWidget(w)
    show(qtbot, w)
    vol, _ = mini_study()
    w.set_study(vol)
    w.display_toolbar.layout_combo.setCurrentText("axial only")
    w.display_toolbar.diff_combo.setCurrentIndex(w.display_toolbar.diff_combo.findData("overlay"))
    w.display_toolbar.range_spin.setValue(120)
    assert set(p for _, p in w.grid.views) == {"axial"}
    qtbot.keyClick(w, "5")  # lung
    w.close()

    again = MainWindow(ViewerSettings(ini))
    qtbot.addWidget(again)
    assert again.cursor.window == (1500.0, -600.0)
    assert again.display_toolbar.layout_name == "axial only"
    assert again.display_toolbar.diff_mode == "overlay"
    assert again.display_toolbar.diff_range == 120
    again.set_study(vol)
    assert set(p for _, p in again.grid.views) == {"axial"}
    again.close()


def test_open_phantom_dicom_study_with_reference(window, qtbot, tmp_path):
    from mfm_engine.io.dicom_write import write_dicom_series
    from mfm_engine.phantom import make_phantom_pair

    pair = make_phantom_pair(7, motion_mm=0.0, n_slices=16, size=128)
    write_dicom_series(pair.contrast, tmp_path / "arterial")
    native = write_study(pair.native, tmp_path / "native.nii.gz")
    assert window.open_study(tmp_path / "arterial", reference=native)
    assert window.session.reference is not None
    assert "[PHANTOM]" in window.windowTitle()
    aorta = pair.label_mask("aorta")
    i, j, k = _voxel(aorta)
    axial = window.grid.view("input", "axial")
    window.cursor.set_ijk((i, j, k))
    # Hovering the aorta reads out the arterial and native HU there (DICOM stores whole HU).
    axial._on_mouse_moved(axial.view.mapViewToScene(axial.display_point((i, j, k))))
    text = window.hover_label.text()
    assert (
        f"input {pair.contrast.hu[k, j, i]:.0f}" in text
        and f"reference {pair.native.hu[k, j, i]:.0f} HU" in text
    )
    assert axial.labels.readout.text() == f"{round(float(pair.contrast.hu[k, j, i])):.0f} HU"
    assert window.session.input.hu[aorta].mean() > 250 > window.session.reference.hu[aorta].mean()
    shot(window, "07_phantom_dicom_with_reference")


def test_zoom_and_pan_are_shared_reset_and_drop_opens(window, qtbot, tmp_path):
    vol, _ = mini_study()
    window.set_study(vol, reference=vol.with_hu(vol.hu - 10, phase="native"))
    grid = window.grid

    def x_range(view):
        return view.view.viewRange()[0]

    before = {key: x_range(v) for key, v in grid.views.items()}
    axial = grid.view("input", "axial")
    wheel(axial, 3, QtCore.Qt.KeyboardModifier.ControlModifier)  # Ctrl+wheel zooms
    assert window.cursor.zoom == pytest.approx(1.15**3)
    for key, view in grid.views.items():  # every view, every plane, zooms alike
        (a0, a1), (b0, b1) = before[key], x_range(view)
        assert (a1 - a0) / (b1 - b0) == pytest.approx(window.cursor.zoom, rel=1e-3)
    ref_axial, coronal = grid.view("reference", "axial"), grid.view("input", "coronal")
    start_ax, start_cor = x_range(axial), x_range(coronal)
    centre = QtCore.QPoint(axial.viewport().width() // 2, axial.viewport().height() // 2)
    drag(axial, centre, centre + QtCore.QPoint(40, 0), QtCore.Qt.MouseButton.MiddleButton)
    moved = x_range(axial)[0] - start_ax[0]
    assert moved < -1.0  # dragging right moves the image right: the visible range goes left
    assert x_range(ref_axial)[0] - start_ax[0] == pytest.approx(moved)  # the same plane of every series
    assert x_range(coronal) == pytest.approx(start_cor)  # other planes keep their pan
    axial.setFocus()
    qtbot.keyClick(axial, QtCore.Qt.Key.Key_R)
    assert window.cursor.zoom == 1.0 and x_range(axial) == pytest.approx(before[("input", "axial")])
    shot(window, "08_two_series")

    other, _ = mini_study(shape=(10, 40, 40))
    path = write_study(other, tmp_path / "dropped.nii.gz")
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(path))])
    drop = QtGui.QDropEvent(
        QtCore.QPointF(200, 200),
        QtCore.Qt.DropAction.CopyAction,
        mime,
        QtCore.Qt.MouseButton.LeftButton,
        QtCore.Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(drop)
    assert window.session.input.shape == (10, 40, 40)
    assert window.settings.recent("studies")[0] == str(path)


def test_real_scans_open_upright(window, shared_data):
    """Real CT from other people: a NIfTI native, a JPEG 2000 DICOM contrast series, a tilted head."""
    import SimpleITK as sitk

    nifti = shared_data / "totalseg_native_abdomen_nifti" / "example_ct.nii.gz"
    assert window.open_study(nifti)
    # Independent check of the letters: SimpleITK's orientation code of the file (e.g. 'LPS' means
    # index x runs towards the patient's left, so the screen's left shows R and the axial view is
    # not flipped left–right).
    code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(
        sitk.ReadImage(str(nifti)).GetDirection()
    )
    axial = window.grid.view("input", "axial")
    assert axial.labels.letters["left"].text() == "R" and axial.labels.letters["top"].text() == "A"
    hu = window.session.input.hu
    k = window.cursor.ijk[2]
    shown = axial.image.image
    expected = hu[k]
    if code[0] == "R":  # index x runs towards the patient's right: flip to put R on the left
        expected = expected[:, ::-1]
    if code[1] == "P" or code[1] == "A":
        expected = expected if code[1] == "P" else expected[::-1, :]
    np.testing.assert_array_equal(shown, expected)
    shot(window, "30_real_native_nifti")

    dicom = shared_data / "totalseg_portalvenous_abdomen_dicom_j2k"
    assert window.open_study(dicom)
    assert window.session.input.shape[0] == 20
    shot(window, "31_real_portalvenous_dicom")

    head = shared_data / "dcm_qa_ct_GE_tilt_head"
    assert window.open_study(head)
    # The warnings stay in the banner above the views (not in the status bar, which is transient).
    assert window.session.input.warnings and window.banner.isVisible()
    assert window.banner.count == len(window.session.input.warnings) + 1  # + displayed regularised
    window.window_toolbar.actions_by_name["bone"].trigger()
    shot(window, "32_real_tilted_head_warnings")
