"""Designing a study: the plan, the one presentation pipeline, a bundle that leaks nothing of the truth."""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from reader_study_support import PHANTOM_SIZE, PHANTOM_SLICES, make_bundle, tiny_checkpoint

from mfm_engine.cli import main as cli_main
from mfm_engine.io.image_write import write_image
from mfm_engine.phantom import make_phantom_pair
from mfm_engine.reader_study import ReaderStudyError
from mfm_engine.reader_study.bundle import (
    FIXED_MTIME,
    bundle_sha256,
    check_key_matches,
    load_case_volume,
    read_key,
    read_manifest,
    reader_order,
)
from mfm_engine.reader_study.design import (
    CaseSource,
    SynthesisSettings,
    common_grid,
    create_study,
    parse_seeds,
    plan_design,
    present_pair,
    read_cases_csv,
)
from mfm_engine.volume import Volume

NIFTI_HEADER = 352  # NIfTI-1 header + the 4-byte extension flag


pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def paired(tmp_path_factory, ckpt):
    return make_bundle(tmp_path_factory.mktemp("paired"), ckpt, mode="paired", n=4, candidates=5)


@pytest.fixture(scope="module")
def single(tmp_path_factory, ckpt):
    return make_bundle(tmp_path_factory.mktemp("single"), ckpt, mode="single", n=4, candidates=5)


# -- the plan ---------------------------------------------------------------------------------------


def test_plan_is_reproducible_balanced_and_checked():
    a, b = plan_design(30, "paired", 20, seed=5), plan_design(30, "paired", 20, seed=5)
    assert a == b
    assert plan_design(30, "paired", 20, seed=6) != a
    assert len({p.source_index for p in a}) == 20  # no patient twice
    sides = [p.truth["left"] for p in a]
    assert set(sides) == {"real", "synthetic"}  # both sides occur
    single = plan_design(30, "single", 20, seed=5)
    assert sorted(p.truth["image"] for p in single) == ["real"] * 10 + ["synthetic"] * 10
    with pytest.raises(ReaderStudyError, match="only 5 candidate"):
        plan_design(5, "paired", 6, seed=1)
    with pytest.raises(ReaderStudyError, match="even number"):
        plan_design(30, "single", 7, seed=1)
    with pytest.raises(ReaderStudyError, match="unknown reader-study mode"):
        plan_design(30, "both", 4, seed=1)


def test_parse_seeds():
    assert parse_seeds(["1-3", "7", "2,9"]) == [1, 2, 3, 7, 9]
    with pytest.raises(ReaderStudyError, match="not a number"):
        parse_seeds(["x"])


# -- the presentation pipeline ----------------------------------------------------------------------


def _body(shape=(6, 48, 48), spacing=(2.0, 2.0, 5.0), origin=(0.0, 0.0, 0.0), padding=-3024.0, base=40.0):
    z, y, x = np.indices(shape)
    r = np.hypot(y - shape[1] / 2, x - shape[2] / 2)
    hu = np.where(r < shape[1] * 0.35, base, -1000.0).astype(np.float32)
    hu[:, :, :4] = padding  # outside the scanner's field of view
    return Volume(hu, spacing, origin)


def test_pipeline_same_grid_shared_padding_and_range():
    real = _body()
    real.hu[2, 24, 24] = 1500.0  # dense bone: beyond what the model can make
    contrast = _body(base=150.0)
    synthetic = real.with_hu(
        np.where(real.hu < -1100, -996.0, real.hu * 0.9 + 3.3)
    )  # model output: no padding
    shown = present_pair(real, synthetic, contrast)
    assert not shown.resampled
    for arr in (shown.real, shown.synthetic):
        assert arr.dtype == np.int16 and arr.shape == real.shape
        assert arr.min() >= -1000 and arr.max() <= 1000
        assert np.all(arr[:, :, :4] == -1000)  # the same padding value in both
    assert shown.real[2, 24, 24] == 1000
    np.testing.assert_array_equal(shown.real[:, :, 4:], np.rint(np.clip(real.hu[:, :, 4:], -1000, 1000)))


