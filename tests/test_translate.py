"""The Translator on a tiny untrained network: both directions, provenance, batching, cancel, kinds."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from mfm_engine.checkpoint import save_checkpoint
from mfm_engine.ddpm import DDPMSchedule
from mfm_engine.intensity import hu_to_model, model_to_hu
from mfm_engine.models.registry import build_model
from mfm_engine.solvers import get_solver
from mfm_engine.translate import TranslationCancelled, TranslationError, Translator
from mfm_engine.volume import Volume

TINY = {"name": "timeresnet", "preset": "tiny"}


def _tiny(seed: int = 0, **cfg):
    torch.manual_seed(seed)
    return build_model({**TINY, **cfg})


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(_tiny(), path, model_config=TINY, kind="flow", trained_on="untrained test network")
    return path


def _volume(n=5, size=48, seed=1) -> Volume:
    rng = np.random.default_rng(seed)
    hu = rng.normal(0, 300, size=(n, size, size)).astype(np.float32)
    return Volume(
        hu, spacing=(0.8, 0.8, 3.0), origin=(1.0, 2.0, 3.0), meta={"modality": "CT", "phase": "arterial"}
    )


@pytest.mark.parametrize("direction", ["c2n", "n2c"])
@pytest.mark.parametrize("solver,steps", [("euler", 1), ("heun", 2), ("rk4", 1)])
def test_volume_matches_direct_integration_both_directions(tiny_ckpt, direction, solver, steps):
    # The bare network's output: pass-through and the wrong-way cap (tests/test_fidelity.py) off.
    tr = Translator.from_checkpoint(
        tiny_ckpt, device="cpu", precision="fp32", passthrough=False, max_wrong_way_hu=None
    )
    vol = _volume()
    before = vol.hu.copy()
    out = tr.translate_volume(vol, direction=direction, solver=solver, steps=steps, batch_size=2)

    # Independent path: the same network, integrated slice by slice with the solver directly.
    net = _tiny()
    net.eval()
    t0, t1 = (1.0, 0.0) if direction == "c2n" else (0.0, 1.0)
    x = torch.from_numpy(hu_to_model(before)).unsqueeze(1)
    with torch.no_grad():
        ref = get_solver(solver).integrate(lambda x, t: net(x, t.expand(x.shape[0])), x, t0, t1, steps)
    np.testing.assert_allclose(out.hu, model_to_hu(ref.x[:, 0].numpy()), atol=1e-2)

    np.testing.assert_array_equal(vol.hu, before)  # input untouched
    assert out.shape == vol.shape and out.hu.dtype == np.float32
    assert out.spacing == vol.spacing and out.origin == vol.origin
    assert out.is_synthetic and not vol.is_synthetic
    prov = out.meta["provenance"]
    assert prov["direction"] == direction and prov["solver"] == solver and prov["steps"] == steps
    assert prov["nfe"] == get_solver(solver).nfe(steps)
    assert out.meta["phase"] == ("native" if direction == "c2n" else "arterial")
    assert out.meta["series_description"].startswith("SYNTHETIC")
    assert np.isfinite(out.hu).all() and out.hu.min() > -3000 and out.hu.max() < 3000


def test_slice_equals_volume_slice_and_batch_size_does_not_matter(tiny_ckpt):
    tr = Translator.from_checkpoint(tiny_ckpt, device="cpu", precision="fp32")
    vol = _volume(n=4)
    a = tr.translate_volume(vol, batch_size=1).hu
    b = tr.translate_volume(vol, batch_size=3).hu
    np.testing.assert_allclose(a, b, atol=1e-2)  # HU; float summation order only
    one = tr.translate_slice(vol.hu[2])
    np.testing.assert_allclose(one.hu, a[2], atol=1e-2)
    assert one.nfe == 1 and one.seconds > 0


def test_odd_slice_size_is_padded_and_cropped(tiny_ckpt):
    tr = Translator.from_checkpoint(tiny_ckpt, device="cpu")
    res = tr.translate_slice(np.zeros((37, 45), np.float32))
    assert res.hu.shape == (37, 45)


def test_cancel_mid_volume_and_progress(tiny_ckpt):
    tr = Translator.from_checkpoint(tiny_ckpt, device="cpu")
    cancel = threading.Event()
    seen = []

    def progress(done, total):
        seen.append((done, total))
        if done >= 2:
            cancel.set()

    with pytest.raises(TranslationCancelled, match="2 of 6"):
        tr.translate_volume(_volume(n=6), batch_size=1, progress=progress, cancel=cancel)
    assert seen[0] == (0, 6) and seen[-1] == (2, 6)


def test_bad_requests_are_clear(tiny_ckpt):
    tr = Translator.from_checkpoint(tiny_ckpt, device="cpu")
    with pytest.raises(TranslationError, match="direction"):
        tr.translate_slice(np.zeros((32, 32)), direction="sideways")
    with pytest.raises(TranslationError, match="steps"):
        tr.translate_slice(np.zeros((32, 32)), steps=0)
    with pytest.raises(Exception, match="unknown|known"):
        tr.translate_slice(np.zeros((32, 32)), solver="magic")
    with pytest.raises(TranslationError, match="precision"):
        Translator(_tiny(), device="cpu", precision="fp8")


def test_regression_model_is_one_pass_one_direction(tmp_path):
    path = tmp_path / "reg.safetensors"
    save_checkpoint(_tiny(3), path, model_config=TINY, kind="regression", trained_on="test", direction="c2n")
    tr = Translator.from_checkpoint(path, device="cpu", passthrough=False, max_wrong_way_hu=None)
    out = tr.translate_volume(_volume(n=2))
    assert out.meta["provenance"]["nfe"] == 1
    net = _tiny(3).eval()
    with torch.no_grad():
        ref = net(torch.from_numpy(hu_to_model(_volume(n=2).hu)).unsqueeze(1), torch.zeros(2))
    np.testing.assert_allclose(out.hu, model_to_hu(ref[:, 0].numpy()), atol=1e-2)
    with pytest.raises(TranslationError, match="c2n only"):
        tr.translate_volume(_volume(n=2), direction="n2c")


def test_ddpm_is_deterministic_and_shares_noise_across_slices(tmp_path):
    path = tmp_path / "ddpm.safetensors"
    cfg = {**TINY, "cond_channels": 1}
    sched = DDPMSchedule(num_timesteps=100)
    save_checkpoint(
        _tiny(4, cond_channels=1),
        path,
        model_config=cfg,
        kind="ddpm",
        trained_on="test",
        direction="c2n",
        ddpm_schedule=sched.to_dict(),
    )
    tr = Translator.from_checkpoint(path, device="cpu")
    vol = _volume(n=3)
    vol.hu[:] = vol.hu[0]  # identical slices must come out identical: one shared noise field
    a = tr.translate_volume(vol, steps=5)
    b = tr.translate_volume(vol, steps=5)
    np.testing.assert_array_equal(a.hu, b.hu)
    np.testing.assert_allclose(a.hu[0], a.hu[2], atol=1e-3)
    assert a.meta["provenance"]["nfe"] == 5 and a.meta["provenance"]["solver"] == "ddim"
