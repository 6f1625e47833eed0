"""Real CT from ../shared/data (and pydicom's bundled files), read against SimpleITK's own reading.

Every test here skips cleanly when the shared data folder is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import shared_subfolder
from pydicom.data import get_testdata_file

from mfm_engine.io.study import describe_study, discover_series, read_study


@pytest.fixture(autouse=True)
def _quiet_itk():
    # ITK prints its own non-uniform-spacing warning to stderr; our reader reports it instead.
    previous = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    yield
    sitk.ProcessObject.SetGlobalWarningDisplay(previous)


def _sitk_series(folder: Path, uid: str | None = None) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    names = (
        reader.GetGDCMSeriesFileNames(str(folder))
        if uid is None
        else reader.GetGDCMSeriesFileNames(str(folder), uid)
    )
    reader.SetFileNames(names)
    return reader.Execute()


def _hu(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image).astype(np.float32)


def test_ct_small_same_hu_as_simpleitk() -> None:
    path = get_testdata_file("CT_small.dcm")
    vol = read_study(path)
    ref = sitk.ReadImage(path)
    np.testing.assert_array_equal(vol.hu, _hu(ref))
    np.testing.assert_allclose(vol.spacing, ref.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(vol.origin, ref.GetOrigin(), atol=1e-5)
    assert vol.meta["modality"] == "CT" and vol.warnings == []


def test_jpeg2000_series_with_empty_uids_is_one_volume() -> None:
    root = shared_subfolder("totalseg_portalvenous_abdomen_dicom_j2k")
    folder = root / "example_ct_dicom"
    vol = read_study(root)  # the licence beside the folder is skipped, the sub-folder searched
    assert vol.shape == (20, 512, 512)
    ref = _sitk_series(folder)
    np.testing.assert_array_equal(vol.hu, _hu(ref))
    np.testing.assert_allclose(vol.spacing, ref.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(vol.origin, ref.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(vol.direction.ravel(), ref.GetDirection(), atol=1e-6)
    assert vol.spacing[2] == pytest.approx(2.0)
    assert vol.meta["dicom"]["series_instance_uid"] == ""
    assert any("SeriesInstanceUID is empty" in w for w in vol.warnings)
    assert not any("gap" in w or "uneven" in w for w in vol.warnings)


def test_tilted_head_reports_gaps_and_tilt() -> None:
    folder = shared_subfolder("dcm_qa_ct_GE_tilt_head")
    vol = read_study(folder)
    assert vol.shape == (28, 512, 512)
    ref = _sitk_series(folder)
    np.testing.assert_array_equal(vol.hu, _hu(ref))
    np.testing.assert_allclose(vol.direction.ravel(), ref.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(vol.origin, ref.GetOrigin(), atol=1e-4)
    text = " | ".join(vol.warnings)
    # The README's numbers: steps from 1.08 to 6.99 mm, and a tilt (GantryDetectorTilt 18.5°).
    assert "uneven slice spacing" in text and "1.08" in text and "7.00" in text
    assert "gap" in text
    assert "gantry tilt" in text and "18.5°" in text
    steps = np.diff(vol.meta["dicom"]["slice_positions_mm"])
    assert steps.min() == pytest.approx(1.08, abs=0.01) and steps.max() == pytest.approx(7.0, abs=0.01)
    assert vol.meta["dicom"]["gantry_tilt_deg"] == pytest.approx(18.5, abs=0.05)
    # Stored spacing: the mean step along the normal, not SimpleITK's straight-line 5.63 mm.
    assert vol.spacing[2] == pytest.approx(float(np.mean(steps)), abs=1e-6)
    assert ref.GetSpacing()[2] == pytest.approx(vol.spacing[2] / np.cos(np.radians(18.5)), abs=0.01)


@pytest.mark.parametrize("image", ["CT1", "CT2"])
def test_wg04_syntaxes_decode_to_the_same_hu(image: str) -> None:
    folder = shared_subfolder("wg04_ct_transfer_syntaxes")
    reference = read_study(folder / f"{image}_UNC")
    np.testing.assert_array_equal(reference.hu, _hu(sitk.ReadImage(str(folder / f"{image}_UNC"))))
    for lossless in ("RLE", "JPLL", "JLSL", "J2KR"):
        vol = read_study(folder / f"{image}_{lossless}")
        np.testing.assert_array_equal(vol.hu, reference.hu, err_msg=lossless)
        assert vol.same_geometry(reference)
    near = read_study(folder / f"{image}_JLSN").hu - reference.hu
    assert np.abs(near).max() <= 10  # near-lossless: bounded error per pixel
    lossy = read_study(folder / f"{image}_J2KI").hu
    assert np.abs(lossy - reference.hu).mean() < 40
    assert np.corrcoef(lossy.ravel(), reference.hu.ravel())[0, 1] > 0.99


def test_wg04_copies_are_not_one_volume() -> None:
    folder = shared_subfolder("wg04_ct_transfer_syntaxes")
    found = discover_series(folder)
    assert len(found) == 14 and all(s.n_slices == 1 for s in found)
    split = [s for s in found if "not one volume" in " ".join(s.warnings)]
    assert len(split) == 12  # the 6 copies of each image that share one UID; RLE has its own UID


def test_dcmqi_three_slices_and_seg_skipped() -> None:
    folder = shared_subfolder("dcmqi_liver_ct_3slice")
    vol = read_study(folder)
    assert vol.shape == (3, 512, 512)
    ref = _sitk_series(folder, vol.meta["dicom"]["series_instance_uid"])
    np.testing.assert_array_equal(vol.hu, _hu(ref))
    np.testing.assert_allclose(vol.spacing, ref.GetSpacing(), atol=1e-5)
    assert any("liver_SEG.dcm.notct" in w and "SEG" in w for w in vol.warnings)


@pytest.mark.parametrize("name", ["example_ct.nii.gz", "example_ct_sm.nii.gz"])
def test_totalseg_nifti_equals_simpleitk(name: str) -> None:
    path = shared_subfolder("totalseg_native_abdomen_nifti") / name
    vol = read_study(path)
    ref = sitk.ReadImage(str(path))
    np.testing.assert_array_equal(vol.hu, _hu(ref))
    np.testing.assert_allclose(vol.spacing, ref.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(vol.origin, ref.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(vol.direction.ravel(), ref.GetDirection(), atol=1e-6)


def test_every_shared_folder_is_described(shared_data: Path) -> None:
    for folder in sorted(p for p in shared_data.iterdir() if p.is_dir()):
        doc = describe_study(folder)
        assert doc["series"], folder
        assert not [e["error"] for e in doc["series"] if e["error"]], folder
