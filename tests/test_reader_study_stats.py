"""Every reader-study statistic against an independent implementation: scipy, scikit-learn, statsmodels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from mfm_engine.reader_study import stats

sklearn_metrics = pytest.importorskip("sklearn.metrics")
sm_proportion = pytest.importorskip("statsmodels.stats.proportion")
sm_inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")
sm = pytest.importorskip("statsmodels.api")


@pytest.mark.parametrize("n", [1, 5, 10, 20, 37])
def test_wilson_interval_matches_statsmodels(n):
    for k in range(n + 1):
        lo, hi = stats.wilson_interval(k, n)
        ref_lo, ref_hi = sm_proportion.proportion_confint(k, n, alpha=0.05, method="wilson")
        assert lo == pytest.approx(ref_lo, abs=1e-12)
        assert hi == pytest.approx(ref_hi, abs=1e-12)


def test_wilson_interval_of_nothing_is_undefined():
    assert all(math.isnan(v) for v in stats.wilson_interval(0, 0))


@pytest.mark.parametrize("n", [1, 2, 7, 10, 20, 31])
@pytest.mark.parametrize("p", [0.5, 0.3])
def test_binomial_test_matches_scipy(n, p):
    for k in range(n + 1):
        assert stats.binomial_test(k, n, p) == pytest.approx(
            sps.binomtest(k, n, p).pvalue, rel=1e-9, abs=1e-15
        )


def test_dprime_matches_normal_quantiles():
    # Paired forced choice: √2·Φ⁻¹(pc); at 0 or n correct the log-linear corrected proportion.
    d, corrected = stats.dprime_2afc(15, 20)
    assert not corrected
    assert d == pytest.approx(math.sqrt(2) * sps.norm.ppf(0.75), rel=1e-12)
    d, corrected = stats.dprime_2afc(20, 20)
    assert corrected
    assert d == pytest.approx(math.sqrt(2) * sps.norm.ppf(20.5 / 21), rel=1e-12)
    # Yes/no with the log-linear correction (Hautus 1995).
    expected = sps.norm.ppf(8.5 / 11) - sps.norm.ppf(3.5 / 11)
    assert stats.dprime_yes_no(8, 10, 3, 10) == pytest.approx(expected, rel=1e-12)
    assert stats.dprime_yes_no(10, 10, 0, 10) == pytest.approx(
        sps.norm.ppf(10.5 / 11) - sps.norm.ppf(0.5 / 11)
    )


def test_rating10_orders_choice_then_confidence():
    ratings = [stats.rating10(False, c) for c in (5, 4, 3, 2, 1)] + [
        stats.rating10(True, c) for c in (1, 2, 3, 4, 5)
    ]
    assert ratings == list(range(1, 11))
    with pytest.raises(ValueError):
        stats.rating10(True, 6)


def _ratings(rng, n_pos, n_neg):
    truth = np.array([1] * n_pos + [0] * n_neg)
    said = rng.random(truth.size) < np.where(truth == 1, 0.65, 0.35)
    conf = rng.integers(1, 6, truth.size)
    scores = np.array([stats.rating10(bool(s), int(c)) for s, c in zip(said, conf, strict=True)])
    return truth, said, scores


@pytest.mark.parametrize("seed", range(6))
def test_roc_auc_and_curve_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    truth, _, scores = _ratings(rng, 10, 10)
    auc = stats.roc_auc(scores[truth == 1], scores[truth == 0])
    assert auc == pytest.approx(sklearn_metrics.roc_auc_score(truth, scores), abs=1e-12)
    fpr, tpr, thr = stats.roc_points(scores, truth == 1)
    ref_fpr, ref_tpr, ref_thr = sklearn_metrics.roc_curve(truth, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    np.testing.assert_allclose(thr[1:], ref_thr[1:])
    # The trapezoidal area under the returned points is the AUC.
    assert np.trapezoid(tpr, fpr) == pytest.approx(auc, abs=1e-12)


def test_sensitivity_specificity_match_scikit_learn():
    rng = np.random.default_rng(11)
    truth, said, _ = _ratings(rng, 12, 8)
    hits = int((said & (truth == 1)).sum())
    rejections = int((~said & (truth == 0)).sum())
    assert hits / 12 == pytest.approx(sklearn_metrics.recall_score(truth, said, pos_label=1))
    assert rejections / 8 == pytest.approx(sklearn_metrics.recall_score(truth, said, pos_label=0))


@pytest.mark.parametrize("seed", range(5))
def test_cohen_kappa_matches_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    a = list(rng.choice(["left", "right"], 20))
    b = [x if rng.random() < 0.7 else ("left" if x == "right" else "right") for x in a]
    assert stats.cohen_kappa(a, b) == pytest.approx(sklearn_metrics.cohen_kappa_score(a, b), abs=1e-12)


def test_cohen_kappa_undefined_when_both_readers_never_vary():
    assert math.isnan(stats.cohen_kappa(["left"] * 5, ["left"] * 5))


@pytest.mark.parametrize("raters", [3, 4, 6])
def test_fleiss_kappa_matches_statsmodels(raters):
    rng = np.random.default_rng(raters)
    labels = rng.integers(0, 2, size=(20, raters))
    table = np.stack([(labels == 0).sum(axis=1), (labels == 1).sum(axis=1)], axis=1)
    assert stats.fleiss_kappa(table) == pytest.approx(
        sm_inter_rater.fleiss_kappa(table, method="fleiss"), abs=1e-12
    )


@pytest.mark.parametrize("seed", range(4))
def test_pooled_accuracy_matches_statsmodels_gee(seed):
    rng = np.random.default_rng(seed)
    readers, cases = [f"R{i}" for i in range(3)], [f"c{j}" for j in range(20)]
    easy = rng.random(len(cases))  # some cases are easier for everyone: answers correlate within a case
    correct = {r: {c: bool(rng.random() < 0.4 + 0.4 * easy[j]) for j, c in enumerate(cases)} for r in readers}
    est = stats.pooled_accuracy(correct)

    y = np.array([correct[r][c] for r in readers for c in cases], dtype=float)
    groups = np.array([j for _r in readers for j in range(len(cases))])
    model = sm.GEE(
        y,
        np.ones((y.size, 1)),
        groups=groups,
        family=sm.families.Binomial(),
        cov_struct=sm.cov_struct.Independence(),
    )
    fit = model.fit()
    beta, se = float(fit.params[0]), float(fit.bse[0])
    assert math.log(est.proportion / (1 - est.proportion)) == pytest.approx(beta, abs=1e-6)
    assert est.se_logit == pytest.approx(se, rel=1e-6)
    assert est.p_value == pytest.approx(float(fit.pvalues[0]), rel=1e-5)
    lo, hi = fit.conf_int(alpha=0.05)[0]
    assert est.low == pytest.approx(1 / (1 + math.exp(-lo)), rel=1e-6)
    assert est.high == pytest.approx(1 / (1 + math.exp(-hi)), rel=1e-6)
    assert (est.n_answers, est.n_cases, est.n_readers) == (60, 20, 3)


def test_pooled_accuracy_all_correct_gives_no_interval():
    est = stats.pooled_accuracy({"R1": {"a": True, "b": True}, "R2": {"a": True, "b": True}})
    assert est.proportion == 1.0
    assert math.isnan(est.low) and math.isnan(est.high)
