"""Read DICOM: find the series in a folder, then read one series (or one file) into a `Volume`.

Choices (callers and ``docs/info-json.md`` rely on them):
- Discovery reads every file's header once (pydicom, pixel data deferred) and keeps a small record
  per file, so reading a series afterwards touches each file only once more, for its pixels.
- Skipped, and reported by name with the reason: files that are not DICOM, unreadable headers,
  objects without pixel data or that are not images (SEG, SR, RT…), colour images, localizers
  (ImageType LOCALIZER), and slices whose orientation or size differs from the rest of their series.
- Grouping is by SeriesInstanceUID. Files with an EMPTY SeriesInstanceUID (anonymisers do this) are
  grouped by Study UID, Frame of Reference, Series Number, modality, orientation and size instead.
- Files of one series that share a slice position are not one volume (the WG-04 set keeps one image
  in several transfer syntaxes under one UID). They are split by transfer syntax, then by acquisition,
  echo or temporal position, whichever leaves no position twice; failing all, every file becomes its
  own one-slice series. Each part says so in its warnings.
- Slices are sorted along the slice normal (row × column direction cosines) ascending, the origin is
  the first slice's ImagePositionPatient and the direction columns are (row cosine, column cosine,
  normal): what SimpleITK gives. The slice spacing is the distance along the normal from the first to
  the last slice divided by (n − 1). That equals SimpleITK's value for every untilted series; under
  gantry tilt SimpleITK divides the straight-line distance instead, which stretches the stack by
  1/cos(tilt), while the distance along the normal puts every slice plane at its true depth.
- Uneven steps, missing slices and gantry tilt are never hidden: each gets a warning with the numbers
  (mm, slice indices); ``meta['dicom']['slice_positions_mm']`` keeps every slice's true position
  along the normal and ``meta['slice_positions_lps']`` its ImagePositionPatient, which writers and
  the viewer use. Nothing is resampled.
- Pixels: uncompressed little-endian data is read straight from the file; compressed syntaxes are
  decoded by pydicom (pylibjpeg-openjpeg for JPEG 2000, its own RLE decoder) and, where pydicom has
  no decoder, by SimpleITK/GDCM; when neither can, the error names the package to install.
  Rescale slope/intercept are applied per slice, giving float32 HU.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.multival import MultiValue

from mfm_engine.errors import StudyReadError
from mfm_engine.io.dicom_lossy import file_lossy, lossy_warning, series_lossy
from mfm_engine.volume import Volume

# Image-file suffixes that belong to the image reader, never tried as DICOM.
IMAGE_FILE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")

# Objects that may carry pixel-like data but are not images to translate.
NON_IMAGE_MODALITIES = {"SEG", "SR", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "PR", "KO", "REG", "DOC"}
NON_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "segmentation (SEG)",
    "1.2.840.10008.5.1.4.1.1.481.2": "RT dose",
    "1.2.840.10008.5.1.4.1.1.104.1": "encapsulated PDF",
}

# Transfer syntaxes whose pixels are plain little-endian arrays in the file.
_NATIVE_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}

# Which package decodes which family of transfer syntaxes (what to tell the user to install).
_DECODER_PACKAGES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
      "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"), "pylibjpeg-openjpeg"),
    (("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"), "pyjpegls (or pylibjpeg-libjpeg)"),
    (("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
      "1.2.840.10008.1.2.4.70"), "pylibjpeg-libjpeg"),
)  # fmt: skip

# Tolerances, in mm: positions closer than this are the same slice; steps that differ from the
# median step by more than the larger of these are uneven (scanners round positions to ~1e-3 mm).
_SAME_POSITION_MM = 1e-3
_UNEVEN_ABS_MM = 0.01
_UNEVEN_REL = 0.01
# A step this many times the usual one is a gap (missing slices), not just unevenness.
_GAP_FACTOR = 1.5
# Shear below this (degrees) is float noise, not gantry tilt.
_TILT_MIN_DEG = 0.05

_PATIENT_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge")
_STUDY_KEYS = (
    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
    "StudyDescription", "ReferringPhysicianName",
)  # fmt: skip


# Series-level attributes a derived series keeps (Type 2C PatientPosition); BodyPartExamined is
# already kept as meta['dicom']['body_part_examined'].
_SERIES_KEYS = ("PatientPosition",)
# Image attributes that still describe a synthetic slice made from this one, slice by slice.
_IMAGE_KEYS = ("SliceThickness", "ConvolutionKernel", "ReconstructionDiameter")


@dataclass
class SkippedFile:
    """A file discovery looked at and left out, with the plain-language reason."""

    path: Path
    reason: str


@dataclass
class DicomHeader:
    """What discovery keeps of one DICOM image file: enough to group, sort and read it."""

    path: Path
    sop_instance_uid: str
    sop_class_uid: str
    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    series_number: str
    modality: str
    description: str
    image_type: tuple[str, ...]
    orientation: np.ndarray | None  # 6 direction cosines (row, column), LPS
    position: np.ndarray | None  # ImagePositionPatient, mm, LPS
    pixel_spacing: tuple[float, float] | None  # (row spacing = y, column spacing = x), mm
    slice_thickness: float | None
    spacing_between_slices: float | None
    rows: int
    cols: int
    n_frames: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    slope: float
    intercept: float
    transfer_syntax: str
    pixel_offset: int | None  # file offset of uncompressed pixel bytes, when known
    pixel_length: int | None
    instance_number: int | None
    acquisition_number: str
    echo_number: str
    temporal_position: str
    gantry_tilt: float | None
    manufacturer: str
    synthetic_data: str
    lossy: dict[str, Any] | None = None  # see dicom_lossy.file_lossy

    @property
    def normal(self) -> np.ndarray | None:
        """Unit slice normal (row cosine × column cosine), or None without an orientation."""
        if self.orientation is None:
            return None
        n = np.cross(self.orientation[:3], self.orientation[3:])
        norm = float(np.linalg.norm(n))
        return n / norm if norm > 0 else None

    def orientation_key(self) -> tuple[float, ...] | None:
        """Orientation rounded so that float noise does not split a series."""
        return None if self.orientation is None else tuple(np.round(self.orientation, 3).tolist())


@dataclass
class SeriesInfo:
    """One series found in a folder: what a user needs to choose it, and what reading it needs."""

    uid: str
    description: str
    modality: str
    n_slices: int
    files: list[Path]
    rows: int
    cols: int
    key: str = ""  # unique within one discovery; equals uid unless the series had to be split
    series_number: str = ""
    transfer_syntax: str = ""  # name of the (first file's) transfer syntax
    skipped: list[SkippedFile] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    headers: list[DicomHeader] = field(default_factory=list, repr=False)

    def summary(self) -> str:
        """One line: modality, description, slice count, size, UID."""
        desc = self.description or "(no description)"
        uid = self.uid or "(empty SeriesInstanceUID)"
        note = f", {self.transfer_syntax}" if self.transfer_syntax else ""
        return (
            f"{self.modality or '?'} '{desc}': {self.n_slices} slice(s) of {self.cols}×{self.rows}{note}; "
            f"key {self.key or uid}"
        )


@dataclass
class FolderScan:
    """Everything discovery found in a folder: series, skipped files, image files, files looked at."""

    folder: Path
    series: list[SeriesInfo]
    skipped: list[SkippedFile]
    image_files: list[Path]
    n_files: int


# ------------------------------------------------------------------------------------------------
# Header reading
# ------------------------------------------------------------------------------------------------
def _text(ds: Any, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    return str(value).strip()


def _floats(ds: Any, keyword: str, n: int) -> np.ndarray | None:
    value = ds.get(keyword)
    if value is None:
        return None
    try:
        arr = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        return None
    return arr


def _keepable(ds: Any, keyword: str) -> str | list[str] | None:
    """A value to carry into a derived series: text, a list for multi-valued elements, None if empty."""
    value = ds.get(keyword)
    if isinstance(value, MultiValue | list | tuple):
        items = [str(v).strip() for v in value]
        return items if any(items) else None
    text = "" if value is None else str(value).strip()
    return text or None


def _float(ds: Any, keyword: str, default: float | None = None) -> float | None:
    value = ds.get(keyword)
    if isinstance(value, MultiValue | list | tuple):
        # Multi-valued by mistake (seen in the wild): take the first value.
        value = value[0] if len(value) else None
    if value is None or value == "":
        return default
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return out if np.isfinite(out) else default


def _int(ds: Any, keyword: str, default: int) -> int:
    value = _float(ds, keyword)
    return default if value is None else int(value)


def _classify_skip(ds: Any) -> str | None:
    """Why a readable DICOM dataset is not an image to read, or None when it is one."""
    modality = _text(ds, "Modality").upper()
    sop_class = _text(ds, "SOPClassUID")
    if sop_class in NON_IMAGE_SOP_CLASSES:
        return f"{NON_IMAGE_SOP_CLASSES[sop_class]} object, not an image"
    if modality in NON_IMAGE_MODALITIES:
        return f"{modality} object, not an image"
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            return "float pixel data (parametric map), not a CT image"
        return f"no pixel data ({sop_class or 'unknown SOP class'})"
    if _int(ds, "SamplesPerPixel", 1) != 1:
        return f"colour image ({_text(ds, 'PhotometricInterpretation') or '?'}), not a CT image"
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if "LOCALIZER" in image_type:
        return "localizer (ImageType " + "\\".join(image_type) + ")"
    return None


def _header_from_dataset(ds: Any, path: Path) -> DicomHeader:
    pixel_offset = pixel_length = None
    try:
        raw = ds.get_item("PixelData", keep_deferred=True)
    except (KeyError, TypeError):  # older pydicom without keep_deferred, or no pixels
        raw = None
    tell = getattr(raw, "value_tell", None)
    length = getattr(raw, "length", None)
    if tell is not None and length not in (None, 0xFFFFFFFF):
        pixel_offset, pixel_length = int(tell), int(length)
    spacing = _floats(ds, "PixelSpacing", 2)
    image_type = ds.get("ImageType") or []
    if isinstance(image_type, str):
        image_type = [image_type]
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    instance = _float(ds, "InstanceNumber")
    tilt = _float(ds, "GantryDetectorTilt")
    return DicomHeader(
        path=path,
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        sop_class_uid=_text(ds, "SOPClassUID"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        study_uid=_text(ds, "StudyInstanceUID"),
        frame_of_reference_uid=_text(ds, "FrameOfReferenceUID"),
        series_number=_text(ds, "SeriesNumber"),
        modality=_text(ds, "Modality").upper(),
        description=_text(ds, "SeriesDescription"),
        image_type=tuple(str(v).strip().upper() for v in image_type),
        orientation=_floats(ds, "ImageOrientationPatient", 6),
        position=_floats(ds, "ImagePositionPatient", 3),
        pixel_spacing=None if spacing is None else (float(spacing[0]), float(spacing[1])),
        slice_thickness=_float(ds, "SliceThickness"),
        spacing_between_slices=_float(ds, "SpacingBetweenSlices"),
        rows=_int(ds, "Rows", 0),
        cols=_int(ds, "Columns", 0),
        n_frames=max(1, _int(ds, "NumberOfFrames", 1)),
        bits_allocated=_int(ds, "BitsAllocated", 16),
        bits_stored=_int(ds, "BitsStored", _int(ds, "BitsAllocated", 16)),
        pixel_representation=_int(ds, "PixelRepresentation", 0),
        slope=_float(ds, "RescaleSlope", 1.0) or 1.0,
        intercept=_float(ds, "RescaleIntercept", 0.0) or 0.0,
        transfer_syntax=ts,
        pixel_offset=pixel_offset,
        pixel_length=pixel_length,
        instance_number=None if instance is None else int(instance),
        acquisition_number=_text(ds, "AcquisitionNumber"),
        echo_number=_text(ds, "EchoNumbers"),
        temporal_position=_text(ds, "TemporalPositionIdentifier"),
        gantry_tilt=tilt,
        manufacturer=_text(ds, "Manufacturer"),
        synthetic_data=_text(ds, "SyntheticData").upper(),
        lossy=file_lossy(ds, ts),
    )


def _dcmread_header(path: Path) -> tuple[Any, list[str]]:
    """Read a header with pixels deferred; pydicom's warnings are returned, not raised."""
    import pydicom

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # defer_size: large values (the pixels) are skipped, and their file offset is kept.
        ds = pydicom.dcmread(str(path), defer_size=4096)
    return ds, [str(w.message) for w in caught]


