"""Finding contrast/native pairs: a CSV manifest, or a folder convention; splits by patient.

Manifest (CSV with a header row; paths relative to the manifest's folder)::

    patient,contrast,native,split,labels
    P001,P001/contrast,P001/native,train,
    P002,P002/arterial.nii.gz,P002/native.nii.gz,holdout,P002/labels.nii.gz

``split`` (train / test / holdout) and ``labels`` (a label map on the native's grid) are optional
columns. Folder convention (``--root ROOT``)::

    ROOT/<patient>/contrast    a DICOM folder, or contrast.nii.gz / .nii / .nrrd / .mha
    ROOT/<patient>/native      the same for the native series
    ROOT/<patient>/labels.nii.gz   optional

Patients without a split get one from :func:`assign_splits` (seeded, by patient, never by slice).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from training.errors import ManifestError

SPLITS = ("train", "test", "holdout")
_SPLIT_ALIASES = {
    "train": "train",
    "test": "test",
    "holdout": "holdout",
    "hold-out": "holdout",
    "hold_out": "holdout",
}
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
_SHOW_AT_MOST = 10


@dataclass(frozen=True)
class PairSpec:
    """One patient's two series (paths) and, when known, its split and label map."""

    patient: str
    contrast: Path
    native: Path
    split: str | None = None
    labels: Path | None = None


def _split_name(value: str, where: str) -> str | None:
    v = value.strip().lower()
    if not v:
        return None
    if v not in _SPLIT_ALIASES:
        raise ManifestError(f"{where}: unknown split {value!r}; use train, test or holdout")
    return _SPLIT_ALIASES[v]


def read_manifest(path: str | os.PathLike[str]) -> list[PairSpec]:
    """Pairs listed in a CSV manifest; every missing file is named in one error."""
    manifest = Path(path)
    if not manifest.is_file():
        raise ManifestError(f"{manifest}: manifest not found")
    base = manifest.parent
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError(f"{manifest}: cannot read the manifest: {exc}") from exc
    if not rows:
        raise ManifestError(f"{manifest}: the manifest lists no pairs")
    header = {k.strip().lower() for k in rows[0] if k}
    need = {"patient", "contrast", "native"}
    if not need <= header:
        raise ManifestError(
            f"{manifest}: the header must name patient, contrast, native (and optionally split, labels); "
            f"found {sorted(header)}"
        )
    pairs: list[PairSpec] = []
    missing: list[str] = []
    seen: set[str] = set()
    for line, raw in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        where = f"{manifest}, line {line}"
        pid = row.get("patient", "")
        if not pid:
            raise ManifestError(f"{where}: empty patient id")
        if pid in seen:
            raise ManifestError(f"{where}: patient {pid!r} is listed twice")
        seen.add(pid)
        paths: dict[str, Path | None] = {}
        for col in ("contrast", "native", "labels"):
            value = row.get(col, "")
            if not value:
                if col != "labels":
                    raise ManifestError(f"{where}: no {col} path for patient {pid!r}")
                paths[col] = None
                continue
            p = Path(value)
            p = p if p.is_absolute() else base / p
            if not p.exists():
                missing.append(f"line {line} ({pid}) {col}: {p}")
            paths[col] = p
        pairs.append(
            PairSpec(
                pid,
                paths["contrast"],
                paths["native"],
                _split_name(row.get("split", ""), where),
                paths["labels"],
            )  # type: ignore[arg-type]
        )
    if missing:
        shown = "\n  ".join(missing[:_SHOW_AT_MOST])
        more = f"\n  … and {len(missing) - _SHOW_AT_MOST} more" if len(missing) > _SHOW_AT_MOST else ""
        raise ManifestError(f"{manifest}: {len(missing)} listed file(s) do not exist:\n  {shown}{more}")
    return pairs


def _series_path(folder: Path, name: str) -> Path | None:
    if (folder / name).is_dir():
        return folder / name
    for suffix in IMAGE_SUFFIXES:
        if (folder / f"{name}{suffix}").is_file():
            return folder / f"{name}{suffix}"
    return None


def find_pairs(root: str | os.PathLike[str]) -> tuple[list[PairSpec], list[str]]:
    """Pairs under ROOT/<patient>/{contrast,native}; returns (pairs, one report line per skipped folder)."""
    base = Path(root)
    if not base.is_dir():
        raise ManifestError(f"{base}: data folder not found")
    pairs: list[PairSpec] = []
    skipped: list[str] = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        contrast = _series_path(folder, "contrast")
        native = _series_path(folder, "native")
        if contrast is None or native is None:
            lacking = " and ".join(n for n, p in (("contrast", contrast), ("native", native)) if p is None)
            skipped.append(f"{folder.name}: skipped: no {lacking} series in {folder}")
            continue
        pairs.append(PairSpec(folder.name, contrast, native, None, _series_path(folder, "labels")))
    if not pairs:
        raise ManifestError(
            f"{base}: no patient folder holds both a 'contrast' and a 'native' series "
            "(expected ROOT/<patient>/contrast and ROOT/<patient>/native, folders or .nii.gz files)"
        )
    return pairs, skipped


def parse_fractions(text: str) -> tuple[float, float, float]:
    """'0.8,0.1,0.1' → fractions of patients for train, test, holdout (normalised)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise ManifestError(f"--splits must be three numbers like 0.8,0.1,0.1, got {text!r}") from exc
    if len(values) != 3 or min(values) < 0 or sum(values) <= 0:
        raise ManifestError(f"--splits must be three non-negative numbers like 0.8,0.1,0.1, got {text!r}")
    total = sum(values)
    return values[0] / total, values[1] / total, values[2] / total


def split_counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Patients per split for n patients; every split with a positive fraction gets at least one."""
    counts = [int(round(f * n)) for f in fractions]
    for i, f in enumerate(fractions):
        if f > 0 and counts[i] == 0 and n >= sum(1 for x in fractions if x > 0):
            counts[i] = 1
    while sum(counts) > n:
        counts[int(np.argmax(counts))] -= 1
    while sum(counts) < n:
        counts[0] += 1
    return counts[0], counts[1], counts[2]


def assign_splits(
    pairs: list[PairSpec], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0
) -> list[PairSpec]:
    """Give every pair without a split one, shuffling patients with ``seed`` (pairs that have one keep it)."""
    todo = [p for p in pairs if p.split is None]
    if not todo:
        return list(pairs)
    order = np.random.default_rng(seed).permutation(len(todo))
    n_train, n_test, _ = split_counts(len(todo), fractions)
    chosen: dict[str, str] = {}
    for rank, i in enumerate(order):
        chosen[todo[i].patient] = (
            "train" if rank < n_train else ("test" if rank < n_train + n_test else "holdout")
        )
    return [p if p.split is not None else replace(p, split=chosen[p.patient]) for p in pairs]
