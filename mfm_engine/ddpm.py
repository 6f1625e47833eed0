"""The conditional DDPM baseline's noise schedule and its deterministic (DDIM, η = 0) sampler.

Shared by training (the ε-prediction loss) and the Translator (sampling), so both agree on the
schedule. The denoiser is a velocity-style network called as ``net(x_t, t, cond)`` where
``t = timestep / T`` in [0, 1) and ``cond`` is the other phase's image; it predicts the noise ε.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class DDPMSchedule:
    """Linear β schedule from ``beta_start`` to ``beta_end`` over ``num_timesteps`` steps (Ho et al. 2020)."""

    num_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02

    def to_dict(self) -> dict:
        return asdict(self)

    def alpha_bar(self, device=None, dtype=torch.float32) -> Tensor:
        """Cumulative product of (1 − β) for every timestep, shape (T,)."""
        betas = torch.linspace(self.beta_start, self.beta_end, self.num_timesteps, dtype=torch.float64)
        return torch.cumprod(1.0 - betas, dim=0).to(device=device, dtype=dtype)

    def noisy(self, x0: Tensor, noise: Tensor, timestep: Tensor) -> Tensor:
        """Forward process: x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε for integer timesteps (B,)."""
        ab = self.alpha_bar(x0.device, x0.dtype)[timestep].reshape(-1, 1, 1, 1)
        return ab.sqrt() * x0 + (1.0 - ab).sqrt() * noise

    def sampling_timesteps(self, steps: int) -> list[int]:
        """``steps`` timesteps from T−1 down to 0, evenly spaced, for DDIM sampling."""
        if not 1 <= steps <= self.num_timesteps:
            raise ValueError(f"DDIM steps must be in 1..{self.num_timesteps}, got {steps}")
        grid = torch.linspace(self.num_timesteps - 1, 0, steps).round().long().tolist()
        return sorted(set(grid), reverse=True)


@torch.no_grad()
def ddim_sample(net, cond: Tensor, noise: Tensor, schedule: DDPMSchedule, steps: int) -> tuple[Tensor, int]:
    """Deterministic DDIM sampling from ``noise`` given ``cond`` (B,1,H,W); returns (x0, NFE)."""
    ab = schedule.alpha_bar(cond.device, torch.float32)
    x = noise.to(cond.dtype)
    timesteps = schedule.sampling_timesteps(steps)
    batch = cond.shape[0]
    for i, ts in enumerate(timesteps):
        t_frac = torch.full((batch,), ts / schedule.num_timesteps, device=cond.device, dtype=cond.dtype)
        eps = net(x, t_frac, cond)
        a_t = ab[ts]
        x0 = ((x - (1 - a_t).sqrt() * eps) / a_t.sqrt()).clamp(-1.0, 1.0)
        a_prev = ab[timesteps[i + 1]] if i + 1 < len(timesteps) else torch.ones((), device=ab.device)
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return x, len(timesteps)
