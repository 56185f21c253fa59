"""When a result means less than it seems: the checks behind every ``warnings`` list.

Each check is a pure function of the numbers it judges and returns :class:`Caveat` s (a
stable ``code`` for machines and tests, a one-line ``message`` naming the real channels).
``summary.json`` carries them per entry (``warnings`` / ``warning_codes``), and the
terminal table and the report print them beside the figure they qualify.

The checks: a reference that is modelled or simulated; windows shorter than a meter's
update interval or averaging window (pairs not independent, n overstated); fewer windows
than :data:`MIN_WINDOWS`; a candidate too nearly constant for a gain (its spread within
its resolution); a negative gain, or an intercept below zero beyond its CI; a gain not
distinguishable from zero; a significant proportional bias; accuracy within its binomial
CI of chance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from analysis.numbers import fmt_number

__all__ = ["ALPHA", "MIN_WINDOWS", "NEAR_CONSTANT_CV", "Caveat", "accuracy_check", "bias_caveats",
           "calibration_caveats", "codes", "messages", "near_constant", "reading_step",
           "reference_caveats", "sample_size_caveats", "window_caveats"]

ALPHA = 0.05  # significance level of the tests behind the caveats
MIN_WINDOWS = 10  # fewer window pairs: agreement figures and their CIs are indicative only
NEAR_CONSTANT_CV = 0.01  # a candidate whose window powers vary by less (SD / |mean|) has no usable gain
MATERIAL_SLOPE = 0.01  # a proportional bias under 1% of the level (W per W) is significant but immaterial


@dataclass(frozen=True)
class Caveat:
    """Why a figure should not be trusted as printed: ``code`` (stable), ``message`` (one line)."""

    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def messages(caveats: list[Caveat]) -> list[str]:
    """The ``warnings`` list of an entry."""
    return [c.message for c in caveats]


def codes(caveats: list[Caveat]) -> list[str]:
    """The ``warning_codes`` list of an entry (same order as its ``warnings``)."""
    return [c.code for c in caveats]


def _g(v: float, digits: int = 3) -> str:
    return fmt_number(v, digits, style="g", grouping=False)


# --------------------------------------------------------------------------- the reference
def reference_caveats(ref_id: str, source: str | None, simulated: bool) -> list[Caveat]:
    """A modelled or simulated reference makes every comparison one estimate against another."""
    out = []
    if source and source != "measured":
        out.append(Caveat("modelled_reference",
                          f"the reference {ref_id} is MODELLED ({source}), not measured: agreement is one "
                          "estimate against another, and the energy and CO2 come from a model"))
    if simulated:
        out.append(Caveat("simulated_reference",
                          f"the reference {ref_id} is a SIMULATED meter: the figures show the method, not "
                          "this machine's true power"))
    return out


# --------------------------------------------------------------------------- windows and n
def window_caveats(window_s: float, meters: dict[str, tuple[float, float | None]], n: int) -> list[Caveat]:
    """Windows (s) shorter than a channel's update interval or averaging window (s):
    consecutive windows share readings, so the ``n`` pairs are not independent.

    ``meters``: channel id -> (update interval s, averaging window s or None).
    """
    slow = {cid: max(iv or 0.0, av or 0.0) for cid, (iv, av) in meters.items()}
    too_slow = {cid: s for cid, s in slow.items() if s > window_s * 1.001}
    if not too_slow:
        return []
    worst = max(too_slow.values())
    n_eff = max(1, int(n * window_s / worst)) if n else 0
    names = ", ".join(f"{cid} ({_g(s)} s)" for cid, s in sorted(too_slow.items(), key=lambda kv: -kv[1]))
    return [Caveat("window_shorter_than_meter",
                   f"the {_g(window_s)} s window is shorter than the update interval or averaging window of "
                   f"{names}: consecutive windows share readings, so n = {n} overstates the independent "
                   f"pairs (about {n_eff}) and the CIs are too narrow; use --window {_g(worst)} or longer")]


def sample_size_caveats(n: int, minimum: int = MIN_WINDOWS, what: str = "window pairs",
                        hint: str = "record longer or use a shorter --window") -> list[Caveat]:
    """Fewer than ``minimum`` pairs: the figures and their CIs are indicative only."""
    if n >= minimum:
        return []
    return [Caveat("few_windows", f"only {n} {what} (fewer than {minimum}): bias, limits of agreement and "
                                  f"their CIs are indicative only" + (f"; {hint}" if hint else ""))]


# --------------------------------------------------------------------------- the candidate and its fit
def reading_step(values: Any) -> float:
    """The smallest step (same unit) between distinct finite ``values``: a meter's reading
    resolution as the data show it (0 when fewer than two distinct values)."""
    v = np.unique(np.asarray(values, float)[np.isfinite(np.asarray(values, float))])
    if v.size < 2:
        return 0.0
    return float(np.min(np.diff(v)))


def near_constant(values_w: Any, resolution_w: float = 0.0) -> str | None:
    """Why ``values_w`` (window powers, W) are too nearly constant to fit a gain on: their SD
    is within ``resolution_w`` (W) or below :data:`NEAR_CONSTANT_CV` of their mean; else None."""
    v = np.asarray(values_w, float)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return None
    sd, mean = float(np.std(v, ddof=1)), float(np.mean(v))
    if sd <= resolution_w:
        return f"its spread over the windows (SD {_g(sd)} W) is within its resolution ({_g(resolution_w)} W)"
    if sd < NEAR_CONSTANT_CV * abs(mean) or sd < 1e-9:
        cv = sd / abs(mean) if mean else 0.0
        return f"it varies by only {100 * cv:.2g}% over the windows (SD {_g(sd)} W around {_g(mean)} W)"
    return None


def _excludes_zero(ci: Any) -> bool | None:
    if not ci or any(c is None or not math.isfinite(c) for c in ci):
        return None
    return ci[0] > 0 or ci[1] < 0


def calibration_caveats(cal: dict[str, Any], ref_id: str, cand: str) -> list[Caveat]:
    """Checks on ``ref_id = intercept + slope * cand`` (W): a negative gain, a gain not
    distinguishable from zero, an intercept below zero beyond its CI."""
    out: list[Caveat] = []
    slope, icpt = cal.get("slope"), cal.get("intercept")
    if slope is None:
        return out
    sci, ici = cal.get("slope_ci") or [None, None], cal.get("intercept_ci") or [None, None]
    ci_txt = f" [95% CI {_g(sci[0])}, {_g(sci[1])}]" if None not in sci else ""
    if slope < 0:
        sig = _excludes_zero(sci)
        out.append(Caveat("negative_gain",
                          f"{ref_id} = a + b x {cand} has a negative gain b = {_g(slope)}{ci_txt}"
                          + (" (significant)" if sig else "")
                          + f": {ref_id} falls as {cand} rises, so {cand} does not track this load; "
                            "the calibration is meaningless"))
    elif _excludes_zero(sci) is False:
        out.append(Caveat("gain_not_significant",
                          f"the gain of {ref_id} on {cand} (b = {_g(slope)}{ci_txt}) is not distinguishable "
                          f"from zero: {cand} explains none of {ref_id}'s changes here; the load must vary more"))
    if icpt is not None and icpt < 0 and ici[1] is not None and ici[1] < 0:
        out.append(Caveat("negative_intercept",
                          f"{ref_id} = a + b x {cand} has an intercept a = {_g(icpt)} W below zero beyond its "
                          f"CI [{_g(ici[0])}, {_g(ici[1])}] W: {ref_id} would draw less than nothing when "
                          f"{cand} reads 0; the fit extrapolates a scaled, partial view (gain {_g(slope)})"))
    return out


def bias_caveats(stats_dict: dict[str, Any], cand: str, alpha: float = ALPHA, unit: str = "W") -> list[Caveat]:
    """A proportional bias (the difference changes with the level, p < ``alpha``, by at least
    :data:`MATERIAL_SLOPE` per unit of level) makes one bias and one pair of limits
    misdescribe the agreement."""
    ba = stats_dict.get("bland_altman") or {}
    prop = ba.get("proportional_bias") or {}
    p, slope = prop.get("p_value"), prop.get("slope")
    if p is None or slope is None or not p < alpha or abs(slope) < MATERIAL_SLOPE:
        return []
    ratio = ba.get("ratio") or {}
    gmr = ratio.get("gmr")
    hint = (f"; the ratio {cand}/reference (geometric mean {_g(gmr)}) describes it better"
            if gmr is not None else "; a calibration describes it better than one bias")
    return [Caveat("proportional_bias",
                   f"{cand}: significant proportional bias (the difference changes by {_g(slope)}"
                   f"{' ' + unit if unit else ''} per {unit or 'unit'} of level, p = {_g(p, 2)}): one bias and one pair of limits of agreement misdescribe it"
                   + hint)]


# --------------------------------------------------------------------------- accuracy
def accuracy_check(accuracy: float | None, num_classes: Any, n_val: Any, alpha: float = ALPHA
                   ) -> tuple[dict[str, Any], list[Caveat]]:
    """Is ``accuracy`` (0..1, over ``n_val`` validation samples) above chance (1 / ``num_classes``)?

    Returns ({chance, ci, ci_method, n}, caveats): the Wilson CI of the accuracy, and a
    caveat when chance is inside it (the model has not learned; accuracy per kWh means
    nothing).  Without a class count or sample count: no test (empty dict, no caveat).
    """
    try:
        k, n = int(num_classes), int(n_val)
    except (TypeError, ValueError):
        return {}, []
    if accuracy is None or not math.isfinite(accuracy) or not 0 <= accuracy <= 1 or k < 2 or n < 1:
        return {}, []
    chance = 1.0 / k
    hits = int(round(accuracy * n))
    ci = stats.binomtest(hits, n).proportion_ci(confidence_level=1 - alpha, method="wilson")
    info = {"chance": chance, "ci": [float(ci.low), float(ci.high)], "ci_method": "Wilson", "n": n}
    if ci.low <= chance:
        return info, [Caveat("accuracy_at_chance",
                             f"accuracy {accuracy:.3f} is within its 95% CI [{ci.low:.3f}, {ci.high:.3f}] "
                             f"(over {n} validation samples) of chance (1/{k} = {chance:.3f}): the model has "
                             "not learned, and accuracy per kWh means nothing")]
    return info, []
