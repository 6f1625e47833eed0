"""The varied phantom's scanner and examination: pixel spacing and field of view, scan circle and
padding, reconstruction-kernel noise, cortical bone, contrast timing and identity patients; and the
classic phantom, still reachable voxel for voxel.

References are independent of the generator where one exists: numpy FFT power spectra and
correlations, scipy.ndimage erosion, the geometry recomputed from the Volume's spacing and origin.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from scipy import ndimage

from mfm_engine.phantom import LABELS, make_phantom_pair, phantom_slice_count
from mfm_engine.phantom.anatomy import Anatomy
from mfm_engine.phantom.scanner import (
    NOISE_SIGMA_RANGE,
    NPS_PEAK_RANGE,
    PADDING_VALUES_HU,
    PIXEL_MM_RANGE,
    kernel_filter,
    kernel_noise,
)

_INPLANE = np.zeros((3, 3, 3), dtype=bool)
_INPLANE[1] = ndimage.generate_binary_structure(2, 1)
_SEEDS = range(1000, 1200)


def _eroded(mask: np.ndarray, iterations: int = 2) -> np.ndarray:
    return ndimage.binary_erosion(mask, structure=_INPLANE, iterations=iterations)


@pytest.fixture(scope="module")
def draws() -> list:
    """The acquisitions of 200 patients (cheap: nothing is rendered)."""
    return [Anatomy(s).acq for s in _SEEDS]


def _first(draws: list, pred) -> int:
    return next(s for s, a in zip(_SEEDS, draws, strict=True) if pred(a))


# ---------------------------------------------------------------------------------------------
# ranges over many seeds
# ---------------------------------------------------------------------------------------------
def test_acquisition_ranges_over_many_seeds(draws: list) -> None:
    px = np.array([a.fov_mm / 512 for a in draws])
    lo, hi = PIXEL_MM_RANGE
    assert px.min() >= lo - 1e-9 and px.max() <= hi + 1e-9
    assert px.min() < 0.65 and px.max() > 0.95  # the whole range is used
    assert {a.padding_hu for a in draws} == set(PADDING_VALUES_HU)
    sigma = np.array([a.noise_sigma for a in draws])
    assert sigma.min() >= NOISE_SIGMA_RANGE[0] and sigma.max() <= NOISE_SIGMA_RANGE[1]
    assert sigma.min() < 6 and sigma.max() > 20
    peaks = np.array([a.nps_peak_per_mm for a in draws])
    assert peaks.min() >= NPS_PEAK_RANGE[0] and peaks.max() <= NPS_PEAK_RANGE[1]
    tau = np.array([a.timing for a in draws])
    assert tau.min() < 0.1 and tau.max() > 0.9 and 0 <= tau.min() and tau.max() <= 1
    phases = {a.phase_name for a in draws}
    assert {"early arterial", "late arterial", "portal venous", "unenhanced (no iodine)"} <= phases
    # About 10 % identity patients and 30 % arms down (binomial, 200 draws: wide bounds).
    assert 0.04 <= np.mean([a.identity for a in draws]) <= 0.18
    assert 0.18 <= np.mean([a.arms for a in draws]) <= 0.42
    # The option sets the identity share; 0 gives none.
    assert not any(Anatomy(s, identity_share=0.0).acq.identity for s in range(1000, 1040))
    assert all(Anatomy(s, identity_share=1.0).acq.identity for s in range(1000, 1010))


@pytest.mark.parametrize("size", [512, 128])
def test_volume_spacing_is_the_patients_pixel_spacing(draws: list, size: int) -> None:
    for seed in (1000, _first(draws, lambda a: a.fov_mm / 512 < 0.7), _first(draws, lambda a: a.arms)):
        pair = make_phantom_pair(seed, n_slices=1, size=size, noise_hu=0)
        fov = Anatomy(seed).acq.fov_mm
        for vol in (pair.native, pair.contrast, pair.labels):
            assert vol.spacing[0] == vol.spacing[1] == pytest.approx(fov / size)
        params = pair.native.meta["phantom_params"]
        assert params["pixel_mm"] == pytest.approx(fov / size) and params["fov_mm"] == fov
        # The anatomy keeps its physical size: the trunk is as wide in mm whatever the pixel size.
        assert phantom_slice_count(seed) == Anatomy(seed, acquisition="classic").n_slices


def test_physical_anatomy_does_not_depend_on_the_pixel_spacing(draws: list) -> None:
    """Same anatomy in mm: the liver area of a slice matches between the classic and varied fields."""
    seed = _first(draws, lambda a: abs(a.fov_mm / 512 - 0.75) > 0.12 and not a.arms)
    areas = []
    for mode in ("varied", "classic"):
        pair = make_phantom_pair(seed, n_slices=1, noise_hu=0, motion_mm=0, acquisition=mode)
        areas.append(pair.label_mask("liver").sum() * pair.native.spacing[0] ** 2)
    assert pair.native.spacing[0] != make_phantom_pair(seed, n_slices=1, noise_hu=0).native.spacing[0]
    assert areas[0] == pytest.approx(areas[1], rel=0.03)


# ---------------------------------------------------------------------------------------------
# scan circle and padding
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pad", PADDING_VALUES_HU)
def test_padding_outside_the_scan_circle_is_identical_in_both_phases(draws: list, pad: float) -> None:
    seed = _first(draws, lambda a: a.padding_hu == pad)
    pair = make_phantom_pair(seed, n_slices=2, size=128, motion_mm=3.0)
    vol = pair.native
    params = vol.meta["phantom_params"]
    assert params["padding_hu"] == pad and params["padding_label"] == LABELS["padding"]
    # The circle recomputed from the Volume's geometry: pixel centres farther than the radius from
    # the image centre.
    n = vol.shape[1]
    idx = np.arange(n)
    x = vol.origin[0] + idx * vol.spacing[0]
    y = vol.origin[1] + idx * vol.spacing[1]
    cx, cy = x.mean(), y.mean()
    outside = np.hypot(x[None, :] - cx, y[:, None] - cy) > params["scan_radius_mm"] + 1e-6
    assert params["scan_radius_mm"] == pytest.approx(n * vol.spacing[0] / 2)
    assert 0.2 < outside.mean() < 0.23  # 1 − π/4 of the square
    for k in range(vol.shape[0]):
        np.testing.assert_array_equal(pair.native.hu[k][outside], pad)
        np.testing.assert_array_equal(pair.contrast.hu[k][outside], pad)
        np.testing.assert_array_equal(pair.padding_mask[k], outside)
        assert (pair.contrast_labels[k][outside] == LABELS["padding"]).all()
        # Inside the circle every value is a stored CT value (no padding).
        assert pair.native.hu[k][~outside].min() >= -1024 and pair.contrast.hu[k][~outside].min() >= -1024


def test_a_table_under_the_body_and_arms_beside_it_when_down(draws: list) -> None:
    seed = _first(draws, lambda a: a.arms)
    pair = make_phantom_pair(seed, n_slices=1, noise_hu=0, motion_mm=0)
    lab = pair.labels.hu[0]
    body = (lab >= LABELS["skin"]) & (lab != LABELS["padding"])
    parts, n_parts = ndimage.label(body)
    sizes = ndimage.sum(body, parts, range(1, n_parts + 1))
    big = np.argsort(sizes)[::-1][:3] + 1
    assert n_parts >= 3 and sizes[big[2] - 1] > 0.03 * sizes[big[0] - 1]  # trunk + two arms
    trunk_cols = np.nonzero((parts == big[0]).any(axis=0))[0]
    for arm in big[1:]:
        cols = np.nonzero((parts == arm).any(axis=0))[0]
        assert cols.max() < trunk_cols.min() or cols.min() > trunk_cols.max()  # beside, not inside
        assert (lab[parts == arm] == LABELS["bone_cortical"]).any()  # a humerus in each
    table = lab == LABELS["table"]
    for col in range(0, lab.shape[1], 8):  # the table lies under the body and the arms
        if table[:, col].any() and body[:, col].any():
            assert np.nonzero(table[:, col])[0].min() > np.nonzero(body[:, col])[0].max()
    no_arms = make_phantom_pair(_first(draws, lambda a: not a.arms), n_slices=1, size=128, noise_hu=0)
    lab = no_arms.labels.hu[0]
    assert ndimage.label((lab >= LABELS["skin"]) & (lab != LABELS["padding"]))[1] == 1


# ---------------------------------------------------------------------------------------------
# noise
# ---------------------------------------------------------------------------------------------
def _radial_nps(field: np.ndarray, px: float) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum (numpy FFT) of a 2-D field: (frequency per mm, power)."""
    power = np.abs(np.fft.fft2(field)) ** 2
    f = np.hypot(
        *np.meshgrid(np.fft.fftfreq(field.shape[0], px), np.fft.fftfreq(field.shape[1], px), indexing="ij")
    )
    edges = np.linspace(0, f.max(), 60)
    which = np.digitize(f.ravel(), edges)
    mean = np.bincount(which, power.ravel(), minlength=len(edges) + 1) / np.maximum(
        np.bincount(which, minlength=len(edges) + 1), 1
    )
    centres = np.concatenate([[0], (edges[:-1] + edges[1:]) / 2, [f.max()]])
    keep = np.bincount(which, minlength=len(edges) + 1) > 0
    return centres[keep], mean[keep]


