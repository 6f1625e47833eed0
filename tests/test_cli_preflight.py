"""`mfm translate` never harms its input and fails fast; `mfm` ends quietly on a closed pipe.

"Before a model is loaded" is shown without timing anything: every bad request here also names a
checkpoint that does not exist, so an argument checked after loading would report the checkpoint.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_subfolder

from mfm_engine.cli import main
from mfm_engine.cli.preflight import check_free_space, estimate_output_bytes
from mfm_engine.errors import MFMError
from mfm_engine.io.dicom_write import write_dicom_series
from mfm_engine.io.image_write import write_image
from mfm_engine.io.study import read_study
from mfm_engine.io.write import write_study
from mfm_engine.solver_names import SOLVER_NAMES
from mfm_engine.volume import Volume

MISSING_MODEL = "/nonexistent/model.safetensors"


def small_study() -> Volume:
    rng = np.random.default_rng(1)
    hu = np.round(rng.normal(0, 200, size=(3, 16, 16))).astype(np.float32)
    return Volume(hu, spacing=(0.8, 0.8, 3.0), meta={"modality": "CT"})


def tree_digest(path: Path) -> str:
    """A hash of every file's name and bytes under a path (or of one file)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path.parent)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture
def studies(tmp_path: Path) -> dict[str, Path]:
    nifti = write_image(small_study(), tmp_path / "in" / "ct.nii.gz")
    write_dicom_series(small_study(), tmp_path / "in" / "dcm")
    return {"nifti": nifti, "dicom": tmp_path / "in" / "dcm", "root": tmp_path / "in"}


def translate(*args: str) -> int:
    return main(["translate", *args, "--model", MISSING_MODEL, "--device", "cpu"])


def test_solver_names_without_torch_match_the_registry() -> None:
    from mfm_engine.solvers import SOLVERS

    assert tuple(SOLVERS) == SOLVER_NAMES


@pytest.mark.parametrize("kind", ["nifti", "dicom"])
@pytest.mark.parametrize("flags", [[], ["--overwrite"]])
def test_output_equal_to_input_is_refused_and_input_untouched(studies, kind, flags, capsys) -> None:
    src = studies[kind]
    before = tree_digest(src)
    fmt = ["--format", "nifti" if kind == "nifti" else "dicom"]
    assert translate(str(src), str(src), *fmt, *flags) == 2
    assert "the output is the input itself" in capsys.readouterr().err
    assert tree_digest(src) == before


def test_outputs_inside_or_around_the_input_are_refused(studies, capsys) -> None:
    dcm, root = studies["dicom"], studies["root"]
    before = tree_digest(root)
    assert translate(str(dcm), str(dcm / "synthetic"), "--overwrite") == 2
    assert "inside the input folder" in capsys.readouterr().err
    assert translate(str(dcm), str(root), "--overwrite") == 2
    assert "contains the input" in capsys.readouterr().err
    # ct.nii.gz → ct.nrrd would write ct.json, the input's own sidecar.
    assert translate(str(studies["nifti"]), str(root / "ct.nrrd"), "--overwrite") == 2
    assert "sidecar" in capsys.readouterr().err
    assert tree_digest(root) == before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--steps", "0"], "--steps must be 1 or more"),
        (["--solver", "nosuch"], "unknown solver 'nosuch'"),
        (["--batch-size", "0"], "--batch-size must be 1 or more"),
    ],
)
def test_bad_arguments_fail_before_the_model_loads(studies, tmp_path, extra, message, capsys) -> None:
    assert translate(str(studies["nifti"]), str(tmp_path / "out.nii.gz"), *extra) == 2
    err = capsys.readouterr().err
    assert message in err and "checkpoint" not in err.lower()


def test_unwritable_output_fails_before_the_model_loads(studies, tmp_path, capsys) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert translate(str(studies["dicom"]), str(blocker / "out")) == 2
    err = capsys.readouterr().err
    assert "is a file" in err and "checkpoint" not in err.lower()


def test_free_space_check_uses_the_real_disk(tmp_path, studies) -> None:
    check_free_space(tmp_path, 1, "small")  # a byte fits on any disk that runs the tests
    with pytest.raises(MFMError, match="needs about .* MB free"):
        check_free_space(tmp_path, 1 << 60, "huge")
    # The estimate covers what is really written: int16 slices plus headers.
    files = write_dicom_series(read_study(studies["dicom"]), tmp_path / "copy")
    written = sum(f.stat().st_size for f in files)
    assert written <= estimate_output_bytes(studies["dicom"], "dicom") <= 10 * written


def test_valid_request_reaches_the_model(studies, tmp_path, capsys) -> None:
    assert translate(str(studies["nifti"]), str(tmp_path / "out.nii.gz")) == 2
    assert "checkpoint" in capsys.readouterr().err.lower()  # every check passed; then the model


@pytest.mark.parametrize("argv", [["info", "{wg04}"], ["phantom", "{out}", "--seed", "1", "--slices", "2"]])
def test_closed_pipe_ends_quietly(tmp_path, argv) -> None:
    wg04 = shared_subfolder("wg04_ct_transfer_syntaxes") if "{wg04}" in argv else None
    args = [a.replace("{wg04}", str(wg04)).replace("{out}", str(tmp_path / "p")) for a in argv]
    with subprocess.Popen(
        [sys.executable, "-m", "mfm_engine", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        proc.stdout.close()  # the reader leaves before the first line, as `| head -0` would
        err = proc.stderr.read().decode()
        status = proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err
    assert status == 128 + 13


def test_uneven_series_to_nifti_says_which_grid_was_written(tmp_path) -> None:
    volume = read_study(shared_subfolder("dcm_qa_ct_GE_tilt_head"))
    notes: list[str] = []
    write_study(volume, tmp_path / "head.nii.gz", notes=notes)
    assert len(notes) == 1
    assert "regular grid of 28 slices 5.337 mm apart" in notes[0]
    assert "48.21 mm from where the scanner put them" in notes[0]


@pytest.mark.slow
def test_translate_tilted_head_keeps_scanner_positions_and_says_so(tmp_path, capsys) -> None:
    import pydicom

    src = shared_subfolder("dcm_qa_ct_GE_tilt_head")
    out = tmp_path / "syn"
    assert main(["translate", str(src), str(out), "--format", "dicom", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "gantry tilt" in err and "uneven slice spacing" in err
    sources = {}
    for f in src.glob("*.dcm"):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        sources[ds.SOPInstanceUID] = ds
    files = sorted(out.glob("*.dcm"))
    assert len(files) == 28
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        ref = sources[ds.SourceImageSequence[0].ReferencedSOPInstanceUID]
        assert (
            np.abs(np.subtract(ds.ImagePositionPatient, ref.ImagePositionPatient, dtype=float)).max() <= 0.01
        )
        assert float(ds.SliceThickness) == float(ref.SliceThickness)
