"""``evaluate``: the paper's tables (1–5) for any set of checkpoints, plus per-organ tables with identity.

Every number comes from the product's own path: :class:`mfm_engine.translate.Translator` on whole
volumes, slice by slice, so what is evaluated is what a user gets. Metrics (MAE in HU, SSIM, PSNR
with a 2000 HU data range) are computed per axial slice inside the target's body mask and averaged
over slices, as the paper averages per image; time is wall-clock seconds per slice on the device
used, after one warm-up call. ``identity`` is the input left unchanged (contrast judged as if it
were the native): the bar any model must clear.

Tables (Markdown and CSV in the output folder, also printed):

- ``table1_regression``: regression models, Test | Hold-out × (MAE, SSIM, PSNR), time, parameters;
- ``table2_ddpm``: per DDPM model, one row per split;
- ``table3_flow_c2n`` / ``table4_flow_n2c``: flow models at Euler, 1 step, each direction;
- ``table5_solvers``: per flow model, contrast → native, solver × steps with NFE and time;
- ``organs_<direction>_<split>``: mean HU inside organs (label maps of phantom data) against the
  true image, the mean error, and MAE inside the watched organs and over the body.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mfm_engine.atomic import atomic_write_text
from mfm_engine.errors import MFMError
from mfm_engine.intensity import model_to_hu
from mfm_engine.metrics import body_mask, compare, mae_hu
from mfm_engine.solvers import get_solver, nfe_for
from mfm_engine.translate import Translator
from mfm_engine.volume import Volume
from training.cache import SliceCache
from training.config import DEFAULT_ORGANS
from training.errors import ConfigError
from training.organs import OrganStats

#: The paper's Table 5 grid (solver, steps) plus its RK2 row as Heun.
ABLATION: tuple[tuple[str, int], ...] = (
    ("euler", 1),
    ("euler", 2),
    ("euler", 3),
    ("euler", 5),
    ("midpoint", 1),
    ("midpoint", 3),
    ("heun", 1),
    ("rk3", 1),
    ("rk4", 1),
)
#: Organs shown in the organ tables; the first three (the watched ones) make "organ MAE".
EVAL_ORGANS: tuple[str, ...] = (*DEFAULT_ORGANS, "liver", "pancreas", "bone_cancellous")
SPLIT_LABELS = {"test": "Test", "holdout": "Hold-out", "phantom": "Phantom"}
_DIR_LABEL = {"c2n": "contrast → native", "n2c": "native → contrast"}
_MIN_BODY_PIXELS = 64


@dataclass
class EvalPatient:
    """One evaluation patient; ``volumes()`` gives (contrast, native, labels) in HU, read when asked.

    Cache patients are read from the memory maps on every call, so a large test set never sits in
    memory whole; phantom patients are generated once and kept.
    """

    id: str
    split: str
    load: Callable[[], tuple[Volume, Volume, np.ndarray | None]]
    n_slices: int = 0

    def volumes(self) -> tuple[Volume, Volume, np.ndarray | None]:
        """(contrast, native, labels or None), labels on the native's grid."""
        return self.load()


