"""Designing a blinded study: choose cases, make missing synthetic volumes, write the bundle and its key.

Candidate cases are patients with a real native and a synthetic native (given as a file, or made now
from the patient's contrast series with a chosen model / solver / steps). ``paired`` mode shows both
of a patient side by side (which side is synthetic is drawn per case); ``single`` mode shows one
volume per patient, half of the cases real and half synthetic, each patient at most once.

Real and synthetic volumes go through one presentation pipeline (`present_pair`), so nothing but
the voxels themselves can tell them apart:

1. **Grid** — when the two are not on the same grid, both are resampled (linear) onto a common grid:
   the overlap of the two, axis-aligned to the real native, at the coarser spacing, offset by half a
   voxel so that neither volume keeps its own samples.
2. **Field of view** — voxels outside the scanner's field of view (any value below -1100 HU in the real
   native or in the contrast series the synthetic came from: padding such as -2048 or -3024) are set
   to the same padding value in both.
3. **Range** — both are clipped to the model's HU range (default [-1000, 1000]); a model cannot make
   values outside it, and a scanner's bone above +1000 HU would otherwise give the real one away in a
   bone window. Padding is the range's lower end.
4. **Type** — both are rounded to whole HU and stored as int16 (see `bundle.write_case_volume`).
"""

from __future__ import annotations

import csv
import os
import secrets
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mfm_engine.atomic import atomic_write_text
from mfm_engine.cancel import CancelFlag, is_cancelled
from mfm_engine.reader_study.bundle import (
    FIXED_MTIME,
    MANIFEST_NAME,
    SIDES,
    VOLUME_SUFFIX,
    VOLUMES_DIR,
    BundleCase,
    CaseFile,
    Key,
    KeyCase,
    Manifest,
    StudySettings,
    bundle_sha256,
    manifest_sha256,
    write_case_volume,
    write_key,
)
from mfm_engine.reader_study.common import ReaderStudyError, canonical_json, check_mode
from mfm_engine.volume import Volume

# Below any real tissue or air (air is about -1000 HU, with noise): only field-of-view padding.
PADDING_BELOW_HU = -1100.0
DEFAULT_WINDOW = "abdomen (Slicer)"

Progress = Callable[[int, int, str], object]


# -- sources ------------------------------------------------------------------------------------------


@dataclass
class SynthesisSettings:
    """How to make a synthetic native from a contrast series when a case has none yet."""

    model: str  # checkpoint path (.safetensors with its .json)
    solver: str = "euler"
    steps: int = 10
    device: str = "auto"

    def to_json(self) -> dict[str, Any]:
        """For the key's design section."""
        return {
            "model": str(self.model),
            "solver": self.solver,
            "steps": int(self.steps),
            "device": self.device,
        }


@dataclass
class LoadedCase:
    """The volumes of one patient, ready for the presentation pipeline."""

    real: Volume
    synthetic: Volume
    contrast: Volume | None
    real_source: str
    synthetic_source: str


@dataclass
class CaseSource:
    """One candidate patient: a real native and a synthetic one (a file, or made now from contrast)."""

    label: str
    native_path: str | None = None
    synthetic_path: str | None = None
    contrast_path: str | None = None
    phantom_seed: int | None = None
    phantom_slices: int | None = 16
    phantom_size: int = 256
    native_volume: Volume | None = field(default=None, repr=False)
    synthetic_volume: Volume | None = field(default=None, repr=False)
    contrast_volume: Volume | None = field(default=None, repr=False)

    @property
    def needs_model(self) -> bool:
        """True when the synthetic native must be made now (there is none yet)."""
        return self.synthetic_path is None and self.synthetic_volume is None

    def load(self, translator: Any | None, synthesis: SynthesisSettings | None) -> LoadedCase:
        """Read (or generate) the volumes; make the synthetic with ``translator`` when there is none."""
        from mfm_engine.io.study import read_study

        contrast = self.contrast_volume
        if self.phantom_seed is not None:
            from mfm_engine.phantom import make_phantom_pair

            # motion 0: the contrast phase on the native's grid, so the pair needs no resampling.
            pair = make_phantom_pair(
                int(self.phantom_seed), motion_mm=0.0, n_slices=self.phantom_slices, size=self.phantom_size
            )
            real, contrast = pair.native, pair.contrast
            real_source = f"phantom seed {self.phantom_seed} native"
            contrast_source = f"phantom seed {self.phantom_seed} arterial"
        else:
            if self.native_volume is not None:
                real, real_source = (
                    self.native_volume,
                    self.native_volume.meta.get("source_path") or self.label,
                )
            elif self.native_path:
                real, real_source = read_study(self.native_path), str(self.native_path)
            else:
                raise ReaderStudyError(f"case {self.label!r}: no real native series was given")
            contrast_source = str(
                self.contrast_path or (contrast.meta.get("source_path") if contrast else "")
            )
            if contrast is None and self.contrast_path:
                contrast = read_study(self.contrast_path)
        if self.synthetic_volume is not None:
            synthetic = self.synthetic_volume
            synthetic_source = str(synthetic.meta.get("source_path") or f"{self.label} synthetic (given)")
        elif self.synthetic_path:
            synthetic, synthetic_source = read_study(self.synthetic_path), str(self.synthetic_path)
        else:
            if contrast is None:
                raise ReaderStudyError(
                    f"case {self.label!r}: has neither a synthetic native "
                    "nor a contrast series to make one from"
                )
            if translator is None or synthesis is None:
                raise ReaderStudyError(
                    f"case {self.label!r}: has no synthetic native yet; give a model (--model) to make one"
                )
            synthetic = translator.translate_volume(
                contrast, direction="c2n", solver=synthesis.solver, steps=int(synthesis.steps)
            )
            synthetic_source = f"synthesised now from {contrast_source or 'its contrast series'}"
        return LoadedCase(real, synthetic, contrast, str(real_source), synthetic_source)


