"""One phantom patient: anatomy drawn from a seed, rendered one axial slice at a time.

Coordinates are patient millimetres in LPS (x → patient left, y → posterior), and a depth ``d``
in mm below the top slice of the scan (the physical z of a slice is ``z_top − d``). Levels along
the spine are written as continuous vertebra numbers ``v`` (T1 = 1 … T12 = 12, L1 = 13 … L5 = 17);
`Anatomy.dv` converts them to depth. Organs are placed by vertebral level as in an adult abdomen
(kidneys T12–L3, pancreas L1–L2, aortic bifurcation L4, posterior lung recesses to ~L1), with
every size, position and extent drawn per seed.

Shapes are star-shaped outlines (radius per angle, via a look-up table), ellipses and 3-D tubes
(vessels, bowel, ribs, pancreas); see `render`. Organs are clipped by the abdominal cavity and the
diaphragm domes, so they conform to the body wall and to each other the way real organs do.
"""

from __future__ import annotations

import math

import numpy as np

from mfm_engine.phantom import render as R
from mfm_engine.phantom.render import ANGLES, Box, Canvas, SliceGrid, Texture, Tube, frac
from mfm_engine.phantom.scanner import ACQUISITIONS, IDENTITY_SHARE, Acquisition, draw_acquisition
from mfm_engine.phantom.tissues import CORTICAL_VARIED, LABELS, apply_timing, sample_hu


