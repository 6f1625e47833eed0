"""Study writers: image files and DICOM series, checked against SimpleITK, pydicom and dciodvfy."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from conftest import shared_subfolder

from mfm_engine.errors import MFMError, StudyWriteError
from mfm_engine.io.dicom_write import new_study_meta, write_dicom_series
from mfm_engine.io.image_write import sidecar_path, write_image
from mfm_engine.io.write import write_study
from mfm_engine.volume import Volume

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
PROVENANCE = {
    "model": "tiny-flow",
    "checkpoint": "/models/tiny-flow.safetensors",
    "kind": "flow",
    "direction": "c2n",
    "solver": "heun",
    "steps": 8,
    "nfe": 16,
}


def rotation(axis: str, degrees: float) -> np.ndarray:
    """A right-handed rotation matrix about x, y or z."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


OBLIQUE = rotation("z", 20.0) @ rotation("x", 12.0)


def hu_pattern(shape=(4, 32, 32), seed: int = 0) -> np.ndarray:
    """Fractional HU covering air to bone, different on every slice (catches slice-order mistakes)."""
    rng = np.random.default_rng(seed)
    hu = rng.uniform(-1000.0, 1500.0, size=shape).astype(np.float32)
    hu[:, 0, 0] = np.arange(shape[0]) * 100.0 - 150.0
    return hu


def source_volume(z: int = 4, *, direction: np.ndarray | None = None, phase: str = "arterial") -> Volume:
    """A small 'real' source series with the DICOM identity a reader would have stored."""
    dicom = new_study_meta(patient_name="Doe^Jane", patient_id="PID-0042", study_description="CT ABDOMEN")
    dicom["patient"].update({"PatientBirthDate": "19600102", "PatientSex": "F"})
    dicom["study"].update({"AccessionNumber": "ACC123", "StudyID": "77"})
    dicom.update(
        {
            "series_instance_uid": "1.2.826.0.1.3680043.8.498.100",
            "sop_class_uid": CT_IMAGE_STORAGE,
            "sop_instance_uids": [f"1.2.826.0.1.3680043.8.498.100.{k + 1}" for k in range(z)],
            "body_part_examined": "ABDOMEN",
            # 3 mm thick slices reconstructed every 2.5 mm: thickness is not the step.
            "image": {"SliceThickness": "3", "ConvolutionKernel": ["Br38f", "3"]},
            "series": {"PatientPosition": "FFS"},
        }
    )
    meta = {"modality": "CT", "phase": phase, "series_description": "ART 1.0 B30f", "dicom": dicom}
    return Volume(
        hu_pattern((z, 32, 32)),
        spacing=(0.75, 0.8, 2.5),
        origin=(-120.5, -88.25, 310.0),
        direction=np.eye(3) if direction is None else direction,
        meta=meta,
    )


def synthetic_from(src: Volume, phase: str = "native") -> Volume:
    """What the translator hands back: the source's meta plus synthetic flags and provenance."""
    return src.with_hu(src.hu - 35.25, synthetic=True, phase=phase, provenance=dict(PROVENANCE))


def read_series_sitk(folder: Path) -> sitk.Image:
    """The independent reference: GDCM sorts the files, ITK builds the geometry."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def assert_geometry(image: sitk.Image, vol: Volume, tol: float = 1e-4) -> None:
    np.testing.assert_allclose(image.GetSpacing(), vol.spacing, atol=tol)
    np.testing.assert_allclose(image.GetOrigin(), vol.origin, atol=tol)
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), vol.direction, atol=tol)


def leftovers(folder: Path) -> list[str]:
    """Hidden temporary names the writers use; none may survive a write, good or bad."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def headers(files: list[Path]) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(f) for f in files]