@pytest.mark.parametrize("peak", [0.2, 0.35])
def test_kernel_noise_has_the_requested_sigma_and_a_ct_like_spectrum(peak: float) -> None:
    px, shape, sigma = 0.8, (256, 256), 15.0
    amp = kernel_filter(shape, px, peak)
    rng = np.random.default_rng(0)
    fields = np.stack([kernel_noise(rng, amp, shape, sigma) for _ in range(8)])
    assert float(fields.std()) == pytest.approx(sigma, rel=0.03)
    f, nps = _radial_nps(fields[0], px)
    for fld in fields[1:]:
        nps = nps + _radial_nps(fld, px)[1]
    # Not white: the spectrum is low near zero frequency and peaks where the kernel was asked to.
    f_peak = f[np.argmax(nps)]
    assert f_peak == pytest.approx(peak, rel=0.25)
    assert nps[f < 0.03].mean() < 0.3 * nps.max()
    assert nps[f > 0.6].mean() < 0.5 * nps.max()  # apodisation rolls off the high frequencies


def test_phantom_noise_matches_sigma_is_correlated_and_independent_per_phase(draws: list) -> None:
    for seed in (_first(draws, lambda a: a.noise_sigma < 8), _first(draws, lambda a: a.noise_sigma > 18)):
        noisy = make_phantom_pair(seed, motion_mm=0, n_slices=3)
        clean = make_phantom_pair(seed, motion_mm=0, n_slices=3, noise_hu=0)
        sigma = noisy.native.meta["phantom_params"]["noise_hu"]
        assert sigma == pytest.approx(Anatomy(seed).acq.noise_sigma)
        soft = _eroded(
            np.isin(noisy.labels.hu, [LABELS[t] for t in ("liver", "muscle", "fat_subcutaneous", "spleen")]),
            3,
        )
        assert soft.sum() > 20000
        n_native = (noisy.native.hu - clean.native.hu)[soft]
        n_contrast = (noisy.contrast.hu - clean.contrast.hu)[soft]
        # Whole-HU rounding of both images adds ~0.4 HU in quadrature.
        assert float(n_native.std()) == pytest.approx(sigma, rel=0.08, abs=0.5)
        assert float(n_contrast.std()) == pytest.approx(sigma, rel=0.08, abs=0.5)
        assert abs(np.corrcoef(n_native, n_contrast)[0, 1]) < 0.05  # two acquisitions
        # Neighbouring pixels correlate (kernel-shaped, not white noise).
        field = noisy.native.hu - clean.native.hu
        pairs = soft[:, :, :-1] & soft[:, :, 1:]
        r1 = np.corrcoef(field[:, :, :-1][pairs], field[:, :, 1:][pairs])[0, 1]
        assert r1 > 0.15
        # No noise outside the scan circle.
        np.testing.assert_array_equal(
            noisy.native.hu[noisy.padding_mask], clean.native.hu[clean.padding_mask]
        )


