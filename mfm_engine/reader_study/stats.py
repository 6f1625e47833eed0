"""Statistics of a reader study, written out (standard library + numpy) and checked in the tests against
scipy, scikit-learn and statsmodels.

- `wilson_interval`: Wilson score interval of a proportion.
- `binomial_test`: exact two-sided binomial test (the "minimum likelihood" p-value, as scipy's binomtest).
- `dprime_2afc`: √2·Φ⁻¹(pc) for paired forced choice; `dprime_yes_no`: Φ⁻¹(H) − Φ⁻¹(F) with the
  log-linear correction (Hautus 1995: add ½ to each count and 1 to each total).
- `rating10`: the choice and the 1–5 confidence as one 1–10 "synthetic-ness" rating
  (1 = sure it is real … 10 = sure it is synthetic), for ROC analysis.
- `roc_auc` / `roc_points`: empirical (trapezoidal) ROC of those ratings; AUC = Mann–Whitney U / (n₁n₀).
- `cohen_kappa` (two readers) and `fleiss_kappa` (three or more).
- `pooled_accuracy`: the proportion correct over all readers and cases from an intercept-only logistic
  GEE with independence working correlation and a cluster-robust (sandwich) variance, clustered by
  case — readers' answers on the same case are not independent. Readers are fixed effects here; the
  generalisation to other readers (random readers) is left to MRMC software (the iMRMC export).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

_NORMAL = NormalDist()
# Relative tolerance when comparing binomial probabilities of equal likelihood (as R and scipy do).
_REL_TOL = 1 + 1e-7


def z_quantile(p: float) -> float:
    """Φ⁻¹(p), the standard normal quantile."""
    return _NORMAL.inv_cdf(p)


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials ((nan, nan) when n = 0)."""
    if n <= 0:
        return (math.nan, math.nan)
    z = _NORMAL.inv_cdf(0.5 + confidence / 2)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _binom_pmf(i: int, n: int, p: float) -> float:
    return math.comb(n, i) * p**i * (1 - p) ** (n - i)


def binomial_test(k: int, n: int, p: float = 0.5) -> float:
    """Exact two-sided binomial p-value: the total probability of outcomes no more likely than k."""
    if n <= 0:
        return math.nan
    if not 0 <= k <= n:
        raise ValueError(f"k={k} is outside 0..{n}")
    pmf = [_binom_pmf(i, n, p) for i in range(n + 1)]
    observed = pmf[k]
    return min(1.0, sum(q for q in pmf if q <= observed * _REL_TOL))


def dprime_2afc(k: int, n: int) -> tuple[float, bool]:
    """(d′, corrected) for k of n correct forced choices: √2·Φ⁻¹(k/n).

    At 0 or n correct Φ⁻¹ is infinite; then pc = (k + ½)/(n + 1) is used and ``corrected`` is True.
    """
    if n <= 0:
        return (math.nan, False)
    corrected = k in (0, n)
    pc = (k + 0.5) / (n + 1) if corrected else k / n
    return (math.sqrt(2.0) * z_quantile(pc), corrected)


def dprime_yes_no(hits: int, n_signal: int, false_alarms: int, n_noise: int) -> float:
    """d′ = Φ⁻¹(H) − Φ⁻¹(F) with the log-linear correction H = (hits + ½)/(n_signal + 1), likewise F."""
    if n_signal <= 0 or n_noise <= 0:
        return math.nan
    h = (hits + 0.5) / (n_signal + 1)
    f = (false_alarms + 0.5) / (n_noise + 1)
    return z_quantile(h) - z_quantile(f)


def rating10(said_synthetic: bool, confidence: int) -> int:
    """Choice + confidence (1–5) as one rating: 10 = sure synthetic … 6, 5 = guesses … 1 = sure real."""
    if not 1 <= int(confidence) <= 5:
        raise ValueError(f"confidence must be 1–5, got {confidence!r}")
    return 5 + int(confidence) if said_synthetic else 6 - int(confidence)


