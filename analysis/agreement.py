"""Agreement between a candidate meter and a reference: one entry point.

:func:`agreement` returns the DESIGN contract dictionary used by ``calibrate agree``
and by session reports (difference = ``candidate - reference``, plain Python floats,
``None`` where a value is undefined or infinite); :func:`agreement_table` gives the
same numbers as a tidy :class:`pandas.DataFrame` for terminals.

Also here: Lin's concordance correlation coefficient (Lin 1989) and Pearson's r
with Fisher-z confidence intervals, and MAPE.

References
----------
- Lin L.I. (1989) A concordance correlation coefficient to evaluate reproducibility.
  Biometrics 45:255-268 (estimator with 1/n moments; CI via Z = atanh(rho_c)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.bland_altman import (
    LOA_CI_METHODS,
    BlandAltmanResult,
    bland_altman,
    bland_altman_ratio,
    bland_altman_repeated,
    proportional_bias,
)
from analysis.numbers import finite_or_none
from analysis.regression import (
    CusumResult,
    RegressionResult,
    deming,
    ols,
    paired_arrays,
    passing_bablok,
    pb_cusum_linearity,
)
from analysis.session_format import json_safe

__all__ = [
    "REGRESSION_METHODS",
    "Agreement",
    "agreement",
    "compare",
    "agreement_table",
    "lin_ccc",
    "pearson_r",
    "mape_pct",
    "regression",
]

REGRESSION_METHODS = ("ols", "deming", "passing-bablok")
_METHOD_ALIASES = {
    "ols": "ols",
    "linear": "ols",
    "deming": "deming",
    "passing-bablok": "passing-bablok",
    "passing_bablok": "passing-bablok",
    "passingbablok": "passing-bablok",
    "pb": "passing-bablok",
    "paba": "passing-bablok",
}


def _pair(t: Any) -> list[float | None]:
    return [finite_or_none(t[0]), finite_or_none(t[1])]


# ---------------------------------------------------------------- correlations


def lin_ccc(reference: Any, candidate: Any, *, alpha: float = 0.05) -> dict[str, Any]:
    """Lin's concordance correlation coefficient with its Z-transform CI (Lin 1989).

    ``rho_c = 2 s_xy / (s_x^2 + s_y^2 + (mean_x - mean_y)^2)`` with 1/n moments;
    ``Z = atanh(rho_c)`` has variance (Lin 1989, eq. for sigma_Z^2)
    ``[(1-r^2) rho_c^2 / ((1-rho_c^2) r^2) + 2 rho_c^3 (1-rho_c) u^2 / (r (1-rho_c^2)^2)
    - rho_c^4 u^4 / (2 r^2 (1-rho_c^2)^2)] / (n - 2)``, ``u = (mean_x - mean_y)/sqrt(s_x s_y)``.
    Returns value, ci, r (Pearson), bias correction factor ``C_b = rho_c / r`` and se_z.
    """
    x, y, _ = paired_arrays(reference, candidate)
    n = x.size
    mx, my = x.mean(), y.mean()
    sxx = float(np.mean((x - mx) ** 2))
    syy = float(np.mean((y - my) ** 2))
    sxy = float(np.mean((x - mx) * (y - my)))
    denom = sxx + syy + (mx - my) ** 2
    if denom == 0.0:
        raise ValueError("reference and candidate are identical constants; CCC is undefined")
    rc = 2.0 * sxy / denom
    if sxx == 0.0 or syy == 0.0:
        return {
            "value": rc,
            "ci": (math.nan, math.nan),
            "r": math.nan,
            "c_b": math.nan,
            "se_z": math.nan,
        }
    sd_prod = math.sqrt(sxx) * math.sqrt(syy)  # not sqrt(sxx * syy): that product underflows to 0
    if sd_prod == 0.0 or not math.isfinite(sd_prod):
        return {"value": rc, "ci": (math.nan, math.nan), "r": math.nan, "c_b": math.nan, "se_z": math.nan}
    r = max(-1.0, min(1.0, sxy / sd_prod))
    u = (mx - my) / math.sqrt(sd_prod)
    if abs(rc) >= 1.0 or r == 0.0 or n <= 2:
        return {"value": rc, "ci": (rc, rc), "r": r, "c_b": rc / r if r else math.nan, "se_z": 0.0}
    one = 1.0 - rc**2
    var_z = (
        (1 - r**2) * rc**2 / (one * r**2)
        + 2 * rc**3 * (1 - rc) * u**2 / (r * one**2)
        - rc**4 * u**4 / (2 * r**2 * one**2)
    ) / (n - 2)
    se_z = math.sqrt(max(var_z, 0.0))
    z = math.atanh(rc)
    q = float(stats.norm.ppf(1 - alpha / 2))
    return {
        "value": rc,
        "ci": (math.tanh(z - q * se_z), math.tanh(z + q * se_z)),
        "r": r,
        "c_b": rc / r,
        "se_z": se_z,
    }


def pearson_r(reference: Any, candidate: Any, *, alpha: float = 0.05) -> dict[str, Any]:
    """Pearson correlation with Fisher-z CI (``atanh(r) +/- z / sqrt(n - 3)``) and p-value."""
    x, y, _ = paired_arrays(reference, candidate)
    n = x.size
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        raise ValueError("a constant series has no correlation; Pearson r is undefined")
    res = stats.pearsonr(x, y)
    r = float(res.statistic)
    if n > 3 and abs(r) < 1.0:
        q = float(stats.norm.ppf(1 - alpha / 2))
        z = math.atanh(r)
        ci = (math.tanh(z - q / math.sqrt(n - 3)), math.tanh(z + q / math.sqrt(n - 3)))
    else:
        ci = (r, r) if abs(r) == 1.0 else (math.nan, math.nan)
    return {"value": r, "ci": ci, "p_value": float(res.pvalue)}


def mape_pct(reference: Any, candidate: Any) -> dict[str, Any]:
    """Mean absolute percentage error, ``100 * mean(|candidate - reference| / |reference|)`` (%).

    Pairs with a reference of exactly 0 are left out (counted in ``excluded_zero``).
    """
    x, y, _ = paired_arrays(reference, candidate, min_n=1)
    nz = x != 0.0
    if not np.any(nz):
        return {"value": math.nan, "n": 0, "excluded_zero": int(x.size)}
    return {
        "value": float(100.0 * np.mean(np.abs(y[nz] - x[nz]) / np.abs(x[nz]))),
        "n": int(nz.sum()),
        "excluded_zero": int((~nz).sum()),
    }


def regression(
    reference: Any, candidate: Any, method: str = "ols", *, alpha: float = 0.05, **kw: Any
) -> RegressionResult:
    """Dispatch to :func:`ols`, :func:`deming` (``error_ratio``) or :func:`passing_bablok` (``variant``)."""
    m = _METHOD_ALIASES.get(str(method).lower())
    if m is None:
        raise ValueError(
            f"unknown regression method {method!r}; use one of {', '.join(REGRESSION_METHODS)}"
        )
    if m == "ols":
        return ols(reference, candidate, alpha=alpha)
    if m == "deming":
        return deming(
            reference, candidate, alpha=alpha, error_ratio=float(kw.get("error_ratio", 1.0))
        )
    return passing_bablok(reference, candidate, alpha=alpha, variant=kw.get("variant", "pb1983"))


# ------------------------------------------------------------------ entry point


def _ba_dict(ba: BlandAltmanResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "n": ba.n,
        "bias": finite_or_none(ba.bias),
        "sd": finite_or_none(ba.sd),
        "loa_low": finite_or_none(ba.loa_low),
        "loa_high": finite_or_none(ba.loa_high),
        "bias_ci": _pair(ba.bias_ci),
        "loa_low_ci": _pair(ba.loa_low_ci),
        "loa_high_ci": _pair(ba.loa_high_ci),
        "k": finite_or_none(ba.k),
        "alpha": finite_or_none(ba.alpha),
        "difference": "candidate - reference",
        "bias_ci_method": ba.bias_ci_method,
        "loa_ci_method": ba.loa_ci_method,
    }
    out.update(json_safe(ba.extra))
    return out


@dataclass(frozen=True)
class Agreement:
    """The agreement of a candidate with a reference, in the unit of the data (W, J, ...).

    Differences are ``candidate - reference``.  ``to_dict()`` gives the DESIGN contract's
    keys (``bland_altman``, ``regression``, ``ccc``, ...; plain floats, None for NaN/inf),
    ``to_frame()`` one tidy row per statistic.
    """

    n: int
    dropped: int
    bland_altman: BlandAltmanResult
    proportional_bias: dict[str, Any] | None  # None when Bland-Altman carries its own
    ratio: dict[str, Any] | None
    ratio_unavailable: str | None
    regression: RegressionResult
    cusum: CusumResult | None  # Passing-Bablok only
    ccc: dict[str, Any]
    pearson: dict[str, Any]
    mape: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The DESIGN contract dictionary (``calibrate agree --json``, ``summary.json``)."""
        ba_d = _ba_dict(self.bland_altman)
        ba_d["dropped"] = self.dropped
        if "proportional_bias" not in ba_d:
            ba_d["proportional_bias"] = json_safe(self.proportional_bias)
        if self.ratio_unavailable is None:
            ba_d["ratio"] = json_safe(self.ratio)
        else:
            ba_d["ratio"] = None
            ba_d["ratio_unavailable"] = self.ratio_unavailable
        reg = self.regression
        reg_d: dict[str, Any] = {
            "method": reg.method,
            "slope": finite_or_none(reg.slope),
            "intercept": finite_or_none(reg.intercept),
            "slope_ci": _pair(reg.slope_ci),
            "intercept_ci": _pair(reg.intercept_ci),
            "ci_method": reg.ci_method,
            "n": reg.n,
            "alpha": finite_or_none(reg.alpha),
        }
        reg_d.update(json_safe({k2: v for k2, v in reg.extra.items() if k2 != "dropped"}))
        if self.cusum is not None:
            cus = self.cusum
            reg_d["cusum_linearity"] = json_safe(
                {"statistic": cus.statistic, "critical": cus.critical, "linear": cus.linear}
            )
        return {
            "n": self.n,
            "dropped": self.dropped,
            "difference": "candidate - reference",
            "bland_altman": ba_d,
            "regression": reg_d,
            "ccc": {
                "value": finite_or_none(self.ccc["value"]),
                "ci": _pair(self.ccc["ci"]),
                "ci_method": "Lin 1989 Z-transform",
            },
            "pearson_r": finite_or_none(self.pearson["value"]),
            "pearson_r_ci": _pair(self.pearson["ci"]),
            "mape_pct": finite_or_none(self.mape["value"]),
            "mape_excluded_zero_reference": self.mape["excluded_zero"],
        }

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: one row per statistic; columns ``section``, ``statistic``, ``value``,
        ``ci_low``, ``ci_high``, ``method``."""
        return _frame(self.to_dict())


def compare(
    reference: Any,
    candidate: Any,
    method: str = "ols",
    subjects: Any = None,
    **kw: Any,
) -> Agreement:
    """Agreement statistics of ``candidate`` against ``reference`` (the DESIGN contract).

    Parameters
    ----------
    reference, candidate
        Paired measurements in the same unit (e.g. J per window, or W). Pairs with a
        NaN/inf in either are dropped (``dropped`` says how many).
    method
        Regression: ``"ols"``, ``"deming"`` (``error_ratio=``, default 1) or
        ``"passing-bablok"`` (``variant="pb1983"|"mcr"``).
    subjects
        Optional subject/run id per pair: Bland-Altman then uses the repeated-pairs
        method (Bland & Altman 2007); regression and CCC use all pairs.
    **kw
        ``alpha`` (0.05), ``k`` (LoA multiplier, 1.96), ``loa_ci`` (one of
        ``LOA_CI_METHODS``, default ``"carkeet-2015"``), ``error_ratio`` (alias
        ``deming_ratio``: variance of the reference's measurement error over the
        candidate's, as R mcr), ``variant``.

    Returns
    -------
    An :class:`Agreement`; its ``to_dict()`` is a dict with ``n``, ``dropped``, ``bland_altman`` {n, bias, sd, loa_low, loa_high,
    bias_ci, loa_low_ci, loa_high_ci, ... method names, proportional_bias, ratio},
    ``regression`` {method, slope, intercept, slope_ci, intercept_ci, ci_method, ...},
    ``ccc`` {value, ci}, ``pearson_r``, ``pearson_r_ci``, ``mape_pct``.
    Raises ValueError (one line) on fewer than 3 pairs, mismatched lengths or
    constant data.
    """
    alpha = float(kw.pop("alpha", 0.05))
    k = float(kw.pop("k", 1.96))
    loa_ci = str(kw.pop("loa_ci", "carkeet-2015"))
    error_ratio = kw.pop("error_ratio", None)
    deming_ratio = kw.pop("deming_ratio", None)  # alias used by the CLI
    if error_ratio is None:
        error_ratio = 1.0 if deming_ratio is None else deming_ratio
    variant = kw.pop("variant", "pb1983")
    if kw:
        raise ValueError(f"unknown option(s) for agreement(): {', '.join(sorted(kw))}")
    if loa_ci not in LOA_CI_METHODS:
        raise ValueError(f"loa_ci must be one of {', '.join(LOA_CI_METHODS)}; got {loa_ci!r}")

    ref = np.asarray(reference, dtype=float).ravel()
    cand = np.asarray(candidate, dtype=float).ravel()
    if ref.size != cand.size:
        raise ValueError(
            f"reference and candidate must have the same length (got {ref.size} and {cand.size})"
        )
    subj = None
    if subjects is not None:
        subj = np.asarray(subjects).ravel()
        if subj.size != ref.size:
            raise ValueError(
                f"subjects must have one id per pair (got {subj.size} for {ref.size} pairs)"
            )
    ok = np.isfinite(ref) & np.isfinite(cand)
    dropped = int(ref.size - ok.sum())
    ref, cand = ref[ok], cand[ok]
    if subj is not None:
        subj = subj[ok]
    if ref.size < 3:
        raise ValueError(
            f"need at least 3 complete pairs, got {ref.size} ({dropped} dropped for NaN/inf)"
        )
    if np.ptp(ref) == 0:
        raise ValueError("reference values are all equal; regression and correlation are undefined")
    if np.ptp(cand) == 0:
        raise ValueError("candidate values are all equal; regression and correlation are undefined")
    for what, v in (("reference", ref), ("candidate", cand)):
        var = float(np.var(v))
        if var == 0.0:  # e.g. denormal values (~1e-320): their spread underflows to 0
            raise ValueError(f"{what} values have no spread that floating point can represent (values of "
                             f"~{float(np.max(np.abs(v))):.3g}); regression and correlation are undefined: rescale them")
        if not math.isfinite(var):
            raise ValueError(f"{what} values are too large for their spread to be computed (values of "
                             f"~{float(np.max(np.abs(v))):.3g}); rescale them")

    # Bland-Altman
    rep_subjects = subj if subj is not None and np.unique(subj).size < ref.size else None
    if rep_subjects is not None:
        ba = bland_altman_repeated(ref, cand, rep_subjects, k=k, alpha=alpha)
    else:
        ba = bland_altman(ref, cand, k=k, alpha=alpha, loa_ci=loa_ci)
    prop = None if "proportional_bias" in ba.extra else proportional_bias(ref, cand)
    ratio: dict[str, Any] | None = None
    ratio_unavailable = None
    try:
        ratio = bland_altman_ratio(ref, cand, k=k, alpha=alpha, loa_ci=loa_ci, subjects=rep_subjects)
    except ValueError as exc:
        ratio_unavailable = str(exc)

    # Regression
    reg = regression(ref, cand, method, alpha=alpha, error_ratio=error_ratio, variant=variant)
    cusum = pb_cusum_linearity(ref, cand, reg, alpha=alpha) if reg.method == "passing-bablok" else None
    return Agreement(n=int(ref.size), dropped=dropped, bland_altman=ba, proportional_bias=prop, ratio=ratio,
                     ratio_unavailable=ratio_unavailable, regression=reg, cusum=cusum,
                     ccc=lin_ccc(ref, cand, alpha=alpha), pearson=pearson_r(ref, cand, alpha=alpha),
                     mape=mape_pct(ref, cand))


def agreement(
    reference: Any,
    candidate: Any,
    method: str = "ols",
    subjects: Any = None,
    **kw: Any,
) -> dict[str, Any]:
    """:func:`compare` as the DESIGN contract dictionary (``compare(...).to_dict()``)."""
    return compare(reference, candidate, method=method, subjects=subjects, **kw).to_dict()


def agreement_table(
    reference: Any,
    candidate: Any,
    method: str = "ols",
    subjects: Any = None,
    **kw: Any,
) -> pd.DataFrame:
    """Tidy table of :func:`agreement`: one row per statistic.

    Columns: ``section``, ``statistic``, ``value``, ``ci_low``, ``ci_high``, ``method``.
    """
    return compare(reference, candidate, method=method, subjects=subjects, **kw).to_frame()


def _frame(res: dict[str, Any]) -> pd.DataFrame:
    """The tidy table of a contract dictionary (see :meth:`Agreement.to_frame`)."""
    ba, reg, ccc = res["bland_altman"], res["regression"], res["ccc"]
    rows: list[dict[str, Any]] = []

    def add(section: str, stat: str, value: Any, ci: Any = None, how: str = "") -> None:
        lo, hi = ci if ci is not None else [None, None]
        rows.append(
            {
                "section": section,
                "statistic": stat,
                "value": value,
                "ci_low": lo,
                "ci_high": hi,
                "method": how,
            }
        )

    add("data", "n", res["n"])
    add("data", "dropped (NaN)", res["dropped"])
    add(
        "bland_altman",
        "bias (candidate - reference)",
        ba["bias"],
        ba["bias_ci"],
        ba["bias_ci_method"],
    )
    add("bland_altman", "sd of differences", ba["sd"])
    add("bland_altman", "loa_low", ba["loa_low"], ba["loa_low_ci"], ba["loa_ci_method"])
    add("bland_altman", "loa_high", ba["loa_high"], ba["loa_high_ci"], ba["loa_ci_method"])
    pb = ba.get("proportional_bias")
    if pb:
        add(
            "bland_altman",
            "proportional bias slope",
            pb["slope"],
            None,
            f"difference on mean, p={pb['p_value']:.3g}",
        )
    ratio = ba.get("ratio")
    if ratio:
        add("bland_altman", "geometric mean ratio", ratio["gmr"], ratio["gmr_ci"], "log scale")
        add(
            "bland_altman",
            "ratio loa_low",
            ratio["ratio_loa_low"],
            ratio["ratio_loa_low_ci"],
            ratio["loa_ci_method"],
        )
        add(
            "bland_altman",
            "ratio loa_high",
            ratio["ratio_loa_high"],
            ratio["ratio_loa_high_ci"],
            ratio["loa_ci_method"],
        )
    add(
        "regression", "slope", reg["slope"], reg["slope_ci"], f"{reg['method']}; {reg['ci_method']}"
    )
    add(
        "regression",
        "intercept",
        reg["intercept"],
        reg["intercept_ci"],
        f"{reg['method']}; {reg['ci_method']}",
    )
    add("correlation", "ccc (Lin)", ccc["value"], ccc["ci"], ccc["ci_method"])
    add("correlation", "pearson r", res["pearson_r"], res["pearson_r_ci"], "Fisher z")
    add("error", "mape (%)", res["mape_pct"])
    return pd.DataFrame(
        rows, columns=["section", "statistic", "value", "ci_low", "ci_high", "method"]
    )
