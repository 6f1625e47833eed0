"""A reference series for the input: geometry check, and resampling onto the input grid. Qt-free."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mfm_engine.errors import GeometryMismatchError
from mfm_engine.volume import Volume

AIR_HU = -1000.0


def check_reference(input_volume: Volume, reference: Volume) -> None:
    """Raise GeometryMismatchError, showing both geometries, unless the grids match."""
    if input_volume.same_geometry(reference):
        return
    src = reference.meta.get("source_path", "the reference")
    raise GeometryMismatchError(
        f"The reference {src} is not on the same grid as the input, so voxels cannot be compared.\n"
        f"Input:     {input_volume.geometry_text()}\n"
        f"Reference: {reference.geometry_text()}"
    )


def resample_onto(reference: Volume, target: Volume) -> Volume:
    """``reference`` trilinearly resampled onto ``target``'s grid by physical position (air outside)."""
    s_t, s_r = np.diag(target.spacing), np.diag(reference.spacing)
    # target index (i, j, k) -> LPS point -> reference index: ref = A @ idx + b
    to_ref = np.linalg.inv(reference.direction @ s_r)
    a = to_ref @ target.direction @ s_t
    b = to_ref @ (np.asarray(target.origin) - np.asarray(reference.origin))
    # scipy works on array axes (z, y, x): reverse both index orders.
    p = np.eye(3)[::-1]
    hu = ndimage.affine_transform(
        reference.hu,
        p @ a @ p,
        offset=p @ b,
        output_shape=target.shape,
        order=1,
        mode="constant",
        cval=AIR_HU,
    ).astype(np.float32)
    out = Volume(hu, target.spacing, target.origin, target.direction.copy(), dict(reference.meta))
    # Sampled on the target's regular grid: the reference's own slice positions no longer describe it.
    out.meta.pop("slice_positions_lps", None)
    out.meta["warnings"] = list(reference.warnings) + [
        f"resampled onto the input grid ({target.geometry_text()}) by trilinear interpolation"
    ]
    return out
