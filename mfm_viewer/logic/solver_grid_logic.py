"""The solver grid's arithmetic, without widgets: tiles, their run order, cache, differences, table, plot.

A *tile* is one (model, solver, steps) setting applied to the current axial slice. The widget asks
this module what to run (cheapest first, so most tiles fill in at once and the adaptive solver comes
last), keeps results in a cache per (model, direction, setting, slice), and turns results into the
images it paints: grey in the display window, the difference to the reference (or, without one, to
the most accurate setting's result) in the diverging map, and the spread between all settings.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mfm_engine.compare import CompareRow, Setting, disagreement, measure, most_accurate
from mfm_viewer.logic.difference import diverging_lut

MODES = ("solvers", "checkpoints")


@dataclass(frozen=True)
class TileSpec:
    """What one tile runs: a model (by id, with a display label), a direction and a solver setting."""

    model_id: str
    model_label: str
    direction: str
    setting: Setting

    @property
    def title(self) -> str:
        """Tile heading: the setting, e.g. 'heun × 2'."""
        return self.setting.label

    def cache_key(self, index: int) -> tuple[str, str, str, int, int]:
        """Everything that determines the tile's voxels on axial slice ``index``."""
        return (self.model_id, self.direction, self.setting.solver, self.setting.steps, index)


@dataclass
class TileResult:
    """A finished tile: the synthetic slice (HU), its cost and, with a reference, its metrics."""

    spec: TileSpec
    index: int
    hu: np.ndarray
    nfe: int
    seconds: float
    metrics: dict[str, float | None] | None = None
    # What actually ran, when the model is not a flow: 'single pass' (regression) or 'ddim' (DDPM).
    solver: str | None = None
    steps: int | None = None

    @property
    def label(self) -> str:
        """'heun × 2', or what a non-flow model did instead ('single pass', 'ddim × 50')."""
        if self.solver is None or self.solver == self.spec.setting.solver:
            return self.spec.setting.label
        return self.solver if self.solver == "single pass" else f"{self.solver} × {self.steps}"

    def row(self) -> CompareRow:
        """This tile as a line of the comparison table."""
        m = self.metrics or {}
        return CompareRow(
            model=self.spec.model_label,
            solver=self.solver or self.spec.setting.solver,
            steps=self.steps if self.steps is not None else self.spec.setting.steps,
            nfe=self.nfe,
            seconds=self.seconds,
            mae_hu=m.get("mae_hu"),
            ssim=m.get("ssim"),
            psnr_db=m.get("psnr_db"),
            direction=self.spec.direction,
            slices=str(self.index),
        )