def roc_auc(positive_scores: Sequence[float], negative_scores: Sequence[float]) -> float:
    """P(score of a positive > score of a negative) + ½·P(tie): the area under the empirical ROC curve."""
    pos = np.asarray(positive_scores, dtype=np.float64)
    neg = np.asarray(negative_scores, dtype=np.float64)
    if pos.size == 0 or neg.size == 0:
        return math.nan
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


def roc_points(
    scores: Sequence[float], positive: Sequence[bool]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate, threshold) at every distinct score, from (0, 0) to (1, 1).

    A case counts as positive at a threshold when its score is ≥ the threshold; the first point uses +inf.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    thresholds = np.concatenate([[np.inf], np.unique(s)[::-1]])
    tpr = np.array([(s[y] >= t).sum() / n_pos if n_pos else math.nan for t in thresholds])
    fpr = np.array([(s[~y] >= t).sum() / n_neg if n_neg else math.nan for t in thresholds])
    return fpr, tpr, thresholds


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Cohen's κ of two readers' labels on the same cases (nan when chance agreement is 1)."""
    if len(a) != len(b):
        raise ValueError("both readers must label the same cases")
    if not a:
        return math.nan
    cats = sorted(set(a) | set(b))
    n = len(a)
    po = sum(x == y for x, y in zip(a, b, strict=True)) / n
    pe = sum((a.count(c) / n) * (b.count(c) / n) for c in cats)
    return math.nan if math.isclose(pe, 1.0) else (po - pe) / (1 - pe)


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' κ from an (items × categories) table of how many readers put each item in each category."""
    table = np.asarray(counts, dtype=np.float64)
    n_items = table.shape[0]
    m = table.sum(axis=1)
    if n_items == 0 or not np.allclose(m, m[0]) or m[0] < 2:
        raise ValueError("every item needs the same number (≥ 2) of ratings")
    m = m[0]
    p_item = ((table**2).sum(axis=1) - m) / (m * (m - 1))
    p_bar = p_item.mean()
    p_cat = table.sum(axis=0) / (n_items * m)
    pe = float((p_cat**2).sum())
    return math.nan if math.isclose(pe, 1.0) else float((p_bar - pe) / (1 - pe))


@dataclass(frozen=True)
class PooledEstimate:
    """Proportion correct over all readers, case-clustered robust 95 % interval, Wald test against ½."""

    proportion: float
    low: float
    high: float
    se_logit: float
    z: float
    p_value: float
    n_answers: int
    n_cases: int
    n_readers: int
    method: str = "logistic GEE (intercept only, independence, robust SE clustered by case; readers fixed)"


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def pooled_accuracy(
    correct: Mapping[str, Mapping[str, int | bool]], confidence: float = 0.95
) -> PooledEstimate:
    """Pooled proportion correct from {reader: {case: correct}}; sandwich variance clustered by case."""
    by_case: dict[str, list[float]] = {}
    readers = set()
    for reader, answers in correct.items():
        for case, ok in answers.items():
            by_case.setdefault(case, []).append(float(bool(ok)))
            readers.add(reader)
    y = np.array([v for vals in by_case.values() for v in vals])
    n = y.size
    if n == 0:
        return PooledEstimate(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, 0, 0, 0)
    p = float(y.mean())
    if p in (0.0, 1.0):
        # The logit is infinite: no Wald interval. Say so instead of inventing one.
        return PooledEstimate(
            p, math.nan, math.nan, math.inf, math.nan, math.nan, n, len(by_case), len(readers)
        )
    beta = math.log(p / (1 - p))
    bread = n * p * (1 - p)
    meat = sum(float(np.sum(np.asarray(v) - p)) ** 2 for v in by_case.values())
    se = math.sqrt(meat) / bread
    zc = _NORMAL.inv_cdf(0.5 + confidence / 2)
    z = beta / se if se > 0 else math.inf
    p_value = math.erfc(abs(z) / math.sqrt(2)) if math.isfinite(z) else 0.0
    return PooledEstimate(
        p, _expit(beta - zc * se), _expit(beta + zc * se), se, z, p_value, n, len(by_case), len(readers)
    )
