"""What the scanner and the examination vary per patient: field of view, scan circle and its padding,
reconstruction-kernel noise, contrast timing, and the share of patients without iodine.

``acquisition="varied"`` (the default) draws these per seed from their own random stream, so the
anatomy of a seed is the same in both modes; ``acquisition="classic"`` is the earlier phantom (field
of view fitted to the body, 0.70–0.80 mm pixels, no scan circle, binomial noise of 8–12 HU, late
arterial timing, no arms, no identity patients). Figures and their sources: docs/phantom.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft

ACQUISITIONS = ("varied", "classic")
#: Values scanners store outside the reconstruction circle (DICOM Pixel Padding Value, 0028,0120).
PADDING_VALUES_HU = (-1024.0, -2000.0, -3024.0)
#: In-plane pixel spacing drawn for the 512² matrix (mm); the field of view is 512 × this.
PIXEL_MM_RANGE = (0.6, 1.0)
#: Noise standard deviation (HU) in homogeneous tissue, drawn log-uniformly.
NOISE_SIGMA_RANGE = (5.0, 25.0)
#: Frequency (cycles/mm) at which the noise power spectrum peaks: soft to standard body kernels, and
#: iterative reconstruction, which moves noise to lower frequencies (sharp bone kernels are not drawn).
NPS_PEAK_RANGE = (0.12, 0.30)
#: Default share of patients whose "contrast" series holds no iodine at all.
IDENTITY_SHARE = 0.1
#: Share of patients scanned with the arms down beside the body (the rest: arms up, out of the field).
ARMS_DOWN_SHARE = 0.3
# Low-frequency floor of the noise power spectrum, relative to its peak (FBP spectra fall towards
# zero at zero frequency but never reach it in practice).
_NPS_FLOOR = 0.05


@dataclass(frozen=True)
class Acquisition:
    """One patient's scan: geometry of the field, padding, noise, timing and whether iodine was given."""

    mode: str
    fov_mm: float  # side of the square reconstructed field (matrix × pixel spacing)
    centre_mm: tuple[float, float]  # patient (x, y) at the image centre
    scan_radius_mm: float | None  # reconstruction circle; None: the whole square is image
    padding_hu: float | None  # stored outside the circle
    noise_sigma: float  # HU
    nps_peak_per_mm: float | None  # None: the classic binomial-smoothed noise
    timing: float  # 0 early arterial … 0.5 late arterial … 1 portal venous
    identity: bool  # the "contrast" series has no iodine
    arms: bool  # arms down beside the body

    @property
    def phase_name(self) -> str:
        """The contrast series' phase in words."""
        if self.identity:
            return "unenhanced (no iodine)"
        if self.timing < 0.3:
            return "early arterial"
        if self.timing < 0.7:
            return "late arterial"
        return "portal venous"


def draw_acquisition(
    seed: int,
    *,
    mode: str,
    classic_fov: float,
    classic_sigma: float,
    body_radius_mm: float,
    arms_radius_mm: float,
    identity_share: float,
    timing: float | None,
) -> Acquisition:
    """The patient's acquisition, deterministic in the seed (own stream: the anatomy is unchanged).

    ``body_radius_mm``: the farthest skin point from the image origin (x = y = 0), so the body fits
    inside the scan circle whatever the pixel spacing; ``arms_radius_mm``: the same for the arms,
    used when they are down (as far as 1 mm pixels allow).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    # Always draw every value in the same order, so options never shift another value.
    u_px = rng.uniform()
    u_off_r, u_off_a = rng.uniform(), rng.uniform(0, 2 * np.pi)
    pad = float(PADDING_VALUES_HU[int(rng.integers(len(PADDING_VALUES_HU)))])
    sigma = float(np.exp(rng.uniform(np.log(NOISE_SIGMA_RANGE[0]), np.log(NOISE_SIGMA_RANGE[1]))))
    peak = float(rng.uniform(*NPS_PEAK_RANGE))
    tau = float(rng.uniform())
    identity = bool(rng.uniform() < identity_share)
    arms = bool(rng.uniform() < ARMS_DOWN_SHARE)
    if timing is not None:
        tau = float(timing)
    if mode == "classic":
        tau = 0.5 if timing is None else tau
        return Acquisition(
            "classic", classic_fov, (0.0, 0.0), None, None, classic_sigma, None, tau, identity, False
        )
    margin = 10.0
    lo, hi = PIXEL_MM_RANGE
    px_min = max(lo, 2 * (body_radius_mm + margin) / 512)
    if arms:
        px_min = min(max(px_min, 2 * arms_radius_mm / 512), hi)
    # Technologists fit the field of view to the patient, with some room to spare: most fields are
    # close to the smallest that holds the body.
    px = px_min + u_px**2 * max(hi - px_min, 0.0)
    # Protocols set the display field of view in whole mm.
    fov = float(min(max(round(px * 512), math.ceil(px_min * 512)), math.floor(hi * 512)))
    slack = max(fov / 2 - body_radius_mm - margin, 0.0)
    off = min(slack, 8.0) * u_off_r
    centre = (off * math.cos(u_off_a), off * math.sin(u_off_a))
    return Acquisition("varied", fov, centre, fov / 2, pad, sigma, peak, tau, identity, arms)


def kernel_filter(shape: tuple[int, int], px_mm: float, peak_per_mm: float) -> np.ndarray:
    """rfft2-layout amplitude filter giving unit-variance noise with a CT-like power spectrum.

    NPS(f) ∝ f·exp(−f²/f0²) + floor (the ramp of filtered back-projection times a smooth
    apodisation window), with f0 = √2·peak so that it peaks at ``peak_per_mm`` cycles/mm.
    """
    h, w = shape
    fy = np.fft.fftfreq(h, d=px_mm)
    f0 = math.sqrt(2.0) * peak_per_mm
    peak_value = peak_per_mm * math.exp(-0.5)

    def nps(f: np.ndarray) -> np.ndarray:
        return f * np.exp(-((f / f0) ** 2)) + _NPS_FLOOR * peak_value

    full = nps(np.hypot(fy[:, None], np.fft.fftfreq(w, d=px_mm)[None, :]))
    half = nps(np.hypot(fy[:, None], np.fft.rfftfreq(w, d=px_mm)[None, :]))
    # White unit noise through a real, even filter H has variance mean(H²) over the full grid.
    return np.sqrt(half / full.mean()).astype(np.float32)


def kernel_noise(
    rng: np.random.Generator, amp: np.ndarray, shape: tuple[int, int], sigma: float
) -> np.ndarray:
    """One slice of noise with standard deviation ``sigma`` shaped by ``amp`` (from `kernel_filter`)."""
    white = rng.standard_normal(shape, dtype=np.float32)
    spec = scipy.fft.rfft2(white, workers=1)
    spec *= amp
    out = scipy.fft.irfft2(spec, s=shape, workers=1)
    out *= np.float32(sigma)
    return out.astype(np.float32, copy=False)
