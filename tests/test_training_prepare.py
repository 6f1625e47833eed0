"""prepare → slice cache: pairing, dropped pairs, registration, resumable writing, corrupt caches."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from mfm_engine.intensity import hu_to_model
from mfm_engine.io.image_write import write_image
from mfm_engine.phantom import LEGEND, make_phantom_pair
from mfm_engine.volume import Volume
from training.__main__ import main
from training.cache import SliceCache
from training.errors import CacheError
from training.pairs import PairSpec, read_manifest
from training.phantom_data import PhantomPlan, phantom_to_cache, phantom_to_files
from training.prepare import prepare
from training.registration import register_pair

pytestmark = pytest.mark.usefixtures("single_torch_thread")


TINY = PhantomPlan(patients=3, seed0=2000, slices=4, size=64, motion_mm=0.0, splits=(1, 1, 1))


def _sitk_hu(path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)


def test_phantom_files_prepare_into_a_cache(tmp_path):
    manifest = phantom_to_files(TINY, tmp_path / "files", progress=False)
    pairs = read_manifest(manifest)
    assert [p.split for p in pairs] == ["train", "test", "holdout"]
    report = prepare(pairs, tmp_path / "cache", registration="none", progress=False)
    assert len(report.entries) == 3 and not report.dropped
    assert all("not registered" in line for line in report.lines[:3])

    cache = SliceCache(tmp_path / "cache")
    assert [p.id for p in cache.split("test")] == ["phantom-02001"]
    assert cache.legend == LEGEND
    arr = cache.arrays("phantom-02000")
    # Independent reference: the files as SimpleITK reads them, clipped and scaled.
    files = tmp_path / "files" / "phantom-02000"
    np.testing.assert_allclose(arr["contrast"], hu_to_model(_sitk_hu(files / "contrast.nii.gz")), atol=1e-6)
    np.testing.assert_allclose(arr["native"], hu_to_model(_sitk_hu(files / "native.nii.gz")), atol=1e-6)
    assert arr["contrast"].min() >= -1.0 and arr["contrast"].max() <= 1.0
    np.testing.assert_array_equal(arr["labels"], _sitk_hu(files / "labels.nii.gz").astype(np.uint8))
    assert isinstance(arr["native"], np.memmap)
    assert (tmp_path / "cache" / "prepare_report.txt").read_text().count("\n") >= 3


def test_rerun_skips_finished_patients_and_redoes_unfinished_ones(tmp_path):
    manifest = phantom_to_files(TINY, tmp_path / "files", progress=False)
    pairs = read_manifest(manifest)
    prepare(pairs, tmp_path / "cache", registration="none", progress=False)
    # An interrupted patient: its arrays may exist, but without patient.json it is not finished.
    (tmp_path / "cache" / "patients" / "phantom-02001" / "patient.json").unlink()
    report = prepare(pairs, tmp_path / "cache", registration="none", progress=False)
    assert report.lines[0] == "phantom-02000: already in the cache, skipped [train]"
    assert report.lines[1].startswith("phantom-02001: not registered")
    assert report.lines[2].startswith("phantom-02002: already in the cache")
    SliceCache(tmp_path / "cache")
    with pytest.raises(CacheError, match="other settings.*registration"):
        prepare(pairs, tmp_path / "cache", registration="Affine", progress=False)


def test_registration_reduces_the_error(tmp_path):
    pair = make_phantom_pair(7, motion_mm=4.0, n_slices=6, size=64)
    write_image(pair.contrast, tmp_path / "p" / "contrast.nii.gz")
    write_image(pair.native, tmp_path / "p" / "native.nii.gz")
    spec = PairSpec("P", tmp_path / "p" / "contrast.nii.gz", tmp_path / "p" / "native.nii.gz", "train")
    report = prepare([spec], tmp_path / "cache", registration="SyNOnly", progress=False)
    info = report.entries[0].info
    assert info["mae_after_hu"] < info["mae_before_hu"]
    assert report.lines[0].startswith("P: registered (SyNOnly), body MAE ")
    registered = tmp_path / "cache" / "registered" / "P" / "contrast_registered.nii.gz"
    img = sitk.ReadImage(str(registered))
    assert img.GetSize() == (64, 64, 6)
    np.testing.assert_allclose(img.GetOrigin(), pair.native.origin, atol=1e-4)
    # What is cached is the registered contrast.
    np.testing.assert_allclose(
        SliceCache(tmp_path / "cache").arrays("P")["contrast"], hu_to_model(_sitk_hu(registered)), atol=1e-3
    )


def _vol(shape=(4, 32, 32), spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0), value=40.0):
    hu = np.full(shape, -1000.0, np.float32)
    z, y, x = shape
    hu[:, y // 4 : 3 * y // 4, x // 4 : 3 * x // 4] = value
    return Volume(hu, spacing, origin)


def test_mismatched_pairs_are_dropped_with_a_reason(tmp_path, capfd):
    cases = {
        "good": (_vol(value=40.0), _vol(value=45.0)),
        "origin": (_vol(origin=(0.0, 0.0, 10.0)), _vol()),
        "spacing": (_vol(spacing=(0.8, 0.8, 2.0)), _vol()),
        "size": (_vol(shape=(5, 32, 32)), _vol()),
        # A featureless image gives ANTs nothing to align: its registration really fails.
        "noreg": (
            Volume(np.full((4, 32, 32), 40.0, np.float32)),
            Volume(np.full((4, 32, 32), 40.0, np.float32)),
        ),
    }
    specs = []
    for name, (c, n) in cases.items():
        write_image(c, tmp_path / name / "contrast.nii.gz")
        write_image(n, tmp_path / name / "native.nii.gz")
        split = "train" if name in ("good", "noreg") else "test"
        specs.append(
            PairSpec(name, tmp_path / name / "contrast.nii.gz", tmp_path / name / "native.nii.gz", split)
        )
    report = prepare(specs, tmp_path / "cache", registration="SyNOnly", progress=False)
    capfd.readouterr()  # ITK prints its own complaints on stderr
    lines = dict(line.split(": ", 1) for line in report.lines if ": " in line)
    assert lines["origin"].startswith("dropped: the series differ in origin")
    assert lines["spacing"].startswith("dropped: the series differ in spacing")
    assert lines["size"].startswith("dropped: the series differ in size")
    assert "registration failed" in lines["noreg"]
    assert lines["good"].startswith("registered (SyNOnly)")
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert [p["id"] for p in index["patients"]] == ["good"]
    assert {d["patient"] for d in index["dropped"]} == {"origin", "spacing", "size", "noreg"}


def test_no_usable_pair_writes_no_index(tmp_path):
    write_image(_vol(shape=(5, 32, 32)), tmp_path / "c.nii.gz")
    write_image(_vol(), tmp_path / "n.nii.gz")
    with pytest.raises(CacheError, match="no usable pair"):
        prepare(
            [PairSpec("A", tmp_path / "c.nii.gz", tmp_path / "n.nii.gz", "train")],
            tmp_path / "cache",
            registration="none",
            progress=False,
        )
    assert not (tmp_path / "cache" / "index.json").exists()
    with pytest.raises(CacheError, match="incomplete"):
        SliceCache(tmp_path / "cache")


def test_unreadable_series_is_dropped(tmp_path):
    (tmp_path / "c.nii.gz").write_bytes(b"not an image")
    write_image(_vol(), tmp_path / "n.nii.gz")
    write_image(_vol(), tmp_path / "ok_c.nii.gz")
    specs = [
        PairSpec("bad", tmp_path / "c.nii.gz", tmp_path / "n.nii.gz", "train"),
        PairSpec("ok", tmp_path / "ok_c.nii.gz", tmp_path / "n.nii.gz", "train"),
    ]
    report = prepare(specs, tmp_path / "cache", registration="none", progress=False)
    assert report.lines[0].startswith("bad: dropped: cannot read the contrast series")
    assert "c.nii.gz" in report.lines[0]


def test_dicom_folders_and_folder_convention(tmp_path, capsys):
    plan = PhantomPlan(patients=1, seed0=2100, slices=3, size=64, splits=(1, 0, 0))
    phantom_to_files(plan, tmp_path / "root", fmt="dicom", progress=False)
    assert (tmp_path / "root" / "phantom-02100" / "contrast").is_dir()
    rc = main(
        [
            "prepare",
            "--root",
            str(tmp_path / "root"),
            "--out",
            str(tmp_path / "cache"),
            "--registration",
            "none",
            "--splits",
            "1,0,0",
            "--quiet",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "phantom-02100: not registered" in out and "1 patient(s) in the cache" in out
    cache = SliceCache(tmp_path / "cache")
    assert cache.patients[0].n_slices == 3 and cache.patients[0].has_labels


# -- corrupt caches -------------------------------------------------------------------------------


@pytest.fixture()
def cache_dir(tmp_path):
    phantom_to_cache(TINY, tmp_path / "cache", progress=False)
    return tmp_path / "cache"


def test_phantom_cache_holds_labels_and_the_plan(cache_dir):
    cache = SliceCache(cache_dir)
    assert cache.settings["phantom"] == TINY.settings()
    assert "stand-in" in cache.description
    assert cache.label_value("aorta") == 12
    seeds = [p.info["phantom_seed"] for p in cache.patients]
    assert seeds == [2000, 2001, 2002]
    pair = make_phantom_pair(2001, motion_mm=0.0, n_slices=4, size=64)
    np.testing.assert_allclose(
        cache.arrays("phantom-02001")["native"], hu_to_model(pair.native.hu), atol=1e-6
    )


def test_truncated_array_is_named(cache_dir):
    target = cache_dir / "patients" / "phantom-02001" / "native.npy"
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    with pytest.raises(CacheError, match=r"phantom-02001/native\.npy.*(corrupt|truncated)"):
        SliceCache(cache_dir)


def test_wrong_shape_and_pickled_arrays_are_refused(cache_dir):
    target = cache_dir / "patients" / "phantom-02000" / "contrast.npy"
    np.save(target, np.zeros((2, 8, 8), np.float32))
    with pytest.raises(CacheError, match=r"contrast\.npy: expected float32 \(4, 64, 64\)"):
        SliceCache(cache_dir)
    np.save(target, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CacheError, match=r"contrast\.npy"):
        SliceCache(cache_dir)


def test_corrupt_or_missing_index(cache_dir):
    (cache_dir / "index.json").write_text("{ half")
    with pytest.raises(CacheError, match=r"index\.json.*corrupt"):
        SliceCache(cache_dir)
    (cache_dir / "index.json").unlink()
    with pytest.raises(CacheError, match="incomplete.*prepare did not finish"):
        SliceCache(cache_dir)
    with pytest.raises(CacheError, match="no slice cache"):
        SliceCache(cache_dir / "nowhere")


def test_cli_errors_are_one_line(tmp_path, capsys):
    m = tmp_path / "m.csv"
    m.write_text("patient,contrast,native\nA,missing_c.nii.gz,missing_n.nii.gz\n")
    assert main(["prepare", "--manifest", str(m), "--out", str(tmp_path / "c"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("training prepare: error:") and "missing_c.nii.gz" in err and "Traceback" not in err
    assert not (tmp_path / "c" / "index.json").exists()


def test_registration_on_real_ct_with_flipped_axes(tmp_path):
    """A real native (LPS axes flipped in x and y), moved by SimpleITK, is registered back."""
    from conftest import shared_subfolder

    from mfm_engine.io.study import read_study

    src = shared_subfolder("totalseg_native_abdomen_nifti") / "example_ct_sm.nii.gz"
    image = sitk.ReadImage(str(src), sitk.sitkFloat32)
    shift = sitk.TranslationTransform(3, (6.0, -4.5, 0.0))  # mm, physical space
    moved = sitk.Resample(image, image, shift, sitk.sitkLinear, -1024.0)
    sitk.WriteImage(moved, str(tmp_path / "contrast.nii.gz"))
    sitk.WriteImage(image, str(tmp_path / "native.nii.gz"))
    spec = PairSpec("real", tmp_path / "contrast.nii.gz", tmp_path / "native.nii.gz", "test")
    report = prepare([spec], tmp_path / "cache", registration="SyNOnly", progress=False)
    info = report.entries[0].info
    assert info["mae_after_hu"] < 0.5 * info["mae_before_hu"], report.lines
    registered = sitk.ReadImage(
        str(tmp_path / "cache" / "registered" / "real" / "contrast_registered.nii.gz")
    )
    assert registered.GetDirection() == pytest.approx(image.GetDirection())
    assert registered.GetOrigin() == pytest.approx(image.GetOrigin(), abs=1e-3)
    native = read_study(src)
    assert SliceCache(tmp_path / "cache").arrays("real")["native"].shape == native.shape
    # Raw HU (no shift) lands at the same place on this image: the shift changes no geometry.
    raw = register_pair(read_study(tmp_path / "contrast.nii.gz"), native, hu_shift=0.0)
    assert raw.mae_after_hu == pytest.approx(info["mae_after_hu"], rel=0.05)