# ---------------------------------------------------------------------------------------------
# bone, identity patients, timing
# ---------------------------------------------------------------------------------------------
def test_cortical_bone_reaches_about_1500_hu(draws: list) -> None:
    seed = _first(draws, lambda a: a.arms)
    pair = make_phantom_pair(seed, n_slices=2, noise_hu=0, motion_mm=0)
    cortical, _ = pair.hu_table["bone_cortical"]
    assert 1200 <= cortical <= 1700
    cortex = pair.label_mask("bone_cortical")
    # The humeral shaft's cortex (3–4.5 mm) holds whole pixels at the full value.
    assert float(pair.native.hu[cortex].max()) >= min(1400.0, cortical - 5)
    cancellous = _eroded(pair.label_mask("bone_cancellous"), 1)
    assert float(pair.native.hu[cancellous].mean()) < cortical - 800  # lower cancellous
    np.testing.assert_array_equal(pair.contrast.hu[cortex], pair.native.hu[cortex])  # no iodine in bone
    hu = [Anatomy(s).hu["bone_cortical"][0] for s in range(1000, 1030)]
    assert min(hu) >= 1200 and max(hu) <= 1700 and max(hu) - min(hu) > 150


def test_identity_patients_have_contrast_equal_to_native_up_to_noise(draws: list) -> None:
    seed = _first(draws, lambda a: a.identity)
    clean = make_phantom_pair(seed, n_slices=3, noise_hu=0, motion_mm=0)
    assert clean.native.meta["phantom_params"]["identity"] is True
    assert clean.native.meta["phantom_params"]["contrast_phase"] == "unenhanced (no iodine)"
    np.testing.assert_array_equal(clean.contrast.hu, clean.native.hu)
    assert all(n == a for n, a in clean.hu_table.values())
    noisy = make_phantom_pair(seed, n_slices=3, motion_mm=0)
    sigma = noisy.native.meta["phantom_params"]["noise_hu"]
    inside = ~noisy.padding_mask & (clean.native.hu > -900) & (clean.native.hu < 1000)
    diff = (noisy.contrast.hu - noisy.native.hu)[inside]
    assert abs(float(diff.mean())) < 0.5
    assert float(diff.std()) == pytest.approx(np.sqrt(2) * sigma, rel=0.08, abs=0.7)  # two noise draws
    # Forced on or off by the option.
    assert (
        make_phantom_pair(seed, n_slices=1, size=64, identity_share=0.0).native.meta["phantom_params"][
            "identity"
        ]
        is False
    )


