"""The shipped demo model leaves no patch grid and keeps the noise of real scans (issue 14, item 3).

On aligned phantom patients outside the training seeds (900–903, motion 0), contrast → native with
Euler × 1: the residual synthetic − true native inside the body has no spectral peak at multiples
of 1/patch cycles per pixel (≤ 1.5× the neighbouring frequencies, Welch-averaged over 64² tiles),
and the noise level in homogeneous tissue (liver, muscle) is 0.8–1.25× the true native's.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mfm_engine.demo import demo_checkpoint
from mfm_engine.phantom import LABELS, make_phantom_pair
from mfm_engine.texture import noise_sigma_hu, periodic_peak_ratio
from mfm_engine.translate import Translator

SHIPPED = demo_checkpoint()
SEEDS = (900, 901, 902, 903)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(SHIPPED is None, reason="assets/ does not ship the demo model"),
]


@pytest.fixture(scope="module")
def translated():
    translator = Translator.from_checkpoint(SHIPPED, device="cpu")
    out = []
    for seed in SEEDS:
        pair = make_phantom_pair(seed, motion_mm=0.0, n_slices=12, size=512)
        synthetic = translator.translate_array(pair.contrast.hu, direction="c2n", solver="euler", steps=1)
        out.append((pair, synthetic.hu))
    return translator, out


def test_no_patch_grid_in_the_synthetic(translated) -> None:
    translator, cases = translated
    patch = int(translator.model.mfm_config.get("patch_size", 1))
    if patch == 1:
        pytest.skip("the model has no patch stem")
    residuals, masks = [], []
    for pair, synthetic in cases:
        labels = np.asarray(pair.labels.hu)
        body = ~np.isin(labels, [0, LABELS.get("table", 1), LABELS.get("padding", -1)])
        residuals.append(synthetic - pair.native.hu)
        masks.append(ndimage.binary_erosion(body, structure=np.ones((1, 5, 5), bool)))
    ratio = periodic_peak_ratio(np.concatenate(residuals), patch, mask=np.concatenate(masks), tile=64)
    assert ratio <= 1.5


@pytest.mark.xfail(
    strict=True,
    reason="known, issue 14 open: the gain/offset head (v = a·x_t + b) cancels the input's noise where it "
    "removes iodine (a ≈ 1), so liver comes out at ~0.2× and muscle at ~0.7× the native's noise "
    "(docs/demo-model-eval.md)",
)
@pytest.mark.parametrize("tissue", ["liver", "muscle"])
def test_noise_level_of_homogeneous_tissue_is_the_real_natives(translated, tissue: str) -> None:
    _, cases = translated
    ratios = []
    for pair, synthetic in cases:
        region = np.asarray(pair.labels.hu) == LABELS[tissue]
        region = ndimage.binary_erosion(region, structure=np.ones((1, 5, 5), bool))
        if region.sum() < 2000:
            continue
        ratios.append(noise_sigma_hu_3d(synthetic, region) / noise_sigma_hu_3d(pair.native.hu, region))
    assert ratios, f"no {tissue} region large enough"
    assert 0.8 <= float(np.median(ratios)) <= 1.25, ratios


def noise_sigma_hu_3d(volume: np.ndarray, mask: np.ndarray) -> float:
    """Noise σ pooled over slices (each slice measured in-plane)."""
    sigmas = [noise_sigma_hu(volume[k], mask[k]) for k in range(volume.shape[0]) if mask[k].sum() > 200]
    return float(np.median(sigmas))
