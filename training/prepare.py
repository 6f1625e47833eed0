"""``prepare``: read each pair, drop the ones the paper excludes, register, and write the slice cache.

Per patient, in order: read both series (DICOM folder or image file) → drop the pair when the two
differ in size, spacing, origin or orientation (the paper drops origin/spacing mismatches: they
mean the patient was repositioned) → register contrast → native inside a body mask (ANTs
``SyNOnly`` by default) and report the body MAE before → after → keep the registered contrast
(NIfTI) → clip to [-1000, 1000] HU, scale to [-1, 1] and write the memory-mapped slices. The cache
index is written last; patients finished by an earlier run are skipped.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from mfm_engine.atomic import atomic_write_text
from mfm_engine.errors import MFMError
from mfm_engine.io.image_write import write_image
from mfm_engine.io.study import read_study
from mfm_engine.volume import Volume
from training.cache import CacheWriter, PatientEntry
from training.errors import ManifestError, PairError
from training.pairs import PairSpec
from training.registration import TRANSFORMS, register_pair


@dataclass
class PrepareReport:
    """What prepare did: finished entries, dropped pairs (with reasons) and one line per patient."""

    cache: Path
    entries: list[PatientEntry] = field(default_factory=list)
    dropped: list[dict[str, str]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def geometry_problem(contrast: Volume, native: Volume, tol_mm: float = 1e-3) -> str | None:
    """Why two series of one patient cannot be paired voxel by voxel, or None when they can."""
    if contrast.shape != native.shape:
        return (
            f"the series differ in size: contrast {contrast.geometry_text()}; native {native.geometry_text()}"
        )
    if not np.allclose(contrast.spacing, native.spacing, atol=tol_mm):
        return f"the series differ in spacing: contrast {contrast.spacing} mm, native {native.spacing} mm"
    if not np.allclose(contrast.origin, native.origin, atol=tol_mm):
        return f"the series differ in origin: contrast {contrast.origin} mm, native {native.origin} mm"
    if not np.allclose(contrast.direction, native.direction, atol=1e-4):
        return "the series differ in orientation (direction cosines)"
    return None


def _read(path: Path, what: str, pid: str) -> Volume:
    try:
        return read_study(path)
    except MFMError as exc:
        raise PairError(f"{pid}: cannot read the {what} series {path}: {exc}") from exc


def _labels_array(labels: Volume, native: Volume, pid: str, path: Path) -> np.ndarray:
    if labels.shape != native.shape:
        raise PairError(f"{pid}: label map {path} is {labels.shape}, the native is {native.shape}")
    values = np.rint(labels.hu)
    if values.min() < 0 or values.max() > 255:
        raise PairError(f"{pid}: label map {path} holds values outside 0..255")
    return values.astype(np.uint8)


def load_legend(path: str | os.PathLike[str] | None) -> dict[int, str] | None:
    """A label legend from a JSON file {"value": "name"}; None when no path is given."""
    if path is None:
        return None
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        return {int(k): str(v) for k, v in doc.items()}
    except (OSError, ValueError, AttributeError) as exc:
        raise ManifestError(f"{p}: not a label legend (a JSON object of value → name): {exc}") from exc


def prepare(
    pairs: list[PairSpec],
    out: str | os.PathLike[str],
    *,
    registration: str = "SyNOnly",
    keep_registered: bool = True,
    legend: dict[int, str] | None = None,
    description: str = "",
    pre_report: list[str] | None = None,
    progress: bool = True,
) -> PrepareReport:
    """Prepare every pair into the cache at ``out``; returns the report (also in prepare_report.txt)."""
    if registration not in TRANSFORMS:
        raise ManifestError(f"unknown registration {registration!r}; use one of {', '.join(TRANSFORMS)}")
    if any(p.split is None for p in pairs):
        raise ManifestError("every pair needs a split before prepare (see assign_splits)")
    writer = CacheWriter(out, {"registration": registration})
    report = PrepareReport(Path(out), lines=list(pre_report or []))
    bar = tqdm(pairs, desc="prepare", unit="patient", file=sys.stderr, disable=not progress)
    for spec in bar:
        bar.set_postfix_str(spec.patient)
        done = writer.finished(spec.patient)
        if done is not None and done.split == spec.split:
            report.entries.append(done)
            report.lines.append(f"{spec.patient}: already in the cache, skipped [{done.split}]")
            continue
        try:
            entry, line, found_legend = _prepare_one(spec, writer, registration, keep_registered)
        except PairError as exc:
            report.dropped.append({"patient": spec.patient, "reason": str(exc)})
            report.lines.append(f"{spec.patient}: dropped: {_without_prefix(str(exc), spec.patient)}")
            continue
        if legend is None and found_legend:
            legend = found_legend
        report.entries.append(entry)
        report.lines.append(line)
    bar.close()
    if any(e.has_labels for e in report.entries) and legend is None:
        from mfm_engine.phantom import LEGEND

        legend = dict(LEGEND)
        report.lines.append("labels: no legend given or found; using the phantom's legend")
    text = "\n".join(report.lines) + "\n"
    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(out) / "prepare_report.txt", text)
    counts = {s: sum(e.split == s for e in report.entries) for s in ("train", "test", "holdout")}
    summary = (
        f"{len(report.entries)} patient(s) in the cache (train {counts['train']}, test {counts['test']}, "
        f"holdout {counts['holdout']}), {len(report.dropped)} dropped"
    )
    report.lines.append(summary)
    writer.finish(report.entries, dropped=report.dropped, legend=legend, description=description)
    return report


def _without_prefix(text: str, pid: str) -> str:
    return text[len(pid) + 2 :] if text.startswith(f"{pid}: ") else text


def _prepare_one(
    spec: PairSpec, writer: CacheWriter, registration: str, keep_registered: bool
) -> tuple[PatientEntry, str, dict[int, str] | None]:
    pid = spec.patient
    contrast = _read(spec.contrast, "contrast", pid)
    native = _read(spec.native, "native", pid)
    problem = geometry_problem(contrast, native)
    if problem:
        raise PairError(f"{pid}: {problem}")
    labels = legend = None
    if spec.labels is not None:
        label_vol = _read(spec.labels, "label", pid)
        labels = _labels_array(label_vol, native, pid, spec.labels)
        raw = label_vol.meta.get("legend")
        if isinstance(raw, dict):
            legend = {int(k): str(v) for k, v in raw.items()}
    result = register_pair(contrast, native, transform=registration, label=pid)
    if registration != "none" and keep_registered:
        target = writer.root / "registered" / pid / "contrast_registered.nii.gz"
        write_image(
            result.registered, target, overwrite=True, description=f"registered to native ({registration})"
        )
    info: dict[str, Any] = {
        "contrast": str(spec.contrast),
        "native": str(spec.native),
        "registration": registration,
        "mae_before_hu": round(result.mae_before_hu, 3),
        "mae_after_hu": round(result.mae_after_hu, 3),
    }
    if native.meta.get("phantom"):
        info["phantom_seed"] = native.meta.get("phantom_seed")
    entry = writer.write_patient(
        pid,
        spec.split or "train",
        result.registered.hu,
        native.hu,
        labels,
        spacing=list(native.spacing),
        info=info,
    )
    if registration == "none":
        line = f"{pid}: not registered, body MAE {result.mae_before_hu:.1f} HU [{entry.split}]"
    else:
        line = (
            f"{pid}: registered ({registration}), body MAE {result.mae_before_hu:.1f} → "
            f"{result.mae_after_hu:.1f} HU [{entry.split}]"
        )
    return entry, line, legend
