"""Bland-Altman agreement statistics.

The difference is always ``candidate - reference`` (same unit as the data: W, J,
...). All functions are pure and take 1-D arrays.

References
----------
- Bland J.M., Altman D.G. (1986) Statistical methods for assessing agreement between
  two methods of clinical measurement. Lancet i:307-310.
- Bland J.M., Altman D.G. (1999) Measuring agreement in method comparison studies.
  Stat Methods Med Res 8:135-160.
- Bland J.M., Altman D.G. (2007) Agreement between methods of measurement with
  multiple observations per individual. J Biopharm Stat 17:571-582.
- Carkeet A. (2015) Exact parametric confidence intervals for Bland-Altman limits of
  agreement. Optom Vis Sci 92:e71-e80.
- Zou G.Y. (2013) Confidence interval estimation for the Bland-Altman limits of
  agreement with multiple observations per individual. Stat Methods Med Res 22:630-642.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import optimize, stats

from analysis.regression import paired_arrays

__all__ = [
    "LOA_CI_METHODS",
    "BlandAltmanResult",
    "bland_altman",
    "bland_altman_ratio",
    "bland_altman_repeated",
    "proportional_bias",
    "carkeet_factor",
    "loa_confidence_intervals",
]

#: Names accepted by ``loa_ci``:
#: - ``carkeet-2015``: exact, two-sided tolerance factors (Carkeet 2015), the default;
#: - ``noncentral-t``: exact for each limit taken on its own (quantile of a normal
#:   distribution, non-central t with n-1 df and non-centrality k*sqrt(n));
#: - ``bland-altman-1999``: SE = s*sqrt(1/n + k^2/(2(n-1))), t with n-1 df;
#: - ``bland-altman-1986``: SE = sqrt(3 s^2 / n), t with n-1 df.
LOA_CI_METHODS = ("carkeet-2015", "noncentral-t", "bland-altman-1999", "bland-altman-1986")


@dataclass(frozen=True)
class BlandAltmanResult:
    """Bias (mean of candidate - reference), SD of the differences, limits of agreement.

    ``loa_low``/``loa_high`` = ``bias -/+ k * sd``. Confidence intervals are two-sided
    ``1 - alpha``; ``bias_ci_method`` and ``loa_ci_method`` name how they were made.
    """

    n: int
    bias: float
    sd: float
    loa_low: float
    loa_high: float
    bias_ci: tuple[float, float]
    loa_low_ci: tuple[float, float]
    loa_high_ci: tuple[float, float]
    k: float
    alpha: float
    bias_ci_method: str
    loa_ci_method: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python representation (tuples become lists)."""
        d = asdict(self)
        for key in ("bias_ci", "loa_low_ci", "loa_high_ci"):
            d[key] = [float(v) for v in getattr(self, key)]
        return d


def _check(alpha: float, k: float, loa_ci: str) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not (math.isfinite(k) and k > 0):
        raise ValueError(f"k (the LoA multiplier) must be positive, got {k}")
    if loa_ci not in LOA_CI_METHODS:
        raise ValueError(f"loa_ci must be one of {', '.join(LOA_CI_METHODS)}; got {loa_ci!r}")


# ----------------------------------------------------------------- exact factors

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(160)


def _central_halfwidth(z: np.ndarray, p: float) -> np.ndarray:
    """r(z) with Phi(z + r) - Phi(z - r) = p, vectorised Newton iteration."""
    r = np.full_like(z, stats.norm.ppf(0.5 + p / 2.0)) + np.abs(z)
    for _ in range(60):
        f = stats.norm.cdf(z + r) - stats.norm.cdf(z - r) - p
        fp = stats.norm.pdf(z + r) + stats.norm.pdf(z - r)
        step = f / fp
        r = r - step
        if np.all(np.abs(step) < 1e-13 * np.maximum(1.0, r)):
            break
    return r


def _tolerance_confidence(
    kf: float, n: int, p: float, z: np.ndarray, w: np.ndarray, r: np.ndarray
) -> float:
    """P(interval mean +/- kf*SD covers a proportion >= p of N(mu, sigma))."""
    nu = n - 1
    chi = stats.chi2.sf(nu * r**2 / kf**2, nu)
    return float(np.sum(w * chi))


