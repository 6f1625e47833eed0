"""The procedural phantom: determinism, anatomy per seed, geometry, HU per tissue and phase, noise,
motion between the phases, DICOM identity, and `mfm phantom` writing both formats.

References are independent of the generator: scipy.ndimage (erosion, distance transform),
numpy statistics, SimpleITK and pydicom reading what the CLI wrote, dciodvfy validating it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import UID
from scipy import ndimage

from mfm_engine.cli import main as mfm_main
from mfm_engine.errors import MFMError
from mfm_engine.phantom import (
    LABELS,
    LEGEND,
    TISSUES,
    PhantomError,
    make_phantom_pair,
    phantom_slice_count,
)
from mfm_engine.phantom.tissues import CORTICAL_VARIED, TISSUE_BY_NAME

# In-plane erosion only: slices are thick, so z-erosion would empty small organs.
_INPLANE = np.zeros((3, 3, 3), dtype=bool)
_INPLANE[1] = ndimage.generate_binary_structure(2, 1)


def _eroded(mask: np.ndarray, iterations: int = 2) -> np.ndarray:
    return ndimage.binary_erosion(mask, structure=_INPLANE, iterations=iterations)


def _body(hu: np.ndarray, table: np.ndarray) -> np.ndarray:
    return (hu > -500) & ~table


# ---------------------------------------------------------------------------------------------
# determinism and variety
# ---------------------------------------------------------------------------------------------
def test_same_seed_same_patient() -> None:
    a = make_phantom_pair(11, n_slices=3, size=128, workers=1)
    b = make_phantom_pair(11, n_slices=3, size=128, workers=3)  # threads do not change a voxel
    np.testing.assert_array_equal(a.native.hu, b.native.hu)
    np.testing.assert_array_equal(a.contrast.hu, b.contrast.hu)
    np.testing.assert_array_equal(a.labels.hu, b.labels.hu)
    assert a.native.meta == b.native.meta
    assert a.native.origin == b.native.origin and a.native.spacing == b.native.spacing


def test_different_seeds_give_different_anatomy() -> None:
    pairs = [make_phantom_pair(s, motion_mm=0, size=128, n_slices=8) for s in (1, 2, 3)]
    counts = {phantom_slice_count(s) for s in range(12)}
    assert len(counts) > 3  # scan lengths vary
    fovs = {round(p.native.spacing[0] * 128, 1) for p in pairs}
    assert len(fovs) == 3  # field of view (pixel spacing) varies with the body
    for p, q in ((pairs[0], pairs[1]), (pairs[1], pairs[2])):
        for organ in ("liver", "spleen", "kidney_cortex"):
            va = p.label_mask(organ).sum() * np.prod(p.native.spacing)
            vb = q.label_mask(organ).sum() * np.prod(q.native.spacing)
            assert va > 0 and vb > 0
        # Organ volumes (mm³) and body size differ by more than rounding between two patients.
        va = p.label_mask("liver").sum() * np.prod(p.native.spacing)
        vb = q.label_mask("liver").sum() * np.prod(q.native.spacing)
        ba = (p.labels.hu >= LABELS["skin"]).sum() * np.prod(p.native.spacing)
        bb = (q.labels.hu >= LABELS["skin"]).sum() * np.prod(q.native.spacing)
        assert abs(va - vb) / max(va, vb) > 0.02 or abs(ba - bb) / max(ba, bb) > 0.02


def test_a_slab_holds_the_same_slices_as_a_longer_series() -> None:
    # Each slice depends only on the seed and its index in the full series.
    long = make_phantom_pair(5, size=64, n_slices=10, start_slice=5)
    slab = make_phantom_pair(5, size=64, n_slices=4, start_slice=9)
    np.testing.assert_array_equal(slab.native.hu, long.native.hu[4:8])
    np.testing.assert_array_equal(slab.contrast.hu, long.contrast.hu[4:8])
    np.testing.assert_array_equal(slab.labels.hu, long.labels.hu[4:8])
    assert slab.native.origin[2] == pytest.approx(long.native.origin[2] + 4 * long.native.spacing[2])
    last = phantom_slice_count(5) - 1
    one = make_phantom_pair(5, size=64, n_slices=1, start_slice=last)
    assert one.native.meta["phantom_params"]["start_slice"] == last
    assert one.label_mask("lung").any()  # the top slice: lung bases


# ---------------------------------------------------------------------------------------------
# geometry and anatomy along z
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_geometry_like_a_supine_abdominal_ct(seed: int) -> None:
    pair = make_phantom_pair(seed, n_slices=2, noise_hu=0)
    vol = pair.native
    sx, sy, sz = vol.spacing
    assert vol.shape[1:] == (512, 512)
    assert sx == sy and 0.6 <= sx <= 1.0
    assert sx == pytest.approx(vol.meta["phantom_params"]["fov_mm"] / 512)
    assert 2.5 <= sz <= 5.0
    np.testing.assert_array_equal(vol.direction, np.eye(3))
    assert 55 <= phantom_slice_count(seed) <= 101
    for other in (pair.contrast, pair.labels):
        assert other.same_geometry(vol)
    # The trunk (the largest connected body part: arms, when down, are separate) is centred: its
    # bounding box middle lies within 25 mm of the image centre.
    lab0 = pair.labels.hu[0]
    body = (lab0 >= LABELS["skin"]) & (lab0 != LABELS["padding"])
    parts, n_parts = ndimage.label(body)
    trunk = parts == 1 + int(np.argmax(ndimage.sum(body, parts, range(1, n_parts + 1))))
    jj, ii = np.nonzero(trunk)
    centre = vol.index_to_physical(((ii.min() + ii.max()) / 2, (jj.min() + jj.max()) / 2, 0))
    mid = vol.index_to_physical(((512 - 1) / 2, (512 - 1) / 2, 0))
    assert np.hypot(*(centre - mid)[:2]) < 25
    # Outside the body is air at -1000 (noise-free); the table lies behind (posterior to) the body.
    assert np.all(vol.hu[0][pair.labels.hu[0] == LABELS["air"]] >= -1000)
    table = pair.labels.hu[0] == LABELS["table"]
    for col in range(0, 512, 16):
        if table[:, col].any() and body[:, col].any():
            assert np.nonzero(table[:, col])[0].min() > np.nonzero(body[:, col])[0].max()


@pytest.mark.parametrize("seed", [0])
def test_z_range_runs_from_lung_bases_to_below_the_kidneys(seed: int) -> None:
    pair = make_phantom_pair(seed, size=64, noise_hu=0, motion_mm=0)
    lab = pair.labels.hu
    n = lab.shape[0]
    present = {name: np.nonzero((lab == LABELS[name]).any(axis=(1, 2)))[0] for name in LABELS}
    # Index 0 is the most inferior slice (z grows towards the head, LPS).
    assert pair.native.index_to_physical((0, 0, n - 1))[2] > pair.native.index_to_physical((0, 0, 0))[2]
    assert present["lung"].max() >= n - 3 and present["lung"].min() > n // 2
    assert present["kidney_cortex"].min() > 0 and present["kidney_cortex"].max() < n - 1
    assert present["liver"].max() >= n - 6
    for name in LABELS:
        if name not in ("air",):
            assert len(present[name]) > 0, f"{name} missing from seed {seed}"


# ---------------------------------------------------------------------------------------------
# HU per tissue and phase
# ---------------------------------------------------------------------------------------------
MEASURED = (
    "liver", "spleen", "kidney_cortex", "kidney_medulla", "aorta", "ivc", "portal_vein", "pancreas",
    "muscle", "fat_subcutaneous", "fat_visceral", "bone_cancellous", "gallbladder", "spinal_canal",
)  # fmt: skip


@pytest.mark.parametrize("seed", [0, 7])
def test_organ_means_match_the_table_within_noise(seed: int) -> None:
    pair = make_phantom_pair(seed, motion_mm=0, size=256)
    sigma = pair.native.meta["phantom_params"]["noise_hu"]
    for name in MEASURED:
        mask = _eroded(pair.label_mask(name))
        assert mask.sum() >= 100, f"{name}: too few voxels to measure"
        native, arterial = float(pair.native.hu[mask].mean()), float(pair.contrast.hu[mask].mean())
        want_n, want_a = pair.hu_table[name]
        # Noise is averaged away over ≥ 100 voxels; texture (zero-mean by construction) and
        # whole-HU rounding leave about 1 HU; 3 HU is a few standard errors.
        tol = 3.0 + 3 * sigma / np.sqrt(mask.sum() / 4)  # neighbouring pixels are correlated
        assert native == pytest.approx(want_n, abs=tol), name
        assert arterial == pytest.approx(want_a, abs=tol), name
        # The patient's values lie inside the cited ranges of the table (native), and iodine only
        # adds attenuation (the contrast value depends on the patient's timing: see the timing tests).
        t = TISSUE_BY_NAME[name]
        assert t.native[0] - tol <= native <= t.native[2] + tol, name
        assert arterial >= native - tol, name


def test_enhancement_pattern_of_the_arterial_phase() -> None:
    """The literature pattern: bright aorta, corticomedullary kidney, pancreas and spleen up, fat fixed."""
    for seed in range(6):
        # The late-arterial table itself: the classic phantom (the varied one moves it with timing).
        hu = make_phantom_pair(seed, n_slices=1, size=64, acquisition="classic").hu_table
        assert 250 <= hu["aorta"][1] <= 400 and 35 <= hu["aorta"][0] <= 50
        assert 150 <= hu["kidney_cortex"][1] <= 200 and hu["kidney_medulla"][1] <= hu["kidney_cortex"][1] - 60
        assert 100 <= hu["spleen"][1] <= 130 and hu["spleen"][0] < hu["liver"][0]
        assert 100 <= hu["pancreas"][1] <= 130
        assert (
            10 <= hu["liver"][1] - hu["liver"][0] <= 35
        )  # little hepatic enhancement before the portal phase
        assert hu["portal_vein"][1] > hu["ivc"][1] + 20  # portal vein moderate, infrarenal IVC still dark
        for fixed in (
            "fat_subcutaneous",
            "fat_visceral",
            "bone_cortical",
            "bone_cancellous",
            "lung",
            "bowel_gas",
        ):
            assert hu[fixed][0] == hu[fixed][1]
        assert -115 <= hu["fat_subcutaneous"][0] <= -85


def test_typical_values_are_the_table_typicals() -> None:
    pair = make_phantom_pair(2, n_slices=1, size=64, typical_hu=True)
    assert pair.native.meta["phantom_params"]["timing"] == 0.5  # typical: late arterial
    for t in TISSUES:
        n, a = pair.hu_table[t.name]
        if t.name == "padding":  # the scanner's value, not a tissue's
            assert n == a == pair.native.meta["phantom_params"]["padding_hu"]
        elif t.name == "bone_cortical":  # dense cortical bone in the varied phantom
            assert n == a == CORTICAL_VARIED[1]
        else:
            assert n == t.native[1]
            assert a == pytest.approx(t.arterial_range()[1])
    classic = make_phantom_pair(2, n_slices=1, size=64, typical_hu=True, acquisition="classic").hu_table
    assert classic["bone_cortical"] == (850, 850) and "padding" not in classic


def test_unchanged_tissue_is_identical_in_an_aligned_noise_free_pair() -> None:
    pair = make_phantom_pair(3, motion_mm=0, noise_hu=0, n_slices=3)
    for name in ("fat_subcutaneous", "spinal_canal"):
        mask = _eroded(pair.label_mask(name))
        assert mask.any()
        np.testing.assert_array_equal(pair.contrast.hu[mask], pair.native.hu[mask])
    # Gas and visceral fat next to a vessel or bowel wall cut obliquely by the thick slice keep a
    # trace of it (slab partial volume), so a few voxels differ by a few HU.
    for name in ("fat_visceral", "bowel_gas"):
        mask = _eroded(pair.label_mask(name))
        diff = np.abs(pair.contrast.hu[mask] - pair.native.hu[mask])
        # (up to ~10 HU when the patient's timing makes the veins bright too).
        assert (diff == 0).mean() > 0.97 and diff.max() <= 12, name
    # Bone too, except where a thick slice also holds some (slightly enhancing) disc.
    bone = _eroded(pair.label_mask("bone_cancellous"))
    assert (pair.contrast.hu[bone] == pair.native.hu[bone]).mean() > 0.8
    aorta = _eroded(pair.label_mask("aorta"))
    assert float((pair.contrast.hu - pair.native.hu)[aorta].min()) > 150


# ---------------------------------------------------------------------------------------------
# noise
# ---------------------------------------------------------------------------------------------
def test_classic_noise_sigma_independence_and_correlation() -> None:
    """The classic phantom's binomial noise (the varied phantom's kernel noise: test_phantom_scanner.py)."""
    noisy = make_phantom_pair(4, motion_mm=0, n_slices=4, acquisition="classic")
    clean = make_phantom_pair(4, motion_mm=0, n_slices=4, noise_hu=0, acquisition="classic")
    sigma = noisy.native.meta["phantom_params"]["noise_hu"]
    assert 8.0 <= sigma <= 12.0
    liver = _eroded(noisy.label_mask("liver"))
    assert liver.sum() > 5000
    n_native = (noisy.native.hu - clean.native.hu)[liver]
    n_arterial = (noisy.contrast.hu - clean.contrast.hu)[liver]
    assert float(n_native.std()) == pytest.approx(sigma, rel=0.06)
    assert float(n_arterial.std()) == pytest.approx(sigma, rel=0.06)
    assert abs(float(n_native.mean())) < 0.5
    assert abs(np.corrcoef(n_native, n_arterial)[0, 1]) < 0.05  # independent per phase
    # Neighbouring pixels correlate (reconstructed CT noise is not white).
    field = noisy.native.hu - clean.native.hu
    r1 = np.corrcoef(field[:, :, :-1].ravel(), field[:, :, 1:].ravel())[0, 1]
    assert 0.4 < r1 < 0.85
    assert make_phantom_pair(4, n_slices=1, noise_hu=5.0).native.meta["phantom_params"]["noise_hu"] == 5.0


# ---------------------------------------------------------------------------------------------
# motion between the phases
# ---------------------------------------------------------------------------------------------
def _border_shift_mm(pair) -> np.ndarray:
    """Distance (mm) from each contrast body-outline pixel to the native outline, per slice."""
    table = pair.labels.hu == LABELS["table"]
    a, b = _body(pair.native.hu, table), _body(pair.contrast.hu, table)
    out = []
    for k in range(a.shape[0]):
        edge_a = a[k] & ~ndimage.binary_erosion(a[k])
        edge_b = b[k] & ~ndimage.binary_erosion(b[k])
        dist = ndimage.distance_transform_edt(~edge_a, sampling=pair.native.spacing[0])
        out.append(dist[edge_b])
    return np.concatenate(out)


def test_zero_motion_gives_an_aligned_pair() -> None:
    pair = make_phantom_pair(6, motion_mm=0, n_slices=4, noise_hu=0)
    np.testing.assert_array_equal(pair.contrast_labels, pair.labels.hu.astype(np.uint8))
    assert float(_border_shift_mm(pair).mean()) < 0.05


@pytest.mark.parametrize("seed", [1, 6])
def test_motion_moves_the_body_border_by_about_its_size(seed: int) -> None:
    shifts = {}
    for motion in (3.0, 6.0):
        pair = make_phantom_pair(seed, motion_mm=motion, n_slices=4, noise_hu=0)
        # Labels stay in the native's geometry; the contrast anatomy moved.
        assert (pair.contrast_labels != pair.labels.hu.astype(np.uint8)).mean() > 0.005
        shifts[motion] = _border_shift_mm(pair)
    d3 = shifts[3.0]
    assert 0.7 <= float(d3.mean()) <= 3.0
    assert 2.0 <= float(np.percentile(d3, 95)) <= 5.5
    assert 1.5 <= float(shifts[6.0].mean()) / float(d3.mean()) <= 2.7


# ---------------------------------------------------------------------------------------------
# metadata
# ---------------------------------------------------------------------------------------------
def test_metadata_marks_a_phantom_and_one_study() -> None:
    pair = make_phantom_pair(9, n_slices=3, size=64)
    nat, con, lab = pair.native.meta, pair.contrast.meta, pair.labels.meta
    assert nat["phantom"] is con["phantom"] is lab["phantom"] is True
    assert nat["phantom_seed"] == con["phantom_seed"] == 9
    assert (nat["phase"], con["phase"]) == ("native", "arterial")
    assert nat["modality"] == con["modality"] == "CT"
    assert nat["series_description"] == "PHANTOM native seed 9"
    assert con["series_description"] == "PHANTOM arterial seed 9"
    dn, dc, dl = nat["dicom"], con["dicom"], lab["dicom"]
    assert dn["patient"]["PatientID"] == "PHANTOM-9" and dn["patient"]["PatientName"] == "PHANTOM^9"
    assert dn["patient"] == dc["patient"] == dl["patient"]
    assert (
        dn["study"]["StudyInstanceUID"] == dc["study"]["StudyInstanceUID"] == dl["study"]["StudyInstanceUID"]
    )
    assert dn["frame_of_reference_uid"] != dc["frame_of_reference_uid"]  # two acquisitions
    assert dl["frame_of_reference_uid"] == dn["frame_of_reference_uid"]  # labels on the native grid
    uids = [dn["study"]["StudyInstanceUID"], dn["frame_of_reference_uid"], dc["frame_of_reference_uid"]]
    uids += (
        dn["sop_instance_uids"]
        + dc["sop_instance_uids"]
        + [dn["series_instance_uid"], dc["series_instance_uid"]]
    )
    assert all(UID(u).is_valid for u in uids)
    assert len(set(uids)) == len(uids) - 0  # all distinct
    assert len(dn["sop_instance_uids"]) == 3 and dn["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.2"
    assert lab["legend"] == {str(k): v for k, v in LEGEND.items()}
    json.dumps(nat)  # JSON-serialisable, as Volume.meta must be
    # Another seed is another patient and study.
    other = make_phantom_pair(10, n_slices=1, size=64).native.meta["dicom"]
    assert other["study"]["StudyInstanceUID"] != dn["study"]["StudyInstanceUID"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"seed": -1}, "seed"),
        ({"seed": 1, "motion_mm": -2.0}, "motion"),
        ({"seed": 1, "motion_mm": float("nan")}, "motion"),
        ({"seed": 1, "n_slices": 0}, "n_slices"),
        ({"seed": 1, "n_slices": 5, "start_slice": 10_000}, "start_slice"),
        ({"seed": 1, "size": 8}, "size"),
        ({"seed": 1, "noise_hu": -1.0}, "noise"),
        ({"seed": 1, "acquisition": "fancy"}, "acquisition"),
        ({"seed": 1, "identity_share": 1.5}, "identity_share"),
        ({"seed": 1, "timing": -0.1}, "timing"),
    ],
)
def test_bad_options_raise_a_clear_error(kwargs: dict, match: str) -> None:
    seed = kwargs.pop("seed")
    with pytest.raises(PhantomError, match=match) as info:
        make_phantom_pair(seed, **kwargs)
    assert isinstance(info.value, MFMError) and isinstance(info.value, ValueError)


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def _dciodvfy_errors(path: Path) -> list[str]:
    exe = shutil.which("dciodvfy")
    if exe is None:
        return []
    out = subprocess.run([exe, str(path)], capture_output=True, text=True, check=False)
    # dicom3tools builds older than SyntheticData (0008,001C) call that standard attribute unknown.
    lines = (out.stdout + out.stderr).splitlines()
    return [ln for ln in lines if ln.startswith("Error") and "(0x0008,0x001c)" not in ln]


def test_cli_writes_nifti(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ph"
    assert (
        mfm_main(["phantom", str(out), "--seed", "3", "--format", "nifti", "--slices", "3", "--motion", "0"])
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    pair = make_phantom_pair(3, n_slices=3, motion_mm=0)
    images = {name: sitk.ReadImage(str(out / f"{name}.nii.gz")) for name in ("native", "contrast", "labels")}
    for name, vol in (("native", pair.native), ("contrast", pair.contrast), ("labels", pair.labels)):
        img = images[name]
        np.testing.assert_allclose(sitk.GetArrayFromImage(img), vol.hu, atol=0.5)
        np.testing.assert_allclose(img.GetSpacing(), vol.spacing, atol=1e-4)
        np.testing.assert_allclose(img.GetOrigin(), vol.origin, atol=1e-3)
    doc = json.loads((out / "labels.json").read_text(encoding="utf-8"))
    assert doc["legend"] == {str(k): v for k, v in LEGEND.items()}
    values = np.unique(sitk.GetArrayFromImage(images["labels"])).astype(int)
    assert set(values) <= {int(k) for k in doc["legend"]}
    assert doc["meta"]["phantom"] is True  # still the image sidecar the readers use
    assert doc["hu_native_arterial"]["aorta"][1] == pytest.approx(pair.hu_table["aorta"][1], abs=0.01)


def test_cli_writes_dicom_series_of_one_study(tmp_path: Path) -> None:
    out = tmp_path / "ph"
    assert mfm_main(["phantom", str(out), "--seed", "8", "--slices", "2"]) == 0
    studies, frames = set(), {}
    for name in ("native", "contrast", "labels"):
        files = sorted((out / name).glob("*.dcm"))
        assert len(files) == 2
        ds = pydicom.dcmread(files[0])
        studies.add(ds.StudyInstanceUID)
        frames[name] = ds.FrameOfReferenceUID
        assert ds.PatientID == "PHANTOM-8" and str(ds.SeriesDescription).startswith("PHANTOM")
        assert ds.Modality == "CT"
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(out / name)))
        img = reader.Execute()
        assert img.GetSize() == (512, 512, 2)
        assert _dciodvfy_errors(files[0]) == []
    assert len(studies) == 1
    assert frames["labels"] == frames["native"] != frames["contrast"]
    assert json.loads((out / "labels.json").read_text(encoding="utf-8"))["legend"]["12"] == "aorta"
    # An existing output is not replaced without --overwrite; a bad seed is a plain error.
    assert mfm_main(["phantom", str(out), "--seed", "8", "--slices", "2"]) == 2
    assert mfm_main(["phantom", str(out), "--seed", "8", "--slices", "2", "--overwrite"]) == 0
    assert mfm_main(["phantom", str(tmp_path / "x"), "--seed", "-3"]) == 2


@pytest.mark.slow
def test_full_size_pair() -> None:
    """One full 512² patient, as the demo and training use it (a few seconds)."""
    pair = make_phantom_pair(12)
    assert pair.native.shape[1:] == (512, 512) and pair.native.shape == pair.contrast.shape
    assert 55 <= pair.native.shape[0] <= 101
    assert pair.label_mask("liver").any() and pair.label_mask("kidney_medulla").any()