def plan_tiles(
    mode: str,
    settings: Sequence[Setting],
    models: Sequence[tuple[str, str]],
    current_model: str | None,
    direction: str,
) -> list[TileSpec]:
    """Tiles in display order: the settings of the current model, or every model × the settings.

    ``models`` is a list of (label, model_id); ``current_model`` the id the engine panel has chosen.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    labels = dict((mid, label) for label, mid in models)
    if mode == "solvers":
        if current_model is None or current_model not in labels:
            return []
        return [TileSpec(current_model, labels[current_model], direction, s) for s in settings]
    return [TileSpec(mid, label, direction, s) for label, mid in models for s in settings]


def run_order(specs: Sequence[TileSpec]) -> list[int]:
    """Indices of ``specs``, cheapest first (by expected NFE; adaptive solvers last)."""

    def cost(i: int) -> tuple[int, float, int]:
        nfe = specs[i].setting.expected_nfe()
        return (1, math.inf, i) if nfe is None else (0, float(nfe), i)

    return sorted(range(len(specs)), key=cost)


class ResultCache:
    """Finished tiles per cache key, least recently used dropped first."""

    def __init__(self, max_items: int = 256) -> None:
        self.max_items = max_items
        self._items: OrderedDict[tuple, TileResult] = OrderedDict()

    def get(self, spec: TileSpec, index: int) -> TileResult | None:
        """The cached result, or None."""
        key = spec.cache_key(index)
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, result: TileResult) -> None:
        """Store a result."""
        key = result.spec.cache_key(result.index)
        self._items[key] = result
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def clear(self) -> None:
        """Forget everything (a new study, or a reference that changed the metrics)."""
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def tile_metrics(out_hu: np.ndarray, reference_hu: np.ndarray | None, mask: np.ndarray | None) -> dict | None:
    """MAE/SSIM/PSNR of a tile against the reference slice in its body mask (None without reference)."""
    if reference_hu is None:
        return None
    return measure(out_hu, reference_hu, mask)


def base_spec(specs: Sequence[TileSpec]) -> TileSpec | None:
    """Without a reference, tiles are compared with this one: the most accurate setting (first model)."""
    if not specs:
        return None
    return specs[most_accurate([s.setting for s in specs])]


def differences(
    results: Sequence[TileResult], reference_hu: np.ndarray | None, base: TileResult | None
) -> dict[TileSpec, np.ndarray]:
    """Each tile minus the reference slice, or minus the base result when there is no reference."""
    target = reference_hu if reference_hu is not None else (None if base is None else base.hu)
    if target is None:
        return {}
    return {r.spec: r.hu.astype(np.float32) - np.asarray(target, dtype=np.float32) for r in results}


def spread(results: Sequence[TileResult]) -> np.ndarray | None:
    """Per-pixel max − min over the finished tiles (None until two are there)."""
    if len(results) < 2:
        return None
    return disagreement([r.hu for r in results])


def convergence_mae(result: TileResult, base: TileResult, mask: np.ndarray | None) -> float:
    """MAE (HU) of a tile against the base result: the quality axis when there is no reference."""
    err = np.abs(result.hu.astype(np.float64) - base.hu.astype(np.float64))
    if mask is not None and mask.any():
        err = err[mask]
    return float(err.mean())


def plot_series(
    results: Sequence[TileResult],
    mode: str,
    base: TileResult | None = None,
    mask: np.ndarray | None = None,
) -> tuple[str, dict[str, list[tuple[int, float, str]]]]:
    """(y-axis title, {series name: [(nfe, value, point label), …] sorted by NFE}) for the quality plot.

    With metrics, y is MAE against the reference; otherwise MAE against the base result. Series are
    solvers (mode 'solvers') or models (mode 'checkpoints').
    """
    with_ref = any(r.metrics and r.metrics.get("mae_hu") is not None for r in results)
    title = "MAE vs reference (HU)" if with_ref else "MAE vs most accurate setting (HU)"
    series: dict[str, list[tuple[int, float, str]]] = {}
    for r in results:
        if with_ref:
            value = (r.metrics or {}).get("mae_hu")
        else:
            value = None if base is None else convergence_mae(r, base, mask)
        if value is None:
            continue
        name = r.spec.setting.solver if mode == "solvers" else r.spec.model_label
        label = r.spec.setting.label if mode == "checkpoints" else str(r.spec.setting.steps)
        series.setdefault(name, []).append((r.nfe, float(value), label))
    for points in series.values():
        points.sort()
    return title, series


# -- pixels -------------------------------------------------------------------------------------
def grey_rgb(hu: np.ndarray, levels: tuple[float, float]) -> np.ndarray:
    """(H, W, 3) uint8 grey of HU in a display window (low → black, high → white)."""
    lo, hi = levels
    g = np.clip((np.asarray(hu, dtype=np.float32) - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    g8 = np.round(g * 255).astype(np.uint8)
    return np.repeat(g8[..., None], 3, axis=2)


def diverging_rgb(diff_hu: np.ndarray, range_hu: float) -> np.ndarray:
    """(H, W, 3) uint8 of a difference in the diverging map: blue −range, white 0, red +range."""
    lut = diverging_lut()
    r = abs(float(range_hu)) or 1.0
    t = (np.clip(np.asarray(diff_hu, dtype=np.float32), -r, r) + r) / (2 * r)
    idx = np.round(t * (len(lut) - 1)).astype(np.intp)
    return lut[idx, :3]


def spread_lut(n: int = 256) -> np.ndarray:
    """(n, 3) uint8 sequential map for a spread ≥ 0: dark purple → orange → pale yellow."""
    stops = np.array([[40, 10, 90], [190, 50, 90], [250, 150, 40], [255, 250, 180]], dtype=np.float64)
    x = np.linspace(0, 1, len(stops))
    t = np.linspace(0, 1, n)
    return np.round(np.stack([np.interp(t, x, stops[:, c]) for c in range(3)], axis=1)).astype(np.uint8)


def spread_overlay_rgb(
    grey: np.ndarray, spread_hu: np.ndarray, range_hu: float, opacity: float = 0.85, floor_hu: float = 0.0
) -> np.ndarray:
    """The spread over a grey image: transparent at 0 (or below ``floor_hu``), opaque towards ``range_hu``."""
    lut = spread_lut()
    r = abs(float(range_hu)) or 1.0
    t = np.clip(np.asarray(spread_hu, dtype=np.float32) / r, 0.0, 1.0)
    colour = lut[np.round(t * (len(lut) - 1)).astype(np.intp)].astype(np.float32)
    alpha = (opacity * np.sqrt(t))[..., None]  # sqrt: small spreads stay visible
    alpha = np.where((np.asarray(spread_hu) <= floor_hu)[..., None], 0.0, alpha)
    out = grey.astype(np.float32) * (1 - alpha) + colour * alpha
    return np.round(out).astype(np.uint8)


def grid_shape(
    n: int,
    aspect: float = 1.0,
    width: float = 1600.0,
    height: float = 900.0,
    extra_h: float = 0.0,
    min_w: float = 0.0,
) -> tuple[int, int]:
    """(rows, cols) for ``n`` images of height/width ``aspect`` that makes them largest in a width × height
    area, when every tile also spends ``extra_h`` on text rows and needs ``min_w`` for its text."""
    if n <= 0:
        return 0, 0
    best, best_size = (1, n), -1.0
    for cols in range(1, n + 1):
        rows = math.ceil(n / cols)
        room_w = width / cols
        room_h = height / rows - extra_h
        if room_h <= 0 or (room_w < min_w and cols > 1):
            continue
        size = min(room_w, room_h / aspect)  # image width that fits its tile
        if size > best_size + 1e-9:
            best, best_size = (rows, cols), size
    return best