@lru_cache(maxsize=512)
def carkeet_factor(n: int, gamma: float, k: float = 1.96) -> float:
    """Two-sided tolerance factor K (Carkeet 2015) for limits of agreement.

    ``mean +/- K * SD`` of ``n`` normal differences covers the central proportion
    ``p = Phi(k) - Phi(-k)`` of the population with probability ``gamma``. The
    ``1 - alpha`` CI of the upper limit is ``[mean + K(alpha/2) SD, mean + K(1-alpha/2) SD]``
    (mirror for the lower limit). Computed by integrating over the sampling
    distribution of the mean (Gauss-Legendre) and solving for K.
    """
    if n < 2:
        raise ValueError("need at least 2 differences for tolerance factors")
    if not 0.0 < gamma < 1.0:
        raise ValueError(f"gamma must be in (0, 1), got {gamma}")
    p = float(stats.norm.cdf(k) - stats.norm.cdf(-k))
    zmax = 9.0 / math.sqrt(n)
    z = 0.5 * zmax * (_GL_NODES + 1.0)
    # density of |mean - mu|/sigma (half-normal with sd 1/sqrt(n)) times GL weights
    w = 0.5 * zmax * _GL_WEIGHTS * 2.0 * math.sqrt(n) * stats.norm.pdf(math.sqrt(n) * z)
    r = _central_halfwidth(z, p)

    def g(kf: float) -> float:
        return _tolerance_confidence(kf, n, p, z, w, r) - gamma

    lo, hi = 1e-3, 10.0
    while g(hi) < 0:
        hi *= 4.0
        if hi > 1e7:
            raise ValueError("tolerance factor did not converge")
    return float(optimize.brentq(g, lo, hi, xtol=1e-12, rtol=1e-12))


def loa_confidence_intervals(
    bias: float,
    sd: float,
    n: int,
    *,
    k: float = 1.96,
    alpha: float = 0.05,
    method: str = "carkeet-2015",
) -> tuple[tuple[float, float], tuple[float, float]]:
    """CIs of the lower and upper limits of agreement ``bias -/+ k*sd`` (see LOA_CI_METHODS)."""
    _check(alpha, k, method)
    if n < 2:
        raise ValueError("need at least 2 differences")
    low, high = bias - k * sd, bias + k * sd
    if method == "carkeet-2015":
        k_in = carkeet_factor(int(n), alpha / 2.0, float(k))
        k_out = carkeet_factor(int(n), 1.0 - alpha / 2.0, float(k))
        return (bias - k_out * sd, bias - k_in * sd), (bias + k_in * sd, bias + k_out * sd)
    if method == "noncentral-t":
        nc = k * math.sqrt(n)
        q_lo = float(stats.nct.ppf(alpha / 2.0, n - 1, nc)) / math.sqrt(n)
        q_hi = float(stats.nct.ppf(1.0 - alpha / 2.0, n - 1, nc)) / math.sqrt(n)
        return (bias - q_hi * sd, bias - q_lo * sd), (bias + q_lo * sd, bias + q_hi * sd)
    if method == "bland-altman-1999":
        se = sd * math.sqrt(1.0 / n + k**2 / (2.0 * (n - 1)))
    else:  # bland-altman-1986
        se = math.sqrt(3.0 * sd**2 / n)
    t = float(stats.t.ppf(1 - alpha / 2.0, n - 1))
    return (low - t * se, low + t * se), (high - t * se, high + t * se)


# ------------------------------------------------------------------ main variant


def _basic(d: np.ndarray, *, k: float, alpha: float, loa_ci: str) -> dict[str, Any]:
    n = d.size
    bias = float(d.mean())
    sd = float(d.std(ddof=1))
    t = float(stats.t.ppf(1 - alpha / 2.0, n - 1))
    se_bias = sd / math.sqrt(n)
    low_ci, high_ci = loa_confidence_intervals(bias, sd, n, k=k, alpha=alpha, method=loa_ci)
    return {
        "n": n,
        "bias": bias,
        "sd": sd,
        "loa_low": bias - k * sd,
        "loa_high": bias + k * sd,
        "bias_ci": (bias - t * se_bias, bias + t * se_bias),
        "loa_low_ci": low_ci,
        "loa_high_ci": high_ci,
        "se_bias": se_bias,
        "p_bias": float(2 * stats.t.sf(abs(bias) / se_bias, n - 1)) if se_bias > 0 else math.nan,
    }