# ---------------------------------------------------------------------------------------------
# Image files
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.nii", "ct.nrrd", "ct.mha"])
def test_image_round_trip_float_keeps_hu_and_oblique_geometry(tmp_path: Path, name: str) -> None:
    vol = source_volume(direction=OBLIQUE)
    out = write_image(vol, tmp_path / name)
    assert out == tmp_path / name
    image = sitk.ReadImage(str(out))
    assert image.GetPixelID() == sitk.sitkFloat32  # fractional HU: stored as float, exactly
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), vol.hu)
    assert_geometry(image, vol)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["labels.nii.gz", "labels.nrrd", "labels.mha"])
def test_integral_volume_is_stored_as_int16_losslessly(tmp_path: Path, name: str) -> None:
    labels = np.random.default_rng(1).integers(-1024, 3000, size=(4, 32, 32)).astype(np.float32)
    vol = Volume(labels, spacing=(0.7, 0.7, 3.0), origin=(1.0, 2.0, 3.0), direction=rotation("z", 90))
    image = sitk.ReadImage(str(write_image(vol, tmp_path / name)))
    assert image.GetPixelID() == sitk.sitkInt16
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), labels)
    assert_geometry(image, vol)


def test_forced_int16_rounds_within_one_hu_and_reports_clipping(tmp_path: Path) -> None:
    vol = source_volume()
    vol.hu[0, 5, 5] = 40000.0  # beyond int16
    out = write_image(vol, tmp_path / "ct.nii.gz", dtype="int16")
    back = sitk.GetArrayFromImage(sitk.ReadImage(str(out))).astype(np.float32)
    inside = vol.hu < 32767
    assert np.abs(back[inside] - vol.hu[inside]).max() <= 0.5
    assert back[0, 5, 5] == 32767
    side = json.loads(sidecar_path(out).read_text(encoding="utf-8"))
    assert side["stored_dtype"] == "int16"
    assert side["clipped_voxels"] == 1


def test_synthetic_nifti_has_short_description_and_sidecar_provenance(tmp_path: Path) -> None:
    vol = synthetic_from(source_volume())
    out = write_image(vol, tmp_path / "syn.nii.gz")
    image = sitk.ReadImage(str(out))
    assert image.GetMetaData("descrip") == "SYNTHETIC native by tiny-flow heunx8"
    side_file = tmp_path / "syn.json"
    assert sidecar_path(out) == side_file
    side = json.loads(side_file.read_text(encoding="utf-8"))
    assert side["meta"]["synthetic"] is True
    assert side["meta"]["provenance"] == PROVENANCE
    assert side["meta"]["dicom"]["sop_instance_uids"] == vol.meta["dicom"]["sop_instance_uids"]
    assert side["spacing_xyz_mm"] == list(vol.spacing)
    assert side["image"] == "syn.nii.gz"


def test_nifti_description_fits_the_80_byte_field(tmp_path: Path) -> None:
    vol = synthetic_from(source_volume())
    vol.meta["provenance"]["model"] = "a-very-long-model-name-" * 6
    out = write_image(vol, tmp_path / "syn.nii")
    descrip = sitk.ReadImage(str(out)).GetMetaData("descrip")
    assert descrip.startswith("SYNTHETIC native by a-very-long-model-name")
    assert len(descrip.encode()) < 80
    with open(out, "rb") as fh:  # NIfTI-1: descrip is char[80] at byte 148
        header = fh.read(348)
    assert int.from_bytes(header[:4], "little") == 348
    assert header[148:228].rstrip(b"\0").decode() == descrip


def test_phantom_image_description(tmp_path: Path) -> None:
    vol = Volume(hu_pattern(), meta={"phantom": True, "phantom_seed": 7, "phase": "arterial"})
    image = sitk.ReadImage(str(write_image(vol, tmp_path / "contrast.mha")))
    assert image.GetMetaData("ITK_FileNotes") == "PHANTOM arterial seed 7"


def test_image_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    target = tmp_path / "ct.nii.gz"
    write_image(source_volume(), target)
    with pytest.raises(StudyWriteError, match="already exists"):
        write_image(source_volume(), target)
    newer = source_volume().with_hu(np.zeros((4, 32, 32), np.float32))
    write_image(newer, target, overwrite=True)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(target))), 0)
    assert leftovers(tmp_path) == []


