"""Metrics against scikit-image on the same arrays, and the body mask on a phantom-like body."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from mfm_engine import metrics
from mfm_engine.volume import Volume


def _pair(seed: int, shape=(64, 80)):
    rng = np.random.default_rng(seed)
    a = rng.normal(40, 300, size=shape)
    b = a + rng.normal(0, 40, size=shape)
    b[0, 0] = 1500.0  # outside the HU range: both sides must be clipped the same way
    return a.astype(np.float32), b.astype(np.float32)


def _clip(x):
    return np.clip(x, -1000, 1000).astype(np.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ssim_matches_scikit_image_2d(seed):
    a, b = _pair(seed)
    expected = structural_similarity(_clip(a), _clip(b), data_range=2000.0)
    assert metrics.ssim(a, b) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_ssim_masked_is_mean_of_scikit_image_map_in_mask():
    a, b = _pair(3)
    _, smap = structural_similarity(_clip(a), _clip(b), data_range=2000.0, full=True)
    mask = np.zeros(a.shape, dtype=bool)
    mask[10:40, 20:70] = True
    assert metrics.ssim(a, b, mask=mask) == pytest.approx(smap[mask].mean(), rel=1e-9)


def test_volume_ssim_is_mean_of_slice_ssim():
    rng = np.random.default_rng(4)
    a = rng.normal(0, 200, size=(3, 40, 40)).astype(np.float32)
    b = a + rng.normal(0, 30, size=a.shape).astype(np.float32)
    expected = np.mean([structural_similarity(_clip(a[k]), _clip(b[k]), data_range=2000.0) for k in range(3)])
    assert metrics.ssim(Volume(a), Volume(b)) == pytest.approx(expected, rel=1e-9)


def test_psnr_and_mae_match_references():
    a, b = _pair(5, shape=(4, 30, 30))
    assert metrics.psnr(a, b) == pytest.approx(peak_signal_noise_ratio(_clip(b), _clip(a), data_range=2000.0))
    assert metrics.mae_hu(a, b) == pytest.approx(np.abs(_clip(a) - _clip(b)).mean())
    mask = np.zeros(a.shape, bool)
    mask[:, 5:20, 5:20] = True
    assert metrics.mae_hu(a, b, mask) == pytest.approx(np.abs(_clip(a) - _clip(b))[mask].mean())
    ref = peak_signal_noise_ratio(_clip(b)[mask], _clip(a)[mask], data_range=2000.0)
    assert metrics.psnr(a, b, mask) == pytest.approx(ref)


def test_identical_images():
    a, _ = _pair(6)
    assert metrics.mae_hu(a, a) == 0.0
    assert metrics.psnr(a, a) == float("inf")
    assert metrics.ssim(a, a) == pytest.approx(1.0)


def test_bad_shapes_and_empty_mask_are_clear():
    with pytest.raises(ValueError, match="shape"):
        metrics.mae_hu(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="empty"):
        metrics.mae_hu(np.zeros((4, 4)), np.zeros((4, 4)), mask=np.zeros((4, 4), bool))


def test_body_mask_fills_gas_and_drops_table():
    z, y, x = np.mgrid[0:4, 0:100, 0:100]
    hu = np.full((4, 100, 100), -1000.0, dtype=np.float32)
    body = ((y - 45) / 35.0) ** 2 + ((x - 50) / 40.0) ** 2 <= 1
    hu[body] = 40.0
    gas = ((y - 45) / 6.0) ** 2 + ((x - 50) / 6.0) ** 2 <= 1
    hu[gas] = -990.0  # bowel gas inside the body
    hu[:, 92:95, 10:90] = 200.0  # a table under the patient, not touching it
    mask = metrics.body_mask(hu)
    assert mask[body].all()
    assert not mask[:, 92:95, 10:90].any()
    assert mask.sum() == body.sum()