def read_cases_csv(path: str | os.PathLike[str]) -> list[CaseSource]:
    """Candidate cases from a CSV: columns ``native``, ``synthetic`` and/or ``contrast``, ``id`` optional.

    Relative paths are taken from the CSV's folder.
    """
    target = Path(path)
    if not target.is_file():
        raise ReaderStudyError(f"{target}: cases CSV not found")
    try:
        with open(target, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ReaderStudyError(f"{target}: cannot read the cases CSV: {exc}") from exc
    if not rows:
        raise ReaderStudyError(
            f"{target}: the cases CSV has no rows (columns: id, native, synthetic, contrast)"
        )
    columns = {c.strip().lower() for c in rows[0] if c}
    if "native" not in columns or not ({"synthetic", "contrast"} & columns):
        raise ReaderStudyError(
            f"{target}: the cases CSV needs a 'native' column and a 'synthetic' and/or 'contrast' column; "
            f"found {sorted(columns)}"
        )
    base = target.parent
    sources: list[CaseSource] = []
    labels: set[str] = set()
    for line, row in enumerate(rows, start=2):
        row = {str(k).strip().lower(): (v or "").strip() for k, v in row.items() if k}

        def resolve(name: str, row=row) -> str | None:
            value = row.get(name) or ""
            return str(base / value) if value and not os.path.isabs(value) else (value or None)

        native, synthetic, contrast = resolve("native"), resolve("synthetic"), resolve("contrast")
        if not native:
            raise ReaderStudyError(f"{target}: line {line} has no native path")
        if not synthetic and not contrast:
            raise ReaderStudyError(f"{target}: line {line} needs a synthetic or a contrast path")
        for p in (native, synthetic, contrast):
            if p and not Path(p).exists():
                raise ReaderStudyError(f"{target}: line {line}: {p} does not exist")
        label = row.get("id") or row.get("case") or row.get("label") or Path(native).name
        if label in labels:
            raise ReaderStudyError(f"{target}: line {line}: case id {label!r} appears twice")
        labels.add(label)
        sources.append(
            CaseSource(label, native_path=native, synthetic_path=synthetic, contrast_path=contrast)
        )
    return sources


def parse_seeds(items: Sequence[str | int]) -> list[int]:
    """Phantom seeds from items such as '3', '1-20' or '1,2,5' (duplicates dropped, order kept)."""
    seeds: list[int] = []
    for item in items:
        for part in str(item).replace(",", " ").split():
            try:
                if "-" in part.strip("-"):
                    lo, hi = (int(x) for x in part.split("-", 1))
                    if hi < lo:
                        raise ValueError
                    seeds.extend(range(lo, hi + 1))
                else:
                    seeds.append(int(part))
            except ValueError as exc:
                raise ReaderStudyError(
                    f"phantom seeds: {part!r} is not a number or a range like 1-20"
                ) from exc
    if any(s < 0 for s in seeds):
        raise ReaderStudyError("phantom seeds must be ≥ 0")
    return list(dict.fromkeys(seeds))


def phantom_sources(seeds: Sequence[int], n_slices: int | None = 16, size: int = 256) -> list[CaseSource]:
    """Candidate cases from procedural phantom patients (their arterial phase is translated by the model)."""
    return [
        CaseSource(f"phantom seed {s}", phantom_seed=int(s), phantom_slices=n_slices, phantom_size=size)
        for s in seeds
    ]


# -- the plan -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedCase:
    """One case of the design: which candidate, and the truth of each side."""

    source_index: int
    truth: dict[str, str]  # side -> 'real' | 'synthetic'


def plan_design(n_sources: int, mode: str, n: int, seed: int) -> list[PlannedCase]:
    """Choose ``n`` of ``n_sources`` candidates and draw the truth of each side, reproducibly from ``seed``.

    paired: the synthetic side is drawn per case (left or right, probability ½ each).
    single: each chosen patient appears once; exactly half of the cases are real (``n`` must be even).
    """
    check_mode(mode)
    if not isinstance(n, int) or n < 1:
        raise ReaderStudyError(f"the number of cases must be a positive integer, got {n!r}")
    if n > n_sources:
        raise ReaderStudyError(f"{n} cases asked for, but only {n_sources} candidate studies were given")
    if mode == "single" and n % 2:
        raise ReaderStudyError(
            f"single-image mode shows half real and half synthetic: give an even number, not {n}"
        )
    rng = np.random.default_rng(seed)
    chosen = [int(i) for i in rng.choice(n_sources, size=n, replace=False)]
    if mode == "paired":
        flips = rng.integers(0, 2, size=n)
        truths = [
            {"left": "synthetic", "right": "real"} if f else {"left": "real", "right": "synthetic"}
            for f in flips
        ]
    else:
        labels = np.array(["real"] * (n // 2) + ["synthetic"] * (n // 2))
        truths = [{"image": str(t)} for t in rng.permutation(labels)]
    return [PlannedCase(i, t) for i, t in zip(chosen, truths, strict=True)]


# -- the presentation pipeline ------------------------------------------------------------------------


@dataclass
class Grid:
    """A sampling grid: (z, y, x) size, spacing and origin (x, y, z) in mm, direction (LPS)."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray


@dataclass
class Presented:
    """Both volumes of a patient after the pipeline: int16 HU on one grid."""

    real: np.ndarray
    synthetic: np.ndarray
    spacing: tuple[float, float, float]
    direction: np.ndarray
    resampled: bool
    padded_voxels: int


def common_grid(a: Volume, b: Volume) -> Grid:
    """The overlap of two grids, aligned to ``a``'s axes, at the coarser spacing, offset by half a voxel."""
    dir_a = np.asarray(a.direction, dtype=np.float64)
    sp_a = np.asarray(a.spacing, dtype=np.float64)
    size_a = np.asarray(a.shape[::-1], dtype=np.float64)

    def box(vol: Volume) -> tuple[np.ndarray, np.ndarray]:
        n = np.asarray(vol.shape[::-1], dtype=np.float64)
        corners = np.array(
            [[i, j, k] for i in (-0.5, n[0] - 0.5) for j in (-0.5, n[1] - 0.5) for k in (-0.5, n[2] - 0.5)]
        )
        phys = np.array([vol.index_to_physical(tuple(c)) for c in corners])
        local = (phys - np.asarray(a.origin)) @ dir_a  # coordinates along a's axes, mm
        return local.min(axis=0), local.max(axis=0)

    lo_a, hi_a = -0.5 * sp_a, (size_a - 0.5) * sp_a
    lo_b, hi_b = box(b)
    lo, hi = np.maximum(lo_a, lo_b), np.minimum(hi_a, hi_b)
    if np.any(hi - lo <= 0):
        raise ReaderStudyError(
            "the real and the synthetic native do not overlap in space; they cannot be paired"
        )
    # b's voxel size along a's axes (for an axis-aligned b, simply its spacing there).
    sp_b = np.abs(dir_a.T @ np.asarray(b.direction) @ np.diag(b.spacing)).max(axis=1)
    spacing = np.maximum(sp_a, sp_b)
    n = np.maximum(1, np.floor((hi - lo) / spacing - 0.5)).astype(int)
    first = lo + spacing  # the first voxel centre: half a voxel further in than a plain edge-aligned grid
    origin = np.asarray(a.origin) + dir_a @ first
    return Grid((int(n[2]), int(n[1]), int(n[0])), tuple(spacing.tolist()), tuple(origin.tolist()), dir_a)


def resample_to(volume: Volume, grid: Grid, default: float) -> np.ndarray:
    """``volume`` linearly resampled onto ``grid`` ((z, y, x) float32; ``default`` outside it)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(volume.hu)
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(tuple(volume.direction.reshape(-1).tolist()))
    out = sitk.Resample(
        image,
        (grid.shape[2], grid.shape[1], grid.shape[0]),
        sitk.Transform(),
        sitk.sitkLinear,
        grid.origin,
        grid.spacing,
        tuple(np.asarray(grid.direction).reshape(-1).tolist()),
        float(default),
        sitk.sitkFloat32,
    )
    return sitk.GetArrayFromImage(out)


def present_pair(
    real: Volume,
    synthetic: Volume,
    contrast: Volume | None = None,
    hu_clip: tuple[float, float] = (-1000.0, 1000.0),
) -> Presented:
    """Put a real and a synthetic native through one presentation pipeline (grid, padding, range, int16)."""
    lo, hi = float(hu_clip[0]), float(hu_clip[1])
    if not lo < hi:
        raise ReaderStudyError(f"the HU clip range {hu_clip} is empty")
    for name, vol in (("real native", real), ("synthetic native", synthetic)):
        if not np.isfinite(vol.hu).all():
            raise ReaderStudyError(f"the {name} has NaN or infinite voxels; it cannot be shown")
    if real.same_geometry(synthetic):
        resampled = False
        r, s = real.hu, synthetic.hu
        c = contrast.hu if contrast is not None and contrast.same_geometry(real) else None
        spacing, direction = real.spacing, real.direction
        if contrast is not None and c is None:
            c = resample_to(contrast, Grid(real.shape, real.spacing, real.origin, real.direction), lo)
    else:
        resampled = True
        grid = common_grid(real, synthetic)
        r, s = resample_to(real, grid, lo), resample_to(synthetic, grid, lo)
        c = resample_to(contrast, grid, lo) if contrast is not None else None
        spacing, direction = grid.spacing, grid.direction
    # The field of view comes from the scanner's images only: a model's undershoot below -1100 HU is
    # content (clipped below), not padding, and must not blank the real volume there.
    outside = r < PADDING_BELOW_HU
    if c is not None:
        outside |= c < PADDING_BELOW_HU

    def finish(hu: np.ndarray) -> np.ndarray:
        out = np.clip(hu, lo, hi)
        out[outside] = lo
        return np.rint(out).astype(np.int16)

    return Presented(
        finish(r), finish(s), tuple(spacing), np.asarray(direction), resampled, int(outside.sum())
    )


# -- creating the study -------------------------------------------------------------------------------


@dataclass
class DesignResult:
    """What `create_study` wrote."""

    bundle: Path
    key_path: Path
    manifest: Manifest
    key: Key


def _check_targets(out: Path, key_path: Path, overwrite_key: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ReaderStudyError(f"{out}: already exists and is not an empty folder; pick a new bundle folder")
    out_abs, key_abs = out.resolve(), key_path.resolve()
    if key_abs == out_abs or out_abs in key_abs.parents:
        raise ReaderStudyError(
            f"{key_path}: the key must not be inside the bundle {out}; readers would be able to open it"
        )
    if key_path.exists() and not overwrite_key:
        raise ReaderStudyError(f"{key_path}: a key file already exists; refusing to replace it")


def _unique_token(used: set[str], nbytes: int) -> str:
    while True:
        token = secrets.token_hex(nbytes)
        if token not in used:
            used.add(token)
            return token


def create_study(
    sources: Sequence[CaseSource],
    out: str | os.PathLike[str],
    key_path: str | os.PathLike[str],
    *,
    mode: str,
    n: int,
    seed: int,
    synthesis: SynthesisSettings | None = None,
    window: str = DEFAULT_WINDOW,
    allow_revisions: bool = False,
    hu_clip: tuple[float, float] = (-1000.0, 1000.0),
    source_description: str = "",
    overwrite_key: bool = False,
    progress: Progress | None = None,
    cancel: CancelFlag = None,
) -> DesignResult:
    """Choose the cases, make what is missing, and write the blinded bundle ``out`` and the separate key."""
    from mfm_engine import __version__
    from mfm_engine.intensity import window_preset

    out, key_path = Path(out), Path(key_path)
    check_mode(mode)
    try:
        preset = window_preset(window)
    except KeyError as exc:
        raise ReaderStudyError(str(exc.args[0])) from exc
    _check_targets(out, key_path, overwrite_key)
    plan = plan_design(len(sources), mode, n, seed)
    needing = [sources[p.source_index].label for p in plan if sources[p.source_index].needs_model]
    translator = None
    if needing:
        if synthesis is None:
            shown = ", ".join(needing[:5]) + (" …" if len(needing) > 5 else "")
            raise ReaderStudyError(
                f"{len(needing)} chosen case(s) have no synthetic native yet ({shown}); give a model"
            )
        from mfm_engine.translate import Translator

        translator = Translator.from_checkpoint(synthesis.model, synthesis.device)
        if not translator.supports("c2n"):
            raise ReaderStudyError(f"{synthesis.model}: this model cannot translate contrast → native")

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{secrets.token_hex(4)}"
    (staging / VOLUMES_DIR).mkdir(parents=True)
    shuffle = secrets.SystemRandom()
    used: set[str] = set()
    bundle_cases: list[BundleCase] = []
    key_cases: dict[str, KeyCase] = {}
    total = len(plan)
    try:
        for done, planned in enumerate(plan):
            if is_cancelled(cancel):
                raise ReaderStudyError("the study design was cancelled; nothing was written")
            source = sources[planned.source_index]
            if progress:
                progress(done, total, f"case {done + 1} of {total}: {source.label}")
            loaded = source.load(translator, synthesis)
            shown = present_pair(loaded.real, loaded.synthetic, loaded.contrast, hu_clip)
            case_id = "case-" + _unique_token(used, 4)
            arrays = {"real": shown.real, "synthetic": shown.synthetic}
            sides = list(SIDES[mode])
            # Write the sides in a random order: creation order (inodes, ctime) must not follow the truth.
            shuffle.shuffle(sides)
            files: dict[str, CaseFile] = {}
            for side in sides:
                rel = f"{VOLUMES_DIR}/{_unique_token(used, 8)}{VOLUME_SUFFIX}"
                digest = write_case_volume(
                    arrays[planned.truth[side]], shown.spacing, shown.direction, staging / rel
                )
                files[side] = CaseFile(rel, digest)
            bundle_cases.append(BundleCase(case_id, {s: files[s] for s in SIDES[mode]}))
            source_of = {"real": loaded.real_source, "synthetic": loaded.synthetic_source}
            provenance = dict(loaded.synthetic.meta.get("provenance") or {})
            key_cases[case_id] = KeyCase(
                case_id,
                dict(planned.truth),
                {side: source_of[t] for side, t in planned.truth.items()},
                source.label,
                {
                    **provenance,
                    "resampled_to_common_grid": shown.resampled,
                    "padding_voxels": shown.padded_voxels,
                },
            )
            del loaded, shown, arrays
        bundle_cases.sort(key=lambda c: c.id)
        settings = StudySettings(
            window_name=preset.name,
            window_width=float(preset.width),
            window_level=float(preset.level),
            allow_revisions=bool(allow_revisions),
            hu_clip=(float(hu_clip[0]), float(hu_clip[1])),
            order_seed=secrets.token_hex(16),
        )
        study_id = "study-" + secrets.token_hex(6)
        created = datetime.now(UTC).date().isoformat()
        manifest = Manifest(study_id, mode, settings, bundle_cases, created)
        atomic_write_text(staging / MANIFEST_NAME, canonical_json(manifest.to_json()))
        for path in (staging / MANIFEST_NAME, staging / VOLUMES_DIR, staging):
            os.utime(path, (FIXED_MTIME, FIXED_MTIME))
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    manifest.path = out / MANIFEST_NAME
    design = {
        "seed": int(seed),
        "n": int(n),
        "mode": mode,
        "candidates": len(sources),
        "source": source_description,
        "synthesis": synthesis.to_json() if synthesis else None,
        "window": preset.name,
        "allow_revisions": bool(allow_revisions),
        "hu_clip": [float(hu_clip[0]), float(hu_clip[1])],
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "engine_version": __version__,
        "pipeline": "int16 NIfTI, common grid, shared padding, clipped to hu_clip "
        "(see mfm_engine.reader_study.design)",
    }
    key = Key(
        manifest.study_id,
        mode,
        manifest_sha256(out),
        bundle_sha256(out, manifest),
        key_cases,
        design,
        key_path,
    )
    write_key(key, key_path, overwrite=overwrite_key)
    if progress:
        progress(total, total, "done")
    return DesignResult(out, key_path, manifest, key)


def describe_design(result: DesignResult) -> str:
    """A few lines for the coordinator: where things went and what the study is."""
    m = result.manifest
    n_syn = sum(1 for c in result.key.cases.values() if c.truth.get("image") == "synthetic")
    mix = f", {n_syn} synthetic + {len(m.cases) - n_syn} real" if m.mode == "single" else ""
    return (
        f"study {m.study_id}: {len(m.cases)} {m.mode} case(s){mix}\n"
        f"bundle (give to readers): {result.bundle}\n"
        f"key (keep away from readers): {result.key_path}\n"
        f"initial window {m.settings.window_name} "
        f"(W {m.settings.window_width:g} / L {m.settings.window_level:g}), "
        f"revisions {'allowed' if m.settings.allow_revisions else 'not allowed'}"
    )
