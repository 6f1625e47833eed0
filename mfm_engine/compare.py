"""Solver and checkpoint comparison: one study, a grid of settings, a table of cost and quality.

The paper's solver ablation, run on the user's own slices: every (model, solver, steps) setting
translates the same slices; each row records the NFE and wall time it cost and, when a reference
is given, MAE (HU), SSIM and PSNR against it inside the reference's body mask. The outputs are kept
so that the per-voxel spread between settings (the *disagreement map*) can be shown or saved: a
cheap indicator of where the translation is uncertain.

    settings = parse_grid("euler:1,euler:2,heun:1,rk4:1")
    result = compare_grid({"demo": translator}, contrast.hu[40:42], settings, reference=native.hu[40:42])
    print(markdown_table(result.rows))
    spread = disagreement([run.hu for run in result.runs])      # max − min per voxel, HU

Qt-free; the viewer's solver grid and ``mfm compare`` both call it.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mfm_engine.errors import MFMError
from mfm_engine.solvers import SolverError, get_solver, nfe_for

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_GRID",
    "CompareError",
    "CompareResult",
    "CompareRow",
    "CompareRun",
    "Setting",
    "compare_grid",
    "disagreement",
    "markdown_table",
    "measure",
    "most_accurate",
    "pair_disagreement",
    "parse_grid",
    "parse_slices",
    "run_setting",
    "write_csv",
]


class CompareError(MFMError):
    """A comparison request that cannot be carried out (bad grid, bad slice range, mismatched shapes)."""


@dataclass(frozen=True)
class Setting:
    """One solver setting: a solver name and its number of steps (dopri5: steps sets its first step)."""

    solver: str
    steps: int = 1

    @property
    def token(self) -> str:
        """The grid syntax, e.g. 'euler:2'."""
        return f"{self.solver}:{self.steps}"

    @property
    def label(self) -> str:
        """Short human text, e.g. 'euler × 2' ('dopri5' alone: its step count is adaptive)."""
        if self.adaptive and self.steps == 1:
            return self.solver
        return f"{self.solver} × {self.steps}"

    @property
    def order(self) -> int:
        """The solver's order of accuracy."""
        return int(get_solver(self.solver).order)

    @property
    def adaptive(self) -> bool:
        """True for error-controlled solvers (their NFE is only known afterwards)."""
        return bool(get_solver(self.solver).adaptive)

    def expected_nfe(self) -> int | None:
        """NFE a flow model will spend (None for adaptive solvers)."""
        return nfe_for(self.solver, self.steps)


# The default: the low-NFE end where the paper's ablation lives, plus the adaptive reference.
DEFAULT_GRID: tuple[Setting, ...] = (
    Setting("euler", 1),
    Setting("euler", 2),
    Setting("euler", 3),
    Setting("euler", 5),
    Setting("midpoint", 1),
    Setting("midpoint", 3),
    Setting("heun", 1),
    Setting("rk3", 1),
    Setting("rk4", 1),
    Setting("adams", 5),
    Setting("dopri5", 1),
)


def parse_grid(text: str) -> list[Setting]:
    """Settings from 'euler:1,euler:2,heun:1,rk4:1,dopri5' (steps default to 1); duplicates kept once."""
    settings: list[Setting] = []
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    if not items:
        raise CompareError(f"the solver grid {text!r} names no setting; e.g. 'euler:1,heun:1,rk4:1'")
    for item in items:
        name, _, steps_text = item.partition(":")
        name = name.strip().lower()
        try:
            steps = int(steps_text) if steps_text.strip() else 1
        except ValueError:
            raise CompareError(
                f"solver grid item {item!r}: steps must be a whole number, as in 'euler:2'"
            ) from None
        if steps < 1:
            raise CompareError(f"solver grid item {item!r}: steps must be >= 1")
        try:
            get_solver(name)
        except SolverError as exc:
            raise CompareError(f"solver grid item {item!r}: {exc}") from None
        setting = Setting(name, steps)
        if setting not in settings:
            settings.append(setting)
    return settings


def parse_slices(text: str | None, n_slices: int) -> range:
    """Axial slice indices from 'a:b' (Python slice, end excluded; negatives count from the end) or 'k'."""
    if text is None or not str(text).strip():
        return range(n_slices)
    text = str(text).strip()
    try:
        if ":" in text:
            start_text, _, stop_text = text.partition(":")
            start = int(start_text) if start_text.strip() else None
            stop = int(stop_text) if stop_text.strip() else None
            chosen = range(n_slices)[slice(start, stop)]
        else:
            k = int(text)
            if not -n_slices <= k < n_slices:
                raise CompareError(f"slice {k} is outside the study's 0..{n_slices - 1}")
            chosen = range(k % n_slices, k % n_slices + 1)
    except ValueError:
        raise CompareError(f"slices must look like a:b or k (e.g. 10:20), got {text!r}") from None
    if len(chosen) == 0:
        raise CompareError(f"slices {text!r} select no slice of the study's {n_slices}")
    return chosen


