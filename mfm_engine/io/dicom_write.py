"""Write a `Volume` as a DICOM CT Image Storage series (one file per axial slice), atomically.

Choices (callers and readers rely on them):
- Pixels: signed int16 (PixelRepresentation 1), RescaleSlope 1, RescaleIntercept 0, RescaleType HU;
  HU are rounded to the nearest integer (round trip within 0.5 HU). Values outside int16 are clipped,
  logged, and the count is written into ImageComments. NaN/inf voxels are refused.
- Geometry: slice k sits at ``origin + direction[:, 2] * spacing_z * k``; ImageOrientationPatient
  is the first two direction columns; PixelSpacing is (row spacing, column spacing) = (y, x).
  DICOM readers order slices along row × column, so a left-handed grid (det(direction) < 0) comes
  back z-flipped (the same physical image, indexed the other way); right-handed grids round-trip
  exactly.
- Identity: patient and study attributes come from ``source.meta['dicom']`` (or the volume's own
  ``meta['dicom']``), keeping StudyInstanceUID and FrameOfReferenceUID; the series and every
  instance get new UIDs (``2.25.<uuid>``). Without DICOM info a new study is made, with
  'ANONYMOUS' (or 'PHANTOM^MFM') placeholders; `new_study_meta` builds one that several series can
  share (e.g. a phantom's native, arterial and label series).
- Labelling: model output (``meta['synthetic']``) is ImageType DERIVED\\SECONDARY\\AXIAL,
  SyntheticData YES, with a DerivationDescription naming model, solver and steps, a
  DerivationCodeSequence (a local ``99MFM`` code: DICOM has no standard one for model synthesis),
  a SourceImageSequence referencing the source slices, and a SeriesDescription starting with
  SYNTHETIC. The procedural phantom (``meta['phantom']``) is ORIGINAL\\PRIMARY\\AXIAL but
  SyntheticData YES, Manufacturer 'MFM Studio procedural phantom', and says it is not a patient.
- Contrast: a synthetic or phantom *native* image carries no Contrast/Bolus module (no agent is
  depicted); a synthetic contrast-phase image says ContrastBolusAgent 'SYNTHETIC (virtual
  enhancement)', a phantom one 'PHANTOM (simulated enhancement)'; a real re-exported contrast phase
  copies ``meta['dicom']['contrast']`` when present, else leaves the agent empty (unknown).
- Atomic: files go into a hidden folder beside the target, which is renamed into place at the end;
  a failure or a ``progress`` callback that raises removes it. A non-empty target folder is refused
  unless ``overwrite=True``, and even then only a folder holding nothing but ``*.dcm`` files is
  replaced (a guard against wiping an unrelated folder by a typo).
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import DSfloat

from mfm_engine.errors import StudyWriteError
from mfm_engine.intensity import DEFAULT_WINDOW
from mfm_engine.io.image_write import (
    check_writable_volume,
    engine_version,
    provenance_summary,
    to_int16,
)
from mfm_engine.volume import Volume

log = logging.getLogger(__name__)

Progress = Callable[[int, int], object]

MANUFACTURER = "MFM Studio"
PHANTOM_MANUFACTURER = "MFM Studio procedural phantom"
# Phases that show iodinated contrast; anything else (native, unknown) gets no Contrast/Bolus module.
CONTRAST_PHASES = frozenset({"arterial", "portal-venous", "venous", "delayed", "nephrographic", "contrast"})
# Local coding scheme ("99" prefix = private, allowed by PS3.16 §8.2) for what DICOM lacks a code for.
LOCAL_SCHEME = "99MFM"

# Attributes copied from meta['dicom']['patient'] / ['study']; anything else there is ignored so a
# stray key can never override the series/instance attributes this writer owns.
PATIENT_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientComments",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "EthnicGroup",
)
STUDY_KEYWORDS = (
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
)
SERIES_KEYWORDS = ("PatientPosition", "BodyPartExamined", "Laterality")
IMAGE_KEYWORDS = ("ConvolutionKernel", "ReconstructionDiameter")
CONTRAST_KEYWORDS = (
    "ContrastBolusAgent",
    "ContrastBolusRoute",
    "ContrastBolusVolume",
    "ContrastBolusStartTime",
    "ContrastBolusTotalDose",
    "ContrastBolusIngredient",
    "ContrastBolusIngredientConcentration",
)
# Body Part Examined terms (PS3.16 Annex L) of unpaired regions: no Laterality for these.
UNPAIRED_BODY_PARTS = frozenset(
    {
        "ABDOMEN", "ABDOMENPELVIS", "CHEST", "CHESTABDOMEN", "CHESTABDPELVIS", "PELVIS", "HEAD",
        "HEADNECK", "NECK", "BRAIN", "SKULL", "WHOLEBODY", "SPINE", "CSPINE", "TSPINE", "LSPINE",
        "SSPINE", "HEART", "LIVER", "PANCREAS", "SPLEEN", "STOMACH", "BLADDER", "AORTA", "THORAX",
    }
)  # fmt: skip
# Maximum lengths of the value representations we fill from free text.
LO_MAX, ST_MAX, LT_MAX, SH_MAX = 64, 1024, 10240, 16


def new_uid() -> str:
    """A fresh globally unique DICOM UID (2.25.<uuid>, needing no registered root)."""
    return generate_uid(prefix=None)


def new_study_meta(
    *,
    patient_name: str = "ANONYMOUS",
    patient_id: str = "ANONYMOUS",
    study_description: str = "",
    study_id: str = "1",
) -> dict[str, Any]:
    """A fresh meta['dicom'] (new Study and Frame of Reference UIDs) that several series can share."""
    now = datetime.now()
    return {
        "patient": {
            "PatientName": patient_name,
            "PatientID": patient_id,
            "PatientBirthDate": "",
            "PatientSex": "",
        },
        "study": {
            "StudyInstanceUID": new_uid(),
            "StudyDate": now.strftime("%Y%m%d"),
            "StudyTime": now.strftime("%H%M%S"),
            "StudyID": study_id,
            "AccessionNumber": "",
            "ReferringPhysicianName": "",
            "StudyDescription": study_description,
        },
        "frame_of_reference_uid": new_uid(),
    }


def default_series_description(volume: Volume) -> str:
    """'SYNTHETIC <phase> (MFM <model> <solver>x<steps>)', 'PHANTOM <phase> seed <n>', or the source's."""
    meta = volume.meta
    phase = meta.get("phase") or "CT"
    if meta.get("synthetic"):
        summary = provenance_summary(meta)
        return f"SYNTHETIC {phase}" + (f" (MFM {summary})" if summary else " (MFM)")
    if meta.get("phantom"):
        seed = meta.get("phantom_seed")
        return f"PHANTOM {phase}" + (f" seed {seed}" if seed is not None else "")
    return str(meta.get("series_description") or f"MFM Studio {phase}")


