"""Open a study from any path: a DICOM folder, one DICOM file, or a NIfTI / NRRD / MHA / MHD file.

``read_study`` is the one entry point the CLI, the viewer and training use; ``discover_series``
lists a folder's series so a caller can choose; ``describe_study`` is what ``mfm info`` prints
(its JSON form is documented in docs/info-json.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mfm_engine.errors import SeriesChoiceError, StudyReadError
from mfm_engine.io.dicom_read import (
    FolderScan,
    SeriesInfo,
    SkippedFile,
    read_dicom_file,
    read_series,
    scan_folder,
    skipped_warnings,
)
from mfm_engine.io.image_read import image_suffix, read_image
from mfm_engine.volume import Volume

__all__ = [
    "INFO_FORMAT",
    "INFO_VERSION",
    "SeriesInfo",
    "SkippedFile",
    "describe_study",
    "discover_series",
    "read_study",
    "series_list_text",
]

INFO_FORMAT = "mfm-info"
INFO_VERSION = 1


def discover_series(folder: str | os.PathLike[str]) -> list[SeriesInfo]:
    """The DICOM image series under a folder (recursively), most slices first; [] when there are none."""
    return scan_folder(folder).series


def series_list_text(series: list[SeriesInfo]) -> str:
    """One line per series, '[index] summary', for messages that ask the caller to choose."""
    return "\n".join(f"  [{i}] {s.summary()}" for i, s in enumerate(series))


def _no_series_error(scan: FolderScan) -> StudyReadError:
    folder = scan.folder
    if scan.n_files == 0:
        return StudyReadError(f"{folder}: the folder is empty (no files, sub-folders searched too)")
    if scan.image_files:
        names = ", ".join(str(p.relative_to(folder)) for p in scan.image_files[:5])
        return StudyReadError(
            f"{folder}: holds no DICOM images but holds image file(s) {names}; open one of them directly"
        )
    reasons = "; ".join(skipped_warnings(scan.skipped, max_names=3, root=folder))
    return StudyReadError(f"{folder}: no DICOM images among its {scan.n_files} file(s) ({reasons})")


def _choose(scan: FolderScan, series: str | int | None) -> SeriesInfo:
    found = scan.series
    if series is None:
        if len(found) == 1:
            return found[0]
        raise SeriesChoiceError(
            f"{scan.folder}: holds {len(found)} series; choose one by index or key "
            f"(mfm: --series N):\n{series_list_text(found)}",
            found,
        )
    if isinstance(series, int) or (isinstance(series, str) and series.strip().isdigit()):
        index = int(series)
        if not 0 <= index < len(found):
            raise StudyReadError(
                f"{scan.folder}: series index {index} is outside 0..{len(found) - 1}:\n"
                + series_list_text(found)
            )
        return found[index]
    by_key = [s for s in found if s.key == series]
    if by_key:
        return by_key[0]
    by_uid = [s for s in found if s.uid == series]
    if len(by_uid) == 1:
        return by_uid[0]
    if len(by_uid) > 1:
        raise SeriesChoiceError(
            f"{scan.folder}: SeriesInstanceUID {series} names {len(by_uid)} series (copies at the same "
            f"positions, split apart); choose one by index or key:\n{series_list_text(found)}",
            found,
        )
    raise StudyReadError(f"{scan.folder}: no series with UID or key {series!r}:\n{series_list_text(found)}")


def read_study(path: str | os.PathLike[str], series: str | int | None = None) -> Volume:
    """Read a DICOM folder (choosing one series), one DICOM file, or a NIfTI/NRRD/MHA/MHD file."""
    path = Path(path)
    if not path.exists():
        raise StudyReadError(f"{path}: no such file or folder")
    if path.is_dir():
        scan = scan_folder(path)
        if not scan.series:
            raise _no_series_error(scan)
        return read_series(_choose(scan, series), source_path=path)
    if image_suffix(path) is not None:
        return read_image(path)
    return read_dicom_file(path)


# ------------------------------------------------------------------------------------------------
# describe_study: what `mfm info` shows
# ------------------------------------------------------------------------------------------------
def _volume_entry(vol: Volume) -> dict[str, Any]:
    hu = vol.hu
    z, y, x = vol.shape
    return {
        "modality": vol.meta.get("modality") or None,
        "description": vol.meta.get("series_description") or "",
        "n_slices": z,
        "size_xyz": [x, y, z],
        "spacing_xyz_mm": [round(s, 6) for s in vol.spacing],
        "origin_xyz_mm": [round(o, 6) for o in vol.origin],
        "direction": np.round(vol.direction, 6).tolist(),
        "hu_min": float(hu.min()) if hu.size else None,
        "hu_max": float(hu.max()) if hu.size else None,
        "synthetic": bool(vol.meta.get("synthetic", False)),
        "phantom": bool(vol.meta.get("phantom", False)),
        "warnings": list(vol.meta.get("warnings", [])),
        "error": None,
    }


def _empty_entry() -> dict[str, Any]:
    return {
        "modality": None,
        "description": "",
        "n_slices": None,
        "size_xyz": None,
        "spacing_xyz_mm": None,
        "origin_xyz_mm": None,
        "direction": None,
        "hu_min": None,
        "hu_max": None,
        "synthetic": False,
        "phantom": False,
        "warnings": [],
        "error": None,
    }


def _dicom_entry(index: int, info: SeriesInfo, folder: Path) -> dict[str, Any]:
    head = {
        "index": index,
        "key": info.key,
        "source": "dicom",
        "path": str(folder),
        "series_instance_uid": info.uid,
        "transfer_syntax": info.transfer_syntax or None,
    }
    try:
        body = _volume_entry(read_series(info, source_path=folder))
    except StudyReadError as exc:
        body = _empty_entry()
        body.update(
            modality=info.modality or None,
            description=info.description,
            n_slices=info.n_slices,
            size_xyz=[info.cols, info.rows, info.n_slices],
            warnings=list(info.warnings),
            error=str(exc),
        )
    return {**head, **body}


def _image_entry(path: Path) -> dict[str, Any]:
    head = {
        "index": None,
        "key": None,
        "source": "image",
        "path": str(path),
        "series_instance_uid": None,
        "transfer_syntax": None,
    }
    try:
        body = _volume_entry(read_image(path))
    except StudyReadError as exc:
        body = _empty_entry()
        body["error"] = str(exc)
    return {**head, **body}


def describe_study(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Every series (or image) at a path with size, spacing, HU range and warnings, as JSON-ready data."""
    path = Path(path)
    if not path.exists():
        raise StudyReadError(f"{path}: no such file or folder")
    doc: dict[str, Any] = {"format": INFO_FORMAT, "version": INFO_VERSION, "path": str(path)}
    if path.is_dir():
        scan = scan_folder(path)
        if not scan.series and not scan.image_files:
            raise _no_series_error(scan)
        entries = [_dicom_entry(i, s, path) for i, s in enumerate(scan.series)]
        entries += [_image_entry(p) for p in scan.image_files]
        doc.update(
            kind="folder",
            files_examined=scan.n_files,
            skipped=[{"path": str(s.path), "reason": s.reason} for s in scan.skipped],
            warnings=skipped_warnings(scan.skipped, root=path),
            series=entries,
        )
        return doc
    if image_suffix(path) is not None:
        vol = read_image(path)
        entry = {"index": None, "key": None, "source": "image", "path": str(path),
                 "series_instance_uid": None, "transfer_syntax": None, **_volume_entry(vol)}  # fmt: skip
        kind = "image-file"
    else:
        vol = read_dicom_file(path)
        dicom = vol.meta.get("dicom", {})
        entry = {
            "index": 0,
            "key": dicom.get("series_instance_uid") or None,
            "source": "dicom",
            "path": str(path),
            "series_instance_uid": dicom.get("series_instance_uid", ""),
            "transfer_syntax": _ts_name(dicom.get("transfer_syntax_uid", "")),
            **_volume_entry(vol),
        }
        kind = "dicom-file"
    doc.update(kind=kind, files_examined=1, skipped=[], warnings=[], series=[entry])
    return doc


def _ts_name(uid: str) -> str | None:
    from pydicom.uid import UID

    if not uid:
        return None
    name = UID(uid).name
    return name or uid
