"""Fleet calibration: calibrate k nodes of a node type against a wall meter, then predict
the energy of that type's unmetered nodes from their BMC/exporter readings.

The model is a random-coefficients one: every node ``i`` of a type has its own line
``wall = a_i + b_i * candidate`` (W), and the lines of a type's nodes scatter around the
type's.  A calibrated node gives its line by OLS on window mean powers
(:func:`calibrate_node`).  For a job on an *unmetered* node with candidate readings
``x_t`` (W) over windows ``dt_t`` (s), each calibrated node predicts
``E_i = a_i * T + b_i * E_x`` (J).  The prediction is their mean, and the interval is
a Student-t prediction interval for a new member of the type:

    var = s_E^2 * (1 + 1/k) + mean_i(sigma_i^2) * sum(dt^2)

* ``s_E^2`` is the sample variance of the ``E_i``: node-to-node spread, with each line's
  own estimation noise inside it (conservative);
* ``sigma_i`` is node ``i``'s residual SD (W): the job's own window-to-window noise;
* the quantile is ``t(k-1)``.

With k = 1 node-to-node spread is unknown.  Then no interval is given, only a caveat: one
node's fit says nothing of how its neighbours differ.

Two checks say when a prediction means little:

* **out of range**: the job's candidate readings leave the calibrated range (the union
  of the calibrated nodes' window powers), so the lines are extrapolated;
* **unlike its type**: the node's low readings (5th percentile, W) fall outside the
  t prediction interval of the calibrated nodes' own 5th percentiles.  The node idles
  unlike its type (other hardware, a faulty BMC, a doubled reading).

How many nodes to measure follows the EEHPC WG power measurement methodology
(:func:`eehpc_sample`).  Level 1: the largest of 2 kW, 10 % of the compute nodes or
15 nodes (the whole machine if smaller).  Level 2: the greater of 1/8 of the compute nodes
or 10 kW.  Level 3: all of them.  At least one node of every type is always measured
(EEHPCWG/PowerMeasurementMethodology, text/checklist.tex; older versions said 1/64 or
1 kW for Level 1).  :func:`nodes_needed` adds the statistical answer: how many
calibrated nodes bring the interval under a target width, given the spread seen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.caveats import MIN_WINDOWS, Caveat, codes, messages
from analysis.regression import ols_design, paired_arrays

__all__ = ["FleetModel", "FleetPrediction", "NodeCalibration", "SampleRule", "calibrate_node",
           "eehpc_sample", "fit_fleet", "nodes_needed", "predict_energy"]

LOW_QUANTILE = 0.05  # the "idle-like" feature compared between nodes
RANGE_SLACK = 0.05  # a job may leave the calibrated range by this fraction of its width
OUT_OF_RANGE_FRACTION = 0.05  # more of its windows than this outside: out of range


@dataclass(frozen=True)
class NodeCalibration:
    """One calibrated node: its line ``wall = intercept_w + slope * candidate`` (W), the
    line's covariance, residual SD (W), window count, and the candidate's range (W)."""

    node: str
    intercept_w: float
    slope: float
    cov: tuple[tuple[float, float], tuple[float, float]]
    residual_sd_w: float
    n: int
    candidate_min_w: float
    candidate_max_w: float
    candidate_low_w: float  # the LOW_QUANTILE of its candidate windows (W)
    caveats: tuple[Caveat, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "intercept_w": self.intercept_w, "slope": self.slope,
                "cov": [list(r) for r in self.cov], "residual_sd_w": self.residual_sd_w, "n": self.n,
                "candidate_range_w": [self.candidate_min_w, self.candidate_max_w],
                "candidate_low_w": self.candidate_low_w,
                "warnings": messages(list(self.caveats)), "warning_codes": codes(list(self.caveats))}


def calibrate_node(node: str, candidate_w: Any, reference_w: Any) -> NodeCalibration:
    """OLS line of one node's window mean powers: reference (wall, W) on candidate (W).
    Raises ValueError for fewer than 3 usable pairs or a candidate with no spread."""
    try:
        x, y, _ = paired_arrays(candidate_w, reference_w, min_n=3)
    except ValueError as exc:
        raise ValueError(f"{node}: {exc}") from None
    if float(np.ptp(x)) <= 1e-9 * max(1.0, float(np.max(np.abs(x)))):
        raise ValueError(f"{node}: the candidate is constant ({x[0]:g} W): no line can be fitted; "
                         "calibrate over a load that varies (idle and busy phases)")
    fit = ols_design(np.column_stack([np.ones_like(x), x]), y)
    caveats: list[Caveat] = []
    if len(x) < MIN_WINDOWS:
        caveats.append(Caveat("few_windows", f"{node}: only {len(x)} window pairs (< {MIN_WINDOWS}); "
                                             "its line is indicative only"))
    cv = float(np.std(x) / abs(np.mean(x))) if np.mean(x) else math.inf
    if cv < 0.02:
        caveats.append(Caveat("narrow_range", f"{node}: the candidate varied by {cv:.1%} only; "
                                              "the slope rests on a narrow range"))
    c = fit.cov
    return NodeCalibration(node, float(fit.beta[0]), float(fit.beta[1]),
                           ((float(c[0, 0]), float(c[0, 1])), (float(c[1, 0]), float(c[1, 1]))),
                           fit.residual_sd, len(x), float(x.min()), float(x.max()),
                           float(np.quantile(x, LOW_QUANTILE)), tuple(caveats))


@dataclass(frozen=True)
class FleetModel:
    """The calibrated nodes of one node type (see module doc)."""

    node_type: str
    nodes: tuple[NodeCalibration, ...]
    nodes_total: int | None = None  # how many nodes of this type the fleet has
    caveats: tuple[Caveat, ...] = ()

    @property
    def k(self) -> int:
        return len(self.nodes)

    @property
    def candidate_range_w(self) -> tuple[float, float]:
        return (min(n.candidate_min_w for n in self.nodes), max(n.candidate_max_w for n in self.nodes))

    def slope_spread(self) -> dict[str, float | None]:
        """Mean and SD over nodes of the slope and of the intercept (W)."""
        b = np.array([n.slope for n in self.nodes])
        a = np.array([n.intercept_w for n in self.nodes])
        def sd(v: np.ndarray) -> float | None:
            return float(np.std(v, ddof=1)) if len(v) > 1 else None

        return {"slope_mean": float(b.mean()), "slope_sd": sd(b),
                "intercept_mean_w": float(a.mean()), "intercept_sd_w": sd(a)}

    def to_dict(self) -> dict[str, Any]:
        lo, hi = self.candidate_range_w
        return {"node_type": self.node_type, "k": self.k, "nodes_total": self.nodes_total,
                "fraction_measured": (self.k / self.nodes_total) if self.nodes_total else None,
                "candidate_range_w": [lo, hi], **self.slope_spread(),
                "nodes": [n.to_dict() for n in self.nodes],
                "warnings": messages(list(self.caveats)), "warning_codes": codes(list(self.caveats))}

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{k: v for k, v in n.to_dict().items() if k not in ("cov", "warnings", "warning_codes")}
                             for n in self.nodes])


def fit_fleet(node_type: str, calibrations: Sequence[NodeCalibration], nodes_total: int | None = None) -> FleetModel:
    """The model of one node type from its calibrated nodes (at least one; names unique)."""
    cals = tuple(calibrations)
    if not cals:
        raise ValueError(f"{node_type}: no calibrated node")
    names = [c.node for c in cals]
    if len(set(names)) != len(names):
        raise ValueError(f"{node_type}: a node is calibrated twice")
    if nodes_total is not None and nodes_total < len(cals):
        raise ValueError(f"{node_type}: nodes_total={nodes_total} but {len(cals)} nodes are calibrated")
    caveats = []
    if len(cals) == 1:
        caveats.append(Caveat("one_node", f"{node_type}: one calibrated node; node-to-node variation is unknown, "
                                          "so predictions for other nodes carry no interval"))
    elif len(cals) < 4:
        caveats.append(Caveat("few_nodes", f"{node_type}: {len(cals)} calibrated nodes; the t({len(cals) - 1}) "
                                           "intervals are wide and rest on a normal spread of nodes"))
    return FleetModel(node_type, cals, nodes_total, tuple(caveats))


@dataclass(frozen=True)
class FleetPrediction:
    """A predicted wall energy (J) of one unmetered node over one job, with its prediction
    interval (J; None with one calibrated node) and the checks of the module doc."""

    node: str
    node_type: str
    energy_j: float
    lo_j: float | None
    hi_j: float | None
    level: float
    duration_s: float
    candidate_energy_j: float
    per_node_j: dict[str, float]
    out_of_range_fraction: float
    unlike_type: bool
    caveats: tuple[Caveat, ...] = field(default=())

    @property
    def half_width_fraction(self) -> float | None:
        """Half the interval's width relative to the estimate (a fraction), or None."""
        if self.lo_j is None or self.hi_j is None or not self.energy_j:
            return None
        return (self.hi_j - self.lo_j) / 2 / abs(self.energy_j)

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "node_type": self.node_type, "energy_j": self.energy_j,
                "interval_j": None if self.lo_j is None else [self.lo_j, self.hi_j], "level": self.level,
                "half_width_fraction": self.half_width_fraction, "duration_s": self.duration_s,
                "candidate_energy_j": self.candidate_energy_j, "per_calibrated_node_j": self.per_node_j,
                "out_of_range_fraction": self.out_of_range_fraction, "unlike_type": self.unlike_type,
                "warnings": messages(list(self.caveats)), "warning_codes": codes(list(self.caveats))}


