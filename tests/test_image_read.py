"""Image-file reading (NIfTI, NRRD, MHA, MHD) against SimpleITK's own arrays and geometry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from mfm_engine.errors import StudyReadError
from mfm_engine.io.image_read import read_image
from mfm_engine.io.study import describe_study, read_study


def _oblique_image(arr: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing((0.7, 0.8, 2.5))
    image.SetOrigin((-100.0, 20.0, 33.5))
    a = np.radians(20)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    image.SetDirection(tuple(rot.ravel()))
    return image


@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.nii", "ct.nrrd", "ct.mha", "ct.mhd"])
@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float32, np.float64, np.uint8])
def test_formats_and_pixel_types_give_float32_like_simpleitk(tmp_path: Path, name: str, dtype) -> None:
    rng = np.random.default_rng(1)
    arr = rng.integers(-1000, 1500 if dtype != np.uint8 else 255, size=(3, 6, 5)).astype(dtype)
    if np.dtype(dtype).kind == "f":
        arr = arr + dtype(0.25)
    path = tmp_path / name
    sitk.WriteImage(_oblique_image(arr), str(path))
    vol = read_study(path)
    ref = sitk.ReadImage(str(path))
    assert vol.hu.dtype == np.float32 and vol.shape == (3, 6, 5)
    np.testing.assert_array_equal(vol.hu, sitk.GetArrayFromImage(ref).astype(np.float32))
    np.testing.assert_allclose(vol.spacing, ref.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(vol.origin, ref.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(vol.direction.ravel(), ref.GetDirection(), atol=1e-5)
    assert vol.meta["source_path"] == str(path) and vol.warnings == []


@pytest.mark.parametrize("name", ["nan.nii.gz", "nan.nii", "nan.mha", "nan.nrrd"])
def test_nan_is_refused_with_the_count(tmp_path: Path, name: str) -> None:
    arr = np.ones((2, 4, 4), np.float32)
    arr[0, 1, 1] = arr[1, 2, 3] = np.nan
    arr[1, 0, 0] = np.inf
    path = tmp_path / name
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    with pytest.raises(StudyReadError, match="NaN") as err:
        read_study(path)
    message = str(err.value)
    assert name in message
    # NIfTI: counted in the stored data (ITK shows them as 0); others: counted in what ITK read.
    assert ("3 NaN or infinite" if ".nii" in name else "2 NaN and 1 infinite") in message


def test_float_nifti_with_zeros_but_no_nan_reads(tmp_path: Path) -> None:
    path = tmp_path / "zeros.nii.gz"
    arr = np.zeros((2, 3, 4), np.float64)
    arr[0, 0, 0] = -1000.5
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    np.testing.assert_array_equal(read_study(path).hu, arr.astype(np.float32))


def _write_4d(path: Path, n_t: int) -> np.ndarray:
    vols = [np.full((3, 4, 5), t, np.int16) + np.arange(5, dtype=np.int16) for t in range(n_t)]
    sitk.WriteImage(sitk.JoinSeries([sitk.GetImageFromArray(v) for v in vols]), str(path))
    return np.stack(vols)


def test_4d_is_refused_naming_the_shape(tmp_path: Path) -> None:
    path = tmp_path / "four.nii.gz"
    _write_4d(path, 2)
    with pytest.raises(StudyReadError, match="4-D") as err:
        read_study(path)
    assert "5 × 4 × 3 × 2" in str(err.value) and "four.nii.gz" in str(err.value)


def test_4d_with_one_time_point_reads_as_3d(tmp_path: Path) -> None:
    path = tmp_path / "t1.nii.gz"
    arr = _write_4d(path, 1)
    vol = read_study(path)
    assert vol.shape == (3, 4, 5)
    np.testing.assert_array_equal(vol.hu, arr[0])


def test_vector_image_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rgb.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4, 3), np.uint8), isVector=True), str(path))
    with pytest.raises(StudyReadError, match="3 components"):
        read_study(path)


def test_2d_image_becomes_one_slice(tmp_path: Path) -> None:
    path = tmp_path / "slice.mha"
    image = sitk.GetImageFromArray(np.arange(12, dtype=np.int16).reshape(3, 4))
    image.SetSpacing((0.5, 0.6))
    sitk.WriteImage(image, str(path))
    vol = read_study(path)
    assert vol.shape == (1, 3, 4) and vol.spacing == pytest.approx((0.5, 0.6, 1.0))
    assert any("2-D" in w for w in vol.warnings)


def test_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.nii.gz"
    path.write_bytes(b"this is not a NIfTI file")
    with pytest.raises(StudyReadError, match="junk.nii.gz"):
        read_study(path)


def test_description_sets_flags(tmp_path: Path) -> None:
    path = tmp_path / "syn.nii.gz"
    image = sitk.GetImageFromArray(np.zeros((2, 2, 2), np.int16))
    image.SetMetaData("ITK_FileNotes", "SYNTHETIC native by tiny-flow eulerx10")
    sitk.WriteImage(image, str(path))
    vol = read_study(path)
    assert vol.meta["synthetic"] is True
    assert vol.meta["series_description"] == "SYNTHETIC native by tiny-flow eulerx10"


def test_sidecar_restores_meta(tmp_path: Path) -> None:
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 2, 2), np.int16)), str(path))
    meta = {
        "phantom": True,
        "phantom_seed": 3,
        "modality": "CT",
        "warnings": ["gap at z=4"],
        "phase": "native",
    }
    doc = {"format": "mfm-studio image sidecar", "version": 1, "image": "ct.nii.gz", "meta": meta}
    (tmp_path / "ct.json").write_text(json.dumps(doc))
    vol = read_image(path)
    assert vol.meta["phantom"] is True and vol.meta["phantom_seed"] == 3 and vol.meta["phase"] == "native"
    assert vol.meta["warnings"] == ["gap at z=4"] and vol.meta["source_path"] == str(path)


def test_foreign_or_broken_sidecar_is_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 2, 2), np.int16)), str(path))
    (tmp_path / "ct.json").write_text(json.dumps({"liver": 0.9}))
    assert "phantom" not in read_image(path).meta
    (tmp_path / "ct.json").write_text("{broken")
    assert any("not readable JSON" in w for w in read_image(path).warnings)


def test_describe_image_file(tmp_path: Path) -> None:
    path = tmp_path / "ct.nrrd"
    arr = np.array([[[-1000, 0], [40, 1200]]], dtype=np.int16)
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    doc = describe_study(path)
    assert doc["kind"] == "image-file"
    (entry,) = doc["series"]
    assert entry["hu_min"] == -1000 and entry["hu_max"] == 1200 and entry["size_xyz"] == [2, 2, 1]
    assert json.loads(json.dumps(doc)) == doc


@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.nii", "ct.nrrd", "ct.mha"])
@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_truncated_file_says_so(tmp_path: Path, name: str, dtype) -> None:
    # ITK alone reads a truncated integer NIfTI "fine", inventing the missing voxels.
    rng = np.random.default_rng(2)
    path = tmp_path / name
    sitk.WriteImage(sitk.GetImageFromArray(rng.normal(0, 300, (20, 48, 48)).astype(dtype)), str(path), True)
    read_image(path)  # whole, it reads
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(StudyReadError, match=r"ct\.[a-z.]+: truncated or corrupt file"):
        read_image(path)