def test_pipeline_resamples_both_onto_a_common_grid():
    real = _body(shape=(6, 48, 48), spacing=(2.0, 2.0, 5.0))
    synthetic = _body(shape=(8, 40, 40), spacing=(2.5, 2.5, 4.0), origin=(3.0, -2.0, 1.0))
    grid = common_grid(real, synthetic)
    shown = present_pair(real, synthetic)
    assert shown.resampled and shown.real.shape == shown.synthetic.shape == grid.shape
    assert shown.spacing == (2.5, 2.5, 5.0)  # the coarser spacing per axis
    # Neither volume keeps its own samples: the grid is offset from both.
    first = np.asarray(grid.origin)
    for vol in (real, synthetic):
        assert not np.allclose((first - np.asarray(vol.origin)) / np.asarray(vol.spacing) % 1.0, 0.0)
    # An independent SimpleITK resampling of the real volume onto the grid gives the same voxels.
    image = sitk.GetImageFromArray(real.hu)
    image.SetSpacing(real.spacing)
    image.SetOrigin(real.origin)
    ref = sitk.Resample(
        image,
        grid.shape[::-1],
        sitk.Transform(),
        sitk.sitkLinear,
        grid.origin,
        grid.spacing,
        tuple(np.eye(3).ravel()),
        -1000.0,
        sitk.sitkFloat32,
    )
    expected = np.rint(np.clip(sitk.GetArrayFromImage(ref), -1000, 1000))
    expected[sitk.GetArrayFromImage(ref) < -1100] = -1000
    np.testing.assert_array_equal(shown.real, expected)


def test_pipeline_refuses_volumes_that_do_not_overlap():
    with pytest.raises(ReaderStudyError, match="do not overlap"):
        present_pair(_body(), _body(origin=(0.0, 0.0, 500.0)))


# -- bundles leak nothing ---------------------------------------------------------------------------


def _truth_strings(key) -> set[str]:
    """Strings that only the key (the truth) knows: sources, patients, model, checkpoint."""
    out = {"phantom", "PHANTOM", "timeresnet", "tiny", "safetensors", "provenance", "truth", "euler"}
    for case in key.cases.values():
        out |= {case.patient, *case.sources.values()}
        out |= {str(v) for v in case.provenance.values() if isinstance(v, str) and len(v) >= 4}
    return {s for s in out if s}


def _header_fields(raw: bytes) -> dict[str, bytes]:
    return {
        "descrip": raw[148:228],
        "aux_file": raw[228:252],
        "intent_name": raw[328:344],
        "db_name": raw[14:32],
    }


@pytest.mark.parametrize("which", ["paired", "single"])
def test_bundle_leaks_no_truth(which, request):
    result = request.getfixturevalue(which)
    bundle, manifest, key = result.bundle, result.manifest, result.key
    files = sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*"))
    volumes = [f for f in files if f.startswith("volumes/") and f != "volumes"]
    # Only the manifest and the volumes: no sidecars, no key, nothing hidden.
    assert set(files) == {"manifest.json", "volumes", *volumes}
    assert all(re.fullmatch(r"volumes/[0-9a-f]{16}\.nii", f) for f in volumes)
    assert not result.key_path.resolve().is_relative_to(bundle.resolve())
    # One fixed modification time on everything: write order cannot be read back.
    assert {int((bundle / f).stat().st_mtime) for f in files} | {int(bundle.stat().st_mtime)} == {FIXED_MTIME}

    # The manifest: the same structure for every case, no truth, no source.
    text = (bundle / "manifest.json").read_text()
    doc = json.loads(text)
    assert set(doc) == {"format", "version", "study_id", "mode", "created", "settings", "cases"}
    assert doc["settings"]["initial_window"] == {"name": "abdomen (Slicer)", "width": 350.0, "level": 40.0}
    shapes = {json.dumps({side: sorted(f) for side, f in c["files"].items()}) for c in doc["cases"]}
    assert len(shapes) == 1
    assert [c["id"] for c in doc["cases"]] == sorted(c["id"] for c in doc["cases"])
    for s in _truth_strings(key):
        assert s not in text, f"manifest mentions {s!r}"
    for word in ("real", "synthetic"):
        assert f'"{word}"' not in text

    sizes, headers, truths = {}, {}, {}
    for case in manifest.cases:
        for side, f in case.files.items():
            path = bundle / f.path
            raw = path.read_bytes()
            sizes[f.path], headers[f.path] = len(raw), raw[:NIFTI_HEADER]
            truths[f.path] = key.cases[case.id].truth[side]
            fields = _header_fields(raw)
            assert all(v.strip(b"\0") == b"" for v in fields.values()), f"{f.path}: header text {fields}"
            assert struct.unpack("<h", raw[70:72])[0] == 4  # datatype int16, real and synthetic alike
            assert raw[348:352] == b"\0\0\0\0"  # no header extension
            for s in _truth_strings(key):
                if len(s) >= 8:  # long enough never to occur by chance in voxel bytes
                    assert s.encode() not in raw, f"{f.path} contains {s!r}"
            image = sitk.ReadImage(str(path))
            notes = image.GetMetaData("ITK_FileNotes") if image.HasMetaDataKey("ITK_FileNotes") else ""
            assert notes.strip("\0 ") == ""
            vol = load_case_volume(bundle, f)
            assert vol.meta == {}
            assert vol.hu.min() >= -1000 and vol.hu.max() <= 1000
        if which == "paired":
            left, right = (case.files[s].path for s in ("left", "right"))
            assert headers[left] == headers[right]  # byte-identical headers within a pair
            assert sizes[left] == sizes[right]
    # Same phantom matrix for everyone: every file has the same size, whatever its truth.
    assert len(set(sizes.values())) == 1
    assert {t for t in truths.values()} == {"real", "synthetic"}