def _clip_text(text: str, limit: int) -> str:
    """Text cut to at most ``limit`` bytes of UTF-8 (the series' character set), marked with '...'."""
    if len(text.encode("utf-8")) <= limit:
        return text
    out = text.encode("utf-8")[: limit - 3].decode("utf-8", errors="ignore")
    return out.rstrip() + "..."


def _ds(value: float) -> DSfloat:
    # DS holds at most 16 characters; auto_format keeps the most precision that fits.
    return DSfloat(float(value), auto_format=True)


def _ds_mm(value: float) -> DSfloat:
    # Lengths in mm: a micrometre is far below any scanner's precision, and rounding to it turns
    # float noise such as 0.99999999999999 back into the 1 that was meant.
    return DSfloat(round(float(value), 6) + 0.0, auto_format=True)


def _valid(keyword: str, value: Any) -> bool:
    """True when a source value is valid for the keyword's VR (bad ones are dropped, not warned)."""
    vr = pydicom.datadict.dictionary_VR(keyword)
    if vr == "UI":
        # An empty UID is legal for some Type 2 attributes but never useful to copy: make a new one.
        return _is_uid(value)
    try:
        values = value if isinstance(value, list | tuple) else [value]
        for v in values:
            pydicom.valuerep.validate_value(vr, v, pydicom.config.RAISE)
    except (ValueError, TypeError):
        return False
    return True


