"""Texture checks a blinded reader could use to tell synthetic from real: a patch grid, a noise level.

- `periodic_peak_ratio`: how far the power at multiples of 1/period cycles per pixel stands above the
  neighbouring frequencies (1 = no peak). A network that works on period × period patches and puts
  them back with a pixel shuffle leaves a fixed pattern there.
- `noise_sigma_hu`: the noise level in a homogeneous region, from the Laplacian, which cancels
  smooth anatomy (Immerkær 1996, "Fast noise variance estimation", CVIU 64(2)).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# Laplacian-difference kernel of Immerkær (1996): its response to N(0, σ²) noise has variance 36σ².
_IMMERKAER = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])


def periodic_peak_ratio(
    images: np.ndarray, period: int, mask: np.ndarray | None = None, tile: int = 64, ring: int = 2
) -> float:
    """Largest ratio of the averaged power at a (k/period, l/period) frequency to its neighbours' mean.

    ``images`` (N, H, W) or (H, W). The power spectrum is averaged over every ``tile`` × ``tile``
    tile (a multiple of ``period``) lying wholly inside ``mask`` (Welch's averaging: one periodogram
    bin of noise scatters like an exponential variable, so single spectra show false peaks of 3–5×).
    ``ring`` is the half-width, in bins, of the neighbourhood (the peak bin itself excluded).
    A pure noise field gives about 1; a pixel-shuffle grid tens to hundreds.
    """
    stack = np.asarray(images, dtype=np.float64)
    stack = stack[None] if stack.ndim == 2 else stack
    if tile % period:
        raise ValueError(f"tile {tile} is not a multiple of the period {period}")
    keep = np.ones(stack.shape, dtype=bool) if mask is None else np.broadcast_to(mask, stack.shape)
    power = np.zeros((tile, tile))
    n_tiles = 0
    for img, inside in zip(stack, keep, strict=True):
        for y in range(0, img.shape[0] - tile + 1, tile):
            for x in range(0, img.shape[1] - tile + 1, tile):
                if not inside[y : y + tile, x : x + tile].all():
                    continue
                part = img[y : y + tile, x : x + tile]
                power += np.abs(np.fft.fft2(part - part.mean())) ** 2
                n_tiles += 1
    if n_tiles == 0:
        raise ValueError(f"no {tile}×{tile} tile lies wholly inside the mask")
    worst = 0.0
    step = tile // period
    for k in range(period):
        for j in range(period):
            if k == 0 and j == 0:
                continue
            fy, fx = k * step, j * step
            ys = np.arange(fy - ring, fy + ring + 1) % tile
            xs = np.arange(fx - ring, fx + ring + 1) % tile
            block = power[np.ix_(ys, xs)]
            neighbours = (block.sum() - power[fy, fx]) / (block.size - 1)
            worst = max(worst, float(power[fy, fx] / max(neighbours, 1e-300)))
    return worst


def noise_sigma_hu(image: np.ndarray, mask: np.ndarray) -> float:
    """Noise standard deviation (HU) inside ``mask`` (eroded by one pixel so no edge enters)."""
    response = ndimage.convolve(np.asarray(image, dtype=np.float64), _IMMERKAER, mode="reflect")
    inside = ndimage.binary_erosion(np.asarray(mask, dtype=bool), iterations=1)
    if not inside.any():
        raise ValueError("the mask leaves no pixel to measure after erosion")
    # Mean absolute response × sqrt(π/2)/6 estimates σ for Gaussian noise (Immerkær's estimator).
    return float(np.mean(np.abs(response[inside])) * np.sqrt(np.pi / 2) / 6.0)
