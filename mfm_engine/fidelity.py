"""What a translation may change: voxels outside the model's HU range pass through, and slices
reach the network at the pixel spacing it was trained at.

Pass-through: iodine cannot change scanner padding (−3024, −2000, −1500 outside the scan circle),
air below the model's HU floor or dense bone above its ceiling, and a model trained on HU clipped to
``[low, high]`` has never seen them, so those voxels keep their input value. The model's change is
weighted by the input voxel's HU: 1 inside ``[low + blend, high − blend]``, 0 outside ``[low, high]``,
a smoothstep between, so no seam shows at the range's edges.

Spacing: a fully convolutional network still learns anatomy at the scale it was shown. A slice
whose in-plane spacing lies outside the training range is resampled (bilinear, antialiased when
shrinking) to the nearest end of that range, translated, and only the model's *change* is
resampled back and added to the untouched input — so unchanged voxels keep their own detail and
noise, and pass-through is applied at the input's resolution, never blurred.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

PASSTHROUGH_RULE = "outside_hu_range"
# 2.5 % of the usual 2000 HU range: narrow enough that air (−1000 ± noise) and bone keep their
# values, wide enough that the switch from model to input has no visible step.
DEFAULT_BLEND_HU = 50.0
# Spacings within this fraction of the training spacing are taken as equal: not worth resampling.
SPACING_TOLERANCE = 0.02


@dataclass(frozen=True)
class PassThrough:
    """Input voxels outside [low, high] HU keep their value; a smooth ``blend_hu`` blend inside each edge."""

    low: float = -1000.0
    high: float = 1000.0
    blend_hu: float = DEFAULT_BLEND_HU

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"pass-through range needs low < high, got [{self.low}, {self.high}]")
        if not 0.0 <= self.blend_hu <= (self.high - self.low) / 2:
            raise ValueError(f"blend_hu must be in [0, {(self.high - self.low) / 2}], got {self.blend_hu}")

    def weight(self, hu: np.ndarray) -> np.ndarray:
        """How much of the model's change each voxel takes: 0 outside the range, 1 well inside it."""
        hu = np.asarray(hu, dtype=np.float32)
        if self.blend_hu == 0:
            return ((hu >= self.low) & (hu <= self.high)).astype(np.float32)
        u = np.clip(np.minimum(hu - self.low, self.high - hu) / self.blend_hu, 0.0, 1.0)
        return (u * u * (3.0 - 2.0 * u)).astype(np.float32)

    def apply(self, input_hu: np.ndarray, model_hu: np.ndarray) -> np.ndarray:
        """input + weight·(model − input): exactly the input outside the range, the model well inside."""
        x = np.asarray(input_hu, dtype=np.float32)
        m = np.asarray(model_hu, dtype=np.float32)
        # w = 0 gives x + 0 = x bit for bit; w = 1 gives m to float rounding (< 1e-3 HU).
        return (x + self.weight(x) * (m - x)).astype(np.float32, copy=False)

    def describe(self) -> dict[str, Any]:
        """The rule as recorded in a sidecar and in provenance."""
        return {"rule": PASSTHROUGH_RULE, "hu_range": [self.low, self.high], "blend_hu": self.blend_hu}


def passthrough_from_sidecar(value: Any, hu_range: tuple[float, float]) -> PassThrough | None:
    """The sidecar's ``passthrough`` entry as a rule; absent (old sidecars) → the default rule on hu_range."""
    if value is None:
        return PassThrough(hu_range[0], hu_range[1], DEFAULT_BLEND_HU)
    if not isinstance(value, Mapping):
        raise ValueError(f"passthrough must be an object with 'rule', got {value!r}")
    rule = value.get("rule")
    if rule == "none":
        return None  # the model was trained on every HU it will see
    if rule != PASSTHROUGH_RULE:
        raise ValueError(f"passthrough rule must be {PASSTHROUGH_RULE!r} or 'none', got {rule!r}")
    blend = float(value.get("blend_hu", DEFAULT_BLEND_HU))
    return PassThrough(hu_range[0], hu_range[1], blend)