def parse_seeds(text: str) -> list[int]:
    """'900-903' or '900,905,910' (or a mix) → seeds."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                a, b = part.split("-", 1)
                seeds.extend(range(int(a), int(b) + 1))
            elif part:
                seeds.append(int(part))
    except ValueError as exc:
        raise ConfigError(f"seeds must look like 900-903 or 900,901, got {text!r}") from exc
    if not seeds or min(seeds) < 0:
        raise ConfigError(f"no valid phantom seeds in {text!r}")
    return seeds


def patients_from_cache(
    cache: SliceCache, splits: list[str], *, max_slices: int | None = None
) -> list[EvalPatient]:
    """The cache's patients of the given splits (up to ``max_slices`` central slices each)."""
    out = []
    for split in splits:
        for p in cache.split(split):
            arr = cache.arrays(p.id)
            z0, z1 = 0, p.n_slices
            if max_slices is not None and p.n_slices > max_slices:
                z0 = (p.n_slices - max_slices) // 2
                z1 = z0 + max_slices
            spacing = tuple(p.spacing) if len(p.spacing) == 3 else (1.0, 1.0, 1.0)

            def load(arr=arr, z0=z0, z1=z1, spacing=spacing):
                contrast = Volume(model_to_hu(np.array(arr["contrast"][z0:z1], dtype=np.float32)), spacing)
                native = Volume(model_to_hu(np.array(arr["native"][z0:z1], dtype=np.float32)), spacing)
                labels = np.array(arr["labels"][z0:z1]) if "labels" in arr else None
                return contrast, native, labels

            out.append(EvalPatient(p.id, split, load, z1 - z0))
    if not out:
        raise ConfigError(f"{cache.root}: no patients in split(s) {', '.join(splits)}")
    return out


def patients_from_phantom(
    seeds: list[int],
    *,
    split: str = "phantom",
    slices: int = 30,
    size: int = 512,
    motion_mm: float = 0.0,
    acquisition: str = "varied",
) -> list[EvalPatient]:
    """Phantom patients generated on the fly (labels included); ``acquisition`` as in make_phantom_pair."""
    from mfm_engine.phantom import make_phantom_pair

    out = []
    for seed in seeds:
        pair = make_phantom_pair(
            seed, motion_mm=motion_mm, n_slices=slices, size=size, acquisition=acquisition
        )
        held = (pair.contrast, pair.native, pair.labels.hu.astype(np.uint8))
        out.append(EvalPatient(f"phantom-{seed:05d}", split, lambda held=held: held, pair.native.shape[0]))
    return out


@dataclass
class RunMetrics:
    """Metrics of one (model, direction, solver, steps) over one split."""

    mae_hu: float
    ssim: float
    psnr_db: float
    n_slices: int
    seconds_per_slice: float
    nfe: int
    organs: dict[str, dict[str, float]] = field(default_factory=dict)
    body_mae_hu: float = float("nan")


def _slice_rows(pred: np.ndarray, target: np.ndarray) -> list[dict[str, float]]:
    rows = []
    for k in range(target.shape[0]):
        mask = body_mask(target[k])
        if mask.sum() > _MIN_BODY_PIXELS:
            rows.append(compare(pred[k], target[k], mask))
    return rows


def measure(
    patients: list[EvalPatient],
    run,
    *,
    direction: str,
    legend: dict[int, str] | None,
    organs: tuple[str, ...] = EVAL_ORGANS,
) -> dict[str, RunMetrics]:
    """Apply ``run(volume) -> (translated HU (z,H,W), nfe, seconds)`` to every patient; metrics per split."""
    by_split: dict[str, list[EvalPatient]] = {}
    for p in patients:
        by_split.setdefault(p.split, []).append(p)
    out: dict[str, RunMetrics] = {}
    for split, group in by_split.items():
        rows: list[dict[str, float]] = []
        seconds = 0.0
        n_slices = 0
        nfe = 0
        abs_sum = 0.0
        n_body = 0
        stats = None
        if legend is not None:
            present = [o for o in organs if o in legend.values()]
            stats = OrganStats(present, legend, union_organs=[o for o in DEFAULT_ORGANS if o in present])
        for p in group:
            contrast, native, labels = p.volumes()
            source, target = (contrast, native) if direction == "c2n" else (native, contrast)
            pred, nfe, secs = run(source)
            seconds += secs
            n_slices += source.shape[0]
            rows += _slice_rows(pred, target.hu)
            mask = body_mask(target.hu)
            if mask.any():
                abs_sum += mae_hu(pred, target.hu, mask) * int(mask.sum())
                n_body += int(mask.sum())
            if labels is None:
                stats = None  # organ numbers only where every patient of the split has labels
            if stats is not None:
                stats.add(pred, target.hu, source.hu, labels)
        if not rows:
            continue
        out[split] = RunMetrics(
            mae_hu=float(np.mean([r["mae_hu"] for r in rows])),
            ssim=float(np.mean([r["ssim"] for r in rows])),
            psnr_db=float(np.mean([r["psnr_db"] for r in rows])),
            n_slices=len(rows),
            seconds_per_slice=seconds / max(n_slices, 1),
            nfe=nfe,
            organs=stats.result() if stats is not None else {},
            body_mae_hu=abs_sum / n_body if n_body else float("nan"),
        )
    return out


