"""How a plane of a Volume is laid out on screen: which index axis runs down and across, and flips.

The radiological convention: superior at the top of coronal and sagittal views, anterior at the
top of axial views, the patient's right on the screen's left (so patient-left is screen-right),
and anterior on the left of sagittal views. Everything is derived from the volume's direction
matrix (``Volume.axis_letters``), so an image stored feet-first or flipped still shows upright.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mfm_engine.volume import Plane, Volume

# Index axes are numbered as in Volume.index_to_physical: 0 = i (x, columns), 1 = j (y, rows), 2 = k (z).
IN_PLANE_AXES: dict[str, tuple[int, int]] = {"axial": (1, 0), "coronal": (2, 0), "sagittal": (2, 1)}
NORMAL_AXIS: dict[str, int] = {"axial": 2, "coronal": 1, "sagittal": 0}
PLANE_OF_NORMAL: dict[int, Plane] = {2: "axial", 1: "coronal", 0: "sagittal"}

# Which patient direction goes to the top, and which to the left, in order of preference.
_TOP_PREFERENCE = ("S", "A", "R")
_LEFT_PREFERENCE = ("R", "A", "S")
_OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "S": "I", "I": "S"}
_ANATOMICAL_NAME = {
    "S": "Axial",
    "I": "Axial",
    "A": "Coronal",
    "P": "Coronal",
    "L": "Sagittal",
    "R": "Sagittal",
}


@dataclass(frozen=True)
class DisplayOrientation:
    """Screen layout of one plane: vertical/horizontal index axes, their flips, edge letters."""

    plane: Plane
    v_axis: int  # index axis running down the screen
    h_axis: int  # index axis running across the screen
    v_flip: bool  # True when the index grows upwards
    h_flip: bool  # True when the index grows leftwards
    letters: dict[str, str]  # 'top', 'bottom', 'left', 'right'

    @property
    def normal_axis(self) -> int:
        """Index axis perpendicular to the plane."""
        return NORMAL_AXIS[self.plane]

    @property
    def transposed(self) -> bool:
        """True when Volume.slice's rows run across the screen."""
        return self.v_axis != IN_PLANE_AXES[self.plane][0]

    def display(self, slice2d: np.ndarray) -> np.ndarray:
        """A Volume.slice array (index order) rearranged as shown: row 0 at the top (a view, no copy)."""
        img = slice2d.T if self.transposed else slice2d
        return img[:: -1 if self.v_flip else 1, :: -1 if self.h_flip else 1]

    def display_shape(self, shape_xyz: tuple[int, int, int]) -> tuple[int, int]:
        """(rows, cols) of the displayed image for a volume of (nx, ny, nz) voxels."""
        return shape_xyz[self.v_axis], shape_xyz[self.h_axis]

    def display_spacing(self, spacing_xyz: tuple[float, float, float]) -> tuple[float, float]:
        """(row, col) pixel size in mm of the displayed image."""
        return spacing_xyz[self.v_axis], spacing_xyz[self.h_axis]

    def ijk_to_display(self, ijk: tuple[int, int, int], shape_xyz: tuple[int, int, int]) -> tuple[int, int]:
        """Displayed (row, col) of voxel (i, j, k)."""
        n_v, n_h = self.display_shape(shape_xyz)
        r, c = ijk[self.v_axis], ijk[self.h_axis]
        return (n_v - 1 - r if self.v_flip else r), (n_h - 1 - c if self.h_flip else c)

    def display_to_ijk(
        self, row: int, col: int, ijk: tuple[int, int, int], shape_xyz: tuple[int, int, int]
    ) -> tuple[int, int, int]:
        """Voxel (i, j, k) under displayed (row, col); the normal axis keeps ``ijk``'s value."""
        n_v, n_h = self.display_shape(shape_xyz)
        out = list(ijk)
        out[self.v_axis] = n_v - 1 - row if self.v_flip else row
        out[self.h_axis] = n_h - 1 - col if self.h_flip else col
        return out[0], out[1], out[2]


def orientation_for(volume: Volume, plane: Plane) -> DisplayOrientation:
    """The radiological screen layout of one plane of ``volume``."""
    row_axis, col_axis = IN_PLANE_AXES[plane]
    letters = {a: volume.axis_letters(a) for a in (row_axis, col_axis)}  # (towards +index, towards −index)
    v_axis, top = next((a, p) for p in _TOP_PREFERENCE for a in (row_axis, col_axis) if p in letters[a])
    h_axis = col_axis if v_axis == row_axis else row_axis
    left = next(p for p in _LEFT_PREFERENCE if p in letters[h_axis])
    return DisplayOrientation(
        plane=plane,
        v_axis=v_axis,
        h_axis=h_axis,
        v_flip=letters[v_axis][0] == top,
        h_flip=letters[h_axis][0] == left,
        letters={"top": top, "bottom": _OPPOSITE[top], "left": left, "right": _OPPOSITE[left]},
    )


def anatomical_name(volume: Volume, plane: Plane) -> str:
    """'Axial', 'Coronal' or 'Sagittal' from the patient direction of the plane's normal."""
    return _ANATOMICAL_NAME[volume.axis_letters(NORMAL_AXIS[plane])[0]]


def true_voxel_position(volume: Volume, ijk: tuple[int, int, int]) -> np.ndarray:
    """LPS mm of voxel (i, j, k) as the scanner placed it: its slice's true origin plus the in-plane offset.

    Differs from ``Volume.index_to_physical`` for a regularised stack (uneven, gapped, tilted).
    """
    i, j, k = (int(v) for v in ijk)
    origin = volume.true_slice_positions()[k]
    d, s = volume.direction, volume.spacing
    return origin + d[:, 0] * (s[0] * i) + d[:, 1] * (s[1] * j)


def normal_position_text(volume: Volume, plane: Plane, index: int) -> str:
    """Position of a slice along its normal in mm, e.g. 'z 61.8 mm' (the dominant LPS coordinate).

    The scanner's own position: an axial slice of a regularised stack (uneven, gapped, tilted) is
    labelled where the scanner put it, not where the regular grid draws it.
    """
    axis = NORMAL_AXIS[plane]
    ijk = [0, 0, 0]
    ijk[axis] = int(index)
    point = true_voxel_position(volume, (ijk[0], ijk[1], ijk[2]))
    dominant = int(np.argmax(np.abs(volume.direction[:, axis])))
    return f"{'xyz'[dominant]} {point[dominant]:.1f} mm"
