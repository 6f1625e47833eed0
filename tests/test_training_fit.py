"""fit: losses, checkpoints in the engine's format, logs, exact resume, and refusals."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import scipy.stats
import torch
from safetensors.torch import load_file
from torch import nn

from mfm_engine.checkpoint import load_checkpoint, read_checkpoint_meta
from mfm_engine.ddpm import DDPMSchedule
from mfm_engine.translate import Translator
from training.__main__ import main
from training.config import config_from_dict, load_config
from training.errors import CacheError, ConfigError, ResumeError, TrainingError
from training.phantom_data import PhantomPlan, phantom_to_cache
from training.trainer import fit, training_loss

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("fitcache") / "cache"
    torch.set_num_threads(1)
    phantom_to_cache(
        PhantomPlan(patients=4, seed0=3000, slices=4, size=64, splits=(2, 1, 1)), root, progress=False
    )
    return root


def _cfg(cache, out, **over):
    doc = {
        "name": "tiny",
        "kind": "flow",
        "model": {"name": "timeresnet", "preset": "tiny"},
        "data": {"cache": str(cache), "crop": 32, "augment": True},
        "optim": {"lr": 1e-3, "batch_size": 2, "schedule": "cosine", "warmup_steps": 2, "grad_clip": 1.0},
        "train": {
            "epochs": 2,
            "steps_per_epoch": 3,
            "log_every": 1,
            "save_state_every": 100,
            "tensorboard": False,
        },
        "validate": {"max_patients": 1, "slices_per_patient": 2},
        "out": str(out),
    }
    for key, value in over.items():
        if isinstance(value, dict):
            doc.setdefault(key, {}).update(value)
        else:
            doc[key] = value
    return config_from_dict(doc, source="test-config")


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# -- the losses, against what they must be ----------------------------------------------------------


class _Constant(nn.Module):
    """A velocity field that is the same everywhere."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x, t, cond=None):
        return torch.full_like(x, self.value)


class _Shift(nn.Module):
    def __init__(self, delta: float) -> None:
        super().__init__()
        self.delta = delta

    def forward(self, x, t, cond=None):
        return x + self.delta


class _NoiseFromZeroTarget(nn.Module):
    """With x0 = 0, x_t = √(1−ᾱ_t)·ε, so ε = x_t / √(1−ᾱ_t): exact if t is timestep / T."""

    def __init__(self, schedule: DDPMSchedule) -> None:
        super().__init__()
        self.schedule = schedule

    def forward(self, x, t, cond=None):
        ts = torch.round(t * self.schedule.num_timesteps).long()
        ab = self.schedule.alpha_bar()[ts].reshape(-1, 1, 1, 1)
        return x / (1 - ab).sqrt()


def test_flow_loss_regresses_contrast_minus_native():
    native = torch.rand(3, 1, 8, 8) - 0.5
    contrast = native + 0.3
    gen = torch.Generator().manual_seed(0)
    assert training_loss("flow", _Constant(0.3), native, contrast, gen).item() == pytest.approx(
        0.0, abs=1e-12
    )
    # The opposite sign (native − contrast) would be 4·0.3² off.
    assert training_loss("flow", _Constant(-0.3), native, contrast, gen).item() == pytest.approx(0.36)


class _TimeRecorder(nn.Module):
    """Predicts zero velocity and remembers the times it was asked about."""

    def __init__(self):
        super().__init__()
        self.times: list[torch.Tensor] = []

    def forward(self, x, t, cond=None):
        self.times.append(t.detach().clone())
        return torch.zeros_like(x)


@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_flow_endpoint_fraction_sends_that_share_of_times_to_0_and_1(fraction):
    net = _TimeRecorder()
    native = torch.zeros(4000, 1, 1, 1)
    gen = torch.Generator().manual_seed(1)
    training_loss("flow", net, native, native + 0.1, gen, endpoint_fraction=fraction)
    t = net.times[0]
    assert t.shape == (4000,) and bool(((t >= 0) & (t <= 1)).all())
    ones, zeros = float((t == 1).float().mean()), float((t == 0).float().mean())
    # Binomial share of end points: within 5 standard errors of the fraction, split evenly.
    se = max((fraction * (1 - fraction) / 4000) ** 0.5, 1e-9)
    assert abs(ones + zeros - fraction) <= 5 * se + 1e-9
    if fraction:
        assert abs(ones - zeros) <= 5 * (fraction / 4000) ** 0.5
    inner = t[(t > 0) & (t < 1)]
    if fraction < 1:
        # The rest stays uniform on (0, 1): Kolmogorov–Smirnov against scipy's uniform.
        assert scipy.stats.kstest(inner.numpy(), "uniform").pvalue > 1e-3


