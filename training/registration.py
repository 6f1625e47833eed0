"""Register a contrast series onto its native with ANTs (antspyx), inside a body mask.

The paper registers contrast → native with ANTs' "deformable SyN only" transform and a body mask.
``SyNOnly`` starts from the identity (antspyx passes ``-r Identity`` for deformable-only
transforms), which is right for the two phases of one examination: they share a frame of
reference, and a pair whose origin or spacing differ is dropped before registration anyway.

ANTs is run on ``HU + 1024`` (clipped at 0), not on raw HU: non-negative intensities with air at
about 0 (raw HU is a known source of misalignment; on the phantom and real test data of this
project both registered alike, so the shift is kept as a precaution). The warped image is
shifted back to HU afterwards; voxels from outside the moving image are filled with air (−1024 HU).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np

from mfm_engine.metrics import body_mask, mae_hu
from mfm_engine.volume import Volume
from training.errors import RegistrationError

#: Allowed ``--registration`` values: antspyx transform names, or none.
TRANSFORMS = ("SyNOnly", "SyN", "Affine", "Rigid", "none")
HU_SHIFT = 1024.0
_HU_CEILING = 3071.0


@dataclass
class RegistrationResult:
    """The contrast on the native's grid, and the body-mask MAE before and after."""

    registered: Volume
    mae_before_hu: float
    mae_after_hu: float
    transform: str


def _to_ants(volume: Volume, hu: np.ndarray):
    import ants

    # ANTs images are (x, y, z); the Volume's array is (z, y, x).
    img = ants.from_numpy(
        np.ascontiguousarray(hu.transpose(2, 1, 0), dtype=np.float32),
        origin=list(volume.origin),
        spacing=list(volume.spacing),
        direction=np.asarray(volume.direction, dtype=np.float64),
    )
    return img


def _shifted(hu: np.ndarray, shift: float) -> np.ndarray:
    return np.clip(hu, -HU_SHIFT, _HU_CEILING) + shift


def register_pair(
    contrast: Volume,
    native: Volume,
    *,
    transform: str = "SyNOnly",
    label: str = "",
    hu_shift: float = HU_SHIFT,
) -> RegistrationResult:
    """Warp ``contrast`` onto ``native`` (same grid required) with ANTs ``transform``, in a body mask.

    ``hu_shift`` is added to HU (clipped to [−1024, 3071]) before ANTs sees the images.
    """
    where = (
        label
        or f"{contrast.meta.get('source_path', 'contrast')} → {native.meta.get('source_path', 'native')}"
    )
    if transform not in TRANSFORMS:
        raise RegistrationError(
            f"{where}: unknown registration {transform!r}; use one of {', '.join(TRANSFORMS)}"
        )
    if contrast.shape != native.shape:
        raise RegistrationError(f"{where}: the series differ in size ({contrast.shape} vs {native.shape})")
    fixed_mask = body_mask(native)
    moving_mask = body_mask(contrast)
    for name, mask in (("native", fixed_mask), ("contrast", moving_mask)):
        if not mask.any():
            raise RegistrationError(
                f"{where}: registration failed: no body found in the {name} series (nothing above −500 HU)"
            )
    before = mae_hu(contrast.hu, native.hu, fixed_mask)
    if transform == "none":
        return RegistrationResult(contrast, before, before, transform)
    try:
        import ants
    except ImportError as exc:  # pragma: no cover - antspyx is a dependency
        raise RegistrationError(f"{where}: antspyx is not installed ({exc})") from exc

    fixed = _to_ants(native, _shifted(native.hu, hu_shift))
    moving = _to_ants(contrast, _shifted(contrast.hu, hu_shift))
    fmask = _to_ants(native, fixed_mask.astype(np.float32))
    mmask = _to_ants(contrast, moving_mask.astype(np.float32))
    with tempfile.TemporaryDirectory(prefix="mfm-ants-") as tmp:
        try:
            reg = ants.registration(
                fixed,
                moving,
                type_of_transform=transform,
                mask=fmask,
                moving_mask=mmask,
                outprefix=os.path.join(tmp, "reg_"),
            )
            warped = ants.apply_transforms(
                fixed=fixed,
                moving=moving,
                transformlist=reg["fwdtransforms"],
                interpolator="linear",
                defaultvalue=hu_shift - HU_SHIFT,
            )
        except (RuntimeError, ValueError, IndexError, OSError) as exc:
            text = str(exc).strip().splitlines()
            raise RegistrationError(
                f"{where}: ANTs {transform} registration failed: {text[-1] if text else type(exc).__name__}"
            ) from exc
        out = warped.numpy().transpose(2, 1, 0) - hu_shift
    if not np.isfinite(out).all():
        raise RegistrationError(f"{where}: ANTs {transform} registration produced non-finite voxels")
    registered = contrast.with_hu(out.astype(np.float32))
    registered.spacing, registered.origin = native.spacing, native.origin
    registered.direction = native.direction.copy()
    registered.meta["registration"] = {
        "transform": transform,
        "fixed": str(native.meta.get("source_path", "")),
    }
    after = mae_hu(registered.hu, native.hu, fixed_mask)
    return RegistrationResult(registered, before, after, transform)
