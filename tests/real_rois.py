"""Regions of interest on the real series in ../shared/data, found from the input images themselves.

The series have no segmentation, so vessels are found the way a reader places an ROI: near where
anatomy puts them (just in front of the spine, left of the midline), as the most homogeneous disk
whose mean lies in the expected HU range. The seeds were placed by looking at the images
(docs/demo-model-eval.md shows them).
"""

from __future__ import annotations

import numpy as np


def vessel_disk(
    slice_hu: np.ndarray,
    seed_rc: tuple[int, int],
    *,
    search: int,
    radius: float,
    hu_range: tuple[float, float],
) -> np.ndarray | None:
    """Mask (H, W) of the most homogeneous disk near ``seed_rc`` with mean in ``hu_range``, or None."""
    h, w = slice_hu.shape
    yy, xx = np.mgrid[0:h, 0:w]
    best: tuple[float, np.ndarray] | None = None
    r0, c0 = seed_rc
    for r in range(r0 - search, r0 + search + 1):
        for c in range(c0 - search, c0 + search + 1):
            disk = (yy - r) ** 2 + (xx - c) ** 2 <= radius**2
            values = slice_hu[disk]
            if not hu_range[0] <= values.mean() <= hu_range[1]:
                continue
            if best is None or values.std() < best[0]:
                best = (float(values.std()), disk)
    return None if best is None else best[1]


def vessel_roi(
    volume_hu: np.ndarray,
    slices: range,
    seed_rc: tuple[int, int],
    *,
    search: int,
    radius: float,
    hu_range: tuple[float, float],
) -> np.ndarray:
    """(Z, H, W) mask: a vessel disk on each of ``slices`` where one is found."""
    mask = np.zeros(volume_hu.shape, dtype=bool)
    for k in slices:
        disk = vessel_disk(volume_hu[k], seed_rc, search=search, radius=radius, hu_range=hu_range)
        if disk is not None:
            mask[k] = disk
    return mask