def test_image_write_cancelled_leaves_nothing(tmp_path: Path) -> None:
    class Cancelled(Exception):
        pass

    def cancel(i: int, n: int) -> None:
        raise Cancelled

    with pytest.raises(Cancelled):
        write_image(source_volume(), tmp_path / "ct.nii.gz", progress=cancel)
    assert list(tmp_path.iterdir()) == []


def test_image_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    vol = source_volume()
    with pytest.raises(StudyWriteError, match=r"ct\.png.*unknown image file type"):
        write_image(vol, tmp_path / "ct.png")
    vol.hu[1, 2, 3] = np.nan
    with pytest.raises(StudyWriteError, match=r"ct\.nii\.gz.*1 NaN"):
        write_image(vol, tmp_path / "ct.nii.gz")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# DICOM series
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "direction",
    [np.eye(3), rotation("z", 30.0), OBLIQUE],
    ids=["axial", "rotated-axial", "oblique"],
)
def test_dicom_round_trip_through_simpleitk(tmp_path: Path, direction: np.ndarray) -> None:
    src = source_volume(direction=direction)
    syn = synthetic_from(src)
    files = write_dicom_series(syn, tmp_path / "syn", source=src)
    assert [f.parent for f in files] == [tmp_path / "syn"] * 4
    image = read_series_sitk(tmp_path / "syn")
    back = sitk.GetArrayFromImage(image).astype(np.float32)
    assert back.shape == syn.shape
    assert np.abs(back - syn.hu).max() <= 0.5  # rounding to whole HU, nothing more
    assert_geometry(image, syn)


def test_left_handed_grid_comes_back_z_flipped_at_the_same_positions(tmp_path: Path) -> None:
    flip = np.diag([1.0, 1.0, -1.0])  # slices run head-to-feet while rows×cols points to the head
    vol = source_volume(direction=flip)
    write_dicom_series(vol, tmp_path / "s")
    image = read_series_sitk(tmp_path / "s")
    back = sitk.GetArrayFromImage(image).astype(np.float32)
    assert np.abs(back - vol.hu[::-1]).max() <= 0.5
    np.testing.assert_allclose(image.GetOrigin(), vol.index_to_physical((0, 0, vol.shape[0] - 1)), atol=1e-4)


def test_gantry_tilted_grid_keeps_every_slice_position(tmp_path: Path) -> None:
    t = math.radians(15.0)
    tilted = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, math.sin(t)], [0.0, 0.0, math.cos(t)]])
    vol = source_volume(direction=tilted)
    files = write_dicom_series(vol, tmp_path / "s")
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        np.testing.assert_allclose(
            [float(v) for v in ds.ImagePositionPatient], vol.index_to_physical((0, 0, k)), atol=1e-4
        )
        np.testing.assert_allclose(
            [float(v) for v in ds.ImageOrientationPatient], [1, 0, 0, 0, 1, 0], atol=1e-9
        )


