"""The slice cache: registered pairs as memory-mapped .npy arrays in model scale, split by patient.

Layout::

    CACHE/
      index.json                      written last (atomically): the cache is complete when it exists
      prepare_report.txt              one line per patient (registered / dropped / skipped, MAE before→after)
      patients/<id>/contrast.npy      (z, H, W) float32, model scale [-1, 1] (HU clipped to [-1000, 1000])
      patients/<id>/native.npy        same shape
      patients/<id>/labels.npy        optional (z, H, W) uint8 label map on the native's grid
      patients/<id>/patient.json      written after the arrays: marks the patient finished
      registered/<id>/contrast_registered.nii.gz   the registered contrast in HU (when kept)

Every file is written under a temporary name and renamed into place, so an interrupted run never
leaves a file that looks finished; re-running ``prepare`` skips the patients whose
``patient.json`` exists and whose arrays check out. Arrays are plain .npy (never pickled objects)
opened with ``mmap_mode='r'``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mfm_engine.atomic import atomic_write_text
from mfm_engine.intensity import HU_MAX, HU_MIN, hu_to_model
from training.errors import CacheError

CACHE_FORMAT = "mfm-slice-cache"
CACHE_VERSION = 1
INDEX = "index.json"
PATIENT_DONE = "patient.json"
SPLITS = ("train", "test", "holdout")
ARRAYS = ("contrast", "native")


def atomic_write_json(path: Path, doc: Any) -> None:
    """JSON version of :func:`mfm_engine.atomic.atomic_write_text`."""
    atomic_write_text(path, json.dumps(doc, indent=2) + "\n")


def _write_npy(path: Path, array: np.ndarray, dtype: np.dtype) -> None:
    """A memory-mapped .npy written in slices under a temporary name, then renamed into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=array.shape)
        for k in range(array.shape[0]):
            out[k] = array[k]
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass
class PatientEntry:
    """One finished patient in the cache."""

    id: str
    split: str
    n_slices: int
    height: int
    width: int
    has_labels: bool
    spacing: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "split": self.split,
            "n_slices": self.n_slices,
            "height": self.height,
            "width": self.width,
            "has_labels": self.has_labels,
            "spacing": self.spacing,
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> PatientEntry:
        try:
            return cls(
                id=str(d["id"]),
                split=str(d["split"]),
                n_slices=int(d["n_slices"]),
                height=int(d["height"]),
                width=int(d["width"]),
                has_labels=bool(d.get("has_labels", False)),
                spacing=[float(s) for s in d.get("spacing", [])],
                info=dict(d.get("info", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CacheError(f"{where}: a patient entry is malformed ({exc!r}); re-run prepare") from exc


class CacheWriter:
    """Adds patients to a cache folder and writes its index when finished."""

    def __init__(self, root: str | os.PathLike[str], settings: dict[str, Any]) -> None:
        self.root = Path(root)
        self.settings = dict(settings)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "patients").mkdir(exist_ok=True)
        index = self.root / INDEX
        if index.exists():
            old = _read_json(index, "cache index")
            old_settings = old.get("settings", {})
            clash = {
                k: (old_settings.get(k), v) for k, v in self.settings.items() if old_settings.get(k, v) != v
            }
            if clash:
                text = ", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in clash.items())
                raise CacheError(
                    f"{self.root} holds a cache prepared with other settings ({text}); "
                    "choose another --out folder or delete this one"
                )

    def patient_dir(self, pid: str) -> Path:
        return self.root / "patients" / _safe_id(pid)

    def finished(self, pid: str) -> PatientEntry | None:
        """The entry of a finished, intact patient, or None (then it is (re)written)."""
        done = self.patient_dir(pid) / PATIENT_DONE
        if not done.exists():
            return None
        try:
            entry = PatientEntry.from_dict(_read_json(done, "patient record"), str(done))
            _check_patient_arrays(self.patient_dir(pid), entry)
        except CacheError:
            return None
        return entry

    def write_patient(
        self,
        pid: str,
        split: str,
        contrast_hu: np.ndarray,
        native_hu: np.ndarray,
        labels: np.ndarray | None = None,
        *,
        spacing: list[float] | None = None,
        info: dict[str, Any] | None = None,
    ) -> PatientEntry:
        """Clip/scale both volumes (z, H, W) in HU and write them (and labels); returns the entry."""
        if split not in SPLITS:
            raise CacheError(f"patient {pid}: split must be one of {', '.join(SPLITS)}, got {split!r}")
        if contrast_hu.shape != native_hu.shape or contrast_hu.ndim != 3:
            raise CacheError(
                f"patient {pid}: contrast {contrast_hu.shape} and native {native_hu.shape} differ"
            )
        if labels is not None and labels.shape != native_hu.shape:
            raise CacheError(
                f"patient {pid}: labels {labels.shape} do not match the native {native_hu.shape}"
            )
        folder = self.patient_dir(pid)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / PATIENT_DONE).unlink(missing_ok=True)
        _write_npy(
            folder / "contrast.npy", hu_to_model(np.asarray(contrast_hu, dtype=np.float32)), np.float32
        )
        _write_npy(folder / "native.npy", hu_to_model(np.asarray(native_hu, dtype=np.float32)), np.float32)
        if labels is not None:
            if labels.min() < 0 or labels.max() > 255:
                raise CacheError(f"patient {pid}: label values must lie in 0..255")
            _write_npy(folder / "labels.npy", np.asarray(labels), np.uint8)
        else:
            (folder / "labels.npy").unlink(missing_ok=True)
        z, h, w = native_hu.shape
        entry = PatientEntry(pid, split, z, h, w, labels is not None, list(spacing or []), dict(info or {}))
        atomic_write_json(folder / PATIENT_DONE, entry.to_dict())
        return entry

    def finish(
        self,
        entries: list[PatientEntry],
        *,
        dropped: list[dict[str, str]] | None = None,
        legend: dict[int, str] | None = None,
        description: str = "",
    ) -> Path:
        """Write index.json (last, atomically): from now on the cache is complete."""
        if not entries:
            raise CacheError(f"{self.root}: no usable pair was prepared, so no cache index was written")
        doc = {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "complete": True,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "hu_range": [HU_MIN, HU_MAX],
            "dtype": "float32",
            "scale": "model: HU clipped to hu_range, mapped linearly to [-1, 1]",
            "description": description,
            "settings": self.settings,
            "legend": {str(k): v for k, v in (legend or {}).items()},
            "patients": [e.to_dict() for e in sorted(entries, key=lambda e: e.id)],
            "dropped": list(dropped or []),
        }
        atomic_write_json(self.root / INDEX, doc)
        return self.root / INDEX


def _safe_id(pid: str) -> str:
    bad = set('/\\:*?"<>|') | {"\0"}
    if not pid or pid in (".", "..") or any(c in bad for c in pid):
        raise CacheError(f"patient id {pid!r} cannot be used as a folder name")
    return pid


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CacheError(f"{path}: the {what} is unreadable or corrupt ({exc}); re-run prepare") from exc
    if not isinstance(doc, dict):
        raise CacheError(f"{path}: the {what} is not a JSON object; re-run prepare")
    return doc


def _open_npy(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if not path.is_file():
        raise CacheError(f"{path}: missing from the cache; re-run prepare")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CacheError(f"{path}: corrupt or truncated array ({exc}); re-run prepare") from exc
    if arr.shape != shape or arr.dtype != dtype:
        raise CacheError(
            f"{path}: expected {dtype} {shape}, found {arr.dtype} {arr.shape}; "
            "the cache is corrupt, re-run prepare"
        )
    return arr


def _check_patient_arrays(folder: Path, entry: PatientEntry) -> None:
    shape = (entry.n_slices, entry.height, entry.width)
    for name in ARRAYS:
        _open_npy(folder / f"{name}.npy", shape, np.dtype(np.float32))
    if entry.has_labels:
        _open_npy(folder / "labels.npy", shape, np.dtype(np.uint8))


class SliceCache:
    """A finished cache, opened read-only: patients by split and their memory-mapped arrays."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        index = self.root / INDEX
        if not self.root.is_dir():
            raise CacheError(f"{self.root}: no slice cache here (run `python -m training prepare` first)")
        if not index.exists():
            raise CacheError(
                f"{self.root}: the cache is incomplete (no {INDEX}): prepare did not finish; re-run it "
                "(finished patients are kept)"
            )
        doc = _read_json(index, "cache index")
        if doc.get("format") != CACHE_FORMAT or not doc.get("complete"):
            raise CacheError(f"{index}: not a finished {CACHE_FORMAT} index; re-run prepare")
        if int(doc.get("version", 0)) > CACHE_VERSION:
            raise CacheError(f"{index}: cache version {doc.get('version')} is newer than this code reads")
        self.index = doc
        self.patients = [PatientEntry.from_dict(p, str(index)) for p in doc.get("patients", [])]
        if not self.patients:
            raise CacheError(f"{index}: the cache lists no patients")
        self.legend: dict[int, str] = {int(k): v for k, v in doc.get("legend", {}).items()}
        self._arrays: dict[str, dict[str, np.ndarray]] = {}
        for entry in self.patients:
            _check_patient_arrays(self.patient_dir(entry.id), entry)

    @property
    def description(self) -> str:
        return str(self.index.get("description", ""))

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.index.get("settings", {}))

    def patient_dir(self, pid: str) -> Path:
        return self.root / "patients" / pid

    def split(self, name: str) -> list[PatientEntry]:
        """Patients of one split (train / test / holdout), in id order."""
        return [p for p in self.patients if p.split == name]

    def arrays(self, pid: str) -> dict[str, np.ndarray]:
        """{'contrast', 'native'[, 'labels']} memory-mapped (z, H, W) arrays of one patient."""
        if pid not in self._arrays:
            entry = next((p for p in self.patients if p.id == pid), None)
            if entry is None:
                raise CacheError(f"{self.root}: no patient {pid!r} in this cache")
            folder = self.patient_dir(pid)
            shape = (entry.n_slices, entry.height, entry.width)
            out = {name: _open_npy(folder / f"{name}.npy", shape, np.dtype(np.float32)) for name in ARRAYS}
            if entry.has_labels:
                out["labels"] = _open_npy(folder / "labels.npy", shape, np.dtype(np.uint8))
            self._arrays[pid] = out
        return self._arrays[pid]

    def label_value(self, name: str) -> int | None:
        """The label value of a tissue name in this cache's legend (None if absent)."""
        for value, label in self.legend.items():
            if label == name:
                return value
        return None

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers get a copy: memory maps are reopened there, not shipped.
        state = dict(self.__dict__)
        state["_arrays"] = {}
        return state