def proportional_bias(reference: Any, candidate: Any) -> dict[str, float]:
    """Regression of the difference (candidate - reference) on the pair mean.

    Returns slope (difference per unit of mean), intercept (unit of the data), r,
    two-sided p-value of the slope (t test, n-2 df) and the residual SD; a
    significant slope indicates proportional bias (Bland & Altman 1999, sec. 3.2).
    """
    x, y, _ = paired_arrays(reference, candidate)
    d = y - x
    a = (x + y) / 2.0
    if np.ptp(a) == 0:
        raise ValueError("pair means are all equal; proportional bias is undefined")
    if np.ptp(d) == 0:
        return {
            "slope": 0.0,
            "intercept": float(d[0]),
            "r": math.nan,
            "p_value": 1.0,
            "residual_sd": 0.0,
        }
    lr = stats.linregress(a, d)
    resid = d - (lr.intercept + lr.slope * a)
    return {
        "slope": float(lr.slope),
        "intercept": float(lr.intercept),
        "r": float(lr.rvalue),
        "p_value": float(lr.pvalue),
        "residual_sd": float(math.sqrt(np.sum(resid**2) / (d.size - 2))),
    }


def bland_altman(
    reference: Any,
    candidate: Any,
    *,
    k: float = 1.96,
    alpha: float = 0.05,
    loa_ci: str = "carkeet-2015",
) -> BlandAltmanResult:
    """Bland-Altman analysis of one pair per subject (Bland & Altman 1986, 1999).

    ``k`` is the LoA multiplier (1.96 for 95% limits; the 1986 paper used 2). The bias
    CI is ``bias +/- t(n-1) * sd/sqrt(n)``; LoA CIs per ``loa_ci`` (see
    ``LOA_CI_METHODS``); ``extra`` also carries the Bland-Altman 1986 approximate LoA
    CIs and the proportional-bias regression.
    """
    _check(alpha, k, loa_ci)
    x, y, dropped = paired_arrays(reference, candidate)
    d = y - x
    b = _basic(d, k=k, alpha=alpha, loa_ci=loa_ci)
    approx_low, approx_high = loa_confidence_intervals(
        b["bias"], b["sd"], b["n"], k=k, alpha=alpha, method="bland-altman-1986"
    )
    extra: dict[str, Any] = {
        "dropped": dropped,
        "se_bias": b["se_bias"],
        "p_bias": b["p_bias"],
        "loa_low_ci_approx": approx_low,
        "loa_high_ci_approx": approx_high,
        "loa_ci_approx_method": "bland-altman-1986",
    }
    try:
        extra["proportional_bias"] = proportional_bias(x, y)
    except ValueError:
        extra["proportional_bias"] = None
    return BlandAltmanResult(
        n=b["n"],
        bias=b["bias"],
        sd=b["sd"],
        loa_low=b["loa_low"],
        loa_high=b["loa_high"],
        bias_ci=b["bias_ci"],
        loa_low_ci=b["loa_low_ci"],
        loa_high_ci=b["loa_high_ci"],
        k=k,
        alpha=alpha,
        bias_ci_method="t (n-1 df)",
        loa_ci_method=loa_ci,
        extra=extra,
    )