def _organ_means(pair, names: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    out = {}
    for name in names:
        mask = _eroded(pair.label_mask(name), 1)
        assert mask.sum() >= 20, name
        out[name] = (float(pair.native.hu[mask].mean()), float(pair.contrast.hu[mask].mean()))
    return out


def test_enhancement_follows_the_timing_from_early_arterial_to_portal_venous() -> None:
    names = ("aorta", "portal_vein", "liver", "spleen", "kidney_cortex", "kidney_medulla")
    for seed in (1000, 1003):
        enh = {}
        for tau in (0.0, 0.5, 1.0):
            pair = make_phantom_pair(seed, n_slices=6, size=256, noise_hu=0, motion_mm=0, timing=tau,
                                     identity_share=0.0)  # fmt: skip
            assert pair.native.meta["phantom_params"]["timing"] == tau
            enh[tau] = {k: a - n for k, (n, a) in _organ_means(pair, names).items()}
        early, late, portal = enh[0.0], enh[0.5], enh[1.0]
        # Arterial phases: the aorta far brighter than the portal vein.
        assert early["aorta"] > early["portal_vein"] + 150
        assert late["aorta"] > late["portal_vein"] + 100
        # Portal venous: the portal vein catches up with (passes) the aorta; the liver enhances most.
        assert portal["portal_vein"] > portal["aorta"] - 30
        assert portal["liver"] > early["liver"] + 30 and portal["liver"] >= 40
        assert early["liver"] < 15
        # Corticomedullary difference in the arterial phases, closing towards the nephrographic phase.
        assert early["kidney_cortex"] - early["kidney_medulla"] > 80
        assert portal["kidney_cortex"] - portal["kidney_medulla"] < 60
        # Every enhancement is positive (iodine only adds attenuation).
        assert min(min(e.values()) for e in enh.values()) > -3


def test_spleen_arciform_in_the_arterial_phase_homogeneous_in_the_portal_phase() -> None:
    stds = {}
    for tau in (0.2, 1.0):
        pair = make_phantom_pair(1000, n_slices=6, size=256, noise_hu=0, motion_mm=0, timing=tau,
                                 identity_share=0.0)  # fmt: skip
        mask = _eroded(pair.label_mask("spleen"), 2)
        stds[tau] = float(pair.contrast.hu[mask].std())
    assert stds[0.2] > 8 and stds[1.0] < 0.5 * stds[0.2]


def test_drawn_timing_orders_the_enhancement_over_many_seeds() -> None:
    """With each patient's own timing: aorta ≫ portal vein in arterial patients, liver up in portal ones."""
    early, portal = [], []
    for seed in range(1000, 1080):
        an = Anatomy(seed)
        if an.acq.identity:
            assert all(n == a for n, a in an.hu.values())
            continue
        e = {k: a - n for k, (n, a) in an.hu.items()}
        (early if an.acq.timing < 0.3 else portal if an.acq.timing > 0.7 else []).append(e)
    assert len(early) > 10 and len(portal) > 10
    assert all(e["aorta"] > e["portal_vein"] + 150 for e in early)
    assert np.mean([e["liver"] for e in portal]) > np.mean([e["liver"] for e in early]) + 30


# ---------------------------------------------------------------------------------------------
# the classic phantom is still there
# ---------------------------------------------------------------------------------------------
def test_classic_acquisition_reproduces_the_earlier_phantom_voxel_for_voxel() -> None:
    # Digest of make_phantom_pair(3, n_slices=3, size=96) computed with the code before the varied
    # phantom (commit 57be95f): native, contrast and label bytes.
    pair = make_phantom_pair(3, n_slices=3, size=96, acquisition="classic")
    digest = hashlib.sha256(pair.native.hu.tobytes() + pair.contrast.hu.tobytes() + pair.labels.hu.tobytes())
    assert digest.hexdigest() == "1376c9dd32f64afa9901102c7330b4baa4bebee3310ded6bd05061541e212abb"
    assert pair.native.origin == pytest.approx((-187.90504633428228, -187.90504633428228, -238.5))
    params = pair.native.meta["phantom_params"]
    assert params["padding_hu"] is None and not pair.padding_mask.any()
    assert params["contrast_phase"] == "late arterial" and params["identity"] is False
