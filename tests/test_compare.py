"""Solver/checkpoint comparison (mfm_engine.compare) and `mfm compare`, against the engine called directly.

The tiny checkpoint is untrained, so its HU mean nothing; what is checked is that every row reports
exactly what the Translator and metrics.compare give for the same slices and setting.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from torch_threads import one_torch_thread

from mfm_engine.checkpoint import save_checkpoint
from mfm_engine.cli import main
from mfm_engine.compare import (
    CSV_COLUMNS,
    DEFAULT_GRID,
    CompareError,
    CompareRow,
    Setting,
    compare_grid,
    disagreement,
    markdown_table,
    most_accurate,
    pair_disagreement,
    parse_grid,
    parse_slices,
    write_csv,
)
from mfm_engine.io.write import write_study
from mfm_engine.metrics import body_mask, compare
from mfm_engine.models import build_model
from mfm_engine.phantom import make_phantom_pair
from mfm_engine.solvers import nfe_for
from mfm_engine.translate import TranslationCancelled, Translator
from mfm_engine.volume import Volume

# Small and without attention, so a 64² slice takes milliseconds on a CPU.
TINY = {"name": "timeresnet", "preset": "tiny", "attn_levels": [], "patch_size": 2}
GRID = "euler:1,euler:2,heun:1,rk4:1,adams:3"


def _checkpoint(path, seed: int):
    torch.manual_seed(seed)
    return save_checkpoint(
        build_model(TINY), path, model_config=TINY, kind="flow", trained_on="untrained test"
    )


@pytest.fixture(scope="module", autouse=True)
def _one_thread_per_module():
    """One intra-op thread: a 64² tiny network runs ~20× faster than with threads fighting other jobs."""
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_a", 0)


@pytest.fixture(scope="module")
def ckpt_b(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_b", 1)


@pytest.fixture(scope="module")
def pair():
    return make_phantom_pair(7, motion_mm=0, n_slices=4, size=64)


@pytest.fixture(scope="module")
def translator(ckpt):
    return Translator.from_checkpoint(ckpt, device="cpu")


# -- parsing ------------------------------------------------------------------------------------
def test_parse_grid_and_default_grid():
    assert parse_grid("euler:1, euler:2,heun,RK4:1,euler:1") == [
        Setting("euler", 1),
        Setting("euler", 2),
        Setting("heun", 1),
        Setting("rk4", 1),
    ]
    tokens = [s.token for s in DEFAULT_GRID]
    assert tokens == [
        "euler:1",
        "euler:2",
        "euler:3",
        "euler:5",
        "midpoint:1",
        "midpoint:3",
        "heun:1",
        "rk3:1",
        "rk4:1",
        "adams:5",
        "dopri5:1",
    ]
    assert Setting("dopri5").label == "dopri5" and Setting("heun", 2).label == "heun × 2"
    assert Setting("rk4", 2).expected_nfe() == 8 and Setting("dopri5").expected_nfe() is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("", "names no setting"), ("euler:x", "whole number"), ("euler:0", ">= 1"), ("leapfrog:2", "unknown")],
)
def test_parse_grid_errors_name_the_item(text, fragment):
    with pytest.raises(CompareError, match=fragment):
        parse_grid(text)


def test_parse_slices():
    assert parse_slices(None, 10) == range(10)
    assert parse_slices("2:5", 10) == range(2, 5)
    assert parse_slices("-3:", 10) == range(7, 10)
    assert parse_slices("4", 10) == range(4, 5)
    for bad in ("a:b", "20", "5:5"):
        with pytest.raises(CompareError):
            parse_slices(bad, 10)


def test_most_accurate_prefers_adaptive_then_order_then_steps():
    assert DEFAULT_GRID[most_accurate(DEFAULT_GRID)].solver == "dopri5"
    grid = parse_grid("euler:5,rk4:1,heun:3,rk4:2")
    assert grid[most_accurate(grid)] == Setting("rk4", 2)


# -- the grid against the engine ----------------------------------------------------------------
def test_grid_rows_match_the_engine(pair, ckpt, translator):
    settings = parse_grid(GRID)
    hu, ref = pair.contrast.hu[1:3], pair.native.hu[1:3]
    result = compare_grid({"A": translator}, hu, settings, reference=ref, slices=range(1, 3))
    assert [r.row.solver for r in result.runs] == [s.solver for s in settings]
    direct = Translator.from_checkpoint(ckpt, device="cpu")
    mask = body_mask(ref)
    for run, setting in zip(result.runs, settings, strict=True):
        expected = direct.translate_array(hu, direction="c2n", solver=setting.solver, steps=setting.steps)
        np.testing.assert_allclose(run.hu, expected.hu, atol=1e-3)
        assert run.row.nfe == expected.nfe == nfe_for(setting.solver, setting.steps)
        values = compare(expected.hu, ref, mask)
        assert run.row.mae_hu == pytest.approx(values["mae_hu"], abs=1e-3)
        assert run.row.ssim == pytest.approx(values["ssim"], abs=1e-5)
        assert run.row.psnr_db == pytest.approx(values["psnr_db"], abs=1e-3)
        assert run.row.seconds > 0 and run.row.slices == "1:3" and run.row.model == "A"
    assert not np.array_equal(result.runs[0].hu, result.runs[1].hu)  # settings really differ


def test_batches_give_the_same_rows_as_one_call(pair, translator):
    hu = pair.contrast.hu[:3]
    one = compare_grid(translator, hu, [Setting("heun", 2)], batch_size=3).runs[0]
    split = compare_grid(translator, hu, [Setting("heun", 2)], batch_size=1).runs[0]
    np.testing.assert_allclose(split.hu, one.hu, atol=0.02)  # float32 sums differ by batch
    assert split.row.nfe == one.row.nfe == 4
    assert one.row.mae_hu is None and one.row.ssim is None and one.row.psnr_db is None


def test_checkpoints_are_rows(pair, ckpt, ckpt_b):
    a = Translator.from_checkpoint(ckpt, device="cpu")
    b = Translator.from_checkpoint(ckpt_b, device="cpu")
    hu, ref = pair.contrast.hu[2], pair.native.hu[2]
    result = compare_grid({"A": a, "B": b}, hu, [Setting("euler", 1)], reference=ref)
    assert [r.row.model for r in result.runs] == ["A", "B"]
    for run, t in zip(result.runs, (a, b), strict=True):
        expected = t.translate_slice(hu, solver="euler", steps=1)
        np.testing.assert_allclose(run.hu, expected.hu, atol=1e-3)
        assert run.row.mae_hu == pytest.approx(compare(expected.hu, ref, body_mask(ref))["mae_hu"], abs=1e-3)


def test_a_regression_baseline_is_one_pass_whatever_the_setting(pair, translator, tmp_path):
    torch.manual_seed(2)
    path = save_checkpoint(
        build_model(TINY),
        tmp_path / "reg",
        model_config=TINY,
        kind="regression",
        trained_on="test",
        direction="c2n",
    )
    reg = Translator.from_checkpoint(path, device="cpu")
    hu = pair.contrast.hu[1]
    result = compare_grid(
        {"flow": translator, "unet": reg}, hu, [Setting("heun", 2)], reference=pair.native.hu[1]
    )
    flow, baseline = result.rows
    assert (flow.solver, flow.steps, flow.nfe) == ("heun", 2, 4)
    assert (baseline.solver, baseline.steps, baseline.nfe) == ("single pass", 1, 1)
    np.testing.assert_allclose(result.runs[1].hu, reg.translate_slice(hu).hu, atol=1e-3)


def test_cancel_stops_the_grid(pair, translator):
    with pytest.raises(TranslationCancelled):
        compare_grid(translator, pair.contrast.hu[0], parse_grid(GRID), cancel=lambda: True)


def test_shape_mismatch_is_refused(pair, translator):
    with pytest.raises(CompareError, match="shape"):
        compare_grid(translator, pair.contrast.hu[0], [Setting("euler")], reference=pair.native.hu[:2])


# -- disagreement -------------------------------------------------------------------------------
def test_disagreement_is_max_minus_min():
    rng = np.random.default_rng(0)
    outs = [rng.normal(0, 100, (3, 8, 9)).astype(np.float32) for _ in range(4)]
    np.testing.assert_allclose(disagreement(outs), np.ptp(np.stack(outs), axis=0), atol=1e-4)
    np.testing.assert_allclose(pair_disagreement(outs[0], outs[2]), np.abs(outs[0] - outs[2]), atol=1e-4)
    assert disagreement(outs).dtype == np.float32
    with pytest.raises(CompareError):
        disagreement(outs[:1])
    with pytest.raises(CompareError):
        disagreement([outs[0], outs[1][:, :4]])


# -- tables -------------------------------------------------------------------------------------
def test_csv_and_markdown(tmp_path):
    rows = [
        CompareRow("m", "euler", 1, 1, 0.01234, 12.5, 0.9, 30.25),
        CompareRow("m", "rk4", 1, 4, 0.05, None, None, None),
        CompareRow("m", "rk4", 2, 8, 0.1, 0.0, 1.0, float("inf")),
    ]
    path = write_csv(rows, tmp_path / "sub" / "t.csv")
    with path.open() as fh:
        table = list(csv.DictReader(fh))
    assert tuple(table[0]) == CSV_COLUMNS
    assert table[0]["mae_hu"] == "12.500" and table[1]["mae_hu"] == "" and table[2]["psnr_db"] == "inf"
    md = markdown_table(rows)
    assert md.splitlines()[0].startswith("| solver | steps | NFE | seconds | MAE (HU) | SSIM | PSNR (dB)")
    assert len(md.splitlines()) == 2 + len(rows)
    assert "MAE" not in markdown_table(rows[1:2])  # no reference anywhere: no metric columns


# -- the command line ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nifti_pair(pair, tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    return write_study(pair.contrast, folder / "contrast.nii.gz"), write_study(
        pair.native, folder / "native.nii.gz"
    )


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_cli_writes_the_table_matching_the_engine(nifti_pair, ckpt, tmp_path, capsys):
    contrast, native = nifti_pair
    out = tmp_path / "table.csv"
    spread = tmp_path / "spread.nii.gz"
    argv = ["compare", str(contrast), "--reference", str(native), "--model", str(ckpt), "--grid", GRID]
    argv += ["--slices", "1:3", "--device", "cpu", "--out", str(out), "--disagreement", str(spread)]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "| solver | steps | NFE | seconds | MAE (HU) | SSIM | PSNR (dB)" in stdout
    rows = _read_csv(out)
    assert set(("solver", "steps", "nfe", "seconds", "mae_hu", "ssim", "psnr_db")) <= set(rows[0])
    from mfm_engine.io.study import read_study

    c, n = read_study(contrast), read_study(native)
    direct = Translator.from_checkpoint(ckpt, device="cpu")
    mask = body_mask(n.hu[1:3])
    outputs = []
    for row, setting in zip(rows, parse_grid(GRID), strict=True):
        expected = direct.translate_array(c.hu[1:3], solver=setting.solver, steps=setting.steps)
        outputs.append(expected.hu)
        values = compare(expected.hu, n.hu[1:3], mask)
        assert (row["solver"], int(row["steps"]), int(row["nfe"])) == (
            setting.solver,
            setting.steps,
            expected.nfe,
        )
        assert float(row["mae_hu"]) == pytest.approx(values["mae_hu"], abs=2e-3)
        assert float(row["ssim"]) == pytest.approx(values["ssim"], abs=2e-5)
        assert float(row["psnr_db"]) == pytest.approx(values["psnr_db"], abs=2e-3)
        assert float(row["seconds"]) >= 0 and row["slices"] == "1:3" and row["direction"] == "c2n"
    written = read_study(spread)
    assert written.shape == (2, 64, 64)
    np.testing.assert_allclose(written.hu, np.ptp(np.stack(outputs), axis=0), atol=0.05)
    np.testing.assert_allclose(written.origin, c.index_to_physical((0, 0, 1)), atol=1e-3)


def test_cli_without_reference_leaves_metrics_empty_and_compares_checkpoints(
    nifti_pair, ckpt, ckpt_b, tmp_path, capsys
):
    contrast, _ = nifti_pair
    out = tmp_path / "t.csv"
    models = f"{ckpt},{ckpt_b}"
    argv = ["compare", str(contrast), "--models", models, "--grid", "euler:1", "--slices", "2"]
    assert main([*argv, "--device", "cpu", "--out", str(out)]) == 0
    rows = _read_csv(out)
    assert len(rows) == 2 and {r["mae_hu"] for r in rows} == {""} and {r["ssim"] for r in rows} == {""}
    assert rows[0]["model"] != rows[1]["model"]  # same architecture: told apart by file name
    assert "MAE" not in capsys.readouterr().out


def test_cli_bad_input_is_one_plain_line(nifti_pair, ckpt, tmp_path, capsys, pair):
    contrast, _ = nifti_pair
    assert main(["compare", str(contrast), "--model", str(ckpt), "--grid", "euler:0"]) == 2
    assert "euler:0" in capsys.readouterr().err
    native = pair.native
    fewer = Volume(native.hu[:2], native.spacing, native.origin, native.direction, {})
    wrong = write_study(fewer, tmp_path / "wrong.nii.gz")
    assert main(["compare", str(contrast), "--reference", str(wrong), "--model", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert "not on the input's grid" in err and "Traceback" not in err
    assert main(["compare", str(contrast), "--model", str(ckpt), "--slices", "9:12"]) == 2
    assert "select no slice" in capsys.readouterr().err
