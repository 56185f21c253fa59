"""Characterise a meter from a step or square-wave session.

What a power reading means depends on the meter: how often it updates, over how long a
window it averages, how late it is stamped.  An NVML sensor on A100/H100 updates every
~100 ms but averages only ~25 ms of it (Yang et al., SC 2024), so it sees a quarter of a
bursty load; a wattmeter averaging 1 s and stamped at the end of its window appears
0.5 s late.  This module measures those properties from the meter's response to load
edges whose true times are known (the load's phase markers, or a fast reference meter).

Model: the value stamped at ``t`` is the mean of the true power over
``[t - delay - window, t - delay]``.  A step at ``T`` then appears as a linear ramp
from ``T + delay`` to ``T + delay + window``; sampled at the meter's update instants.
Across many edges at random phases to the update clock the normalised samples
``f = (p - before) / (after - before)`` against ``t - T`` trace that ramp, and
``(delay, window)`` are fitted to all of them at once (a grid search, then
Nelder-Mead).  Pure functions on numpy arrays; times in s, power in W.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from analysis.align import detect_edges
from analysis.sampling import median_interval, paired_trace

__all__ = ["Characterization", "characterize", "merge_edges", "update_period_s", "update_samples"]

#: load edges closer than this (s) are one edge: a phase's end and the next phase's start
#: are stamped a fraction of a millisecond apart by the workload process
EDGE_TOLERANCE_S = 0.05


@dataclass(frozen=True)
class Characterization:
    """Measured properties of one meter (s unless noted).

    ``update_period_s``: median interval between value changes.  ``window_s``: width of
    the boxcar the meter averages over.  ``delay_s``: from the end of that window to the
    stamp.  ``rise_time_s``: median 10-90 % time of the observed step response (samples
    linearly interpolated).  ``response_lag_s``: median time from a load edge to the 50 %
    crossing of the response (what trace alignment sees; ``delay + window/2`` for a
    boxcar).  ``seen_fraction``: share of the time the meter's windows cover,
    ``min(1, window / update period)``.  ``rms_residual``: of the ramp fit, in units of
    the step height.  ``n_edges``: edges used.
    """

    update_period_s: float
    window_s: float
    delay_s: float
    rise_time_s: float
    n_edges: int
    response_lag_s: float = math.nan
    seen_fraction: float = math.nan
    rms_residual: float = math.nan


def update_period_s(t_s: np.ndarray, power_w: np.ndarray) -> float:
    """Median interval (s) between changes of the reported value; a meter polled faster
    than it updates repeats values, so this is its own update period, not the poll
    interval.  NaN when the value never changes twice."""
    t, p = paired_trace(t_s, power_w, "t_s", "power_w")
    ok = np.isfinite(p)
    t, p = t[ok], p[ok]
    tc = t[1:][p[1:] != p[:-1]]
    if tc.size < 2:
        return math.nan
    return float(np.median(np.diff(tc)))


def update_samples(t_s: np.ndarray, power_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The samples that carry a new value (first of each run of repeats), for a meter
    polled faster than it updates; all samples otherwise."""
    t, p = paired_trace(t_s, power_w, "t_s", "power_w")
    ok = np.isfinite(p)
    t, p = t[ok], p[ok]
    upd = update_period_s(t, p)
    if not (upd > 1.5 * median_interval(t)):
        return t, p
    new = np.ones(t.size, dtype=bool)
    new[1:] = p[1:] != p[:-1]
    return t[new], p[new]


def merge_edges(edges_s: np.ndarray, tolerance_s: float = EDGE_TOLERANCE_S) -> np.ndarray:
    """Sorted edge times with runs of edges closer than ``tolerance_s`` (s) merged into
    one (their mean): one load step marked twice (end of a phase, start of the next)."""
    e = np.sort(np.asarray(edges_s, dtype=float).ravel())
    e = e[np.isfinite(e)]
    if e.size < 2:
        return e
    group = np.concatenate([[0], np.cumsum(np.diff(e) > tolerance_s)])
    return np.array([float(e[group == g].mean()) for g in range(int(group[-1]) + 1)])