def test_synthetic_series_headers(tmp_path: Path) -> None:
    src = source_volume()
    syn = synthetic_from(src)
    files = write_dicom_series(syn, tmp_path / "syn", source=src)
    dss = headers(files)
    info = src.meta["dicom"]
    for k, ds in enumerate(dss):
        assert ds.SOPClassUID == CT_IMAGE_STORAGE
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"]
        assert ds.SyntheticData == "YES"
        assert ds.BurnedInAnnotation == "NO"
        assert ds.SeriesDescription.startswith("SYNTHETIC")
        assert ds.SeriesDescription == "SYNTHETIC native (MFM tiny-flow heunx8)"
        for word in ("tiny-flow", "heun", "steps 8"):
            assert word in ds.DerivationDescription
        assert ds.DerivationCodeSequence[0].CodingSchemeDesignator == "99MFM"
        ref = ds.SourceImageSequence[0]
        assert ref.ReferencedSOPClassUID == CT_IMAGE_STORAGE
        assert ref.ReferencedSOPInstanceUID == info["sop_instance_uids"][k]
        assert ref.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
        assert ds.StudyInstanceUID == info["study"]["StudyInstanceUID"]
        assert ds.FrameOfReferenceUID == info["frame_of_reference_uid"]
        assert str(ds.PatientName) == "Doe^Jane"
        assert ds.PatientID == "PID-0042"
        assert ds.PatientBirthDate == "19600102"
        assert ds.AccessionNumber == "ACC123"
        assert ds.StudyID == "77"
        assert ds.BodyPartExamined == "ABDOMEN"
        assert ds.InstanceNumber == k + 1
        assert ds.RescaleSlope == 1 and ds.RescaleIntercept == 0 and ds.PixelRepresentation == 1
        assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (40.0, 400.0)
        assert [float(v) for v in ds.PixelSpacing] == [0.8, 0.75]  # (row = y, column = x)
        # The source's thickness, not the step between slices.
        assert float(ds.SliceThickness) == 3.0 and float(ds.SpacingBetweenSlices) == 2.5
        assert ds.PatientPosition == "FFS" and list(ds.ConvolutionKernel) == ["Br38f", "3"]
        assert "ContrastBolusAgent" not in ds  # a synthetic native shows no contrast agent
        assert "not acquired" in ds.ImageComments
        assert ds.ContributingEquipmentSequence[0].PurposeOfReferenceCodeSequence[0].CodeValue == "109100"
    series_uids = {ds.SeriesInstanceUID for ds in dss}
    assert len(series_uids) == 1 and series_uids != {info["series_instance_uid"]}
    sop_uids = [ds.SOPInstanceUID for ds in dss]
    assert len(set(sop_uids)) == len(sop_uids)
    assert not set(sop_uids) & set(info["sop_instance_uids"])
    assert all(ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID for ds in dss)


def test_synthetic_contrast_phase_says_the_enhancement_is_virtual(tmp_path: Path) -> None:
    src = source_volume(phase="native")
    syn = synthetic_from(src, phase="arterial")
    syn.meta["provenance"]["direction"] = "n2c"
    ds = headers(write_dicom_series(syn, tmp_path / "syn"))[0]  # identity from the volume's own meta
    assert ds.ContrastBolusAgent == "SYNTHETIC (virtual enhancement)"
    assert ds.SeriesDescription.startswith("SYNTHETIC arterial")
    assert ds.StudyInstanceUID == src.meta["dicom"]["study"]["StudyInstanceUID"]
    assert "from native to contrast" in ds.DerivationDescription


def test_custom_description_of_synthetic_series_still_starts_with_synthetic(tmp_path: Path) -> None:
    syn = synthetic_from(source_volume())
    ds = headers(write_dicom_series(syn, tmp_path / "s", series_description="VNC try 2"))[0]
    assert ds.SeriesDescription == "SYNTHETIC VNC try 2"


def test_phantom_series_headers(tmp_path: Path) -> None:
    vol = Volume(
        hu_pattern(),
        spacing=(0.75, 0.75, 3.0),
        meta={"phantom": True, "phantom_seed": 3, "phase": "arterial"},
    )
    dss = headers(write_dicom_series(vol, tmp_path / "contrast"))
    ds = dss[0]
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert ds.SyntheticData == "YES"
    assert ds.Manufacturer == "MFM Studio procedural phantom"
    assert ds.SeriesDescription == "PHANTOM arterial seed 3"
    assert "not a patient" in ds.ImageComments
    assert ds.ContrastBolusAgent == "PHANTOM (simulated enhancement)"
    assert ds.PatientID == "PHANTOM-MFM"
    assert ds.SeriesNumber == 901