def predict_energy(model: FleetModel, node: str, candidate_w: Any, dt_s: Any, level: float = 0.95) -> FleetPrediction:
    """Predict the wall energy (J) of unmetered ``node`` over a job from its candidate
    readings ``candidate_w`` (W), each covering ``dt_s`` s (an array or one number)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    x = np.asarray(candidate_w, dtype=float)
    dt = np.broadcast_to(np.asarray(dt_s, dtype=float), x.shape)
    ok = np.isfinite(x) & np.isfinite(dt) & (dt > 0)
    x, dt = x[ok], dt[ok]
    if len(x) == 0:
        raise ValueError(f"{node}: no usable candidate readings")
    T, ex = float(dt.sum()), float((x * dt).sum())
    per = {n.node: n.intercept_w * T + n.slope * ex for n in model.nodes}
    e = np.array(list(per.values()))
    k = model.k
    est = float(e.mean())
    caveats: list[Caveat] = list(model.caveats)
    lo = hi = None
    tq = float(stats.t.ppf(0.5 + level / 2, k - 1)) if k >= 2 else math.nan
    if k >= 2:
        noise = float(np.mean([n.residual_sd_w ** 2 for n in model.nodes])) * float((dt ** 2).sum())
        var = float(np.var(e, ddof=1)) * (1 + 1 / k) + noise
        half = tq * math.sqrt(var)
        lo, hi = est - half, est + half
    rlo, rhi = model.candidate_range_w
    slack = RANGE_SLACK * (rhi - rlo)
    outside = float(np.mean((x < rlo - slack) | (x > rhi + slack)))
    if outside > OUT_OF_RANGE_FRACTION:
        caveats.append(Caveat("out_of_range", f"{node}: {outside:.0%} of its readings lie outside the calibrated "
                                              f"range {rlo:.4g}..{rhi:.4g} W; the prediction extrapolates"))
    unlike = False
    if k >= 2:
        lows = np.array([n.candidate_low_w for n in model.nodes])
        low = float(np.quantile(x, LOW_QUANTILE))
        sd = float(np.std(lows, ddof=1))
        # a floor on the spread: nodes calibrated with identical lows would flag every node
        sd = max(sd, 0.01 * abs(float(lows.mean())), 1e-9)
        if abs(low - float(lows.mean())) > tq * sd * math.sqrt(1 + 1 / k):
            unlike = True
            caveats.append(Caveat("unlike_type", f"{node}: its low readings ({low:.4g} W) are unlike the calibrated "
                                                 f"{model.node_type} nodes' ({lows.mean():.4g} +- {sd:.2g} W); "
                                                 "check its hardware and meter before trusting this prediction"))
    return FleetPrediction(node, model.node_type, est, lo, hi, level, T, ex, per, outside, unlike, tuple(caveats))


@dataclass(frozen=True)
class SampleRule:
    """How many nodes of a type a measurement level asks for, and the rule that set it."""

    level: int
    nodes: int
    rule: str

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "nodes": self.nodes, "rule": self.rule}


def eehpc_sample(nodes_total: int, node_power_w: float, level: int = 1) -> SampleRule:
    """The EEHPC WG machine fraction for ``nodes_total`` nodes of ``node_power_w`` W each
    (see module doc), at least one node."""
    if nodes_total < 1 or not (math.isfinite(node_power_w) and node_power_w > 0):
        raise ValueError("nodes_total must be >= 1 and node_power_w a positive number of W")
    if level == 3:
        return SampleRule(3, nodes_total, "level 3: the whole machine")
    if level == 2:
        need = max(math.ceil(nodes_total / 8), math.ceil(10_000 / node_power_w))
        rule = "level 2: the greater of 1/8 of the compute nodes or 10 kW"
    elif level == 1:
        need = max(math.ceil(2_000 / node_power_w), math.ceil(0.10 * nodes_total), 15)
        rule = "level 1: the largest of 2 kW, 10% of the compute nodes or 15 nodes"
    else:
        raise ValueError(f"level must be 1, 2 or 3, got {level}")
    if need >= nodes_total:
        return SampleRule(level, nodes_total, rule + " (the whole type: it is smaller)")
    return SampleRule(level, max(1, need), rule)


def nodes_needed(spread_fraction: float, target_fraction: float, level: float = 0.95, max_k: int = 10_000) -> int | None:
    """The fewest calibrated nodes k whose prediction half-width ``t(k-1) * s * sqrt(1+1/k)``
    is at most ``target_fraction`` of the estimate, for a node-to-node spread ``s`` of
    ``spread_fraction`` (SD / mean of the per-node predictions).  None if even ``max_k``
    does not reach it."""
    if not (spread_fraction >= 0 and target_fraction > 0):
        raise ValueError("spread_fraction must be >= 0 and target_fraction > 0")
    if spread_fraction == 0:
        return 2
    for k in range(2, max_k + 1):
        if stats.t.ppf(0.5 + level / 2, k - 1) * spread_fraction * math.sqrt(1 + 1 / k) <= target_fraction:
            return k
    return None
