"""Reading warnings that stay (issue 15, point 3) and true scanner positions (issue 13, item 1).

A stack the scanner placed unevenly is shown on a regular grid: the banner says "displayed
regularised", slice labels and the HU probe give the scanner's positions, and exports carry the
warnings in their provenance.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import shared_subfolder
from PySide6 import QtGui
from test_viewer_engine import tiny_checkpoint  # noqa: F401 (a fixture)
from test_viewer_window import mini_study, shot

from mfm_engine.volume import Volume
from mfm_viewer.logic.orientation import true_voxel_position
from mfm_viewer.logic.study_info import (
    reading_warnings,
    regularised_warning,
    slice_position_text,
    warning_topic,
)
from mfm_viewer.main_window import MainWindow
from mfm_viewer.settings import ViewerSettings

pytestmark = pytest.mark.gui
TRUE_Z = [-40.0, -36.0, -30.0, -20.0, -15.0, -10.0]  # uneven: steps 4, 6, 10, 5, 5


def uneven_study() -> Volume:
    """A 6-slice study whose slices the scanner put at TRUE_Z; the grid draws them every 6 mm."""
    vol, _ = mini_study(shape=(6, 48, 48), spacing=(5.0, 5.0, 6.0))
    x0, y0, _ = vol.origin
    vol.origin = (x0, y0, TRUE_Z[0])
    vol.meta["slice_positions_lps"] = [[x0, y0, z] for z in TRUE_Z]
    vol.meta["warnings"] = [
        "skipped 1 file(s), not DICOM: notes.txt",
        "uneven slice spacing: steps from 4.00 to 10.00 mm",
    ]
    return vol


@pytest.fixture
def window(qtbot, tmp_path):
    w = MainWindow(ViewerSettings(tmp_path / "viewer.ini"))
    qtbot.addWidget(w)
    w.resize(1400, 900)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.close()


def test_logic_orders_warnings_and_names_the_regularised_display():
    vol = uneven_study()
    assert vol.is_regularised
    warnings = reading_warnings(vol)
    assert (
        warnings[0].startswith("Displayed regularised") and "up to 2.0 mm" in warnings[0]
    )  # -20 vs grid -22
    assert warnings[-1].startswith("skipped")  # the least important last
    assert [warning_topic(w) for w in warnings] == [
        "Displayed regularised",
        "uneven slice spacing",
        "skipped 1 file(s), not DICOM",
    ]
    even, _ = mini_study(shape=(4, 16, 16))
    assert regularised_warning(even) is None and reading_warnings(even) == []
    # Labels and probe: the scanner's z, not the grid's (-40 + 3 × 6 = -22).
    assert slice_position_text(vol, "axial", 3) == "z -20.0 mm"
    np.testing.assert_allclose(
        true_voxel_position(vol, (2, 4, 3)), np.array(vol.origin[:2] + (0,)) + (10, 20, -20)
    )
    assert vol.index_to_physical((2, 4, 3))[2] == pytest.approx(-22.0)


def test_banner_stays_collapses_and_counts(window, qtbot):
    window.set_study(uneven_study())
    banner = window.banner
    assert banner.isVisible() and banner.count == 3
    assert banner.toggle.text() == "⚠ 3 reading warnings"
    assert not banner.expanded and "Displayed regularised · uneven slice spacing" in banner.summary.text()
    banner.toggle.click()
    assert banner.expanded and banner.details.isVisible()
    assert banner.details.text().count("•") == 3
    assert window.settings.get("display/warnings_expanded", False) is True
    # Transient messages come and go; the banner does not.
    window.statusBar().showMessage("Reference opened", 1)
    qtbot.wait(50)
    assert banner.isVisible() and "uneven" not in window.statusBar().currentMessage()
    shot(window, "42_warnings_banner")
    banner.toggle.click()
    assert not banner.details.isVisible() and banner.isVisible()
    # A study without warnings: no banner.
    even, _ = mini_study(shape=(4, 32, 32))
    window.set_study(even)
    assert not banner.isVisible()


def test_slice_labels_and_probe_give_the_scanner_positions(window):
    window.set_study(uneven_study())
    window.cursor.set_ijk((24, 24, 3))
    view = window.grid.view("input", "axial")
    assert view.labels.slice_info.text().endswith("z -20.0 mm")
    assert view.labels.regularised.isVisible() and view.labels.regularised.text() == "displayed regularised"
    seen = []
    window.grid.hover_text.connect(seen.append)
    view.hovered.emit((24, 24, 3))
    x, y, z = true_voxel_position(window.session.input, (24, 24, 3))
    assert f"LPS ({x:.1f}, {y:.1f}, -20.0) mm" in seen[-1]


def test_exports_carry_the_reading_warnings(window, qtbot, tmp_path, tiny_checkpoint):  # noqa: F811
    window.set_study(uneven_study())
    assert window.open_checkpoint(tiny_checkpoint)
    with qtbot.waitSignal(window.engine.volume_finished, timeout=120000):
        assert window.engine.translate_volume()
    written = window.export_synthetic(tmp_path / "syn.nii.gz", "nifti")
    assert written is not None
    # The writer's note on what a NIfTI cannot hold is put in front of the user, not only logged.
    assert len(window.export_notes) == 1 and "not on one regular grid" in window.export_notes[0]
    assert window.last_message is not None and window.export_notes[0] in window.last_message.text()
    sidecar = json.loads((tmp_path / "syn.json").read_text())
    text = json.dumps(sidecar)
    assert "Displayed regularised" in text and "uneven slice spacing" in text
    assert (
        window.session.synthetic.meta.get("provenance", {}).get("source_reading_warnings") is None
    )  # not mutated
    import pydicom

    files = window.export_synthetic(tmp_path / "dicom", "dicom")
    comments = pydicom.dcmread(files[0]).ImageComments
    assert "Displayed regularised" in comments and "uneven slice spacing" in comments
    png = tmp_path / "shot.png"
    assert window.save_screenshot(png)
    image = QtGui.QImage(str(png))
    texts = [image.text(k) for k in image.textKeys() if k.startswith("Reading warning")]
    assert len(texts) == 3 and texts[0].startswith("Displayed regularised")


def test_tilted_head_slice_15_says_the_scanners_z(window):
    folder = shared_subfolder("dcm_qa_ct_GE_tilt_head")
    assert window.open_study(folder)
    vol = window.session.input
    window.cursor.set_ijk((256, 256, 14))
    label = window.grid.view("input", "axial").labels.slice_info.text()
    assert label.startswith("15/28") and label.endswith("z 61.8 mm"), label  # the grid would say 76.7
    assert window.banner.isVisible() and window.banner.warnings[0].startswith("Displayed regularised")
    assert any("gantry tilt" in w for w in window.banner.warnings)
    # A head: head presets with keys, brain first and chosen.
    assert window.window_toolbar.region == "head"
    assert list(window.window_toolbar.actions_by_name)[:4] == ["brain", "subdural", "stroke", "temporal bone"]
    assert window.cursor.window == (80.0, 40.0)
    assert vol.is_regularised
    window.banner.set_expanded(True)
    shot(window, "43_tilted_head_banner")


def test_a_lossy_source_is_a_reading_warning():
    from mfm_engine.io.study import discover_series, read_study

    folder = shared_subfolder("wg04_ct_transfer_syntaxes")
    series = discover_series(folder)
    lossy = next(i for i, s in enumerate(series) if s.transfer_syntax == "JPEG 2000 Image Compression")
    lossless = next(i for i, s in enumerate(series) if s.transfer_syntax == "Explicit VR Little Endian")
    warnings = reading_warnings(read_study(folder, series=lossy))
    lossy_lines = [w for w in warnings if "lossy" in w]
    assert len(lossy_lines) == 1  # said once, by the reader
    assert lossy_lines[0].startswith("lossy compression: the source was compressed with loss (JPEG 2000")
    assert "69:1" in lossy_lines[0]
    assert warnings.index(lossy_lines[0]) < 2  # among the first things a reader sees
    assert not any(w.startswith("lossy") for w in reading_warnings(read_study(folder, series=lossless)))


def test_the_references_warnings_join_the_banner_marked_as_such(window):
    even, _ = mini_study(shape=(6, 48, 48), spacing=(5.0, 5.0, 6.0))
    window.set_study(even)
    assert not window.banner.isVisible()
    reference = uneven_study()
    reference.meta["phase"] = "native"
    assert window.set_reference(reference, resample=False)
    assert (
        window.banner.isVisible()
        and window.banner.warnings[0] == "Reference: " + reading_warnings(reference)[0]
    )
    window.close_reference()
    assert not window.banner.isVisible()