def _smoothstep(x: float | np.ndarray) -> float | np.ndarray:
    t = np.clip(x, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _profile(d: float, start: float, full0: float, full1: float, end: float) -> float:
    """Cross-section scale along depth: elliptical rise start→full0, 1 until full1, elliptical fall to end."""
    if d <= start or d >= end:
        return 0.0
    if d < full0:
        q = (full0 - d) / (full0 - start)
        return math.sqrt(max(0.0, 1 - q * q))
    if d > full1:
        q = (d - full1) / (end - full1)
        return math.sqrt(max(0.0, 1 - q * q))
    return 1.0


class Anatomy:
    """The anatomy and HU table of one phantom patient (deterministic in the seed)."""

    def __init__(
        self,
        seed: int,
        *,
        typical_hu: bool = False,
        acquisition: str = "varied",
        identity_share: float | None = None,
        timing: float | None = None,
    ) -> None:
        if acquisition not in ACQUISITIONS:
            raise ValueError(f"acquisition must be one of {', '.join(ACQUISITIONS)}, got {acquisition!r}")
        self.seed = int(seed)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 1]))
        self.hu = sample_hu(np.random.default_rng(np.random.SeedSequence([self.seed, 2])), typical=typical_hu)
        trng = np.random.default_rng(np.random.SeedSequence([self.seed, 5]))
        u = rng.uniform

        # --- frame, scan range, slice spacing -------------------------------------------------
        self.s = s = u(0.88, 1.12)  # skeletal frame scale
        self.P = u(29.0, 34.0) * s  # vertebral period (body + disc), mm
        self.v_top = u(9.4, 10.4)  # vertebral level at the top slice
        n_levels = u(7.0, 8.3)
        length = n_levels * self.P
        options = [sz for sz in (2.5, 3.0, 3.75, 4.0, 5.0) if 55 <= length / sz <= 100]
        self.dz = float(rng.choice(options)) if options else 3.0
        self.n_slices = int(round(length / self.dz)) + 1
        self.length = (self.n_slices - 1) * self.dz
        self.v_bottom = self.v_top + self.length / self.P

        # --- body wall ----------------------------------------------------------------------
        self.a_m = u(118, 132) * s  # muscle-wall outer semi-axes (lean frame)
        self.b_m = self.a_m * u(0.66, 0.76)
        self.p_body = u(2.1, 2.6)
        self.harm = [(k, rng.normal(0, 0.012), u(0, 2 * np.pi)) for k in range(2, 6)]
        self.t_sf = float(np.exp(u(np.log(7.0), np.log(42.0))))  # subcutaneous fat, mm
        self.belly = u(0.0, 1.2) * self.t_sf
        # The body must fit a 0.8 mm × 512 field of view with a margin.
        while 2 * (self.a_m * 1.1 + self.t_sf * 1.3) + 30 > 0.8 * 512:
            self.t_sf *= 0.9
            self.belly *= 0.9
        self.t_lat = u(9, 15) * s
        self.t_rect = u(8, 12) * s
        self.skin = u(1.6, 2.4)
        self.fov = float(np.clip(max(u(360, 410), 2 * (self.a_m * 1.1 + self.t_sf * 1.3) + 30), 360, 409.6))
        self.cx = u(-8, 8)
        ant = self.b_m + self.t_sf * 1.2 + 0.5 * self.belly
        post = self.b_m + self.t_sf * 0.6
        self.cy = -(post - ant) / 2 + u(-6, 6)
        # Table top: the back rests on it, so the body is flattened there.
        post_min = min(
            float(self.r_body(np.array([np.pi / 2]), d)[0]) for d in np.linspace(0, self.length, 7)
        )
        self.y_table = self.cy + 0.95 * post_min
        self.table_curve = u(0.0001, 0.0003)

        # --- spine ---------------------------------------------------------------------------
        self.x_s0 = self.cx + u(-3, 3)
        self.scol = (u(0, 3.5), u(0, 2 * np.pi))
        self.vb_scale = u(0.95, 1.05)
        self.y_vb0 = self.y_table - 0.5 * self.t_sf - u(68, 80) * s
        self.vert_phase = u(0.0, 1.0)  # where inside a level the top slice lies
        self.canal = (u(9.5, 11.5) * s, u(7.5, 9.0) * s)
        self.spinous_len = u(26, 34) * s
        self.cancellous_tex = Texture(trng, n=20, nz=12, sigma=1.2)

        # --- diaphragm and lungs -----------------------------------------------------------
        v_dome_r = u(self.v_top - 0.5, self.v_top + 0.6)
        self.d_apex = {-1: self.dv(v_dome_r), 1: self.dv(v_dome_r + u(0.2, 0.7))}
        self.d_recess = self.dv(u(12.6, 13.3))
        self.dome_c = {side: (self.cx + side * 45 * s, self.cy - 20 * s) for side in (-1, 1)}
        r_far = math.hypot(self.a_m + 45 * s, self.b_m + 20 * s)
        self.dome_k = {side: max(self.d_recess - self.d_apex[side], 20.0) / r_far**2 for side in (-1, 1)}
        self.lung_tex = Texture(trng, n=24, nz=8, sigma=1.5)

        # --- liver, gallbladder ------------------------------------------------------------
        sl = u(0.9, 1.12)
        self.liver_r = dict(
            c=(self.cx - 70 * s + u(-6, 6), self.cy - 5 * s + u(-6, 6)),
            ab=(85 * s * sl, 82 * s * sl),
            egg=u(0.15, 0.28),
            theta=u(-0.2, 0.2),
            harm=[(k, rng.normal(0, 0.04), u(0, 2 * np.pi)) for k in (1, 2, 3)],
            d_mid=self.dv(u(12.2, 12.8)),
            d_tip=self.dv(u(14.6, 16.0)),
        )
        self.liver_l = dict(
            c=(self.cx + 10 * s + u(-8, 8), self.cy - 50 * s + u(-6, 6)),
            ab=(62 * s * u(0.8, 1.2), 30 * s * u(0.85, 1.15)),
            theta=u(-0.35, -0.1),
            d_end=self.dv(u(12.8, 13.6)),
        )
        self.liver_tex = Texture(trng, n=28, nz=12, sigma=1.4)
        self.gb = dict(
            c=(self.cx - 42 * s + u(-6, 6), self.cy - 38 * s + u(-6, 6)),
            ab=(17 * s * u(0.8, 1.2), 13 * s * u(0.8, 1.2)),
            theta=u(0.3, 0.9),
            dc=self.dv(u(13.0, 13.8)),
            h=u(30, 42) * s,
        )

        # --- spleen --------------------------------------------------------------------------
        phi_s = u(0.45, 0.8)  # posterolateral left (φ = 0: patient left, π/2: posterior)
        d_s0 = self.dv(u(10.8, 11.6))
        d_s1 = d_s0 + u(95, 125) * s
        rho_in = float(self.r_cavity(np.array([phi_s]), (d_s0 + d_s1) / 2)[0])
        rho_s = rho_in - u(18, 24) * s
        self.spleen = dict(
            c=(self.cx + rho_s * math.cos(phi_s), self.cy + rho_s * math.sin(phi_s)),
            ab=(u(45, 60) * s, u(18, 26) * s),
            theta=phi_s + np.pi / 2,
            hilum=phi_s + np.pi,
            d0=d_s0,
            d1=d_s1,
            band=u(10, 16),
            band_amp=u(15, 30),
        )
        self.spleen_tex = Texture(trng, n=20, nz=8, sigma=1.5)

        # --- kidneys -------------------------------------------------------------------------
        v_left = u(13.4, 14.0)
        self.kidneys = []
        for side, v_c in ((1, v_left), (-1, v_left + u(0.2, 0.6))):
            d_c = self.dv(v_c)
            a_vb, b_vb, x_s, y_vb = self.spine_at(d_c)
            tilt = u(0.4, 0.75)
            self.kidneys.append(
                dict(
                    side=side,
                    c=(x_s + side * (a_vb + u(38, 48) * s), y_vb + u(5, 18) * s),
                    ab=(u(28, 34) * s, u(20, 25) * s),
                    theta=-side * tilt,
                    hilum=math.atan2(-0.6, -side * 1.0),
                    dc=d_c,
                    h=u(50, 62) * s,
                    n_pyr=int(rng.integers(5, 8)),
                    psi=u(0, 2 * np.pi),
                )
            )

        # --- vessels -------------------------------------------------------------------------
        self.r_aorta = u(10, 13.5) * s
        self.aorta_dx = (u(14, 20) * s, u(5, 10) * s)  # left of the spine: at the top, at the bifurcation
        self.d_bif = self.dv(u(16.6, 17.3))
        self.r_ivc = u(10, 13) * s
        self.ivc_dx = u(20, 28) * s
        self.d_ivc_conf = self.dv(u(17.4, 17.9))
        self.tubes = self._build_tubes(rng)

        # --- bowel -------------------------------------------------------------------------
        self.gi_stomach, self.gi_colon, self.loops = self._build_bowel(rng)
        self.stool_tex = Texture(trng, n=32, nz=10, sigma=0.9)
        self.pancreas = self._build_pancreas(rng)
        self.pancreas_tex = Texture(trng, n=28, nz=8, sigma=1.0)
        self.ribs = self._build_ribs(rng)
        self.muscle_tex = Texture(trng, n=32, nz=8, sigma=1.5)

        # --- acquisition: table position and noise level (own stream: anatomy unchanged) -----
        xrng = np.random.default_rng(np.random.SeedSequence([self.seed, 6]))
        self.z_top = -float(round(xrng.uniform(50, 200), 1))
        width = 2 * (self.a_m + self.t_sf)
        # Bigger patients are noisier at the same dose.
        self.noise_sigma = float(np.clip(8 + 4 * (width - 260) / 120 + xrng.uniform(-1, 1), 8, 12))

        # --- scanner and examination (scanner.py; own streams: the anatomy above is unchanged) --
        if identity_share is None:
            identity_share = IDENTITY_SHARE if acquisition == "varied" and not typical_hu else 0.0
        if typical_hu and timing is None and acquisition == "varied":
            timing = 0.5
        reach = 0.0
        for d in np.linspace(0.0, self.length, 9):
            r = self.r_body(ANGLES, float(d))
            reach = max(
                reach, float(np.hypot(self.cx + r * np.cos(ANGLES), self.cy + r * np.sin(ANGLES)).max())
            )
        vrng = np.random.default_rng(np.random.SeedSequence([self.seed, 8]))
        cortical = float(
            np.clip(vrng.normal(CORTICAL_VARIED[1], 100.0), CORTICAL_VARIED[0], CORTICAL_VARIED[2])
        )
        arms = self._build_arms(vrng)
        # With the arms down the field of view is opened to take them in (up to 1 mm pixels; wider
        # patients have their arms cut by the scan circle, as in real scans).
        arm_reach = max(
            float(np.hypot(abs(arm["c"][0]) + arm["ab"][0] + 10.0, abs(arm["c"][1]) + arm["ab"][1]))
            for arm in arms
        )
        self.acq: Acquisition = draw_acquisition(
            self.seed,
            mode=acquisition,
            classic_fov=self.fov,
            classic_sigma=self.noise_sigma,
            body_radius_mm=reach,
            arms_radius_mm=arm_reach,
            identity_share=float(identity_share),
            timing=timing,
        )
        acq = self.acq
        self.fov = acq.fov_mm
        self.noise_sigma = acq.noise_sigma
        if acquisition == "varied":
            cortical = CORTICAL_VARIED[1] if typical_hu else cortical
            self.hu["bone_cortical"] = (cortical, cortical)
            self.hu["padding"] = (float(acq.padding_hu), float(acq.padding_hu))
        if acquisition == "varied" or timing is not None or acq.identity:
            self.hu = apply_timing(self.hu, acq.timing, identity=acq.identity)
        self.identity = acq.identity
        # Arciform spleen: strong in the arterial phases, gone (homogeneous) by the portal phase.
        self.band_scale = 0.0 if acq.identity else 1.0 - float(_smoothstep((acq.timing - 0.5) / 0.4))
        self.arms = arms if acq.arms else []

    # ------------------------------------------------------------------ geometry helpers --
    def dv(self, v: float) -> float:
        """Depth (mm below the top slice) of a continuous vertebral level."""
        return (v - self.v_top) * self.P

    def vd(self, d: float) -> float:
        """Vertebral level at a depth."""
        return self.v_top + d / self.P

    def r_muscle(self, phi: np.ndarray, d: float) -> np.ndarray:
        """Outer boundary of the muscle wall: radius (mm) per angle around the body centre."""
        t = d / max(self.length, 1.0)
        grow_a = 1 + 0.035 * math.cos(np.pi * t * 1.3) + 0.06 * float(_smoothstep((t - 0.75) / 0.25))
        grow_b = 1 + 0.03 * math.cos(np.pi * t)
        r = R.superellipse_radius(phi, self.a_m * grow_a, self.b_m * grow_b, self.p_body)
        mod = 1.0
        for k, c, psi in self.harm:
            mod = mod + c * np.cos(k * phi + psi)
        return r * mod

    def wall(self, phi: np.ndarray, d: float) -> np.ndarray:
        """Muscle wall thickness (mm) per angle: obliques laterally, rectus in front, thicker behind."""
        thorax = 0.7 + 0.3 * float(_smoothstep((d - self.d_recess + 40) / 60))
        t = self.t_lat + (self.t_rect - self.t_lat) * R.gauss_ang(phi, -np.pi / 2, 0.5)
        t = t - (self.t_rect - 3.0) * R.gauss_ang(phi, -np.pi / 2, 0.035)  # linea alba
        t = t + 8.0 * self.s * R.gauss_ang(phi, np.pi / 2, 0.7)
        return t * thorax

    def fat(self, phi: np.ndarray, d: float) -> np.ndarray:
        """Subcutaneous fat thickness (mm) per angle: more in front and at the flanks, little on the spine."""
        g = (
            1.0
            + 0.2 * R.gauss_ang(phi, -np.pi / 2, 0.8)
            + 0.3 * (R.gauss_ang(phi, np.pi / 2 - 0.9, 0.45) + R.gauss_ang(phi, np.pi / 2 + 0.9, 0.45))
            - 0.5 * R.gauss_ang(phi, np.pi / 2, 0.3)
        )
        lower = 0.85 + 0.3 * d / max(self.length, 1.0)
        return self.t_sf * g * lower + self.belly * R.gauss_ang(phi, -np.pi / 2, 0.8) * lower

    def r_body(self, phi: np.ndarray, d: float) -> np.ndarray:
        """Skin surface radius per angle (before the flattening on the table)."""
        return self.r_muscle(phi, d) + self.fat(phi, d)

    def r_cavity(self, phi: np.ndarray, d: float) -> np.ndarray:
        """Inner boundary of the muscle wall (the abdominal / thoracic cavity)."""
        return self.r_muscle(phi, d) - self.wall(phi, d)

    def table_y(self, X: np.ndarray) -> np.ndarray:
        """y (mm) of the table top under x: a shallow cradle."""
        return np.float32(self.y_table) - np.float32(self.table_curve) * X * X

    def spine_at(self, d: float) -> tuple[float, float, float, float]:
        """(half-width, half-depth, x, y) of the vertebral body at a depth."""
        v = self.vd(d)
        a_vb = self.s * self.vb_scale * (17 + 7 * float(_smoothstep((v - 11) / 5)))
        b_vb = 0.72 * a_vb
        amp, psi = self.scol
        x = self.x_s0 + amp * math.sin(2 * np.pi * d / (1.7 * max(self.length, 1.0)) + psi)
        y = self.y_vb0 - 10 * self.s * float(_smoothstep((v - 13) / 4))
        return a_vb, b_vb, x, y

    def aorta_at(self, d: float) -> tuple[float, float, float]:
        """(x, y, radius) of the aorta's centre at a depth (above the bifurcation)."""
        a_vb, b_vb, x_s, y_vb = self.spine_at(d)
        t = float(np.clip(d / max(self.d_bif, 1.0), 0, 1))
        r = self.r_aorta * (1 - 0.2 * t)
        dx = self.aorta_dx[0] + (self.aorta_dx[1] - self.aorta_dx[0]) * t
        return x_s + dx, y_vb - b_vb - r - 2.0, r

    def ivc_at(self, d: float) -> tuple[float, float]:
        """(x, y) of the IVC's centre: beside the spine, moving forward into the liver near the top."""
        a_vb, b_vb, x_s, y_vb = self.spine_at(d)
        up = float(_smoothstep((self.dv(12.3) - d) / 60))
        return x_s - self.ivc_dx - 8 * up, y_vb - b_vb - 8 - 18 * up * self.s

    # ------------------------------------------------------------------ construction --
    def _build_tubes(self, rng: np.random.Generator) -> dict[str, list[Tube]]:
        """Vessels as tubes: aorta and branches, IVC, portal system, renal and hepatic veins."""
        s, u = self.s, rng.uniform
        L = self.length
        top, bottom = -20.0, L + 20.0
        tubes: dict[str, list[Tube]] = {
            k: [] for k in ("aorta", "artery", "ivc", "portal_vein", "renal_vein", "hepatic_vein")
        }

        # Aorta down to the bifurcation, then the common iliac arteries.
        ds = np.linspace(top, min(self.d_bif, bottom), 8)
        pts = [(*self.aorta_at(d)[:2], d) for d in ds]
        rad = [self.aorta_at(d)[2] for d in ds]
        tubes["aorta"].append(Tube(np.array(pts), np.array(rad)))
        xb, yb, rb = self.aorta_at(self.d_bif)
        a_vb, b_vb, x_s, y_vb = self.spine_at(self.d_bif)
        if self.d_bif < bottom:
            for side in (-1, 1):
                end = (x_s + side * 45 * s, y_vb - 5 * s, self.d_bif + 70)
                tubes["aorta"].append(
                    Tube(np.array([(xb, yb, self.d_bif - 2), end]), np.array([0.6 * rb, 0.55 * rb]))
                )

        # IVC (flattened) down to its confluence, then the common iliac veins.
        ds = np.linspace(top, min(self.d_ivc_conf, bottom), 8)
        pts = [(*self.ivc_at(d), d) for d in ds]
        tubes["ivc"].append(Tube(np.array(pts), np.full(len(ds), self.r_ivc), scale=(1.25, 0.8)))
        if self.d_ivc_conf < bottom:
            xi, yi = self.ivc_at(self.d_ivc_conf)
            for side in (-1, 1):
                end = (x_s + side * 40 * s, y_vb + 2 * s, self.d_ivc_conf + 70)
                tubes["ivc"].append(
                    Tube(np.array([(xi, yi, self.d_ivc_conf - 2), end]), np.array([0.7, 0.6]) * self.r_ivc)
                )

        # Celiac trunk with hepatic and splenic arteries; SMA.
        d_c = self.dv(u(12.4, 12.9))
        xa, ya, ra = self.aorta_at(d_c)
        c1 = (xa, ya - ra - 16 * s, d_c - 4)
        sp = self.spleen["c"]
        tubes["artery"].append(Tube(np.array([(xa, ya - ra + 2, d_c), c1]), np.array([3.8, 3.5])))
        tubes["artery"].append(
            Tube(
                np.array(
                    [c1, (xa - 30 * s, ya - 30 * s, d_c - 6), (self.cx - 50 * s, ya - 48 * s, d_c - 10)]
                ),
                np.array([3.2, 3.0, 2.6]),
            )
        )
        tubes["artery"].append(
            Tube(
                np.array(
                    [c1, (xa + 35 * s, ya - 22 * s, d_c - 3), (sp[0] - 15 * s, sp[1] - 10 * s, d_c + 8)]
                ),
                np.array([3.2, 3.0, 2.6]),
            )
        )
        d_m = d_c + u(10, 18)
        xa, ya, ra = self.aorta_at(d_m)
        self.sma = [
            (xa, ya - ra + 2, d_m),
            (xa - 3 * s, ya - ra - 14 * s, d_m + 15),
            (xa - 8 * s, ya - ra - 24 * s, bottom),
        ]
        tubes["artery"].append(Tube(np.array(self.sma), np.array([4.2, 4.0, 3.0])))

        # Portal system: SMV + splenic vein → confluence → portal vein → right/left branches.
        neck_y = ya - ra - 22 * s
        conf = (self.cx - 10 * s + u(-4, 4), neck_y + u(-4, 4), self.dv(13.7) + u(-6, 6))
        ph = (self.cx - 50 * s + u(-5, 5), self.cy - 8 * s + u(-6, 6), self.dv(12.8) + u(-6, 6))
        tubes["portal_vein"].append(
            Tube(
                np.array(
                    [
                        (self.sma[2][0] - 15 * s, self.sma[2][1] + 2, bottom),
                        (conf[0] - 2, conf[1] - 4, self.dv(14.4)),
                        conf,
                    ]
                ),
                np.array([6.0, 6.5, 7.5]),
            )
        )
        mid = (0.5 * (conf[0] + ph[0]) - 5 * s, 0.5 * (conf[1] + ph[1]), 0.5 * (conf[2] + ph[2]))
        tubes["portal_vein"].append(Tube(np.array([conf, mid, ph]), np.array([7.5, 7.5, 7.0])))
        tubes["portal_vein"].append(
            Tube(
                np.array(
                    [
                        ph,
                        (ph[0] - 35 * s, ph[1] + 10 * s, ph[2] - 6),
                        (ph[0] - 65 * s, ph[1] + 18 * s, ph[2] - 10),
                    ]
                ),
                np.array([5.5, 4.5, 3.0]),
            )
        )
        tubes["portal_vein"].append(
            Tube(
                np.array(
                    [
                        ph,
                        (ph[0] + 30 * s, ph[1] - 35 * s, ph[2] - 8),
                        (ph[0] + 62 * s, ph[1] - 52 * s, ph[2] - 12),
                    ]
                ),
                np.array([4.8, 3.8, 2.8]),
            )
        )
        sp_hilum = (
            sp[0] - 18 * s * math.cos(self.spleen["hilum"] - np.pi),
            sp[1] - 18 * s * math.sin(self.spleen["hilum"] - np.pi),
        )
        tubes["portal_vein"].append(
            Tube(
                np.array(
                    [
                        conf,
                        (self.cx + 30 * s, conf[1] + 12 * s, conf[2] - 12),
                        (sp_hilum[0], sp_hilum[1], self.spleen["d0"] + 55),
                    ]
                ),
                np.array([5.5, 5.0, 5.0]),
            )
        )
        self.confluence = conf

        # Hepatic veins fanning out from the IVC under the dome.
        d_h = self.d_apex[-1] + u(12, 25)
        xi, yi = self.ivc_at(d_h)
        for end, r0 in (
            ((xi - 75 * s, yi - 15 * s, d_h + 45), 6.0),
            ((xi - 30 * s, self.cy - 60 * s, d_h + 40), 5.5),
            ((xi + 25 * s, self.cy - 62 * s, d_h + 30), 5.0),
        ):
            mid = (0.5 * (xi + end[0]), 0.5 * (yi + end[1]), d_h + 0.4 * (end[2] - d_h))
            tubes["hepatic_vein"].append(
                Tube(np.array([(xi, yi, d_h), mid, end]), np.array([r0, 0.65 * r0, 2.2]))
            )

        # Renal arteries and veins to each kidney's hilum.
        for k in self.kidneys:
            side = k["side"]
            d_k = k["dc"] - 4
            hx = k["c"][0] + 0.7 * k["ab"][1] * math.cos(k["hilum"])
            hy = k["c"][1] + 0.7 * k["ab"][1] * math.sin(k["hilum"])
            xa, ya, ra = self.aorta_at(d_k)
            xi, yi = self.ivc_at(d_k + 6)
            if side == 1:
                art_mid = (0.5 * (xa + hx), 0.5 * (ya + hy) + 4, d_k)
                vein = [(hx, hy, d_k + 6), (xa + 4, ya - ra - 7, d_k + 4), (xi + 6, yi, d_k + 5)]
            else:
                art_mid = (xi + 2, yi + self.r_ivc * 0.8 + 4, d_k)  # behind the IVC
                vein = [(hx, hy, d_k + 6), (xi - 4, yi, d_k + 5)]
            tubes["artery"].append(
                Tube(np.array([(xa, ya, d_k - 2), art_mid, (hx, hy, d_k)]), np.array([3.2, 3.0, 2.8]))
            )
            tubes["renal_vein"].append(Tube(np.array(vein), np.full(len(vein), 5.0 if side == 1 else 4.5)))
        return tubes

    def _build_bowel(self, rng: np.random.Generator) -> tuple[dict, dict, list[dict]]:
        """Stomach + duodenum, colon and small-bowel loops: tubes with wall, fluid and gas."""
        s, u = self.s, rng.uniform
        cx, cy = self.cx, self.cy
        a_vb, b_vb, x_s, y_vb = self.spine_at(self.dv(13.5))
        j = lambda: u(-5, 5)  # noqa: E731
        r_st = u(28, 40) * s
        vb = self.v_bottom
        v_l = self.vd(self.d_apex[1])
        nodes = [
            (cx + 12 * s, y_vb - b_vb - 22 * s, self.v_top - 0.8, 7.0),
            (cx + 35 * s, y_vb - b_vb - 25 * s, v_l + 0.45, 9.0),
            (cx + 68 * s + j(), y_vb - b_vb - 15 * s + j(), v_l + 0.95, r_st),
            (cx + 70 * s + j(), cy - 25 * s + j(), 11.9, r_st),
            (cx + 48 * s + j(), cy - 50 * s + j(), 12.7, 0.85 * r_st),
            (cx + 10 * s + j(), cy - 62 * s + j(), 13.5, 0.6 * r_st),
            (cx - 22 * s + j(), cy - 48 * s + j(), 13.3, 10.0),
            (cx - 42 * s + j(), cy - 30 * s + j(), 13.2, 13.0),
            (cx - 55 * s + j(), y_vb - 32 * s, 13.6, 13.0),
            (cx - 55 * s + j(), y_vb - 26 * s, 14.9, 13.0),
            (cx - 5 * s, y_vb - b_vb - 24 * s, 15.4, 11.0),
            (cx + 30 * s, y_vb - b_vb - 30 * s, 14.9, 11.0),
            (cx + 55 * s + j(), y_vb - 45 * s, 14.6, 12.0),
        ]
        stomach = dict(
            tube=Tube(
                np.array([(x, y, self.dv(v)) for x, y, v, _ in nodes]), np.array([r for *_, r in nodes])
            ),
            wall=3.5,
            gas_y=cy - 45 * s + u(-15, 25),
        )
        a_c = self.a_m - 0.5 * self.t_lat
        nodes = [
            (cx - (a_c - 38 * s), cy + 10 * s, vb + 1.0, 24.0),
            (cx - (a_c - 35 * s) + j(), cy + 5 * s + j(), 15.0, 22.0),
            (cx - (a_c - 55 * s) + j(), cy - 25 * s + j(), 14.0, 21.0),
            (cx - 30 * s + j(), cy - (self.b_m - 35 * s), 14.6 + u(-0.3, 0.3), 20.0),
            (cx + 25 * s + j(), cy - (self.b_m - 32 * s), 15.2 + u(-0.5, 0.5), 20.0),
            (cx + (a_c - 45 * s) + j(), cy - 10 * s + j(), 13.0, 19.0),
            (cx + (a_c - 32 * s) + j(), cy + 15 * s + j(), 14.2, 16.0),
            (cx + (a_c - 34 * s), cy + 10 * s, vb + 1.0, 16.0),
        ]
        colon = dict(
            tube=Tube(
                np.array([(x, y, self.dv(v)) for x, y, v, _ in nodes]), np.array([r * s for *_, r in nodes])
            ),
            wall=2.5,
            gas_y=cy + u(-40, 20) * s,
        )
        loops = []
        x_lo, x_hi = cx - 0.55 * self.a_m, cx + 0.65 * self.a_m
        y_lo, y_hi = cy - 0.7 * self.b_m, y_vb - b_vb - 25 * s
        d_lo, d_hi = self.dv(14.2), self.length + 10
        if d_hi > d_lo + 10:
            for _ in range(int(rng.integers(6, 11))):
                p = np.array([u(x_lo, x_hi), u(y_lo, y_hi), u(d_lo, d_hi)])
                pts = [p.copy()]
                direction = rng.normal(size=3)
                for _ in range(int(rng.integers(5, 9))):
                    direction = direction + rng.normal(size=3) * 0.9
                    direction[2] *= 0.6
                    step = direction / (np.linalg.norm(direction) + 1e-9) * u(22, 34)
                    p = p + step
                    # Stay inside the region: reflect at its walls.
                    for ax, (lo, hi) in enumerate(((x_lo, x_hi), (y_lo, y_hi), (d_lo, d_hi))):
                        if p[ax] < lo or p[ax] > hi:
                            p[ax] = np.clip(2 * np.clip(p[ax], lo, hi) - p[ax], lo, hi)
                            direction[ax] = -direction[ax]
                    pts.append(p.copy())
                kind = rng.choice(["fluid", "gas", "mixed"], p=[0.45, 0.15, 0.4])
                gas_y = {"fluid": -1e9, "gas": 1e9}.get(
                    str(kind), float(np.mean([q[1] for q in pts])) + u(-8, 8)
                )
                r = u(10, 14) * s
                loops.append(dict(tube=Tube(np.array(pts), np.full(len(pts), r)), wall=2.5, gas_y=gas_y))
        return stomach, colon, loops

    def _build_pancreas(self, rng: np.random.Generator) -> Tube:
        """Pancreas as a flattened tube: tail at the splenic hilum, body over the aorta, head last."""
        s, u = self.s, rng.uniform
        xa, ya, ra = self.aorta_at(self.dv(13.4))
        scale = u(0.85, 1.15)
        sp = self.spleen["c"]
        hx = sp[0] - 30 * s * math.cos(self.spleen["hilum"] - np.pi)
        hy = sp[1] - 30 * s * math.sin(self.spleen["hilum"] - np.pi)
        nodes = [
            (hx, hy, self.dv(12.7), 11),
            (self.cx + 35 * s + u(-5, 5), ya - ra - 25 * s, self.dv(13.2), 11),
            (self.cx - 5 * s, self.confluence[1] - 14 * s, self.dv(13.6), 12),
            (self.cx - 34 * s + u(-4, 4), ya - 20 * s, self.dv(14.2), 17),
            (self.cx - 20 * s, ya - 5 * s, self.dv(14.7), 11),
        ]
        return Tube(
            np.array([(x, y, d) for x, y, d, _ in nodes]),
            np.array([r * s * scale for *_, r in nodes]),
            scale=(1.0, 0.8),
        )

    def _build_ribs(self, rng: np.random.Generator) -> list[Tube]:
        """Lower ribs (T7–T12) as tubes following the body wall, sloping down towards the front."""
        s, u = self.s, rng.uniform
        ribs: list[Tube] = []
        for level in range(7, 13):
            d_head = self.dv(level + 0.3)
            if level <= 10:
                psi_max, drop = u(2.2, 2.6), u(70, 100) * s
            elif level == 11:
                psi_max, drop = u(1.6, 1.9), u(45, 60) * s
            else:
                psi_max, drop = u(1.0, 1.3), u(25, 35) * s
            psi0 = 0.55
            if d_head + drop < -10 or d_head > self.length + 10:
                continue
            for side in (-1, 1):
                a_vb, b_vb, x_s, y_vb = self.spine_at(max(d_head, 0.0))
                pts = [(x_s + side * (a_vb + 16 * s), y_vb + b_vb + 6 * s, d_head - 3)]
                radii = [5.5 * s]
                for psi in np.linspace(psi0, psi_max, 12):
                    q = (psi - psi0) / (psi_max - psi0)
                    d = d_head + drop * q**1.4
                    phi = np.array([np.pi / 2 - side * psi])
                    rho = float(self.r_cavity(phi, d)[0] + 0.45 * self.wall(phi, d)[0])
                    pts.append((self.cx + rho * math.cos(phi[0]), self.cy + rho * math.sin(phi[0]), d))
                    radii.append((5.5 - 1.5 * q) * s)
                ribs.append(Tube(np.array(pts), np.array(radii)))
        return ribs

    def _build_arms(self, rng: np.random.Generator) -> list[dict]:
        """Arms down beside the trunk (trauma style): upper arms resting on the table, out of the body."""
        s = self.s
        edge = {1: -1e9, -1: 1e9}
        for d in np.linspace(0.0, self.length, 9):
            x = self.cx + self.r_body(ANGLES, float(d)) * np.cos(ANGLES)
            edge[1] = max(edge[1], float(x.max()))
            edge[-1] = min(edge[-1], float(x.min()))
        arms = []
        for side in (1, -1):
            a, b = rng.uniform(34, 46) * s, rng.uniform(40, 52) * s
            x = edge[side] + side * (rng.uniform(5, 35) + a)
            y = float(self.table_y(np.array([x], np.float32))[0]) - b - 1.5 - rng.uniform(0, 25)
            arms.append(
                dict(
                    c=(x, y),
                    ab=(a, b),
                    drift=(rng.uniform(-10, 10), rng.uniform(-8, 8)),
                    skin=rng.uniform(1.4, 2.0),
                    fat=rng.uniform(4, 14),
                    bone=(
                        rng.uniform(-8, 8),
                        rng.uniform(-8, 8),
                        rng.uniform(9, 12) * s,
                        rng.uniform(3.0, 4.5),
                    ),
                )
            )
        return arms

    # ------------------------------------------------------------------ rendering --
    def values(self, name: str) -> dict[str, float]:
        """{'native': HU, 'arterial': HU} of a tissue for this patient."""
        n, a = self.hu[name]
        return {"native": n, "arterial": a}

    def textured(
        self, name: str, tex: np.ndarray, amp_native: float, amp_arterial: float, f: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Per-phase values: the tissue's HU plus a zero-mean texture of the given amplitudes."""
        tex = R.weighted_zero_mean(tex, np.broadcast_to(f, tex.shape))
        n, a = self.hu[name]
        if self.identity:
            amp_arterial = amp_native
        return {"native": n + np.float32(amp_native) * tex, "arterial": a + np.float32(amp_arterial) * tex}

    def render(self, grid: SliceGrid, canvas: Canvas) -> None:
        """Paint one axial slice at depth ``grid.d`` onto the canvas (one or both phases)."""
        ctx = _Slice(self, grid, canvas)
        ctx.table()
        ctx.arms()
        if not ctx.body():
            return
        ctx.thorax()
        ctx.back_muscles()
        ctx.retro_zone()
        ctx.bowel()
        ctx.liver()
        ctx.spleen()
        ctx.pancreas()
        ctx.kidneys()
        ctx.vessels()
        ctx.spine()
        ctx.ribs()


class _Slice:
    """The work of rendering one slice; full-size fraction fields shared by the organ painters."""

    def __init__(self, an: Anatomy, grid: SliceGrid, canvas: Canvas) -> None:
        self.an = an
        self.g = grid
        self.c = canvas
        self.d = grid.d
        self.w = grid.w
        shape = grid.shape
        self.cav = np.zeros(shape, dtype=np.float32)
        self.mo = np.zeros(shape, dtype=np.float32)
        self.sub: np.ndarray | None = None  # below the diaphragm; None = everywhere
        self.med: np.ndarray | None = None
        self.retro = np.zeros(shape, dtype=np.float32)
        self.liver_f = np.zeros(shape, dtype=np.float32)
        self.psoas: list[tuple[float, float, float, float, float]] = []

    def clip(self, bx: Box, f: np.ndarray, *, sub: bool = True, retro: bool = False, allow_med: bool = False):
        """Confine a fraction to the cavity (and below the diaphragm, outside the retroperitoneal zone)."""
        f = f * self.cav[bx.sl]
        if sub and self.sub is not None:
            s = self.sub[bx.sl]
            if allow_med and self.med is not None:
                s = np.maximum(s, self.med[bx.sl])
            f = f * s
        if retro:
            f = f * (1.0 - self.retro[bx.sl])
        return f

    # -- layers ---------------------------------------------------------------------------
    def table(self) -> None:
        an, g = self.an, self.g.unwarped()
        bx = g.box(-1e4, 1e4, an.y_table - 40, an.y_table + 30)
        if bx is None:
            return
        X = np.broadcast_to(bx.X, bx.shape)
        depth = bx.Y - an.table_y(X) - 1.0  # 1 mm gap under the back
        thick = 14.0
        f_all = frac(-depth, self.w) * frac(depth - thick, self.w)
        f_core = frac(-(depth - 1.5), self.w) * frac(depth - (thick - 1.5), self.w)
        shell = {p: 250.0 for p in ("native", "arterial")}
        core = {p: -950.0 for p in ("native", "arterial")}
        self.c.paint_mix(bx, [(f_all - f_core, LABELS["table"], shell), (f_core, LABELS["table"], core)])

    def arms(self) -> None:
        """Upper arms: skin, fat, muscle and a humerus shaft (thick cortex, fatty marrow)."""
        an, g = self.an, self.g
        t = self.d / max(an.length, 1.0) - 0.5
        for arm in an.arms:
            cx, cy = arm["c"][0] + arm["drift"][0] * t, arm["c"][1] + arm["drift"][1] * t
            a, b = arm["ab"]
            bx = g.box_around(cx, cy, a + 2, b + 2)
            if bx is None:
                continue
            sd = R.ellipse_sd(bx.X, bx.Y, cx, cy, a, b)
            ox, oy, rb, cortex = arm["bone"]
            dx, dy = bx.X - np.float32(cx + ox), bx.Y - np.float32(cy + oy)
            sd_b = np.sqrt(dx * dx + dy * dy) - np.float32(rb)
            w = self.w
            for f, name in (
                (frac(sd, w), "skin"),
                (frac(sd + np.float32(arm["skin"]), w), "fat_subcutaneous"),
                (frac(sd + np.float32(arm["skin"] + arm["fat"]), w), "muscle"),
                (frac(sd_b, w), "bone_cortical"),
                (frac(sd_b + np.float32(cortex), w), "fat_subcutaneous"),  # yellow marrow: fat
            ):
                self.c.paint(bx, f, LABELS[name], an.values(name))

    def body(self) -> bool:
        an, g, d = self.an, self.g, self.d
        rb = an.r_body(ANGLES, d)
        rmax = float(rb.max()) + 5
        bx = g.box_around(an.cx, an.cy, rmax, rmax)
        if bx is None:
            return False
        rho, idx = R.polar_index(bx.X, bx.Y, an.cx, an.cy)
        r_mo = an.r_muscle(ANGLES, d)
        r_cav = r_mo - an.wall(ANGLES, d)
        f_tab = frac(bx.Y - an.table_y(bx.X), self.w)
        w = self.w
        f_b = frac(rho - rb.astype(np.float32)[idx], w) * f_tab
        f_sk = frac(rho - (rb - an.skin).astype(np.float32)[idx], w) * f_tab
        f_mo = frac(rho - r_mo.astype(np.float32)[idx], w) * f_tab
        f_cav = frac(rho - r_cav.astype(np.float32)[idx], w) * f_tab
        U = (bx.X - np.float32(an.cx)) / np.float32(rmax)
        V = (bx.Y - np.float32(an.cy)) / np.float32(rmax)
        tex = an.muscle_tex.sample(U, V, d / max(an.length, 1.0))
        # The layers are nested (cavity ⊂ muscle ⊂ fat ⊂ skin), so one pass mixes them exactly.
        for p in self.c.phases:
            skin, fat, mus, vfat = (
                np.float32(an.values(t)[p]) for t in ("skin", "fat_subcutaneous", "muscle", "fat_visceral")
            )
            body = f_b * skin
            body += f_sk * (fat - skin)
            body += f_mo * (mus + np.float32(3.0) * tex - fat)
            body += f_cav * (vfat - mus - np.float32(3.0) * tex)
            img = self.c.img[p][bx.sl]
            img *= 1 - f_b
            img += body
        layer = (f_b >= 0.5).astype(np.uint8)
        layer += f_sk >= 0.5
        layer += f_mo >= 0.5
        layer += f_cav >= 0.5
        lut = np.array(
            [0, LABELS["skin"], LABELS["fat_subcutaneous"], LABELS["muscle"], LABELS["fat_visceral"]],
            np.uint8,
        )
        lab = self.c.lab[bx.sl]
        np.copyto(lab, lut[layer], where=layer > 0)
        self.mo[bx.sl] = f_mo
        self.cav[bx.sl] = f_cav
        self.body_box = bx
        return True

    def thorax(self) -> None:
        """Lung bases outside the diaphragm domes, the diaphragm itself, and the mediastinum."""
        an, g, d = self.an, self.g, self.d
        domes = []
        for side in (-1, 1):
            dd = d - an.d_apex[side]
            r = math.sqrt(dd / an.dome_k[side]) if dd > 0 else 0.0
            domes.append((side, r))
        a_vb, b_vb, x_s, y_vb = an.spine_at(d)
        med = (x_s + 8 * an.s, y_vb - b_vb - 45 * an.s, 38 * an.s, 48 * an.s)
        # No lung on this slice once the domes (and the mediastinum) cover the whole cavity outline.
        r_cav = an.r_cavity(ANGLES, d)
        px = an.cx + r_cav * np.cos(ANGLES)
        py = an.cy + r_cav * np.sin(ANGLES)
        covered = ((px - med[0]) / med[2]) ** 2 + ((py - med[1]) / med[3]) ** 2 < 1
        for side, r in domes:
            if r > 4:
                cx, cy = an.dome_c[side]
                covered |= ((px - cx) / r) ** 2 + ((py - cy) / (0.85 * r)) ** 2 < (1 - 3 / r) ** 2
        if covered.all():
            return
        bx = g.box(float(px.min()), float(px.max()), float(py.min()), float(py.max()))
        if bx is None:
            return
        sd = np.full(bx.shape, np.float32(1e4), dtype=np.float32)
        for side, r in domes:
            if r <= 0:
                continue
            cx, cy = an.dome_c[side]
            np.minimum(sd, R.ellipse_sd(bx.X, bx.Y, cx, cy, r, 0.85 * r), out=sd)
        f_sub = frac(sd, self.w)
        med_sd = R.ellipse_sd(bx.X, bx.Y, *med)
        f_med = frac(med_sd, self.w)
        cav = self.cav[bx.sl]
        f_lung = cav * (1 - f_sub) * (1 - f_med)
        if float(f_lung.max()) <= 0.0:
            return
        self.sub = np.zeros(g.shape, dtype=np.float32)
        self.sub[bx.sl] = f_sub
        self.med = np.zeros(g.shape, dtype=np.float32)
        self.med[bx.sl] = f_med
        U = (bx.X - np.float32(an.cx)) / np.float32(200)
        V = (bx.Y - np.float32(an.cy)) / np.float32(200)
        tex = an.lung_tex.sample(U, V, d / max(an.length, 1.0))
        # Dependent (posterior) lung is denser: a gravity gradient plus a little texture.
        grad = np.broadcast_to((bx.Y - np.float32(an.cy)) * np.float32(0.25), bx.shape)
        pattern = R.weighted_zero_mean(grad + 12.0 * tex, f_lung)
        vals = {p: an.hu["lung"][0] + pattern for p in ("native", "arterial")}
        self.c.paint(bx, f_lung, LABELS["lung"], vals)
        # The diaphragm: a muscle band along the domes, where they meet lung.
        f_dia = frac(np.abs(sd) - 2.5, self.w) * cav * (1 - f_med)
        self.c.paint(bx, f_dia, LABELS["muscle"], an.values("muscle"))

    def back_muscles(self) -> None:
        """Erector spinae, quadratus lumborum and psoas."""
        an, g, d = self.an, self.g, self.d
        s = an.s
        a_vb, b_vb, x_s, y_vb = an.spine_at(d)
        v = an.vd(d)
        y_c = y_vb + b_vb + an.canal[1] + 2
        grow = 0.85 + 0.15 * float(_smoothstep((v - 11) / 4))
        for side in (-1, 1):
            cx, cy = x_s + side * 30 * s * grow, y_c + 22 * s
            bx = g.box_around(cx, cy, 30 * s, 32 * s)
            if bx is not None:
                f = frac(R.ellipse_sd(bx.X, bx.Y, cx, cy, 22 * s * grow, 24 * s * grow, side * 0.2), self.w)
                self.c.paint(bx, f * self.mo[bx.sl], LABELS["muscle"], an.values("muscle"))
            q = float(_smoothstep((v - 12.8) / 3))
            if q > 0.05:
                cx, cy = x_s + side * (a_vb + 42 * s), y_vb + 24 * s
                bx = g.box_around(cx, cy, 24 * s, 24 * s)
                if bx is not None:
                    f = frac(R.ellipse_sd(bx.X, bx.Y, cx, cy, 18 * s * q, 10 * s * q, -side * 0.5), self.w)
                    self.c.paint(bx, f * self.mo[bx.sl], LABELS["muscle"], an.values("muscle"))
            q = float(_smoothstep((v - 12.6) / 3.5))
            if q > 0.05:
                ra, rb = 24 * s * q, 19 * s * q
                cx, cy = x_s + side * (a_vb + 0.7 * ra), y_vb - 2 - 10 * s * q
                bx = g.box_around(cx, cy, ra + 4, ra + 4)
                if bx is not None:
                    f = frac(R.ellipse_sd(bx.X, bx.Y, cx, cy, ra, rb, side * 0.3), self.w)
                    self.c.paint(bx, f * self.cav[bx.sl], LABELS["muscle"], an.values("muscle"))
                    self.psoas.append((cx, cy, ra, rb, side * 0.3))

    def retro_zone(self) -> None:
        """Where intraperitoneal organs may not go: around the spine, aorta and psoas."""
        an, g, d = self.an, self.g, self.d
        a_vb, b_vb, x_s, y_vb = an.spine_at(d)
        ax, ay, ar = an.aorta_at(d)
        shapes = [(x_s + 2, y_vb - 6, a_vb + 20, b_vb + 24, 0.0), (ax, ay, ar + 6, ar + 6, 0.0)]
        shapes += [(cx, cy, ra + 5, rb + 5, th) for cx, cy, ra, rb, th in self.psoas]
        for cx, cy, ra, rb, th in shapes:
            bx = g.box_around(cx, cy, max(ra, rb) + 2, max(ra, rb) + 2)
            if bx is None:
                continue
            f = frac(R.ellipse_sd(bx.X, bx.Y, cx, cy, ra, rb, th), 3.0)
            view = self.retro[bx.sl]
            np.maximum(view, f, out=view)

    def _lumen(self, spec: dict, *, retro: bool, allow_med: bool = False, stool: bool = False) -> None:
        """Paint a bowel tube: wall, then fluid below and gas above its gas level (supine: gas in front)."""
        an = self.an
        got = spec["tube"].sd(self.g)
        if got is None:
            return
        bx, sd = got
        f_wall = self.clip(bx, frac(sd, self.w), retro=retro, allow_med=allow_med)
        if float(f_wall.max()) <= 0:
            return
        self.c.paint(bx, f_wall, LABELS["bowel_wall"], an.values("bowel_wall"))
        f_in = self.clip(bx, frac(sd + spec["wall"], self.w), retro=retro, allow_med=allow_med)
        g_gas = frac(bx.Y - np.float32(spec["gas_y"]), self.w)
        f_gas = f_in * g_gas
        f_fluid = f_in * (1 - g_gas)
        fluid = an.values("bowel_fluid")
        if stool:
            U = (bx.X - np.float32(an.cx)) / np.float32(180)
            V = (bx.Y - np.float32(an.cy)) / np.float32(180)
            tex = an.stool_tex.sample(U, V, self.d / max(an.length, 1.0))
            fluid = an.textured("bowel_fluid", tex, 20.0, 20.0, f_fluid)
        self.c.paint(bx, f_fluid, LABELS["bowel_fluid"], fluid)
        self.c.paint(bx, f_gas, LABELS["bowel_gas"], an.values("bowel_gas"))

    def bowel(self) -> None:
        for loop in self.an.loops:
            self._lumen(loop, retro=True)
        self._lumen(self.an.gi_colon, retro=True, stool=True)
        self._lumen(self.an.gi_stomach, retro=False, allow_med=True)

    def _star(self, c: tuple[float, float], lut: np.ndarray) -> tuple[Box, np.ndarray, np.ndarray] | None:
        """(box, signed distance, ρ) of a star-shaped outline given by its radius per angle."""
        rmax = float(lut.max()) + 2
        bx = self.g.box_around(c[0], c[1], rmax, rmax)
        if bx is None:
            return None
        rho, idx = R.polar_index(bx.X, bx.Y, c[0], c[1])
        return bx, rho - lut.astype(np.float32)[idx], rho

    def liver(self) -> None:
        an, d = self.an, self.d
        lr, ll = an.liver_r, an.liver_l
        fr = _profile(d, -1e9, -1e9, lr["d_mid"], lr["d_tip"])
        fl = _profile(d, -1e9, -1e9, ll["d_end"] - 45, ll["d_end"])
        parts = []
        if fr > 0.02:
            q = 1 - fr
            c = (lr["c"][0] - 25 * an.s * q, lr["c"][1] - 20 * an.s * q)
            lut = R.superellipse_radius(ANGLES, lr["ab"][0] * fr, lr["ab"][1] * fr, 2.3, lr["theta"])
            lut = lut * (1 - lr["egg"] * np.cos(ANGLES))  # narrow towards the midline (φ = 0)
            for k, amp, psi in lr["harm"]:
                lut = lut * (1 + amp * np.cos(k * ANGLES + psi))
            parts.append((c, lut))
        if fl > 0.02:
            lut = R.superellipse_radius(ANGLES, ll["ab"][0] * fl, ll["ab"][1] * fl, 2.2, ll["theta"])
            parts.append((ll["c"], lut))
        if not parts:
            return
        reach = [(c, float(lut.max()) + 2) for c, lut in parts]
        bx = self.g.box(
            min(c[0] - r for c, r in reach),
            max(c[0] + r for c, r in reach),
            min(c[1] - r for c, r in reach),
            max(c[1] + r for c, r in reach),
        )
        if bx is None:
            return
        f_all = np.zeros(bx.shape, dtype=np.float32)
        for c, lut in parts:
            rho, idx = R.polar_index(bx.X, bx.Y, c[0], c[1])
            np.maximum(f_all, frac(rho - lut.astype(np.float32)[idx], self.w), out=f_all)
        self.liver_f[bx.sl] = self.clip(bx, f_all, retro=True)
        X, Y = bx.X, bx.Y
        f = self.liver_f[bx.sl]
        U = (X - np.float32(lr["c"][0])) / np.float32(140)
        V = (Y - np.float32(lr["c"][1])) / np.float32(140)
        tex = an.liver_tex.sample(U, V, d / max(an.length, 1.0))
        self.c.paint(bx, f, LABELS["liver"], an.textured("liver", tex, 3.0, 4.0, f))
        for tube in an.tubes["hepatic_vein"]:
            got = tube.sd(self.g)
            if got is not None:
                tb, sd = got
                self.c.paint(
                    tb,
                    frac(sd, self.w) * self.liver_f[tb.sl],
                    LABELS["hepatic_vein"],
                    an.values("hepatic_vein"),
                )
        gb = an.gb
        q = _profile(d, gb["dc"] - gb["h"], gb["dc"], gb["dc"], gb["dc"] + gb["h"])
        if q > 0.05:
            bx = self.g.box_around(gb["c"][0], gb["c"][1], gb["ab"][0] + 3, gb["ab"][0] + 3)
            if bx is not None:
                f = frac(
                    R.ellipse_sd(bx.X, bx.Y, *gb["c"], gb["ab"][0] * q, gb["ab"][1] * q, gb["theta"]), self.w
                )
                self.c.paint(bx, self.clip(bx, f), LABELS["gallbladder"], an.values("gallbladder"))

    def spleen(self) -> None:
        an, d = self.an, self.d
        sp = an.spleen
        h = 0.5 * (sp["d1"] - sp["d0"])
        q = _profile(d, sp["d0"], sp["d0"] + h, sp["d0"] + h, sp["d1"])
        if q < 0.05:
            return
        t = (d - sp["d0"] - h) / h
        c = (sp["c"][0], sp["c"][1] - 22 * an.s * t)
        lut = R.superellipse_radius(ANGLES, sp["ab"][0] * q, sp["ab"][1] * max(q, 0.4), 2.0, sp["theta"])
        lut = lut * (1 - 0.3 * R.gauss_ang(ANGLES, sp["hilum"], 0.7))
        got = self._star(c, lut)
        if got is None:
            return
        bx, sd, _ = got
        f = self.clip(bx, frac(sd, self.w), retro=True)
        # Arciform bands around the hilum in the arterial phase (cords of the red pulp enhancing first).
        hx = c[0] + 0.8 * sp["ab"][1] * math.cos(sp["hilum"])
        hy = c[1] + 0.8 * sp["ab"][1] * math.sin(sp["hilum"])
        U = (bx.X - np.float32(c[0])) / np.float32(70)
        V = (bx.Y - np.float32(c[1])) / np.float32(70)
        warp = an.spleen_tex.sample(U, V, (d - sp["d0"]) / (2 * h))
        dist = np.sqrt((bx.X - np.float32(hx)) ** 2 + (bx.Y - np.float32(hy)) ** 2)
        bands = np.sin(np.float32(2 * np.pi / sp["band"]) * (dist + np.float32(6.0) * warp))
        bands = R.weighted_zero_mean(bands, f)
        soft = R.weighted_zero_mean(warp, f)
        n, a = an.hu["spleen"]
        native = n + np.float32(2.0) * soft
        if an.identity:
            vals = {"native": native, "arterial": native}
        else:
            vals = {"native": native, "arterial": a + np.float32(sp["band_amp"] * an.band_scale) * bands}
        self.c.paint(bx, f, LABELS["spleen"], vals)

    def pancreas(self) -> None:
        an = self.an
        got = an.pancreas.sd(self.g)
        if got is None:
            return
        bx, sd = got
        f = self.clip(bx, frac(sd, self.w))
        U = (bx.X - np.float32(an.cx)) / np.float32(120)
        V = (bx.Y - np.float32(an.cy)) / np.float32(120)
        tex = an.pancreas_tex.sample(U, V, self.d / max(an.length, 1.0))
        self.c.paint(bx, f, LABELS["pancreas"], an.textured("pancreas", tex, 6.0, 10.0, f))

    def kidneys(self) -> None:
        an, d = self.an, self.d
        for k in an.kidneys:
            q = _profile(d, k["dc"] - k["h"], k["dc"], k["dc"], k["dc"] + k["h"])
            if q < 0.05:
                continue
            t = (d - k["dc"]) / k["h"]
            c = (k["c"][0] + k["side"] * 12 * an.s * t, k["c"][1] - 10 * an.s * t)
            a, b = k["ab"][0] * q, k["ab"][1] * max(q, 0.3)
            lut = R.superellipse_radius(ANGLES, a, b, 2.0, k["theta"])
            lut = lut * (1 - 0.18 * R.gauss_ang(ANGLES, k["hilum"], 0.45) * (1 - abs(t)))
            got = self._star(c, lut)
            if got is None:
                continue
            bx, sd, rho = got
            f = self.clip(bx, frac(sd, self.w))
            self.c.paint(bx, f, LABELS["kidney_cortex"], an.values("kidney_cortex"))
            # Medullary pyramids: darker lobes between cortex and sinus (clear in the arterial phase).
            rb = rho - sd  # boundary radius along each pixel's ray
            ring = frac(rho - np.float32(0.78) * rb, self.w) * frac(np.float32(0.36) * rb - rho, self.w)
            ang = np.arctan2(bx.Y - np.float32(c[1]), bx.X - np.float32(c[0]))
            # Pyramids: wide bases under the cortex, apices (papillae) towards the sinus.
            F = rho / np.maximum(rb, np.float32(1e-3))
            thr = np.float32(0.7) - np.float32(1.0 / 0.42) * (F - np.float32(0.36))
            lobes = np.clip((np.cos(k["n_pyr"] * ang + np.float32(k["psi"])) - thr) * np.float32(12.0), 0, 1)
            if abs(t) < 0.8:  # the poles are cortex; a partial fraction there would blur the labels
                self.c.paint(bx, f * ring * lobes, LABELS["kidney_medulla"], an.values("kidney_medulla"))
            # Renal sinus fat and pelvis at the hilum, in the middle third.
            qs = _profile(d, k["dc"] - 0.5 * k["h"], k["dc"], k["dc"], k["dc"] + 0.5 * k["h"])
            if qs > 0.05:
                ux, uy = math.cos(k["hilum"]), math.sin(k["hilum"])
                sx, sy = c[0] + 0.35 * b * ux, c[1] + 0.35 * b * uy
                f_sin = (
                    frac(R.ellipse_sd(bx.X, bx.Y, sx, sy, 0.55 * a * qs, 0.42 * b * qs, k["theta"]), self.w)
                    * f
                )
                self.c.paint(bx, f_sin, LABELS["fat_visceral"], an.values("fat_visceral"))
                qp = _profile(d, k["dc"] - 0.25 * k["h"], k["dc"], k["dc"], k["dc"] + 0.25 * k["h"])
                if qp > 0.05:
                    px, py = c[0] + 0.5 * b * ux, c[1] + 0.5 * b * uy
                    sd_p = R.capsule_sd(bx.X, bx.Y, (px, py), (px + 18 * ux, py + 18 * uy), 6.0 * qp)
                    f_p = frac(sd_p, self.w) * self.cav[bx.sl]
                    self.c.paint(bx, f_p, LABELS["renal_pelvis"], an.values("renal_pelvis"))

    def vessels(self) -> None:
        an = self.an
        for name in ("portal_vein", "ivc", "renal_vein", "aorta", "artery"):
            for tube in an.tubes[name]:
                got = tube.sd(self.g)
                if got is None:
                    continue
                bx, sd = got
                self.c.paint(bx, frac(sd, self.w) * self.mo[bx.sl], LABELS[name], an.values(name))

    def _bone(self, bx: Box, sd: np.ndarray, fz: float | np.ndarray, cortex: float = 1.4) -> None:
        an = self.an
        f_out = frac(sd, self.w) * fz
        f_in = frac(sd + np.float32(cortex), self.w) * fz
        U = (bx.X - np.float32(an.cx)) / np.float32(60)
        V = (bx.Y - np.float32(an.cy)) / np.float32(60)
        tex = an.cancellous_tex.sample(U, V, self.d / max(an.length, 1.0))
        canc = an.textured("bone_cancellous", tex, 15.0, 15.0, f_in)
        self.c.paint_mix(
            bx,
            [
                (f_out - f_in, LABELS["bone_cortical"], an.values("bone_cortical")),
                (f_in, LABELS["bone_cancellous"], canc),
            ],
        )

    def spine(self) -> None:
        """Vertebral bodies with end plates and discs (exact slab overlap in z), posterior elements, canal."""
        an, g, d = self.an, self.g, self.d
        s = an.s
        a_vb, b_vb, x_s, y_vb = an.spine_at(d)
        lo, hi = d - 0.5 * g.thickness, d + 0.5 * g.thickness
        P = an.P
        k0 = math.floor((lo / P) + an.vert_phase) - 1
        body = plate = disc = 0.0
        arch = spinous = transverse = 0.0
        for k in range(k0, k0 + 4):
            top = (k - an.vert_phase) * P
            hb = 0.78 * P
            body += float(R.slab_overlap(lo, hi, top, top + hb))
            plate += float(
                R.slab_overlap(lo, hi, top, top + 1.0) + R.slab_overlap(lo, hi, top + hb - 1.0, top + hb)
            )
            disc += float(R.slab_overlap(lo, hi, top + hb, top + P))
            arch += float(R.slab_overlap(lo, hi, top + 0.05 * P, top + 0.8 * P))
            spinous += float(R.slab_overlap(lo, hi, top + 0.3 * P, top + 1.05 * P))
            transverse += float(R.slab_overlap(lo, hi, top + 0.15 * P, top + 0.45 * P))
        bx = g.box_around(x_s, y_vb, a_vb + 3, b_vb + 3)
        if bx is not None:
            lut = R.superellipse_radius(ANGLES, a_vb, b_vb, 2.4)
            lut = lut * (1 - 0.08 * R.gauss_ang(ANGLES, np.pi / 2, 0.35))  # concave back wall
            rho, idx = R.polar_index(bx.X, bx.Y, x_s, y_vb)
            sd = rho - lut.astype(np.float32)[idx]
            g_out = frac(sd, self.w)
            g_in = frac(sd + np.float32(1.4), self.w)
            U = (bx.X - np.float32(an.cx)) / np.float32(60)
            V = (bx.Y - np.float32(an.cy)) / np.float32(60)
            tex = an.cancellous_tex.sample(U, V, d / max(an.length, 1.0))
            canc = an.textured("bone_cancellous", tex, 15.0, 15.0, g_in)
            inner = max(body - plate, 0.0)
            # A slab that takes in an end plate is visibly brighter: label it cortical, so that
            # the cancellous label holds trabecular bone only.
            canc_label = LABELS["bone_cortical"] if plate > 0.08 else LABELS["bone_cancellous"]
            parts = [
                (g_out * body - g_in * inner, LABELS["bone_cortical"], an.values("bone_cortical")),
                (g_in * inner, canc_label, canc),
                (g_out * disc, LABELS["intervertebral_disc"], an.values("intervertebral_disc")),
            ]
            self.c.paint_mix(bx, parts)
        cw, ch = an.canal
        y_c = y_vb + b_vb + ch + 1.0
        if arch > 0.02:
            bx = g.box_around(x_s, y_c, cw + 8, ch + 8)
            if bx is not None:
                sd = R.ellipse_sd(bx.X, bx.Y, x_s, y_c + 1.0, cw + 6 * s, ch + 6 * s)
                sd = np.maximum(sd, -R.ellipse_sd(bx.X, bx.Y, x_s, y_c, cw, ch))  # a ring round the canal
                sd = np.maximum(sd, np.float32(y_vb + b_vb - 3.0) - bx.Y)  # only behind the body
                self._bone(bx, sd, arch)
        if spinous > 0.02:
            p0, p1 = (x_s, y_c + ch + 2), (x_s, y_c + ch + 2 + an.spinous_len)
            bx = g.box(x_s - 8, x_s + 8, p0[1] - 5, p1[1] + 5)
            if bx is not None:
                self._bone(bx, R.capsule_sd(bx.X, bx.Y, p0, p1, 4.0 * s), spinous)
        if transverse > 0.02:
            lumbar = float(_smoothstep(an.vd(d) - 12.5))
            for side in (-1, 1):
                p0 = (x_s + side * (cw + 2), y_c - 2)
                p1 = (x_s + side * (a_vb + 14 * s + 6 * s * lumbar), y_c + (6 - 10 * lumbar) * s)
                bx = g.box(
                    min(p0[0], p1[0]) - 6, max(p0[0], p1[0]) + 6, min(p0[1], p1[1]) - 6, max(p0[1], p1[1]) + 6
                )
                if bx is not None:
                    self._bone(bx, R.capsule_sd(bx.X, bx.Y, p0, p1, 4.5 * s), transverse)
        bx = g.box_around(x_s, y_c, cw + 3, ch + 3)
        if bx is not None:
            f = frac(R.ellipse_sd(bx.X, bx.Y, x_s, y_c, cw, ch), self.w)
            self.c.paint(bx, f, LABELS["spinal_canal"], an.values("spinal_canal"))

    def ribs(self) -> None:
        for tube in self.an.ribs:
            got = tube.sd(self.g)
            if got is None:
                continue
            bx, sd = got
            self._bone(bx, sd, self.mo[bx.sl], cortex=1.2)
