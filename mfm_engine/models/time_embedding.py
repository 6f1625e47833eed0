"""Time conditioning shared by every velocity network: sinusoidal embedding, MLP, A/B modulation.

Every network in :mod:`mfm_engine.models` is a :class:`VelocityNet`: ``f(x_t, t) -> v`` with
``x_t`` of shape (B, 1, H, W) in model scale [-1, 1], ``t`` of shape (B,) in [0, 1] and ``v`` of
shape (B, 1, H, W). The network sees ``[x_t, t·1]`` (t broadcast as a second input channel) and,
where it has blocks to modulate, the embedded time through per-channel ``h = A*h + B``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mfm_engine.errors import MFMError


class ModelConfigError(MFMError):
    """A model config (or an input to a model) that cannot work: names the key and the problem."""


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """(B,) times -> (B, dim) features ``[sin(t·f_k), cos(t·f_k)]``, f_k geometric from 1 to 1/max_period."""
    if dim % 2:
        raise ModelConfigError(f"sinusoidal embedding size must be even, got {dim}")
    half = dim // 2
    # Frequencies span [1, 1/max_period] geometrically, as in "Attention is all you need".
    exponent = torch.arange(half, device=t.device, dtype=torch.float32) / max(half - 1, 1)
    freqs = torch.exp(-math.log(max_period) * exponent)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class TimeEmbedding(nn.Module):
    """t (B,) -> sinusoidal(dim) -> Linear -> SiLU -> Linear -> (B, out_dim)."""

    def __init__(self, dim: int, hidden_dim: int, out_dim: int, time_scale: float = 1000.0) -> None:
        super().__init__()
        self.dim = dim
        # t lives in [0, 1]; scaling it spreads the sinusoid phases over the whole embedding
        # (with scale 1 only the few fastest frequencies change at all between t=0 and t=1).
        self.time_scale = float(time_scale)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, out_dim))

    def forward(self, t: Tensor) -> Tensor:
        """(B,) -> (B, out_dim)."""
        emb = sinusoidal_embedding(t * self.time_scale, self.dim)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class TimeModulation(nn.Module):
    """One Linear layer: time vector (B, E) -> 2·C values, split into per-channel A and B.

    ``forward(h, emb)`` returns ``A*h + B`` broadcast over H and W, with ``A = 1 + a`` so that
    a zero output of the linear layer is the identity (a stable start for training; the
    parameter count and expressiveness are those of ``h = A*h + B``).
    """

    def __init__(self, emb_dim: int, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.proj = nn.Linear(emb_dim, 2 * channels)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        """h (B, C, H, W), emb (B, E) -> (B, C, H, W)."""
        a, b = self.proj(emb).to(h.dtype).chunk(2, dim=1)
        return torch.addcmul(b[:, :, None, None], h, 1.0 + a[:, :, None, None])


def group_count(channels: int, groups: int) -> int:
    """Largest group count ≤ ``groups`` that divides ``channels`` (GroupNorm needs a divisor)."""
    for g in range(min(groups, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


class VelocityNet(nn.Module):
    """Base of every velocity network: ``forward(x_t (B,1,H,W), t (B,)) -> v (B,1,H,W)``.

    Subclasses implement :meth:`velocity` on inputs whose H and W are multiples of
    :attr:`size_multiple`; :meth:`forward` pads other sizes (edge replication) up to the next
    multiple and crops the result back, so any slice size works. A network built with
    ``cond_channels > 0`` (e.g. a conditional DDPM denoiser fed the contrast image) also takes
    ``cond`` (B, cond_channels, H, W), appended after ``[x_t, t·1]``.
    """

    #: H and W must be multiples of this (the network's total downsampling) inside :meth:`velocity`.
    size_multiple: int = 1
    #: Extra conditioning image channels expected in ``cond`` (0: none).
    cond_channels: int = 0
    #: The resolved config dict the network was built from (set by :func:`build_model`).
    mfm_config: dict

    def velocity(self, inputs: Tensor, t: Tensor) -> Tensor:  # pragma: no cover - abstract
        """inputs (B, 2+cond_channels, H, W) = ``[x_t, t·1, cond]``, t (B,) -> v (B,1,H,W)."""
        raise NotImplementedError

    def forward(self, x_t: Tensor, t: Tensor | float, cond: Tensor | None = None) -> Tensor:
        """x_t (B,1,H,W), t (B,) or scalar in [0, 1] [, cond (B,K,H,W)] -> velocity (B,1,H,W)."""
        name = type(self).__name__
        if x_t.ndim != 4 or x_t.shape[1] != 1:
            raise ModelConfigError(f"{name} expects x_t of shape (B, 1, H, W), got {tuple(x_t.shape)}")
        batch, _, h, w = x_t.shape
        t = torch.as_tensor(t, device=x_t.device).reshape(-1)
        if t.numel() == 1 and batch != 1:
            t = t.expand(batch)
        if t.numel() != batch:
            raise ModelConfigError(f"{name}: t must hold one time per batch item ({batch}), got {t.numel()}")
        # Keep t in float32 for the embedding: in bf16, t·1000 would be resolved only to ~±2.
        t = t.to(torch.float32)
        parts = [x_t, t.to(x_t.dtype)[:, None, None, None].expand_as(x_t)]
        if self.cond_channels:
            want = (batch, self.cond_channels, h, w)
            if cond is None or tuple(cond.shape) != want:
                got = None if cond is None else tuple(cond.shape)
                raise ModelConfigError(f"{name} needs cond of shape {want}, got {got}")
            parts.append(cond.to(x_t.dtype))
        elif cond is not None:
            raise ModelConfigError(f"{name} was built without conditioning channels but got cond")
        inputs = torch.cat(parts, dim=1)
        m = self.size_multiple
        pad_h, pad_w = (-h) % m, (-w) % m
        if pad_h or pad_w:
            inputs = F.pad(inputs, (0, pad_w, 0, pad_h), mode="replicate")
            return self.velocity(inputs, t)[..., :h, :w]
        return self.velocity(inputs, t)
