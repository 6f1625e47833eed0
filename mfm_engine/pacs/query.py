"""What a PACS query asks for and what it answers, the same for DIMSE (C-FIND) and DICOMweb (QIDO-RS)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from mfm_engine.pacs.errors import PacsError

STUDY_RETURN_KEYS = (
    "StudyInstanceUID",
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
SERIES_RETURN_KEYS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "SeriesDate",
    "BodyPartExamined",
    "NumberOfSeriesRelatedInstances",
)

_DATE_RE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")


def parse_date(text: str, what: str = "date") -> str:
    """A date as DICOM's YYYYMMDD, from YYYYMMDD or YYYY-MM-DD; PacsError when it is not a real date."""
    match = _DATE_RE.match(text.strip())
    if not match:
        raise PacsError(f"{what} {text!r} is not a date; write YYYYMMDD or YYYY-MM-DD")
    y, m, d = (int(g) for g in match.groups())
    try:
        date(y, m, d)
    except ValueError as exc:
        raise PacsError(f"{what} {text!r} is not a real date ({exc})") from exc
    return f"{y:04d}{m:02d}{d:02d}"


def parse_date_range(text: str) -> tuple[str, str]:
    """``A-B``, ``A-``, ``-B`` or ``A`` (A, B as YYYYMMDD) → (from, to); a single date is from = to."""
    raw = text.strip()
    if not raw:
        return "", ""
    # Split on the one '-' that separates two YYYYMMDD dates (ISO dates have their own dashes).
    compact = re.fullmatch(r"(\d{8})?-(\d{8})?", raw)
    if compact:
        start, end = compact.group(1) or "", compact.group(2) or ""
    elif " to " in raw:
        start, end = (p.strip() for p in raw.split(" to ", 1))
    elif re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw) or re.fullmatch(r"\d{8}", raw):
        start = end = raw
    else:
        raise PacsError(f"date range {text!r}: write YYYYMMDD-YYYYMMDD, YYYYMMDD-, -YYYYMMDD or one date")
    start = parse_date(start, "start date") if start else ""
    end = parse_date(end, "end date") if end else ""
    if start and end and start > end:
        raise PacsError(f"date range {text!r}: the start {start} is after the end {end}")
    return start, end


@dataclass
class Query:
    """Study-level matching keys; empty means 'any'. Names may use DICOM wildcards (* and ?)."""

    patient_id: str = ""
    patient_name: str = ""
    date_from: str = ""  # YYYYMMDD
    date_to: str = ""  # YYYYMMDD
    modality: str = ""
    accession: str = ""
    study_uid: str = ""

    def date_range(self) -> str:
        """The StudyDate matching value: '' (any), 'A', 'A-B', 'A-' or '-B'."""
        if not self.date_from and not self.date_to:
            return ""
        if self.date_from == self.date_to:
            return self.date_from
        return f"{self.date_from}-{self.date_to}"

    def study_identifier(self) -> Dataset:
        """The C-FIND identifier at STUDY level: these keys matched, the study return keys asked."""
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        for kw in STUDY_RETURN_KEYS:
            setattr(ds, kw, "")
        ds.PatientID = self.patient_id
        ds.PatientName = self.patient_name
        ds.StudyDate = self.date_range()
        ds.AccessionNumber = self.accession
        ds.StudyInstanceUID = self.study_uid
        ds.ModalitiesInStudy = self.modality
        return ds

    def qido_filters(self) -> dict[str, str]:
        """The same matching keys as QIDO-RS search parameters."""
        pairs = {
            "PatientID": self.patient_id,
            "PatientName": self.patient_name,
            "StudyDate": self.date_range(),
            "AccessionNumber": self.accession,
            "StudyInstanceUID": self.study_uid,
            "ModalitiesInStudy": self.modality,
        }
        return {k: v for k, v in pairs.items() if v}


def series_identifier(study_uid: str, modality: str = "", series_uid: str = "") -> Dataset:
    """The C-FIND identifier at SERIES level within one study."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    for kw in SERIES_RETURN_KEYS:
        setattr(ds, kw, "")
    ds.StudyInstanceUID = study_uid
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    return ds


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _count(ds: Dataset, keyword: str) -> int | None:
    text = _text(ds, keyword)
    try:
        return int(text) if text else None
    except ValueError:
        return None


@dataclass
class StudyMatch:
    """One study a query found."""

    study_uid: str
    patient_id: str = ""
    patient_name: str = ""
    birth_date: str = ""
    study_date: str = ""
    study_time: str = ""
    description: str = ""
    accession: str = ""
    modalities: list[str] = field(default_factory=list)
    n_series: int | None = None
    n_instances: int | None = None

    @classmethod
    def from_dataset(cls, ds: Dataset) -> StudyMatch:
        """From a C-FIND response identifier (or a QIDO-RS result turned into a Dataset)."""
        modalities = [m for m in _text(ds, "ModalitiesInStudy").split("\\") if m]
        return cls(
            study_uid=_text(ds, "StudyInstanceUID"),
            patient_id=_text(ds, "PatientID"),
            patient_name=_text(ds, "PatientName"),
            birth_date=_text(ds, "PatientBirthDate"),
            study_date=_text(ds, "StudyDate"),
            study_time=_text(ds, "StudyTime"),
            description=_text(ds, "StudyDescription"),
            accession=_text(ds, "AccessionNumber"),
            modalities=modalities,
            n_series=_count(ds, "NumberOfStudyRelatedSeries"),
            n_instances=_count(ds, "NumberOfStudyRelatedInstances"),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the `mfm pacs find --json` study entry)."""
        return asdict(self)


@dataclass
class SeriesMatch:
    """One series a query found."""

    study_uid: str
    series_uid: str
    modality: str = ""
    number: int | None = None
    description: str = ""
    series_date: str = ""
    body_part: str = ""
    n_instances: int | None = None

    @classmethod
    def from_dataset(cls, ds: Dataset) -> SeriesMatch:
        """From a C-FIND response identifier (or a QIDO-RS result turned into a Dataset)."""
        return cls(
            study_uid=_text(ds, "StudyInstanceUID"),
            series_uid=_text(ds, "SeriesInstanceUID"),
            modality=_text(ds, "Modality"),
            number=_count(ds, "SeriesNumber"),
            description=_text(ds, "SeriesDescription"),
            series_date=_text(ds, "SeriesDate"),
            body_part=_text(ds, "BodyPartExamined"),
            n_instances=_count(ds, "NumberOfSeriesRelatedInstances"),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the `mfm pacs find --json` series entry)."""
        return asdict(self)
