"""Scoring whole studies: every reported number recomputed from the key and the answers with scipy,
scikit-learn and statsmodels; answers and keys that do not belong together are refused; report files."""

from __future__ import annotations

import csv
import math
import random
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from reader_study_support import make_bundle, tiny_checkpoint
from scipy import stats as sps

from mfm_engine.cli import main as cli_main
from mfm_engine.reader_study import ReaderStudyError, ReadingSession, analyze_files, write_report
from mfm_engine.reader_study.stats import rating10

sklearn_metrics = pytest.importorskip("sklearn.metrics")
sm = pytest.importorskip("statsmodels.api")
sm_proportion = pytest.importorskip("statsmodels.stats.proportion")
sm_inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")

SKILL = {"R1": 0.85, "R2": 0.6, "R3": 0.5}  # chance of a right answer per scripted reader


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


def _read(bundle, key, results: Path, readers=SKILL, seed=0) -> list[Path]:
    """Scripted readers who are right with a given probability (they peek at the key; a test needs that)."""
    paths = []
    for reader, skill in readers.items():
        rng = random.Random(f"{seed}-{reader}")
        session = ReadingSession(bundle, reader, results)
        while not session.finished:
            truth = key.cases[session.case_id].correct_answer(session.mode)
            wrong = next(c for c in session.choices if c != truth)
            session.log_window(300 + rng.randint(0, 200), 40, "reader")
            session.answer(truth if rng.random() < skill else wrong, rng.randint(1, 5))
        session.close()
        paths.append(session.store.path)
    return paths


@pytest.fixture(scope="module")
def single_study(tmp_path_factory, ckpt):
    folder = tmp_path_factory.mktemp("single")
    result = make_bundle(folder, ckpt, mode="single", n=8, candidates=8)
    return result, _read(result.bundle, result.key, folder / "results")


@pytest.fixture(scope="module")
def paired_study(tmp_path_factory, ckpt):
    folder = tmp_path_factory.mktemp("paired")
    result = make_bundle(folder, ckpt, mode="paired", n=6, candidates=6)
    return result, _read(result.bundle, result.key, folder / "results", {"R1": 0.8, "R2": 0.6})


def _answers(path: Path) -> list[tuple]:
    con = sqlite3.connect(path)
    rows = con.execute("SELECT case_id, choice, confidence, seconds FROM answers ORDER BY seq").fetchall()
    con.close()
    return rows


