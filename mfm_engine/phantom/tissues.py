"""Tissue labels and HU per tissue and phase (native, arterial) for the procedural phantom.

Every patient (seed) draws its own values inside the ranges below; ``typical`` is the value a
"typical" patient gets (``make_phantom_pair(..., typical_hu=True)``). Arterial values of the
enhancing tissues move together with one per-patient bolus factor (a strong/early bolus lifts the
aorta, renal cortex, pancreas and spleen at once), as in real late-arterial series.

Sources (numbers quoted in the comments beside each row; see docs/phantom.md):
  [P]  Prokop M, Galanski M. Spiral and Multislice Computed Tomography of the Body. Thieme, 2003:
       unenhanced kidney 20–40, spleen 35–55, liver 45–65, blood 45–65, fat −50…−100,
       lung (inspiration) −850…−910, bone 700–3000 HU (as tabulated by radclass.mudr.org,
       "Hounsfield units – scale of HU, CT numbers").
  [RLA] Radiopaedia, "Late arterial phase" (rev. 23 Mar 2023): peak aortic attenuation 290–360 HU,
       liver +20–30 HU over its unenhanced baseline, portal vein 145 ± 20 HU.
  [B]  Bae KT. Intravenous contrast medium administration and scan timing at CT: considerations
       and approaches. Radiology 2010;256(1):32–61, doi:10.1148/radiol.10090908 (aortic and
       parenchymal enhancement versus timing; hepatic enhancement small before the portal phase).
  [K]  Multi-detector row CT of the kidney: optimizing scan delays for bolus tracking techniques of
       arterial, corticomedullary, and nephrographic phases. Eur J Radiol 2007;63(3):420–426,
       doi:10.1016/j.ejrad.2007.02.005: renal cortical enhancement 195–217 HU, cortex-to-medulla
       difference 110–140 HU in the corticomedullary phase.
  [L]  Lu DS, Vedantham S, Krasny RM, et al. Two-phase helical CT for pancreatic tumors: pancreatic
       versus hepatic phase enhancement of tumor, pancreas, and vascular structures. Radiology
       1996;199(3):697–701 (pancreas and portal vein enhance most in the pancreatic phase).
  [KP] Bolus-tracking vs fixed delay for the pancreatic phase at 16-row MDCT (Korean J Radiol,
       synapse.koreamed.org/articles/1004370): pancreas 111.7–128.3 HU in the pancreatic phase.
  [S]  Kim TK, Kang HJ, Lee KY, Park CM, Chung KB. Transient inhomogeneous contrast enhancement of
       the spleen on arterial phase of spiral CT. J Korean Radiol Soc 1997;36(2):265–270,
       doi:10.3348/jkrs.1997.36.2.265 (arciform / heterogeneous spleen in the arterial phase);
       spleen unenhanced 5–10 HU below the liver (as [P]).
  [J]  Jang S, Graffy PM, Ziemlewicz TJ, Lee SJ, Summers RM, Pickhardt PJ. Opportunistic osteoporosis
       screening at routine abdominal and thoracic CT: normative L1 trabecular attenuation values in
       more than 20 000 adults. Radiology 2019;291(2):360–367: L1 trabecular bone 226 ± 44 HU
       (< 30 y) down to 89 ± 38 HU (≥ 90 y); intravenous contrast made negligible difference.
  [M]  Correcting posterior paraspinal muscle CT density for intravenous contrast material
       independent of sex and vascular phase (240 adults): arterial-phase muscle +8.6 ± 6.2 HU over
       non-contrast.
Values marked "chosen" have no single source: they are plausible picks inside the soft-tissue
range, documented as such. Bone, fat, air, lung, fluid and gas do not change between phases
(bone marrow does enhance a few HU in some studies; the phantom keeps it fixed on purpose, as the
issue asks, so that bone is an anchor the models must not move).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tissue:
    """One label: its name, HU range (low, typical, high) per phase, and where the numbers come from."""

    label: int
    name: str
    native: tuple[float, float, float]
    # None: the arterial value equals the native one (no enhancement).
    arterial: tuple[float, float, float] | None
    sources: str
    # When set, the arterial value is the native one plus this enhancement (low, typical, high),
    # for tissues whose literature figure is an increase rather than an absolute value.
    enhancement: tuple[float, float, float] | None = None

    def arterial_range(self) -> tuple[float, float, float]:
        """(low, typical, high) arterial HU, whichever way the table states it."""
        if self.enhancement is not None:
            return tuple(n + e for n, e in zip(self.native, self.enhancement, strict=True))  # type: ignore[return-value]
        return self.arterial if self.arterial is not None else self.native


# Order = label value. 0 (outside the body) and 1 (the scanner table) are not tissues.
TISSUES: tuple[Tissue, ...] = (
    Tissue(0, "air", (-1000, -1000, -1000), None, "definition of the HU scale"),
    Tissue(1, "table", (-1000, -1000, -1000), None, "not a tissue: carbon shell + foam, chosen"),
    Tissue(2, "skin", (25, 35, 45), None, "chosen (soft tissue), dermis enhances slightly", (4, 8, 12)),
    Tissue(3, "fat_subcutaneous", (-115, -102, -90), None, "[P] fat -50…-100; subcutaneous fat ~-100"),
    Tissue(4, "muscle", (42, 50, 58), None, "[M] arterial +8.6 ± 6.2 HU; native chosen", (3, 9, 15)),
    Tissue(5, "fat_visceral", (-110, -95, -85), None, "[P] fat -50…-100"),
    Tissue(6, "lung", (-890, -860, -830), None, "[P] lung (inspiration) -850…-910"),
    Tissue(7, "liver", (54, 60, 66), None, "[P] 45–65 native; [RLA] +20–30 HU late arterial", (12, 18, 28)),
    Tissue(8, "spleen", (44, 50, 56), (100, 115, 130), "[P]/[S] native 5–10 below liver; arterial chosen"),
    Tissue(9, "kidney_cortex", (28, 33, 38), (150, 175, 200), "[P] 20–40 native; [K] cortex enhancement"),
    Tissue(10, "kidney_medulla", (24, 29, 34), (55, 70, 85), "[K] cortex − medulla 110–140 HU"),
    Tissue(11, "renal_pelvis", (2, 8, 14), None, "urine ~ water; no excretion yet in the arterial phase"),
    Tissue(12, "aorta", (38, 44, 50), (250, 320, 400), "[P] blood 45–65 native; [RLA] 290–360, [B]"),
    Tissue(13, "artery", (38, 44, 50), (230, 290, 360), "as aorta, a little lower in small branches"),
    Tissue(14, "ivc", (38, 44, 50), (55, 72, 90), "chosen: infrarenal IVC still unopacified; some mixing"),
    Tissue(15, "portal_vein", (38, 44, 50), (100, 130, 160), "[RLA] 145 ± 20 HU late arterial; [L]"),
    Tissue(16, "renal_vein", (38, 44, 50), (130, 160, 190), "chosen: renal veins opacify early ([K])"),
    Tissue(17, "hepatic_vein", (38, 44, 50), (45, 55, 65), "chosen: hepatic veins not yet opacified"),
    Tissue(18, "pancreas", (38, 45, 52), (100, 115, 130), "[KP] 111.7–128.3 HU pancreatic phase; [L]"),
    Tissue(
        19, "bowel_wall", (35, 42, 50), (70, 90, 110), "chosen: mucosal enhancement in the arterial phase"
    ),
    Tissue(20, "bowel_gas", (-1000, -990, -970), None, "gas ≈ air"),
    Tissue(21, "bowel_fluid", (0, 10, 20), None, "[P] water 0; enteric fluid chosen 0–20"),
    Tissue(22, "gallbladder", (0, 8, 16), None, "bile ≈ water"),
    Tissue(23, "bone_cortical", (750, 850, 1000), None, "[P] bone 700–3000 (thin cortex, partial volume)"),
    Tissue(24, "bone_cancellous", (120, 180, 240), None, "[J] L1 trabecular 89–226 HU by age; contrast ≈ 0"),
    Tissue(
        25, "intervertebral_disc", (70, 85, 100), None, "chosen: annulus/nucleus, slight uptake", (4, 8, 12)
    ),
    Tissue(26, "spinal_canal", (15, 22, 30), None, "CSF + cord, chosen"),
    # Outside the reconstruction circle: not a tissue; its value is the patient's padding (scanner.py).
    Tissue(27, "padding", (-1024, -1024, -1024), None, "DICOM Pixel Padding Value: -1024, -2000 or -3024"),
)
# Labels that are not drawn from the table per patient (their values come from the acquisition).
_NOT_DRAWN = frozenset({"padding"})

LABELS: dict[str, int] = {t.name: t.label for t in TISSUES}
LEGEND: dict[int, str] = {t.label: t.name for t in TISSUES}
TISSUE_BY_NAME: dict[str, Tissue] = {t.name: t for t in TISSUES}

# Tissues whose arterial value rises with the bolus factor (the rest get independent small jitter).
_BOLUS_DRIVEN = frozenset(
    {"aorta", "artery", "kidney_cortex", "kidney_medulla", "pancreas", "spleen", "portal_vein", "renal_vein"}
)


def sample_hu(rng: np.random.Generator, *, typical: bool = False) -> dict[str, tuple[float, float]]:
    """(native, arterial) HU per tissue name for one patient, inside the table's ranges."""
    # A single bolus factor in [0, 1] couples the arterial enhancement of the well-perfused tissues.
    bolus = 0.5 if typical else float(rng.beta(2.0, 2.0))
    out: dict[str, tuple[float, float]] = {}
    for t in TISSUES:
        if t.name in _NOT_DRAWN:
            continue
        n_lo, n_typ, n_hi = t.native
        if typical:
            native = float(n_typ)
        else:
            native = float(np.clip(rng.normal(n_typ, (n_hi - n_lo) / 5.0), n_lo, n_hi))
        if t.enhancement is not None:
            e_lo, e_typ, e_hi = t.enhancement
            enh = e_typ if typical else float(np.clip(rng.normal(e_typ, (e_hi - e_lo) / 5.0), e_lo, e_hi))
            arterial = native + enh
        elif t.arterial is None:
            arterial = native
        else:
            a_lo, a_typ, a_hi = t.arterial
            if typical:
                arterial = float(a_typ)
            elif t.name in _BOLUS_DRIVEN:
                # Piecewise so that bolus 0.5 maps to the typical value.
                pos = (
                    a_lo + 2 * bolus * (a_typ - a_lo)
                    if bolus < 0.5
                    else a_typ + (2 * bolus - 1) * (a_hi - a_typ)
                )
                arterial = float(np.clip(pos + rng.normal(0, (a_hi - a_lo) / 12.0), a_lo, a_hi))
            else:
                arterial = float(np.clip(rng.normal(a_typ, (a_hi - a_lo) / 5.0), a_lo, a_hi))
        out[t.name] = (native, arterial)
    # Anatomy the ranges alone cannot guarantee: medulla darker than cortex, spleen not above liver natively.
    cn, ca = out["kidney_cortex"]
    mn, ma = out["kidney_medulla"]
    out["kidney_medulla"] = (min(mn, cn - 2.0), min(ma, ca - 80.0))
    ln, la = out["liver"]
    sn, sa = out["spleen"]
    out["spleen"] = (min(sn, ln - 3.0), sa)
    return out


