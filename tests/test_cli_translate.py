"""`mfm translate` and `mfm metrics` end to end on small studies with a tiny checkpoint."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from mfm_engine.checkpoint import save_checkpoint
from mfm_engine.cli import main
from mfm_engine.io.dicom_write import write_dicom_series
from mfm_engine.io.image_write import write_image
from mfm_engine.io.study import read_study
from mfm_engine.io.write import write_study
from mfm_engine.models.registry import build_model
from mfm_engine.translate import TranslationCancelled, Translator
from mfm_engine.volume import Volume

TINY = {"name": "timeresnet", "preset": "tiny"}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(
        build_model(TINY), path, model_config=TINY, kind="flow", trained_on="untrained test network"
    )
    return path


def _study(seed=0, n=3, size=32) -> Volume:
    rng = np.random.default_rng(seed)
    hu = np.round(rng.normal(0, 200, size=(n, size, size))).astype(np.float32)
    return Volume(hu, spacing=(0.8, 0.8, 3.0), origin=(-12.0, -12.0, 40.0), meta={"modality": "CT"})


def test_nifti_in_nifti_out_matches_translator(tmp_path, ckpt, capsys):
    src = write_image(_study(), tmp_path / "ct.nii.gz")
    out = tmp_path / "syn.nii.gz"
    assert (
        main(
            [
                "translate",
                str(src),
                str(out),
                "--model",
                str(ckpt),
                "--solver",
                "heun",
                "--steps",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    expected = Translator.from_checkpoint(ckpt, device="cpu").translate_volume(
        read_study(src), solver="heun", steps=2
    )
    np.testing.assert_allclose(written, expected.hu, atol=1e-2)
    assert "wrote" in capsys.readouterr().out


def test_dicom_in_dicom_out_is_marked_synthetic(tmp_path, ckpt):
    src = tmp_path / "ct_dicom"
    write_dicom_series(_study(), src)
    out = tmp_path / "syn_dicom"
    assert main(["translate", str(src), str(out), "--model", str(ckpt), "--device", "cpu"]) == 0
    syn = read_study(out)
    assert syn.shape == (3, 32, 32)
    import pydicom

    ds = pydicom.dcmread(sorted(out.iterdir())[0])
    assert ds.SeriesDescription.startswith("SYNTHETIC")
    assert ds.SyntheticData == "YES" and list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert "euler" in ds.DerivationDescription


def test_folder_of_studies_is_resumable_and_sharded(tmp_path, ckpt, capsys):
    studies = tmp_path / "studies"
    studies.mkdir()
    for i in range(3):
        write_image(_study(seed=i), studies / f"patient{i}.nii.gz")
    out = tmp_path / "out"
    args = ["translate", str(studies), str(out), "--model", str(ckpt), "--device", "cpu"]
    assert main([*args, "--shard", "1/2"]) == 0
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["patient1.nii.gz"]
    assert main(args) == 0
    assert sorted(p.name for p in out.glob("*.nii.gz")) == [f"patient{i}.nii.gz" for i in range(3)]
    assert "skip" in capsys.readouterr().out  # patient1 was done already


def test_cancel_mid_volume_leaves_no_output(tmp_path, ckpt):
    tr = Translator.from_checkpoint(ckpt, device="cpu")
    cancel = threading.Event()
    target = tmp_path / "never.nii.gz"

    def progress(done, _total):
        if done >= 1:
            cancel.set()

    with pytest.raises(TranslationCancelled):
        vol = tr.translate_volume(_study(n=4), batch_size=1, progress=progress, cancel=cancel)
        write_study(vol, target)
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs_give_one_line_errors(tmp_path, ckpt, capsys):
    assert (
        main(
            ["translate", str(tmp_path / "missing.nii.gz"), str(tmp_path / "o.nii.gz"), "--model", str(ckpt)]
        )
        == 2
    )
    assert "no such file" in capsys.readouterr().err
    src = write_image(_study(), tmp_path / "ct.nii.gz")
    bogus = tmp_path / "weights.safetensors"
    bogus.write_bytes(b"not a checkpoint at all")
    assert main(["translate", str(src), str(tmp_path / "o.nii.gz"), "--model", str(bogus)]) == 2
    err = capsys.readouterr().err
    assert "weights.safetensors" in err and "Traceback" not in err
    assert (
        main(["translate", str(src), str(tmp_path / "o.nii.gz"), "--model", str(ckpt), "--solver", "nope"])
        == 2
    )
    assert "nope" in capsys.readouterr().err


def test_metrics_cli_matches_engine(tmp_path, capsys):
    a, b = _study(1), _study(2)
    pa, pb = write_image(a, tmp_path / "a.nii.gz"), write_image(b, tmp_path / "b.nii.gz")
    assert main(["metrics", str(pa), str(pb), "--mask", "none", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    from mfm_engine.metrics import compare

    ref = compare(a, b)
    assert got["mae_hu"] == pytest.approx(ref["mae_hu"]) and got["ssim"] == pytest.approx(ref["ssim"])
    other = write_image(_study(3, size=24), tmp_path / "c.nii.gz")
    assert main(["metrics", str(pa), str(other)]) == 2
    assert "not on the same grid" in capsys.readouterr().err