def test_regression_loss_is_l1_in_the_given_direction():
    native = torch.rand(2, 1, 8, 8) - 0.5
    contrast = native + 0.2
    gen = torch.Generator().manual_seed(0)
    assert training_loss(
        "regression", _Shift(-0.2), native, contrast, gen, direction="c2n"
    ).item() == pytest.approx(0, abs=1e-7)
    assert training_loss(
        "regression", _Shift(0.2), native, contrast, gen, direction="n2c"
    ).item() == pytest.approx(0, abs=1e-7)
    assert training_loss(
        "regression", _Shift(0.0), native, contrast, gen, direction="c2n"
    ).item() == pytest.approx(0.2)


def test_ddpm_loss_predicts_the_noise_at_timestep_over_T():
    schedule = DDPMSchedule(num_timesteps=100)
    target = torch.zeros(4, 1, 8, 8)
    cond = torch.rand(4, 1, 8, 8)
    gen = torch.Generator().manual_seed(3)
    loss = training_loss(
        "ddpm", _NoiseFromZeroTarget(schedule), target, cond, gen, direction="c2n", schedule=schedule
    )
    assert loss.item() == pytest.approx(0.0, abs=1e-8)


# -- a run ------------------------------------------------------------------------------------------------


def test_fit_writes_engine_checkpoints_logs_and_state(cache, tmp_path):
    cfg = _cfg(cache, tmp_path / "run", train={"tensorboard": True})
    result = fit(cfg, progress=False)
    run = tmp_path / "run"
    assert result.step == result.total_steps == 6
    names = sorted(p.name for p in (run / "checkpoints").glob("*.safetensors"))
    assert names == ["best.safetensors", "epoch_001.safetensors", "epoch_002.safetensors", "last.safetensors"]
    meta = read_checkpoint_meta(run / "checkpoints" / "last.safetensors")
    assert meta.kind == "flow" and meta.model["name"] == "timeresnet" and meta.direction is None
    assert "phantom" in meta.trained_on and "stand-in" in meta.trained_on
    assert meta.extra["intended_use"].endswith("not for clinical use")
    assert meta.extra["training"]["step"] == 6 and meta.extra["training"]["config"]["optim"]["lr"] == 1e-3
    assert "organ_mae_hu" in meta.metrics and "mae_hu" in meta.metrics
    # The training slices' in-plane spacing is recorded: the range over the train split's patients,
    # as the phantom made them (seeds 3000 and 3001 at 64 px).
    from mfm_engine.phantom import make_phantom_pair

    spacings = [
        s for seed in (3000, 3001) for s in make_phantom_pair(seed, n_slices=1, size=64).native.spacing[:2]
    ]
    assert tuple(meta.pixel_spacing_mm) == pytest.approx((min(spacings), max(spacings)))
    # The product can use it, on a whole slice of another size than the crops.
    tr = Translator.from_checkpoint(run / "checkpoints" / "best.safetensors", device="cpu")
    out = tr.translate_array(np.zeros((64, 64), np.float32), direction="c2n", steps=2)
    assert out.hu.shape == (64, 64) and np.isfinite(out.hu).all()

    loss = _rows(run / "loss.csv")
    assert [int(r["step"]) for r in loss] == [1, 2, 3, 4, 5, 6]
    assert all(float(r["loss"]) > 0 for r in loss)
    assert float(loss[0]["lr"]) == pytest.approx(5e-4)  # warm-up: step 1 of 2
    val = _rows(run / "validation.csv")
    assert [int(r["step"]) for r in val] == [3, 6]
    assert {
        "aorta_err_hu",
        "kidney_cortex_err_hu",
        "spleen_err_hu",
        "organ_mae_hu",
        "identity_organ_mae_hu",
    } <= set(val[0])
    # Identity is the contrast itself: the aorta is far brighter than the native there.
    assert float(val[0]["identity_organ_mae_hu"]) > 50
    assert list((run / "tensorboard").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] and len(summary["rank_weight_sha256"]) == 1
    state = json.loads((run / "state" / "latest.json").read_text())
    assert state["step"] == 6 and not list((run / "state").glob("*.pkl"))