# --- contrast timing (acquisition="varied") ---------------------------------------------------
#: Typical enhancement (HU over native) at early arterial (~20 s after injection, timing 0), late
#: arterial (~35–40 s, timing 0.5: the table's typicals above) and portal venous (~65–75 s, timing 1).
#: Sources in docs/phantom.md: [B], [H], [F], [Y], [L], [RLA]; rows without one are chosen.
TIMING_ENHANCEMENT: dict[str, tuple[float, float, float]] = {
    "aorta": (260.0, 276.0, 125.0),
    "artery": (235.0, 246.0, 115.0),
    "ivc": (0.0, 28.0, 85.0),
    "portal_vein": (25.0, 86.0, 140.0),
    "renal_vein": (70.0, 116.0, 120.0),
    "hepatic_vein": (0.0, 11.0, 110.0),
    "liver": (4.0, 18.0, 55.0),
    "spleen": (45.0, 65.0, 70.0),
    "kidney_cortex": (130.0, 142.0, 140.0),
    "kidney_medulla": (15.0, 41.0, 105.0),
    "pancreas": (55.0, 70.0, 55.0),
    "bowel_wall": (30.0, 48.0, 45.0),
    "muscle": (4.0, 9.0, 14.0),
    "skin": (4.0, 8.0, 12.0),
    "intervertebral_disc": (4.0, 8.0, 10.0),
}
#: Dense cortical bone (HU, low / typical / high) for acquisition="varied": long-bone shafts reach it;
#: thin cortices (vertebrae, ribs) show less through partial volume ([P] bone 700–3000).
CORTICAL_VARIED = (1200.0, 1450.0, 1700.0)