def read_header(path: str | os.PathLike[str]) -> DicomHeader | SkippedFile:
    """One file's header record, or a SkippedFile saying why it is not a readable DICOM image."""
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    try:
        ds, _ = _dcmread_header(path)
    except InvalidDicomError:
        return SkippedFile(path, "not DICOM")
    except (OSError, EOFError) as exc:
        return SkippedFile(path, f"unreadable: {exc}")
    except Exception as exc:  # pydicom raises many types on corrupt headers; none may escape as a traceback
        return SkippedFile(path, f"unreadable DICOM header ({type(exc).__name__}: {exc})")
    reason = _classify_skip(ds)
    if reason is not None:
        return SkippedFile(path, reason)
    try:
        header = _header_from_dataset(ds, path)
    except Exception as exc:  # a malformed value in a field we need
        return SkippedFile(path, f"unreadable DICOM header ({type(exc).__name__}: {exc})")
    if header.rows <= 0 or header.cols <= 0:
        return SkippedFile(path, f"no image size (Rows {header.rows}, Columns {header.cols})")
    return header


# ------------------------------------------------------------------------------------------------
# Discovery
# ------------------------------------------------------------------------------------------------
def is_image_file(path: Path) -> bool:
    """True for NIfTI / NRRD / MHA / MHD names (read by the image reader, not as DICOM)."""
    name = path.name.lower()
    return any(name.endswith(s) for s in IMAGE_FILE_SUFFIXES)