def test_series_without_source_identity_start_a_new_study(tmp_path: Path) -> None:
    a = headers(write_dicom_series(Volume(hu_pattern()), tmp_path / "a"))
    b = headers(write_dicom_series(Volume(hu_pattern()), tmp_path / "b"))
    assert a[0].PatientID == "ANONYMOUS"
    assert a[0].StudyInstanceUID != b[0].StudyInstanceUID
    assert a[0].FrameOfReferenceUID != b[0].FrameOfReferenceUID
    assert "SyntheticData" not in a[0] and "SourceImageSequence" not in a[0]


def test_shared_study_meta_puts_series_in_one_study(tmp_path: Path) -> None:
    study = new_study_meta(patient_name="PHANTOM^MFM", patient_id="PHANTOM-5")
    native = Volume(hu_pattern(), meta={"phantom": True, "phase": "native", "dicom": study})
    contrast = Volume(hu_pattern(seed=2), meta={"phantom": True, "phase": "arterial", "dicom": study})
    n = headers(write_dicom_series(native, tmp_path / "native", series_number=2))[0]
    c = headers(write_dicom_series(contrast, tmp_path / "contrast", series_number=3))[0]
    assert n.StudyInstanceUID == c.StudyInstanceUID == study["study"]["StudyInstanceUID"]
    assert n.FrameOfReferenceUID == c.FrameOfReferenceUID == study["frame_of_reference_uid"]
    assert n.SeriesInstanceUID != c.SeriesInstanceUID
    assert "ContrastBolusAgent" not in n


def test_multiframe_source_references_name_the_frame(tmp_path: Path) -> None:
    src = source_volume()
    src.meta["dicom"]["sop_instance_uids"] = ["1.2.3.4"] * 4  # one multi-frame instance
    dss = headers(write_dicom_series(synthetic_from(src), tmp_path / "s"))
    assert [ds.SourceImageSequence[0].ReferencedFrameNumber for ds in dss] == [1, 2, 3, 4]


def test_invalid_source_values_are_dropped_without_warnings(tmp_path: Path) -> None:
    src = source_volume()
    src.meta["dicom"]["patient"]["PatientSex"] = "female, probably"  # not a CS value
    ds = headers(write_dicom_series(synthetic_from(src), tmp_path / "s", source=src))[0]
    assert ds.PatientSex == ""  # Type 2: present, empty = unknown
    assert ds.PatientID == "PID-0042"


def test_out_of_range_values_are_clipped_with_a_note(tmp_path: Path) -> None:
    vol = source_volume()
    vol.hu[2, 1, 1] = 50000.0
    files = write_dicom_series(vol, tmp_path / "s")
    ds = pydicom.dcmread(files[2])
    assert ds.pixel_array[1, 1] == 32767
    assert "1 voxel(s) outside the int16 range were clipped" in ds.ImageComments


def test_dicom_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    target = tmp_path / "series"
    write_dicom_series(source_volume(z=4), target)
    with pytest.raises(StudyWriteError, match="not empty"):
        write_dicom_series(source_volume(z=3), target)
    files = write_dicom_series(source_volume(z=3), target, overwrite=True)
    assert sorted(target.iterdir()) == sorted(files) and len(files) == 3
    assert leftovers(tmp_path) == []


def test_dicom_overwrite_never_replaces_an_unrelated_folder(tmp_path: Path) -> None:
    target = tmp_path / "home"
    target.mkdir()
    (target / "thesis.tex").write_text("precious", encoding="utf-8")
    with pytest.raises(StudyWriteError, match="other than .dcm"):
        write_dicom_series(source_volume(), target, overwrite=True)
    assert (target / "thesis.tex").read_text(encoding="utf-8") == "precious"
    assert leftovers(tmp_path) == []


def test_dicom_into_an_existing_empty_folder(tmp_path: Path) -> None:
    target = tmp_path / "empty"
    target.mkdir()
    assert len(write_dicom_series(source_volume(), target)) == 4


