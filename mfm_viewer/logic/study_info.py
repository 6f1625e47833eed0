"""What the viewer tells a reader about a study: head or body, reading warnings, true positions. Qt-free.

Head or body decides the window presets offered first (docs/viewer.md, "Window presets"):
1. DICOM BodyPartExamined: HEAD, BRAIN, SKULL (and a few synonyms) → head; any other value → body.
2. Otherwise the series description naming the head (HEAD, BRAIN, SKULL, CRANE, CEREBR, NEURO).
3. Otherwise the field of view: both in-plane extents ≤ 260 mm is head-sized (an adult abdomen
   needs 330–500 mm).
"""

from __future__ import annotations

import re

from mfm_engine.volume import Volume
from mfm_viewer.logic.orientation import normal_position_text, true_voxel_position

HEAD_BODY_PARTS = {"HEAD", "BRAIN", "SKULL", "HEADNECK", "IAC", "EAR", "ORBIT", "SINUS"}
_HEAD_WORDS = re.compile(r"\b(HEAD|BRAIN|SKULL|CRANE|CRANIUM|CEREBR\w*|NEURO|KOPF|SCHAEDEL|SCHÄDEL)\b", re.I)
HEAD_FOV_MM = 260.0
REGULARISED_PREFIX = "displayed regularised"
__all__ = [
    "warning_topic",
    "is_head",
    "head_reason",
    "reading_warnings",
    "regularised_warning",
    "slice_position_text",
    "true_voxel_position",
]


def body_part(volume: Volume) -> str:
    """BodyPartExamined of a DICOM source, upper-case, '' when absent."""
    dicom = volume.meta.get("dicom") or {}
    return str(dicom.get("body_part_examined") or volume.meta.get("body_part_examined") or "").strip().upper()


def head_reason(volume: Volume) -> str | None:
    """Why the study is taken for a head CT (a short phrase), or None when it is not."""
    part = body_part(volume)
    if part:
        return f"BodyPartExamined {part}" if part.replace(" ", "") in HEAD_BODY_PARTS else None
    description = str(volume.meta.get("series_description") or "")
    if _HEAD_WORDS.search(description):
        return f"series description '{description}'"
    nz, ny, nx = volume.shape
    fov_x, fov_y = nx * volume.spacing[0], ny * volume.spacing[1]
    if max(fov_x, fov_y) <= HEAD_FOV_MM and min(nx, ny) >= 64:
        return f"field of view {fov_x:.0f}×{fov_y:.0f} mm"
    return None


def is_head(volume: Volume) -> bool:
    """True for a head CT (see the module docstring for the rule)."""
    return head_reason(volume) is not None


def regularised_warning(volume: Volume) -> str | None:
    """The banner line for a stack drawn on a regular grid away from the scanner's positions."""
    if not volume.is_regularised:
        return None
    return (
        f"{REGULARISED_PREFIX.capitalize()}: the {volume.shape[0]} slices are drawn on a regular "
        f"{volume.spacing[2]:.2f} mm grid, up to {volume.regularisation_mm():.1f} mm from where the "
        "scanner placed them; slice positions and the HU probe give the scanner's own positions"
    )


# What a reader must know first: where slices really are, then what the pixels lost, then the rest.
_ORDER = ("displayed regularised", "gantry tilt", "gap", "uneven", "lossy", "modality", "uid", "empty")


def _rank(warning: str) -> int:
    low = warning.lower()
    return next((n for n, word in enumerate(_ORDER) if word in low), len(_ORDER))


def reading_warnings(volume: Volume) -> list[str]:
    """Every reading warning of a study, most important first, for the banner and exports' provenance."""
    out = [str(w) for w in volume.warnings]
    # Lossy compression is the reader's own warning (mfm_engine.io.dicom_lossy); the regularised
    # display is the viewer's to say.
    extra = regularised_warning(volume)
    if extra is not None:
        out.append(extra)
    return sorted(out, key=_rank)  # stable: the reader's order within a rank


def warning_topic(warning: str) -> str:
    """The short name of a warning for a one-line summary: its words before the first ':' (≤ 40 chars)."""
    head = warning.split(":", 1)[0].strip()
    return head if len(head) <= 40 else head[:39] + "…"


slice_position_text = normal_position_text  # the name the views use