def most_accurate(settings: Sequence[Setting]) -> int:
    """Index of the setting closest to the exact ODE solution: adaptive first, then highest (order, steps)."""
    if not settings:
        raise CompareError("no settings to choose from")
    return max(
        range(len(settings)), key=lambda i: (settings[i].adaptive, settings[i].order, settings[i].steps)
    )


@dataclass
class CompareRow:
    """One line of the table: what ran, what it cost, how close it came (None without a reference)."""

    model: str
    solver: str
    steps: int
    nfe: int
    seconds: float
    mae_hu: float | None = None
    ssim: float | None = None
    psnr_db: float | None = None
    direction: str = "c2n"
    slices: str = ""

    @property
    def label(self) -> str:
        """'solver × steps' (what a tile or a plot point is called)."""
        return Setting(self.solver, self.steps).label if self.solver in _solver_names() else self.solver


def _solver_names() -> set[str]:
    from mfm_engine.solvers import SOLVERS

    return set(SOLVERS)


@dataclass
class CompareRun:
    """A row with the translated slices it describes (HU, the input's shape)."""

    row: CompareRow
    hu: np.ndarray = field(repr=False)


@dataclass
class CompareResult:
    """Every run of a comparison, in the order they were made."""

    runs: list[CompareRun]

    @property
    def rows(self) -> list[CompareRow]:
        """The table rows."""
        return [run.row for run in self.runs]


def measure(out_hu: np.ndarray, reference_hu: np.ndarray, mask: np.ndarray | None) -> dict[str, float | None]:
    """MAE/SSIM/PSNR of ``out_hu`` against the reference in ``mask`` (None where SSIM cannot be taken)."""
    from mfm_engine.metrics import compare

    if mask is not None and not np.asarray(mask).any():
        return {"mae_hu": None, "ssim": None, "psnr_db": None}
    try:
        return compare(out_hu, reference_hu, mask)
    except ValueError:
        # A mask that leaves no pixel away from the border (a sliver of body): no meaningful figure.
        return {"mae_hu": None, "ssim": None, "psnr_db": None}


def _solver_label(translator: Any, setting: Setting) -> tuple[str, int]:
    kind = getattr(translator, "kind", "flow")
    if kind == "regression":
        return "single pass", 1
    if kind == "ddpm":
        return "ddim", setting.steps
    return setting.solver, setting.steps


def _slices_text(slices: range | None) -> str:
    if slices is None:
        return ""
    return f"{slices.start}:{slices.stop}" if len(slices) > 1 else str(slices.start)


def run_setting(
    translator: Any,
    hu: np.ndarray,
    setting: Setting,
    *,
    direction: str = "c2n",
    reference: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    model: str | None = None,
    batch_size: int | None = None,
    cancel: Callable[[], bool] | None = None,
    slices: range | None = None,
) -> CompareRun:
    """Translate ``hu`` ((H, W) or (B, H, W) HU) with one setting, in batches; metrics with a reference.

    NFE is the largest of the batches' (equal for fixed-step solvers); seconds is their sum.
    """
    from mfm_engine.translate import TranslationCancelled

    arr = np.asarray(hu, dtype=np.float32)
    if arr.ndim not in (2, 3):
        raise CompareError(f"expected a slice (H, W) or slices (B, H, W), got shape {arr.shape}")
    if reference is not None and np.shape(reference) != arr.shape:
        raise CompareError(
            f"the reference's shape {np.shape(reference)} differs from the input's {arr.shape}"
        )
    stack = arr[None] if arr.ndim == 2 else arr
    batch = batch_size or translator.auto_batch_size(*stack.shape[-2:])
    out = np.empty(stack.shape, dtype=np.float32)
    nfe, seconds = 0, 0.0
    for start in range(0, stack.shape[0], batch):
        if cancel is not None and cancel():
            raise TranslationCancelled(f"comparison cancelled during {setting.label}")
        res = translator.translate_array(
            stack[start : start + batch], direction=direction, solver=setting.solver, steps=setting.steps
        )
        out[start : start + batch] = res.hu
        nfe = max(nfe, int(res.nfe))
        seconds += float(res.seconds)
    result = out[0] if arr.ndim == 2 else out
    solver, steps = _solver_label(translator, setting)
    row = CompareRow(
        model=model or getattr(translator, "model_name", "model"),
        solver=solver,
        steps=steps,
        nfe=nfe,
        seconds=seconds,
        direction=direction,
        slices=_slices_text(slices),
    )
    if reference is not None:
        values = measure(result, np.asarray(reference, dtype=np.float32), mask)
        row.mae_hu, row.ssim, row.psnr_db = values["mae_hu"], values["ssim"], values["psnr_db"]
    return CompareRun(row, result)