def timing_curve(name: str, tau: float) -> float:
    """Typical enhancement (HU) of a tissue at timing ``tau`` (piecewise linear through the three phases)."""
    e0, e1, e2 = TIMING_ENHANCEMENT[name]
    t = float(np.clip(tau, 0.0, 1.0))
    return e0 + 2 * t * (e1 - e0) if t <= 0.5 else e1 + (2 * t - 1) * (e2 - e1)


def apply_timing(
    hu: dict[str, tuple[float, float]], tau: float, *, identity: bool
) -> dict[str, tuple[float, float]]:
    """Move a late-arterial table to timing ``tau`` (or remove all iodine when ``identity``).

    Each tissue keeps its own per-patient deviation from the typical late-arterial enhancement and
    moves along the typical time–attenuation curve, scaled by the patient's bolus strength (how the
    aorta compares with its typical late-arterial enhancement). Enhancement never goes negative.
    """
    out = dict(hu)
    if identity:
        return {k: (n, n) for k, (n, _) in hu.items()}
    an, aa = hu["aorta"]
    k = float(np.clip((aa - an) / TIMING_ENHANCEMENT["aorta"][1], 0.75, 1.3))
    for name in TIMING_ENHANCEMENT:
        n, a = hu[name]
        shift = k * (timing_curve(name, tau) - timing_curve(name, 0.5))
        out[name] = (n, n + max(a - n + shift, 0.0))
    cn, ca = out["kidney_cortex"]
    mn, ma = out["kidney_medulla"]
    out["kidney_medulla"] = (mn, min(ma, ca))
    return out