def bland_altman_ratio(
    reference: Any,
    candidate: Any,
    *,
    k: float = 1.96,
    alpha: float = 0.05,
    loa_ci: str = "carkeet-2015",
    subjects: Any = None,
) -> dict[str, Any]:
    """Ratio (log) variant: analysis of ``ln(candidate) - ln(reference)``.

    Returns the log-scale bias/SD/limits and their back-transformed forms: the
    geometric mean ratio ``gmr = exp(bias)`` and limits of agreement as ratios
    ``exp(bias -/+ k*sd)`` (candidate / reference), with CIs transformed the same way
    (Bland & Altman 1999, sec. 3.1). All values must be positive. With ``subjects``
    the log differences go through :func:`bland_altman_repeated`.
    """
    _check(alpha, k, loa_ci)
    if subjects is not None:
        ref = np.asarray(reference, dtype=float).ravel()
        cand = np.asarray(candidate, dtype=float).ravel()
        ok = np.isfinite(ref) & np.isfinite(cand)
        if np.any(ref[ok] <= 0) or np.any(cand[ok] <= 0):
            raise ValueError("ratio (log) Bland-Altman needs all values > 0")
        with np.errstate(invalid="ignore", divide="ignore"):
            rr = bland_altman_repeated(
                np.where(ok, np.log(np.where(ok, ref, 1.0)), np.nan),
                np.where(ok, np.log(np.where(ok, cand, 1.0)), np.nan),
                subjects,
                k=k,
                alpha=alpha,
            )
        b = {
            "n": rr.n,
            "bias": rr.bias,
            "sd": rr.sd,
            "loa_low": rr.loa_low,
            "loa_high": rr.loa_high,
            "bias_ci": rr.bias_ci,
            "loa_low_ci": rr.loa_low_ci,
            "loa_high_ci": rr.loa_high_ci,
        }
        dropped = int(rr.extra["dropped"])
        loa_ci = rr.loa_ci_method
    else:
        x, y, dropped = paired_arrays(reference, candidate)
        if np.any(x <= 0) or np.any(y <= 0):
            raise ValueError("ratio (log) Bland-Altman needs all values > 0")
        b = _basic(np.log(y) - np.log(x), k=k, alpha=alpha, loa_ci=loa_ci)

    if any(abs(v) >= 700.0 for v in (b["loa_low"], b["loa_high"], *b["loa_low_ci"], *b["loa_high_ci"])):
        raise ValueError("candidate/reference ratios span more than floating point can hold; "
                         "the ratio (log) Bland-Altman is unavailable")

    def ex(t: tuple[float, float]) -> list[float]:
        return [math.exp(t[0]), math.exp(t[1])]

    return {
        "n": b["n"],
        "dropped": dropped,
        "log_bias": b["bias"],
        "log_sd": b["sd"],
        "log_loa_low": b["loa_low"],
        "log_loa_high": b["loa_high"],
        "log_bias_ci": list(b["bias_ci"]),
        "log_loa_low_ci": list(b["loa_low_ci"]),
        "log_loa_high_ci": list(b["loa_high_ci"]),
        "gmr": math.exp(b["bias"]),
        "gmr_ci": ex(b["bias_ci"]),
        "ratio_loa_low": math.exp(b["loa_low"]),
        "ratio_loa_high": math.exp(b["loa_high"]),
        "ratio_loa_low_ci": ex(b["loa_low_ci"]),
        "ratio_loa_high_ci": ex(b["loa_high_ci"]),
        "loa_ci_method": loa_ci,
    }


# ---------------------------------------------------------- repeated measurements


def _mover_sum_of_ms(
    coefs: list[float], ms: list[float], dfs: list[int], alpha: float
) -> tuple[float, float]:
    """MOVER/Graybill-Wang CI of sum(c_i * MS_i) with c_i >= 0, MS_i ~ chi2(df_i)/df_i."""
    theta = sum(c * m for c, m in zip(coefs, ms, strict=True))
    lo_terms, hi_terms = 0.0, 0.0
    for c, m, df in zip(coefs, ms, dfs, strict=True):
        lo_terms += (c * m * (1.0 - df / stats.chi2.ppf(1 - alpha / 2, df))) ** 2
        hi_terms += (c * m * (df / stats.chi2.ppf(alpha / 2, df) - 1.0)) ** 2
    return max(theta - math.sqrt(lo_terms), 0.0), theta + math.sqrt(hi_terms)


