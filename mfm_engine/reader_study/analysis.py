"""Scoring a study: answers joined with the key, checked to belong together, then the statistics per reader.

Readers are reported one by one (each with its own exact binomial test); the pooled line comes from a
model that accounts for the readers' answers on the same case being related (`stats.pooled_accuracy`),
never from one binomial test over all answers.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

from mfm_engine.reader_study import stats
from mfm_engine.reader_study.bundle import Key, Manifest, check_key_matches, manifest_sha256, read_key
from mfm_engine.reader_study.common import ReaderStudyError
from mfm_engine.reader_study.store import ReaderResults, read_results


@dataclass
class ScoredAnswer:
    """One reader's final answer to one case, with the truth."""

    reader: str
    case_id: str
    position: int
    choice: str
    confidence: int
    seconds: float  # time over every answer to this case (first answer and revisions)
    truth: str  # paired: the synthetic side; single: 'real' | 'synthetic'
    correct: bool
    revised: bool

    @property
    def said_synthetic(self) -> bool:
        """Single mode: the reader called the image synthetic."""
        return self.choice == "synthetic"

    @property
    def rating(self) -> int:
        """1–10: single mode 'image is synthetic'; paired mode 'the left side is synthetic'."""
        return stats.rating10(self.choice in ("left", "synthetic"), self.confidence)


@dataclass
class ReaderStats:
    """The statistics of one reader."""

    reader: str
    n_cases: int
    n_answered: int
    n_correct: int
    accuracy: float
    ci: tuple[float, float]
    p_value: float
    dprime: float
    dprime_corrected: bool
    mean_seconds: float
    median_seconds: float
    revisions: int
    window_changes: int
    # single-image mode only
    sensitivity: float = math.nan
    sensitivity_ci: tuple[float, float] = (math.nan, math.nan)
    specificity: float = math.nan
    specificity_ci: tuple[float, float] = (math.nan, math.nan)
    auc: float = math.nan
    roc: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))

    @property
    def complete(self) -> bool:
        """True when the reader answered every case."""
        return self.n_answered == self.n_cases


@dataclass
class Agreement:
    """Agreement between readers on their choices (cases every reader answered)."""

    n_cases: int
    method: str  # "Cohen's kappa" | "Fleiss' kappa" | "" (fewer than two readers)
    kappa: float
    pairwise: dict[tuple[str, str], float] = field(default_factory=dict)


@dataclass
class StudyAnalysis:
    """Everything the report shows."""

    study_id: str
    mode: str
    n_cases: int
    readers: list[ReaderStats]
    pooled: stats.PooledEstimate
    agreement: Agreement
    answers: list[ScoredAnswer]
    design: dict
    notes: list[str] = field(default_factory=list)


# -- loading --------------------------------------------------------------------------------------------


def load_study(
    bundle: str | os.PathLike[str],
    key_path: str | os.PathLike[str],
    result_paths: Sequence[str | os.PathLike[str]],
) -> tuple[Manifest, Key, list[ReaderResults]]:
    """Read bundle, key and results files and refuse any that do not belong together."""
    if not result_paths:
        raise ReaderStudyError("no results files given (one .sqlite file per reader)")
    key = read_key(key_path)
    manifest = check_key_matches(bundle, key)
    sha = manifest_sha256(bundle)
    results: list[ReaderResults] = []
    seen: dict[str, Path] = {}
    known = set(manifest.case_ids)
    for p in result_paths:
        res = read_results(p)
        if res.study_id != manifest.study_id:
            raise ReaderStudyError(
                f"{res.path}: these answers belong to study {res.study_id!r}, not to {manifest.study_id!r} "
                f"({Path(bundle)})"
            )
        if res.manifest_sha256 != sha:
            raise ReaderStudyError(
                f"{res.path}: hash mismatch: these answers were given for a different version of the bundle "
                f"(manifest {res.manifest_sha256[:12]}…, bundle has {sha[:12]}…)"
            )
        unknown = sorted({a.case_id for a in res.answers} - known)
        if unknown:
            raise ReaderStudyError(
                f"{res.path}: answers to unknown case ids {unknown}; not this study's results"
            )
        if res.mode != manifest.mode:
            raise ReaderStudyError(f"{res.path}: {res.mode} answers for a {manifest.mode} study")
        if res.reader_id in seen:
            raise ReaderStudyError(
                f"{res.path}: reader {res.reader_id!r} appears twice (also in {seen[res.reader_id]})"
            )
        seen[res.reader_id] = res.path
        results.append(res)
    return manifest, key, results


# -- scoring --------------------------------------------------------------------------------------------


def score_answers(manifest: Manifest, key: Key, results: Sequence[ReaderResults]) -> list[ScoredAnswer]:
    """Each reader's final answer per case, with its truth and whether it was right."""
    out: list[ScoredAnswer] = []
    for res in results:
        total_seconds: dict[str, float] = {}
        for a in res.answers:
            total_seconds[a.case_id] = total_seconds.get(a.case_id, 0.0) + a.seconds
        revised = set(res.revised_cases)
        for cid, a in res.final.items():
            truth = key.cases[cid].correct_answer(manifest.mode)
            out.append(
                ScoredAnswer(
                    res.reader_id,
                    cid,
                    a.position,
                    a.choice,
                    a.confidence,
                    total_seconds[cid],
                    truth,
                    a.choice == truth,
                    cid in revised,
                )
            )
    return out