def _ramp_sse(x: np.ndarray, f: np.ndarray, d: float, w: float) -> float:
    if w <= 0:
        pred = (x >= d).astype(float)
    else:
        pred = np.clip((x - d) / w, 0.0, 1.0)
    r = f - pred
    return float(r @ r)


def _fit_ramp(
    x: np.ndarray, f: np.ndarray, d_lo: float, d_hi: float, w_hi: float
) -> tuple[float, float, float]:
    """Least-squares ``(delay, window, sse)`` of ``f = clip((x - delay)/window, 0, 1)``;
    among equally good fits the narrowest window wins."""
    n_grid = 121
    ws = np.linspace(0.0, w_hi, n_grid)
    ds = np.linspace(d_lo, d_hi, n_grid)
    best = (math.inf, 0.0, 0.0)
    xd = x[None, :] - ds[:, None]  # (nd, P)
    for w in ws:
        pred = (xd >= 0).astype(float) if w == 0 else np.clip(xd / w, 0.0, 1.0)
        sse = ((f[None, :] - pred) ** 2).sum(axis=1)
        j = int(np.argmin(sse))
        if sse[j] < best[0] * (1 - 1e-9) - 1e-12:
            # among the tied delays of this window take the middle of the tied run
            tied = sse <= sse[j] * (1 + 1e-9) + 1e-12
            a = b = j
            while a > 0 and tied[a - 1]:
                a -= 1
            while b < n_grid - 1 and tied[b + 1]:
                b += 1
            best = (float(sse[j]), 0.5 * float(ds[a] + ds[b]), float(w))
    _, d0, w0 = best
    step_d = (d_hi - d_lo) / (n_grid - 1)
    step_w = w_hi / (n_grid - 1)
    res = minimize(
        lambda v: _ramp_sse(x, f, v[0], abs(v[1])),
        x0=[d0, w0],
        method="Nelder-Mead",
        options={
            "initial_simplex": [[d0, w0], [d0 + step_d, w0], [d0, w0 + step_w]],
            "xatol": 1e-6 * max(w_hi, 1e-9),
            "fatol": 1e-12,
            "maxiter": 400,
        },
    )
    d, w = float(res.x[0]), abs(float(res.x[1]))
    sse = _ramp_sse(x, f, d, w)
    if sse > best[0]:
        d, w, sse = d0, w0, best[0]
    return d, w, sse


def _crossing(x: np.ndarray, f: np.ndarray, level: float) -> float:
    """First upward crossing of ``level`` by the samples (x, f), linearly interpolated."""
    above = f >= level
    if above.size == 0 or above[0] or not above.any():
        return math.nan
    j = int(np.argmax(above))  # first sample at/above; j >= 1
    f0, f1 = f[j - 1], f[j]
    return float(x[j - 1] + (x[j] - x[j - 1]) * (level - f0) / (f1 - f0))


