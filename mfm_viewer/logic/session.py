"""What is open: input, reference, synthetic volume and previews, and what each pane shows. Qt-free."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mfm_engine.volume import Plane, Volume
from mfm_viewer.logic.difference import difference
from mfm_viewer.logic.engine_key import EngineKey, PreviewCache
from mfm_viewer.logic.reference import check_reference

INPUT, SYNTHETIC, REFERENCE = "input", "synthetic", "reference"
DIFF_INPUT, DIFF_REFERENCE = "diff_input", "diff_reference"
DIFF_MODES = ("panes", "overlay", "off")


@dataclass(frozen=True)
class PaneSpec:
    """One column of views: which series, its title, grey or difference, synthetic or measured."""

    key: str
    title: str
    kind: str  # 'grey' | 'diff'
    synthetic: bool
    overlay: str | None = None  # a difference key drawn over this grey pane


def _phase_title(volume: Volume, fallback: str) -> str:
    detail = volume.meta.get("phase") or str(volume.meta.get("series_description", ""))[:48]
    title = f"{fallback} · {detail}" if detail else fallback
    # The phantom is a stand-in, never a patient: say so wherever it is shown.
    if volume.meta.get("phantom") and "PHANTOM" not in title:
        title += " · PHANTOM"
    return title


class Session:
    """One open study with what has been made from it."""

    def __init__(self, input_volume: Volume) -> None:
        self.input = input_volume
        self.reference: Volume | None = None
        self.synthetic: Volume | None = None
        self.synthetic_key: EngineKey | None = None
        self.current_key: EngineKey | None = None  # the engine panel's settings (None: no model)
        self.previews = PreviewCache()

    # -- series -----------------------------------------------------------------------------
    def set_reference(self, reference: Volume | None) -> None:
        """Attach a reference on the input's grid (GeometryMismatchError otherwise), or detach it."""
        if reference is not None:
            check_reference(self.input, reference)
        self.reference = reference

    def set_synthetic(self, volume: Volume | None, key: EngineKey | None) -> None:
        """Attach a whole translated volume made with ``key``."""
        self.synthetic, self.synthetic_key = volume, key

    @property
    def synthetic_is_current(self) -> bool:
        """True when the synthetic volume was made with the current settings."""
        return self.synthetic is not None and self.synthetic_key == self.current_key

    @property
    def has_synthetic_pane(self) -> bool:
        """A synthetic pane is shown once there is a model or a synthetic volume."""
        return self.current_key is not None or self.synthetic is not None

    def synthetic_title(self) -> str:
        """'Synthetic native' or 'Synthetic contrast' after the direction."""
        key = self.current_key or self.synthetic_key
        return "Synthetic native" if key is None or key.direction == "c2n" else "Synthetic contrast"

    def panes(self, diff_mode: str = "panes") -> list[PaneSpec]:
        """The columns to show, left to right."""
        show_diff = self.has_synthetic_pane and diff_mode != "off"
        overlay = diff_mode == "overlay"
        out = [
            PaneSpec(
                INPUT,
                _phase_title(self.input, "Input"),
                "grey",
                self.input.is_synthetic,
                DIFF_INPUT if show_diff and overlay else None,
            )
        ]
        if self.has_synthetic_pane:
            out.append(PaneSpec(SYNTHETIC, self.synthetic_title(), "grey", True))
        if self.reference is not None:
            out.append(
                PaneSpec(
                    REFERENCE,
                    _phase_title(self.reference, "Reference"),
                    "grey",
                    self.reference.is_synthetic,
                    DIFF_REFERENCE if show_diff and overlay else None,
                )
            )
        if show_diff and not overlay:
            out.append(PaneSpec(DIFF_INPUT, "Synthetic − input", "diff", True))
            if self.reference is not None:
                out.append(PaneSpec(DIFF_REFERENCE, "Synthetic − reference", "diff", True))
        return out

    # -- slices -------------------------------------------------------------------------------
    def synthetic_slice(self, plane: Plane, index: int) -> np.ndarray | None:
        """The synthetic slice to show: the current settings' preview first, then the volume."""
        if plane == "axial" and self.current_key is not None:
            preview = self.previews.get(self.current_key, index)
            if preview is not None:
                return preview.hu
        if self.synthetic is not None:
            return self.synthetic.slice(plane, index)
        return None

    def slice(self, key: str, plane: Plane, index: int) -> np.ndarray | None:
        """HU slice (index order, as Volume.slice) of a pane, or None when there is nothing yet."""
        if key == INPUT:
            return self.input.slice(plane, index)
        if key == REFERENCE:
            return None if self.reference is None else self.reference.slice(plane, index)
        if key == SYNTHETIC:
            return self.synthetic_slice(plane, index)
        if key in (DIFF_INPUT, DIFF_REFERENCE):
            syn = self.synthetic_slice(plane, index)
            other = self.slice(INPUT if key == DIFF_INPUT else REFERENCE, plane, index)
            return None if syn is None or other is None else difference(syn, other)
        raise KeyError(f"unknown pane {key!r}")

    def hu_at(self, key: str, ijk: tuple[int, int, int]) -> float | None:
        """The value of one pane at voxel (i, j, k), or None where it has none."""
        i, j, k = ijk
        img = self.slice(key, "axial", k)
        return None if img is None else float(img[j, i])
