"""Method-comparison regression: OLS, Deming and Passing-Bablok.

Pure functions on paired arrays ``x`` (reference method) and ``y`` (candidate
method), in the units of the measurements (W, J, ...). The fitted line is
``y = intercept + slope * x``. Each function returns a frozen
:class:`RegressionResult` that names how its confidence intervals were obtained.

References
----------
- Linnet K. (1993) Evaluation of regression procedures for methods comparison
  studies. Clin Chem 39:424-432 (Deming slope, jackknife CIs).
- Passing H., Bablok W. (1983) A new biometrical procedure for testing the
  equality of measurements from two different analytical methods.
  J Clin Chem Clin Biochem 21:709-720.
- R package ``mcr`` (Roche Diagnostics): conventions for ``error_ratio`` and for
  the jackknife interval (t quantile with n - 2 degrees of freedom).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "RegressionResult",
    "CusumResult",
    "ols",
    "ols_design",
    "OlsFit",
    "deming",
    "passing_bablok",
    "pb_cusum_linearity",
    "paired_arrays",
    "PASSING_BABLOK_MAX_N",
]

# Passing-Bablok builds all n(n-1)/2 pairwise slopes; above this many points the
# slope array would exceed a few hundred MB.
PASSING_BABLOK_MAX_N = 5000


@dataclass(frozen=True)
class RegressionResult:
    """Fitted line ``candidate = intercept + slope * reference``.

    ``slope_ci``/``intercept_ci`` are two-sided ``1 - alpha`` intervals obtained
    by ``ci_method``; ``extra`` holds method-specific values (standard errors,
    r, p-values, ...). Units: intercept in the measurement unit, slope unitless.
    """

    method: str
    slope: float
    intercept: float
    slope_ci: tuple[float, float]
    intercept_ci: tuple[float, float]
    n: int
    ci_method: str
    alpha: float = 0.05
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python representation (tuples become lists)."""
        d = asdict(self)
        d["slope_ci"] = [float(v) for v in self.slope_ci]
        d["intercept_ci"] = [float(v) for v in self.intercept_ci]
        return d


def paired_arrays(x: Any, y: Any, *, min_n: int = 3) -> tuple[np.ndarray, np.ndarray, int]:
    """Return float arrays with NaN/inf pairs removed, and how many were dropped.

    Raises ValueError (one line) for mismatched lengths or fewer than ``min_n``
    usable pairs.
    """
    xa = np.asarray(x, dtype=float).ravel()
    ya = np.asarray(y, dtype=float).ravel()
    if xa.shape != ya.shape:
        raise ValueError(
            f"reference and candidate must have the same length (got {xa.size} and {ya.size})"
        )
    ok = np.isfinite(xa) & np.isfinite(ya)
    dropped = int(xa.size - ok.sum())
    xa, ya = xa[ok], ya[ok]
    if xa.size < min_n:
        raise ValueError(
            f"need at least {min_n} complete pairs, got {xa.size} ({dropped} dropped for NaN/inf)"
        )
    return xa, ya, dropped


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def _require_spread(x: np.ndarray, name: str) -> None:
    if np.ptp(x) == 0.0:
        raise ValueError(f"{name} values are all equal; a regression line is undefined")


# --------------------------------------------------------------------------- OLS


def ols(x: Any, y: Any, *, alpha: float = 0.05) -> RegressionResult:
    """Ordinary least squares of ``y`` on ``x`` with t-based (n - 2 df) CIs."""
    _check_alpha(alpha)
    x, y, dropped = paired_arrays(x, y)
    _require_spread(x, "reference")
    n = x.size
    fit = stats.linregress(x, y)  # slope, intercept and their standard errors
    slope, intercept = float(fit.slope), float(fit.intercept)
    resid = y - (intercept + slope * x)
    s2 = float(np.sum(resid**2)) / (n - 2) if n > 2 else math.nan
    se_slope = float(fit.stderr) if n > 2 else math.nan
    se_int = float(fit.intercept_stderr) if n > 2 else math.nan
    t = float(stats.t.ppf(1 - alpha / 2, n - 2))
    r = float(fit.rvalue) if np.ptp(y) > 0 else math.nan
    return RegressionResult(
        method="ols",
        slope=float(slope),
        intercept=float(intercept),
        slope_ci=(slope - t * se_slope, slope + t * se_slope),
        intercept_ci=(intercept - t * se_int, intercept + t * se_int),
        n=n,
        ci_method="t (n-2 df)",
        alpha=alpha,
        extra={
            "se_slope": se_slope,
            "se_intercept": se_int,
            "residual_sd": math.sqrt(s2),
            "r": r,
            "dropped": dropped,
        },
    )


