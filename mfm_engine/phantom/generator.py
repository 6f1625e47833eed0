"""`make_phantom_pair`: one seeded phantom patient as a native + arterial CT pair with labels.

The native series and the label map share one geometry. The arterial (contrast) series is a
second acquisition of the same anatomy seen through a small motion (rigid shift, breathing-like
expansion of the wall and a smooth deformation, plus a shift along z) of size ``motion_mm``;
``motion_mm=0`` gives a perfectly aligned pair whose label maps coincide. Each phase gets its own
CT-like noise (independent, slightly correlated between neighbouring pixels).

Every slice is a function of the seed and its index in the patient's full series only, so a slab
(``n_slices``, ``start_slice``) holds exactly the same voxels as the same slices of the full volume.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydicom.uid import generate_uid

from mfm_engine.errors import MFMError
from mfm_engine.phantom.anatomy import Anatomy
from mfm_engine.phantom.render import Canvas, SliceGrid
from mfm_engine.phantom.scanner import ACQUISITIONS, kernel_filter, kernel_noise
from mfm_engine.phantom.tissues import LABELS, LEGEND
from mfm_engine.volume import Volume

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
PHASES = ("native", "arterial")
HU_STORED_MIN, HU_STORED_MAX = -1024.0, 3071.0
# Level at which a default slab is centred: the renal hila, where most organs show.
SLAB_CENTRE_LEVEL = 13.7


class PhantomError(MFMError, ValueError):
    """A phantom option out of range (seed, motion, size, slices, noise)."""


@dataclass
class PhantomPair:
    """A phantom patient: native and arterial volumes, labels in the native's geometry, and the legend."""

    native: Volume
    contrast: Volume
    labels: Volume  # integer label values stored as float32, on the native's grid
    legend: dict[int, str]
    # Labels of the anatomy as the contrast series shows it (moved by the motion); equal to
    # labels.hu when motion_mm == 0.
    contrast_labels: np.ndarray = field(repr=False)
    # The HU (native, arterial) this patient was given per tissue name, before noise and texture.
    hu_table: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def padding_mask(self) -> np.ndarray:
        """Boolean (z, y, x) mask of the padding outside the scan circle (same in both series)."""
        return self.labels.hu == LABELS["padding"]

    def label_mask(self, name: str) -> np.ndarray:
        """Boolean (z, y, x) mask of one tissue in the native's geometry."""
        inverse = {v: k for k, v in self.legend.items()}
        if name not in inverse:
            raise KeyError(f"unknown tissue {name!r}; known: {', '.join(self.legend.values())}")
        return self.labels.hu == inverse[name]


def phantom_slice_count(seed: int) -> int:
    """Number of slices in a seed's full series (cheap: nothing is rendered; same in every mode)."""
    return Anatomy(_check_seed(seed), acquisition="classic").n_slices


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise PhantomError(f"phantom seed must be a non-negative integer, got {seed!r}")
    return int(seed)


class _Motion:
    """The displacement that carries the native anatomy to where the contrast series sees it."""

    def __init__(self, an: Anatomy, motion_mm: float) -> None:
        rng = np.random.default_rng(np.random.SeedSequence([an.seed, 3]))
        m = float(motion_mm)
        self.m = m
        alpha = rng.uniform(np.pi, 2 * np.pi)  # never into the table: a lateral or anterior shift
        self.rigid = (0.7 * m * math.cos(alpha), 0.7 * m * math.sin(alpha))
        self.dz = 0.5 * m * rng.uniform(-1, 1)
        self.expand_ant = 0.5 * m * rng.uniform(0.6, 1.0)
        self.expand_lat = 0.3 * m * rng.uniform(-1, 1)
        self.waves = []
        for _ in range(3):
            lam = rng.uniform(250, 400)
            th = rng.uniform(0, 2 * np.pi)
            self.waves.append(
                (
                    math.cos(th) / lam,
                    math.sin(th) / lam,
                    rng.uniform(-1, 1) / 300.0,
                    rng.uniform(0, 2 * np.pi),
                    rng.normal(0, 0.25 * m / math.sqrt(3)),
                    rng.normal(0, 0.25 * m / math.sqrt(3)),
                )
            )
        self.c = (an.cx, an.cy)
        self.ab = (an.a_m + an.t_sf, an.b_m + an.t_sf)

    def field(self, xs: np.ndarray, ys: np.ndarray, d: float) -> tuple[np.ndarray, np.ndarray]:
        """(ux, uy) in mm on the slice grid at depth d."""
        X = xs[None, :].astype(np.float32)
        Y = ys[:, None].astype(np.float32)
        cx, cy = self.c
        a, b = self.ab
        ux = self.rigid[0] + self.expand_lat * (X - cx) / a + np.zeros_like(Y)
        uy = self.rigid[1] - self.expand_ant * np.clip((cy - Y) / b, 0.0, 1.3) + np.zeros_like(X)
        for kx, ky, kz, psi, ax, ay in self.waves:
            # cos(p + q) = cos p cos q − sin p sin q keeps the trigonometry on 1-D arrays.
            p = np.float32(2 * np.pi * kx) * X
            q = np.float32(2 * np.pi * ky) * Y + np.float32(2 * np.pi * kz * d + psi)
            wave = np.cos(p) * np.cos(q) - np.sin(p) * np.sin(q)
            ux = ux + np.float32(ax) * wave
            uy = uy + np.float32(ay) * wave
        return ux.astype(np.float32), uy.astype(np.float32)


