"""Write a `Volume` as one image file (NIfTI, NRRD, MHA) with SimpleITK, atomically.

Choices (documented here because callers rely on them):
- Pixel type: ``dtype="auto"`` stores int16 when every voxel is an integer in the int16 range
  (phantom label maps, re-exported DICOM), which is lossless; otherwise float32, so model output
  keeps its fractional HU exactly. ``dtype="int16"`` rounds to the nearest HU and clips to the
  int16 range (the clipped-voxel count goes to the log and the sidecar); ``dtype="float32"`` always.
- Geometry: spacing, origin and direction are written as the Volume holds them (LPS; SimpleITK
  converts to RAS for NIfTI), so oblique grids survive.
- Description: a short text ("SYNTHETIC native by tiny-flow eulerx10", "PHANTOM arterial seed 3")
  goes into the header: NIfTI ``descrip`` (at most 80 bytes), the NRRD ``content`` field and an
  MHA key, all through SimpleITK's ``ITK_FileNotes``.
- Sidecar: ``<name>.json`` beside the image (``ct.nii.gz`` → ``ct.json``, as BIDS does) holds the
  geometry, the stored pixel type and the whole ``Volume.meta`` (provenance, synthetic/phantom flags,
  source DICOM UIDs), which no image header can carry. ``sidecar=False`` skips it.
- Atomic: both files are written under hidden temporary names in the target folder and renamed
  into place (``os.replace``), so an interrupted write never leaves a file that looks complete.
- An existing file is replaced only with ``overwrite=True``.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mfm_engine.errors import StudyWriteError
from mfm_engine.volume import Volume

log = logging.getLogger(__name__)

# Longest first, so "x.nii.gz" is not taken for a ".gz" file.
IMAGE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".mha")
INT16_MIN, INT16_MAX = -32768, 32767
SIDECAR_FORMAT = "mfm-studio image sidecar"
SIDECAR_VERSION = 1
# The NIfTI-1 header's descrip field is char[80], NUL-terminated.
NIFTI_DESCRIP_MAX = 79

PixelType = Literal["auto", "float32", "int16"]
Progress = Callable[[int, int], object]


def image_suffix(path: str | os.PathLike[str]) -> str | None:
    """The image-format suffix of a path ('.nii.gz', '.nii', '.nrrd', '.mha'), or None."""
    name = Path(path).name.lower()
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return suffix
    return None


def sidecar_path(image_path: str | os.PathLike[str]) -> Path:
    """Where the JSON sidecar of an image file lives: the name without its image suffix, plus .json."""
    path = Path(image_path)
    suffix = image_suffix(path)
    stem = path.name[: -len(suffix)] if suffix else path.stem
    return path.with_name(stem + ".json")


def engine_version() -> str:
    """The installed mfm_engine version, for provenance fields."""
    from mfm_engine import __version__

    return __version__


def provenance_summary(meta: dict[str, Any]) -> str:
    """'<model> <solver>x<steps>' from meta['provenance'], or '' when there is none."""
    prov = meta.get("provenance") or {}
    model = str(prov.get("model") or "model")
    solver = prov.get("solver")
    steps = prov.get("steps")
    if solver is None and steps is None:
        return model if prov else ""
    return f"{model} {solver or '?'}x{steps if steps is not None else '?'}"


def short_description(volume: Volume) -> str:
    """A one-line label saying what the voxels are: synthetic (by what), phantom, or the series name."""
    meta = volume.meta
    phase = meta.get("phase") or "CT"
    if meta.get("synthetic"):
        summary = provenance_summary(meta) or "unknown model"
        return f"SYNTHETIC {phase} by {summary}"
    if meta.get("phantom"):
        seed = meta.get("phantom_seed")
        return f"PHANTOM {phase}" + (f" seed {seed}" if seed is not None else "")
    return str(meta.get("series_description") or "")


def check_writable_volume(volume: Volume, target: Path) -> None:
    """Refuse volumes no file can hold honestly: empty or with NaN/inf voxels."""
    if volume.hu.size == 0:
        raise StudyWriteError(f"{target}: cannot write an empty volume (shape {volume.shape})")
    finite = np.isfinite(volume.hu)
    if not finite.all():
        bad = int(volume.hu.size - np.count_nonzero(finite))
        raise StudyWriteError(
            f"{target}: the volume has {bad} NaN or infinite voxel(s); replace them before writing"
        )


def int16_is_lossless(hu: np.ndarray) -> bool:
    """True when every value is an integer inside the int16 range."""
    if hu.size == 0:
        return True
    lo, hi = float(hu.min()), float(hu.max())
    if lo < INT16_MIN or hi > INT16_MAX:
        return False
    return bool(np.all(hu == np.round(hu)))


def to_int16(hu: np.ndarray) -> tuple[np.ndarray, int]:
    """Round HU to whole numbers and clip to int16; returns the array and the clipped-voxel count."""
    rounded = np.rint(hu)
    clipped = int(np.count_nonzero((rounded < INT16_MIN) | (rounded > INT16_MAX)))
    return np.clip(rounded, INT16_MIN, INT16_MAX).astype(np.int16), clipped


def json_default(obj: Any) -> Any:
    """Make numpy values, paths and other odd objects JSON-serialisable (fallback: their text)."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    return str(obj)


