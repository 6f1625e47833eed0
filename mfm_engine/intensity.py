"""HU ↔ model scale, and the named display windows. The one place these numbers live."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The paper clips to [-1000, 1000] HU and scales linearly to [-1, 1].
HU_MIN = -1000.0
HU_MAX = 1000.0
HU_RANGE = HU_MAX - HU_MIN  # 2000 HU: also the data range of PSNR and SSIM


def hu_to_model(hu, hu_range: tuple[float, float] = (HU_MIN, HU_MAX)):
    """Clip HU to hu_range (default [HU_MIN, HU_MAX]) and map linearly to [-1, 1] (numpy or torch)."""
    low, high = hu_range
    scale = 2.0 / (high - low)
    if isinstance(hu, np.ndarray):
        return ((np.clip(hu, low, high) - low) * scale - 1.0).astype(np.float32, copy=False)
    return (hu.clamp(low, high) - low) * scale - 1.0


def model_to_hu(x, hu_range: tuple[float, float] = (HU_MIN, HU_MAX)):
    """Map model scale [-1, 1] back to HU (no clipping: the network may overshoot slightly)."""
    low, high = hu_range
    out = (x + 1.0) * ((high - low) / 2.0) + low
    if isinstance(out, np.ndarray):
        return out.astype(np.float32, copy=False)
    return out


@dataclass(frozen=True)
class WindowPreset:
    """A display window: grey from level − width/2 (black) to level + width/2 (white), in HU."""

    name: str
    width: float
    level: float

    @property
    def low(self) -> float:
        return self.level - self.width / 2

    @property
    def high(self) -> float:
        return self.level + self.width / 2

    def apply(self, hu: np.ndarray) -> np.ndarray:
        """Map HU to [0, 1] grey values."""
        return np.clip((hu - self.low) / self.width, 0.0, 1.0)


# Order matters: the viewer binds number keys 1..n in this order; abdomen is the default.
# Widths/levels are the usual radiology conventions (e.g. Radiopaedia "Windowing (CT)").
WINDOW_PRESETS: tuple[WindowPreset, ...] = (
    WindowPreset("abdomen", 400, 40),
    WindowPreset("liver", 150, 60),
    WindowPreset("soft tissue", 350, 50),
    WindowPreset("bone", 1800, 400),
    WindowPreset("lung", 1500, -600),
    WindowPreset("mediastinum", 350, 50),
    # 3D Slicer's "CT-Abdomen" preset, which the paper's readers used.
    WindowPreset("abdomen (Slicer)", 350, 40),
)
DEFAULT_WINDOW = WINDOW_PRESETS[0]

# Head CT windows (Radiopaedia "Windowing (CT)"; temporal bone as in common neuroradiology
# protocols). The viewer offers these first when a study is a head; brain is the default there.
HEAD_WINDOW_PRESETS: tuple[WindowPreset, ...] = (
    WindowPreset("brain", 80, 40),
    WindowPreset("subdural", 200, 80),
    WindowPreset("stroke", 40, 40),
    WindowPreset("temporal bone", 2800, 600),
    WindowPreset("bone", 1800, 400),
    WindowPreset("soft tissue", 350, 50),
)
ALL_WINDOW_PRESETS: tuple[WindowPreset, ...] = WINDOW_PRESETS + tuple(
    p for p in HEAD_WINDOW_PRESETS if p.name not in {w.name for w in WINDOW_PRESETS}
)


def window_preset(name: str) -> WindowPreset:
    """Look a preset (abdominal or head) up by name (case-insensitive)."""
    for preset in ALL_WINDOW_PRESETS:
        if preset.name.lower() == name.lower():
            return preset
    known = ", ".join(p.name for p in ALL_WINDOW_PRESETS)
    raise KeyError(f"unknown window preset {name!r}; known: {known}")