def test_single_image_statistics_match_references(single_study):
    result, paths = single_study
    analysis = analyze_files(result.bundle, result.key_path, paths)
    key = result.key
    assert analysis.mode == "single" and analysis.n_cases == 8 and len(analysis.readers) == 3
    choices_by_reader = {}
    for path, rs in zip(paths, analysis.readers, strict=True):
        rows = _answers(path)
        truth = np.array([key.cases[c].truth["image"] == "synthetic" for c, *_ in rows])
        said = np.array([ch == "synthetic" for _, ch, _, _ in rows])
        ratings = np.array([rating10(s, conf) for s, (_, _, conf, _) in zip(said, rows, strict=True)])
        choices_by_reader[rs.reader] = {c: ch for c, ch, _, _ in rows}
        k, n = int((said == truth).sum()), len(rows)
        assert (rs.n_correct, rs.n_answered) == (k, n)
        assert rs.accuracy == pytest.approx(sklearn_metrics.accuracy_score(truth, said))
        lo, hi = sm_proportion.proportion_confint(k, n, method="wilson")
        assert rs.ci == pytest.approx((lo, hi))
        assert rs.p_value == pytest.approx(sps.binomtest(k, n, 0.5).pvalue)
        assert rs.sensitivity == pytest.approx(sklearn_metrics.recall_score(truth, said, pos_label=True))
        assert rs.specificity == pytest.approx(sklearn_metrics.recall_score(truth, said, pos_label=False))
        assert rs.auc == pytest.approx(sklearn_metrics.roc_auc_score(truth, ratings))
        hits, fas = int((said & truth).sum()), int((said & ~truth).sum())
        d = sps.norm.ppf((hits + 0.5) / (truth.sum() + 1)) - sps.norm.ppf((fas + 0.5) / ((~truth).sum() + 1))
        assert rs.dprime == pytest.approx(d)
        assert rs.mean_seconds == pytest.approx(np.mean([s for *_, s in rows]))
        assert rs.window_changes == 8 and rs.complete
        fpr, tpr, _ = sklearn_metrics.roc_curve(truth, ratings, drop_intermediate=False)
        np.testing.assert_allclose(rs.roc[0], fpr)
        np.testing.assert_allclose(rs.roc[1], tpr)
    # Fleiss' kappa over the three readers' choices.
    cases = sorted(key.cases)
    table = np.array(
        [[sum(choices_by_reader[r][c] == cat for r in SKILL) for cat in ("real", "synthetic")] for c in cases]
    )
    assert analysis.agreement.method == "Fleiss' kappa"
    assert analysis.agreement.kappa == pytest.approx(sm_inter_rater.fleiss_kappa(table, method="fleiss"))
    pair = analysis.agreement.pairwise[("R1", "R2")]
    expected = sklearn_metrics.cohen_kappa_score(
        [choices_by_reader["R1"][c] for c in cases], [choices_by_reader["R2"][c] for c in cases]
    )
    assert pair == pytest.approx(expected) or (math.isnan(pair) and math.isnan(expected))
    # Pooled: logistic GEE clustered by case.
    y = np.array([a.correct for a in analysis.answers], dtype=float)
    groups = np.array([cases.index(a.case_id) for a in analysis.answers])
    fit = sm.GEE(
        y,
        np.ones((y.size, 1)),
        groups=groups,
        family=sm.families.Binomial(),
        cov_struct=sm.cov_struct.Independence(),
    ).fit()
    assert analysis.pooled.proportion == pytest.approx(y.mean())
    assert analysis.pooled.p_value == pytest.approx(float(fit.pvalues[0]), rel=1e-5)


def test_paired_statistics_match_references(paired_study):
    result, paths = paired_study
    analysis = analyze_files(result.bundle, result.key_path, paths)
    by_reader = {}
    for path, rs in zip(paths, analysis.readers, strict=True):
        rows = _answers(path)
        correct = [result.key.cases[c].synthetic_side == ch for c, ch, _, _ in rows]
        by_reader[rs.reader] = [ch for _, ch, _, _ in sorted(rows)]
        k, n = sum(correct), len(correct)
        assert rs.accuracy == pytest.approx(k / n)
        assert rs.p_value == pytest.approx(sps.binomtest(k, n, 0.5).pvalue)
        pc = (k + 0.5) / (n + 1) if k in (0, n) else k / n
        assert rs.dprime == pytest.approx(math.sqrt(2) * sps.norm.ppf(pc))
        assert math.isnan(rs.auc) and math.isnan(rs.sensitivity)
    expected = sklearn_metrics.cohen_kappa_score(by_reader["R1"], by_reader["R2"])
    assert analysis.agreement.method == "Cohen's kappa"
    assert analysis.agreement.kappa == pytest.approx(expected) or math.isnan(expected)


