"""Pass-through outside the model's HU range, resampling to the training pixel spacing, the wrong-way cap.

Synthetic checks with tiny networks whose output is known (zero or constant velocity), then the shipped
demo model on real CT from ../shared/data (skipped where absent).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import shared_subfolder

from mfm_engine.checkpoint import CheckpointError, read_checkpoint_meta, save_checkpoint
from mfm_engine.cli import main
from mfm_engine.demo import demo_checkpoint
from mfm_engine.fidelity import PassThrough, model_spacing, resampled_shape
from mfm_engine.io.study import read_study
from mfm_engine.models.registry import build_model
from mfm_engine.translate import Translator
from mfm_engine.volume import Volume

TINY = {"name": "timeresnet", "preset": "tiny"}
PADDING = (-3024.0, -2000.0, -1500.0)


class ConstantVelocity(torch.nn.Module):
    """v = c everywhere (model scale), recording the input sizes it was shown."""

    def __init__(self, c: float = 0.0) -> None:
        super().__init__()
        self.c = c
        self.seen: list[tuple[int, int]] = []

    def forward(self, x, t, cond=None):
        self.seen.append(tuple(x.shape[-2:]))
        return torch.full_like(x, self.c)


def _ct(n=2, size=40, spacing=(0.75, 0.75, 3.0), seed=0) -> Volume:
    """Soft tissue with noise, padding corners, air and dense bone: every case pass-through meets."""
    rng = np.random.default_rng(seed)
    hu = rng.normal(40, 30, size=(n, size, size)).astype(np.float32)
    hu[:, :6, :6] = PADDING[0]
    hu[:, :6, -6:] = PADDING[1]
    hu[:, -6:, :6] = PADDING[2]
    hu[:, -6:, -6:] = rng.normal(-1020, 15, size=(n, 6, 6))  # air, partly below the floor
    hu[:, 17:23, 17:23] = rng.uniform(1050, 1800, size=(n, 6, 6))  # cortical bone above the ceiling
    meta = {"modality": "CT", "phase": "arterial", "series_description": "test"}
    return Volume(np.round(hu), spacing=spacing, origin=(-3.0, 4.0, 10.0), meta=meta)


# -- the rule ----------------------------------------------------------------------------------


def test_weight_is_zero_outside_one_inside_and_smooth_between():
    pt = PassThrough(-1000, 1000, 50)
    hu = np.linspace(-3100, 3100, 62001, dtype=np.float32)
    w = pt.weight(hu)
    assert (w[(hu <= -1000) | (hu >= 1000)] == 0).all()
    assert (w[(hu >= -950) & (hu <= 950)] == 1).all()
    rising = w[(hu >= -1000) & (hu <= -950)]
    assert (np.diff(rising) >= 0).all()
    assert np.abs(np.diff(w)).max() < 0.01  # no step anywhere: 0.1 HU apart, the weight moves < 1 %
    x = np.array([-3024, -1001, -975, 0, 999.5, 1500], np.float32)
    m = np.full_like(x, 7.0)
    out = pt.apply(x, m)
    assert out[0] == x[0] and out[1] == x[1] and out[5] == x[5] and out[3] == 7.0
    assert x[2] < out[2] < 7.0  # half-way into the blend: between input and model


def test_translator_passes_padding_air_and_bone_through_and_records_it(tmp_path):
    torch.manual_seed(0)
    path = save_checkpoint(build_model(TINY), tmp_path / "t", model_config=TINY, kind="flow", trained_on="x")
    vol = _ct()
    on = Translator.from_checkpoint(path, device="cpu").translate_volume(vol)
    off = Translator.from_checkpoint(path, device="cpu", passthrough=False).translate_volume(vol)
    outside = (vol.hu <= -1000) | (vol.hu >= 1000)
    np.testing.assert_array_equal(on.hu[outside], vol.hu[outside])  # bit for bit
    assert (off.hu[outside] != vol.hu[outside]).mean() > 0.9  # without it the model rewrites them
    inside = (vol.hu >= -950) & (vol.hu <= 950)
    ww = np.minimum(off.hu, vol.hu + 20)  # the default wrong-way cap applies to both
    np.testing.assert_allclose(on.hu[inside], ww[inside], atol=1e-3)
    prov = on.meta["provenance"]
    assert prov["passthrough"] == {
        "rule": "outside_hu_range",
        "hu_range": [-1000.0, 1000.0],
        "blend_hu": 50.0,
    }
    assert off.meta["provenance"]["passthrough"] == {"rule": "off"}


def test_sidecar_rule_old_sidecars_and_none(tmp_path):
    torch.manual_seed(0)
    path = save_checkpoint(
        build_model(TINY),
        tmp_path / "t",
        model_config=TINY,
        kind="flow",
        trained_on="x",
        hu_range=(-900, 1200),
    )
    sidecar = path.with_suffix(".json")
    doc = json.loads(sidecar.read_text())
    assert doc["passthrough"] == {"rule": "outside_hu_range", "blend_hu": 50.0}
    assert "pixel_spacing_mm" not in doc  # unknown unless given
    del doc["passthrough"]  # an older sidecar: the default rule on its own HU range
    sidecar.write_text(json.dumps(doc))
    tr = Translator.from_checkpoint(path, device="cpu")
    assert tr.passthrough == PassThrough(-900.0, 1200.0, 50.0)
    doc["passthrough"] = {"rule": "none"}
    sidecar.write_text(json.dumps(doc))
    assert Translator.from_checkpoint(path, device="cpu").passthrough is None
    for bad in ({"rule": "clip"}, {"rule": "outside_hu_range", "blend_hu": 5000}):
        doc["passthrough"] = bad
        sidecar.write_text(json.dumps(doc))
        with pytest.raises(CheckpointError, match="passthrough|blend"):
            read_checkpoint_meta(path)
    doc["passthrough"] = {"rule": "outside_hu_range"}
    doc["pixel_spacing_mm"] = [0.9, 0.7]
    sidecar.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="pixel spacing"):
        read_checkpoint_meta(path)


def test_shipped_sidecar_records_rule_and_training_spacing():
    ckpt = demo_checkpoint()
    if ckpt is None:
        pytest.skip("assets/ does not ship the demo model")
    meta = read_checkpoint_meta(ckpt)
    assert meta.passthrough == {"rule": "outside_hu_range", "blend_hu": 50.0}
    # The varied phantom's pixel spacing over the training seeds 1000–1099 (0.6–1.0 mm by design).
    from mfm_engine.phantom import make_phantom_pair
    from mfm_engine.phantom.scanner import PIXEL_MM_RANGE

    px = [make_phantom_pair(s, n_slices=1, size=512).native.spacing[0] for s in (1000, 1042, 1099)]
    lo, hi = meta.pixel_spacing_mm
    assert PIXEL_MM_RANGE[0] <= lo < hi <= PIXEL_MM_RANGE[1] and hi - lo > 0.3
    assert all(lo - 1e-3 <= p <= hi + 1e-3 for p in px)


# -- wrong-way cap -----------------------------------------------------------------------------


@pytest.mark.parametrize("direction,c", [("c2n", -0.1), ("n2c", -0.1), ("c2n", 0.05)])
def test_wrong_way_cap(direction, c):
    vol = _ct()
    tr = Translator(ConstantVelocity(c), device="cpu", precision="fp32")
    out = tr.translate_volume(vol, direction=direction).hu
    inside = (vol.hu >= -950) & (vol.hu <= 950)
    change = (out - vol.hu)[inside]
    free = 1000.0 * c * (-1 if direction == "c2n" else 1)  # the network's own change, HU
    wrong_way = free > 0 if direction == "c2n" else free < 0
    expected = np.sign(free) * 20.0 if wrong_way else free
    np.testing.assert_allclose(change, expected, atol=0.05)
    uncapped = Translator(ConstantVelocity(c), device="cpu", precision="fp32", max_wrong_way_hu=None)
    np.testing.assert_allclose(
        (uncapped.translate_volume(vol, direction=direction).hu - vol.hu)[inside], free, atol=0.05
    )


# -- resampling --------------------------------------------------------------------------------


def test_model_spacing_and_shapes():
    assert model_spacing((3.0, 3.0), (0.7, 0.8)) == (0.8, 0.8)
    assert model_spacing((0.6, 0.6), (0.7, 0.8)) == (0.7, 0.7)
    assert model_spacing((0.75, 0.79), (0.7, 0.8)) == (0.75, 0.79)  # inside: left alone
    assert model_spacing((0.81, 0.5), (0.8, 0.8)) == (0.81, 0.8)  # within 2 %: left alone
    assert resampled_shape((100, 122), (3.0, 3.0), (0.8, 0.8)) == (375, 458)


@pytest.mark.parametrize("spacing", [3.0, 0.6])
def test_resampling_reaches_training_scale_and_keeps_geometry(spacing):
    vol = _ct(size=40, spacing=(spacing, spacing, 2.5))
    vol.meta["slice_positions_lps"] = [[-3.0, 4.0, 10.0 + 2.5 * k] for k in range(vol.shape[0])]
    net = ConstantVelocity(0.0)
    tr = Translator(net, device="cpu", precision="fp32", training_spacing_mm=(0.7, 0.8))
    before = vol.hu.copy()
    out = tr.translate_volume(vol)
    side = round(40 * spacing / (0.8 if spacing > 0.8 else 0.7))
    assert set(net.seen) == {(side, side)}
    # Zero velocity: nothing may change, not even by interpolation (only the change is resampled).
    np.testing.assert_array_equal(out.hu, before)
    np.testing.assert_array_equal(vol.hu, before)
    assert out.shape == vol.shape and out.spacing == vol.spacing and out.origin == vol.origin
    np.testing.assert_array_equal(out.direction, vol.direction)
    for key in ("modality", "slice_positions_lps"):
        assert out.meta[key] == vol.meta[key]
    rec = out.meta["provenance"]["resampling"]
    assert rec["resampled"] and rec["input_spacing_mm"] == [spacing, spacing]
    assert rec["model_spacing_mm"] == ([0.8, 0.8] if spacing > 0.8 else [0.7, 0.7])

    # A constant velocity comes back as the same constant change wherever the model has its say.
    const = Translator(ConstantVelocity(0.05), device="cpu", precision="fp32", training_spacing_mm=(0.7, 0.8))
    inside = (vol.hu >= -950) & (vol.hu <= 950)
    np.testing.assert_allclose(
        (const.translate_volume(vol, direction="n2c").hu - vol.hu)[inside], 50, atol=0.05
    )
    # The slice preview resamples the same way.
    one = const.translate_slice(vol.hu[1], direction="n2c", pixel_spacing_mm=(spacing, spacing))
    np.testing.assert_allclose(one.hu, const.translate_volume(vol, direction="n2c").hu[1], atol=1e-4)


def test_resampling_off_or_unknown_spacing_feeds_the_slice_as_it_is():
    vol = _ct(size=40, spacing=(3.0, 3.0, 3.0))
    for tr in (
        Translator(ConstantVelocity(), device="cpu", training_spacing_mm=(0.7, 0.8), resample=False),
        Translator(ConstantVelocity(), device="cpu", training_spacing_mm=None),
    ):
        tr.translate_volume(vol)
        assert set(tr.model.seen) == {(40, 40)}
        assert tr.translate_volume(vol).meta["provenance"]["resampling"]["resampled"] is False


def test_cli_switches(tmp_path):
    from mfm_engine.io.image_write import write_image

    torch.manual_seed(0)
    ckpt = save_checkpoint(
        build_model(TINY),
        tmp_path / "t",
        model_config=TINY,
        kind="flow",
        trained_on="x",
        pixel_spacing_mm=0.75,
    )
    src = write_image(_ct(spacing=(1.5, 1.5, 3.0)), tmp_path / "ct.nii.gz")
    common = ["--model", str(ckpt), "--device", "cpu"]
    assert main(["translate", str(src), str(tmp_path / "a.nii.gz"), *common]) == 0
    flags = ["--no-passthrough", "--no-resample", "--no-wrong-way-cap"]
    assert main(["translate", str(src), str(tmp_path / "b.nii.gz"), *common, *flags]) == 0
    inp = read_study(src).hu
    a, b = read_study(tmp_path / "a.nii.gz").hu, read_study(tmp_path / "b.nii.gz").hu
    pad = inp <= -1500
    np.testing.assert_allclose(a[pad], inp[pad], atol=0.5)  # NIfTI stores scaled integers
    assert (np.abs(b[pad] - inp[pad]) > 1).mean() > 0.9


# -- the shipped model on real CT ---------------------------------------------------------------


def _demo(**options) -> Translator:
    ckpt = demo_checkpoint()
    if ckpt is None:
        pytest.skip("assets/ does not ship the demo model")
    return Translator.from_checkpoint(ckpt, device="cpu", **options)


def _median_change(inp, out, lo, hi) -> float:
    m = (inp >= lo) & (inp <= hi)
    return float(np.median((out - inp)[m]))


@pytest.mark.parametrize(
    "folder", ["dcmqi_liver_ct_3slice", "wg04_ct_transfer_syntaxes/CT1_UNC"], ids=["dcmqi", "wg04-ct1"]
)
def test_real_padding_identical_air_and_bone_barely_move(folder):
    vol = read_study(shared_subfolder(folder))
    out = _demo().translate_volume(vol, direction="c2n")
    pad = vol.hu <= -1400
    assert pad.sum() > 1000  # both series have scanner padding (CT1: −3024)
    np.testing.assert_array_equal(out.hu[pad], vol.hu[pad])
    assert abs(_median_change(vol.hu, out.hu, -1100, -900)) <= 5  # air
    assert abs(_median_change(vol.hu, out.hu, 500, 1e9)) <= 10  # bone
    assert out.meta["provenance"]["passthrough"]["rule"] == "outside_hu_range"
    # The earlier engine (no pass-through) rewrote every padding voxel.
    old = _demo(passthrough=False).translate_volume(vol, direction="c2n")
    assert (old.hu[pad] != vol.hu[pad]).mean() > 0.99


def test_real_3mm_nifti_is_translated_at_training_scale_with_its_own_geometry():
    full = read_study(shared_subfolder("totalseg_native_abdomen_nifti") / "example_ct_sm.nii.gz")
    assert full.spacing[0] == pytest.approx(3.0, abs=0.01)
    k = full.shape[0] // 2
    vol = Volume(
        full.hu[k - 2 : k + 2].copy(),
        full.spacing,
        full.index_to_physical((0, 0, k - 2)),
        full.direction,
        full.meta,
    )
    tr = _demo()
    size = tr.model_shape(vol.shape[1:], vol.spacing[:2])
    lo, hi = tr.training_spacing_mm
    assert size == resampled_shape(vol.shape[1:], vol.spacing[:2], (hi, hi))  # 3 mm → the range's 0.80 mm
    out = tr.translate_volume(vol, direction="n2c")
    assert out.shape == vol.shape and out.spacing == vol.spacing and out.origin == vol.origin
    np.testing.assert_array_equal(out.direction, vol.direction)
    rec = out.meta["provenance"]["resampling"]
    assert rec["resampled"] and rec["model_spacing_mm"] == [round(hi, 4)] * 2
    assert abs(_median_change(vol.hu, out.hu, -1100, -900)) <= 5
    assert abs(_median_change(vol.hu, out.hu, -150, -50)) <= 5
    assert abs(_median_change(vol.hu, out.hu, 500, 1e9)) <= 10


# -- orientation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("direction", "to_physical"),
    [
        (np.diag([-1.0, -1.0, 1.0]), lambda a: a[:, ::-1, ::-1]),  # NIfTI stored RAS, read as LPS
        (np.diag([-1.0, 1.0, -1.0]), lambda a: a[:, :, ::-1]),  # feet first
        (np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]), lambda a: np.swapaxes(a, 1, 2)),
    ],
)
def test_slices_reach_the_network_in_the_training_orientation(direction, to_physical):
    """The same anatomy stored in another orientation gives the same synthetic, stored the same way."""
    torch.manual_seed(0)
    translator = Translator(build_model(TINY).eval(), device="cpu", precision="fp32", passthrough=False)
    upright = _ct(n=2, size=32)
    stored = Volume(np.ascontiguousarray(to_physical(upright.hu)), upright.spacing, direction=direction)
    a = translator.translate_volume(upright, direction="c2n").hu
    b = translator.translate_volume(stored, direction="c2n").hu
    np.testing.assert_allclose(b, to_physical(a), atol=1e-3)
    assert translator.translate_volume(stored).meta["provenance"]["in_plane_orientation"] != {
        "transpose": False,
        "flip_rows": False,
        "flip_cols": False,
    }
    # The viewer's one-slice preview turns the slice the same way (batch-of-one arithmetic differs
    # from the batch's in the last bits).
    one = translator.translate_slice(stored.hu[1], volume_direction=direction).hu
    np.testing.assert_allclose(one, b[1], atol=0.02)