def test_dicom_write_aborted_midway_leaves_nothing(tmp_path: Path) -> None:
    class Cancelled(Exception):
        pass

    seen: list[tuple[int, int]] = []

    def cancel_after_two(i: int, n: int) -> None:
        seen.append((i, n))
        if i == 2:
            raise Cancelled

    with pytest.raises(Cancelled):
        write_dicom_series(source_volume(), tmp_path / "s", progress=cancel_after_two)
    assert seen == [(1, 4), (2, 4)]
    assert list(tmp_path.iterdir()) == []

    # Over a previous series: the abort keeps the old series whole.
    old = write_dicom_series(source_volume(z=3), tmp_path / "s")
    with pytest.raises(Cancelled):
        write_dicom_series(source_volume(z=4), tmp_path / "s", overwrite=True, progress=cancel_after_two)
    assert sorted((tmp_path / "s").iterdir()) == sorted(old)
    assert leftovers(tmp_path) == []


def test_dicom_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    in_plane = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    with pytest.raises(StudyWriteError, match="60°"):
        write_dicom_series(source_volume(direction=in_plane), tmp_path / "s")
    not_unit = np.diag([1.0, 2.0, 1.0])
    with pytest.raises(StudyWriteError, match="unit, perpendicular"):
        write_dicom_series(source_volume(direction=not_unit), tmp_path / "s")
    vol = source_volume()
    vol.hu[0] = np.inf
    with pytest.raises(StudyWriteError, match="infinite"):
        write_dicom_series(vol, tmp_path / "s")
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(StudyWriteError, match="not a folder"):
        write_dicom_series(source_volume(), tmp_path / "file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


# dicom3tools' dictionary (the Debian 2022 build CI installs) predates Synthetic Data (0008,001C),
# a standard SOP Common attribute (PS3.3 C.12.1) the issue requires; it reports that one attribute
# as unknown. Every other error counts.
_UNKNOWN_TO_OLD_DCIODVFY = "(0x0008,0x001c)"


def dciodvfy_errors(path: Path) -> list[str]:
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy not installed (Debian: apt-get install dicom3tools)")
    out = subprocess.run([exe, str(path)], capture_output=True, text=True, check=False)
    lines = (out.stdout + out.stderr).splitlines()
    return [ln for ln in lines if ln.startswith("Error") and _UNKNOWN_TO_OLD_DCIODVFY not in ln]


@pytest.mark.parametrize("kind", ["synthetic-native", "synthetic-arterial", "phantom", "plain", "oblique"])
def test_dciodvfy_finds_no_errors(tmp_path: Path, kind: str) -> None:
    src = source_volume(direction=OBLIQUE if kind == "oblique" else None)
    vol = {
        "synthetic-native": synthetic_from(src),
        "synthetic-arterial": synthetic_from(source_volume(phase="native"), phase="arterial"),
        "phantom": Volume(hu_pattern(), meta={"phantom": True, "phantom_seed": 1, "phase": "arterial"}),
        "plain": Volume(hu_pattern(), meta={"phase": "native"}),
        "oblique": src,
    }[kind]
    files = write_dicom_series(vol, tmp_path / "s", source=src if kind == "synthetic-native" else None)
    for f in (files[0], files[-1]):
        assert dciodvfy_errors(f) == []


# ---------------------------------------------------------------------------------------------
# write_study dispatch
# ---------------------------------------------------------------------------------------------
def test_write_study_dispatches_on_the_path(tmp_path: Path) -> None:
    vol = synthetic_from(source_volume())
    nii = write_study(vol, tmp_path / "syn.nii.gz")
    assert nii == tmp_path / "syn.nii.gz" and nii.is_file()
    files = write_study(vol, tmp_path / "syn_dicom", series_description="VNC")
    assert isinstance(files, list) and len(files) == 4
    assert pydicom.dcmread(files[0]).SeriesDescription == "SYNTHETIC VNC"
    forced = write_study(vol, tmp_path / "forced", format="nifti", series_number=5)
    assert forced == tmp_path / "forced.nii.gz" and forced.is_file()
    assert write_study(vol, tmp_path / "x.mha", format="mha").is_file()


def test_write_study_bad_format_is_a_clear_error(tmp_path: Path) -> None:
    vol = source_volume()
    with pytest.raises(MFMError, match="unknown output format"):
        write_study(vol, tmp_path / "a", format="png")
    with pytest.raises(MFMError, match="folder of slices"):
        write_study(vol, tmp_path / "a.nii.gz", format="dicom")
    with pytest.raises(MFMError, match="does not match"):
        write_study(vol, tmp_path / "a.nrrd", format="nifti")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Through the project's own reader, once it exists
# ---------------------------------------------------------------------------------------------
def _read_study():
    study = pytest.importorskip("mfm_engine.io.study")
    read = getattr(study, "read_study", None)
    if read is None:
        pytest.skip("mfm_engine.io.study.read_study not available yet")
    return read


@pytest.mark.parametrize("target", ["syn_dicom", "syn.nii.gz"])
def test_round_trip_through_read_study(tmp_path: Path, target: str) -> None:
    read_study = _read_study()
    src = source_volume(direction=OBLIQUE)
    syn = synthetic_from(src)
    write_study(syn, tmp_path / target, source=src)
    back = read_study(tmp_path / target)
    assert back.shape == syn.shape
    assert np.abs(back.hu - syn.hu).max() <= 0.5
    assert back.same_geometry(syn, tol_mm=1e-3)
    if target == "syn_dicom":
        assert back.is_synthetic
        assert (
            back.meta["dicom"]["study"]["StudyInstanceUID"] == src.meta["dicom"]["study"]["StudyInstanceUID"]
        )


@pytest.mark.parametrize(
    "folder",
    ["totalseg_portalvenous_abdomen_dicom_j2k", "dcm_qa_ct_GE_tilt_head", "dcmqi_liver_ct_3slice"],
)
def test_synthetic_from_real_series_validates_and_round_trips(tmp_path: Path, folder: str) -> None:
    """Real headers (empty UIDs, tilt, odd names) must still give a valid, faithful series."""
    read_study = _read_study()
    src = read_study(shared_subfolder(folder))
    syn = synthetic_from(src)
    files = write_study(syn, tmp_path / "syn", source=src)
    assert dciodvfy_errors(files[0]) == []
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    info = src.meta["dicom"]
    if info["study"].get("StudyInstanceUID"):
        assert ds.StudyInstanceUID == info["study"]["StudyInstanceUID"]
    if all(info["sop_instance_uids"]):
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == info["sop_instance_uids"][0]
    else:  # the J2K series ships empty UIDs: nothing valid to reference
        assert "SourceImageSequence" not in ds
    image = read_series_sitk(tmp_path / "syn")
    assert np.abs(sitk.GetArrayFromImage(image) - syn.hu).max() <= 0.5
    # SimpleITK sees the synthetic stack exactly where it sees the scanner's (uneven, tilted or not).
    reader = sitk.ImageSeriesReader()  # the source files as read (GDCM finds no series in empty UIDs)
    reader.SetFileNames(info["files"])
    reference = reader.Execute()
    for get in (sitk.Image.GetSize, sitk.Image.GetSpacing, sitk.Image.GetOrigin, sitk.Image.GetDirection):
        np.testing.assert_allclose(get(image), get(reference), atol=1e-3)


def test_phantom_series_reads_back_as_a_phantom(tmp_path: Path) -> None:
    read_study = _read_study()
    vol = Volume(
        hu_pattern(), spacing=(0.75, 0.75, 3.0), meta={"phantom": True, "phantom_seed": 4, "phase": "native"}
    )
    write_study(vol, tmp_path / "native")
    back = read_study(tmp_path / "native")
    assert back.meta.get("phantom") is True
    assert not back.is_synthetic
    assert back.meta["series_description"] == "PHANTOM native seed 4"
