"""DICOM reading on small series written here with pydicom; SimpleITK and pydicom are the references."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLSLossless,
    generate_uid,
)

from mfm_engine.errors import SeriesChoiceError, StudyReadError
from mfm_engine.io.dicom_read import read_header, stack_geometry
from mfm_engine.io.study import describe_study, discover_series, read_study

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def ct_dataset(
    path: Path,
    pixels: np.ndarray,
    *,
    position: tuple[float, float, float],
    orientation: tuple[float, ...] = AXIAL,
    series_uid: str = "",
    study_uid: str = "1.2.826.0.1.3680043.8.498.1",
    frame_uid: str = "1.2.826.0.1.3680043.8.498.2",
    description: str = "test series",
    modality: str = "CT",
    slope: float = 1.0,
    intercept: float = -1024.0,
    pixel_spacing: tuple[float, float] = (0.8, 0.7),
    thickness: float = 2.5,
    instance: int = 1,
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    transfer_syntax: str = ExplicitVRLittleEndian,
    bits_stored: int = 16,
    series_number: int = 2,
    extra: dict | None = None,
) -> Path:
    """Write one minimal, valid CT image (signed 16-bit stored values) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    sop = generate_uid()
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = transfer_syntax
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.PatientName = "Test^Patient"
    ds.PatientID = "TEST-001"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyDate = "20240102"
    ds.StudyTime = "120000"
    ds.StudyID = "1"
    ds.AccessionNumber = "A1"
    ds.ReferringPhysicianName = ""
    ds.Modality = modality
    ds.Manufacturer = "pytest"
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.ImageType = list(image_type)
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in orientation]
    ds.PixelSpacing = list(pixel_spacing)
    ds.SliceThickness = thickness
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1
    ds.RescaleSlope = f"{slope:g}"
    ds.RescaleIntercept = f"{intercept:g}"
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<i2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_ct_series(
    folder: Path,
    n: int = 5,
    *,
    shape: tuple[int, int] = (12, 10),
    spacing: float = 2.5,
    orientation: tuple[float, ...] = AXIAL,
    origin: tuple[float, float, float] = (-100.0, -80.0, 40.0),
    step: np.ndarray | None = None,
    seed: int = 0,
    shuffle_names: bool = True,
    **kwargs,
) -> tuple[list[Path], np.ndarray]:
    """Write a small CT series (files named in shuffled order); returns paths and stored values (z, y, x)."""
    folder.mkdir(parents=True, exist_ok=True)
    kwargs.setdefault("series_uid", generate_uid())
    rng = np.random.default_rng(seed)
    stored = rng.integers(-1000, 3000, size=(n, *shape)).astype(np.int16)
    row, col = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    normal = np.cross(row, col)
    step_vec = normal * spacing if step is None else np.asarray(step, dtype=float)
    names = rng.permutation(n) if shuffle_names else np.arange(n)
    paths = []
    for k in range(n):
        pos = tuple(np.asarray(origin) + k * step_vec)
        path = folder / f"im{names[k]:04d}.dcm"
        paths.append(
            ct_dataset(path, stored[k], position=pos, orientation=orientation, instance=k + 1, **kwargs)
        )
    return paths, stored


