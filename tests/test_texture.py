"""The texture measures behind the no-grid and noise-level checks, against known fields."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mfm_engine.texture import noise_sigma_hu, periodic_peak_ratio


@pytest.mark.parametrize("sigma", [5.0, 12.0, 25.0])
def test_noise_sigma_of_white_noise_on_smooth_anatomy(sigma: float) -> None:
    rng = np.random.default_rng(int(sigma))
    yy, xx = np.mgrid[0:256, 0:256]
    anatomy = 40 + 30 * np.sin(xx / 40.0) + 0.2 * yy  # smooth: the Laplacian cancels it
    image = anatomy + rng.normal(0, sigma, anatomy.shape)
    assert noise_sigma_hu(image, np.ones_like(image, dtype=bool)) == pytest.approx(sigma, rel=0.05)


def test_noise_sigma_ignores_pixels_outside_the_mask() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(0, 10, (128, 128))
    image[:, 64:] = rng.normal(0, 40, (128, 64))
    left = np.zeros_like(image, dtype=bool)
    left[:, :60] = True
    assert noise_sigma_hu(image, left) == pytest.approx(10, rel=0.06)


def test_peak_ratio_is_about_one_for_noise_even_correlated_noise() -> None:
    rng = np.random.default_rng(1)
    white = rng.normal(0, 1, (8, 256, 256))
    kernel_shaped = ndimage.gaussian_filter(white, sigma=(0, 1.2, 1.2))
    assert periodic_peak_ratio(white, 4) < 1.3
    assert periodic_peak_ratio(kernel_shaped, 4) < 1.3


def test_peak_ratio_finds_a_faint_patch_grid_and_respects_the_mask() -> None:
    rng = np.random.default_rng(2)
    noise = rng.normal(0, 10, (16, 256, 256))  # enough tiles that noise alone stays near 1
    grid = np.tile(rng.normal(0, 1.0, (4, 4)), (64, 64))  # σ 1 HU against 10 HU of noise
    assert periodic_peak_ratio(noise + grid, 4) > 5
    mask = np.zeros((256, 256), dtype=bool)
    mask[:128] = True
    noise[:, 128:] += grid[128:]  # the grid only where the mask excludes
    assert periodic_peak_ratio(noise, 4, mask=mask) < 1.3
    with pytest.raises(ValueError, match="tile"):
        periodic_peak_ratio(noise, 4, mask=np.zeros((256, 256), dtype=bool))
