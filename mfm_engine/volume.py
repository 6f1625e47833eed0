"""The `Volume` type: a CT volume in HU with its physical geometry and a little metadata.

Conventions (the same as SimpleITK's, so conversion is lossless):
- ``hu`` is a float32 array in (z, y, x) order; ``hu[k]`` is the k-th axial slice.
- ``spacing`` and ``origin`` are in (x, y, z) order, in mm, LPS patient coordinates.
- ``direction`` is a 3×3 matrix whose column i is the unit direction (LPS) of index axis i
  (i = 0 → x/columns, 1 → y/rows, 2 → z/slices). The physical point of voxel (i, j, k) is
  ``origin + direction @ (spacing * (i, j, k))``.

Metadata keys (``Volume.meta``; all JSON-serialisable; absent when unknown):
- ``modality`` (e.g. "CT"), ``series_description``, ``source_path`` (file or folder read),
  ``phase`` ("native" | "arterial" | "portal-venous" | …).
- ``warnings``: list of plain-language problems found while reading (gaps, uneven spacing…).
- ``synthetic``: True for voxels made by a model; ``provenance``: dict with ``model``,
  ``checkpoint``, ``kind``, ``direction`` ("c2n" | "n2c"), ``solver``, ``steps``, ``nfe``,
  ``seconds``, ``engine_version``.
- ``phantom``: True for the procedural phantom (a stand-in, never a patient); ``phantom_seed``.
- ``dicom``: what a DICOM writer needs from a source series: ``patient`` and ``study``
  (dicts keyword → value, e.g. PatientID, StudyInstanceUID, StudyDate), ``frame_of_reference_uid``,
  ``series_instance_uid``, ``sop_class_uid``, ``sop_instance_uids`` (one per z slice, array order).
- ``slice_positions_lps``: the scanner's own ImagePositionPatient of every z slice (array order,
  [x, y, z] mm LPS), kept because the regular grid cannot hold an uneven, gapped or tilted stack.
  Writers put each slice there; the viewer labels slices with it. Ignored (see
  `Volume.true_slice_positions`) when its length no longer matches the z size.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Plane = Literal["axial", "coronal", "sagittal"]
PLANES: tuple[Plane, ...] = ("axial", "coronal", "sagittal")

# Letters of the LPS patient axes, positive direction first.
_AXIS_LETTERS = (("L", "R"), ("P", "A"), ("S", "I"))


@dataclass
class Volume:
    """A float32 HU volume, (z, y, x), with LPS geometry and metadata."""

    hu: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        hu = np.asarray(self.hu)
        if hu.ndim != 3:
            raise ValueError(f"a Volume needs a 3-D (z, y, x) array, got shape {hu.shape}")
        if hu.dtype != np.float32:
            hu = hu.astype(np.float32)
        self.hu = hu
        self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]
        self.origin = tuple(float(o) for o in self.origin)  # type: ignore[assignment]
        self.direction = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        if any(s <= 0 for s in self.spacing):
            raise ValueError(f"spacing must be positive, got {self.spacing}")

    # -- geometry -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """(z, y, x) voxel counts."""
        return tuple(self.hu.shape)  # type: ignore[return-value]

    @property
    def warnings(self) -> list[str]:
        """Problems found while reading (gaps, uneven spacing, skipped files…)."""
        return self.meta.setdefault("warnings", [])

    @property
    def is_synthetic(self) -> bool:
        """True when the voxels were made by a model, not measured by a scanner."""
        return bool(self.meta.get("synthetic", False))

    def index_to_physical(self, ijk: tuple[float, float, float]) -> np.ndarray:
        """LPS position in mm of a voxel index given as (i=x, j=y, k=z)."""
        return np.asarray(self.origin) + self.direction @ (np.asarray(self.spacing) * np.asarray(ijk))

    def physical_to_index(self, point: tuple[float, float, float]) -> np.ndarray:
        """Continuous (i=x, j=y, k=z) index of an LPS point in mm."""
        rel = np.asarray(point, dtype=np.float64) - np.asarray(self.origin)
        return np.linalg.solve(self.direction, rel) / np.asarray(self.spacing)

    def same_geometry(self, other: Volume, tol_mm: float = 1e-3) -> bool:
        """True when both volumes share grid size, spacing, origin and direction."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, atol=tol_mm)
            and np.allclose(self.origin, other.origin, atol=tol_mm)
            and np.allclose(self.direction, other.direction, atol=1e-4)
        )

    def geometry_text(self) -> str:
        """One line describing size, spacing and origin, for messages."""
        sx, sy, sz = self.spacing
        ox, oy, oz = self.origin
        z, y, x = self.shape
        return (
            f"{x}×{y}×{z} voxels, spacing {sx:.3g}×{sy:.3g}×{sz:.3g} mm, "
            f"origin ({ox:.1f}, {oy:.1f}, {oz:.1f}) mm"
        )

    # -- true (scanner) slice positions --------------------------------------------------------
    def grid_slice_positions(self) -> np.ndarray:
        """(z, 3) LPS position in mm of every slice's first voxel on the regular grid."""
        k = np.arange(self.shape[0], dtype=np.float64)
        step = self.direction[:, 2] * self.spacing[2]
        return np.asarray(self.origin, dtype=np.float64)[None, :] + k[:, None] * step[None, :]

    def true_slice_positions(self) -> np.ndarray:
        """(z, 3) LPS position in mm of every slice's first voxel as the scanner placed it.

        The recorded ``meta['slice_positions_lps']`` when it has one row per slice, else the grid's.
        """
        recorded = self.meta.get("slice_positions_lps")
        if recorded is not None:
            arr = np.asarray(recorded, dtype=np.float64)
            if arr.shape == (self.shape[0], 3) and np.all(np.isfinite(arr)):
                return arr
        return self.grid_slice_positions()

    def regularisation_mm(self) -> float:
        """Largest distance (mm) between a slice's true position and where the regular grid draws it."""
        if self.shape[0] == 0:
            return 0.0
        offsets = self.true_slice_positions() - self.grid_slice_positions()
        return float(np.max(np.linalg.norm(offsets, axis=1)))

    @property
    def is_regularised(self) -> bool:
        """True when the grid shows some slice more than 0.01 mm from where the scanner put it."""
        return self.regularisation_mm() > 0.01

    # -- planes ---------------------------------------------------------------------------
    def n_slices(self, plane: Plane) -> int:
        """Number of slices along a plane's normal."""
        z, y, x = self.shape
        return {"axial": z, "coronal": y, "sagittal": x}[plane]

    def slice(self, plane: Plane, index: int) -> np.ndarray:
        """A 2-D view (rows, cols) of one plane, in index order (no flips, no copy).

        axial → (y, x); coronal → (z, x); sagittal → (z, y).
        """
        n = self.n_slices(plane)
        if not 0 <= index < n:
            raise IndexError(f"{plane} slice {index} is outside 0..{n - 1}")
        if plane == "axial":
            return self.hu[index]
        if plane == "coronal":
            return self.hu[:, index, :]
        if plane == "sagittal":
            return self.hu[:, :, index]
        raise ValueError(f"unknown plane {plane!r}")

    def pixel_spacing(self, plane: Plane) -> tuple[float, float]:
        """(row, col) spacing in mm of a plane's slices, for display at physical aspect."""
        sx, sy, sz = self.spacing
        return {"axial": (sy, sx), "coronal": (sz, sx), "sagittal": (sz, sy)}[plane]

    def aspect(self, plane: Plane) -> float:
        """Height/width of one pixel of this plane (1.0 for isotropic voxels)."""
        row, col = self.pixel_spacing(plane)
        return row / col

    def axis_letters(self, index_axis: int) -> tuple[str, str]:
        """Patient-axis letters (towards increasing index, towards decreasing) of index axis 0/1/2 (x/y/z)."""
        d = self.direction[:, index_axis]
        dominant = int(np.argmax(np.abs(d)))
        pos, neg = _AXIS_LETTERS[dominant]
        return (pos, neg) if d[dominant] > 0 else (neg, pos)

    def plane_letters(self, plane: Plane) -> dict[str, str]:
        """Orientation letters at the edges of a plane shown in index order (row 0 at top).

        Keys: 'left', 'right', 'top', 'bottom'.
        """
        row_axis, col_axis = {"axial": (1, 0), "coronal": (2, 0), "sagittal": (2, 1)}[plane]
        col_pos, col_neg = self.axis_letters(col_axis)
        row_pos, row_neg = self.axis_letters(row_axis)
        return {"left": col_neg, "right": col_pos, "top": row_neg, "bottom": row_pos}

    # -- copies ---------------------------------------------------------------------------
    def with_hu(self, hu: np.ndarray, **meta_updates: Any) -> Volume:
        """A new Volume on the same grid with other voxels (metadata deep-copied, then updated)."""
        hu = np.asarray(hu)
        if hu.shape != self.hu.shape:
            raise ValueError(f"shape {hu.shape} does not match the volume's {self.hu.shape}")
        meta = copy.deepcopy(self.meta)
        meta.update(meta_updates)
        return Volume(hu, self.spacing, self.origin, self.direction.copy(), meta)

    def copy(self) -> Volume:
        """A deep copy."""
        return self.with_hu(self.hu.copy())
