"""Velocity networks: TimeResNet layout and parameter counts, time conditioning, MONAI wrappers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mfm_engine.errors import MFMError
from mfm_engine.models import (
    MODEL_PRESETS,
    ModelConfigError,
    TimeModulation,
    TimeResNet,
    build_model,
    count_parameters,
    modulation_layers,
    resolve_model_config,
    sinusoidal_embedding,
)
from mfm_engine.models.timeresnet import ResBlock, SelfConvAttention

MONAI_NAMES = ("monai_unet", "monai_segresnet", "monai_swinunetr")


def _on_meta(config: dict) -> torch.nn.Module:
    """Build without allocating weights: shapes and counts only."""
    with torch.device("meta"):
        return build_model(config)


def _seeded(config: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(config).eval()


# -- TimeResNet -------------------------------------------------------------------------------


def test_paper_config_has_the_papers_parameter_count():
    model = _on_meta({"name": "timeresnet", "preset": "paper"})
    n = count_parameters(model)
    # The authors' code gives 124.6 M; the paper's Table 3 rounds to 124.7 M.
    assert abs(n - 124.6e6) / 124.6e6 < 0.005, n


def test_paper_config_matches_the_described_layout():
    cfg = MODEL_PRESETS["timeresnet"]["paper"]
    assert cfg["base_channels"] == 128
    assert cfg["channel_mults"] == [1, 1, 2, 2, 4, 4]
    assert cfg["num_res_blocks"] == 2
    assert cfg["norm_groups"] == 32
    assert (cfg["time_embed_dim"], cfg["time_hidden_dim"], cfg["time_dim"]) == (512, 1024, 512)
    model = _on_meta({"name": "timeresnet", "preset": "paper"})
    assert model.conv_in.in_channels == 2  # [x_t, t·1]
    mlp = model.time_embed.mlp
    assert (mlp[0].in_features, mlp[0].out_features, mlp[2].out_features) == (512, 1024, 512)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(m.num_groups == 32 for m in norms)


def test_paper_config_runs_at_512_with_attention_at_16x16_and_in_the_middle():
    model = _on_meta({"name": "timeresnet", "preset": "paper"})
    seen: list[tuple[int, ...]] = []
    for m in model.modules():
        if isinstance(m, SelfConvAttention):
            m.register_forward_hook(lambda mod, inp, out: seen.append(tuple(out.shape)))
    with torch.device("meta"):
        out = model(torch.zeros(1, 1, 512, 512), torch.zeros(1))
    assert tuple(out.shape) == (1, 1, 512, 512)
    # 2 encoder blocks + middle + 3 decoder blocks at the last level, all 16×16.
    assert seen == [(1, 512, 16, 16)] * 6


def test_every_resblock_has_its_own_a_b_linear_of_2c():
    model = _on_meta({"name": "timeresnet", "preset": "paper"})
    blocks = [m for m in model.modules() if isinstance(m, ResBlock)]
    # 6 levels × 2 encoder blocks + 2 middle + 6 levels × 3 decoder blocks.
    assert len(blocks) == 6 * 2 + 2 + 6 * 3
    for blk in blocks:
        assert isinstance(blk.time, TimeModulation)
        assert blk.time.proj.in_features == 512
        assert blk.time.proj.out_features == 2 * blk.norm1.num_channels
    assert len(modulation_layers(model)) == len(blocks)


def test_a_b_modulation_is_applied_right_after_the_first_silu():
    model = _seeded({"name": "timeresnet", "preset": "tiny"})
    blk = model.down[0].blocks[0]
    c = blk.norm1.num_channels
    a = torch.linspace(-0.5, 0.5, c)
    b = torch.linspace(1.0, 2.0, c)
    with torch.no_grad():
        blk.time.proj.weight.zero_()
        blk.time.proj.bias.copy_(torch.cat([a, b]))
    captured = {}
    blk.conv1.register_forward_hook(lambda mod, inp, out: captured.setdefault("in", inp[0]))
    x = torch.randn(2, c, 8, 8)
    emb = torch.randn(2, blk.time.proj.in_features)
    with torch.no_grad():
        blk(x, emb)
        expected = F.silu(F.group_norm(x, blk.norm1.num_groups, blk.norm1.weight, blk.norm1.bias, 1e-6))
        expected = (1 + a)[None, :, None, None] * expected + b[None, :, None, None]
    torch.testing.assert_close(captured["in"], expected)


@pytest.fixture(scope="module")
def demo() -> torch.nn.Module:
    return _seeded({"name": "timeresnet", "preset": "demo"})


def test_demo_forward_keeps_shape_and_depends_on_t(demo):
    x = torch.randn(1, 1, 64, 64).expand(2, 1, 64, 64)
    with torch.inference_mode():
        v = demo(x, torch.tensor([0.0, 1.0]))  # the same image at t=0 and t=1
    assert v.shape == (2, 1, 64, 64)
    assert v.dtype == torch.float32
    assert (v[0] - v[1]).abs().max() > 1e-4


def test_scalar_t_is_broadcast_over_the_batch():
    model = _seeded({"name": "timeresnet", "preset": "tiny"})
    x = torch.randn(2, 1, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(model(x, 0.25), model(x, torch.full((2,), 0.25)))


def test_demo_is_a_few_million_parameters_and_fully_convolutional(demo):
    assert 1e6 < count_parameters(demo) < 10e6
    assert demo.size_multiple == 32  # 4×4 stem × 2³ downsamplings
    with torch.inference_mode():
        assert demo(torch.randn(1, 1, 64, 96), 0.5).shape == (1, 1, 64, 96)
        assert demo(torch.randn(1, 1, 50, 70), 0.5).shape == (1, 1, 50, 70)


def test_padding_for_odd_sizes_only_extends_the_image():
    # A non-multiple size is edge-padded; the visible part equals running the padded image.
    model = _seeded({"name": "timeresnet", "preset": "tiny"})
    x = torch.randn(1, 1, 15, 17)
    padded = F.pad(x, (0, 1, 0, 1), mode="replicate")
    with torch.inference_mode():
        torch.testing.assert_close(model(x, 0.3), model(padded, 0.3)[..., :15, :17])


def test_attention_is_placed_by_level_not_by_pixels(demo):
    sizes: list[tuple[int, int]] = []
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: sizes.append(tuple(out.shape[-2:])))
        for m in demo.modules()
        if isinstance(m, SelfConvAttention)
    ]
    with torch.inference_mode():
        demo(torch.randn(1, 1, 64, 96), torch.tensor([0.2]))
    for h in hooks:
        h.remove()
    # Level 3 of the demo is 1/32 of the input whatever its size: 2×3 here (16×16 at 512²).
    assert len(sizes) == 2 + 1 + 3 and set(sizes) == {(2, 3)}


def test_all_parameters_receive_gradients():
    model = build_model({"name": "timeresnet", "preset": "tiny"})
    loss = model(torch.randn(2, 1, 16, 16), torch.rand(2)).square().mean()
    loss.backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_gain_offset_head_returns_gain_times_x_t_plus_offset():
    model = _seeded({"name": "timeresnet", "preset": "tiny", "gain_offset_head": True})
    patch = model.mfm_config["patch_size"]
    assert model.conv_out.out_channels == 2 * patch * patch
    # Force the head's two maps to constants: gain 0.75 everywhere, offset −0.1 everywhere.
    with torch.no_grad():
        model.conv_out.weight.zero_()
        model.conv_out.bias[: patch * patch] = 0.75
        model.conv_out.bias[patch * patch :] = -0.1
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    with torch.inference_mode():
        v = model(x, torch.rand(2))
    torch.testing.assert_close(v, 0.75 * x - 0.1)
    # And with learned maps, gradients reach every parameter.
    trained = build_model({"name": "timeresnet", "preset": "tiny", "gain_offset_head": True})
    trained(torch.randn(2, 1, 16, 16), torch.rand(2)).square().mean().backward()
    assert [n for n, p in trained.named_parameters() if p.grad is None] == []


def test_conditioning_channels_for_a_conditional_denoiser():
    model = _seeded({"name": "timeresnet", "preset": "tiny", "cond_channels": 1})
    patch = model.mfm_config["patch_size"]
    assert model.conv_in.in_channels == 3 * patch * patch  # [x_t, t·1, cond] through the pixel-unshuffle stem
    x, cond = torch.randn(2, 1, 16, 16), torch.randn(2, 1, 16, 16)
    with torch.inference_mode():
        out = model(x, torch.rand(2), cond)
        other = model(x, torch.rand(2) * 0, cond * 0)
    assert out.shape == (2, 1, 16, 16) and not torch.equal(out, other)
    with pytest.raises(ModelConfigError, match="cond"):
        model(x, torch.rand(2))


def test_sinusoidal_embedding_matches_the_formula():
    t = torch.tensor([0.0, 0.25, 1.0, 700.0])
    dim = 8
    got = sinusoidal_embedding(t, dim).numpy()
    half = dim // 2
    freqs = np.exp(-math.log(10000.0) * np.arange(half) / (half - 1))
    ref = np.concatenate([np.sin(t.numpy()[:, None] * freqs), np.cos(t.numpy()[:, None] * freqs)], axis=1)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_group_norm_groups_always_divide_channels():
    model = build_model(
        {"name": "timeresnet", "preset": "tiny", "base_channels": 12, "norm_groups": 32, "attn_levels": []}
    )
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert all(m.num_channels % m.num_groups == 0 for m in norms)
    assert model(torch.randn(1, 1, 32, 32), 0.5).shape == (1, 1, 32, 32)


# -- registry ---------------------------------------------------------------------------------


def test_overrides_replace_preset_values_and_resolve_fully():
    cfg = resolve_model_config({"name": "timeresnet", "preset": "demo", "base_channels": 16})
    assert cfg["name"] == "timeresnet" and cfg["preset"] == "demo"
    assert cfg["base_channels"] == 16 and cfg["patch_size"] == 4
    model = build_model({"name": "timeresnet", "preset": "demo", "base_channels": 16})
    assert isinstance(model, TimeResNet)
    assert model.mfm_config == cfg
    assert model.conv_in.out_channels == 16


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"name": "resnet9000"}, "unknown model name 'resnet9000'"),
        ({"name": "timeresnet", "preset": "huge"}, "unknown preset 'huge'"),
        ({"name": "timeresnet", "channels": 3}, "unknown TimeResNet config key"),
        ({"name": "timeresnet", "attn_levels": [7]}, "attn_levels"),
        ({"name": "monai_unet", "preset": "demo", "in_channels": 3}, "in_channels"),
        ({"name": "monai_unet", "channels": [8, 16]}, "cannot build monai_unet"),
        ({"name": "monai_swinunetr", "preset": "demo", "img_size": [64, 64]}, "img_size"),
    ],
)
def test_bad_configs_are_clear_errors(config, message):
    with pytest.raises(ModelConfigError, match=message) as info:
        build_model(config)
    assert isinstance(info.value, MFMError)


def test_bad_input_shapes_are_clear_errors():
    model = build_model({"name": "timeresnet", "preset": "tiny"})
    with pytest.raises(ModelConfigError, match=r"\(B, 1, H, W\)"):
        model(torch.randn(1, 2, 8, 8), 0.5)
    with pytest.raises(ModelConfigError, match="one time per batch item"):
        model(torch.randn(3, 1, 8, 8), torch.rand(2))


# -- MONAI backbones ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", MONAI_NAMES)
def test_monai_backbones_run_as_velocity_networks(name):
    model = _seeded({"name": name, "preset": "demo"})
    x = torch.randn(1, 1, 64, 64).expand(2, 1, 64, 64)
    with torch.inference_mode():
        v = model(x, torch.tensor([0.0, 1.0]))
    assert v.shape == (2, 1, 64, 64)
    assert (v[0] - v[1]).abs().max() > 1e-5
    backbone_in = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert backbone_in.in_channels == 2  # [x_t, t·1]
    # FiLM on the output features: one A/B layer of 2 × film_channels.
    (film,) = modulation_layers(model)
    assert film.proj.out_features == 2 * model.mfm_config["film_channels"]


@pytest.mark.parametrize("name", MONAI_NAMES)
def test_monai_backbones_without_film_condition_through_the_input_channel_only(name):
    model = _seeded({"name": name, "preset": "demo", "time_film": False})
    assert modulation_layers(model) == []
    x = torch.randn(1, 1, 64, 64).expand(2, 1, 64, 64)  # SwinUNETR: ≥ 64 (instance norm at 1/32)
    with torch.inference_mode():
        v = model(x, torch.tensor([0.0, 1.0]))
    assert (v[0] - v[1]).abs().max() > 1e-5


def test_swinunetr_pads_sizes_that_are_not_multiples_of_32():
    model = _seeded({"name": "monai_swinunetr", "preset": "demo"})
    assert model.size_multiple == 32
    with torch.inference_mode():
        assert model(torch.randn(1, 1, 40, 72), 0.5).shape == (1, 1, 40, 72)


@pytest.mark.parametrize(("name", "millions"), [("monai_unet", 104.3), ("monai_segresnet", 214.1)])
def test_monai_paper_presets_have_the_papers_parameter_counts(name, millions):
    n = count_parameters(_on_meta({"name": name, "preset": "paper"}))
    assert abs(n / 1e6 - millions) / millions < 0.005, n


@pytest.mark.slow
def test_swinunetr_paper_preset_has_the_papers_parameter_count():
    # SwinUNETR cannot be built on the meta device (it calls .item() while building): ~3 s.
    n = count_parameters(build_model({"name": "monai_swinunetr", "preset": "paper"}))
    assert abs(n / 1e6 - 120.1) / 120.1 < 0.005, n


# -- patch grid -------------------------------------------------------------------------------
def _peak_ratio_numpy(stack: np.ndarray, period: int, tile: int = 32) -> float:
    """Independent reference: tile periodograms averaged, power at (k/p, l/p) over its 5×5 ring's mean."""
    n, h, w = stack.shape
    tiles = (
        stack.reshape(n, h // tile, tile, w // tile, tile).transpose(0, 1, 3, 2, 4).reshape(-1, tile, tile)
    )
    tiles = tiles - tiles.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(tiles)) ** 2).mean(axis=0)
    ratios = []
    for k in range(period):
        for j in range(period):
            if (k, j) == (0, 0):
                continue
            y, x = k * tile // period, j * tile // period
            block = power[np.ix_(np.arange(y - 2, y + 3) % tile, np.arange(x - 2, x + 3) % tile)]
            ratios.append(power[y, x] / ((block.sum() - power[y, x]) / 24))
    return float(max(ratios))