def _walk_files(folder: Path) -> list[Path]:
    out: list[Path] = []
    for root, dirs, files in os.walk(folder):
        # Hidden folders/files are tool state (.git, .DS_Store), never part of a study.
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(Path(root) / f for f in sorted(files) if not f.startswith("."))
    return out


def scan_folder(folder: str | os.PathLike[str]) -> FolderScan:
    """Read every header under a folder (recursively) and group the images into series."""
    folder = Path(folder)
    if not folder.exists():
        raise StudyReadError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise StudyReadError(f"{folder}: is not a folder")
    paths = _walk_files(folder)
    headers: list[DicomHeader] = []
    skipped: list[SkippedFile] = []
    image_files: list[Path] = []
    for path in paths:
        if is_image_file(path):
            image_files.append(path)
            continue
        rec = read_header(path)
        (skipped if isinstance(rec, SkippedFile) else headers).append(rec)  # type: ignore[arg-type]
    series = _group_into_series(headers, skipped, folder)
    # Image files (NIfTI…) are other studies, not skipped parts of a DICOM series: FolderScan lists them.
    folder_warnings = skipped_warnings(skipped, root=folder)
    for s in series:
        s.skipped = list(skipped) + s.skipped
        s.warnings = folder_warnings + s.warnings
    return FolderScan(folder, series, skipped, image_files, len(paths))


