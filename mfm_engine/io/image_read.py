"""Read one image file (NIfTI, NRRD, MHA/MHD) into a `Volume` with SimpleITK.

Choices:
- Geometry is SimpleITK's (LPS spacing, origin, direction), unchanged.
- Any integer or float pixel type becomes float32 HU (NIfTI scl_slope/scl_inter are applied by
  SimpleITK). A 2-D image becomes one slice of spacing 1 mm.
- Refused with a StudyReadError naming the file: 4-D (or higher) images, images with several
  components per voxel (colour, vectors), and images holding NaN or infinite voxels (the count is in
  the message) — there is no honest HU to put in their place. ITK's NIfTI reader silently turns
  NaN/inf into 0, so float NIfTI data is also checked in the file itself.
- Metadata: the JSON sidecar written beside the image by ``image_write`` (``ct.nii.gz`` → ``ct.json``,
  format "mfm-studio image sidecar") restores ``Volume.meta`` (synthetic/phantom flags, provenance,
  source UIDs); its warnings are kept, since they still describe the voxels. Without one, the
  header's description (NIfTI descrip) becomes the series description,
  and a description starting with SYNTHETIC or PHANTOM sets that flag. A sidecar that is not valid
  JSON or names another image is ignored with a warning.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mfm_engine.errors import StudyReadError
from mfm_engine.io.nifti_check import check_nifti
from mfm_engine.volume import Volume

IMAGE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
SIDECAR_FORMAT = "mfm-studio image sidecar"

# What ITK/NRRD/MetaImage say when a file's data stops short of what its header promises.
_TRUNCATION_SIGNS = ("expected", "not read completely", "ended before", "unexpected end", "premature")

# SimpleITK keys where formats keep a free-text description.
_DESCRIPTION_KEYS = ("descrip", "ITK_FileNotes", "content")


def image_suffix(path: str | os.PathLike[str]) -> str | None:
    """The image suffix of a file name ('.nii.gz', '.nii', '.nrrd', '.nhdr', '.mha', '.mhd'), or None."""
    name = Path(path).name.lower()
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return suffix
    return None


def _sidecar_path(path: Path) -> Path:
    suffix = image_suffix(path) or path.suffix
    return path.with_name(path.name[: len(path.name) - len(suffix)] + ".json")


def _read_sidecar(path: Path, warn: list[str]) -> dict[str, Any] | None:
    side = _sidecar_path(path)
    if not side.is_file():
        return None
    try:
        doc = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        warn.append(f"sidecar {side.name} ignored: not readable JSON ({exc})")
        return None
    if not isinstance(doc, dict) or doc.get("format") != SIDECAR_FORMAT:
        return None  # someone else's JSON (BIDS, TotalSegmentator output): not ours to interpret
    if doc.get("image") not in (None, path.name):
        warn.append(f"sidecar {side.name} ignored: it describes {doc.get('image')!r}, not {path.name}")
        return None
    meta = doc.get("meta")
    return meta if isinstance(meta, dict) else None


def _sitk_read_problem(exc: BaseException) -> str:
    """SimpleITK's failure in words: truncation named as such, else its last line."""
    text = str(exc)
    # MetaImage reports a short data block as "No such file or directory" for a file that exists.
    if any(sign in text.lower() for sign in _TRUNCATION_SIGNS) or "no such file" in text.lower():
        return (
            "truncated or corrupt file: the image data stops short of what its header promises "
            f"({_last_line(exc)})"
        )
    return f"SimpleITK could not read the image: {_last_line(exc)}"


def _description(image: Any) -> str:
    for key in _DESCRIPTION_KEYS:
        if image.HasMetaDataKey(key):
            text = image.GetMetaData(key).replace("\x00", "").strip()
            if text:
                return text
    return ""