def sitk_series(folder: Path) -> sitk.Image:
    """SimpleITK's own reading of the (single) series in a folder: the reference geometry and HU."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def assert_same_as_sitk(vol, image: sitk.Image) -> None:
    np.testing.assert_array_equal(vol.hu, sitk.GetArrayFromImage(image).astype(np.float32))
    np.testing.assert_allclose(vol.spacing, image.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(vol.origin, image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(vol.direction.ravel(), image.GetDirection(), atol=1e-6)


# ------------------------------------------------------------------------------------------------
def test_series_reads_like_simpleitk(tmp_path: Path) -> None:
    paths, stored = write_ct_series(tmp_path / "s", n=6)
    vol = read_study(tmp_path / "s")
    assert vol.hu.dtype == np.float32 and vol.shape == (6, 12, 10)
    assert_same_as_sitk(vol, sitk_series(tmp_path / "s"))
    # Sorted along the normal: stored slice k (position z = 40 + 2.5 k) is array slice k.
    np.testing.assert_array_equal(vol.hu, stored.astype(np.float32) - 1024)
    assert vol.spacing == pytest.approx((0.7, 0.8, 2.5))  # x = column spacing, y = row spacing
    assert vol.meta["modality"] == "CT" and vol.meta["series_description"] == "test series"
    assert vol.meta["source_path"] == str(tmp_path / "s")
    assert vol.warnings == []


def test_descending_positions_are_sorted_ascending_along_the_normal(tmp_path: Path) -> None:
    paths, stored = write_ct_series(tmp_path / "s", n=5, step=np.array([0.0, 0.0, -3.0]))
    vol = read_study(tmp_path / "s")
    np.testing.assert_array_equal(vol.hu, stored[::-1].astype(np.float32) - 1024)
    assert vol.origin[2] == pytest.approx(40.0 - 12.0)
    assert_same_as_sitk(vol, sitk_series(tmp_path / "s"))


def test_oblique_orientation_matches_simpleitk(tmp_path: Path) -> None:
    a = np.radians(25)
    orientation = (np.cos(a), np.sin(a), 0.0, -np.sin(a) * 0.8, np.cos(a) * 0.8, 0.6)
    write_ct_series(tmp_path / "s", n=4, orientation=orientation, spacing=3.0)
    vol = read_study(tmp_path / "s")
    assert_same_as_sitk(vol, sitk_series(tmp_path / "s"))
    # Physical position of the last slice's first voxel is that file's ImagePositionPatient.
    last = np.asarray(vol.index_to_physical((0, 0, 3)))
    first = np.asarray(vol.origin)
    assert np.linalg.norm(last - first) == pytest.approx(9.0, abs=1e-3)


def test_meta_dicom_attributes_follow_array_order(tmp_path: Path) -> None:
    paths, _ = write_ct_series(tmp_path / "s", n=4)
    vol = read_study(tmp_path / "s")
    dicom = vol.meta["dicom"]
    by_pos = sorted(
        (float(pydicom.dcmread(p).ImagePositionPatient[2]), pydicom.dcmread(p).SOPInstanceUID) for p in paths
    )
    assert dicom["sop_instance_uids"] == [uid for _, uid in by_pos]
    first = pydicom.dcmread(paths[0])
    assert dicom["series_instance_uid"] == first.SeriesInstanceUID
    assert dicom["frame_of_reference_uid"] == first.FrameOfReferenceUID
    assert dicom["sop_class_uid"] == CTImageStorage
    assert dicom["patient"]["PatientID"] == "TEST-001" and dicom["patient"]["PatientName"] == "Test^Patient"
    assert dicom["study"]["StudyInstanceUID"] == first.StudyInstanceUID
    assert dicom["study"]["StudyDate"] == "20240102"
    assert dicom["slice_positions_mm"] == pytest.approx([40.0, 42.5, 45.0, 47.5])


def test_fractional_rescale_gives_float_hu(tmp_path: Path) -> None:
    paths, stored = write_ct_series(tmp_path / "s", n=3, slope=0.5, intercept=-1000.25)
    vol = read_study(tmp_path / "s")
    ref = sitk.GetArrayFromImage(sitk_series(tmp_path / "s"))
    np.testing.assert_allclose(vol.hu, ref, atol=1e-3)
    np.testing.assert_allclose(vol.hu, stored * 0.5 - 1000.25, atol=1e-3)


def test_bits_stored_below_allocated_is_sign_extended_like_pydicom(tmp_path: Path) -> None:
    # 12-bit signed values written without sign extension in the unused high bits.
    values = np.array([[-2048, -1, 0, 2047], [-5, 5, -100, 100]], dtype=np.int16)
    unextended = (values.astype(np.int32) & 0x0FFF).astype(np.int16)
    path = ct_dataset(tmp_path / "a.dcm", unextended, position=(0, 0, 0), bits_stored=12, intercept=0)
    vol = read_study(path)
    np.testing.assert_array_equal(vol.hu[0], pydicom.dcmread(path).pixel_array.astype(np.float32))
    np.testing.assert_array_equal(vol.hu[0], values)


def test_missing_slice_is_reported_with_numbers(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    paths, stored = write_ct_series(folder, n=7, spacing=5.0, shuffle_names=False)
    paths[3].unlink()  # the middle slice
    vol = read_study(folder)
    assert vol.shape[0] == 6
    text = " | ".join(vol.warnings)
    assert "missing slice" in text
    assert "10.00 mm" in text and "5.00 mm" in text
    assert "z=2 and z=3" in text
    # Stored spacing is the mean step (30 mm over 5 steps), and the true positions are kept.
    assert vol.spacing[2] == pytest.approx(6.0)
    assert vol.meta["dicom"]["slice_positions_mm"] == pytest.approx([40, 45, 50, 60, 65, 70])
    np.testing.assert_array_equal(vol.hu, np.delete(stored, 3, axis=0).astype(np.float32) - 1024)


def test_uneven_spacing_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    series_uid = generate_uid()
    for k, z in enumerate([0.0, 2.0, 4.0, 5.0, 7.0]):
        ct_dataset(folder / f"{k}.dcm", np.zeros((4, 4)), position=(0, 0, z), series_uid=series_uid)
    vol = read_study(folder)
    text = " | ".join(vol.warnings)
    assert "uneven slice spacing" in text and "1.00" in text and "2.00" in text
    assert "missing" not in text  # a shorter step is not a gap


def test_gantry_tilt_is_reported_and_spacing_is_along_the_normal(tmp_path: Path) -> None:
    tilt = np.radians(15.0)
    orientation = (1.0, 0.0, 0.0, 0.0, np.cos(tilt), -np.sin(tilt))
    # Positions advance along the table (z), not along the tilted normal: a sheared stack.
    write_ct_series(
        tmp_path / "s",
        n=5,
        orientation=orientation,
        step=np.array([0.0, 0.0, 4.0]),
        extra={"GantryDetectorTilt": 15},
    )
    vol = read_study(tmp_path / "s")
    text = " | ".join(vol.warnings)
    assert "gantry tilt" in text and "15.0°" in text
    assert vol.meta["dicom"]["gantry_tilt_deg"] == pytest.approx(15.0, abs=0.01)
    assert vol.spacing[2] == pytest.approx(4.0 * np.cos(tilt), abs=1e-3)
    ref = sitk_series(tmp_path / "s")
    # SimpleITK's direction and origin agree; its spacing is the straight-line step instead.
    np.testing.assert_allclose(vol.direction.ravel(), ref.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(vol.origin, ref.GetOrigin(), atol=1e-4)
    assert ref.GetSpacing()[2] == pytest.approx(4.0, abs=1e-3)


def test_two_series_need_a_choice(tmp_path: Path) -> None:
    folder = tmp_path / "two"
    write_ct_series(folder / "a", n=3, description="arterial", series_number=3)
    write_ct_series(folder / "b", n=5, description="native", series_number=2, seed=1)
    with pytest.raises(SeriesChoiceError) as err:
        read_study(folder)
    message = str(err.value)
    assert str(folder) in message and "arterial" in message and "native" in message
    assert [s.description for s in err.value.series] == ["native", "arterial"]  # most slices first
    assert [s.n_slices for s in err.value.series] == [5, 3]
    found = discover_series(folder)
    assert [s.uid for s in found] == [s.uid for s in err.value.series]
    assert read_study(folder, series=1).meta["series_description"] == "arterial"
    assert read_study(folder, series=found[0].uid).shape[0] == 5
    with pytest.raises(StudyReadError, match="outside 0..1"):
        read_study(folder, series=7)
    with pytest.raises(StudyReadError, match="no series with UID"):
        read_study(folder, series="1.2.3.4")


def test_empty_series_uid_still_opens_as_one_volume(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "s", n=4, series_uid="", study_uid="")
    vol = read_study(tmp_path / "s")
    assert vol.shape[0] == 4
    assert any("SeriesInstanceUID is empty" in w for w in vol.warnings)
    assert_same_as_sitk(vol, sitk_series(tmp_path / "s"))


def test_copies_at_the_same_position_are_split_by_transfer_syntax(tmp_path: Path) -> None:
    folder = tmp_path / "copies"
    uid = generate_uid()
    pixels = np.arange(20, dtype=np.int16).reshape(4, 5)
    for name, ts in (("unc", ExplicitVRLittleEndian), ("imp", ImplicitVRLittleEndian)):
        ct_dataset(folder / name, pixels, position=(0, 0, 0), series_uid=uid, transfer_syntax=ts)
    found = discover_series(folder)
    assert len(found) == 2 and all(s.n_slices == 1 and s.uid == uid for s in found)
    assert len({s.key for s in found}) == 2
    assert all("not one volume" in " ".join(s.warnings) for s in found)
    with pytest.raises(SeriesChoiceError, match="names 2 series"):
        read_study(folder, series=uid)
    a, b = (read_study(folder, series=s.key) for s in found)
    np.testing.assert_array_equal(a.hu, b.hu)


def test_inseparable_copies_become_one_series_per_file(tmp_path: Path) -> None:
    folder = tmp_path / "copies"
    uid = generate_uid()
    for k in range(3):
        ct_dataset(folder / f"f{k}", np.full((3, 3), k, np.int16), position=(0, 0, 0), series_uid=uid)
    found = discover_series(folder)
    assert sorted(s.key for s in found) == [f"{uid}#f{k}" for k in range(3)]


def test_localizer_and_other_orientation_and_non_dicom_are_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    paths, stored = write_ct_series(folder, n=4)
    uid = pydicom.dcmread(paths[0]).SeriesInstanceUID
    ct_dataset(
        folder / "scout.dcm",
        np.zeros((12, 10)),
        position=(0, 0, 0),
        series_uid=uid,
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
    )
    ct_dataset(
        folder / "coronal.dcm",
        np.zeros((12, 10)),
        position=(0, 0, 0),
        series_uid=uid,
        orientation=(1, 0, 0, 0, 0, -1),
    )
    (folder / "notes.txt").write_text("not an image")
    (folder / "DICOMDIR_like").write_bytes(b"\0" * 300)
    vol = read_study(folder)
    assert vol.shape[0] == 4
    text = " | ".join(vol.warnings)
    assert "localizer" in text and "scout.dcm" in text
    assert "orientation differs" in text and "coronal.dcm" in text
    assert "skipped 2 file(s), not DICOM: DICOMDIR_like, notes.txt" in text


def test_object_without_pixels_is_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    write_ct_series(folder, n=2)
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.PixelData
    ds.save_as(folder / "nopix.dcm")
    vol = read_study(folder)
    assert vol.shape[0] == 2
    assert any("no pixel data" in w and "nopix.dcm" in w for w in vol.warnings)


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(StudyReadError, match="empty") as err:
        read_study(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(err.value)
    assert discover_series(tmp_path / "empty") == []


def test_folder_without_dicom(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("hello")
    (folder / "b.bin").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(StudyReadError, match="no DICOM images among its 2 file") as err:
        read_study(folder)
    assert "a.txt" in str(err.value)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(StudyReadError, match="no such file or folder"):
        read_study(tmp_path / "nothing")


def test_truncated_dicom_names_the_file() -> None:
    path = get_testdata_file("MR_truncated.dcm")
    with pytest.raises(StudyReadError, match="truncated") as err:
        read_study(path)
    assert "MR_truncated.dcm" in str(err.value)


def test_truncated_file_inside_a_series(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    paths, _ = write_ct_series(folder, n=3)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[:-50])
    with pytest.raises(StudyReadError, match="truncated") as err:
        read_study(folder)
    assert paths[1].name in str(err.value)


def test_non_ct_reads_with_a_warning() -> None:
    path = get_testdata_file("MR_small.dcm")
    vol = read_study(path)
    assert vol.meta["modality"] == "MR"
    assert any("not CT" in w and "made for CT" in w for w in vol.warnings)
    np.testing.assert_array_equal(vol.hu, sitk.GetArrayFromImage(sitk.ReadImage(path)).astype(np.float32))


def test_ct_small_same_hu_as_simpleitk() -> None:
    path = get_testdata_file("CT_small.dcm")
    vol = read_study(path)
    assert_same_as_sitk(vol, sitk.ReadImage(path))
    assert vol.meta["source_path"] == str(path)


def test_jpeg2000_decodes_like_simpleitk() -> None:
    path = get_testdata_file("JPEG2000.dcm")
    vol = read_study(path)
    ref = sitk.ReadImage(path)
    np.testing.assert_array_equal(vol.hu, sitk.GetArrayFromImage(ref).astype(np.float32))
    assert vol.shape == (1, 1024, 256)


def test_undecodable_syntax_names_the_package(tmp_path: Path) -> None:
    # Claims JPEG-LS but holds bytes no decoder accepts: both pydicom and SimpleITK must fail.
    path = tmp_path / "bad_jls.dcm"
    ct_dataset(path, np.zeros((4, 4)), position=(0, 0, 0))
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8 not a JPEG-LS stream \xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(StudyReadError) as err:
        read_study(path)
    message = str(err.value)
    assert "bad_jls.dcm" in message and "JPEG-LS" in message and "pyjpegls" in message


def test_synthetic_and_phantom_flags(tmp_path: Path) -> None:
    synth = ct_dataset(
        tmp_path / "syn.dcm",
        np.zeros((4, 4)),
        position=(0, 0, 0),
        image_type=("DERIVED", "SECONDARY", "AXIAL"),
        extra={"SyntheticData": "YES"},
    )
    assert read_study(synth).meta.get("synthetic") is True
    plain = ct_dataset(tmp_path / "plain.dcm", np.zeros((4, 4)), position=(0, 0, 0))
    assert "synthetic" not in read_study(plain).meta and "phantom" not in read_study(plain).meta
    ph = ct_dataset(
        tmp_path / "ph.dcm", np.zeros((4, 4)), position=(0, 0, 0), description="PHANTOM native seed 1"
    )
    assert read_study(ph).meta.get("phantom") is True
    ph2 = ct_dataset(
        tmp_path / "ph2.dcm", np.zeros((4, 4)), position=(0, 0, 0), extra={"Manufacturer": "MFM Phantom"}
    )
    assert read_study(ph2).meta.get("phantom") is True


def test_header_record_and_geometry_of_one_file() -> None:
    header = read_header(get_testdata_file("CT_small.dcm"))
    geo = stack_geometry([header])
    assert geo.spacing == pytest.approx((0.661468, 0.661468, 5.0))
    assert geo.warnings == []


def test_describe_folder_lists_series_and_skips(tmp_path: Path) -> None:
    folder = tmp_path / "two"
    write_ct_series(folder / "a", n=2, description="arterial")
    write_ct_series(folder / "b", n=3, description="native", seed=3)
    shutil.copy(get_testdata_file("MR_truncated.dcm"), folder / "broken.dcm")
    (folder / "readme.txt").write_text("x")
    doc = describe_study(folder)
    assert doc["kind"] == "folder" and doc["files_examined"] == 7
    assert [e["description"] for e in doc["series"]][:2] == ["native", "arterial"]
    assert doc["series"][0]["size_xyz"] == [10, 12, 3]
    assert any(s["reason"] == "not DICOM" for s in doc["skipped"])
    broken = [e for e in doc["series"] if e["error"]]
    assert len(broken) == 1 and "truncated" in broken[0]["error"]


def test_discovered_files_are_in_slice_order(tmp_path: Path) -> None:
    paths, _ = write_ct_series(tmp_path / "s", n=5)  # names shuffled against positions
    (info,) = discover_series(tmp_path / "s")
    assert info.files == paths  # paths are returned in position order


def test_multiframe_file_reads_every_frame(tmp_path: Path) -> None:
    path = ct_dataset(tmp_path / "mf.dcm", np.zeros((4, 5)), position=(0, 0, 0))
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 3
    frames = np.arange(60, dtype="<i2").reshape(3, 4, 5)
    ds.PixelData = frames.tobytes()
    ds.save_as(path)
    vol = read_study(path)
    np.testing.assert_array_equal(vol.hu, frames.astype(np.float32) - 1024)
    assert any("multi-frame" in w for w in vol.warnings)


def test_localizer_opened_by_name_reads_with_a_warning(tmp_path: Path) -> None:
    path = ct_dataset(
        tmp_path / "loc.dcm",
        np.ones((4, 5)),
        position=(0, 0, 0),
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
    )
    vol = read_study(path)
    assert vol.shape == (1, 4, 5) and any("localizer" in w for w in vol.warnings)
