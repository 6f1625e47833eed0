"""Blinded reader studies, without widgets: design and bundles, per-reader answer files, statistics, reports.

- `design.create_study`: choose cases, make missing synthetic volumes, write the bundle and the key.
- `bundle`: manifest (no truth), key (the truth, kept apart), hashes, case volumes, reader order.
- `session.ReadingSession` + `store.ReaderStore`: a reader's session; every answer committed at once.
- `analysis.analyze_files` + `report.write_report`: statistics per reader and pooled, Markdown/CSV/PNG/iMRMC.

The viewer's reader-study widgets (``mfm_viewer.reader_study``) only call these.
"""

from mfm_engine.reader_study.analysis import StudyAnalysis, analyze, analyze_files, load_study
from mfm_engine.reader_study.bundle import Key, Manifest, StudySettings, read_key, read_manifest
from mfm_engine.reader_study.common import CHOICES, MODES, QUESTIONS, ReaderStudyError
from mfm_engine.reader_study.design import (
    CaseSource,
    DesignResult,
    SynthesisSettings,
    create_study,
    parse_seeds,
    phantom_sources,
    read_cases_csv,
)
from mfm_engine.reader_study.report import write_report
from mfm_engine.reader_study.session import ReadingSession
from mfm_engine.reader_study.store import ReaderStore, read_results

__all__ = [
    "CHOICES",
    "MODES",
    "QUESTIONS",
    "CaseSource",
    "DesignResult",
    "Key",
    "Manifest",
    "ReaderStore",
    "ReaderStudyError",
    "ReadingSession",
    "StudyAnalysis",
    "StudySettings",
    "SynthesisSettings",
    "analyze",
    "analyze_files",
    "create_study",
    "load_study",
    "parse_seeds",
    "phantom_sources",
    "read_cases_csv",
    "read_key",
    "read_manifest",
    "read_results",
    "write_report",
]
