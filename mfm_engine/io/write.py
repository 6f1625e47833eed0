"""One entry point for writing a study: an image file (NIfTI/NRRD/MHA) or a DICOM series folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mfm_engine.errors import StudyWriteError
from mfm_engine.io.dicom_write import write_dicom_series
from mfm_engine.io.image_write import IMAGE_SUFFIXES, image_suffix, write_image
from mfm_engine.volume import Volume

FORMATS = ("auto", "dicom", "nifti", "nrrd", "mha")
# What a forced image format appends to a path that has no image suffix yet.
_FORMAT_SUFFIX = {"nifti": ".nii.gz", "nrrd": ".nrrd", "mha": ".mha"}
_SUFFIX_FORMAT = {".nii.gz": "nifti", ".nii": "nifti", ".nrrd": "nrrd", ".mha": "mha"}


def write_study(
    volume: Volume,
    path: str | os.PathLike[str],
    *,
    format: str = "auto",
    source: Volume | None = None,
    **kw: Any,
) -> Path | list[Path]:
    """Write a volume: a path ending in .nii/.nii.gz/.nrrd/.mha → that file; anything else → a DICOM folder.

    ``format`` forces the kind: 'dicom' (a folder), or 'nifti' / 'nrrd' / 'mha' (``.nii.gz`` etc. is
    appended when the path has no image suffix). ``source`` (the series the volume was made from)
    only matters for DICOM, where it gives patient/study identity and the source-image references.
    Other keywords go to `write_image` or `write_dicom_series`. Returns the file, or the DICOM files.
    """
    target = Path(path)
    fmt = (format or "auto").lower()
    if fmt not in FORMATS:
        raise StudyWriteError(f"{target}: unknown output format {format!r}; use one of {', '.join(FORMATS)}")
    suffix = image_suffix(target)
    if fmt == "auto":
        fmt = _SUFFIX_FORMAT[suffix] if suffix else "dicom"
    if fmt == "dicom":
        if suffix:
            raise StudyWriteError(
                f"{target}: format 'dicom' writes a folder of slices, but this name ends in {suffix}; "
                "pick a folder name or an image format"
            )
        return write_dicom_series(volume, target, source=source, **kw)
    if suffix is None:
        target = target.with_name(target.name + _FORMAT_SUFFIX[fmt])
    elif _SUFFIX_FORMAT[suffix] != fmt:
        raise StudyWriteError(
            f"{target}: format {fmt!r} does not match the file suffix {suffix} "
            f"(image suffixes: {', '.join(IMAGE_SUFFIXES)})"
        )
    # DICOM-only options have no meaning for one image file; the series description becomes its note.
    if "series_description" in kw:
        kw.setdefault("description", kw.pop("series_description"))
    for dicom_only in ("series_number", "overrides"):
        kw.pop(dicom_only, None)
    return write_image(volume, target, **kw)