def bland_altman_repeated(
    reference: Any,
    candidate: Any,
    subjects: Any,
    *,
    k: float = 1.96,
    alpha: float = 0.05,
) -> BlandAltmanResult:
    """Limits of agreement with several pairs per subject, true value varying.

    Bland & Altman (2007, sec. 3): the bias is the mean of all differences; the SD of a
    single difference combines the between-subject and within-subject variance
    components of a one-way ANOVA of the differences on subject,
    ``sd^2 = (MSB - MSW)/lambda + MSW`` with
    ``lambda = (N^2 - sum m_i^2) / ((n - 1) N)`` (``n`` subjects, ``N`` pairs).
    Confidence intervals (not given by Bland & Altman 2007): the bias CI uses the
    variance of the overall mean under that random-effects model with ``n - 1`` df;
    the LoA CIs use MOVER (Zou 2013) on the same variance components.
    """
    _check(alpha, k, "carkeet-2015")
    ref = np.asarray(reference, dtype=float).ravel()
    cand = np.asarray(candidate, dtype=float).ravel()
    subj = np.asarray(subjects).ravel()
    if not (ref.size == cand.size == subj.size):
        raise ValueError(
            f"reference, candidate and subjects must have the same length (got {ref.size}, {cand.size}, {subj.size})"
        )
    ok = np.isfinite(ref) & np.isfinite(cand)
    try:
        ok &= ~np.asarray(subj != subj, dtype=bool)  # NaN subject ids
    except TypeError:
        pass
    dropped = int(ref.size - ok.sum())
    ref, cand, subj = ref[ok], cand[ok], subj[ok]
    if ref.size < 3:
        raise ValueError(
            f"need at least 3 complete pairs, got {ref.size} ({dropped} dropped for NaN/inf)"
        )
    d = cand - ref
    _, inverse, counts = np.unique(subj, return_inverse=True, return_counts=True)
    n_subj, big_n = counts.size, d.size
    if n_subj < 2:
        raise ValueError("need at least 2 subjects for the repeated-measures variant")
    if big_n == n_subj:
        raise ValueError("each subject has one pair; use the ordinary Bland-Altman analysis")
    sums = np.bincount(inverse, weights=d)
    means = sums / counts
    bias = float(d.mean())
    ssb = float(np.sum(counts * (means - bias) ** 2))
    ssw = float(np.sum((d - means[inverse]) ** 2))
    df_b, df_w = n_subj - 1, big_n - n_subj
    msb, msw = ssb / df_b, ssw / df_w
    lam = (big_n**2 - float(np.sum(counts**2))) / (df_b * big_n)
    var_b = max((msb - msw) / lam, 0.0)
    var_tot = var_b + msw
    sd = math.sqrt(var_tot)

    # bias CI: Var(mean of all d) = var_b * sum(m_i^2)/N^2 + var_w / N
    var_bias = var_b * float(np.sum(counts**2)) / big_n**2 + msw / big_n
    se_bias = math.sqrt(var_bias)
    t = float(stats.t.ppf(1 - alpha / 2.0, df_b))
    bias_ci = (bias - t * se_bias, bias + t * se_bias)

    # variance CI by MOVER: var_tot = MSB/lam + (1 - 1/lam) MSW (or MSW alone when var_b = 0)
    if var_b > 0 and lam >= 1.0:
        v_lo, v_hi = _mover_sum_of_ms([1.0 / lam, 1.0 - 1.0 / lam], [msb, msw], [df_b, df_w], alpha)
    else:
        v_lo, v_hi = _mover_sum_of_ms([1.0], [msw], [df_w], alpha)
    s_lo, s_hi = math.sqrt(v_lo), math.sqrt(v_hi)
    low, high = bias - k * sd, bias + k * sd
    dl, du = bias - bias_ci[0], bias_ci[1] - bias
    high_ci = (
        high - math.sqrt(dl**2 + (k * (sd - s_lo)) ** 2),
        high + math.sqrt(du**2 + (k * (s_hi - sd)) ** 2),
    )
    low_ci = (
        low - math.sqrt(dl**2 + (k * (s_hi - sd)) ** 2),
        low + math.sqrt(du**2 + (k * (sd - s_lo)) ** 2),
    )
    return BlandAltmanResult(
        n=big_n,
        bias=bias,
        sd=sd,
        loa_low=low,
        loa_high=high,
        bias_ci=bias_ci,
        loa_low_ci=low_ci,
        loa_high_ci=high_ci,
        k=k,
        alpha=alpha,
        bias_ci_method="random-effects variance of the mean, t (subjects-1 df)",
        loa_ci_method="mover (Zou 2013) on Bland-Altman 2007 variance components",
        extra={
            "design": "repeated pairs, true value varies (Bland & Altman 2007)",
            "n_subjects": n_subj,
            "dropped": dropped,
            "var_between": var_b,
            "var_within": msw,
            "msb": msb,
            "msw": msw,
            "lambda": lam,
            "se_bias": se_bias,
        },
    )