def identity_run(volume: Volume) -> tuple[np.ndarray, int, float]:
    """The do-nothing baseline: the input as the output."""
    return volume.hu, 0, 0.0


def translator_run(translator: Translator, direction: str, solver: str, steps: int):
    """A ``run`` for :func:`measure` through the product's Translator (whole volumes)."""

    def run(volume: Volume) -> tuple[np.ndarray, int, float]:
        start = time.perf_counter()
        out = translator.translate_volume(volume, direction=direction, solver=solver, steps=steps)
        seconds = time.perf_counter() - start
        return out.hu, int(out.meta.get("provenance", {}).get("nfe", 0)), seconds

    return run


# -- tables -----------------------------------------------------------------------------------------


@dataclass
class Table:
    """A titled table: header, rows of cells, and which columns are better low/high (for bolding)."""

    name: str
    title: str
    header: list[str]
    rows: list[list[Any]]
    better: list[str | None]
    note: str = ""
    # Rows that are references (identity, truth): never bolded, never "best".
    reference_rows: set[int] = field(default_factory=set)

    def _fmt(self, v: Any) -> str:
        if isinstance(v, float):
            if not np.isfinite(v):
                return "–"
            return f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}"
        return str(v)

    def markdown(self) -> str:
        """The table in Markdown, best value per column in bold (second best underlined)."""
        cells = [[self._fmt(v) for v in row] for row in self.rows]
        for j, rule in enumerate(self.better):
            if rule is None:
                continue
            vals = [
                (row[j], i)
                for i, row in enumerate(self.rows)
                if i not in self.reference_rows and isinstance(row[j], float) and np.isfinite(row[j])
            ]
            if len(vals) < 2:
                continue
            ranked = sorted(vals, key=lambda x: x[0], reverse=(rule == "high"))
            cells[ranked[0][1]][j] = f"**{cells[ranked[0][1]][j]}**"
            if len(vals) > 2:
                cells[ranked[1][1]][j] = f"<u>{cells[ranked[1][1]][j]}</u>"
        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(self.header) + " |")
        lines.append("|" + "|".join("---" for _ in self.header) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines) + "\n"

    def write(self, folder: Path) -> None:
        """<name>.md and <name>.csv (plain numbers) in ``folder``."""
        atomic_write_text(folder / f"{self.name}.md", self.markdown())
        tmp = folder / f".{self.name}.csv.tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(self.header)
            for row in self.rows:
                w.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])
        os.replace(tmp, folder / f"{self.name}.csv")


def _split_cols(splits: list[str]) -> tuple[list[str], list[str | None]]:
    header, better = [], []
    for s in splits:
        label = SPLIT_LABELS.get(s, s)
        header += [f"{label} MAE (HU)↓", f"{label} SSIM↑", f"{label} PSNR (dB)↑"]
        better += ["low", "high", "high"]
    return header, better


def _split_cells(m: dict[str, RunMetrics], splits: list[str]) -> list[Any]:
    cells: list[Any] = []
    for s in splits:
        r = m.get(s)
        cells += [r.mae_hu, r.ssim, r.psnr_db] if r else [float("nan")] * 3
    return cells