def read_image(path: str | os.PathLike[str]) -> Volume:
    """Read a NIfTI / NRRD / MHA / MHD file into a float32 HU Volume (geometry from SimpleITK)."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.exists():
        raise StudyReadError(f"{path}: no such file")
    if not path.is_file():
        raise StudyReadError(f"{path}: is not a file")
    # ITK's NIfTI reader fills a truncated file's missing voxels without a word, so completeness is
    # checked in the file first (its size, or gzip's size trailer: no pass over the data).
    is_nifti = image_suffix(path) in (".nii", ".nii.gz")
    if is_nifti:
        check_nifti(path, count_nonfinite=False)
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        dim = reader.GetDimension()
        size = reader.GetSize()
        if dim > 3 and any(s > 1 for s in size[3:]):
            shape = " × ".join(str(s) for s in size)
            raise StudyReadError(
                f"{path}: is a {dim}-D image ({shape}, x × y × z × …); a CT volume must be 3-D — "
                "split out one 3-D volume first"
            )
        image = reader.Execute()
    except StudyReadError:
        raise
    except RuntimeError as exc:
        raise StudyReadError(f"{path}: {_sitk_read_problem(exc)}") from exc

    if image.GetNumberOfComponentsPerPixel() != 1:
        raise StudyReadError(
            f"{path}: has {image.GetNumberOfComponentsPerPixel()} components per voxel (colour or vector "
            "image); a CT volume has one"
        )
    if image.GetDimension() > 3:
        # Trailing axes of length 1 (a 4-D NIfTI with one time point): drop them.
        size = list(image.GetSize())
        image = sitk.Extract(image, size[:3] + [0] * (len(size) - 3), [0] * len(size))
    arr = sitk.GetArrayFromImage(image)
    if arr.dtype.kind not in "iuf":
        raise StudyReadError(f"{path}: pixel type {image.GetPixelIDTypeAsString()} is not a grey value")
    hu = arr.astype(np.float32)
    finite = np.isfinite(hu)
    if not finite.all():
        n_nan = int(np.count_nonzero(np.isnan(hu)))
        n_inf = int(hu.size - np.count_nonzero(finite) - n_nan)
        raise StudyReadError(
            f"{path}: holds {n_nan} NaN and {n_inf} infinite voxel(s) of {hu.size}; "
            "a CT volume must have a number in every voxel"
        )
    # ITK's NIfTI reader has also replaced NaN/inf by 0, so look at the stored data; only a float
    # file that now shows zeros can have had any.
    n_bad = check_nifti(path) if is_nifti and arr.dtype.kind == "f" and not np.all(hu) else 0
    if n_bad:
        raise StudyReadError(
            f"{path}: holds {n_bad} NaN or infinite voxel(s) of {hu.size} (SimpleITK would show them "
            "as 0); a CT volume must have a number in every voxel"
        )
    warn: list[str] = []
    if image.GetDimension() == 2:
        hu = hu[None]
        spacing = (*image.GetSpacing(), 1.0)
        origin = (*image.GetOrigin(), 0.0)
        d2 = np.asarray(image.GetDirection()).reshape(2, 2)
        direction = np.eye(3)
        direction[:2, :2] = d2
        warn.append(f"{path.name} is a 2-D image: read as one slice, slice spacing set to 1 mm")
    else:
        spacing = image.GetSpacing()
        origin = image.GetOrigin()
        direction = np.asarray(image.GetDirection()).reshape(3, 3)

    meta: dict[str, Any] = {}
    side_meta = _read_sidecar(path, warn)
    if side_meta is not None:
        meta.update(side_meta)
    description = _description(image)
    if description and not meta.get("series_description"):
        meta["series_description"] = description
    upper = description.upper()
    if side_meta is None and upper.startswith("SYNTHETIC"):
        meta["synthetic"] = True
    if side_meta is None and upper.startswith("PHANTOM"):
        meta["phantom"] = True
    meta["source_path"] = str(path)
    # Problems found when the source was first read (gaps, tilt) still describe these voxels.
    old = meta.get("warnings")
    meta["warnings"] = (list(old) if isinstance(old, list) else []) + warn
    return Volume(hu, spacing, origin, direction, meta)


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