def test_stop_and_resume_reproduce_the_uninterrupted_run(cache, tmp_path):
    straight = fit(_cfg(cache, tmp_path / "a"), progress=False)
    cfg_b = _cfg(cache, tmp_path / "b")
    first = fit(cfg_b, stop_after_steps=2, progress=False)  # stops inside epoch 1
    assert first.stopped_early and first.step == 2
    assert json.loads((tmp_path / "b" / "state" / "latest.json").read_text())["step"] == 2
    second = fit(cfg_b, resume=True, progress=False)
    assert second.step == straight.step == 6

    wa = load_file(str(tmp_path / "a" / "checkpoints" / "last.safetensors"))
    wb = load_file(str(tmp_path / "b" / "checkpoints" / "last.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    # Same loss sequence, without duplicated rows from the first attempt.
    la = [(r["step"], r["loss"]) for r in _rows(tmp_path / "a" / "loss.csv")]
    lb = [(r["step"], r["loss"]) for r in _rows(tmp_path / "b" / "loss.csv")]
    assert la == lb
    va = [r["organ_mae_hu"] for r in _rows(tmp_path / "a" / "validation.csv")]
    vb = [r["organ_mae_hu"] for r in _rows(tmp_path / "b" / "validation.csv")]
    assert va == vb
    # Optimizer moments too, not only the weights.
    sa = load_file(str(next((tmp_path / "a" / "state").glob("*.safetensors"))))
    sb = load_file(str(next((tmp_path / "b" / "state").glob("*.safetensors"))))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resume_refuses_another_model_or_kind(cache, tmp_path):
    fit(_cfg(cache, tmp_path / "run", train={"epochs": 1, "steps_per_epoch": 1}), progress=False)
    other = _cfg(cache, tmp_path / "run", model={"name": "monai_unet", "preset": "demo"})
    with pytest.raises(ResumeError, match=r"written for model timeresnet/tiny.*asks for monai_unet/demo"):
        fit(other, resume=True, progress=False)
    bigger = _cfg(
        cache, tmp_path / "run", model={"name": "timeresnet", "preset": "tiny", "base_channels": 24}
    )
    with pytest.raises(ResumeError, match="written for model timeresnet/tiny"):
        fit(bigger, resume=True, progress=False)
    reg = _cfg(cache, tmp_path / "run", kind="regression")
    with pytest.raises(ResumeError, match="kind='flow'"):
        fit(reg, resume=True, progress=False)
    with pytest.raises(TrainingError, match="already holds a training run.*--resume"):
        fit(_cfg(cache, tmp_path / "run"), progress=False)
    with pytest.raises(ResumeError, match="no training state"):
        fit(_cfg(cache, tmp_path / "fresh"), resume=True, progress=False)
    with pytest.raises(ResumeError, match="holds a timeresnet/tiny model"):
        fit(
            other.__class__(**{**other.__dict__, "out": str(tmp_path / "x")}),
            init_from=tmp_path / "run" / "checkpoints" / "last.safetensors",
            progress=False,
        )


def test_corrupt_state_is_refused(cache, tmp_path):
    fit(_cfg(cache, tmp_path / "run", train={"epochs": 1, "steps_per_epoch": 1}), progress=False)
    tensors = next((tmp_path / "run" / "state").glob("*.safetensors"))
    data = bytearray(tensors.read_bytes())
    data[-10] ^= 0xFF
    tensors.write_bytes(bytes(data))
    with pytest.raises(ResumeError, match="SHA-256 differs"):
        fit(_cfg(cache, tmp_path / "run"), resume=True, progress=False)


@pytest.mark.parametrize("kind, direction", [("regression", "n2c"), ("ddpm", "c2n")])
def test_one_way_kinds(cache, tmp_path, kind, direction):
    cfg = _cfg(
        cache,
        tmp_path / kind,
        kind=kind,
        direction=direction,
        train={"epochs": 1, "steps_per_epoch": 2},
        validate={"steps": 2},
        ddpm={"num_timesteps": 50},
    )
    fit(cfg, progress=False)
    ck = load_checkpoint(tmp_path / kind / "checkpoints" / "last.safetensors")
    assert ck.meta.kind == kind and ck.meta.direction == direction
    if kind == "ddpm":
        assert ck.meta.ddpm["num_timesteps"] == 50 and ck.model.cond_channels == 1
    tr = Translator.from_checkpoint(tmp_path / kind / "checkpoints" / "last.safetensors", device="cpu")
    assert tr.supports(direction) and not tr.supports("n2c" if direction == "c2n" else "c2n")
    val = _rows(tmp_path / kind / "validation.csv")
    assert len(val) == 1 and float(val[0]["mae_hu"]) > 0


def test_other_phantom_plan_is_not_silently_reused(cache, tmp_path):
    cfg = _cfg(
        cache, tmp_path / "run", data={"phantom": {"patients": 5, "seed0": 3000, "slices": 4, "size": 64}}
    )
    with pytest.raises(CacheError, match="holds other data"):
        fit(cfg, progress=False)


def test_cli_fit_and_demo_config_on_a_tiny_budget(tmp_path, capsys):
    """The demo config, shrunk: builds its phantom cache, trains 2 steps on whole slices, loads."""
    overrides = [
        f"data.cache={tmp_path / 'cache'}",
        'data.phantom={"patients": 3, "seed0": 3100, "slices": 2, "size": 64, "splits": [1, 1, 1]}',
        "train.epochs=1",
        "train.steps_per_epoch=2",
        "optim.warmup_steps=1",
        "train.tensorboard=false",
        "validate.max_patients=1",
        "validate.slices_per_patient=1",
        f"out={tmp_path / 'run'}",
    ]
    cfg = load_config("training/configs/demo_flow.json", overrides)
    assert cfg.model["preset"] == "demo" and cfg.model["gain_offset_head"] and cfg.data.crop is None
    rc = main(
        [
            "fit",
            "--config",
            "training/configs/demo_flow.json",
            "--quiet",
            *sum((["--set", o] for o in overrides), []),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "finished at step 2 of 2" in out
    ck = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert ck.meta.model["preset"] == "demo" and ck.meta.extra["phantom_trained"] is True
    assert (
        main(
            [
                "fit",
                "--config",
                "training/configs/demo_flow.json",
                "--quiet",
                *sum((["--set", o] for o in overrides), []),
            ]
        )
        == 2
    )
    assert "already holds a training run" in capsys.readouterr().err


@pytest.mark.slow
def test_resume_after_a_real_kill(cache, tmp_path):
    """SIGKILL a training process at an arbitrary step; resuming reproduces the uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    doc = {
        "name": "kill",
        "model": {"name": "timeresnet", "preset": "tiny"},
        "data": {"cache": str(cache), "crop": 32},
        "optim": {"lr": 1e-3, "batch_size": 2, "schedule": "cosine", "warmup_steps": 3},
        "train": {
            "epochs": 4,
            "steps_per_epoch": 15,
            "log_every": 1,
            "save_state_every": 1,
            "tensorboard": False,
        },
        "validate": {"max_patients": 1, "slices_per_patient": 1},
    }
    (tmp_path / "cfg.json").write_text(json.dumps({**doc, "out": str(tmp_path / "killed")}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "training", "fit", "--config", str(tmp_path / "cfg.json"), "--quiet"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    latest = tmp_path / "killed" / "state" / "latest.json"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            if latest.exists() and json.loads(latest.read_text())["step"] >= 5:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    killed_at = json.loads(latest.read_text())["step"]
    assert 5 <= killed_at < 60, "the run finished before it could be killed"
    fit(config_from_dict({**doc, "out": str(tmp_path / "killed")}), resume=True, progress=False)
    fit(config_from_dict({**doc, "out": str(tmp_path / "straight")}), progress=False)
    a = load_file(str(tmp_path / "straight" / "checkpoints" / "last.safetensors"))
    b = load_file(str(tmp_path / "killed" / "checkpoints" / "last.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    la = [(r["step"], r["loss"]) for r in _rows(tmp_path / "straight" / "loss.csv")]
    lb = [(r["step"], r["loss"]) for r in _rows(tmp_path / "killed" / "loss.csv")]
    assert la == lb


@pytest.mark.parametrize("name", ["monai_unet", "monai_segresnet", "monai_swinunetr"])
def test_any_registry_model_trains(cache, tmp_path, name):
    cfg = _cfg(
        cache,
        tmp_path / name,
        model={"name": name, "preset": "demo"},
        data={"crop": 64 if name == "monai_swinunetr" else 32},
        train={"epochs": 1, "steps_per_epoch": 1},
        validate={"max_patients": 1, "slices_per_patient": 1},
    )
    result = fit(cfg, progress=False)
    meta = read_checkpoint_meta(result.last_checkpoint)
    assert meta.model["name"] == name and meta.kind == "flow"


def test_crop_too_small_for_the_model(cache, tmp_path):
    cfg = _cfg(cache, tmp_path / "run", model={"name": "monai_swinunetr", "preset": "demo"})
    with pytest.raises(ConfigError, match=r"data.crop 32 too small for monai_swinunetr/demo.*at least 64"):
        fit(cfg, progress=False)