@dataclass(frozen=True)
class OlsFit:
    """Least squares ``y = X beta``: coefficients (units of y per unit of each column),
    their covariance, the residual SD (units of y) and the residual degrees of freedom."""

    beta: np.ndarray
    cov: np.ndarray
    residual_sd: float
    dof: int


def ols_design(x: np.ndarray, y: np.ndarray) -> OlsFit:
    """OLS on a design matrix ``x`` (n, p) -- several regressors, e.g. a calibration
    ``wall = a + sum b_i software_i`` with a column of ones for ``a``.

    :func:`ols` is the one-regressor line with its t intervals; scipy.stats has no
    multi-regressor least squares with a coefficient covariance (``linregress`` takes one
    x), so this is ``numpy.linalg.lstsq`` with ``s^2 (X'X)^-1``.
    """
    n, p = x.shape
    if n <= p:
        raise ValueError(f"need more windows ({n}) than parameters ({p}) to fit a calibration")
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ beta
    dof = n - p
    s2 = float(resid @ resid) / dof
    xtx_inv = np.linalg.pinv(x.T @ x)
    return OlsFit(beta, s2 * xtx_inv, float(np.sqrt(s2)), dof)


# ------------------------------------------------------------------------ Deming


def _deming_from_moments(
    xm: np.ndarray | float,
    ym: np.ndarray | float,
    u: np.ndarray | float,
    q: np.ndarray | float,
    p: np.ndarray | float,
    lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Deming slope/intercept from centred sums (vectorised over leave-one-out sets).

    ``u = sum (x - xm)^2``, ``q = sum (y - ym)^2``, ``p = sum (x - xm)(y - ym)``,
    ``lam = var(error of x) / var(error of y)`` (Linnet 1993, mcr ``error.ratio``).
    """
    u, q, p = np.asarray(u, float), np.asarray(q, float), np.asarray(p, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = ((lam * q - u) + np.sqrt((u - lam * q) ** 2 + 4.0 * lam * p**2)) / (2.0 * lam * p)
    intercept = np.asarray(ym) - slope * np.asarray(xm)
    return slope, intercept


def deming(x: Any, y: Any, *, error_ratio: float = 1.0, alpha: float = 0.05) -> RegressionResult:
    """Deming regression with jackknife confidence intervals.

    ``error_ratio`` (lambda) is the ratio of the measurement-error variance of the
    reference method ``x`` to that of the candidate ``y`` (the convention of R
    ``mcr``'s ``error.ratio``); 1 gives orthogonal regression. CIs follow Linnet
    (1993) as implemented in ``mcr``: leave-one-out pseudo-values give a jackknife
    standard error, and the interval is ``estimate +/- t(1 - alpha/2, n - 2) * se``.
    """
    _check_alpha(alpha)
    if (
        not (isinstance(error_ratio, (int, float)) and math.isfinite(error_ratio))
        or error_ratio <= 0
    ):
        raise ValueError(f"error_ratio must be a positive number, got {error_ratio!r}")
    x, y, dropped = paired_arrays(x, y)
    _require_spread(x, "reference")
    _require_spread(y, "candidate")
    n = x.size
    lam = float(error_ratio)
    xm, ym = x.mean(), y.mean()
    dx, dy = x - xm, y - ym
    u, q, p = float(np.sum(dx * dx)), float(np.sum(dy * dy)), float(np.sum(dx * dy))
    if p == 0.0:
        raise ValueError(
            "reference and candidate are uncorrelated (covariance 0); Deming slope is undefined"
        )
    slope, intercept = (float(v) for v in _deming_from_moments(xm, ym, u, q, p, lam))

    # Leave-one-out moments in closed form: removing point i changes the centred sums
    # by n/(n-1) * (deviation products of point i).
    f = n / (n - 1.0)
    xm_i = (n * xm - x) / (n - 1)
    ym_i = (n * ym - y) / (n - 1)
    u_i = u - f * dx * dx
    q_i = q - f * dy * dy
    p_i = p - f * dx * dy
    slope_i, int_i = _deming_from_moments(xm_i, ym_i, u_i, q_i, p_i, lam)

    def jack(est: float, loo: np.ndarray) -> tuple[float, tuple[float, float]]:
        pseudo = n * est - (n - 1) * loo
        se = float(np.std(pseudo, ddof=1) / math.sqrt(n))
        t = float(stats.t.ppf(1 - alpha / 2, n - 2))
        return se, (est - t * se, est + t * se)

    se_b1, slope_ci = jack(slope, slope_i)
    se_b0, int_ci = jack(intercept, int_i)
    return RegressionResult(
        method="deming",
        slope=slope,
        intercept=intercept,
        slope_ci=slope_ci,
        intercept_ci=int_ci,
        n=n,
        ci_method="jackknife (Linnet 1993, t n-2 df, as R mcr)",
        alpha=alpha,
        extra={
            "error_ratio": lam,
            "se_slope": se_b1,
            "se_intercept": se_b0,
            "dropped": dropped,
        },
    )


# ---------------------------------------------------------------- Passing-Bablok


def _pair_blocks(n: int, max_pairs: int = 2_000_000):
    """Yield (i, j) index arrays covering all pairs i < j, in row blocks of bounded size."""
    start = 0
    while start < n - 1:
        stop, count = start, 0
        while stop < n - 1 and (count == 0 or count + (n - 1 - stop) <= max_pairs):
            count += n - 1 - stop
            stop += 1
        rows = np.arange(start, stop)
        lens = n - 1 - rows
        i = np.repeat(rows, lens)
        offs = np.arange(i.size) - np.repeat(np.cumsum(lens) - lens, lens)
        j = i + 1 + offs
        yield i, j
        start = stop


def _pb_slopes(x: np.ndarray, y: np.ndarray, pos_cor: bool) -> tuple[np.ndarray, int, int, int]:
    """Sorted pairwise slopes for Passing-Bablok.

    Returns (sorted slopes without the excluded ones, K offset, count of slopes equal
    to -1 (or +1 for negative correlation), count of undefined 0/0 pairs).
    Equal x with different y gives +inf (or -inf for negative correlation) as in
    Passing & Bablok (1983). Differences within a few ulps of the operands count as
    exact ties.
    """
    eps8 = 8.0 * np.finfo(float).eps
    parts: list[np.ndarray] = []
    n_minus_one = n_identical = 0
    for i, j in _pair_blocks(x.size):
        dx = x[j] - x[i]
        dy = y[j] - y[i]
        tol = eps8 * np.maximum(
            np.maximum(np.abs(x[i]), np.abs(x[j])), np.maximum(np.abs(y[i]), np.abs(y[j]))
        )
        dx[np.abs(dx) <= tol] = 0.0
        dy[np.abs(dy) <= tol] = 0.0
        both_zero = (dx == 0.0) & (dy == 0.0)
        vertical = (dx == 0.0) & ~both_zero
        with np.errstate(divide="ignore", invalid="ignore"):
            sl = dy / dx
        sl[vertical] = np.inf if pos_cor else -np.inf
        # slope exactly -1 (+1 for negative correlation) is excluded (P&B 1983)
        unit = np.abs(dy + dx) <= tol if pos_cor else np.abs(dy - dx) <= tol
        unit &= ~both_zero & ~vertical
        keep = ~both_zero & ~unit
        n_minus_one += int(unit.sum())
        n_identical += int(both_zero.sum())
        parts.append(sl[keep])
    s = np.sort(np.concatenate(parts)) if parts else np.array([])
    k = int(np.sum(s < -1.0)) if pos_cor else -int(np.sum(s > 1.0))
    return s, k, n_minus_one, n_identical


def _shifted_median(s: np.ndarray, k: int) -> float:
    """Median of sorted ``s`` shifted by ``k`` positions (1-based P&B indexing)."""
    n = s.size
    if n == 0:
        return math.nan
    if n % 2 == 1:
        idx = (n + 1) // 2 + k
        return float(s[idx - 1]) if 1 <= idx <= n else math.nan
    lo, hi = n // 2 + k, n // 2 + 1 + k
    if lo < 1 or hi > n:
        return math.nan
    return float(0.5 * (s[lo - 1] + s[hi - 1]))


def passing_bablok(
    x: Any, y: Any, *, alpha: float = 0.05, variant: str = "pb1983"
) -> RegressionResult:
    """Passing-Bablok (1983) regression with its rank-based confidence intervals.

    ``variant="pb1983"`` (default) is the published procedure: the slope is the median
    of all pairwise slopes ``S_ij`` (pairs with slope -1 and identical points excluded;
    equal x gives +inf), shifted by ``K`` = number of slopes below -1. The slope CI
    takes the order statistics ``S_(M1+K)`` and ``S_(M2+K)`` with
    ``C = z(1-alpha/2) sqrt(n(n-1)(2n+5)/18)``, ``M1 = round((N - C)/2)``,
    ``M2 = N - M1 + 1``; intercept = median(y - b x) and its CI =
    [median(y - b_upper x), median(y - b_lower x)]. Differences within a few ulps are
    exact ties, so decimal data with slopes of exactly -1 are handled as in the paper.

    ``variant="mcr"`` reproduces R ``mcr`` (``method.reg="PaBa"``, analytical CI), which
    agrees with Analyse-it/Calanas: slopes are kept as angles, slopes of -1 stay in the
    array with half weight in the offset, the median and the CI bounds
    (``round(N -/+ C + offset)`` on a doubled index) average neighbouring angles, and
    slopes are classified against -1 in floating point (so decimal data can differ
    from ``pb1983`` by one order statistic).

    For a negative Kendall correlation the mirror rule is used (offset from slopes
    above +1, slopes of +1 excluded, equal x gives -inf).
    """
    _check_alpha(alpha)
    if variant not in ("pb1983", "mcr"):
        raise ValueError(f"variant must be 'pb1983' or 'mcr', got {variant!r}")
    x, y, dropped = paired_arrays(x, y)
    _require_spread(x, "reference")
    n = x.size
    if n > PASSING_BABLOK_MAX_N:
        raise ValueError(
            f"Passing-Bablok needs all n(n-1)/2 slopes; n={n} exceeds {PASSING_BABLOK_MAX_N}"
            " (use method='deming' or aggregate into fewer windows)"
        )
    tau = stats.kendalltau(x, y).statistic
    pos_cor = not (np.isfinite(tau) and tau < 0)
    c_gamma = float(stats.norm.ppf(1 - alpha / 2)) * math.sqrt(n * (n - 1) * (2 * n + 5) / 18.0)
    extra: dict[str, Any] = {"C_gamma": c_gamma, "kendall_tau": float(tau), "dropped": dropped}
    if variant == "pb1983":
        s, k, n_minus_one, n_undefined = _pb_slopes(x, y, pos_cor)
        big_n = s.size
        if big_n == 0:
            raise ValueError("no usable pairwise slopes (all points identical)")
        slope = _shifted_median(s, k)
        m1 = int(round_half_away((big_n - c_gamma) / 2.0))
        m2 = big_n - m1 + 1
        lo_idx, hi_idx = m1 + k, m2 + k
        slope_lo = float(s[lo_idx - 1]) if 1 <= lo_idx <= big_n else -math.inf
        slope_hi = float(s[hi_idx - 1]) if 1 <= hi_idx <= big_n else math.inf
        extra.update(
            n_slopes=big_n,
            K=k,
            M1=m1,
            M2=m2,
            slopes_excluded_minus_one=n_minus_one,
            pairs_identical=n_undefined,
        )
        ci_method = "rank-based (Passing & Bablok 1983, K offset, C_gamma)"
        resid = lambda b: y - b * x  # noqa: E731
    else:
        slope, slope_lo, slope_hi, info = _pb_mcr(x, y, pos_cor, c_gamma)
        extra.update(info)
        ci_method = "rank-based (Passing & Bablok 1983 as in R mcr / Analyse-it)"
        resid = lambda b: _mcr_diff(y, b * x)  # noqa: E731
    if not math.isfinite(slope):
        raise ValueError("Passing-Bablok slope is undefined for these data (too many tied slopes)")
    intercept = float(np.median(resid(slope)))
    int_lo = float(np.median(resid(slope_hi))) if math.isfinite(slope_hi) else -math.inf
    int_hi = float(np.median(resid(slope_lo))) if math.isfinite(slope_lo) else math.inf
    return RegressionResult(
        method="passing-bablok",
        slope=float(slope),
        intercept=intercept,
        slope_ci=(float(slope_lo), float(slope_hi)),
        intercept_ci=(int_lo, int_hi),
        n=n,
        ci_method=ci_method,
        alpha=alpha,
        extra=extra,
    )


def _mcr_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a - b`` with mcr's tie rule: 0 when |a - b| < 1e-12 * mean(|a|, |b|)."""
    r = a - b
    return np.where(np.abs(r) < 1e-12 * (np.abs(a) + np.abs(b)) / 2.0, 0.0, r)


def _pb_mcr(
    x: np.ndarray, y: np.ndarray, pos_cor: bool, c_gamma: float
) -> tuple[float, float, float, dict[str, Any]]:
    """Slope and slope CI computed the way R ``mcr::mc.paba`` does (angles, doubled index)."""
    parts: list[np.ndarray] = []
    for i, j in _pair_blocks(x.size):
        dx = _mcr_diff(x[j], x[i])
        dy = _mcr_diff(y[j], y[i])
        ang = np.full(dx.shape, np.nan)
        reg = dx != 0.0
        ang[reg] = np.arctan(dy[reg] / dx[reg])
        ang[(dx == 0.0) & (dy != 0.0)] = math.pi / 2 if pos_cor else -math.pi / 2
        parts.append(ang[~np.isnan(ang)])
    a = np.sort(np.concatenate(parts))
    n_all = a.size
    if n_all == 0:
        raise ValueError("no usable pairwise slopes (all points identical)")
    q = math.pi / 4
    if pos_cor:
        lowest = 2 * int(np.sum(a <= -q) - np.sum(a < -q)) + 1
        offset2 = int(np.sum(a <= -q) + np.sum(a < -q))
    else:
        lowest = 2 * int(np.sum(a >= q) - np.sum(a > q)) + 1
        offset2 = -int(np.sum(a >= q) + np.sum(a > q))

    def pick(idx2: int) -> float:
        half = (idx2 + 1) // 2
        if half < 1 or half + (0 if idx2 % 2 else 1) > n_all:
            return math.nan
        ang_v = a[half - 1] if idx2 % 2 == 1 else 0.5 * (a[half - 1] + a[half])
        return math.tan(ang_v)

    slope = pick(n_all + offset2)
    lo_ind = int(np.rint(n_all - c_gamma + offset2))
    hi_ind = int(np.rint(n_all + c_gamma + offset2))
    slope_lo = -math.inf if lo_ind < lowest else pick(lo_ind)
    slope_hi = math.inf if hi_ind > 2 * n_all - 1 else pick(hi_ind)
    info = {"n_slopes": n_all, "offset2": offset2}
    return slope, slope_lo, slope_hi, info


def round_half_away(v: float) -> float:
    """Round to nearest integer, halves away from zero (as in the 1983 tables)."""
    return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)


@dataclass(frozen=True)
class CusumResult:
    """Passing-Bablok Cusum linearity test: ``statistic`` = max|cusum| / sqrt(L + 1).

    Linearity is rejected when ``statistic`` exceeds ``critical`` (Kolmogorov-Smirnov
    quantile, 1.36 at alpha = 0.05).
    """

    statistic: float
    critical: float
    linear: bool
    n_above: int
    n_below: int
    alpha: float


def pb_cusum_linearity(
    x: Any, y: Any, fit: RegressionResult | None = None, *, alpha: float = 0.05
) -> CusumResult:
    """Cusum test for linearity of a Passing-Bablok fit (Passing & Bablok 1983, sec. 4).

    Points above the line score ``sqrt(L/l)``, below ``-sqrt(l/L)`` (``l`` above,
    ``L`` below), on the line 0; scores are accumulated in the order of the points'
    projections on the fitted line and the largest absolute cusum is compared with
    ``h * sqrt(L + 1)``, ``h`` the Kolmogorov-Smirnov critical value.
    """
    x, y, _ = paired_arrays(x, y)
    if fit is None:
        fit = passing_bablok(x, y, alpha=alpha)
    b, a = fit.slope, fit.intercept
    resid = y - (a + b * x)
    tol = 8.0 * np.finfo(float).eps * np.maximum(np.abs(y), np.abs(a + b * x))
    above = resid > tol
    below = resid < -tol
    n_above, n_below = int(above.sum()), int(below.sum())
    if n_above == 0 or n_below == 0:
        return CusumResult(0.0, _ks_critical(alpha), True, n_above, n_below, alpha)
    score = np.zeros_like(x)
    score[above] = math.sqrt(n_below / n_above)
    score[below] = -math.sqrt(n_above / n_below)
    # distance along the fitted line (projection), P&B 1983 eq. for D_i
    dist = (y + x / b - a) / math.sqrt(1.0 + 1.0 / b**2) if b != 0 else x
    order = np.argsort(dist, kind="stable")
    cusum = np.cumsum(score[order])
    stat = float(np.max(np.abs(cusum)) / math.sqrt(n_below + 1))
    crit = _ks_critical(alpha)
    return CusumResult(stat, crit, stat <= crit, n_above, n_below, alpha)


def _ks_critical(alpha: float) -> float:
    """Asymptotic Kolmogorov-Smirnov critical value (1.358 for alpha = 0.05)."""
    return float(stats.kstwobign.isf(alpha))
