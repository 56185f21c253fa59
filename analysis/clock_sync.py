"""Clock offset and drift between two hosts from NTP-style four-timestamp probes.

A probe is one request/reply exchange between the coordinator and an agent::

    t1  coordinator sends the request      (coordinator clock, ns)
    t2  agent receives it                  (agent clock, ns)
    t3  agent sends the reply              (agent clock, ns)
    t4  coordinator receives the reply     (coordinator clock, ns)

Its offset estimate ``((t2 - t1) + (t3 - t4)) / 2`` (agent minus coordinator, ns) is
exact when the two legs take equal time, and wrong by at most half the round trip
``(t4 - t1) - (t3 - t2)`` when they do not (RFC 5905 section 8): the *asymmetry bound*.
So the probes with the shortest round trips carry the most information.

:func:`fit_clock` keeps every probe it is given, drops the impossible ones, keeps the
fastest fraction of each run of probes (the minimum-RTT filter of NTP's clock filter),
rejects the remaining outliers by a median absolute deviation rule, and fits one line

    agent_ns = coord_ns + offset_ns + drift * (coord_ns - ref_ns)

by least squares, with Student-t 95 % intervals on both coefficients.  The reported
uncertainty adds, in quadrature, the worst bias unequal legs can give the line (each used
probe is off by at most half its round trip) and the frequency wander over the time to
the nearest probe.  Nothing is ever
stepped: the fit is made afterwards, from all the evidence, and says how sure it is.
Why our own code: NTP daemons discipline a clock live and do not expose an after-the-fact
fit with intervals; this is a small weighted-free LSQ line on filtered probes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

#: How many consecutive probes form one bin of the minimum-RTT filter.
FILTER_BIN = 8
#: Frequency wander assumed between probes (ppm): an oscillator's rate changes with
#: temperature by about this much over minutes, so time far from any probe is less sure.
DEFAULT_WANDER_PPM = 0.1
#: Fewer used probes than this, or a span shorter than MIN_SPAN_S, draws a warning.
MIN_PROBES = 8
MIN_SPAN_S = 10.0
MAX_GAP_WARN_S = 30.0
#: Stamps beyond +-2**60 ns (36 years) are refused, so differences fit in int64.
STAMP_LIMIT = 2**60


@dataclass(frozen=True)
class Probe:
    """One four-timestamp exchange (ns; t1, t4 on the coordinator clock, t2, t3 on the agent's)."""

    t1_ns: int
    t2_ns: int
    t3_ns: int
    t4_ns: int

    @property
    def offset_ns(self) -> float:
        """Agent clock minus coordinator clock (ns), exact for symmetric legs."""
        return ((self.t2_ns - self.t1_ns) + (self.t3_ns - self.t4_ns)) / 2

    @property
    def rtt_ns(self) -> int:
        """Round trip without the agent's own turnaround (ns)."""
        return (self.t4_ns - self.t1_ns) - (self.t3_ns - self.t2_ns)

    @property
    def mid_ns(self) -> int:
        """Midpoint of the exchange on the coordinator clock (ns)."""
        return (self.t1_ns + self.t4_ns) // 2

    @property
    def valid(self) -> bool:
        return self.t4_ns >= self.t1_ns and self.t3_ns >= self.t2_ns and self.rtt_ns >= 0


def _none_if_bad(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


@dataclass(frozen=True)
class ClockFit:
    """Agent clock as a line in the coordinator clock, with its uncertainty (ns, ppm, s)."""

    offset_ns: float  # agent - coordinator at ref_ns (ns)
    drift_ppm: float  # agent rate minus coordinator rate (ppm; +10 = agent gains 10 us/s)
    ref_ns: int  # coordinator time the offset refers to (ns): mean midpoint of used probes
    offset_ci95_ns: float  # half-width of the 95 % interval on offset_ns (ns; inf if unknown)
    drift_ci95_ppm: float  # half-width of the 95 % interval on drift_ppm (ppm; inf if unknown)
    n_probes: int  # probes given
    n_valid: int  # of which possible (t4 >= t1, t3 >= t2, rtt >= 0)
    n_used: int  # of which kept by the min-RTT filter and outlier rejection
    min_rtt_ns: int  # fastest round trip (ns)
    median_rtt_ns: float  # median round trip of the valid probes (ns)
    residual_sd_ns: float  # scatter of used probes about the line (ns)
    asymmetry_bound_ns: float  # bound on the bias unequal legs can give the line at ref_ns (ns)
    first_ns: int  # coordinator time of the first / last valid probe (ns)
    last_ns: int
    max_gap_s: float  # longest stretch between used probes (s)
    span_s: float  # last - first (s)
    wander_ppm: float = DEFAULT_WANDER_PPM
    warnings: tuple[str, ...] = ()
    _x_mean: float = field(default=0.0, repr=False)  # mean of (mid - ref) over used probes (ns)
    _sxx: float = field(default=0.0, repr=False)  # sum of squared (mid - ref - x_mean) (ns^2)
    _t95: float = field(default=math.inf, repr=False)
    # midpoints (coordinator ns, sorted) and round trips (ns) of the used probes
    _mids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False, compare=False)
    _rtts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64), repr=False, compare=False)

    # -- mapping -------------------------------------------------------------------
    @property
    def drift(self) -> float:
        return self.drift_ppm * 1e-6

    def offset_at(self, coord_ns: int) -> float:
        """Agent minus coordinator clock at coordinator time ``coord_ns`` (ns)."""
        return self.offset_ns + self.drift * (coord_ns - self.ref_ns)

    def to_agent_ns(self, coord_ns: int) -> int:
        """Agent clock reading at coordinator time ``coord_ns`` (ns)."""
        return int(coord_ns + round(self.offset_at(coord_ns)))

    def to_coordinator_ns(self, agent_ns: int) -> int:
        """Coordinator time of agent clock reading ``agent_ns`` (ns); the exact inverse of
        :meth:`to_agent_ns` up to rounding (the reference is subtracted first, so the float
        arithmetic works on small numbers)."""
        x = (float(agent_ns - self.ref_ns) - self.offset_ns) / (1.0 + self.drift)
        return int(self.ref_ns + round(x))

    # -- uncertainty -----------------------------------------------------------------
    def prediction_ci95_ns(self, coord_ns: int) -> float:
        """Half-width of the 95 % interval of the fitted line at ``coord_ns`` (ns)."""
        if self.n_probes == 0:  # the identity fit
            return 0.0
        if not math.isfinite(self._t95) or self.n_used < 3 or self._sxx <= 0:
            return math.inf
        x = float(coord_ns - self.ref_ns)
        se = self.residual_sd_ns * math.sqrt(1.0 / self.n_used + (x - self._x_mean) ** 2 / self._sxx)
        return self._t95 * se

    def uncertainty_at(self, coord_ns: int) -> float:
        """Total 95 % uncertainty of a mapped stamp at ``coord_ns`` (ns): the line's interval,
        the asymmetry bound, and the frequency wander over the time to the nearest probe, in
        quadrature."""
        if len(self._mids):
            mids = self._mids
            i = int(np.searchsorted(mids, coord_ns))
            near = min(abs(coord_ns - int(mids[j])) for j in (i - 1, i) if 0 <= j < len(mids))
        else:
            near = 0
        wander = self.wander_ppm * 1e-6 * near
        asym = self.asymmetry_bound_at(coord_ns)
        return math.sqrt(self.prediction_ci95_ns(coord_ns) ** 2 + asym ** 2 + wander ** 2)

    def asymmetry_bound_at(self, coord_ns: int) -> float:
        """Bound on the line's bias at ``coord_ns`` from unequal legs (ns): each used probe's
        offset is wrong by at most half its round trip, and the line at ``coord_ns`` is a
        weighted sum of the probes' offsets, so the bias is at most sum |w_i| rtt_i / 2."""
        if len(self._rtts) < 2 or self._sxx <= 0:
            return self.asymmetry_bound_ns
        x = (self._mids - self.ref_ns).astype(np.float64)
        w = 1.0 / len(x) + (x - self._x_mean) * (float(coord_ns - self.ref_ns) - self._x_mean) / self._sxx
        return float(np.dot(np.abs(w), self._rtts) / 2.0)

    def uncertainty_ns(self, start_ns: int | None = None, end_ns: int | None = None) -> float:
        """The largest :meth:`uncertainty_at` over ``[start_ns, end_ns]`` (default: the
        probes' span), checked at both ends and in the middle of every gap (ns)."""
        lo = self.first_ns if start_ns is None else start_ns
        hi = self.last_ns if end_ns is None else end_ns
        points = [lo, hi]
        mids = self._mids[(self._mids >= lo) & (self._mids <= hi)]
        points += ((mids[:-1] + mids[1:]) // 2).tolist()
        return max(self.uncertainty_at(p) for p in points)

    # -- contract --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (None where a figure is unknown): the ``hosts[].clock_fit`` entry."""
        u = self.uncertainty_ns()
        return {
            "offset_ns": _none_if_bad(self.offset_ns), "drift_ppm": _none_if_bad(self.drift_ppm),
            "ref_ns": self.ref_ns,
            "offset_ci95_ns": _none_if_bad(self.offset_ci95_ns),
            "drift_ci95_ppm": _none_if_bad(self.drift_ci95_ppm),
            "uncertainty_ns": _none_if_bad(u),
            "n_probes": self.n_probes, "n_valid": self.n_valid, "n_used": self.n_used,
            "min_rtt_ns": self.min_rtt_ns, "median_rtt_ns": _none_if_bad(self.median_rtt_ns),
            "residual_sd_ns": _none_if_bad(self.residual_sd_ns),
            "asymmetry_bound_ns": _none_if_bad(self.asymmetry_bound_ns),
            "first_ns": self.first_ns, "last_ns": self.last_ns,
            "max_gap_s": self.max_gap_s, "span_s": self.span_s, "wander_ppm": self.wander_ppm,
            "warnings": list(self.warnings),
        }

    @classmethod
    def identity(cls, at_ns: int = 0) -> ClockFit:
        """The coordinator's own clock mapped onto itself (no uncertainty)."""
        return cls(offset_ns=0.0, drift_ppm=0.0, ref_ns=at_ns, offset_ci95_ns=0.0, drift_ci95_ppm=0.0,
                   n_probes=0, n_valid=0, n_used=0, min_rtt_ns=0, median_rtt_ns=0.0, residual_sd_ns=0.0,
                   asymmetry_bound_ns=0.0, first_ns=at_ns, last_ns=at_ns, max_gap_s=0.0, span_s=0.0,
                   wander_ppm=0.0, _t95=0.0)


def _as_array(probes: Iterable[Probe] | np.ndarray) -> np.ndarray:
    if isinstance(probes, np.ndarray):
        arr = np.asarray(probes, dtype=np.int64)
    else:
        arr = np.array([(p.t1_ns, p.t2_ns, p.t3_ns, p.t4_ns) if isinstance(p, Probe) else tuple(p)
                        for p in probes], dtype=np.int64)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError("probes must be rows of four timestamps t1,t2,t3,t4 (ns)")
    return arr


def min_rtt_mask(rtt: np.ndarray, keep_fraction: float, bin_size: int = FILTER_BIN) -> np.ndarray:
    """Keep the fastest ``keep_fraction`` of every run of ``bin_size`` consecutive probes
    (at least one per run), so that a slow stretch of network still leaves probes in it."""
    keep = np.zeros(len(rtt), dtype=bool)
    for start in range(0, len(rtt), bin_size):
        chunk = rtt[start:start + bin_size]
        k = max(1, math.ceil(len(chunk) * keep_fraction))
        keep[start + np.argsort(chunk, kind="stable")[:k]] = True
    return keep


def fit_clock(probes: Sequence[Probe] | Sequence[tuple[int, int, int, int]] | np.ndarray, keep_fraction: float = 0.25,
              wander_ppm: float = DEFAULT_WANDER_PPM) -> ClockFit:
    """Fit offset and drift of an agent clock from its probes (see the module doc).

    ``probes``: :class:`Probe` objects, (t1, t2, t3, t4) tuples or an (n, 4) int array
    (ns), in any order.
    ValueError if none is valid.  One used probe gives an offset with no drift and a
    warning; two give a line with no interval.
    """
    if not 0 < keep_fraction <= 1:
        raise ValueError("keep_fraction must be in (0, 1]")
    arr = _as_array(probes)
    n_probes = len(arr)
    sane = (np.abs(arr) < STAMP_LIMIT).all(axis=1)  # so no difference below can overflow
    arr_s = np.where(sane[:, None], arr, 0)
    t1, t2, t3, t4 = (arr_s[:, i] for i in range(4))
    rtt_all = (t4 - t1) - (t3 - t2)
    ok = sane & (t4 >= t1) & (t3 >= t2) & (rtt_all >= 0)
    arr = arr[ok]
    if len(arr) == 0:
        raise ValueError(f"no valid clock probe among {n_probes}: cannot place this host's clock")
    t1, t2, t3, t4 = (arr[:, i] for i in range(4))
    mid = t1 + (t4 - t1) // 2
    order = np.argsort(mid, kind="stable")
    t1, t2, t3, t4, mid = t1[order], t2[order], t3[order], t4[order], mid[order]
    rtt = (t4 - t1) - (t3 - t2)
    off = ((t2 - t1) + (t3 - t4)) / 2.0  # float64: differences are small numbers of ns
    warnings: list[str] = []
    if n_probes - len(arr):
        warnings.append(f"{n_probes - len(arr)} of {n_probes} probes impossible (negative round trip), dropped")

    keep = min_rtt_mask(rtt, keep_fraction)
    ref = int(round(float(np.mean(mid[keep] - mid[0])))) + int(mid[0])
    x = (mid - ref).astype(np.float64)
    used = keep.copy()
    fit = _line(x[used], off[used])
    if used.sum() >= 5:  # one pass of MAD outlier rejection on the kept probes
        res = off - (fit[0] + fit[1] * x)
        mad = 1.4826 * float(np.median(np.abs(res[used] - np.median(res[used]))))
        bound = max(3.5 * mad, float(np.min(rtt)) / 2.0, 1.0)
        used &= np.abs(res) <= bound
        fit = _line(x[used], off[used])
    theta0, d, sd, x_mean, sxx = fit
    n_used = int(used.sum())
    dof = n_used - 2
    t95 = float(stats.t.ppf(0.975, dof)) if dof >= 1 else math.inf
    if n_used >= 3:
        se_slope = sd / math.sqrt(sxx) if sxx > 0 else math.inf
        se_icpt = sd * math.sqrt(1.0 / n_used + x_mean ** 2 / sxx) if sxx > 0 else math.inf
        off_ci, drift_ci = t95 * se_icpt, t95 * se_slope * 1e6
    else:
        off_ci = drift_ci = math.inf
    if n_used == 1:
        warnings.append("one usable probe: offset only, drift unknown")
    elif n_used == 2:
        warnings.append("two usable probes: no interval on offset or drift")
    elif n_used < MIN_PROBES:
        warnings.append(f"only {n_used} usable probes: intervals are wide")
    used_mids = mid[used]
    span_s = float(mid[-1] - mid[0]) / 1e9
    gaps = np.diff(used_mids) / 1e9 if n_used > 1 else np.zeros(0)
    max_gap = float(gaps.max()) if len(gaps) else 0.0
    if n_used >= 2 and span_s < MIN_SPAN_S:
        warnings.append(f"probes span {span_s:.3g} s (< {MIN_SPAN_S:g} s): drift poorly determined")
    if max_gap > MAX_GAP_WARN_S:
        warnings.append(f"{max_gap:.3g} s without a usable probe: uncertainty widened there")
    return ClockFit(
        offset_ns=float(theta0), drift_ppm=float(d) * 1e6, ref_ns=ref, offset_ci95_ns=float(off_ci),
        drift_ci95_ppm=float(drift_ci), n_probes=n_probes, n_valid=len(arr), n_used=n_used,
        min_rtt_ns=int(rtt.min()), median_rtt_ns=float(np.median(rtt)), residual_sd_ns=float(sd),
        asymmetry_bound_ns=float(np.mean(rtt[used])) / 2.0, first_ns=int(mid[0]), last_ns=int(mid[-1]),
        max_gap_s=max_gap, span_s=span_s, wander_ppm=wander_ppm, warnings=tuple(warnings),
        _x_mean=float(x_mean), _sxx=float(sxx), _t95=t95, _mids=used_mids.astype(np.int64),
        _rtts=rtt[used].astype(np.float64))


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float, float]:
    """(intercept at x=0, slope, residual sd, mean x, Sxx) of the LSQ line through (x, y);
    a single point or a zero spread of x gives slope 0."""
    n = len(x)
    x_mean = float(x.mean())
    xc = x - x_mean
    sxx = float(np.dot(xc, xc))
    if n < 2 or sxx <= 0:
        return float(y.mean()), 0.0, 0.0 if n < 2 else float(np.std(y, ddof=1)), x_mean, 0.0
    slope = float(np.dot(xc, y - y.mean()) / sxx)
    icpt = float(y.mean()) - slope * x_mean
    res = y - (icpt + slope * x)
    sd = float(math.sqrt(np.dot(res, res) / (n - 2))) if n > 2 else 0.0
    return icpt, slope, sd, x_mean, sxx
