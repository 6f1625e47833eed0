"""Geometric augmentation of a pair (the paper's, via MONAI dictionary transforms); no intensity change.

Both images of a pair (and a label map, if given) go through one dictionary transform, so they
receive exactly the same flips, rotations, affine and crop:

- random flip along x and along y (p = 0.5 each);
- random 90° rotation by 1–3 quarter turns (p = 0.5);
- random affine (p = 0.7): rotation ±45°, translation ±20 % of the slice (±102.4 px at 512),
  shear ±10°; images are resampled bilinearly, labels by nearest neighbour;
- optional random square crop.

Points that come from outside the slice are air (−1 in model scale, −1000 HU). MONAI pads with
zeros, so the images are shifted by +1 before the affine and back after it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

PAPER_TRANSLATE_FRACTION = 102.4 / 512.0
PAPER_ROTATE_DEG = 45.0
PAPER_SHEAR_DEG = 10.0


class _Shift:
    """Add a constant to some keys (so MONAI's zero padding becomes air)."""

    def __init__(self, keys: Sequence[str], delta: float) -> None:
        self.keys = tuple(keys)
        self.delta = float(delta)

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        out = dict(data)
        for k in self.keys:
            out[k] = out[k] + self.delta
        return out


def pair_augmentation(
    size: int,
    *,
    image_keys: Sequence[str] = ("contrast", "native"),
    label_keys: Sequence[str] = (),
    crop: int | None = None,
    augment: bool = True,
):
    """A MONAI ``Compose`` for (1, H, W) arrays of slices of side ``size`` (translation scales with it)."""
    from monai.transforms import (
        Compose,
        RandAffined,
        RandFlipd,
        RandRotate90d,
        RandSpatialCropd,
    )

    keys = list(image_keys) + list(label_keys)
    steps: list[Any] = []
    if augment:
        translate = PAPER_TRANSLATE_FRACTION * size
        shear = math.tan(math.radians(PAPER_SHEAR_DEG))
        steps += [
            RandFlipd(keys=keys, prob=0.5, spatial_axis=0),
            RandFlipd(keys=keys, prob=0.5, spatial_axis=1),
            RandRotate90d(keys=keys, prob=0.5, max_k=3, spatial_axes=(0, 1)),
            _Shift(image_keys, 1.0),
            RandAffined(
                keys=keys,
                prob=0.7,
                rotate_range=(math.radians(PAPER_ROTATE_DEG),),
                shear_range=(shear, shear),
                translate_range=(translate, translate),
                mode=["bilinear"] * len(image_keys) + ["nearest"] * len(label_keys),
                padding_mode="zeros",
            ),
            _Shift(image_keys, -1.0),
        ]
    if crop is not None:
        steps.append(RandSpatialCropd(keys=keys, roi_size=(crop, crop), random_size=False))
    return Compose(steps)


def apply_pair_augmentation(transform, sample: dict[str, np.ndarray], seed: int) -> dict[str, torch.Tensor]:
    """Run ``transform`` seeded with ``seed`` (reproducible per sample) and return plain tensors."""
    from monai.utils import convert_to_tensor

    transform.set_random_state(seed=int(seed) % (2**32))
    data = {k: torch.as_tensor(np.ascontiguousarray(v)) for k, v in sample.items()}
    out = transform(data)
    return {k: convert_to_tensor(v, track_meta=False).contiguous() for k, v in out.items()}