def test_key_records_the_truth_and_ties_to_the_bundle(paired, single):
    for result in (paired, single):
        key = read_key(result.key_path)
        manifest = check_key_matches(result.bundle, key)
        assert set(key.cases) == set(manifest.case_ids)
        assert key.bundle_sha256 == bundle_sha256(result.bundle)
        assert key.design["seed"] == 3 and key.design["synthesis"]["solver"] == "euler"
        for case in key.cases.values():
            assert case.provenance["model"].startswith("tiny")
            assert case.provenance["steps"] == 1
            assert case.patient.startswith("phantom seed")
    assert sorted(c.truth["image"] for c in read_key(single.key_path).cases.values()) == [
        "real",
        "real",
        "synthetic",
        "synthetic",
    ]
    for case in read_key(paired.key_path).cases.values():
        assert sorted(case.truth.values()) == ["real", "synthetic"]
        assert case.sources[case.synthetic_side].startswith("synthesised now from phantom seed")


def test_bundle_volumes_are_the_pipeline_output_of_the_sources(paired, ckpt):
    """The real side of a paired case is the phantom native, clipped and rounded; nothing else changed."""
    key, manifest = paired.key, paired.manifest
    case = manifest.cases[0]
    kc = key.cases[case.id]
    seed = int(kc.patient.split()[-1])
    native = make_phantom_pair(seed, motion_mm=0.0, n_slices=PHANTOM_SLICES, size=PHANTOM_SIZE).native
    real_side = next(s for s, t in kc.truth.items() if t == "real")
    shown = load_case_volume(paired.bundle, case.files[real_side])
    np.testing.assert_array_equal(shown.hu, np.rint(np.clip(native.hu, -1000, 1000)))
    assert shown.spacing == pytest.approx(native.spacing)
    centre = shown.index_to_physical(tuple((np.asarray(shown.shape[::-1]) - 1) / 2))
    np.testing.assert_allclose(centre, 0.0, atol=1e-3)  # positions say nothing about the source scan