def compare_grid(
    translators: Mapping[str, Any] | Any,
    hu: np.ndarray,
    settings: Sequence[Setting],
    *,
    direction: str = "c2n",
    reference: np.ndarray | None = None,
    mask: np.ndarray | None | str = "body",
    batch_size: int | None = None,
    slices: range | None = None,
    progress: Callable[[int, int, CompareRun], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> CompareResult:
    """Run every (model, setting) on the same slices; rows in model-major order.

    ``translators`` maps a label to a Translator (or is one Translator). ``mask='body'`` measures
    inside the reference's body mask (``metrics.body_mask``), ``None`` over every pixel, or an array.
    """
    from mfm_engine.metrics import body_mask

    if not isinstance(translators, Mapping):
        translators = {getattr(translators, "model_name", "model"): translators}
    if not translators:
        raise CompareError("no model to compare")
    if not settings:
        raise CompareError("no solver setting to compare")
    if isinstance(mask, str):
        if mask != "body":
            raise CompareError(f"mask must be 'body', None or an array, got {mask!r}")
        mask = body_mask(reference) if reference is not None else None
    total = len(translators) * len(settings)
    runs: list[CompareRun] = []
    for label, translator in translators.items():
        for setting in settings:
            run = run_setting(
                translator,
                hu,
                setting,
                direction=direction,
                reference=reference,
                mask=mask,
                model=label,
                batch_size=batch_size,
                cancel=cancel,
                slices=slices,
            )
            runs.append(run)
            if progress is not None:
                progress(len(runs), total, run)
    return CompareResult(runs)


# -- disagreement ------------------------------------------------------------------------------
def disagreement(outputs: Sequence[np.ndarray]) -> np.ndarray:
    """Per-voxel spread (max − min, HU, float32) of two or more outputs of the same shape."""
    if len(outputs) < 2:
        raise CompareError(f"the disagreement map needs at least two results, got {len(outputs)}")
    shapes = {np.shape(o) for o in outputs}
    if len(shapes) != 1:
        raise CompareError(f"results differ in shape: {sorted(shapes)}")
    hi = np.asarray(outputs[0], dtype=np.float32).copy()
    lo = hi.copy()
    for o in outputs[1:]:  # running max/min: no (n, z, y, x) stack in memory
        o = np.asarray(o, dtype=np.float32)
        np.maximum(hi, o, out=hi)
        np.minimum(lo, o, out=lo)
    return hi - lo


def pair_disagreement(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a − b| in HU (float32): the spread between two chosen settings."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if a.shape != b.shape:
        raise CompareError(f"results differ in shape: {a.shape} vs {b.shape}")
    return np.abs(a - b)


# -- tables ------------------------------------------------------------------------------------
CSV_COLUMNS = (
    "solver",
    "steps",
    "nfe",
    "seconds",
    "mae_hu",
    "ssim",
    "psnr_db",
    "model",
    "direction",
    "slices",
)
_DIGITS = {"seconds": 4, "mae_hu": 3, "ssim": 5, "psnr_db": 3}


def _cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.{_DIGITS.get(name, 4)}f}"
    return str(value)


def table_cells(rows: Sequence[CompareRow]) -> list[list[str]]:
    """Rows as strings in CSV_COLUMNS order (empty cells for missing metrics)."""
    return [[_cell(c, getattr(row, c)) for c in CSV_COLUMNS] for row in rows]


def write_csv(rows: Sequence[CompareRow], path: str | Path) -> Path:
    """Write the table as CSV (header = CSV_COLUMNS; metrics empty without a reference)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(CSV_COLUMNS)
            writer.writerows(table_cells(rows))
        tmp.replace(path)  # atomic: a reader never sees half a table
    except OSError as exc:
        raise CompareError(f"could not write {path}: {exc.strerror or exc}") from None
    return path


_MD_HEADERS = {
    "solver": "solver",
    "steps": "steps",
    "nfe": "NFE",
    "seconds": "seconds",
    "mae_hu": "MAE (HU)",
    "ssim": "SSIM",
    "psnr_db": "PSNR (dB)",
    "model": "model",
    "direction": "direction",
    "slices": "slices",
}


def markdown_table(rows: Sequence[CompareRow]) -> str:
    """The same table as Markdown (columns that are empty in every row are left out)."""
    cells = table_cells(rows)
    keep = [i for i, c in enumerate(CSV_COLUMNS) if any(r[i] for r in cells) or i < 4]
    metric_cols = {CSV_COLUMNS.index(c) for c in ("mae_hu", "ssim", "psnr_db")}
    if not any(cells[r][i] for r in range(len(cells)) for i in metric_cols):
        keep = [i for i in keep if i not in metric_cols]
    header = "| " + " | ".join(_MD_HEADERS[CSV_COLUMNS[i]] for i in keep) + " |"
    numeric = {"steps", "nfe", "seconds", "mae_hu", "ssim", "psnr_db"}
    rule = "|" + "|".join("---:" if CSV_COLUMNS[i] in numeric else "---" for i in keep) + "|"
    lines = [header, rule]
    lines += ["| " + " | ".join(r[i] for i in keep) + " |" for r in cells]
    return "\n".join(lines) + "\n"
