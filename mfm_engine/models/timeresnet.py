"""TimeResNet: the paper's ResNet encoder–decoder velocity network with per-block time modulation.

Layout (levels ``i = 0 .. L-1``, ``L = len(channel_mults)``, ``C_i = base_channels·mult_i``)::

    [x_t, t·1] (B,2,H,W) [-> pixel-unshuffle by patch_size] -> conv3x3 -> C
    encoder, per level i: num_res_blocks × (ResBlock -> C_i [-> attention if i in attn_levels]),
                          then a stride-2 conv (except on the last level)
    middle:  ResBlock -> attention (if mid_attention) -> ResBlock
    decoder, per level i from L-1 down to 0: (num_res_blocks+1) × (concat skip -> ResBlock -> C_i
                          [-> attention if i in attn_levels]), then nearest ×2 + conv3x3 (except level 0)
    GroupNorm -> SiLU -> conv3x3 [-> pixel-shuffle by patch_size] -> (B,1,H,W)
    (gain_offset_head: two maps a, b instead, and v = a·x_t + b)

ResBlock (in C_in, out C_out), where the time enters::

    h = SiLU(GroupNorm(x))
    A, B = split(Linear(time_vector) -> 2·C_in)      # per channel
    h = A*h + B                                      # here: right after the first SiLU, A = 1 + a
    h = conv3x3(h) -> GroupNorm -> SiLU -> dropout -> conv3x3
    out = shortcut(x) + h                            # shortcut = 1×1 conv when C_in != C_out

The time vector is ``MLP(sinusoidal(t·time_scale))`` computed once per forward.
H and W must be multiples of ``patch_size·2**(L-1)`` (the :class:`VelocityNet` base pads other sizes).
Attention is placed by level index, so it stays at the same *relative* depth for any input size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mfm_engine.models.time_embedding import (
    ModelConfigError,
    TimeEmbedding,
    TimeModulation,
    VelocityNet,
    group_count,
)

UPSAMPLE_HEADS = ("pixel_shuffle", "smooth_shuffle")


@dataclass
class TimeResNetConfig:
    """Hyper-parameters of :class:`TimeResNet` (defaults are the paper's)."""

    base_channels: int = 128
    channel_mults: tuple[int, ...] = (1, 1, 2, 2, 4, 4)
    num_res_blocks: int = 2
    # Level indices (0 = full resolution) whose blocks are followed by attention; the paper's
    # "attention at 16×16" for a 512 input with 5 downsamplings is level 5, the last one.
    attn_levels: tuple[int, ...] = (5,)
    mid_attention: bool = True
    attn_heads: int = 1
    norm_groups: int = 32
    time_embed_dim: int = 512  # sinusoidal features
    time_hidden_dim: int = 1024  # MLP hidden width
    time_dim: int = 512  # MLP output: the vector every block's A/B layer reads
    time_scale: float = 1000.0
    dropout: float = 0.0
    # Pixel-unshuffle stem: the network runs at H/patch_size × W/patch_size with patch_size²·2
    # input channels, and a pixel-shuffle head restores full size. 1 (the paper) = no stem; the
    # CPU demo uses 4, which is what makes a 512² forward cheap.
    patch_size: int = 1
    # Extra conditioning image channels after [x_t, t·1] (a conditional DDPM denoiser uses 1).
    cond_channels: int = 0
    # Not in the paper. The head emits a per-pixel gain a and offset b and returns v = a·x_t + b.
    # Contrast → native then reads "this pixel is enhancing: remove what is above its native
    # value" (a ≈ 1, b ≈ −native) instead of having to reproduce the enhancement's size, which a
    # small network shrinks towards the training mean (bright aortas kept +40 HU).
    gain_offset_head: bool = False
    # Not in the paper. Pixel shuffle gives each of the patch_size² positions of a patch its own
    # output channel, which leaves a fixed pattern of period patch_size: a grid texture with spectral
    # peaks at multiples of 1/patch_size cycles per pixel. "smooth_shuffle" follows the shuffle with
    # a fixed separable filter [½, 1, …, 1, ½]/patch_size (patch_size + 1 taps), whose frequency
    # response is zero at every multiple of 1/patch_size, so that pattern is removed exactly and
    # nothing is shifted. The head's maps had one value per patch anyway, so little is lost; with
    # the gain/offset head the full-resolution detail comes from x_t itself. A learned
    # full-resolution refinement did the same at 2.6× the training step time on a CPU.
    upsample_head: str = "pixel_shuffle"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TimeResNetConfig:
        """Build from a plain dict, rejecting unknown keys by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ModelConfigError(f"unknown TimeResNet config key(s) {unknown}; known: {sorted(known)}")
        cfg = cls(**dict(values))
        cfg.channel_mults = tuple(int(m) for m in cfg.channel_mults)
        cfg.attn_levels = tuple(int(i) for i in cfg.attn_levels)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise ModelConfigError on values that cannot build a network."""
        if self.base_channels < 1 or not self.channel_mults or min(self.channel_mults) < 1:
            raise ModelConfigError(
                f"TimeResNet needs base_channels ≥ 1 and positive channel_mults, "
                f"got {self.base_channels} and {self.channel_mults}"
            )
        if self.patch_size < 1:
            raise ModelConfigError(f"patch_size must be ≥ 1, got {self.patch_size}")
        if self.num_res_blocks < 1:
            raise ModelConfigError(f"num_res_blocks must be ≥ 1, got {self.num_res_blocks}")
        levels = len(self.channel_mults)
        bad = [i for i in self.attn_levels if not 0 <= i < levels]
        if bad:
            raise ModelConfigError(f"attn_levels {bad} outside the {levels} levels 0..{levels - 1}")
        if self.cond_channels < 0:
            raise ModelConfigError(f"cond_channels must be ≥ 0, got {self.cond_channels}")
        if self.upsample_head not in UPSAMPLE_HEADS:
            raise ModelConfigError(
                f"upsample_head must be one of {', '.join(UPSAMPLE_HEADS)}, got {self.upsample_head!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists)."""
        d = asdict(self)
        d["channel_mults"] = list(self.channel_mults)
        d["attn_levels"] = list(self.attn_levels)
        return d


class ResBlock(nn.Module):
    """GroupNorm–SiLU–(A*h+B)–conv–GroupNorm–SiLU–dropout–conv, plus a (1×1) shortcut."""

    def __init__(self, c_in: int, c_out: int, time_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(group_count(c_in, groups), c_in, eps=1e-6)
        self.time = TimeModulation(time_dim, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(group_count(c_out, groups), c_out, eps=1e-6)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """x (B,C_in,H,W), emb (B,E) -> (B,C_out,H,W)."""
        h = self.time(F.silu(self.norm1(x)), emb)
        h = self.conv1(h)
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.shortcut(x) + h


class SelfConvAttention(nn.Module):
    """GroupNorm -> 1×1-conv q, k, v -> softmax(q·kᵀ/√d)·v over all H·W positions -> 1×1 conv, residual.

    The "self-convolution attention" of the paper: attention whose projections are 1×1
    convolutions of the normalised feature map itself.
    """

    def __init__(self, channels: int, groups: int, heads: int = 1) -> None:
        super().__init__()
        if channels % heads:
            raise ModelConfigError(f"attention heads ({heads}) must divide its channels ({channels})")
        self.heads = heads
        self.norm = nn.GroupNorm(group_count(channels, groups), channels, eps=1e-6)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(B,C,H,W) -> (B,C,H,W)."""
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        # (B, heads, HW, d): scaled_dot_product_attention picks the fused kernel where it can.
        q, k, v = (qkv[:, i].transpose(-1, -2) for i in range(3))
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj(out)


class Downsample(nn.Module):
    """Stride-2 3×3 conv (pad right/bottom by one so even sizes halve exactly)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        """(B,C,H,W) -> (B,C,H/2,W/2)."""
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest ×2 then a 3×3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """(B,C,H,W) -> (B,C,2H,2W)."""
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """One resolution level: its ResBlocks, their optional attention, and the resampler."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        self.attn = nn.ModuleList()
        self.resample: nn.Module = nn.Identity()


class TimeResNet(VelocityNet):
    """The paper's TimeResNet velocity network (see the module docstring for the layout)."""

    def __init__(self, config: TimeResNetConfig | Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if config is None:
            config = TimeResNetConfig()
        elif not isinstance(config, TimeResNetConfig):
            config = TimeResNetConfig.from_mapping(config)
        else:
            config.validate()
        self.config = config
        cfg = config
        levels = len(cfg.channel_mults)
        p = cfg.patch_size
        self.size_multiple = p * 2 ** (levels - 1)
        g = cfg.norm_groups
        chans = [cfg.base_channels * m for m in cfg.channel_mults]

        self.time_embed = TimeEmbedding(
            cfg.time_embed_dim, cfg.time_hidden_dim, cfg.time_dim, time_scale=cfg.time_scale
        )
        self.stem: nn.Module = nn.PixelUnshuffle(p) if p > 1 else nn.Identity()
        self.cond_channels = cfg.cond_channels
        in_channels = 2 + cfg.cond_channels  # [x_t, t·1, cond]
        self.conv_in = nn.Conv2d(in_channels * p * p, cfg.base_channels, 3, padding=1)

        def block(c_in: int, c_out: int) -> ResBlock:
            return ResBlock(c_in, c_out, cfg.time_dim, g, cfg.dropout)

        def attention(c: int) -> SelfConvAttention:
            return SelfConvAttention(c, g, cfg.attn_heads)

        # Encoder; remember the channel count of every tensor pushed on the skip stack.
        self.down = nn.ModuleList()
        skips = [cfg.base_channels]
        c = cfg.base_channels
        for i, c_out in enumerate(chans):
            level = _Level()
            for _ in range(cfg.num_res_blocks):
                level.blocks.append(block(c, c_out))
                c = c_out
                if i in cfg.attn_levels:
                    level.attn.append(attention(c))
                skips.append(c)
            if i != levels - 1:
                level.resample = Downsample(c)
                skips.append(c)
            self.down.append(level)

        self.mid_block1 = block(c, c)
        self.mid_attn: nn.Module = attention(c) if cfg.mid_attention else nn.Identity()
        self.mid_block2 = block(c, c)

        # Decoder, stored in level order (up[i] works at level i) and run from the deepest.
        up_levels: list[_Level] = []
        for i in reversed(range(levels)):
            level = _Level()
            for _ in range(cfg.num_res_blocks + 1):
                level.blocks.append(block(c + skips.pop(), chans[i]))
                c = chans[i]
                if i in cfg.attn_levels:
                    level.attn.append(attention(c))
            if i != 0:
                level.resample = Upsample(c)
            up_levels.append(level)
        self.up = nn.ModuleList(reversed(up_levels))

        self.norm_out = nn.GroupNorm(group_count(c, g), c, eps=1e-6)
        self.gain_offset = cfg.gain_offset_head
        self.conv_out = nn.Conv2d(c, p * p * (2 if self.gain_offset else 1), 3, padding=1)
        self.head: nn.Module = nn.PixelShuffle(p) if p > 1 else nn.Identity()
        if cfg.upsample_head == "smooth_shuffle" and p > 1:
            self.head = nn.Sequential(self.head, PatchPeriodFilter(p))

    def velocity(self, inputs: Tensor, t: Tensor) -> Tensor:
        """inputs [x_t, t·1, cond] (B,2+K,H,W), t (B,) -> v (B,1,H,W); H, W multiples of size_multiple."""
        emb = self.time_embed(t)
        h = self.conv_in(self.stem(inputs))
        hs = [h]
        for level in self.down:
            for j, blk in enumerate(level.blocks):
                h = blk(h, emb)
                if len(level.attn):
                    h = level.attn[j](h)
                hs.append(h)
            if not isinstance(level.resample, nn.Identity):
                h = level.resample(h)
                hs.append(h)
        h = self.mid_block2(self.mid_attn(self.mid_block1(h, emb)), emb)
        for level in reversed(self.up):
            for j, blk in enumerate(level.blocks):
                h = blk(torch.cat([h, hs.pop()], dim=1), emb)
                if len(level.attn):
                    h = level.attn[j](h)
            h = level.resample(h)
        out = self.head(self.conv_out(F.silu(self.norm_out(h))))
        if self.gain_offset:
            return out[:, :1] * inputs[:, :1] + out[:, 1:]
        return out


class PatchPeriodFilter(nn.Module):
    """Fixed separable [½, 1, …, 1, ½]/p smoothing: zero response at every multiple of 1/p cycles/pixel.

    It is a length-p box convolved with a length-2 box (halved), so its transfer function is
    sin(πfp)/(p·sin(πf)) · cos(πf): zero at f = k/p for k = 1 … p−1, centred (no shift).
    """

    def __init__(self, period: int) -> None:
        super().__init__()
        taps = torch.ones(period + 1)
        taps[0] = taps[-1] = 0.5
        self.register_buffer("taps", taps / period, persistent=False)
        self.pad = period // 2

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W), each channel filtered along rows and columns, H, W multiples of p.

        Circular padding: with H and W multiples of the period, the wrapped border keeps the pattern's
        phase, so it is removed up to the edge (replicated edges would leave a frame of grid).
        """
        c = x.shape[1]
        k = self.taps.to(x.dtype)
        x = F.pad(x, (self.pad, self.pad, self.pad, self.pad), mode="circular")
        x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def modulation_layers(model: nn.Module) -> list[TimeModulation]:
    """Every A/B time-modulation layer in ``model`` (one per ResBlock for TimeResNet)."""
    return [m for m in model.modules() if isinstance(m, TimeModulation)]
