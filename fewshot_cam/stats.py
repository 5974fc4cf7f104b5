"""Confidence intervals and paired tests over per-episode accuracies (stage-free helper)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interval:
    """mean +- ci95 over n values."""

    mean: float
    ci95: float
    n: int

    def __str__(self) -> str:
        return format_ci(self.mean, self.ci95)


def format_ci(mean: float, ci95: float, signed: bool = False) -> str:
    """The one "mean +- ci95" format (2 decimals; ``signed``: a leading + for differences)."""
    return f"{mean:{'+' if signed else ''}.2f} +- {ci95:.2f}"


def mean_ci95(values) -> Interval:
    """Mean and half-width of the 95% t-interval: t(0.975, n-1) * s / sqrt(n), s the sample std (ddof=1).

    Equals ``scipy.stats.t.interval(0.95, n-1, loc=mean, scale=scipy.stats.sem(values))``; 0 for n < 2.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    n = x.size
    if n == 0:
        raise ValueError("no values")
    if n < 2:
        return Interval(float(x.mean()), 0.0, n)
    half = stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / np.sqrt(n)
    return Interval(float(x.mean()), float(half), n)
