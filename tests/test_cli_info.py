"""`mfm info`: text and JSON output, exit codes, and the installed console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file
from test_dicom_read import write_ct_series

from mfm_engine.cli import main

EXPECTED_ENTRY_KEYS = {
    "index", "key", "source", "path", "series_instance_uid", "transfer_syntax", "modality", "description",
    "n_slices", "size_xyz", "spacing_xyz_mm", "origin_xyz_mm", "direction", "hu_min", "hu_max",
    "synthetic", "phantom", "warnings", "error",
}  # fmt: skip


@pytest.fixture
def two_series(tmp_path: Path) -> Path:
    folder = tmp_path / "study"
    write_ct_series(folder / "a", n=3, description="arterial", spacing=2.0)
    paths, _ = write_ct_series(
        folder / "b", n=6, description="native", spacing=5.0, seed=1, shuffle_names=False
    )
    paths[2].unlink()  # a gap, to see a warning
    (folder / "notes.txt").write_text("x")
    return folder


def test_text_lists_every_series_with_numbers_and_warnings(two_series: Path, capsys) -> None:
    assert main(["info", str(two_series)]) == 0
    out = capsys.readouterr().out
    assert "2 series" in out and "skipped 1 file(s), not DICOM: notes.txt" in out
    assert "[0] CT 'native'  10×12×5 voxels" in out
    assert "[1] CT 'arterial'  10×12×3 voxels" in out
    assert "spacing 0.7×0.8×6.25 mm" in out  # mean step of 25 mm over 4 steps
    assert "missing slice(s): gap of 10.00 mm between slices z=1 and z=2" in out
    assert "HU " in out


def test_json_is_stable_and_matches_the_data(two_series: Path, capsys) -> None:
    assert main(["info", "--json", str(two_series)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["format"] == "mfm-info" and doc["version"] == 1 and doc["kind"] == "folder"
    assert set(doc) == {
        "format",
        "version",
        "path",
        "kind",
        "files_examined",
        "skipped",
        "warnings",
        "series",
    }
    assert doc["files_examined"] == 9
    assert doc["skipped"] == [{"path": str(two_series / "notes.txt"), "reason": "not DICOM"}]
    native, arterial = doc["series"]
    assert set(native) == EXPECTED_ENTRY_KEYS
    assert (native["index"], native["description"], native["n_slices"]) == (0, "native", 5)
    assert native["spacing_xyz_mm"] == pytest.approx([0.7, 0.8, 6.25])
    assert arterial["size_xyz"] == [10, 12, 3] and arterial["error"] is None
    # HU range: independent check against SimpleITK's read of the same series.
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(two_series / "a")))
    ref = sitk.GetArrayFromImage(reader.Execute())
    assert (arterial["hu_min"], arterial["hu_max"]) == (float(ref.min()), float(ref.max()))
    assert any("missing slice" in w for w in native["warnings"])


def test_single_files(capsys) -> None:
    assert main(["info", get_testdata_file("MR_small.dcm")]) == 0
    out = capsys.readouterr().out
    assert "DICOM file" in out and "MR" in out and "not CT" in out


def test_image_file(tmp_path: Path, capsys) -> None:
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((2, 3, 4), -5, np.int16)), str(path))
    assert main(["info", "--json", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "image-file" and doc["series"][0]["hu_min"] == -5.0


@pytest.mark.parametrize("case", ["empty", "missing", "truncated"])
def test_errors_exit_2_with_one_line(tmp_path: Path, capsys, case: str) -> None:
    if case == "empty":
        path = tmp_path / "empty"
        path.mkdir()
    elif case == "missing":
        path = tmp_path / "nothing"
    else:
        path = Path(get_testdata_file("MR_truncated.dcm"))
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mfm info: error: ") and str(path) in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_partial_failure_reports_the_rest_and_exits_2(two_series: Path, capsys) -> None:
    shutil.copy(get_testdata_file("MR_truncated.dcm"), two_series / "broken.dcm")
    assert main(["info", str(two_series)]) == 2
    captured = capsys.readouterr()
    assert "'native'" in captured.out and "ERROR:" in captured.out and "truncated" in captured.out
    assert "1 of 3 series could not be read" in captured.err


def test_console_script(two_series: Path) -> None:
    script = Path(sys.executable).with_name("mfm")
    if not script.exists():
        pytest.skip(f"console script not installed beside {sys.executable}")
    done = subprocess.run(
        [str(script), "info", "--json", str(two_series)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert [s["description"] for s in json.loads(done.stdout)["series"]] == ["native", "arterial"]


def test_documented_keys_match_the_output(two_series: Path) -> None:
    import re

    from mfm_engine.io.study import describe_study

    doc_path = Path(__file__).resolve().parents[1] / "docs" / "info-json.md"
    text = doc_path.read_text(encoding="utf-8")
    documented = set()
    for line in text.splitlines():
        match = re.match(r"\| `([a-z_]+)`(?:, `([a-z_]+)`)? \|", line)
        if match:
            documented.update(k for k in match.groups() if k)
    doc = describe_study(two_series)
    assert documented == set(doc) | set(doc["series"][0])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("CT1_J2KI", "JPEG 2000, ratio 69:1"),
        ("CT2_JLSN", "JPEG-LS near-lossless, ratio 10:1"),
        ("CT1_J2KR", None),
    ],
)
def test_lossy_inputs_are_reported(capsys, name: str, expected: str | None) -> None:
    from conftest import shared_subfolder

    path = shared_subfolder("wg04_ct_transfer_syntaxes") / name
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    if expected is None:
        assert "lossy" not in out
    else:
        assert f"lossy compression: the source was compressed with loss ({expected})" in out