def characterize(
    t_s: np.ndarray,
    power_w: np.ndarray,
    edges_s: np.ndarray | None = None,
    *,
    ref_t_s: np.ndarray | None = None,
    ref_power_w: np.ndarray | None = None,
    span_s: float | None = None,
    max_window_s: float | None = None,
    min_edges: int = 3,
    edge_tolerance_s: float = EDGE_TOLERANCE_S,
) -> Characterization:
    """Update period, averaging window, delay and rise time (s) of a meter.

    ``edges_s``: true times of the load's steps (phase markers on the same clock), or
    give a fast reference trace (``ref_t_s``, ``ref_power_w``) whose detected step edges
    are used.  Each edge is judged on the samples within ``span_s`` of it (default half
    the median edge spacing, and never past the neighbouring edges): the level before is
    the median over the half-span before the edge, the level after the median over the
    second half-span after it, so the response must settle within half a span.  The
    window is searched up to ``max_window_s`` (default half the span).  Edges closer than
    ``edge_tolerance_s`` are one edge (:func:`merge_edges`).
    """
    t, p = paired_trace(t_s, power_w, "t_s", "power_w")
    ok = np.isfinite(p)
    t, p = t[ok], p[ok]
    if edges_s is None:
        if ref_t_s is None or ref_power_w is None:
            raise ValueError(
                "characterize needs the load's edge times (edges_s) or a fast reference trace"
            )
        edges = detect_edges(ref_t_s, ref_power_w).t_s
    else:
        edges = np.sort(np.asarray(edges_s, dtype=float).ravel())
    edges = merge_edges(edges, edge_tolerance_s)
    edges = edges[(edges > t[0]) & (edges < t[-1])]
    if edges.size < min_edges:
        raise ValueError(
            f"only {edges.size} load edges fall inside the trace; characterisation needs "
            f"{min_edges} (run a longer step or square-wave load)"
        )
    upd = update_period_s(t, p)
    tu, pu = update_samples(t, p)
    spacing = np.diff(edges)
    span = 0.5 * float(np.median(spacing)) if span_s is None else float(span_s)
    if not span > 0:
        raise ValueError("span_s must be a positive number of seconds")
    if math.isfinite(upd) and span < 1.5 * upd:
        raise ValueError(
            f"load edges ({2 * span:.3g} s apart) are too close for a meter updating every "
            f"{upd:.3g} s; use a square wave whose half-period (time between edges) is at least "
            f"{4 * upd:.3g} s (a period of {8 * upd:.3g} s or more)"
        )
    prev = np.concatenate([[np.inf], spacing])
    nxt = np.concatenate([spacing, [np.inf]])
    left = np.minimum(span, prev)
    right = np.minimum(span, nxt)

    xs, fs, rise, lag50 = [], [], [], []
    n_used = 0
    for te, lw, rw in zip(edges, left, right):
        i0 = int(np.searchsorted(tu, te - 0.5 * lw, "left"))
        i1 = int(np.searchsorted(tu, te, "left"))
        i2 = int(np.searchsorted(tu, te + 0.5 * rw, "left"))
        i3 = int(np.searchsorted(tu, te + rw, "left"))
        if i1 <= i0 or i3 <= i2:
            continue
        before = float(np.median(pu[i0:i1]))
        after = float(np.median(pu[i2:i3]))
        height = after - before
        if height == 0:
            continue
        x = tu[i0:i3] - te
        f = (pu[i0:i3] - before) / height
        xs.append(x)
        fs.append(f)
        n_used += 1
        # observed response from the last pre-edge sample on
        k = max(i1 - i0 - 1, 0)
        xr, fr = x[k:], f[k:]
        r10, r50, r90 = (_crossing(xr, fr, lv) for lv in (0.1, 0.5, 0.9))
        rise.append(r90 - r10)
        lag50.append(r50)
    if n_used < min_edges:
        raise ValueError(
            f"only {n_used} edges show a clear step in this meter's trace; characterisation "
            f"needs {min_edges} (check that the meter sees the load and the edge times)"
        )
    x = np.concatenate(xs)
    f = np.concatenate(fs)
    lo_d = -0.5 * float(np.median(left))
    hi_w = 0.5 * float(np.median(right)) if max_window_s is None else float(max_window_s)
    hi_d = 0.5 * float(np.median(right))
    d, w, sse = _fit_ramp(x, f, lo_d, hi_d, hi_w)
    rise_a = np.asarray(rise)
    lag_a = np.asarray(lag50)
    return Characterization(
        update_period_s=upd,
        window_s=w,
        delay_s=d,
        rise_time_s=float(np.nanmedian(rise_a)) if np.any(np.isfinite(rise_a)) else math.nan,
        n_edges=n_used,
        response_lag_s=float(np.nanmedian(lag_a)) if np.any(np.isfinite(lag_a)) else math.nan,
        seen_fraction=min(1.0, w / upd) if math.isfinite(upd) and upd > 0 else math.nan,
        rms_residual=math.sqrt(sse / x.size),
    )