def _noise(seed: int, phase_id: int, k: int, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Correlated Gaussian noise of standard deviation ``sigma`` for one slice of one phase.

    White noise smoothed by the binomial kernel [1, 2, 1]/4 along rows and columns (a Gaussian of
    σ ≈ 0.7 px): neighbouring pixels correlate as in reconstructed CT.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 4, phase_id, k]))
    h, w = shape
    n = rng.standard_normal((h + 2, w + 2), dtype=np.float32)
    n = n[:, :-2] + 2 * n[:, 1:-1] + n[:, 2:]
    n = n[:-2] + 2 * n[1:-1] + n[2:]
    # Each [1, 2, 1] pass multiplies the std by sqrt(1 + 4 + 1) = sqrt(6).
    n *= np.float32(sigma / 6.0)
    return n


def _uid(*parts: object) -> str:
    return generate_uid(entropy_srcs=["mfm-phantom", *(str(p) for p in parts)])


def make_phantom_pair(
    seed: int,
    *,
    motion_mm: float = 3.0,
    n_slices: int | None = None,
    size: int = 512,
    noise_hu: float | None = None,
    start_slice: int | None = None,
    typical_hu: bool = False,
    workers: int | None = None,
    acquisition: str = "varied",
    identity_share: float | None = None,
    timing: float | None = None,
) -> PhantomPair:
    """Generate phantom patient ``seed``: native + arterial volumes (HU), label map and legend.

    ``motion_mm``: size of the motion between the phases (0 = perfectly aligned).
    ``n_slices``: a slab of that many consecutive slices of the patient's series (default: all,
    ~55–100 slices), centred on the renal hila unless ``start_slice`` (index in the full series,
    0 = most inferior) is given. ``size``: in-plane matrix (the field of view stays the patient's,
    so smaller sizes have coarser pixels). ``noise_hu``: noise σ (default: the patient's, 8–12 HU;
    0 = noise-free). ``typical_hu``: every tissue at its typical table value instead of a per-patient
    draw. ``workers``: threads rendering slices (default: up to 4).

    ``acquisition``: ``"varied"`` (default) draws per patient what scanners vary: pixel spacing
    0.6–1.0 mm at 512², a scan circle padded with −1024/−2000/−3024 (label ``padding``, identical in
    both series), kernel-shaped noise σ 5–25 HU, dense cortical bone, arms down in some patients and
    contrast timing from early arterial to portal venous; ``"classic"`` is the earlier phantom.
    ``identity_share``: share of patients whose contrast series has no iodine (default 0.1 in
    ``"varied"``, 0 in ``"classic"``). ``timing``: force the contrast timing (0 early arterial,
    0.5 late arterial, 1 portal venous) instead of the patient's draw.
    """
    seed = _check_seed(seed)
    if not (isinstance(motion_mm, (int, float)) and math.isfinite(motion_mm) and motion_mm >= 0):
        raise PhantomError(f"motion_mm must be a finite number ≥ 0, got {motion_mm!r}")
    if not isinstance(size, (int, np.integer)) or size < 32:
        raise PhantomError(f"size must be an integer ≥ 32, got {size!r}")
    if noise_hu is not None and not (math.isfinite(noise_hu) and noise_hu >= 0):
        raise PhantomError(f"noise_hu must be ≥ 0, got {noise_hu!r}")
    if acquisition not in ACQUISITIONS:
        raise PhantomError(f"acquisition must be one of {', '.join(ACQUISITIONS)}, got {acquisition!r}")
    if identity_share is not None and not (math.isfinite(identity_share) and 0 <= identity_share <= 1):
        raise PhantomError(f"identity_share must lie in [0, 1], got {identity_share!r}")
    if timing is not None and not (math.isfinite(timing) and 0 <= timing <= 1):
        raise PhantomError(f"timing must lie in [0, 1], got {timing!r}")

    an = Anatomy(
        seed, typical_hu=typical_hu, acquisition=acquisition, identity_share=identity_share, timing=timing
    )
    acq = an.acq
    total = an.n_slices
    if n_slices is None:
        n, start = total, 0
    else:
        if not isinstance(n_slices, (int, np.integer)) or n_slices < 1:
            raise PhantomError(f"n_slices must be a positive integer, got {n_slices!r}")
        n = min(int(n_slices), total)
        if start_slice is None:
            k_centre = total - 1 - int(round(an.dv(SLAB_CENTRE_LEVEL) / an.dz))
            start = int(np.clip(k_centre - n // 2, 0, total - n))
        else:
            start = int(start_slice)
    if not 0 <= start <= total - n:
        raise PhantomError(f"start_slice {start} with {n} slices is outside this patient's 0..{total - 1}")
    sigma = an.noise_sigma if noise_hu is None else float(noise_hu)

    size = int(size)
    px = an.fov / size
    offsets = (np.arange(size) - (size - 1) / 2.0) * px
    xs = acq.centre_mm[0] + offsets
    ys = acq.centre_mm[1] + offsets
    shape = (size, size)
    motion = _Motion(an, motion_mm) if motion_mm > 0 else None
    # Outside the reconstruction circle the scanner stores its padding value, in both series.
    outside = None
    if acq.scan_radius_mm is not None:
        outside = np.hypot(offsets[:, None], offsets[None, :]) > acq.scan_radius_mm
    amp = kernel_filter(shape, px, acq.nps_peak_per_mm) if acq.nps_peak_per_mm is not None else None

    def noise(phase_id: int, k: int) -> np.ndarray:
        if amp is None:
            return _noise(seed, phase_id, k, shape, sigma)
        rng = np.random.default_rng(np.random.SeedSequence([seed, 4, phase_id, k]))
        return kernel_noise(rng, amp, shape, sigma)

    native = np.empty((n, size, size), dtype=np.float32)
    contrast = np.empty_like(native)
    labels = np.empty((n, size, size), dtype=np.uint8)
    c_labels = np.empty_like(labels)

    def one(i: int) -> None:
        k = start + i  # index in the full series; k = 0 is the most inferior slice
        d = (total - 1 - k) * an.dz
        grid = SliceGrid(xs, ys, d, an.dz)
        if motion is None:
            canvas = Canvas(shape, PHASES)
            an.render(grid, canvas)
            native[i] = canvas.img["native"]
            contrast[i] = canvas.img["arterial"]
            labels[i] = canvas.lab
            c_labels[i] = canvas.lab
        else:
            canvas = Canvas(shape, ("native",))
            an.render(grid, canvas)
            native[i] = canvas.img["native"]
            labels[i] = canvas.lab
            moved = SliceGrid(xs, ys, d + motion.dz, an.dz, warp=motion.field(xs, ys, d))
            canvas = Canvas(shape, ("arterial",))
            an.render(moved, canvas)
            contrast[i] = canvas.img["arterial"]
            c_labels[i] = canvas.lab
        if sigma > 0:
            native[i] += noise(0, k)
            contrast[i] += noise(1, k)
        # Scanners store whole HU within the 12-bit CT range.
        for vol in (native, contrast):
            np.rint(vol[i], out=vol[i])
            np.clip(vol[i], HU_STORED_MIN, HU_STORED_MAX, out=vol[i])
            if outside is not None:
                vol[i][outside] = acq.padding_hu
        if outside is not None:
            labels[i][outside] = LABELS["padding"]
            c_labels[i][outside] = LABELS["padding"]

    n_workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    if n_workers <= 1 or n <= 2:
        for i in range(n):
            one(i)
    else:
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            list(pool.map(one, range(n)))

    # Geometry: identity direction (LPS), slice 0 most inferior, body centred in the field of view.
    z_first = an.z_top - (total - 1 - start) * an.dz
    geometry = dict(
        spacing=(px, px, an.dz), origin=(float(xs[0]), float(ys[0]), float(z_first)), direction=np.eye(3)
    )
    params = {
        "motion_mm": float(motion_mm),
        "noise_hu": sigma,
        "size": size,
        "start_slice": start,
        "n_slices": n,
        "full_slices": total,
        "typical_hu": bool(typical_hu),
        "acquisition": acq.mode,
        "pixel_mm": px,
        "fov_mm": an.fov,
        "scan_radius_mm": acq.scan_radius_mm,
        "padding_hu": acq.padding_hu,
        "padding_label": LABELS["padding"] if acq.padding_hu is not None else None,
        "noise_kernel": "binomial [1,2,1]" if acq.nps_peak_per_mm is None else "ramp × Gaussian apodisation",
        "nps_peak_per_mm": acq.nps_peak_per_mm,
        "timing": acq.timing,
        "contrast_phase": acq.phase_name,
        "identity": acq.identity,
        "arms": acq.arms,
    }
    hu_table = {name: (float(v[0]), float(v[1])) for name, v in an.hu.items()}
    study = {
        "StudyInstanceUID": _uid("study", seed),
        "StudyDate": "20000101",
        "StudyTime": "120000",
        "StudyID": f"PH{seed}"[:16],
        "AccessionNumber": "",
        "ReferringPhysicianName": "",
        "StudyDescription": "PHANTOM abdomen native + arterial (procedural, not a patient)",
    }
    patient = {
        "PatientName": f"PHANTOM^{seed}",
        "PatientID": f"PHANTOM-{seed}",
        "PatientBirthDate": "",
        "PatientSex": "O",
        "PatientComments": "Procedural phantom generated by MFM Studio; not a patient.",
    }
    key = (seed, size, float(motion_mm), sigma, start, n, bool(typical_hu))
    if acq.mode != "classic":  # classic keeps its earlier UIDs
        key += (acq.mode, acq.timing, acq.identity)

    def meta(kind: str, phase: str | None, description: str) -> dict[str, Any]:
        series_uid = _uid("series", kind, *key)
        for_uid = _uid(
            "frame-of-reference", seed, "arterial" if kind == "arterial" else "native", float(motion_mm)
        )
        m: dict[str, Any] = {
            "modality": "CT",
            "series_description": description,
            "phantom": True,
            "phantom_seed": seed,
            "phantom_params": dict(params),
            "phantom_hu": {k: list(v) for k, v in hu_table.items()},
            "dicom": {
                "patient": dict(patient),
                "study": dict(study),
                "series": {"BodyPartExamined": "ABDOMEN", "PatientPosition": "HFS"},
                "frame_of_reference_uid": for_uid,
                "series_instance_uid": series_uid,
                "sop_class_uid": CT_IMAGE_STORAGE,
                "sop_instance_uids": [_uid("sop", series_uid, start + i) for i in range(n)],
            },
        }
        if phase is not None:
            m["phase"] = phase
        return m

    native_vol = Volume(native, meta=meta("native", "native", f"PHANTOM native seed {seed}"), **geometry)
    contrast_vol = Volume(
        contrast, meta=meta("arterial", "arterial", f"PHANTOM arterial seed {seed}"), **geometry
    )
    label_meta = meta("labels", None, f"PHANTOM labels seed {seed}")
    label_meta["labels"] = True
    label_meta["legend"] = {str(k): v for k, v in LEGEND.items()}
    labels_vol = Volume(labels.astype(np.float32), meta=label_meta, **geometry)
    return PhantomPair(native_vol, contrast_vol, labels_vol, dict(LEGEND), c_labels, hu_table)
