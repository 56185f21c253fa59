"""Trace alignment: step edges, lag and clock-drift estimation.

Pure functions on numpy arrays (no file I/O).  Times are float seconds on one clock
(the session clock, or Unix seconds for external data), powers in W, energies in J.
The sampled-trace building blocks (power estimate, resampling, gaps) are in
:mod:`analysis.sampling`.

Sign convention used everywhere in this module: a **positive lag** means the
candidate's events appear *later* on its time axis than the same events on the
reference's.  To put candidate stamps on the reference clock use
``t_ref = t_cand - lag_s`` (see :func:`align`, which also applies a linear drift).

The lag is found by normalised, NaN-aware cross-correlation (FFT, bounded lag range) of
both traces resampled onto one uniform grid and differenced (edges dominate), with
parabolic sub-sample refinement; when the load has sharp steps (step or square-wave
calibration loads) it is then refined on the matched 50 % crossing times of those edges.

Typical use on one reference and one candidate channel::

    tr, pr = power_series(t_ref, power_w=p_ref, energy_j=e_ref, energy_resolution_j=res)
    tc, pc = power_series(t_cand, power_w=p_cand, window_s=cand_window_s)
    lag = estimate_lag(tr, pr, tc, pc, max_lag_s=30)     # or estimate_drift(...)
    t_cand_on_ref_clock = lag.apply(t_cand)              # = align(t_cand, lag.lag_s)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sfft
from scipy.ndimage import maximum_filter1d

from analysis.regression import ols
from analysis.sampling import GAP_FACTOR, median_interval, paired_trace, resample

__all__ = [
    "DriftResult",
    "Edges",
    "LagResult",
    "align",
    "detect_edges",
    "estimate_drift",
    "estimate_lag",
]


# ----------------------------------------------------------------------------- edges


@dataclass(frozen=True)
class Edges:
    """Step edges of a trace: 50 % crossing time (s), sign (+1 rising, -1 falling), the
    levels before and after (W)."""

    t_s: np.ndarray
    sign: np.ndarray
    before_w: np.ndarray
    after_w: np.ndarray

    def __len__(self) -> int:
        return int(self.t_s.size)


def _box_means(g: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean and std of g[i-k+1..i] (before) and g[i+1..i+k] (after) for each i; NaN where
    a window leaves the array or holds a NaN."""
    n = g.size
    valid = np.isfinite(g)
    x = np.where(valid, g, 0.0)
    c1 = np.concatenate([[0.0], np.cumsum(x)])
    c2 = np.concatenate([[0.0], np.cumsum(x * x)])
    cn = np.concatenate([[0], np.cumsum(valid)])
    i = np.arange(n)
    lo_b, hi_b = i - k + 1, i + 1  # before: [i-k+1, i+1)
    lo_a, hi_a = i + 1, i + k + 1  # after:  [i+1, i+k+1)
    ok = (lo_b >= 0) & (hi_a <= n)
    lo_b, hi_a = np.clip(lo_b, 0, n), np.clip(hi_a, 0, n)
    hi_b, lo_a = np.clip(hi_b, 0, n), np.clip(lo_a, 0, n)
    ok &= (cn[hi_b] - cn[lo_b] == k) & (cn[hi_a] - cn[lo_a] == k)

    def stats(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = (c1[hi] - c1[lo]) / k
        var = np.maximum((c2[hi] - c2[lo]) / k - m * m, 0.0)
        return np.where(ok, m, np.nan), np.where(ok, np.sqrt(var), np.nan)

    mb, sb = stats(lo_b, hi_b)
    ma, sa = stats(lo_a, hi_a)
    return mb, sb, ma, sa


def detect_edges(
    t_s: np.ndarray,
    power_w: np.ndarray,
    *,
    min_plateau_s: float | None = None,
    threshold_w: float | None = None,
    gap_factor: float = GAP_FACTOR,
    flatness: float = 0.25,
    sharpness: float = 0.7,
) -> Edges:
    """Sharp steps in a power trace.

    A step is where the mean over ``min_plateau_s`` after a point differs from the mean
    over ``min_plateau_s`` before it by more than ``threshold_w`` (default: the larger of
    8 noise sigmas and 20 % of the 1-99 % range), is the local maximum of that difference,
    and both plateaus are flat (std below ``flatness`` x step height).  The edge time is
    the 50 % crossing between the two levels on the native samples, linearly
    interpolated; the edge is kept only if it is sharp: at least ``sharpness`` of the
    step happens within +-0.2 ``min_plateau_s`` of that crossing (slow ramps of a smooth
    load are not edges).  ``min_plateau_s`` defaults to 5 median sample intervals.
    """
    t, p = paired_trace(t_s, power_w, "t_s", "power_w")
    ok = np.isfinite(p)
    t, p = t[ok], p[ok]
    empty = Edges(np.empty(0), np.empty(0, dtype=int), np.empty(0), np.empty(0))
    if t.size < 4:
        return empty
    h = median_interval(t)
    plateau = 5.0 * h if min_plateau_s is None else float(min_plateau_s)
    k = max(1, int(round(plateau / h)))
    rise_half = 0.2 * plateau
    n_grid = int(math.floor((t[-1] - t[0]) / h)) + 1
    if n_grid < 2 * k + 2:
        return empty
    grid = t[0] + h * np.arange(n_grid)
    g = resample(t, p, grid, gap_factor=gap_factor, min_coverage=0.5)
    mb, sb, ma, sa = _box_means(g, k)
    d = ma - mb
    if threshold_w is None:
        dg = np.diff(g)
        dg = dg[np.isfinite(dg)]
        if dg.size == 0:
            return empty
        sigma = 1.4826 * float(np.median(np.abs(dg - np.median(dg)))) / math.sqrt(2.0)
        lo, hi = np.nanpercentile(g, [1, 99])
        threshold_w = max(8.0 * sigma * math.sqrt(2.0 / k), 0.2 * float(hi - lo), 1e-12)
    ad = np.where(np.isfinite(d), np.abs(d), 0.0)
    peak = (ad >= threshold_w) & (ad == maximum_filter1d(ad, size=2 * k + 1, mode="constant"))
    peak &= (sb < flatness * ad) & (sa < flatness * ad)
    cand = np.flatnonzero(peak)
    if cand.size == 0:
        return empty
    # equal neighbouring maxima (flat tops of |d|): keep the first of each run
    keep = np.ones(cand.size, dtype=bool)
    keep[1:] = np.diff(cand) > k
    cand = cand[keep]

    t_edge, sgn, before, after = [], [], [], []
    for i in cand:
        level_b, level_a = mb[i], ma[i]
        s = 1 if level_a > level_b else -1
        mid = 0.5 * (level_b + level_a)
        tc = grid[i] + 0.5 * h
        j0 = int(np.searchsorted(t, tc - k * h, "left"))
        j1 = int(np.searchsorted(t, tc + k * h, "right"))
        seg_t, seg_p = t[j0:j1], s * (p[j0:j1] - mid)
        if seg_t.size < 2:
            continue
        cross = np.flatnonzero((seg_p[:-1] < 0) & (seg_p[1:] >= 0))
        if cross.size == 0:
            continue
        dt_c = seg_t[cross + 1] - seg_t[cross]
        frac = -seg_p[cross] / (seg_p[cross + 1] - seg_p[cross])
        tx = seg_t[cross] + frac * dt_c
        best = int(np.argmin(np.abs(tx - tc)))
        if dt_c[best] > gap_factor * h:
            continue
        # sharp: most of the step happens within +-rise_half of the crossing
        lo_hi = np.interp([tx[best] - rise_half, tx[best] + rise_half], seg_t, seg_p)
        if lo_hi[1] - lo_hi[0] < sharpness * abs(level_a - level_b):
            continue
        t_edge.append(float(tx[best]))
        sgn.append(s)
        before.append(level_b)
        after.append(level_a)
    return Edges(
        np.asarray(t_edge), np.asarray(sgn, dtype=int), np.asarray(before), np.asarray(after)
    )


def _match_edges(ref: Edges, cand: Edges, lag0: float, tol: float) -> np.ndarray:
    """Offsets t_cand - t_ref (s) of candidate edges matched to the nearest reference
    edge of the same sign within ``tol`` of the expected ``t_cand - lag0``."""
    out = []
    for s in (1, -1):
        tr = np.sort(ref.t_s[ref.sign == s])
        tc = cand.t_s[cand.sign == s]
        if tr.size == 0 or tc.size == 0:
            continue
        want = tc - lag0
        j = (
            np.clip(np.searchsorted(tr, want), 1, tr.size - 1)
            if tr.size > 1
            else np.zeros(tc.size, int)
        )
        if tr.size > 1:
            left = tr[j - 1]
            right = tr[j]
            near = np.where(np.abs(want - left) <= np.abs(right - want), left, right)
        else:
            near = np.full(tc.size, tr[0])
        ok = np.abs(near - want) <= tol
        out.append(tc[ok] - near[ok])
    return np.concatenate(out) if out else np.empty(0)


# ----------------------------------------------------------------------------- lag


@dataclass(frozen=True)
class LagResult:
    """Lag of a candidate trace relative to a reference (s).

    ``lag_s > 0``: the candidate's events appear later; reference time = ``t - lag_s``.
    ``corr`` is the peak normalised cross-correlation (of the differenced series unless
    the raw levels were used);
    ``corr_before`` / ``corr_after`` the Pearson correlation of the power levels on the
    common grid without / with the shift.  ``method`` is ``"xcorr"`` or ``"edges"``
    (median offset of ``n_edges`` matched step edges, ``ci_s`` its 95 % interval); for
    ``"xcorr"`` ``ci_s`` is +-half a grid step around the refined peak.  ``quality`` is
    ``"good"``, ``"weak"`` (peak correlation < 0.3), ``"at_bound"`` (peak at
    +-``max_lag_s``: widen it) or ``"none"`` (nothing to correlate, e.g. a constant
    trace; ``lag_s`` is then 0 and ``method`` ``"none"``).
    """

    lag_s: float
    corr: float
    method: str
    step_s: float
    ci_s: tuple[float, float]
    n_edges: int = 0
    lag_xcorr_s: float = math.nan
    corr_before: float = math.nan
    corr_after: float = math.nan
    quality: str = "good"
    edge_offsets_s: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    def apply(self, t_cand: np.ndarray) -> np.ndarray:
        """Candidate stamps mapped onto the reference clock: ``t - lag_s`` (s)."""
        return align(t_cand, self.lag_s)


def _masked_ncc(r: np.ndarray, c: np.ndarray, k_max: int, min_frac: float = 0.25) -> np.ndarray:
    """Normalised cross-correlation ``ncc[k + k_max]`` of r[i] with c[i + k], k in
    [-k_max, k_max], where ``c`` holds ``len(r) + 2 k_max`` values (c[j] is at grid
    index j - k_max).  NaN-aware (Pearson over the pairs where both are finite)."""
    m = c.size
    mr = np.isfinite(r)
    mc = np.isfinite(c)
    # centre and scale for numerical accuracy (Pearson is invariant to both)
    rv = r[mr]
    cv = c[mc]
    if rv.size < 3 or cv.size < 3:
        return np.full(2 * k_max + 1, np.nan)
    r0 = np.where(mr, (r - rv.mean()) / (rv.std() or 1.0), 0.0)
    c0 = np.where(mc, (c - cv.mean()) / (cv.std() or 1.0), 0.0)
    nfft = sfft.next_fast_len(m, real=True)

    def f(x: np.ndarray) -> np.ndarray:
        return sfft.rfft(x, nfft, workers=-1)

    fr, fr2, fmr = f(r0), f(r0 * r0), f(mr.astype(float))
    fc, fc2, fmc = f(c0), f(c0 * c0), f(mc.astype(float))

    def xc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return sfft.irfft(np.conj(a) * b, nfft, workers=-1)[: 2 * k_max + 1]

    cnt = np.rint(xc(fmr, fmc))
    sr = xc(fr, fmc)
    sc = xc(fmr, fc)
    srr = xc(fr2, fmc)
    scc = xc(fmr, fc2)
    src = xc(fr, fc)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = src - sr * sc / cnt
        vr = srr - sr * sr / cnt
        vc = scc - sc * sc / cnt
        out = cov / np.sqrt(vr * vc)
    min_n = max(3.0, min_frac * min(float(mr.sum()), float(mc.sum())))
    out[(cnt < min_n) | ~(vr > 1e-12 * cnt) | ~(vc > 1e-12 * cnt)] = np.nan
    return np.clip(out, -1.0, 1.0)


def _robust_location(x: np.ndarray) -> tuple[float, float]:
    """Interquartile (25 %-trimmed) mean of x and the half-width of its ~95 % interval.

    Edge-time errors of a sampled ramp are spread almost uniformly over a sample
    period, where a trimmed mean is far more efficient than the median; trimming keeps
    it robust to the odd mismatched edge."""
    xs = np.sort(x)
    n = xs.size
    cut = int(0.25 * n)
    core = xs[cut : n - cut] if n - 2 * cut >= 1 else xs
    est = float(core.mean())
    if n < 2:
        return est, math.inf
    # winsorised variance gives the standard error of the trimmed mean
    w = np.clip(xs, core[0], core[-1])
    se = float(w.std(ddof=1)) / ((core.size / n) * math.sqrt(n))
    return est, 1.96 * se


def _parabolic(y: np.ndarray, i: int) -> float:
    """Sub-sample offset (-0.5..0.5) of the peak at index i from a parabola through
    its neighbours; 0 where a neighbour is missing."""
    if i <= 0 or i >= y.size - 1:
        return 0.0
    a, b, c = y[i - 1], y[i], y[i + 1]
    den = a - 2.0 * b + c
    if not (np.isfinite(a) and np.isfinite(c)) or den >= 0:
        return 0.0
    return float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return math.nan
    a, b = x[ok] - x[ok].mean(), y[ok] - y[ok].mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / den if den > 0 else math.nan


def estimate_lag(
    t_ref: np.ndarray,
    p_ref: np.ndarray,
    t_cand: np.ndarray,
    p_cand: np.ndarray,
    max_lag_s: float = 30.0,
    step_s: float | None = None,
    *,
    differenced: bool | None = None,
    refine_edges: bool = True,
    min_edges: int = 3,
    min_plateau_s: float | None = None,
    gap_factor: float = GAP_FACTOR,
) -> LagResult:
    """Lag (s) of the candidate power trace relative to the reference.

    Both traces (s, W; any sample rates, NaN and gaps allowed) are averaged onto one
    uniform grid of ``step_s`` (default: the slower trace's median interval), differenced
    (``True``; ``False``: raw levels; ``None``: differenced, falling back to levels when
    that aligns the levels better after a weak peak < 0.5), and cross-correlated over lags within ``+-max_lag_s`` by FFT;
    the peak is refined by a parabola.  With ``refine_edges``, step edges are detected in
    both native traces (plateaus of ``min_plateau_s``, default 5 slow intervals), matched
    around that lag, and when at least ``min_edges`` match the lag becomes the median of
    their offsets.  Positive lag: candidate events appear later; apply with
    ``align(t_cand, lag_s)``.
    """
    tr, pr = paired_trace(t_ref, p_ref, "t_ref", "p_ref")
    tc, pc = paired_trace(t_cand, p_cand, "t_cand", "p_cand")
    if not (max_lag_s > 0 and math.isfinite(max_lag_s)):
        raise ValueError("max_lag_s must be a positive number of seconds")
    h_r, h_c = median_interval(tr), median_interval(tc)
    h = float(step_s) if step_s is not None else max(h_r, h_c)
    if not (h > 0 and math.isfinite(h)):
        raise ValueError("step_s must be a positive number of seconds")
    k_max = int(math.ceil(max_lag_s / h))
    # reference grid over the part of the reference that the candidate can overlap
    t0 = max(tr[0], tc[0] - max_lag_s)
    t1 = min(tr[-1], tc[-1] + max_lag_s)
    if t1 - t0 < 4 * h:
        raise ValueError(
            "reference and candidate traces do not overlap in time (within max_lag_s); "
            "check that both use one clock or raise max_lag_s"
        )
    n = int(math.floor((t1 - t0) / h)) + 1
    grid = t0 + h * np.arange(n)
    gc = t0 + h * np.arange(-k_max, n + k_max)
    r = resample(tr, pr, grid, gap_factor=gap_factor)
    c = resample(tc, pc, gc, gap_factor=gap_factor)

    def xcorr_peak(use_diff: bool) -> tuple[float, float, int]:
        rs, cs = (np.diff(r), np.diff(c)) if use_diff else (r, c)
        ncc = _masked_ncc(rs, cs, k_max)
        if not np.any(np.isfinite(ncc)):
            return math.nan, math.nan, -1
        i = int(np.nanargmax(ncc))
        # a periodic load (square wave) correlates almost as well one period away: among
        # local maxima within 10 % of the best, take the smallest |lag| (meter delays are
        # short compared with a load's period)
        z = np.where(np.isfinite(ncc), ncc, -np.inf)
        local = np.flatnonzero((z[1:-1] >= z[:-2]) & (z[1:-1] >= z[2:])) + 1
        close = local[z[local] >= z[i] - 0.1 * abs(z[i])]
        if close.size:
            i = int(close[np.argmin(np.abs(close - k_max))])
        edge = 1 if i in (0, ncc.size - 1) else 0
        return (i - k_max + _parabolic(ncc, i)) * h, float(ncc[i]), edge

    def level_corr(lag: float) -> float:
        return _pearson(r, resample(tc - lag, pc, grid, gap_factor=gap_factor))

    def flat(x: np.ndarray) -> bool:
        v = x[np.isfinite(x)]
        return v.size < 3 or float(np.ptp(v)) <= 1e-9 * float(np.max(np.abs(v)))

    lag_x, corr, at_bound = (
        (math.nan, math.nan, 0) if flat(r) or flat(c) else xcorr_peak(differenced is not False)
    )
    if differenced is None and math.isfinite(lag_x) and not corr >= 0.5:
        # edges are weak or absent (smooth load, trace covering only busy phases):
        # keep whichever peak, of differenced or raw levels, aligns the levels better
        lag_l, corr_l, bound_l = xcorr_peak(False)
        if math.isfinite(lag_l) and (
            not math.isfinite(lag_x) or level_corr(lag_l) > level_corr(lag_x)
        ):
            lag_x, corr, at_bound = lag_l, corr_l, bound_l
    if not math.isfinite(lag_x):
        # a constant trace (e.g. a TDP-based estimate) has nothing to align on
        return LagResult(
            lag_s=0.0,
            corr=math.nan,
            method="none",
            step_s=h,
            ci_s=(math.nan, math.nan),
            corr_before=_pearson(r, c[k_max : k_max + n]),
            corr_after=math.nan,
            quality="none",
        )
    quality = "good"
    if at_bound:
        quality = "at_bound"
    elif corr < 0.3:
        quality = "weak"

    lag, method, ci, n_e = lag_x, "xcorr", (lag_x - h / 2, lag_x + h / 2), 0
    offsets = np.empty(0)
    if refine_edges:
        plateau = 5.0 * max(h_r, h_c) if min_plateau_s is None else float(min_plateau_s)
        e_r = detect_edges(tr, pr, min_plateau_s=plateau, gap_factor=gap_factor)
        e_c = detect_edges(tc, pc, min_plateau_s=plateau, gap_factor=gap_factor)
        if len(e_r) and len(e_c):
            tol = max(2.0 * h, 0.5 * plateau)
            offsets = _match_edges(e_r, e_c, lag_x, tol)
            if offsets.size >= min_edges:
                est, half = _robust_location(offsets)
                lag, method, ci, n_e = est, "edges", (est - half, est + half), int(offsets.size)
                if quality == "weak" and n_e >= 2 * min_edges:
                    quality = "good"

    corr_before = _pearson(r, c[k_max : k_max + n])
    corr_after = level_corr(lag)
    return LagResult(
        lag_s=float(lag),
        corr=corr,
        method=method,
        step_s=h,
        ci_s=(float(ci[0]), float(ci[1])),
        n_edges=n_e,
        lag_xcorr_s=float(lag_x),
        corr_before=corr_before,
        corr_after=corr_after,
        quality=quality,
        edge_offsets_s=offsets,
    )


# ----------------------------------------------------------------------------- drift


@dataclass(frozen=True)
class DriftResult:
    """Linear clock model ``lag(t) = lag_s + drift_ppm * 1e-6 * (t - t0_s)`` where t is
    reference time (s).  Per-segment estimates are kept (``segment_*``); ``used`` marks
    those in the fit, ``drift_ci_ppm`` is a 95 % interval of the slope."""

    lag_s: float
    drift_ppm: float
    t0_s: float
    drift_ci_ppm: tuple[float, float]
    residual_s: float
    segment_t_s: np.ndarray
    segment_lag_s: np.ndarray
    segment_corr: np.ndarray
    used: np.ndarray

    def apply(self, t_cand: np.ndarray) -> np.ndarray:
        """Candidate stamps mapped onto the reference clock (s)."""
        return align(t_cand, self.lag_s, self.drift_ppm, self.t0_s)


def estimate_drift(
    t_ref: np.ndarray,
    p_ref: np.ndarray,
    t_cand: np.ndarray,
    p_cand: np.ndarray,
    max_lag_s: float = 30.0,
    n_segments: int | None = None,
    segment_s: float | None = None,
    step_s: float | None = None,
    *,
    min_corr: float = 0.2,
    gap_factor: float = GAP_FACTOR,
    **lag_kwargs: object,
) -> DriftResult:
    """Clock drift (ppm) of a candidate that keeps its own time.

    The overlap is cut into ``n_segments`` (default 8) pieces, or pieces of
    ``segment_s``; the lag of each is estimated with :func:`estimate_lag`; a line
    ``lag(t)`` is fitted to the segment lags (least squares, then again without
    segments off by more than 3 robust sigmas).  Segments with peak correlation below
    ``min_corr`` and no matched edges are not used.  Needs >= 3 usable segments.
    """
    tr, pr = paired_trace(t_ref, p_ref, "t_ref", "p_ref")
    tc, pc = paired_trace(t_cand, p_cand, "t_cand", "p_cand")
    t0 = max(tr[0], tc[0])
    t1 = min(tr[-1], tc[-1])
    if t1 <= t0:
        raise ValueError("reference and candidate traces do not overlap in time")
    if segment_s is not None:
        n_seg = max(1, int((t1 - t0) // segment_s))
    else:
        n_seg = 8 if n_segments is None else int(n_segments)
    if n_seg < 3:
        raise ValueError(
            "drift needs at least 3 segments; record longer or use shorter segments"
        )
    bounds = np.linspace(t0, t1, n_seg + 1)
    seg_t, seg_lag, seg_corr, ok = [], [], [], []
    for a, b in zip(bounds[:-1], bounds[1:]):
        ir = slice(int(np.searchsorted(tr, a)), int(np.searchsorted(tr, b, "right")))
        ic = slice(
            int(np.searchsorted(tc, a - max_lag_s)),
            int(np.searchsorted(tc, b + max_lag_s, "right")),
        )
        seg_t.append(0.5 * (a + b))
        try:
            res = estimate_lag(
                tr[ir],
                pr[ir],
                tc[ic],
                pc[ic],
                max_lag_s,
                step_s,
                gap_factor=gap_factor,
                **lag_kwargs,
            )  # type: ignore[arg-type]
        except ValueError:
            seg_lag.append(math.nan)
            seg_corr.append(math.nan)
            ok.append(False)
            continue
        seg_lag.append(res.lag_s)
        seg_corr.append(res.corr)
        ok.append(res.quality != "at_bound" and (res.corr >= min_corr or res.method == "edges"))
    st, sl, sc = np.asarray(seg_t), np.asarray(seg_lag), np.asarray(seg_corr)
    used = np.asarray(ok) & np.isfinite(sl)
    if used.sum() < 3:
        raise ValueError(
            f"only {int(used.sum())} of {n_seg} segments gave a usable lag; drift needs 3 "
            "(use a load with more variation, longer segments or a larger max_lag_s)"
        )
    tm = 0.5 * (t0 + t1)
    for _ in range(2):
        line = ols(st[used] - tm, sl[used])
        res_all = sl - (line.intercept + line.slope * (st - tm))
        r = res_all[used]
        sig = 1.4826 * float(np.median(np.abs(r - np.median(r))))
        new = used & (np.abs(res_all) <= max(3.0 * sig, 1e-9))
        if new.sum() < 3 or np.array_equal(new, used):
            break
        used = new
    # the slope's 95 % interval is OLS's t interval (n - 2 df)
    line = ols(st[used] - tm, sl[used])
    slope, icpt = line.slope, line.intercept
    lo, hi = line.slope_ci
    return DriftResult(
        lag_s=float(icpt),
        drift_ppm=float(slope * 1e6),
        t0_s=float(tm),
        drift_ci_ppm=(float(lo * 1e6), float(hi * 1e6)),
        residual_s=float(line.extra["residual_sd"]),
        segment_t_s=st,
        segment_lag_s=sl,
        segment_corr=sc,
        used=used,
    )


def align(
    t_cand: np.ndarray, lag_s: float, drift_ppm: float = 0.0, t0_s: float = 0.0
) -> np.ndarray:
    """Candidate stamps (s) on the reference clock.

    The model is ``t_cand = t_ref + lag(t_ref)`` with ``lag(t) = lag_s + drift_ppm*1e-6
    * (t - t0_s)``, inverted exactly: ``t_ref = t0_s + (t_cand - t0_s - lag_s) / (1 +
    drift_ppm*1e-6)``.  With no drift this is ``t_cand - lag_s``.
    """
    t = np.asarray(t_cand, dtype=float)
    if drift_ppm == 0.0:
        return t - lag_s
    return t0_s + (t - t0_s - lag_s) / (1.0 + drift_ppm * 1e-6)