def _reader_stats(
    reader: str, answers: list[ScoredAnswer], res: ReaderResults, mode: str, n_cases: int
) -> ReaderStats:
    n = len(answers)
    k = sum(a.correct for a in answers)
    seconds = [a.seconds for a in answers]
    if mode == "paired":
        d, corrected = stats.dprime_2afc(k, n)
    else:
        d, corrected = math.nan, True
    rs = ReaderStats(
        reader=reader,
        n_cases=n_cases,
        n_answered=n,
        n_correct=k,
        accuracy=k / n if n else math.nan,
        ci=stats.wilson_interval(k, n),
        p_value=stats.binomial_test(k, n, 0.5),
        dprime=d,
        dprime_corrected=corrected,
        mean_seconds=statistics.fmean(seconds) if seconds else math.nan,
        median_seconds=statistics.median(seconds) if seconds else math.nan,
        revisions=sum(1 for a in res.answers if a.is_revision),
        window_changes=res.window_changes,
    )
    if mode == "single":
        syn = [a for a in answers if a.truth == "synthetic"]
        real = [a for a in answers if a.truth == "real"]
        hits = sum(a.said_synthetic for a in syn)
        false_alarms = sum(a.said_synthetic for a in real)
        rejections = len(real) - false_alarms
        rs.sensitivity = hits / len(syn) if syn else math.nan
        rs.sensitivity_ci = stats.wilson_interval(hits, len(syn))
        rs.specificity = rejections / len(real) if real else math.nan
        rs.specificity_ci = stats.wilson_interval(rejections, len(real))
        rs.dprime = stats.dprime_yes_no(hits, len(syn), false_alarms, len(real))
        rs.auc = stats.roc_auc([a.rating for a in syn], [a.rating for a in real])
        if syn and real:
            fpr, tpr, _ = stats.roc_points(
                [a.rating for a in answers], [a.truth == "synthetic" for a in answers]
            )
            rs.roc = (fpr.tolist(), tpr.tolist())
    return rs


def _agreement(answers: list[ScoredAnswer], readers: list[str], categories: tuple[str, str]) -> Agreement:
    if len(readers) < 2:
        return Agreement(0, "", math.nan)
    by_reader = {r: {a.case_id: a.choice for a in answers if a.reader == r} for r in readers}
    common = sorted(set.intersection(*(set(v) for v in by_reader.values())))
    pairwise = {
        (r1, r2): stats.cohen_kappa([by_reader[r1][c] for c in common], [by_reader[r2][c] for c in common])
        for r1, r2 in combinations(readers, 2)
    }
    if not common:
        return Agreement(0, "", math.nan, pairwise)
    if len(readers) == 2:
        return Agreement(len(common), "Cohen's kappa", next(iter(pairwise.values())), pairwise)
    table = np.array([[sum(by_reader[r][c] == cat for r in readers) for cat in categories] for c in common])
    return Agreement(len(common), "Fleiss' kappa", stats.fleiss_kappa(table), pairwise)


def analyze(manifest: Manifest, key: Key, results: Sequence[ReaderResults]) -> StudyAnalysis:
    """Per-reader statistics, pooled accuracy and agreement for checked bundle / key / results."""
    scored = score_answers(manifest, key, results)
    readers = [r.reader_id for r in results]
    n_cases = len(manifest.cases)
    per_reader = [
        _reader_stats(r.reader_id, [a for a in scored if a.reader == r.reader_id], r, manifest.mode, n_cases)
        for r in results
    ]
    pooled = stats.pooled_accuracy(
        {r: {a.case_id: a.correct for a in scored if a.reader == r} for r in readers}
    )
    notes = []
    for rs in per_reader:
        if not rs.complete:
            notes.append(f"reader {rs.reader} answered {rs.n_answered} of {rs.n_cases} cases (incomplete)")
        if rs.revisions:
            notes.append(f"reader {rs.reader} changed {rs.revisions} answer(s); the last answer counts")
    if manifest.mode == "paired" and any(rs.dprime_corrected for rs in per_reader):
        notes.append("d′ at 0 % or 100 % correct uses the log-linear corrected proportion (k + ½)/(n + 1)")
    return StudyAnalysis(
        manifest.study_id,
        manifest.mode,
        n_cases,
        per_reader,
        pooled,
        _agreement(scored, readers, manifest.choices),
        scored,
        dict(key.design),
        notes,
    )


def analyze_files(
    bundle: str | os.PathLike[str],
    key_path: str | os.PathLike[str],
    result_paths: Sequence[str | os.PathLike[str]],
) -> StudyAnalysis:
    """`load_study` then `analyze`."""
    return analyze(*load_study(bundle, key_path, result_paths))
