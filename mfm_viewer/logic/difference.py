"""Difference maps (synthetic − input, synthetic − reference) and their diverging colour map. Qt-free."""

from __future__ import annotations

import numpy as np

from mfm_engine.intensity import HU_MIN

DEFAULT_RANGE_HU = 200.0

# End colours of a blue–white–red diverging map (negative = blue, 0 = white, positive = red).
_NEG = np.array([33, 102, 172], dtype=np.float64)
_MID = np.array([247, 247, 247], dtype=np.float64)
_POS = np.array([178, 24, 43], dtype=np.float64)


def difference(a_hu: np.ndarray, b_hu: np.ndarray, floor_hu: float | None = HU_MIN) -> np.ndarray:
    """``a − b`` in HU as float32 (shapes must match), both floored at ``floor_hu`` first.

    The models work on [-1000, 1000] HU: below -1000 (padding outside the scan circle, −1500 or
    −3024) a synthetic image says -1000, and the difference there would be a loud artefact.
    """
    a = np.asarray(a_hu, dtype=np.float32)
    b = np.asarray(b_hu, dtype=np.float32)
    if a.shape != b.shape:
        raise ValueError(f"cannot subtract images of shapes {a.shape} and {b.shape}")
    if floor_hu is not None:
        a, b = np.maximum(a, floor_hu), np.maximum(b, floor_hu)
    return a - b


def diverging_lut(n: int = 256) -> np.ndarray:
    """(n, 4) uint8 RGBA ramp blue → white → red; entry n/2 is white (difference 0)."""
    t = np.linspace(-1.0, 1.0, n)[:, None]
    rgb = np.where(t < 0, _MID + (_NEG - _MID) * -t, _MID + (_POS - _MID) * t)
    rgba = np.concatenate([rgb, np.full((n, 1), 255.0)], axis=1)
    return np.round(rgba).astype(np.uint8)


def overlay_lut(opacity: float, n: int = 256) -> np.ndarray:
    """Like ``diverging_lut`` but transparent at 0 and up to ``opacity`` at ±range, for overlays."""
    lut = diverging_lut(n)
    t = np.abs(np.linspace(-1.0, 1.0, n))
    lut[:, 3] = np.round(255 * np.clip(opacity, 0.0, 1.0) * t).astype(np.uint8)
    return lut


def symmetric_levels(range_hu: float) -> tuple[float, float]:
    """Levels centred on 0 HU: (−range, +range)."""
    r = abs(float(range_hu)) or 1.0
    return -r, r


def colour_of(value_hu: float, range_hu: float, lut: np.ndarray | None = None) -> tuple[int, int, int]:
    """RGB the diverging map gives a difference value (clipped to ±range)."""
    lut = diverging_lut() if lut is None else lut
    lo, hi = symmetric_levels(range_hu)
    t = (np.clip(value_hu, lo, hi) - lo) / (hi - lo)
    idx = int(np.clip(np.round(t * (len(lut) - 1)), 0, len(lut) - 1))
    return tuple(int(v) for v in lut[idx, :3])  # type: ignore[return-value]


def suggested_range(diff_hu: np.ndarray, mask: np.ndarray | None = None) -> float:
    """A colour-bar range covering 99 % of |difference|, rounded up to 10 HU (at least 10)."""
    values = np.abs(diff_hu[mask] if mask is not None else diff_hu)
    if values.size == 0:
        return DEFAULT_RANGE_HU
    p = float(np.percentile(values, 99))
    return max(10.0, float(np.ceil(p / 10.0) * 10.0))