def check_spacing_range(value: Any) -> tuple[float, float]:
    """[low, high] mm (or one number) as a validated (low, high) with 0 < low ≤ high."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        low = high = float(value)
    else:
        low, high = (float(v) for v in value)
    if not (np.isfinite(low) and np.isfinite(high) and 0 < low <= high):
        raise ValueError(f"pixel spacing range must be 0 < low ≤ high mm, got {value!r}")
    return low, high


def model_spacing(spacing_xy: tuple[float, float], trained: tuple[float, float]) -> tuple[float, float]:
    """The spacing (x, y) mm a slice is resampled to: each axis clamped into the training range."""
    low, high = trained
    out = []
    for s in spacing_xy:
        target = min(max(s, low), high)
        out.append(s if abs(target - s) <= SPACING_TOLERANCE * target else target)
    return out[0], out[1]


def resampled_shape(shape_hw: tuple[int, int], spacing_xy, target_xy) -> tuple[int, int]:
    """(H, W) of a slice of ``shape_hw`` at ``spacing_xy`` when resampled to ``target_xy`` (same extent)."""
    h, w = shape_hw
    return max(1, round(h * spacing_xy[1] / target_xy[1])), max(1, round(w * spacing_xy[0] / target_xy[0]))


def resample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) → (B, C, *size), bilinear on pixel areas (antialiased when shrinking)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    if shrink and x.device.type == "mps":
        # MPS has no antialiased bilinear; area averaging is close enough there.
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


# -- in-plane orientation -----------------------------------------------------------------------
@dataclass(frozen=True)
class InPlaneOrientation:
    """How a slice's (rows, columns) are turned to the training orientation and back.

    The models are trained on the phantom, whose columns run towards the patient's left (+x, LPS)
    and rows towards the back (+y): an axial DICOM slice of a supine patient. A NIfTI stored in RAS,
    a feet-first or a prone scan arrives flipped, and a network shown its anatomy upside down
    enhances the spinal canal instead of the aorta. Flips and a transpose bring any axial-ish slice
    to that orientation; nothing is interpolated.
    """

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False

    @classmethod
    def from_direction(cls, direction: Any) -> InPlaneOrientation:
        """From a Volume's 3×3 direction (columns: index axes x, y, z in LPS)."""
        d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
        col, row = d[:, 0], d[:, 1]
        transpose = abs(col[1]) > abs(col[0])  # columns run front–back: the slice is turned 90°
        if transpose:
            col, row = row, col
        return cls(transpose=bool(transpose), flip_rows=bool(row[1] < 0), flip_cols=bool(col[0] < 0))

    @property
    def is_identity(self) -> bool:
        """True when slices already have the training orientation."""
        return not (self.transpose or self.flip_rows or self.flip_cols)

    def to_model(self, stack: np.ndarray) -> np.ndarray:
        """(B, H, W) in the volume's orientation → the training orientation (a view; no copy)."""
        out = np.swapaxes(stack, -1, -2) if self.transpose else stack
        if self.flip_rows:
            out = out[..., ::-1, :]
        if self.flip_cols:
            out = out[..., ::-1]
        return out

    def from_model(self, stack: np.ndarray) -> np.ndarray:
        """The inverse of `to_model`."""
        out = stack
        if self.flip_cols:
            out = out[..., ::-1]
        if self.flip_rows:
            out = out[..., ::-1, :]
        return np.swapaxes(out, -1, -2) if self.transpose else out

    def spacing_to_model(self, spacing_xy: tuple[float, float] | None) -> tuple[float, float] | None:
        """Pixel spacing (x, y) as the model sees it (swapped by a transpose)."""
        if spacing_xy is None or not self.transpose:
            return spacing_xy
        return (spacing_xy[1], spacing_xy[0])

    def record(self) -> dict[str, bool]:
        """For provenance."""
        return {"transpose": self.transpose, "flip_rows": self.flip_rows, "flip_cols": self.flip_cols}
