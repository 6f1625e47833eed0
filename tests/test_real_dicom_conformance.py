"""Every real CT series we have, translated and written as DICOM, judged by dciodvfy and by its sources.

The series: each CT series under ../shared/data (a tilted head with uneven gaps, a J2K series with
empty UIDs, a 3-slice implicit-VR series beside a SEG, and both WG-04 images in all seven transfer
syntaxes, lossy ones included) and the CTs bundled with pydicom. Each goes through the shipped demo
model (Euler, 1 step) and `write_dicom_series`, as `mfm translate` does.

Judges, independent of our writer:
- dciodvfy (dicom3tools) on every file: no error, apart from the one about SyntheticData (0008,001C),
  which the Debian build's 2022 dictionary predates.
- pydicom on the source files: every synthetic instance has exactly (≤ 0.01 mm) the
  ImagePositionPatient and ImageOrientationPatient of the source instance it references.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import SHARED_DATA
from test_writers import dciodvfy_errors

from mfm_engine.io.dicom_read import discover_series, read_series
from mfm_engine.io.dicom_write import write_dicom_series
from mfm_engine.io.study import read_study
from mfm_engine.volume import Volume

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_torch_thread")]

SHARED_SERIES_FOLDERS = (
    "dcm_qa_ct_GE_tilt_head",
    "totalseg_portalvenous_abdomen_dicom_j2k",
    "dcmqi_liver_ct_3slice",
    "wg04_ct_transfer_syntaxes",
)
PYDICOM_CTS = ("CT_small.dcm", "J2K_pixelrep_mismatch.dcm", "693_J2KI.dcm")


def real_ct_sources() -> list[tuple[str, object]]:
    """(test id, what read_* takes) for every real CT series present on this machine."""
    out: list[tuple[str, object]] = []
    for name in SHARED_SERIES_FOLDERS:
        folder = SHARED_DATA / name
        if not folder.is_dir():
            continue
        for info in discover_series(folder):
            if info.modality == "CT":
                label = info.files[0].name if len(info.files) == 1 else f"{len(info.files)} files"
                out.append((f"{name}:{label}", info))
    test_files = Path(pydicom.__file__).parent / "data" / "test_files"
    for name in PYDICOM_CTS:
        if (test_files / name).is_file():
            out.append((f"pydicom:{name}", test_files / name))
    return out


SOURCES = real_ct_sources()


def read_source(source: object) -> Volume:
    return read_study(source) if isinstance(source, Path) else read_series(source)


@pytest.fixture(scope="module")
def translator():
    from mfm_engine.demo import demo_checkpoint
    from mfm_engine.translate import Translator

    path = demo_checkpoint()
    if path is None:
        pytest.skip("the demo model is not installed (assets/demo_model)")
    return Translator.from_checkpoint(path, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def written(translator, tmp_path_factory) -> dict[str, tuple[Volume, list[Path], list[str]]]:
    """Each source translated contrast → native and written: (source volume, files, writer notes)."""
    root = tmp_path_factory.mktemp("conformance")
    out: dict[str, tuple[Volume, list[Path], list[str]]] = {}
    for k, (name, source) in enumerate(SOURCES):
        volume = read_source(source)
        synthetic = translator.translate_volume(volume, direction="c2n", solver="euler", steps=1)
        notes: list[str] = []
        files = write_dicom_series(synthetic, root / f"s{k}", source=volume, notes=notes)
        out[name] = (volume, files, notes)
    return out


def floats(value: object) -> list[float]:
    """A DS value as a list of floats, whether it holds one value or several."""
    return [float(v) for v in (value if isinstance(value, pydicom.multival.MultiValue) else [value])]


def test_every_real_ct_series_is_found() -> None:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real CT data folder not present at {SHARED_DATA}")
    # 1 tilt + 1 J2K + 1 dcmqi + 14 WG-04 (7 syntaxes × 2 images, each its own series).
    assert sum(1 for name, _ in SOURCES if not name.startswith("pydicom:")) == 17


@pytest.mark.parametrize("name", [n for n, _ in SOURCES])
def test_dciodvfy_finds_no_error_in_any_file(written, name: str) -> None:
    _, files, _ = written[name]
    problems = {f.name: errs for f in files if (errs := dciodvfy_errors(f))}
    assert problems == {}


@pytest.mark.parametrize("name", [n for n, _ in SOURCES])
def test_each_instance_sits_exactly_on_its_source(written, name: str) -> None:
    volume, files, notes = written[name]
    sources = [Path(p) for p in volume.meta["dicom"]["files"]]
    by_uid = {}
    for path in sources:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        by_uid.setdefault(str(ds.SOPInstanceUID), ds)
    assert len(files) == len(sources)
    for k, path in enumerate(files):
        out = pydicom.dcmread(path, stop_before_pixels=True)
        if "SourceImageSequence" in out:
            src = by_uid[str(out.SourceImageSequence[0].ReferencedSOPInstanceUID)]
        else:  # empty source UIDs: nothing can be referenced, and the writer must have said so
            assert any("SourceImageSequence left out" in n for n in notes)
            src = pydicom.dcmread(sources[k], stop_before_pixels=True)
        ipp, iop = "ImagePositionPatient", "ImageOrientationPatient"
        np.testing.assert_allclose(floats(out[ipp].value), floats(src[ipp].value), atol=0.01)
        np.testing.assert_allclose(floats(out[iop].value), floats(src[iop].value), atol=1e-6)
        assert out.FrameOfReferenceUID == src.get("FrameOfReferenceUID") or not src.get("FrameOfReferenceUID")
        if src.get("SliceThickness") not in (None, ""):
            assert float(out.SliceThickness) == pytest.approx(float(src.SliceThickness))
        if src.get("PatientPosition"):
            assert out.PatientPosition == src.PatientPosition


@pytest.mark.parametrize("name", [n for n, _ in SOURCES])
def test_lossy_sources_give_lossy_marked_outputs(written, name: str) -> None:
    volume, files, _ = written[name]
    lossy_names = ("J2KI", "JLSN", "693_J2KI")
    out = pydicom.dcmread(files[0], stop_before_pixels=True)
    src = pydicom.dcmread(volume.meta["dicom"]["files"][0], stop_before_pixels=True)
    if any(tag in name for tag in lossy_names):
        assert out.LossyImageCompression == "01"
        if src.get("LossyImageCompressionRatio"):
            assert floats(out.LossyImageCompressionRatio) == floats(src.LossyImageCompressionRatio)
            assert "LossyImageCompressionMethod" in out
        assert any("lossy compression" in w for w in volume.warnings)
    else:
        assert out.LossyImageCompression == "00"
        assert not any("lossy" in w for w in volume.warnings)