def _is_uid(value: object) -> bool:
    return isinstance(value, str) and bool(value) and pydicom.uid.UID(value).is_valid


def _copy_keywords(
    ds: Dataset, source: Mapping[str, Any], keywords: tuple[str, ...], notes: list[str]
) -> None:
    for keyword in keywords:
        if keyword not in source or source[keyword] is None:
            continue
        value = source[keyword]
        if isinstance(value, list | tuple):
            value = list(value)
        elif not isinstance(value, str | int | float):
            value = str(value)
        if _valid(keyword, value):
            setattr(ds, keyword, value)
        else:
            notes.append(f"source {keyword} {value!r} is not valid DICOM and was left out")


def _check_direction(volume: Volume, folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = volume.direction
    row, col, slc = d[:, 0], d[:, 1], d[:, 2]
    norms = np.linalg.norm(d, axis=0)
    if not np.allclose(norms, 1.0, atol=1e-4) or abs(float(row @ col)) > 1e-4:
        raise StudyWriteError(
            f"{folder}: DICOM needs unit, perpendicular row/column directions and a unit slice direction; "
            f"the volume's direction is {d.tolist()}"
        )
    # A slice direction tilted against the plane normal (gantry tilt) is fine: every slice gets its
    # own ImagePositionPatient. One lying (nearly) in the image plane is not a stack of slices.
    if abs(float(np.cross(row, col) @ slc)) < 0.5:
        raise StudyWriteError(
            f"{folder}: the slice direction is more than 60° from the image-plane normal; "
            "these are not axial slices a DICOM CT series can hold — resample first"
        )
    return row, col, slc


def _check_target(folder: Path, overwrite: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise StudyWriteError(f"{folder}: exists and is not a folder")
    if not folder.is_dir():
        return
    entries = list(folder.iterdir())
    if not entries:
        return
    if not overwrite:
        raise StudyWriteError(
            f"{folder}: the folder is not empty ({len(entries)} entries); refusing to write a series into it "
            "(pass overwrite=True to replace a previous series there)"
        )
    foreign = [e.name for e in entries if not (e.is_file() and e.suffix.lower() == ".dcm")]
    if foreign:
        raise StudyWriteError(
            f"{folder}: refusing to replace it: it holds things other than .dcm files "
            f"(e.g. {foreign[0]!r}); only a folder of a previous DICOM series is replaced"
        )


def _series_template(
    volume: Volume,
    info: Mapping[str, Any],
    *,
    series_description: str,
    series_number: int,
    notes: list[str],
) -> Dataset:
    """Everything that is the same for every slice of the series."""
    meta = volume.meta
    synthetic = bool(meta.get("synthetic"))
    phantom = bool(meta.get("phantom"))
    phase = str(meta.get("phase") or "")
    prov = meta.get("provenance") or {}
    now = datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: source names may hold any script
    ds.SOPClassUID = CTImageStorage
    ds.InstanceCreationDate = date
    ds.InstanceCreationTime = time

    # Patient: Type 2 attributes present even when unknown (empty).
    # "X^" rather than "X": a bare single component is the retired Person Name form.
    ds.PatientName = "PHANTOM^MFM" if phantom and not synthetic else "ANONYMOUS^"
    ds.PatientID = "PHANTOM-MFM" if phantom and not synthetic else "ANONYMOUS"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    _copy_keywords(ds, info.get("patient") or {}, PATIENT_KEYWORDS, notes)

    # General Study.
    ds.StudyInstanceUID = new_uid()
    ds.StudyDate = date
    ds.StudyTime = now.strftime("%H%M%S")
    ds.ReferringPhysicianName = ""
    # A study we create gets ID "1" (needed for a DICOMDIR); a copied study keeps whatever it had.
    ds.StudyID = "" if (info.get("study") or {}).get("StudyInstanceUID") else "1"
    ds.AccessionNumber = ""
    _copy_keywords(ds, info.get("study") or {}, STUDY_KEYWORDS, notes)

    # General Series.
    ds.Modality = "CT"
    ds.SeriesInstanceUID = new_uid()
    ds.SeriesNumber = int(series_number)
    ds.SeriesDate = date
    ds.SeriesTime = time
    ds.SeriesDescription = _clip_text(series_description, LO_MAX)
    # Type 2C: the phantom is built head-first supine; for anything else unknown stays empty.
    ds.PatientPosition = "HFS" if phantom else ""
    series_info = dict(info.get("series") or {})
    for alias, keyword in (
        ("patient_position", "PatientPosition"),
        ("body_part_examined", "BodyPartExamined"),
    ):
        if info.get(alias):
            series_info.setdefault(keyword, info[alias])
    _copy_keywords(ds, series_info, SERIES_KEYWORDS, notes)
    if "BodyPartExamined" not in ds and phantom:
        ds.BodyPartExamined = "ABDOMEN"
    if "Laterality" not in ds and str(ds.get("BodyPartExamined", "")).upper() not in UNPAIRED_BODY_PARTS:
        # Type 2C, needed when the body part may be paired; not knowing which side, empty = unknown.
        ds.Laterality = ""

    # Frame of Reference: kept from the source so the synthetic series overlays it in any viewer.
    for_uid = info.get("frame_of_reference_uid")
    ds.FrameOfReferenceUID = for_uid if _is_uid(for_uid) else new_uid()
    ds.PositionReferenceIndicator = ""

    # General Equipment: the equipment that made *these* pixels is this software, not the scanner.
    ds.Manufacturer = PHANTOM_MANUFACTURER if phantom and not synthetic else MANUFACTURER
    if synthetic and prov.get("model"):
        ds.ManufacturerModelName = _clip_text(str(prov["model"]), LO_MAX)
    elif phantom:
        ds.ManufacturerModelName = "procedural abdominal phantom"
    ds.SoftwareVersions = f"mfm_engine {engine_version()}"
    if synthetic or phantom:
        # PS3.3 C.12.1: the equipment that synthesised the data, as a Contributing Equipment item.
        contributor = Dataset()
        purpose = Dataset()
        purpose.CodeValue = "109100"
        purpose.CodingSchemeDesignator = "DCM"
        purpose.CodeMeaning = "Synthesizing Equipment"
        contributor.PurposeOfReferenceCodeSequence = Sequence([purpose])
        contributor.Manufacturer = ds.Manufacturer
        if "ManufacturerModelName" in ds:
            contributor.ManufacturerModelName = ds.ManufacturerModelName
        contributor.SoftwareVersions = ds.SoftwareVersions
        contributor.ContributionDateTime = now.strftime("%Y%m%d%H%M%S")
        contributor.ContributionDescription = _clip_text(
            "model translation: " + (provenance_summary(meta) or "unknown model")
            if synthetic
            else "procedural phantom generator",
            ST_MAX,
        )
        ds.ContributingEquipmentSequence = Sequence([contributor])

    # General Image / CT Image.
    ds.ImageType = (
        ["ORIGINAL", "PRIMARY", "AXIAL"] if phantom and not synthetic else ["DERIVED", "SECONDARY", "AXIAL"]
    )
    ds.ContentDate = date
    ds.ContentTime = time
    ds.AcquisitionNumber = 1
    ds.BurnedInAnnotation = "NO"
    ds.KVP = ""  # Type 2: no X-ray tube made these pixels
    if synthetic or phantom:
        # SOP Common (PS3.3 C.12.1). Left out otherwise: absence means "not stated", and validators
        # older than the attribute (dicom3tools before ~2023) flag it as unknown.
        ds.SyntheticData = "YES"

    comments: list[str] = []
    if synthetic:
        comments.append(
            "SYNTHETIC image computed by a model (MFM Studio), not acquired by a scanner. Not for diagnosis."
        )
        if phase == "native":
            comments.append("Virtual non-contrast: no contrast agent is depicted.")
        if phantom:
            comments.append("Computed from a procedural phantom, not a patient.")
        ds.DerivationDescription = _clip_text(_derivation_text(volume, info), ST_MAX)
        code = Dataset()
        code.CodeValue = (
            "MFM-FM" if prov.get("kind", "flow") == "flow" else f"MFM-{str(prov['kind']).upper()}"[:SH_MAX]
        )
        code.CodingSchemeDesignator = LOCAL_SCHEME
        code.CodeMeaning = _clip_text(
            {"flow": "Flow-matching image translation"}.get(
                prov.get("kind", "flow"), f"{prov.get('kind')} image translation"
            ),
            LO_MAX,
        )
        ds.DerivationCodeSequence = Sequence([code])
    elif phantom:
        seed = meta.get("phantom_seed")
        comments.append(
            "Computer-generated procedural phantom"
            + (f" (seed {seed})" if seed is not None else "")
            + ", not a patient. Synthetic test data, not for diagnosis."
        )
    else:
        comments.append("Exported by MFM Studio.")
    for warning in meta.get("warnings") or []:
        comments.append(f"Note from reading the source: {warning}")
    ds.ImageComments = _clip_text(" ".join(comments), LT_MAX)

    # Contrast/Bolus: only where the pixels show contrast (see module docstring).
    if phase in CONTRAST_PHASES:
        if synthetic:
            ds.ContrastBolusAgent = "SYNTHETIC (virtual enhancement)"
        elif phantom:
            ds.ContrastBolusAgent = "PHANTOM (simulated enhancement)"
        else:
            ds.ContrastBolusAgent = ""
            contrast = dict(info.get("contrast") or {})
            if info.get("contrast_bolus_agent"):
                contrast.setdefault("ContrastBolusAgent", info["contrast_bolus_agent"])
            _copy_keywords(ds, contrast, CONTRAST_KEYWORDS, notes)

    # Image Pixel / CT Image pixel description.
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    z, y, x = volume.shape
    ds.Rows = y
    ds.Columns = x
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = _ds(0)
    ds.RescaleSlope = _ds(1)
    ds.RescaleType = "HU"

    # VOI LUT: open in the abdomen window (the viewer's default too).
    ds.WindowCenter = _ds(DEFAULT_WINDOW.level)
    ds.WindowWidth = _ds(DEFAULT_WINDOW.width)
    ds.WindowCenterWidthExplanation = DEFAULT_WINDOW.name.upper()

    # Image Plane: the parts shared by all slices. Thickness is the source's (how much of the body
    # each slice averages), never the step between slices; unknown stays empty (Type 2).
    sx, sy, _ = volume.spacing
    ds.PixelSpacing = [_ds_mm(sy), _ds_mm(sx)]
    image_info = dict(info.get("image") or {})
    thickness = _positive_float(image_info.pop("SliceThickness", None))
    if thickness is None and phantom and not synthetic:
        thickness = volume.spacing[2]  # the phantom's slices are exactly one step thick
    ds.SliceThickness = _ds_mm(thickness) if thickness is not None else ""
    # Reconstruction attributes that still describe a synthetic slice computed from the source
    # slice: field of view and kernel shape its pixel size and noise texture.
    _copy_keywords(ds, image_info, IMAGE_KEYWORDS, notes)
    _lossy_attributes(ds, info.get("lossy"), bool(info.get("transfer_syntax_uid")))
    return ds


def _positive_float(value: Any) -> float | None:
    try:
        out = float(value[0] if isinstance(value, list | tuple) else value)
    except (TypeError, ValueError, IndexError):
        return None
    return out if np.isfinite(out) and out > 0 else None


def _lossy_attributes(ds: Dataset, lossy: Mapping[str, Any] | None, source_was_dicom: bool) -> None:
    """LossyImageCompression "01" with the source's ratio(s) and method(s) (PS3.3 C.7.6.1.1.5)."""
    if not lossy:
        if source_was_dicom:
            ds.LossyImageCompression = "00"  # every source file said lossless (or was uncompressed)
        return  # unknown (e.g. from NIfTI): say nothing rather than guess
    ds.LossyImageCompression = "01"
    ratios = [float(r) for r in lossy.get("ratio") or []]
    methods = [str(m) for m in lossy.get("method") or []]
    if ratios and methods:
        # Method is Type 1C with the ratio, and the two are paired value by value.
        n = min(len(ratios), len(methods)) if len(methods) > 1 else len(ratios)
        ds.LossyImageCompressionRatio = [_ds(r) for r in ratios[:n]]
        ds.LossyImageCompressionMethod = methods[:n] if len(methods) > 1 else methods * n
    elif methods:
        ds.LossyImageCompressionMethod = methods


def _derivation_text(volume: Volume, info: Mapping[str, Any]) -> str:
    meta = volume.meta
    prov = meta.get("provenance") or {}
    parts = [f"Synthetic {meta.get('phase') or 'CT'} image computed by MFM Studio {engine_version()}"]
    direction = prov.get("direction")
    if direction:
        parts.append(
            {"c2n": "from contrast to native", "n2c": "from native to contrast"}.get(direction, direction)
        )
    parts.append(f"model {prov.get('model', 'unknown')}")
    if prov.get("checkpoint"):
        parts.append(f"checkpoint {Path(str(prov['checkpoint'])).name}")
    if prov.get("kind"):
        parts.append(f"kind {prov['kind']}")
    parts.append(f"solver {prov.get('solver', 'unknown')}")
    parts.append(f"steps {prov.get('steps', 'unknown')}")
    if prov.get("nfe") is not None:
        parts.append(f"NFE {prov['nfe']}")
    if info.get("series_instance_uid"):
        parts.append(f"source series {info['series_instance_uid']}")
    return "; ".join(parts)


def _source_reference(sop_class_uid: str, sop_instance_uid: str, frame: int | None) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class_uid
    item.ReferencedSOPInstanceUID = sop_instance_uid
    if frame is not None:
        item.ReferencedFrameNumber = frame  # the source is multi-frame: name the frame this slice came from
    purpose = Dataset()
    purpose.CodeValue = "121322"
    purpose.CodingSchemeDesignator = "DCM"
    purpose.CodeMeaning = "Source image for image processing operation"
    item.PurposeOfReferenceCodeSequence = Sequence([purpose])
    item.SpatialLocationsPreserved = "YES"  # the synthetic slice lies on its source slice's grid
    return item


def write_dicom_series(
    volume: Volume,
    folder: str | os.PathLike[str],
    *,
    series_description: str | None = None,
    source: Volume | None = None,
    series_number: int = 901,
    overwrite: bool = False,
    progress: Progress | None = None,
    overrides: Mapping[str, Any] | None = None,
    notes: list[str] | None = None,
) -> list[Path]:
    """Write a Volume as a CT Image Storage series, one file per axial slice; returns the files in z order.

    ``progress(i, n)`` is called after each slice; an exception it raises aborts the write and leaves
    nothing behind. ``overrides`` (keyword → value) is applied last to every slice, e.g. a window for
    a label map. ``notes``, when given, receives one plain line for each thing of the source that
    could not be kept (references, UIDs, invalid values), for the caller to show the user.
    """
    target = Path(folder)
    _check_target(target, overwrite)
    check_writable_volume(volume, target)
    row, col, slc = _check_direction(volume, target)

    info: Mapping[str, Any] = (source.meta if source is not None else volume.meta).get("dicom") or {}
    notes = notes if notes is not None else []
    positions = _slice_positions(volume, source)
    description = series_description or default_series_description(volume)
    if volume.meta.get("synthetic") and not description.upper().startswith("SYNTHETIC"):
        description = "SYNTHETIC " + description
    ds_series = _series_template(
        volume, info, series_description=description, series_number=series_number, notes=notes
    )

    z = volume.shape[0]
    sop_uids = list(info.get("sop_instance_uids") or [])
    sop_class = info.get("sop_class_uid") if _is_uid(info.get("sop_class_uid")) else CTImageStorage
    references = bool(volume.meta.get("synthetic") and sop_uids)
    if references and len(sop_uids) != z:
        notes.append(f"source has {len(sop_uids)} slice UIDs for {z} slices; SourceImageSequence left out")
        references = False
    if references and not all(_is_uid(u) for u in sop_uids):
        # Some real series ship with empty UIDs; a reference to "" would be invalid DICOM.
        notes.append(
            "the source slices have empty or invalid SOP Instance UIDs, so the synthetic slices cannot "
            "reference them (SourceImageSequence left out)"
        )
        references = False
    if info and not _is_uid((info.get("study") or {}).get("StudyInstanceUID")):
        notes.append(
            "the source's StudyInstanceUID is empty or invalid, so the series is written into a NEW study "
            "(a PACS will not file it beside its source)"
        )
    if info and not _is_uid(info.get("frame_of_reference_uid")):
        notes.append(
            "the source's FrameOfReferenceUID is empty or invalid; a new one was made, so viewers will not "
            "link this series to its source spatially"
        )

    # A multi-frame source repeats its one SOP Instance UID per frame: references then need frame numbers.
    frames: list[int | None] = [None] * z
    if references and len(set(sop_uids)) < len(sop_uids):
        seen: dict[str, int] = {}
        for k, uid in enumerate(sop_uids):
            seen[uid] = seen.get(uid, 0) + 1
            frames[k] = seen[uid]

    rounded = np.rint(volume.hu)
    clipped = int(np.count_nonzero((rounded < -32768) | (rounded > 32767)))
    del rounded
    if clipped:
        msg = f"{clipped} voxel(s) outside the int16 range were clipped to -32768..32767 HU"
        log.warning("%s: %s", target, msg)
        ds_series.ImageComments = _clip_text(f"{ds_series.ImageComments} {msg}.", LT_MAX)
    if z > 1 and not _is_uneven(positions, slc):
        # Type 3, and only true for an even stack; an uneven one has each slice's position to say it.
        ds_series.SpacingBetweenSlices = _ds_mm(abs(float((positions[-1] - positions[0]) @ slc)) / (z - 1))
    for note in notes:
        log.info("%s: %s", target, note)

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StudyWriteError(f"{target.parent}: cannot create the folder: {exc.strerror or exc}") from exc
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.partial")
    staging.mkdir()
    width = max(4, len(str(z)))
    names = [f"CT{k + 1:0{width}d}.dcm" for k in range(z)]
    normal = np.cross(row, col)
    thickness = _slice_thickness(volume, info)
    try:
        for k in range(z):
            ds = copy.deepcopy(ds_series)  # never share element objects between slices
            sop_uid = new_uid()
            ds.SOPInstanceUID = sop_uid
            ds.InstanceNumber = k + 1
            if thickness is not None and thickness[k]:
                ds.SliceThickness = _ds_mm(thickness[k])
            position = positions[k]
            ds.ImagePositionPatient = [_ds(v) for v in position]
            ds.ImageOrientationPatient = [_ds(v) for v in (*row, *col)]
            ds.SliceLocation = _ds_mm(float(position @ normal))
            if references:
                ds.SourceImageSequence = Sequence([_source_reference(sop_class, str(sop_uids[k]), frames[k])])
            pixels, _ = to_int16(volume.hu[k])
            ds.PixelData = pixels.astype("<i2", copy=False).tobytes()
            for keyword, value in (overrides or {}).items():
                setattr(ds, keyword, value)
            validate_dataset(ds, target / names[k])

            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
            ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
            ds.file_meta.ImplementationVersionName = f"MFM_{engine_version()}"[:SH_MAX]
            try:
                pydicom.dcmwrite(staging / names[k], ds, enforce_file_format=True)
            except OSError as exc:
                raise StudyWriteError(
                    f"{target}: could not write slice {k + 1} of {z}: {exc.strerror or exc}"
                ) from exc
            except (ValueError, TypeError, AttributeError) as exc:
                raise StudyWriteError(f"{target}: slice {k + 1} of {z} is not valid DICOM: {exc}") from exc
            if progress is not None:
                progress(k + 1, z)
        _move_into_place(staging, target, overwrite)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return [target / name for name in names]


def _slice_positions(volume: Volume, source: Volume | None) -> np.ndarray:
    """(z, 3) ImagePositionPatient of every slice: the scanner's own, kept through translation.

    The volume's recorded positions first (a translation copies its input's metadata), then the
    source's when it has the same number of slices, else the regular grid.
    """
    if volume.meta.get("slice_positions_lps") is not None:
        return volume.true_slice_positions()
    if source is not None and source.shape[0] == volume.shape[0] and source.meta.get("slice_positions_lps"):
        return source.true_slice_positions()
    return volume.grid_slice_positions()


def _slice_thickness(volume: Volume, info: Mapping[str, Any]) -> list[float | None] | None:
    """The source's SliceThickness of each slice, when known for this many slices."""
    values = info.get("slice_thickness_mm")
    if not isinstance(values, list) or len(values) != volume.shape[0]:
        return None
    return [_positive_float(v) for v in values]


def _is_uneven(positions: np.ndarray, slice_direction: np.ndarray) -> bool:
    if len(positions) < 3:
        return False
    steps = np.diff(positions @ slice_direction)
    return float(np.ptp(steps)) > 0.01


def validate_dataset(ds: Dataset, where: Path | str) -> None:
    """Check every value against its VR as it will be encoded (bytes, not characters), recursively.

    pydicom's validators check repertoire and CS/DS/IS/DA/TM/UI formats; given the encoded bytes
    they also count length the way a validator does (a 64-character LO with one '…' is 66 bytes).
    """
    encodings = pydicom.charset.convert_encodings(ds.get("SpecificCharacterSet") or "ISO_IR 192")
    for elem in ds.iterall():
        if elem.VR == "SQ" or elem.value is None or elem.keyword == "PixelData":
            continue
        values = elem.value if elem.VM > 1 else [elem.value]
        for value in values:
            if elem.VR in _TEXT_VRS:
                # DSfloat / IS / int render as the text that will be written.
                check: Any = pydicom.charset.encode_string(str(value), encodings)
            elif isinstance(value, pydicom.valuerep.PersonName):
                check = value.encode(encodings)
            else:
                check = value
            try:
                pydicom.valuerep.validate_value(elem.VR, check, pydicom.config.RAISE)
            except (ValueError, TypeError) as exc:
                raise StudyWriteError(
                    f"{where}: {elem.keyword or elem.tag} ({elem.VR}) value {value!r} is not valid DICOM: "
                    f"{exc}"
                ) from exc


# Text VRs whose length limit counts encoded bytes.
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "SH", "ST", "TM", "UC", "UT"})


def _move_into_place(staging: Path, target: Path, overwrite: bool) -> None:
    # Checked again: the folder may have filled up while we wrote.
    _check_target(target, overwrite)
    try:
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        if not target.exists():
            os.replace(staging, target)
            return
        # overwrite=True over a previous series: swap, then delete the old one.
        old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.old")
        os.replace(target, old)
        try:
            os.replace(staging, target)
        except OSError:
            os.replace(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        raise StudyWriteError(f"{target}: could not move the finished series into place: {exc}") from exc
