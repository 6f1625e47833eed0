"""Image-quality metrics in HU — MAE, SSIM, PSNR — on slices and volumes, optionally in a body mask.

Conventions (the paper's): both images are clipped to [HU_MIN, HU_MAX] first and PSNR/SSIM use
a data range of HU_RANGE (2000 HU). SSIM follows scikit-image's defaults (7×7 uniform window,
K1 = 0.01, K2 = 0.03, sample covariance) so that it can be checked against
``skimage.metrics.structural_similarity``; a volume's SSIM is the mean over its axial slices,
since the model works slice by slice.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mfm_engine.intensity import HU_MAX, HU_MIN, HU_RANGE
from mfm_engine.volume import Volume

SSIM_WINDOW = 7
_K1, _K2 = 0.01, 0.03
BODY_THRESHOLD_HU = -500.0


def _array(x) -> np.ndarray:
    return x.hu if isinstance(x, Volume) else np.asarray(x)


def _clipped_pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = _array(a), _array(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return (
        np.clip(a, HU_MIN, HU_MAX).astype(np.float64),
        np.clip(b, HU_MIN, HU_MAX).astype(np.float64),
    )


def _mask(mask, shape) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(_array(mask), dtype=bool)
    if m.shape != shape:
        raise ValueError(f"mask shape {m.shape} does not match image shape {shape}")
    if not m.any():
        raise ValueError("the mask is empty: no voxel to measure")
    return m


def mae_hu(a, b, mask=None) -> float:
    """Mean absolute error in HU (after clipping to the model's HU range)."""
    a, b = _clipped_pair(a, b)
    err = np.abs(a - b)
    m = _mask(mask, a.shape)
    return float(err[m].mean() if m is not None else err.mean())


def psnr(a, b, mask=None) -> float:
    """PSNR in dB with a data range of 2000 HU; ``inf`` for identical images."""
    a, b = _clipped_pair(a, b)
    sq = (a - b) ** 2
    m = _mask(mask, a.shape)
    mse = float(sq[m].mean() if m is not None else sq.mean())
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(HU_RANGE**2 / mse))


def ssim_map(a2d: np.ndarray, b2d: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM of two clipped 2-D HU images (scikit-image's formulation)."""
    win = SSIM_WINDOW
    npix = win * win
    cov_norm = npix / (npix - 1)  # sample covariance, as scikit-image does by default
    ux = ndimage.uniform_filter(a2d, win)
    uy = ndimage.uniform_filter(b2d, win)
    uxx = ndimage.uniform_filter(a2d * a2d, win)
    uyy = ndimage.uniform_filter(b2d * b2d, win)
    uxy = ndimage.uniform_filter(a2d * b2d, win)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = (_K1 * HU_RANGE) ** 2
    c2 = (_K2 * HU_RANGE) ** 2
    num = (2 * ux * uy + c1) * (2 * vxy + c2)
    den = (ux * ux + uy * uy + c1) * (vx + vy + c2)
    return num / den


def _ssim_2d(a2d: np.ndarray, b2d: np.ndarray, m2d: np.ndarray | None) -> float | None:
    smap = ssim_map(a2d, b2d)
    pad = (SSIM_WINDOW - 1) // 2
    # Border pixels see the filter's reflected padding; scikit-image leaves them out of the mean.
    valid = np.zeros(smap.shape, dtype=bool)
    valid[pad : smap.shape[0] - pad, pad : smap.shape[1] - pad] = True
    if m2d is not None:
        valid &= m2d
    if not valid.any():
        return None
    return float(smap[valid].mean())


def ssim(a, b, mask=None) -> float:
    """SSIM (data range 2000 HU); for 3-D input the mean of the axial slices' SSIM.

    With a mask, the SSIM map is averaged inside the mask (slices where the mask is empty
    are left out).
    """
    a, b = _clipped_pair(a, b)
    m = _mask(mask, a.shape)
    if a.ndim == 2:
        value = _ssim_2d(a, b, m)
        if value is None:
            raise ValueError("the mask leaves no pixel away from the image border")
        return value
    if a.ndim != 3:
        raise ValueError(f"SSIM needs a 2-D slice or a 3-D (z, y, x) volume, got {a.ndim}-D")
    values = [
        v
        for k in range(a.shape[0])
        if (v := _ssim_2d(a[k], b[k], None if m is None else m[k])) is not None
    ]
    if not values:
        raise ValueError("the mask leaves no pixel away from the image borders")
    return float(np.mean(values))


def compare(a, b, mask=None) -> dict[str, float]:
    """All three metrics of ``a`` against reference ``b``: {'mae_hu', 'ssim', 'psnr_db'}."""
    return {"mae_hu": mae_hu(a, b, mask), "ssim": ssim(a, b, mask), "psnr_db": psnr(a, b, mask)}


def body_mask(image, threshold_hu: float = BODY_THRESHOLD_HU) -> np.ndarray:
    """Boolean mask of the patient's body: tissue above −500 HU, largest 3-D component, holes filled.

    Bowel gas and lungs inside the body are filled slice by slice; the table and air outside are
    left out. Works on a Volume, a (z, y, x) array or a 2-D slice.
    """
    hu = _array(image)
    fg = hu > threshold_hu
    if not fg.any():
        return fg
    # Opening detaches thin structures (the table, blankets) from the body before picking the largest blob.
    structure = ndimage.generate_binary_structure(fg.ndim, 1)
    opened = ndimage.binary_opening(fg, structure, iterations=2)
    if opened.any():
        fg = opened
    labels, n = ndimage.label(fg)
    if n > 1:
        sizes = ndimage.sum_labels(fg, labels, index=np.arange(1, n + 1))
        fg = labels == (int(np.argmax(sizes)) + 1)
    if fg.ndim == 2:
        return ndimage.binary_fill_holes(fg)
    return np.stack([ndimage.binary_fill_holes(s) for s in fg])