def test_report_files(single_study, paired_study, tmp_path):
    for (result, paths), mode in ((single_study, "single"), (paired_study, "paired")):
        analysis = analyze_files(result.bundle, result.key_path, paths)
        out = tmp_path / mode
        written = write_report(analysis, out)
        names = {p.name for p in written}
        assert {"report.md", "readers.csv", "answers.csv", "ratings.imrmc", "accuracy.png"} <= names
        assert ("roc.png" in names) == (mode == "single")
        md = (out / "report.md").read_text()
        assert "Wilson" in md and "exact binomial" in md and "GEE" in md and "iMRMC" in md
        for r in analysis.readers:
            assert f"| {r.reader} |" in md
        with open(out / "answers.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == len(analysis.answers) == analysis.n_cases * len(analysis.readers)
        with open(out / "readers.csv", newline="") as f:
            readers = list(csv.DictReader(f))
        assert [r["reader"] for r in readers[:-1]] == [r.reader for r in analysis.readers]
        assert readers[-1]["reader"].startswith("pooled")
        for png in out.glob("*.png"):
            with Image.open(png) as im:
                assert im.format == "PNG" and im.width >= 600
        # iMRMC input: description, counts, BEGIN DATA:, truth rows for every case, then the scores.
        lines = (out / "ratings.imrmc").read_text().splitlines()
        begin = lines.index("BEGIN DATA:")
        header = dict(
            line.split(": ", 1) for line in lines[:begin] if line[:3] in ("NR:", "N0:", "N1:", "NM:")
        )
        data = [line.split(",") for line in lines[begin + 1 :]]
        assert all(len(row) == 4 for row in data)
        truth_rows = [row for row in data if row[0] == "truth"]
        score_rows = [row for row in data if row[0] != "truth"]
        assert int(header["NR"]) == len(analysis.readers) and header["NM"] == "1"
        assert int(header["N0"]) + int(header["N1"]) == len(truth_rows)
        if mode == "single":
            assert len(score_rows) == len(analysis.answers)
            assert {int(row[3]) for row in score_rows} <= set(range(1, 11))
            truth = {row[1]: int(row[3]) for row in truth_rows}
            for r in analysis.readers:  # the file's ratings give each reader's AUC back
                mine = [row for row in score_rows if row[0] == r.reader]
                auc = sklearn_metrics.roc_auc_score(
                    [truth[row[1]] for row in mine], [int(row[3]) for row in mine]
                )
                assert auc == pytest.approx(r.auc)
        else:
            for r in analysis.readers:  # placeholder negatives at 0.5: the AUC is the proportion correct
                mine = [row for row in score_rows if row[0] == r.reader]
                truth = {row[1]: int(row[3]) for row in truth_rows}
                auc = sklearn_metrics.roc_auc_score(
                    [truth[row[1]] for row in mine], [float(row[3]) for row in mine]
                )
                assert auc == pytest.approx(r.accuracy)


def test_results_that_do_not_belong_are_refused(single_study, paired_study, tmp_path):
    (single, single_paths), (paired, paired_paths) = single_study, paired_study
    with pytest.raises(ReaderStudyError, match="belong to study"):
        analyze_files(single.bundle, single.key_path, [paired_paths[0]])
    with pytest.raises(ReaderStudyError, match="belongs to study"):
        analyze_files(single.bundle, paired.key_path, single_paths)
    with pytest.raises(ReaderStudyError, match="appears twice"):
        analyze_files(single.bundle, single.key_path, [single_paths[0], single_paths[0]])
    with pytest.raises(ReaderStudyError, match="no results files"):
        analyze_files(single.bundle, single.key_path, [])
    # Answers to a case id the study does not have.
    forged = tmp_path / "forged.sqlite"
    shutil.copy(single_paths[0], forged)
    con = sqlite3.connect(forged)
    con.execute(
        "INSERT INTO answers (case_id, position, choice, confidence, seconds, answered_at) "
        "VALUES ('case-ffffffff', 0, 'real', 3, 1.0, 'now')"
    )
    con.commit()
    con.close()
    with pytest.raises(ReaderStudyError, match="unknown case ids"):
        analyze_files(single.bundle, single.key_path, [forged])
    # A bundle whose manifest was edited: hash mismatch with the key and with the answers.
    copy = tmp_path / "bundle"
    shutil.copytree(single.bundle, copy)
    manifest = copy / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"allow_revisions": false', '"allow_revisions": true'))
    with pytest.raises(ReaderStudyError, match="manifest .* was changed"):
        analyze_files(copy, single.key_path, single_paths)


def test_cli_analyze(single_study, tmp_path, capsys):
    result, paths = single_study
    rc = cli_main(
        [
            "reader-study",
            "analyze",
            str(result.bundle),
            str(result.key_path),
            *map(str, paths),
            "--out",
            str(tmp_path / "rep"),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "R1:" in out and "AUC" in out and (tmp_path / "rep" / "report.md").is_file()
    rc = cli_main(
        [
            "reader-study",
            "analyze",
            str(result.bundle),
            str(result.key_path),
            str(result.key_path),
            "--out",
            str(tmp_path / "rep2"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "not a reader-study results file" in err and "Traceback" not in err
