"""Keys for translation results: which model, direction, solver and steps made them. Qt-free."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

DIRECTIONS: dict[str, str] = {"c2n": "contrast → native", "n2c": "native → contrast"}


@dataclass(frozen=True)
class EngineKey:
    """The settings that determine a translation's voxels."""

    model_id: str
    direction: str
    solver: str
    steps: int

    def short_label(self) -> str:
        """Solver and steps only, e.g. 'euler × 4'."""
        return f"{self.solver} × {self.steps}"

    def label(self) -> str:
        """Short human text, e.g. 'euler × 4, contrast → native'."""
        return f"{self.solver} × {self.steps}, {DIRECTIONS.get(self.direction, self.direction)}"


@dataclass(frozen=True)
class SlicePreview:
    """One translated axial slice with its cost."""

    hu: np.ndarray
    nfe: int
    seconds: float


class PreviewCache:
    """Translated axial slices per (EngineKey, slice index), least recently used dropped first."""

    def __init__(self, max_slices: int = 96) -> None:
        self.max_slices = max_slices
        self._items: OrderedDict[tuple[EngineKey, int], SlicePreview] = OrderedDict()

    def get(self, key: EngineKey, index: int) -> SlicePreview | None:
        """The cached slice, or None."""
        item = self._items.get((key, index))
        if item is not None:
            self._items.move_to_end((key, index))
        return item

    def put(self, key: EngineKey, index: int, preview: SlicePreview) -> None:
        """Store a slice (evicting the least recently used beyond ``max_slices``)."""
        self._items[(key, index)] = preview
        self._items.move_to_end((key, index))
        while len(self._items) > self.max_slices:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Forget everything (a new study)."""
        self._items.clear()


def default_direction(phase: str | None) -> str:
    """'n2c' for a native input, else 'c2n' (the viewer's main use: contrast in, native out)."""
    return "n2c" if (phase or "").lower() in {"native", "non-contrast", "noncontrast"} else "c2n"