@pytest.mark.parametrize("head", ["pixel_shuffle", "smooth_shuffle"])
def test_smooth_shuffle_head_leaves_no_patch_grid(head):
    from mfm_engine.texture import periodic_peak_ratio

    model = _seeded({"name": "timeresnet", "preset": "tiny", "gain_offset_head": True, "upsample_head": head})
    x = torch.from_numpy(np.random.default_rng(0).normal(0, 0.3, (8, 1, 128, 128)).astype(np.float32))
    with torch.inference_mode():
        one_euler_step = (x - model(x, torch.ones(8)))[:, 0].numpy()  # contrast → native, 1 step
    ratio = periodic_peak_ratio(one_euler_step, 4, tile=32)
    assert ratio == pytest.approx(_peak_ratio_numpy(one_euler_step, 4), rel=1e-6)
    if head == "pixel_shuffle":
        assert ratio > 10  # the grid an untrained shuffle head makes: what the filter must remove
    else:
        assert ratio < 1.5


def test_patch_period_filter_removes_every_period_p_pattern_and_keeps_constants():
    from mfm_engine.models.timeresnet import PatchPeriodFilter

    for p in (2, 4):
        pattern = np.tile(np.random.default_rng(p).normal(size=(p, p)), (8, 8)).astype(np.float32)
        out = PatchPeriodFilter(p)(torch.from_numpy(pattern)[None, None])[0, 0].numpy()
        np.testing.assert_allclose(out, pattern.mean(), atol=1e-5)  # to the edge: circular padding
        flat = PatchPeriodFilter(p)(torch.full((1, 2, 16, 16), 3.0))
        torch.testing.assert_close(flat, torch.full_like(flat, 3.0))