def temp_name_beside(target: Path, suffix: str = "") -> Path:
    """A hidden, unique name in the target's folder (same file system, so os.replace is atomic)."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.partial{suffix}")


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:  # cleanup must never hide the original error
        log.warning("could not remove temporary file %s", path)


def write_image(
    volume: Volume,
    path: str | os.PathLike[str],
    *,
    dtype: PixelType = "auto",
    sidecar: bool = True,
    overwrite: bool = False,
    description: str | None = None,
    progress: Progress | None = None,
    notes: list[str] | None = None,
) -> Path:
    """Write a Volume to .nii/.nii.gz/.nrrd/.mha (plus a JSON sidecar) atomically; returns the image path.

    ``notes``, when given, receives a plain line for what the file cannot hold, e.g. the true slice
    positions of an uneven or tilted stack (one regular grid is written; the sidecar keeps them).
    """
    import SimpleITK as sitk

    target = Path(path)
    suffix = image_suffix(target)
    if suffix is None:
        known = ", ".join(IMAGE_SUFFIXES)
        raise StudyWriteError(f"{target}: unknown image file type; the name must end in one of {known}")
    if dtype not in ("auto", "float32", "int16"):
        raise StudyWriteError(f"{target}: unknown pixel type {dtype!r}; use 'auto', 'float32' or 'int16'")
    if target.is_dir():
        raise StudyWriteError(f"{target}: is a folder, not an image file name")
    side = sidecar_path(target)
    if not overwrite:
        existing = [p for p in (target, side if sidecar else None) if p is not None and p.exists()]
        if existing:
            raise StudyWriteError(
                f"{existing[0]}: already exists; refusing to replace it (pass overwrite=True to replace)"
            )
    check_writable_volume(volume, target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StudyWriteError(f"{target.parent}: cannot create the folder: {exc.strerror or exc}") from exc

    clipped = 0
    if dtype == "float32" or (dtype == "auto" and not int16_is_lossless(volume.hu)):
        stored: np.ndarray = volume.hu.astype(np.float32, copy=False)
        stored_type = "float32"
    else:
        stored, clipped = to_int16(volume.hu)
        stored_type = "int16"
    if clipped:
        log.warning("%s: %d voxel(s) outside the int16 range were clipped", target, clipped)

    if notes is not None and volume.is_regularised:
        notes.append(regular_grid_note(volume, target))
    image = sitk.GetImageFromArray(stored)  # (z, y, x) array -> (x, y, z) image
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(tuple(float(v) for v in volume.direction.reshape(-1)))
    text = short_description(volume) if description is None else description
    if text:
        # NIfTI's descrip holds 79 bytes; keep every format's note the same short text.
        image.SetMetaData("ITK_FileNotes", text.encode("ascii", "replace").decode()[:NIFTI_DESCRIP_MAX])

    tmp_image = temp_name_beside(target, suffix)
    tmp_side = temp_name_beside(side, ".json")
    try:
        try:
            sitk.WriteImage(image, str(tmp_image), useCompression=suffix in (".nii.gz", ".nrrd", ".mha"))
        except RuntimeError as exc:
            raise StudyWriteError(
                f"{target}: SimpleITK could not write the image: {_first_line(exc)}"
            ) from exc
        if sidecar:
            doc = {
                "format": SIDECAR_FORMAT,
                "version": SIDECAR_VERSION,
                "image": target.name,
                "written": datetime.now(UTC).isoformat(timespec="seconds"),
                "engine_version": engine_version(),
                "description": text,
                "stored_dtype": stored_type,
                "clipped_voxels": clipped,
                "shape_zyx": list(volume.shape),
                "spacing_xyz_mm": list(volume.spacing),
                "origin_xyz_mm": list(volume.origin),
                "direction": volume.direction.tolist(),
                "meta": volume.meta,
            }
            tmp_side.write_text(json.dumps(doc, indent=2, default=json_default), encoding="utf-8")
        if progress is not None:
            # Before the renames: a callback that raises (a cancel) leaves nothing behind.
            progress(1, 1)
        # The image is what a reader treats as "the study", so it lands last.
        if sidecar:
            os.replace(tmp_side, side)
        os.replace(tmp_image, target)
    except OSError as exc:
        raise StudyWriteError(f"{target}: could not write: {exc.strerror or exc}") from exc
    finally:
        _remove_quietly(tmp_image)
        _remove_quietly(tmp_side)
    return target


def regular_grid_note(volume: Volume, target: Path) -> str:
    """What an image file of an uneven/tilted stack holds instead of the scanner's slice positions."""
    sx, sy, sz = volume.spacing
    return (
        f"{target.name}: the source slices are not on one regular grid (uneven steps, gaps or gantry tilt); "
        f"the file holds a regular grid of {volume.shape[0]} slices {sz:.3f} mm apart along the slice "
        f"normal from origin ({', '.join(f'{v:.2f}' for v in volume.origin)}) mm, so slices are placed "
        f"up to {volume.regularisation_mm():.2f} mm from where the scanner put them (the JSON sidecar "
        "keeps the true positions as meta.slice_positions_lps)"
    )


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
