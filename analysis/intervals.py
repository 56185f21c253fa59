"""Confidence intervals of a mean over a few repeated runs (energies J, durations s, CO2 g).

A t interval on the raw values can go below zero for a positive quantity when n is small
(a campaign energy CI of [-584, 1530] J from n = 2 runs).  For values that are all > 0,
:func:`mean_ci` works on the log scale (a t interval of the mean log, back-transformed:
the geometric mean's CI, which cannot go below zero; Bland & Altman 1996, BMJ 312:1079);
otherwise the plain t interval.  The result says which method it used and warns below
:data:`MIN_RUNS` values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from analysis.numbers import finite_or_none

__all__ = ["MIN_RUNS", "MeanCI", "mean_ci"]

MIN_RUNS = 3  # fewer repeated runs than this: the interval is shown as indicative only
LOG_METHOD = "t interval of the mean log (geometric mean; cannot go below 0)"
T_METHOD = "t interval of the mean"


@dataclass(frozen=True)
class MeanCI:
    """The mean of ``n`` values, their SD, a ``1 - alpha`` CI and how it was made.

    ``geometric_mean`` is set when the CI is on the log scale (all values > 0); the CI
    then brackets the geometric mean.  ``warnings``: why the interval may mislead.
    """

    n: int
    mean: float | None
    sd: float | None
    ci: tuple[float | None, float | None]
    method: str | None
    geometric_mean: float | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": finite_or_none(self.mean), "ci": [finite_or_none(c) for c in self.ci],
                "sd": finite_or_none(self.sd), "n": self.n, "method": self.method,
                "geometric_mean": finite_or_none(self.geometric_mean), "warnings": list(self.warnings)}


def mean_ci(values: Any, alpha: float = 0.05, *, what: str = "the mean", positive: bool = True) -> MeanCI:
    """The mean of the finite ``values`` with a ``1 - alpha`` confidence interval.

    ``positive``: the quantity cannot be negative (energy, time, CO2): when every value is
    > 0 the CI is on the log scale.  ``what`` names the quantity in the warnings.
    """
    v = np.asarray([x for x in np.asarray(values, dtype=object).ravel()
                    if x is not None and isinstance(x, (int, float, np.number)) and math.isfinite(float(x))], float)
    n = int(v.size)
    if n == 0:
        return MeanCI(0, None, None, (None, None), None, warnings=[f"{what}: no values"])
    m = float(v.mean())
    if n == 1:
        return MeanCI(1, m, None, (None, None), None,
                      warnings=[f"{what}: one run, no confidence interval (repeat the run)"])
    sd = float(v.std(ddof=1))
    t = float(stats.t.ppf(1 - alpha / 2, n - 1))
    warnings = []
    if n < MIN_RUNS:
        warnings.append(f"{what}: only {n} runs; the {100 * (1 - alpha):.0f}% CI (t with {n - 1} df) is "
                        f"indicative only (at least {MIN_RUNS} runs are needed)")
    if positive and np.all(v > 0):
        logs = np.log(v)
        lm, ls = float(logs.mean()), float(logs.std(ddof=1))
        h = t * ls / math.sqrt(n)
        return MeanCI(n, m, sd, (math.exp(lm - h), math.exp(lm + h)), LOG_METHOD, math.exp(lm), warnings)
    h = t * sd / math.sqrt(n)
    lo = m - h
    if positive and lo < 0:
        warnings.append(f"{what}: the CI reaches below zero; some values are <= 0, so the log scale "
                        "could not be used")
    return MeanCI(n, m, sd, (lo, m + h), T_METHOD, None, warnings)
