"""Organ statistics against the true native: mean HU per organ and MAE inside organs, with identity.

Masks come from a label map (the phantom's) and are eroded by one voxel in-plane (a 3×3 cross,
slice by slice) so that partial-volume edges and a one-voxel misalignment do not dominate: the
question is whether the organ's own HU is right. Slices are 4 mm thick against < 1 mm pixels, so
eroding along z would throw away whole slices of small organs for no gain.

Sums are pooled over voxels of every slice added, so the means are per voxel, over all patients.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

_CROSS = ndimage.generate_binary_structure(2, 1)


def eroded_mask(labels: np.ndarray, value: int) -> np.ndarray:
    """Voxels of one label value, eroded by one voxel in-plane; (H, W) or (z, H, W) boolean."""
    mask = np.asarray(labels) == value
    if mask.ndim == 2:
        return ndimage.binary_erosion(mask, _CROSS)
    return np.stack([ndimage.binary_erosion(m, _CROSS) for m in mask])


@dataclass
class _Sums:
    n: int = 0
    pred: float = 0.0
    true: float = 0.0
    inp: float = 0.0
    abs_err: float = 0.0
    abs_identity: float = 0.0

    def add(self, pred: np.ndarray, true: np.ndarray, inp: np.ndarray) -> None:
        self.n += int(pred.size)
        self.pred += float(pred.sum(dtype=np.float64))
        self.true += float(true.sum(dtype=np.float64))
        self.inp += float(inp.sum(dtype=np.float64))
        self.abs_err += float(np.abs(pred - true).sum(dtype=np.float64))
        self.abs_identity += float(np.abs(inp - true).sum(dtype=np.float64))


@dataclass
class OrganStats:
    """Accumulates synthetic / true / input HU inside named organs over many slices."""

    organs: list[str]
    legend: dict[int, str]
    # Organs whose voxels together make the "organs" entry (default: all of ``organs``).
    union_organs: list[str] | None = None
    sums: dict[str, _Sums] = field(default_factory=dict)
    union: _Sums = field(default_factory=_Sums)

    def __post_init__(self) -> None:
        inverse = {name: value for value, name in self.legend.items()}
        missing = [o for o in self.organs if o not in inverse]
        if missing:
            raise ValueError(f"organ(s) {missing} are not in the label legend ({', '.join(sorted(inverse))})")
        self._values = {o: inverse[o] for o in self.organs}
        self._union = set(self.organs if self.union_organs is None else self.union_organs)
        self.sums = {o: _Sums() for o in self.organs}

    def add(self, pred_hu: np.ndarray, true_hu: np.ndarray, input_hu: np.ndarray, labels: np.ndarray) -> None:
        """Add one slice (H, W) or a stack (z, H, W): synthetic, true native and input (contrast) HU."""
        union = np.zeros(np.shape(labels), dtype=bool)
        for organ, value in self._values.items():
            m = eroded_mask(labels, value)
            if m.any():
                self.sums[organ].add(pred_hu[m], true_hu[m], input_hu[m])
                if organ in self._union:
                    union |= m
        if union.any():
            self.union.add(pred_hu[union], true_hu[union], input_hu[union])

    def result(self) -> dict[str, dict[str, float]]:
        """Per organ and for all organs together: voxels, mean HU (synthetic, true, input), errors."""
        out: dict[str, dict[str, float]] = {}
        for name, s in [*self.sums.items(), ("organs", self.union)]:
            if s.n == 0:
                out[name] = {"voxels": 0}
                continue
            out[name] = {
                "voxels": s.n,
                "pred_mean_hu": s.pred / s.n,
                "true_mean_hu": s.true / s.n,
                "input_mean_hu": s.inp / s.n,
                "mean_error_hu": (s.pred - s.true) / s.n,
                "input_mean_error_hu": (s.inp - s.true) / s.n,
                "mae_hu": s.abs_err / s.n,
                "identity_mae_hu": s.abs_identity / s.n,
            }
        return out
