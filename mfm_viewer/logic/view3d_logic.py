"""What the 3D view shows, without vtk or Qt: the iodine map, an axis-aligned LPS grid, downsampling.

The iodine map is the enhancement the model took away (contrast − native): ``input − synthetic``
for a contrast→native translation, ``synthetic − input`` for native→contrast. Only positive values
above a threshold are rendered. For the renderer the volume is put on a grid whose index axes run
towards patient Left, Posterior and Superior (flips and axis swaps from the direction matrix; an
oblique tilt is not resampled, only its dominant axes are used), so the world frame is LPS in mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mfm_engine.volume import Volume

DEFAULT_THRESHOLD_HU = 30.0
MAX_RENDER_DIM = 160  # voxels along any axis after downsampling: keeps a CPU ray cast interactive


class View3DError(ValueError):
    """The volumes cannot be shown in 3D (no synthetic volume, shapes differ…)."""


def iodine_map(input_volume: Volume, synthetic: Volume) -> np.ndarray:
    """Contrast − native in HU, (z, y, x) float32, from the input and its synthetic partner."""
    if synthetic.shape != input_volume.shape:
        raise View3DError(
            f"the synthetic volume {synthetic.shape} does not match the input {input_volume.shape}"
        )
    direction = synthetic.meta.get("provenance", {}).get("direction", "c2n")
    a, b = (input_volume.hu, synthetic.hu) if direction == "c2n" else (synthetic.hu, input_volume.hu)
    return np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)


@dataclass(frozen=True)
class LpsGrid:
    """How a volume's (z, y, x) array maps onto an axis-aligned LPS grid."""

    axis_of: tuple[int, int, int]  # for L, P, S: the volume index axis (0 = i/x, 1 = j/y, 2 = k/z)
    flip: tuple[bool, bool, bool]  # for L, P, S: True when that index axis runs the other way
    shape_xyz: tuple[int, int, int]  # the volume's (nx, ny, nz)
    spacing: tuple[float, float, float]  # mm along L, P, S
    origin: tuple[float, float, float]  # LPS mm of the new grid's voxel (0, 0, 0)

    def array(self, zyx: np.ndarray) -> np.ndarray:
        """A (z, y, x) volume array rearranged to (S, P, L) order (numpy axes of index axes 2, 1, 0)."""
        # numpy axis of index axis a is 2 - a; the new array's numpy axes are (S, P, L).
        order = [2 - self.axis_of[t] for t in (2, 1, 0)]
        out = np.transpose(zyx, order)
        flips = tuple(slice(None, None, -1) if self.flip[t] else slice(None) for t in (2, 1, 0))
        return out[flips]

    def world(self, ijk: tuple[float, float, float]) -> tuple[float, float, float]:
        """LPS mm (in this grid's frame) of the volume's voxel (i, j, k)."""
        out = []
        for t in range(3):
            a = self.axis_of[t]
            n = self.shape_xyz[a]
            idx = (n - 1 - ijk[a]) if self.flip[t] else ijk[a]
            out.append(self.origin[t] + idx * self.spacing[t])
        return out[0], out[1], out[2]


def lps_grid(volume: Volume) -> LpsGrid:
    """The axis-aligned LPS grid of a volume (from the dominant axis of each direction column)."""
    d = volume.direction
    dominant = [int(np.argmax(np.abs(d[:, a]))) for a in range(3)]
    if sorted(dominant) != [0, 1, 2]:
        raise View3DError("the volume's direction matrix has two index axes along the same patient axis")
    axis_of = tuple(dominant.index(t) for t in range(3))
    flip = tuple(bool(d[t, axis_of[t]] < 0) for t in range(3))
    shape_xyz = tuple(int(n) for n in volume.shape[::-1])
    spacing = tuple(float(volume.spacing[axis_of[t]]) for t in range(3))
    # The new voxel (0, 0, 0) is the old corner with index 0, or n-1 on flipped axes.
    corner = [0.0, 0.0, 0.0]
    for t in range(3):
        if flip[t]:
            corner[axis_of[t]] = shape_xyz[axis_of[t]] - 1
    p = volume.index_to_physical(tuple(corner))
    return LpsGrid(axis_of, flip, shape_xyz, spacing, (float(p[0]), float(p[1]), float(p[2])))  # type: ignore[arg-type]


def downsample_factors(shape: tuple[int, ...], max_dim: int = MAX_RENDER_DIM) -> tuple[int, ...]:
    """Integer block sizes per axis so that no axis exceeds ``max_dim`` voxels."""
    return tuple(max(1, int(np.ceil(n / max_dim))) for n in shape)


def block_mean(arr: np.ndarray, factors: tuple[int, ...]) -> np.ndarray:
    """Mean over blocks of ``factors`` voxels (edges cropped to whole blocks; a float32 copy)."""
    a = np.asarray(arr, dtype=np.float32)
    if all(f == 1 for f in factors):
        return a.copy()
    crop = tuple(slice(0, (n // f) * f) for n, f in zip(a.shape, factors, strict=True))
    a = a[crop]
    shape = []
    for n, f in zip(a.shape, factors, strict=True):
        shape += [n // f, f]
    return a.reshape(shape).mean(axis=tuple(range(1, 2 * a.ndim, 2)))


def iodine_stats(iodine: np.ndarray, threshold_hu: float) -> tuple[int, float]:
    """(voxels above the threshold, their 99th percentile HU) — for the pane's caption and colour range."""
    above = iodine[iodine > threshold_hu]
    if above.size == 0:
        return 0, float(threshold_hu)
    return int(above.size), float(np.percentile(above, 99))