def _display_name(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return str(path.relative_to(root))
        except ValueError:
            pass
    return path.name


def skipped_warnings(
    skipped: Sequence[SkippedFile], max_names: int = 5, root: Path | None = None
) -> list[str]:
    """Plain warnings counting the skipped files by reason, naming the first few (relative to root)."""
    by_reason: dict[str, list[Path]] = defaultdict(list)
    for s in skipped:
        by_reason[s.reason].append(s.path)
    out = []
    for reason, paths in by_reason.items():
        names = ", ".join(_display_name(p, root) for p in paths[:max_names])
        more = f" and {len(paths) - max_names} more" if len(paths) > max_names else ""
        out.append(f"skipped {len(paths)} file(s), {reason}: {names}{more}")
    return out


def _fallback_key(h: DicomHeader) -> tuple:
    # Empty SeriesInstanceUID: the attributes that still separate two series of one exam.
    return (h.study_uid, h.frame_of_reference_uid, h.series_number, h.modality, h.orientation_key(),
            h.rows, h.cols)  # fmt: skip


def _short_hash(obj: object) -> str:
    return hashlib.sha1(repr(obj).encode()).hexdigest()[:12]


def _majority(
    headers: list[DicomHeader], key, label: str, uid_text: str
) -> tuple[list[DicomHeader], list[SkippedFile]]:
    """Keep the headers whose key is the most common; the rest are skipped with a reason."""
    counts = Counter(key(h) for h in headers)
    if len(counts) <= 1:
        return headers, []
    # Most common; ties broken by first appearance, so the result does not depend on hashing.
    best = max(counts, key=lambda k: (counts[k], -next(i for i, h in enumerate(headers) if key(h) == k)))
    kept = [h for h in headers if key(h) == best]
    dropped = [SkippedFile(h.path, f"{label} differs from the rest of series {uid_text}") for h in headers
               if key(h) != best]  # fmt: skip
    return kept, dropped


def _distance(h: DicomHeader, normal: np.ndarray | None) -> float | None:
    if normal is None or h.position is None:
        return None
    return float(normal @ h.position)


def _has_duplicate_positions(headers: list[DicomHeader]) -> bool:
    if len(headers) < 2:
        return False
    normal = headers[0].normal
    d = [_distance(h, normal) for h in headers]
    if any(x is None for x in d):
        return False
    d_sorted = np.sort(np.asarray(d, dtype=np.float64))
    return bool(np.any(np.diff(d_sorted) < _SAME_POSITION_MM))


def _part_label(part: list[DicomHeader], how: str) -> str:
    """What makes one split part unique, for its key: the file, or the attribute value it shares."""
    for attr, label in _SPLIT_KEYS:
        if how == f"split by {label}":
            return f"{attr}={getattr(part[0], attr)}"
    return part[0].path.name


_SPLIT_KEYS: tuple[tuple[str, str], ...] = (
    ("transfer_syntax", "transfer syntax"),
    ("acquisition_number", "AcquisitionNumber"),
    ("echo_number", "EchoNumbers"),
    ("temporal_position", "TemporalPositionIdentifier"),
)


def _split_duplicates(headers: list[DicomHeader]) -> tuple[list[list[DicomHeader]], str]:
    """Split files that share positions into parts with each position once; returns parts and how."""
    for attr, label in _SPLIT_KEYS:
        parts: dict[str, list[DicomHeader]] = defaultdict(list)
        for h in headers:
            parts[getattr(h, attr)].append(h)
        if len(parts) > 1 and not any(_has_duplicate_positions(p) for p in parts.values()):
            return [parts[k] for k in sorted(parts)], f"split by {label}"
    return [[h] for h in sorted(headers, key=lambda h: h.path)], "each file on its own"


def _ts_name(uid: str) -> str:
    from pydicom.uid import UID

    if not uid:
        return ""
    name = UID(uid).name
    return name if name != uid else uid


def _group_into_series(
    headers: list[DicomHeader], skipped: list[SkippedFile], root: Path
) -> list[SeriesInfo]:
    groups: dict[tuple, list[DicomHeader]] = defaultdict(list)
    for h in headers:
        groups[("uid", h.series_uid) if h.series_uid else ("nouid", _fallback_key(h))].append(h)

    series: list[SeriesInfo] = []
    for gkey, members in groups.items():
        uid = members[0].series_uid
        uid_text = uid or "(empty SeriesInstanceUID)"
        key = uid if uid else f"nouid-{_short_hash(gkey)}"
        local_skips: list[SkippedFile] = []
        members, dropped = _majority(members, DicomHeader.orientation_key, "orientation", uid_text)
        local_skips += dropped
        members, dropped = _majority(members, lambda h: (h.rows, h.cols), "image size", uid_text)
        local_skips += dropped
        notes: list[str] = []
        if not uid:
            notes.append(
                "SeriesInstanceUID is empty: files were grouped by study, frame of reference, "
                "series number, orientation and size instead"
            )
        if local_skips:
            notes += [f"{w} (localizer or another series?)" for w in skipped_warnings(local_skips, root=root)]
        if _has_duplicate_positions(members):
            n_pos = len({round(_distance(h, members[0].normal) or 0.0, 3) for h in members})
            parts, how = _split_duplicates(members)
            note = (
                f"series {uid_text} holds {len(members)} files at {n_pos} slice position(s): copies share "
                f"positions, so they are not one volume; {how} into {len(parts)} series"
            )
            for part in parts:
                part_key = f"{key}#{_part_label(part, how)}"
                series.append(_make_info(part, uid, part_key, local_skips, notes + [note]))
        else:
            series.append(_make_info(members, uid, key, local_skips, notes))
    series.sort(key=_series_order)
    return series


def _series_order(s: SeriesInfo) -> tuple:
    # Most slices first (the main series, not a scout or a dose report), CT before other
    # modalities; then fixed attributes so the order never depends on file-system listing.
    try:
        number = int(s.series_number)
    except ValueError:
        number = 1 << 30
    return (-s.n_slices, s.modality != "CT", number, s.description, s.key)


def _make_info(
    members: list[DicomHeader], uid: str, key: str, skips: list[SkippedFile], notes: list[str]
) -> SeriesInfo:
    normal = members[0].normal
    # Files listed in slice order (along the normal, then instance number), as a volume would hold them.
    members = sorted(
        members, key=lambda h: (_distance(h, normal) or 0.0, h.instance_number or 0, str(h.path))
    )
    first = members[0]
    syntaxes = sorted({h.transfer_syntax for h in members})
    return SeriesInfo(
        uid=uid,
        description=first.description,
        modality=first.modality,
        n_slices=sum(h.n_frames for h in members),
        files=[h.path for h in members],
        rows=first.rows,
        cols=first.cols,
        key=key,
        series_number=first.series_number,
        transfer_syntax=", ".join(_ts_name(t) for t in syntaxes),
        skipped=list(skips),
        warnings=list(notes),
        headers=list(members),
    )


def discover_series(folder: str | os.PathLike[str]) -> list[SeriesInfo]:
    """The image series under a folder, most slices first (empty when it holds no DICOM image)."""
    return scan_folder(folder).series


# ------------------------------------------------------------------------------------------------
# Geometry
# ------------------------------------------------------------------------------------------------
@dataclass
class StackGeometry:
    """Sorted slices with the grid SimpleITK would give, plus what the grid cannot show."""

    headers: list[DicomHeader]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray
    positions_mm: list[float] | None  # each slice's distance along the normal
    tilt_deg: float | None
    warnings: list[str]


def _single_slice_spacing(h: DicomHeader) -> float:
    for value in (h.spacing_between_slices, h.slice_thickness):
        if value is not None and value > 0:
            return float(value)
    return 1.0


def stack_geometry(headers: Sequence[DicomHeader]) -> StackGeometry:
    """Sort slices along the normal and derive spacing, origin, direction and geometry warnings."""
    hs = list(headers)
    first = hs[0]
    warn: list[str] = []
    ps = first.pixel_spacing
    if ps is None or min(ps) <= 0:
        sx = sy = 1.0
        warn.append("no PixelSpacing: in-plane spacing assumed 1 mm")
    else:
        sy, sx = ps
    normal = first.normal
    if normal is None or any(h.position is None for h in hs):
        # No geometry: keep instance order, as a viewer would; say so.
        hs.sort(key=lambda h: (h.instance_number if h.instance_number is not None else 0, str(h.path)))
        if len(hs) > 1:
            warn.append(
                "no ImagePositionPatient/ImageOrientationPatient: slices ordered by InstanceNumber, "
                "slice spacing and orientation are assumed"
            )
        single = first.position is not None and len(hs) == 1
        origin = tuple(first.position.tolist()) if single else (0.0, 0.0, 0.0)
        direction = np.eye(3)
        if normal is not None:
            direction = np.column_stack([first.orientation[:3], first.orientation[3:], normal])
        return StackGeometry(hs, (sx, sy, _single_slice_spacing(first)), origin, direction, None, None, warn)

    row, col = first.orientation[:3], first.orientation[3:]
    direction = np.column_stack([row, col, normal])
    dist = np.asarray([float(normal @ h.position) for h in hs])
    order = sorted(range(len(hs)), key=lambda i: (dist[i], hs[i].instance_number or 0, str(hs[i].path)))
    hs = [hs[i] for i in order]
    dist = dist[order]
    origin = tuple(float(v) for v in hs[0].position)
    tilt = None
    if len(hs) == 1:
        sz = _single_slice_spacing(first)
    else:
        extent = float(dist[-1] - dist[0])
        sz = extent / (len(hs) - 1)
        if sz <= 0:
            raise StudyReadError("slices share one position; cannot build a volume")
        warn += _spacing_warnings(np.diff(dist))
        tilt, tilt_warning = _tilt(hs, dist, normal)
        if tilt_warning:
            warn.append(tilt_warning)
    gantry = [h.gantry_tilt for h in hs if h.gantry_tilt]
    if gantry and tilt is None:
        # The header says tilt but the positions show none: the scanner already corrected it.
        warn.append(f"GantryDetectorTilt is {gantry[0]:g}°, but the slice positions show no shear")
    return StackGeometry(hs, (float(sx), float(sy), float(sz)), origin, direction, dist.tolist(), tilt, warn)


def _runs(steps: np.ndarray, tol: float) -> list[tuple[int, int, float]]:
    """Consecutive steps of (nearly) equal size: (first slice, last slice, step mm)."""
    runs: list[tuple[int, int, float]] = []
    start = 0
    for i in range(1, len(steps) + 1):
        if i == len(steps) or abs(steps[i] - steps[start]) > tol:
            runs.append((start, i, float(np.mean(steps[start:i]))))
            start = i
    return runs


def _spacing_warnings(steps: np.ndarray) -> list[str]:
    """Warnings, with numbers, for uneven steps and gaps (missing slices) between sorted slices."""
    median = float(np.median(steps))
    tol = max(_UNEVEN_ABS_MM, _UNEVEN_REL * median)
    if float(np.max(np.abs(steps - median))) <= tol:
        return []
    out: list[str] = []
    # Consecutive larger steps of one size are one finding, not one line per step.
    gap_runs = [r for r in _runs(steps, tol) if r[2] > _GAP_FACTOR * median]
    for a, b, step in gap_runs[:10]:
        where = f"between slices z={a} and z={b}" + (f" ({b - a} steps)" if b - a > 1 else "")
        ratio = step / median
        if abs(ratio - round(ratio)) < 0.2:
            n = round(ratio) - 1
            out.append(
                f"missing slice(s): gap of {step:.2f} mm {where} where the usual step is {median:.2f} mm "
                f"(about {n} slice(s) missing" + (" in each step)" if b - a > 1 else ")")
            )
        else:
            out.append(f"gap: steps of {step:.2f} mm {where}, larger than the usual {median:.2f} mm")
    if len(gap_runs) > 10:
        out.append(f"… and {len(gap_runs) - 10} more gaps")
    runs = _runs(steps, tol)
    parts = []
    for a, b, step in runs[:12]:
        parts.append(f"z {a}–{b}: {step:.2f} mm" if b - a == 1 else f"z {a}–{b}: every {step:.2f} mm")
    if len(runs) > 12:
        parts.append(f"… {len(runs) - 12} more runs")
    mean = float(np.mean(steps))
    out.append(
        f"uneven slice spacing: steps from {steps.min():.2f} to {steps.max():.2f} mm "
        f"(median {median:.2f} mm; "
        + "; ".join(parts)
        + f"); the regular grid uses the mean step {mean:.2f} mm, so views of it draw slices up to "
        f"{_max_misplacement(steps, mean):.2f} mm from their true position (each slice's own position is "
        "kept: position labels and DICOM output use it)"
    )
    return out


def _max_misplacement(steps: np.ndarray, mean: float) -> float:
    true = np.concatenate([[0.0], np.cumsum(steps)])
    return float(np.max(np.abs(true - mean * np.arange(len(true)))))


def _tilt(hs: list[DicomHeader], dist: np.ndarray, normal: np.ndarray) -> tuple[float | None, str | None]:
    """Shear of the stack (gantry tilt) in degrees and its warning, or (None, None)."""
    p0 = hs[0].position
    rel = np.asarray([h.position - p0 for h in hs])
    # In-plane offset of every slice from where a right-angled stack would put it.
    inplane = rel - np.outer(dist - dist[0], normal)
    offsets = np.linalg.norm(inplane, axis=1)
    extent = float(dist[-1] - dist[0])
    if extent <= 0:
        return None, None
    angle = float(np.degrees(np.arctan2(offsets[-1], extent)))
    if angle < _TILT_MIN_DEG and float(offsets.max()) < 0.1:
        return None, None
    header_tilt = next((h.gantry_tilt for h in hs if h.gantry_tilt), None)
    said = f" (GantryDetectorTilt {header_tilt:g}°)" if header_tilt is not None else ""
    return angle, (
        f"gantry tilt: the slices are sheared by {angle:.1f}°{said}; each slice is shifted within its own "
        f"plane by up to {offsets.max():.1f} mm from a right-angled stack. The volume keeps the slices as "
        f"acquired on a right-angled grid (not resampled; DICOM output keeps each slice's own position), "
        f"so sagittal and coronal views are sheared "
        f"(straight-line step {np.linalg.norm(rel[-1]) / (len(hs) - 1):.2f} mm, along the normal "
        f"{extent / (len(hs) - 1):.2f} mm)"
    )


# ------------------------------------------------------------------------------------------------
# Pixels
# ------------------------------------------------------------------------------------------------
_RAW_DTYPES = {(8, 0): "u1", (8, 1): "i1", (16, 0): "<u2", (16, 1): "<i2", (32, 0): "<u4", (32, 1): "<i4"}


def _fix_bits_stored(arr: np.ndarray, h: DicomHeader) -> np.ndarray:
    """Sign-extend or mask values whose BitsStored is below BitsAllocated."""
    if h.bits_stored <= 0 or h.bits_stored >= h.bits_allocated:
        return arr
    if h.pixel_representation == 1:
        shift = h.bits_allocated - h.bits_stored
        return (arr << shift) >> shift
    return arr & ((1 << h.bits_stored) - 1)


def _read_raw_native(h: DicomHeader) -> np.ndarray | None:
    """Stored values of an uncompressed little-endian slice, straight from the file (or None)."""
    dtype = _RAW_DTYPES.get((h.bits_allocated, h.pixel_representation))
    if h.transfer_syntax not in _NATIVE_LE or dtype is None or h.pixel_offset is None or h.n_frames != 1:
        return None
    count = h.rows * h.cols
    nbytes = count * np.dtype(dtype).itemsize
    with open(h.path, "rb") as f:
        f.seek(h.pixel_offset)
        buf = f.read(nbytes)
    if len(buf) < nbytes:
        raise StudyReadError(
            f"{h.path}: pixel data is truncated ({len(buf)} of {nbytes} bytes present); the file is damaged"
        )
    arr = np.frombuffer(buf, dtype=dtype).reshape(h.rows, h.cols)
    return _fix_bits_stored(arr, h)


def _decoder_hint(ts: str) -> str:
    for uids, package in _DECODER_PACKAGES:
        if ts in uids:
            return package
    return "pylibjpeg-libjpeg, pylibjpeg-openjpeg or pyjpegls"


def _decode_pydicom(h: DicomHeader, notes: list[str]) -> np.ndarray:
    """Stored values of one compressed (or unusual) slice via pydicom's decoders."""
    import pydicom

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = pydicom.dcmread(str(h.path))
        arr = ds.pixel_array
    notes.extend(f"pydicom: {w.message}" for w in caught)
    return np.asarray(arr)


def _decode_sitk(h: DicomHeader) -> np.ndarray:
    """HU of one slice (rescale applied by GDCM) via SimpleITK, the fallback decoder."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(h.path))
    arr = sitk.GetArrayFromImage(image)
    return arr.reshape(arr.shape[-2:]) if arr.size == h.rows * h.cols else arr


def slice_hu(h: DicomHeader, notes: list[str]) -> np.ndarray:
    """One slice in HU (rows, cols), float32, whichever decoder can read it."""
    raw = _read_raw_native(h)
    if raw is None:
        try:
            raw = _decode_pydicom(h, notes)
        except StudyReadError:
            raise
        except Exception as exc:
            if "truncat" in str(exc).lower() or "less than expected" in str(exc).lower():
                raise StudyReadError(
                    f"{h.path}: pixel data is truncated; the file is damaged ({_first_line(exc)})"
                ) from exc
            return _sitk_fallback(h, exc, notes)
    if raw.shape != (h.rows, h.cols):
        raise StudyReadError(
            f"{h.path}: decoded pixels have shape {raw.shape}, expected {h.rows}×{h.cols} (Rows×Columns)"
        )
    return _rescale(raw, h.slope, h.intercept)


def _sitk_fallback(h: DicomHeader, first_error: Exception, notes: list[str]) -> np.ndarray:
    try:
        hu = _decode_sitk(h)
    except Exception as exc:
        ts = _ts_name(h.transfer_syntax) or "unknown transfer syntax"
        package = _decoder_hint(h.transfer_syntax)
        raise StudyReadError(
            f"{h.path}: cannot decode {ts} pixel data: pydicom says {_first_line(first_error)!r}, "
            f"SimpleITK says {_first_line(exc)!r}. Install {package} (pip install "
            f"{package.split(' ')[0]}) to decode it"
        ) from exc
    if hu.shape != (h.rows, h.cols):
        raise StudyReadError(f"{h.path}: SimpleITK decoded shape {hu.shape}, expected {h.rows}×{h.cols}")
    notes.append(f"decoded {_ts_name(h.transfer_syntax)} with SimpleITK/GDCM (no pydicom decoder installed)")
    return hu.astype(np.float32)


def _rescale(raw: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    if slope == 1.0 and float(intercept).is_integer():
        # Exact in float32 for every 16-bit value: no float64 detour.
        out = raw.astype(np.float32)
        if intercept:
            out += np.float32(intercept)
        return out
    return (raw.astype(np.float64) * slope + intercept).astype(np.float32)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# ------------------------------------------------------------------------------------------------
# Volumes
# ------------------------------------------------------------------------------------------------
def _patient_study(path: Path) -> dict[str, Any]:
    ds, _ = _dcmread_header(path)
    patient = {k: _text(ds, k) for k in _PATIENT_KEYS if k in ds}
    study = {k: _text(ds, k) for k in _STUDY_KEYS if k in ds}
    series = {k: v for k in _SERIES_KEYS if (v := _keepable(ds, k))}
    image = {k: v for k in _IMAGE_KEYS if (v := _keepable(ds, k))}
    extra = {
        "series": series,
        "image": image,
        "derivation_description": _text(ds, "DerivationDescription"),
        "series_date": _text(ds, "SeriesDate"),
        "body_part_examined": _text(ds, "BodyPartExamined"),
        "contrast_bolus_agent": _text(ds, "ContrastBolusAgent"),
    }
    return {"patient": patient, "study": study, **{k: v for k, v in extra.items() if v}}


def _flags(h: DicomHeader, meta: dict[str, Any]) -> None:
    if h.synthetic_data == "YES" and "DERIVED" in h.image_type:
        meta["synthetic"] = True
    if "phantom" in h.manufacturer.lower() or h.description.upper().startswith("PHANTOM"):
        meta["phantom"] = True
    if h.modality and h.modality != "CT":
        meta["warnings"].append(
            f"modality is {h.modality}, not CT: the models are made for CT, and these values are "
            + ("rescaled stored values" if (h.slope, h.intercept) != (1.0, 0.0) else "stored values")
            + ", not HU"
        )


def read_series(info: SeriesInfo, source_path: str | os.PathLike[str] | None = None) -> Volume:
    """Read one discovered series into a float32 HU Volume (sorted along the slice normal)."""
    headers = info.headers
    if not headers:
        raise StudyReadError(f"series {info.key or info.uid}: no readable image files")
    if len(headers) == 1 and headers[0].n_frames > 1:
        vol = read_multiframe(headers[0])
        vol.warnings[:0] = list(info.warnings)
        return vol
    if any(h.n_frames > 1 for h in headers):
        raise StudyReadError(
            f"series {info.key}: mixes {sum(h.n_frames > 1 for h in headers)} multi-frame file(s) with "
            "single images; open a multi-frame file on its own"
        )
    geo = stack_geometry(headers)
    hs = geo.headers
    notes: list[str] = []
    hu = np.empty((len(hs), hs[0].rows, hs[0].cols), dtype=np.float32)
    for k, h in enumerate(hs):
        hu[k] = slice_hu(h, notes)
    first = hs[0]
    meta: dict[str, Any] = {
        "modality": first.modality or "",
        "series_description": first.description,
        "source_path": str(source_path if source_path is not None else _common_folder(info.files)),
        "warnings": list(info.warnings) + geo.warnings + _dedupe(notes),
    }
    dicom = _patient_study(first.path)
    dicom.update(
        {
            "frame_of_reference_uid": first.frame_of_reference_uid,
            "series_instance_uid": first.series_uid,
            "sop_class_uid": first.sop_class_uid,
            "sop_instance_uids": [h.sop_instance_uid for h in hs],
            "series_number": first.series_number,
            "transfer_syntax_uid": first.transfer_syntax,
            "files": [str(h.path) for h in hs],
        }
    )
    if geo.positions_mm is not None:
        dicom["slice_positions_mm"] = [round(p, 4) for p in geo.positions_mm]
    if geo.tilt_deg is not None:
        dicom["gantry_tilt_deg"] = round(geo.tilt_deg, 3)
    lossy = series_lossy(h.lossy for h in hs)
    if lossy:
        dicom["lossy"] = lossy
        meta["warnings"].append(lossy_warning(lossy, len(hs)))
    meta["dicom"] = dicom
    if all(h.position is not None for h in hs):
        # Each slice's own position: the grid below is regular, the scanner's stack may not be.
        meta["slice_positions_lps"] = [[float(v) for v in h.position] for h in hs]
    if any(h.slice_thickness for h in hs):
        # Per slice: a series may mix thicknesses (the tilted GE head has 4 mm and 7 mm slices).
        dicom["slice_thickness_mm"] = [h.slice_thickness for h in hs]
    _flags(first, meta)
    return Volume(hu, geo.spacing, geo.origin, geo.direction, meta)


def read_multiframe(h: DicomHeader) -> Volume:
    """A multi-frame DICOM file via SimpleITK/GDCM (per-frame geometry is GDCM's)."""
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(h.path))
    except RuntimeError as exc:
        raise StudyReadError(f"{h.path}: multi-frame DICOM could not be read: {_first_line(exc)}") from exc
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise StudyReadError(
            f"{h.path}: multi-frame DICOM gives a {image.GetDimension()}-D image with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s); expected one 3-D grey volume"
        )
    meta: dict[str, Any] = {
        "modality": h.modality,
        "series_description": h.description,
        "source_path": str(h.path),
        "warnings": [f"{h.path.name}: multi-frame file ({h.n_frames} frames) read with SimpleITK/GDCM"],
    }
    dicom = _patient_study(h.path)
    dicom.update(
        {
            "frame_of_reference_uid": h.frame_of_reference_uid,
            "series_instance_uid": h.series_uid,
            "sop_class_uid": h.sop_class_uid,
            "sop_instance_uids": [h.sop_instance_uid] * h.n_frames,
        }
    )
    meta["dicom"] = dicom
    _flags(h, meta)
    return Volume(
        sitk.GetArrayFromImage(image).astype(np.float32),
        image.GetSpacing(),
        image.GetOrigin(),
        np.asarray(image.GetDirection()).reshape(3, 3),
        meta,
    )


def read_dicom_file(path: str | os.PathLike[str]) -> Volume:
    """One DICOM file as a Volume (one slice, or every frame of a multi-frame file)."""
    path = Path(path)
    rec = read_header(path)
    if isinstance(rec, SkippedFile):
        # A localizer asked for by name is still an image: read it, with a warning.
        if rec.reason.startswith("localizer"):
            rec2 = _read_header_unfiltered(path)
            if rec2 is not None:
                note = f"{path.name} is a {rec.reason}"
                info = _make_info([rec2], rec2.series_uid, rec2.series_uid, [], [note])
                return read_series(info, source_path=path)
        raise StudyReadError(f"{path}: {rec.reason}")
    info = _make_info([rec], rec.series_uid, rec.series_uid, [], [])
    return read_series(info, source_path=path)


def _read_header_unfiltered(path: Path) -> DicomHeader | None:
    try:
        ds, _ = _dcmread_header(path)
        return _header_from_dataset(ds, path)
    except Exception:  # it was readable a moment ago; treat any failure as "cannot"
        return None


def _common_folder(files: Iterable[Path]) -> Path:
    files = list(files)
    if not files:
        return Path(".")
    return Path(os.path.commonpath([str(f.parent) for f in files]))


def _dedupe(items: Iterable[str]) -> list[str]:
    counts = Counter(items)
    return [f"{msg} ({n} slices)" if n > 1 else msg for msg, n in counts.items()]
