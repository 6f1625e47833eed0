"""Errors the engine raises for bad input: each message names the file and the problem."""

from __future__ import annotations


class MFMError(Exception):
    """Base class: a problem a user can act on, shown as a plain message (never a traceback)."""


class StudyReadError(MFMError):
    """A study (DICOM, NIfTI, NRRD, MHA) could not be read."""


class SeriesChoiceError(StudyReadError):
    """A folder holds several series and the caller must pick one; ``series`` lists them."""

    def __init__(self, message: str, series: list) -> None:
        super().__init__(message)
        self.series = series


class CheckpointError(MFMError):
    """A model checkpoint is missing, unsafe, or does not match its description."""


class GeometryMismatchError(MFMError):
    """Two volumes that must share a grid do not."""


class StudyWriteError(MFMError):
    """A study (image file or DICOM series) could not be written, or writing it was refused."""
