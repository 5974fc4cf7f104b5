"""Paired comparison of two methods or models evaluated on the same episodes.

For per-episode accuracies a_e and b_e (e = 1..n, the same episodes), d_e = a_e - b_e:
mean(d) +- t(0.975, n-1) s_d / sqrt(n) (:func:`fewshot_cam.stats.mean_ci95`), the paired t-test
(``scipy.stats.ttest_rel``) and the Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, zero
differences dropped, its default). Pairing removes the episode-to-episode variance, which dominates
the spread of few-shot accuracies, so it detects differences that overlapping CIs hide.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from fewshot_cam.stats import mean_ci95


@dataclass(frozen=True)
class PairedComparison:
    """a - b over n shared episodes: mean difference +- ci95 (points of accuracy), two p-values."""

    n: int
    mean_diff: float
    ci95: float
    t_pvalue: float
    wilcoxon_pvalue: float


def compare_paired(a, b) -> PairedComparison:
    """a, b: (n,) per-episode accuracies on the same episodes.

    When every difference is zero the tests are undefined; both p-values are then 1 (no evidence of a
    difference). A constant non-zero difference gives scipy's t-test p (nan).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired comparison needs two equal-length vectors, got {a.shape} and {b.shape}")
    diff = a - b
    interval = mean_ci95(diff)
    if not diff.any():
        return PairedComparison(interval.n, interval.mean, interval.ci95, 1.0, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # n < 2 or zero variance: scipy's nan
        t_p = float(stats.ttest_rel(a, b).pvalue)
        w_p = float(stats.wilcoxon(diff).pvalue)
    return PairedComparison(interval.n, interval.mean, interval.ci95, t_p, w_p)
