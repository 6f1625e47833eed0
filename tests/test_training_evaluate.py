"""evaluate, demo-report: the paper's table layouts, identity rows, organ numbers, checked independently."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from skimage.morphology import erosion

from mfm_engine.checkpoint import save_checkpoint
from mfm_engine.ddpm import DDPMSchedule
from mfm_engine.errors import CheckpointError
from mfm_engine.intensity import model_to_hu
from mfm_engine.metrics import body_mask
from mfm_engine.models import build_model
from mfm_engine.phantom import LEGEND, make_phantom_pair
from training.__main__ import main
from training.cache import SliceCache
from training.demo_report import demo_report
from training.errors import ConfigError
from training.evaluate import ABLATION, evaluate, parse_seeds, patients_from_cache
from training.organs import OrganStats
from training.phantom_data import PhantomPlan, phantom_to_cache

TINY = {"name": "timeresnet", "preset": "tiny"}


pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("evalcache")
    phantom_to_cache(
        PhantomPlan(patients=3, seed0=4000, slices=3, size=64, splits=(1, 1, 1)),
        root / "cache",
        progress=False,
    )
    torch.manual_seed(0)
    flow = save_checkpoint(
        build_model(TINY), root / "flow_tiny", model_config=TINY, kind="flow", trained_on="nothing"
    )
    reg = save_checkpoint(
        build_model(TINY),
        root / "reg_tiny",
        model_config=TINY,
        kind="regression",
        trained_on="nothing",
        direction="c2n",
    )
    ddpm_cfg = {**TINY, "cond_channels": 1}
    ddpm = save_checkpoint(
        build_model(ddpm_cfg),
        root / "ddpm_tiny",
        model_config=ddpm_cfg,
        kind="ddpm",
        trained_on="nothing",
        direction="c2n",
        ddpm_schedule=DDPMSchedule(num_timesteps=20).to_dict(),
    )
    return root, flow, reg, ddpm


def _eroded(mask):
    cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)
    return np.stack([erosion(m.astype(np.uint8), cross).astype(bool) for m in mask])


def test_tables_in_the_papers_layout(setup):
    root, flow, reg, ddpm = setup
    cache = SliceCache(root / "cache")
    patients = patients_from_cache(cache, ["test", "holdout"])
    res = evaluate(
        [str(flow), str(reg), str(ddpm)],
        patients,
        out=root / "eval",
        legend=cache.legend,
        ddpm_steps=2,
        progress=False,
    )
    names = set(res["tables"])
    assert {
        "table1_regression",
        "table2_ddpm",
        "table3_flow_c2n",
        "table4_flow_n2c",
        "table5_solvers",
    } <= names
    assert {"organs_c2n_test", "organs_c2n_holdout", "organs_n2c_test"} <= names
    for name in names:
        assert (root / "eval" / f"{name}.md").exists() and (root / "eval" / f"{name}.csv").exists()
    assert (root / "eval" / "tables.md").exists() and (root / "eval" / "results.json").exists()

    with open(root / "eval" / "table3_flow_c2n.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == [
        "Name",
        "Test MAE (HU)↓",
        "Test SSIM↑",
        "Test PSNR (dB)↑",
        "Hold-out MAE (HU)↓",
        "Hold-out SSIM↑",
        "Hold-out PSNR (dB)↑",
        "Time (s)↓",
        "Params (M)↓",
    ]
    assert rows[1][0] == "flow_tiny" and rows[-1][0] == "identity (input unchanged)"
    assert float(rows[1][-1]) == pytest.approx(
        sum(p.numel() for p in build_model(TINY).parameters()) / 1e6, rel=1e-4
    )

    # Identity's MAE, independently: per slice inside the native's body mask, then the mean over slices.
    contrast, native, _ = [p for p in patients if p.split == "test"][0].volumes()
    per_slice = []
    for k in range(native.shape[0]):
        m = body_mask(native.hu[k])
        c = np.clip(contrast.hu[k], -1000, 1000)
        n = np.clip(native.hu[k], -1000, 1000)
        per_slice.append(np.abs(c - n)[m].mean())
    assert float(rows[-1][1]) == pytest.approx(float(np.mean(per_slice)), rel=1e-5)

    with open(root / "eval" / "table5_solvers.csv") as f:
        t5 = list(csv.DictReader(f))
    assert [r["Solver (steps)"] for r in t5] == [f"{s} ({n})" for s, n in ABLATION]
    assert [int(r["NFE↓"]) for r in t5] == [1, 2, 3, 5, 2, 6, 2, 3, 4]
    assert "Test organ MAE (HU)↓" in t5[0]

    with open(root / "eval" / "table2_ddpm.csv") as f:
        t2 = list(csv.reader(f))
    assert [r[0] for r in t2[1:]] == ["Test", "Hold-out"]
    assert "**" in (root / "eval" / "table5_solvers.md").read_text()


def test_organ_table_identity_row_matches_an_independent_count(setup):
    root, flow, *_ = setup
    cache = SliceCache(root / "cache")
    patients = patients_from_cache(cache, ["test"])
    res = evaluate([str(flow)], patients, out=None, legend=cache.legend, ablation=None, progress=False)
    organs = res["identity"]["c2n"]["test"]["organs"]
    arr = cache.arrays(cache.split("test")[0].id)
    labels = np.asarray(arr["labels"])
    c = model_to_hu(np.asarray(arr["contrast"]))
    n = model_to_hu(np.asarray(arr["native"]))
    m = _eroded(labels == 12)  # aorta
    assert organs["aorta"]["voxels"] == int(m.sum()) > 0
    assert organs["aorta"]["input_mean_error_hu"] == pytest.approx(float((c[m] - n[m]).mean()), rel=1e-5)
    assert organs["aorta"]["input_mean_error_hu"] > 100  # iodine: the contrast is far off in the aorta
    assert "identity (input contrast)" in res["markdown"]


def test_organ_stats_pool_voxels():
    labels = np.zeros((2, 12, 12), np.uint8)
    labels[0, 2:7, 2:7] = 12
    labels[1, 3:10, 3:10] = 8
    true = np.full(labels.shape, 40.0)
    pred = true + 5.0
    inp = true + 200.0 * (labels > 0)
    stats = OrganStats(["aorta", "spleen"], dict(LEGEND))
    stats.add(pred, true, inp, labels)
    r = stats.result()
    assert r["aorta"]["voxels"] == int(_eroded(labels == 12).sum()) == 9
    assert r["spleen"]["voxels"] == 25
    assert r["organs"]["voxels"] == 34 and r["organs"]["mae_hu"] == pytest.approx(5.0)
    assert r["organs"]["identity_mae_hu"] == pytest.approx(200.0)
    with pytest.raises(ValueError, match="not in the label legend"):
        OrganStats(["heart"], dict(LEGEND))


def test_bad_inputs(setup, tmp_path, capsys):
    root, flow, *_ = setup
    cache = SliceCache(root / "cache")
    patients = patients_from_cache(cache, ["test"])
    with pytest.raises(ConfigError, match="rk45x"):
        evaluate([str(flow)], patients, out=None, legend=None, ablation=(("rk45x", 1),), progress=False)
    with pytest.raises(CheckpointError):
        evaluate([str(tmp_path / "missing.safetensors")], patients, out=None, legend=None, progress=False)
    with pytest.raises(ConfigError, match="900-903"):
        parse_seeds("nine")
    assert parse_seeds("900-902,905") == [900, 901, 902, 905]
    assert (
        main(["evaluate", "--checkpoints", str(flow), "--cache", str(tmp_path / "nocache"), "--quiet"]) == 2
    )
    assert "no slice cache" in capsys.readouterr().err


def test_cli_evaluate_on_phantom_seeds(setup, capsys):
    root, flow, reg, _ = setup
    rc = main(
        [
            "evaluate",
            "--checkpoints",
            str(flow),
            str(reg),
            "--phantom-seeds",
            "905",
            "--max-slices",
            "2",
            "--size",
            "64",
            "--no-ablation",
            "--out",
            str(root / "eval2"),
            "--quiet",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert (
        "Table 1 — regression" in out
        and "Table 3 — Flow Matching" in out
        and "Organs — contrast → native" in out
    )
    assert not (root / "eval2" / "table5_solvers.md").exists()


def test_demo_report_measures_and_checks(setup, capsys):
    root, flow, *_ = setup
    report = demo_report(str(flow), seeds=[901], slices=4, size=128)
    assert not report.passed  # an untrained network does not remove iodine
    assert [c.text for c in report.checks][:3] == [
        f"|mean HU error| in {o}" for o in ("aorta", "kidney_cortex", "spleen")
    ]
    # Identity numbers, independently, on the same held-out patient (no motion).
    pair = make_phantom_pair(901, motion_mm=0.0, n_slices=4, size=128)
    m = _eroded(pair.labels.hu == 12)
    expect = float((pair.contrast.hu[m] - pair.native.hu[m]).mean())
    assert report.organs["aorta"]["input_mean_error_hu"] == pytest.approx(expect, rel=1e-5)
    assert report.organs["aorta"]["true_mean_hu"] == pytest.approx(float(pair.native.hu[m].mean()), rel=1e-5)
    text = report.markdown()
    assert "identity (contrast)" in text and "FAIL" in text
    rc = main(
        [
            "demo-report",
            str(flow),
            "--seeds",
            "901",
            "--slices",
            "4",
            "--size",
            "128",
            "--out",
            str(root / "demo"),
        ]
    )
    assert rc == 1 and (root / "demo" / "demo_report.json").exists()
    assert "**FAIL**" in capsys.readouterr().out
