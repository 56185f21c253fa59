"""Sampled traces on one clock: validation, gaps, held-sample integrals, power, resampling.

Pure functions on numpy arrays (no file I/O).  Times are float seconds on one clock,
powers in W, energies in J.  A sample *holds* over the time it stands for: from the
midpoint with its previous neighbour to the midpoint with its next (half a median
interval at the ends and beside gaps).  These are the building blocks of
:mod:`analysis.align` (lag, drift), :mod:`analysis.windows` (window energies) and
:mod:`analysis.characterize`.  Bad input raises :class:`ValueError` (one line).
"""

from __future__ import annotations

import math

import numpy as np

#: An interval longer than this many median intervals is a gap (meter disconnected).
GAP_FACTOR = 5.0

__all__ = [
    "GAP_FACTOR",
    "as_1d",
    "bin_integrals",
    "check_times",
    "find_gaps",
    "hold_spans",
    "median_interval",
    "paired_trace",
    "power_series",
    "resample",
]

# ----------------------------------------------------------------------------- helpers


def as_1d(x: object, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of numbers; got shape {a.shape}")
    return a


def check_times(t: np.ndarray, name: str = "t_s", min_n: int = 2) -> None:
    if t.size < min_n:
        raise ValueError(f"{name} needs at least {min_n} samples; record a longer trace")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{name} contains NaN/inf timestamps; drop those samples first")
    if np.any(np.diff(t) < 0):
        raise ValueError(f"{name} must be non-decreasing; sort the trace by time first")


def paired_trace(
    t: object, y: object, tname: str, yname: str, min_n: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    ta = as_1d(t, tname)
    ya = as_1d(y, yname)
    if ta.shape != ya.shape:
        raise ValueError(f"{tname} and {yname} differ in length ({ta.size} vs {ya.size})")
    check_times(ta, tname, min_n)
    return ta, ya


def median_interval(t_s: np.ndarray) -> float:
    """Median of the positive intervals between stamps (s); NaN with fewer than 2 stamps."""
    d = np.diff(np.asarray(t_s, dtype=float))
    d = d[d > 0]
    return float(np.median(d)) if d.size else math.nan


def find_gaps(
    t_s: np.ndarray, gap_factor: float = GAP_FACTOR, min_gap_s: float = 0.0
) -> np.ndarray:
    """Spans ``(t_j, t_j+1)`` (s) where an interval exceeds ``gap_factor`` median intervals
    (and ``min_gap_s``); shape (k, 2), sorted."""
    t = as_1d(t_s, "t_s")
    if t.size < 2:
        return np.empty((0, 2))
    d = np.diff(t)
    thr = max(gap_factor * median_interval(t), min_gap_s)
    j = np.flatnonzero(d > thr)
    return np.column_stack([t[j], t[j + 1]])


def hold_spans(t: np.ndarray, gap_factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Hold intervals [a_i, b_i] of each sample: midpoints between neighbours, half a
    median interval at the ends and on either side of a gap."""
    half = 0.5 * median_interval(t)
    if not math.isfinite(half):
        raise ValueError("timestamps are all equal; a trace needs increasing times")
    d = np.diff(t)
    gap = d > gap_factor * 2.0 * half
    mid = 0.5 * (t[:-1] + t[1:])
    a = np.empty_like(t)
    b = np.empty_like(t)
    a[0] = t[0] - half
    b[-1] = t[-1] + half
    a[1:] = np.where(gap, t[1:] - half, mid)
    b[:-1] = np.where(gap, t[:-1] + half, mid)
    return a, b


def _cumulative(
    a: np.ndarray, b: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Breakpoints x and cumulative integral F (value*s) and coverage C (s) of the
    piecewise-constant function y on [a_i, b_i]; NaN values count as not covered."""
    valid = np.isfinite(y)
    width = np.where(valid, b - a, 0.0)
    inc = np.where(valid, y, 0.0) * width
    cf = np.cumsum(inc)
    cc = np.cumsum(width)
    xs = np.empty(2 * a.size)
    fs = np.empty(2 * a.size)
    cs = np.empty(2 * a.size)
    xs[0::2], xs[1::2] = a, b
    fs[0::2], fs[1::2] = cf - inc, cf
    cs[0::2], cs[1::2] = cc - width, cc
    keep = np.ones(xs.size, dtype=bool)
    keep[1:] = np.diff(xs) > 0  # contiguous segments share a breakpoint with equal F, C
    return xs[keep], fs[keep], cs[keep]


def bin_integrals(
    t: np.ndarray, y: np.ndarray, lo: np.ndarray, hi: np.ndarray, gap_factor: float
) -> tuple[np.ndarray, np.ndarray]:
    """Integral of the held samples (value*s) and covered time (s) over each [lo, hi]."""
    a, b = hold_spans(t, gap_factor)
    xs, fs, cs = _cumulative(a, b, y)
    f = np.interp(hi, xs, fs) - np.interp(lo, xs, fs)
    c = np.interp(hi, xs, cs) - np.interp(lo, xs, cs)
    return f, c


# ----------------------------------------------------------------------------- power


def power_series(
    t_s: np.ndarray,
    power_w: np.ndarray | None = None,
    energy_j: np.ndarray | None = None,
    energy_resolution_j: float | None = None,
    *,
    window_s: float | None = None,
    gap_factor: float = GAP_FACTOR,
    max_quantisation: float = 0.02,
) -> tuple[np.ndarray, np.ndarray]:
    """Best power estimate of one channel: ``(t_s, power_w)`` (s, W).

    From the cumulative counter (``diff(E)/diff(t)`` stamped at interval midpoints) when
    its resolution is at most ``max_quantisation`` of the median per-sample energy (or
    unknown), else the reported power.  A counter too coarse with no reported power is
    differenced between its *changes* (one estimate per counter step).  Intervals longer
    than ``gap_factor`` median intervals, or where the counter went backwards (reset on
    reconnection), give no sample.  NaN samples are dropped.  Reported power averaged
    over the meter's own ``window_s`` ending at the stamp is stamped at the window's
    centre (``t - window_s/2``) when ``window_s`` is given.
    """
    if power_w is None and energy_j is None:
        raise ValueError("power_series needs power_w or energy_j; the channel has neither")
    t_all = as_1d(t_s, "t_s")
    if energy_j is not None:
        t, e = paired_trace(t_all, energy_j, "t_s", "energy_j", min_n=1)
        ok = np.isfinite(e)
        t, e = t[ok], e[ok]
        if t.size >= 2:
            dt = np.diff(t)
            de = np.diff(e)
            med = median_interval(t)
            good = (dt > 0) & (dt <= gap_factor * med) & (de >= 0)
            typical = float(np.median(de[good])) if np.any(good) else 0.0
            fine = energy_resolution_j is None or energy_resolution_j <= max_quantisation * typical
            if fine:
                tm = 0.5 * (t[:-1] + t[1:])
                return tm[good], de[good] / dt[good]
            if power_w is None:
                return _coarse_counter_power(t, e, gap_factor, med)
    t, p = paired_trace(t_all, power_w, "t_s", "power_w", min_n=1)
    ok = np.isfinite(p)
    shift = 0.5 * float(window_s) if window_s else 0.0
    return t[ok] - shift, p[ok]


def _coarse_counter_power(
    t: np.ndarray, e: np.ndarray, gap_factor: float, med: float
) -> tuple[np.ndarray, np.ndarray]:
    """Power between the changes of a coarse counter; segments broken at gaps/resets."""
    dt = np.diff(t)
    de = np.diff(e)
    brk = (dt > gap_factor * med) | (de < 0)
    seg = np.concatenate([[0], np.cumsum(brk)])  # segment id of each sample
    change = np.ones(t.size, dtype=bool)
    change[1:] = (de != 0) | brk
    # the first sample of each segment and each sample where the counter moved
    idx = np.flatnonzero(change)
    ti, ei, si = t[idx], e[idx], seg[idx]
    same = si[1:] == si[:-1]
    dti = np.diff(ti)
    use = same & (dti > 0)
    return (0.5 * (ti[:-1] + ti[1:]))[use], (np.diff(ei) / np.where(dti > 0, dti, 1.0))[use]


def resample(
    t_s: np.ndarray,
    y: np.ndarray,
    grid_s: np.ndarray,
    *,
    gap_factor: float = GAP_FACTOR,
    min_coverage: float = 0.5,
) -> np.ndarray:
    """Time-weighted average of ``y`` over bins centred on ``grid_s`` (same units as y).

    Each sample holds from the midpoint with its previous neighbour to the midpoint
    with its next (half a median interval at the ends and beside gaps longer than
    ``gap_factor`` median intervals).  Bins run between midpoints of the grid points.
    NaN where less than ``min_coverage`` of a bin is covered by (finite) data.
    """
    t, v = paired_trace(t_s, y, "t_s", "y")
    g = as_1d(grid_s, "grid_s")
    if g.size == 0:
        return np.empty(0)
    if g.size == 1:
        h = median_interval(t)
        edges = np.array([g[0] - h / 2, g[0] + h / 2])
    else:
        if np.any(np.diff(g) <= 0):
            raise ValueError("grid_s must be strictly increasing")
        edges = np.empty(g.size + 1)
        edges[1:-1] = 0.5 * (g[:-1] + g[1:])
        edges[0] = g[0] - (g[1] - g[0]) / 2
        edges[-1] = g[-1] + (g[-1] - g[-2]) / 2
    f, c = bin_integrals(t, v, edges[:-1], edges[1:], gap_factor)
    width = np.diff(edges)
    out = np.full(g.size, np.nan)
    ok = c >= min_coverage * width
    out[ok] = f[ok] / c[ok]
    return out