def _time(m: dict[str, RunMetrics]) -> float:
    vals = [r.seconds_per_slice for r in m.values()]
    return float(np.mean(vals)) if vals else float("nan")


@dataclass
class ModelEntry:
    """A loaded checkpoint to evaluate."""

    name: str
    path: str
    kind: str
    direction: str | None
    params_m: float
    translator: Translator


def load_models(paths: list[str], device: str) -> list[ModelEntry]:
    """Load every checkpoint (clear errors for bad files); names are the file stems, made unique."""
    out = []
    seen: dict[str, int] = {}
    for p in paths:
        tr = Translator.from_checkpoint(p, device=device, precision="fp32" if device == "cpu" else "auto")
        from mfm_engine.checkpoint import read_checkpoint_meta

        meta = read_checkpoint_meta(p)
        stem = Path(meta.weights_path).stem
        parent = Path(meta.weights_path).parent
        base = f"{parent.parent.name}/{stem}" if parent.name == "checkpoints" else stem
        seen[base] = seen.get(base, 0) + 1
        name = base if seen[base] == 1 else f"{base} ({seen[base]})"
        out.append(ModelEntry(name, str(p), meta.kind, meta.direction, meta.parameter_count / 1e6, tr))
    return out


def evaluate(
    checkpoints: list[str],
    patients: list[EvalPatient],
    *,
    out: str | os.PathLike[str] | None,
    legend: dict[int, str] | None,
    device: str = "cpu",
    ablation: tuple[tuple[str, int], ...] | None = ABLATION,
    ddpm_steps: int = 50,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate checkpoints on patients; write tables to ``out`` (if given); returns all numbers."""
    if ablation:
        for solver, _steps in ablation:
            try:
                get_solver(solver)
            except MFMError as exc:
                raise ConfigError(f"ablation: {exc}") from exc
    models = load_models(checkpoints, device)
    splits = [s for s in ("test", "holdout", "phantom") if any(p.split == s for p in patients)]
    splits += sorted({p.split for p in patients} - set(splits))
    say = (lambda m: print(m, file=sys.stderr)) if progress else (lambda m: None)

    results: dict[str, Any] = {"splits": splits, "models": [], "identity": {}}
    identity = {d: measure(patients, identity_run, direction=d, legend=legend) for d in ("c2n", "n2c")}
    results["identity"] = {d: {s: r.__dict__ for s, r in m.items()} for d, m in identity.items()}
    runs: dict[tuple[str, str, str, int], dict[str, RunMetrics]] = {}
    for m in models:
        # One warm-up call: the first forward pays for allocation and kernel selection.
        m.translator.translate_array(
            patients[0].volumes()[0].hu[:1], direction=m.direction or "c2n", solver="euler", steps=1
        )
        directions = [m.direction] if m.direction else ["c2n", "n2c"]
        for d in directions:
            grid = [("euler", 1)]
            if m.kind == "ddpm":
                grid = [("ddim", ddpm_steps)]
            elif m.kind == "regression":
                grid = [("single pass", 1)]
            elif d == "c2n" and ablation:
                grid = list(dict.fromkeys([("euler", 1), *ablation]))
            for solver, steps in grid:
                say(f"evaluate: {m.name} {d} {solver}×{steps}")
                run = translator_run(m.translator, d, solver if m.kind == "flow" else "euler", steps)
                runs[(m.name, d, solver, steps)] = measure(patients, run, direction=d, legend=legend)
        results["models"].append(
            {
                "name": m.name,
                "checkpoint": m.path,
                "kind": m.kind,
                "direction": m.direction,
                "params_m": m.params_m,
            }
        )
    results["runs"] = [
        {
            "model": k[0],
            "direction": k[1],
            "solver": k[2],
            "steps": k[3],
            "splits": {s: r.__dict__ for s, r in v.items()},
        }
        for k, v in runs.items()
    ]
    tables = build_tables(models, runs, identity, splits, ablation or ())
    results["tables"] = [t.name for t in tables]
    text = "\n".join(t.markdown() for t in tables)
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        for t in tables:
            t.write(folder)
        atomic_write_text(folder / "tables.md", _tables_header(patients, device) + text)
        atomic_write_text(
            folder / "results.json", json.dumps(results, indent=2, default=_json_default) + "\n"
        )
    results["markdown"] = text
    return results


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def _tables_header(patients: list[EvalPatient], device: str) -> str:
    counts: dict[str, int] = {}
    for p in patients:
        counts[p.split] = counts.get(p.split, 0) + 1
    parts = ", ".join(f"{SPLIT_LABELS.get(s, s)}: {n} patient(s)" for s, n in counts.items())
    return (
        "# Evaluation\n\n"
        f"{parts}. Metrics per axial slice inside the target's body mask, averaged over slices; "
        f"time in seconds per slice on {device}. Identity = the input unchanged.\n\n"
    )


def build_tables(
    models: list[ModelEntry],
    runs: dict[tuple[str, str, str, int], dict[str, RunMetrics]],
    identity: dict[str, dict[str, RunMetrics]],
    splits: list[str],
    ablation: tuple[tuple[str, int], ...],
) -> list[Table]:
    """The paper's table layouts from measured runs (tables without rows are left out)."""
    cols, better = _split_cols(splits)
    tables: list[Table] = []

    def main_table(
        name: str, title: str, entries: list[tuple[str, dict[str, RunMetrics], float]], id_dir: str
    ):
        header = ["Name", *cols, "Time (s)↓", "Params (M)↓"]
        rows = [[n, *_split_cells(m, splits), _time(m), p] for n, m, p in entries]
        rows.append(
            [
                "identity (input unchanged)",
                *_split_cells(identity[id_dir], splits),
                float("nan"),
                float("nan"),
            ]
        )
        tables.append(
            Table(name, title, header, rows, [None, *better, "low", "low"], reference_rows={len(rows) - 1})
        )

    for d, label in (("c2n", "contrast → native"), ("n2c", "native → contrast")):
        reg = [
            (m.name, runs[(m.name, d, "single pass", 1)], m.params_m)
            for m in models
            if m.kind == "regression" and m.direction == d
        ]
        if reg:
            main_table(
                f"table1_regression_{d}" if d == "n2c" else "table1_regression",
                f"Table 1 — regression ({label})",
                reg,
                d,
            )
    for m in models:
        if m.kind != "ddpm":
            continue
        key = next(k for k in runs if k[0] == m.name)
        header = ["Split", "MAE (HU)↓", "SSIM↑", "PSNR (dB)↑", "Time (s)↓"]
        rows = [
            [SPLIT_LABELS.get(s, s), r.mae_hu, r.ssim, r.psnr_db, r.seconds_per_slice]
            for s, r in runs[key].items()
        ]
        tables.append(
            Table(
                "table2_ddpm"
                if len(tables) == 0 or not any(t.name.startswith("table2") for t in tables)
                else f"table2_ddpm_{m.name.replace('/', '_')}",
                f"Table 2 — DDPM {m.name} ({m.direction}, DDIM {key[3]} steps)",
                header,
                rows,
                [None, None, None, None, None],
            )
        )
    for d, num in (("c2n", 3), ("n2c", 4)):
        flow = [(m.name, runs[(m.name, d, "euler", 1)], m.params_m) for m in models if m.kind == "flow"]
        if flow:
            main_table(
                f"table{num}_flow_{d}",
                f"Table {num} — Flow Matching, {_DIR_LABEL[d]} (Euler, 1 step)",
                flow,
                d,
            )
    for m in models:
        if m.kind != "flow" or not ablation:
            continue
        header = ["Solver (steps)", *cols, "Time (s)↓", "NFE↓"]
        has_organs = any(r.organs for r in runs[(m.name, "c2n", "euler", 1)].values())
        if has_organs:
            header += [f"{SPLIT_LABELS.get(s, s)} organ MAE (HU)↓" for s in splits]
        rows = []
        for solver, steps in dict.fromkeys([("euler", 1), *ablation]):
            r = runs[(m.name, "c2n", solver, steps)]
            row = [f"{solver} ({steps})", *_split_cells(r, splits), _time(r), nfe_for(solver, steps) or 0]
            if has_organs:
                row += [
                    r[s].organs.get("organs", {}).get("mae_hu", float("nan")) if s in r else float("nan")
                    for s in splits
                ]
            rows.append(row)
        b = [None, *better, "low", None] + (["low"] * len(splits) if has_organs else [])
        suffix = "" if sum(x.kind == "flow" for x in models) == 1 else f"_{m.name.replace('/', '_')}"
        tables.append(
            Table(
                f"table5_solvers{suffix}", f"Table 5 — solvers, contrast → native, {m.name}", header, rows, b
            )
        )
    tables += organ_tables(models, runs, identity, splits)
    return tables


def organ_tables(
    models: list[ModelEntry],
    runs: dict[tuple[str, str, str, int], dict[str, RunMetrics]],
    identity: dict[str, dict[str, RunMetrics]],
    splits: list[str],
) -> list[Table]:
    """Per direction and split: mean HU per organ (error vs the truth), organ MAE and body MAE."""
    tables = []
    for d, truth in (("c2n", "native"), ("n2c", "contrast")):
        for s in splits:
            ident = identity[d].get(s)
            if ident is None or not ident.organs:
                continue
            organs = [o for o in ident.organs if o != "organs" and ident.organs[o].get("voxels")]
            header = ["Model", *[f"{o} HU (Δ)" for o in organs], "organ MAE (HU)↓", "body MAE (HU)↓"]
            rows: list[list[Any]] = [
                [
                    f"true {truth}",
                    *[f"{ident.organs[o]['true_mean_hu']:.1f}" for o in organs],
                    float("nan"),
                    float("nan"),
                ]
            ]

            def row(name: str, r: RunMetrics, organs: list[str] = organs) -> list[Any]:
                cells = [
                    f"{r.organs[o]['pred_mean_hu']:.1f} ({r.organs[o]['mean_error_hu']:+.1f})"
                    if r.organs.get(o, {}).get("voxels")
                    else "–"
                    for o in organs
                ]
                return [name, *cells, r.organs.get("organs", {}).get("mae_hu", float("nan")), r.body_mae_hu]

            rows.append(row(f"identity (input {('contrast' if d == 'c2n' else 'native')})", ident))
            for m in models:
                if m.direction not in (None, d):
                    continue
                key = (
                    (m.name, d, "euler", 1)
                    if m.kind == "flow"
                    else next(k for k in runs if k[0] == m.name and k[1] == d)
                )
                r = runs[key].get(s)
                if r is not None:
                    label = {"flow": "Euler ×1", "regression": "single pass", "ddpm": f"DDIM ×{key[3]}"}[
                        m.kind
                    ]
                    rows.append(row(f"{m.name} ({label})", r))
            n_cols = len(header)
            better = [None] * (n_cols - 2) + ["low", "low"]
            union = ", ".join(o for o in DEFAULT_ORGANS if o in organs)
            note = (
                "Mean HU inside each organ (masks eroded by one voxel in-plane), pooled over the "
                f"{SPLIT_LABELS.get(s, s)} patients; Δ = synthetic − true {truth}. Organ MAE over {union} "
                "together; body MAE inside the body mask."
            )
            tables.append(
                Table(
                    f"organs_{d}_{s}",
                    f"Organs — {_DIR_LABEL[d]}, {SPLIT_LABELS.get(s, s)}",
                    header,
                    rows,
                    better,
                    note,
                    reference_rows={0, 1},
                )
            )
    return tables