def test_tampering_is_refused(paired, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(paired.bundle, copy)
    key = read_key(paired.key_path)
    check_key_matches(copy, key)
    victim = copy / paired.manifest.cases[0].files["left"].path
    data = bytearray(victim.read_bytes())
    data[-1] ^= 1
    victim.write_bytes(bytes(data))
    with pytest.raises(ReaderStudyError, match="hash mismatch"):
        check_key_matches(copy, key)
    with pytest.raises(ReaderStudyError, match="changed after the study was made"):
        load_case_volume(copy, paired.manifest.cases[0].files["left"])


def test_reader_orders_differ_per_reader_and_are_stable(paired):
    m = paired.manifest
    a, b = reader_order(m, "R1"), reader_order(m, "R2")
    assert sorted(a) == sorted(b) == sorted(m.case_ids)
    assert reader_order(m, "R1") == a
    orders = {tuple(reader_order(m, f"R{i}")) for i in range(20)}
    assert len(orders) > 1
    with pytest.raises(ReaderStudyError, match="not usable"):
        reader_order(m, "a,b")


def test_create_refuses_bad_targets(paired, ckpt, tmp_path):
    sources = [CaseSource("p1", phantom_seed=1, phantom_slices=2, phantom_size=32)]
    kw = dict(mode="paired", n=1, seed=1, synthesis=SynthesisSettings(str(ckpt), "euler", 1, "cpu"))
    with pytest.raises(ReaderStudyError, match="already exists"):
        create_study(sources, paired.bundle, tmp_path / "k.json", **kw)
    with pytest.raises(ReaderStudyError, match="must not be inside the bundle"):
        create_study(sources, tmp_path / "b", tmp_path / "b" / "k.json", **kw)
    with pytest.raises(ReaderStudyError, match="give a model"):
        create_study(sources, tmp_path / "b", tmp_path / "k.json", mode="paired", n=1, seed=1)
    with pytest.raises(ReaderStudyError, match="unknown window preset"):
        create_study(sources, tmp_path / "b", tmp_path / "k.json", window="disco", **kw)
    assert not (tmp_path / "b").exists() and not (tmp_path / "k.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".b.partial")]


def test_cases_csv_with_given_and_made_synthetics_on_other_grids(tmp_path, ckpt):
    from mfm_engine.translate import Translator

    rows = ["id,native,synthetic,contrast"]
    translator = Translator.from_checkpoint(ckpt, "cpu")
    for seed in (1, 2, 3):
        pair = make_phantom_pair(seed, motion_mm=0.0, n_slices=4, size=48)
        native = write_image(pair.native, tmp_path / f"n{seed}.nii.gz")
        if seed == 1:
            # A synthetic file on another grid (cropped by 4 voxels each side): both sides get resampled.
            syn = translator.translate_volume(pair.contrast, direction="c2n", solver="euler", steps=1)
            cropped = Volume(
                syn.hu[:, 4:-4, 4:-4],
                syn.spacing,
                tuple(syn.index_to_physical((4, 4, 0))),
                syn.direction,
                syn.meta,
            )
            write_image(cropped, tmp_path / "s1.nii.gz")
            rows.append(f"patient-{seed},{native.name},s1.nii.gz,")
        else:
            contrast = write_image(pair.contrast, tmp_path / f"c{seed}.nii.gz")
            rows.append(f"patient-{seed},{native.name},,{contrast.name}")
    (tmp_path / "cases.csv").write_text("\n".join(rows) + "\n")
    sources = read_cases_csv(tmp_path / "cases.csv")
    assert [s.needs_model for s in sources] == [False, True, True]
    result = create_study(
        sources,
        tmp_path / "b",
        tmp_path / "k.json",
        mode="paired",
        n=3,
        seed=2,
        synthesis=SynthesisSettings(str(ckpt), "euler", 1, "cpu"),
    )
    key = result.key
    by_patient = {c.patient: c for c in key.cases.values()}
    assert by_patient["patient-1"].provenance["resampled_to_common_grid"] is True
    assert by_patient["patient-2"].provenance["resampled_to_common_grid"] is False
    for case in result.manifest.cases:
        a, b = (load_case_volume(result.bundle, case.files[s]) for s in ("left", "right"))
        assert a.same_geometry(b)
        assert (result.bundle / case.files["left"].path).read_bytes()[:NIFTI_HEADER] == (
            result.bundle / case.files["right"].path
        ).read_bytes()[:NIFTI_HEADER]
    # The sidecar JSON of the synthetic file (provenance) never reaches the bundle.
    assert not list(result.bundle.rglob("*.json"))[1:]


def test_cases_csv_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,native\nx,missing.nii.gz\n")
    with pytest.raises(ReaderStudyError, match=r"bad\.csv.*'synthetic' and/or 'contrast'"):
        read_cases_csv(bad)
    bad.write_text("id,native,contrast\nx,missing.nii.gz,other.nii.gz\n")
    with pytest.raises(ReaderStudyError, match=r"bad\.csv: line 2: .*missing\.nii\.gz does not exist"):
        read_cases_csv(bad)
    with pytest.raises(ReaderStudyError, match="not found"):
        read_cases_csv(tmp_path / "none.csv")


def test_cli_create_and_errors(tmp_path, ckpt, capsys):
    rc = cli_main(
        [
            "reader-study",
            "create",
            "--phantom-seeds",
            "1-3",
            "--phantom-slices",
            "2",
            "--phantom-size",
            "32",
            "--mode",
            "single",
            "--n",
            "2",
            "--seed",
            "4",
            "--model",
            str(ckpt),
            "--steps",
            "1",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "b"),
            "--key",
            str(tmp_path / "k.json"),
        ]
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "2 single case(s), 1 synthetic + 1 real" in out.out
    assert read_manifest(tmp_path / "b").mode == "single"
    rc = cli_main(
        [
            "reader-study",
            "create",
            "--phantom-seeds",
            "1-3",
            "--mode",
            "single",
            "--n",
            "3",
            "--seed",
            "4",
            "--model",
            str(ckpt),
            "--out",
            str(tmp_path / "b2"),
            "--key",
            str(tmp_path / "k2.json"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "even number" in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "b2")
