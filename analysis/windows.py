"""Common comparison windows and the energy (J) each meter saw in them.

Meters are compared on energy over common windows, not on single power samples.  A
window is a pair ``(t0, t1)`` in seconds on the (aligned) session clock.  Energy comes
from the cumulative counter interpolated at the window edges when it is fine enough,
else from integrating reported power, each sample holding over the time it stands for.
Windows that touch a gap in a meter's trace, or lie outside its coverage, get NaN
(:func:`window_energies`); over a longer span -- a phase, a baseline -- only the measured
parts count (:func:`span_energy`, :func:`mean_power_w`), and a meter's dynamic energy is
what it measured above its idle power (:func:`dynamic_energy`).  Pure functions on numpy
arrays.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from analysis.sampling import GAP_FACTOR, as_1d, bin_integrals, find_gaps, paired_trace

__all__ = [
    "MAX_WINDOWS",
    "check_window_count",
    "choose_window_s",
    "common_coverage",
    "common_windows",
    "dynamic_energy",
    "free_spans",
    "mean_power_w",
    "span_energy",
    "window_energies",
]


def choose_window_s(
    intervals_s: Sequence[float | None],
    windows_s: Sequence[float | None] = (),
    override_s: float | None = None,
    *,
    interval_factor: float = 10.0,
    window_factor: float = 5.0,
    min_s: float = 1.0,
) -> float:
    """Comparison window length (s) set by the slowest meter.

    ``max(interval_factor x slowest update interval, window_factor x largest averaging
    window, min_s)``, so each window holds many samples of every meter and a meter's
    own averaging smears only a small part of it.  ``override_s`` (if given) wins.
    ``None`` entries (unknown) are ignored.
    """
    if override_s is not None:
        if not (math.isfinite(override_s) and override_s > 0):
            raise ValueError(
                f"window override must be a positive number of seconds, got {override_s!r}"
            )
        return float(override_s)
    iv = [float(x) for x in intervals_s if x is not None]
    wv = [float(x) for x in windows_s if x is not None]
    for name, vals in (("update interval", iv), ("averaging window", wv)):
        if any(not (math.isfinite(v) and v >= 0) for v in vals):
            raise ValueError(f"every meter {name} must be a finite number >= 0 s; got {vals}")
    out = max(
        interval_factor * max(iv, default=0.0),
        window_factor * max(wv, default=0.0),
        float(min_s),
    )
    return float(out)


def common_coverage(
    traces_t_s: Iterable[np.ndarray],
    gap_factor: float = GAP_FACTOR,
    *,
    gaps: Iterable[Iterable[tuple[float, float]] | None] | None = None,
) -> tuple[float, float, np.ndarray]:
    """``(start_s, end_s, gaps)`` covered by every trace: the latest start, the earliest
    end and the union of all traces' gaps (shape (k, 2), merged, sorted).

    A trace's gaps are the intervals over ``gap_factor`` median intervals of its stamps,
    unless ``gaps`` gives them (one list of ``(t0, t1)`` per trace, None: found from the
    stamps), as for a channel that knows its disconnections.
    """
    traces = list(traces_t_s)
    known = list(gaps) if gaps is not None else [None] * len(traces)
    if len(known) != len(traces):
        raise ValueError(f"common_coverage got {len(known)} gap lists for {len(traces)} traces")
    starts, ends, spans = [], [], []
    for t, g in zip(traces, known):
        ta = as_1d(t, "t_s")
        if ta.size == 0:
            raise ValueError("a meter trace is empty; it has no coverage to compare")
        starts.append(float(ta[0]))
        ends.append(float(ta[-1]))
        spans.append(find_gaps(ta, gap_factor) if g is None else np.asarray(list(g), dtype=float).reshape(-1, 2))
    if not starts:
        raise ValueError("common_coverage needs at least one trace")
    return max(starts), min(ends), _merge(np.concatenate(spans))


def _merge(spans: np.ndarray) -> np.ndarray:
    """Union of closed spans, sorted; shape (k, 2)."""
    s = np.asarray(spans, dtype=float).reshape(-1, 2)
    if s.shape[0] == 0:
        return s
    s = s[np.argsort(s[:, 0])]
    out = [list(s[0])]
    for a, b in s[1:]:
        if a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return np.asarray(out)


MAX_WINDOWS = 200_000  # windows a comparison may cut (memory stays in the tens of MB)


def check_window_count(window_s: float, span_s: float) -> None:
    """ValueError (one line) if ``span_s`` seconds cut into ``window_s`` windows would be
    more than MAX_WINDOWS: a typo such as ``--window 1e-6`` must not exhaust memory."""
    n = span_s / window_s if window_s > 0 else math.inf
    if n > MAX_WINDOWS:
        raise ValueError(f"--window {window_s:g} s would cut {n:.3g} windows from {span_s:.0f} s; "
                         f"at most {MAX_WINDOWS:,}: pass a longer --window")


def common_windows(
    start_s: float,
    end_s: float,
    window_s: float,
    exclude: Iterable[tuple[float, float]] = (),
    trim_s: float = 0.0,
    boundaries_s: Iterable[float] = (),
) -> np.ndarray:
    """Consecutive windows ``(t0, t1)`` of ``window_s`` (s) over ``[start_s, end_s]``.

    Excluded spans (gaps of any meter, idle phases, ...) and ``trim_s`` seconds after
    each phase boundary in ``boundaries_s`` (ramps where meters' averaging windows
    disagree most) are skipped; windows restart at the end of each skipped span and a
    left-over shorter than ``window_s`` is dropped.  Returns shape (N, 2).
    """
    if not (math.isfinite(window_s) and window_s > 0):
        raise ValueError(f"window_s must be a positive number of seconds, got {window_s!r}")
    if not (math.isfinite(start_s) and math.isfinite(end_s)):
        raise ValueError("common_windows needs finite start_s and end_s")
    if trim_s < 0:
        raise ValueError("trim_s must be >= 0 s")
    cut = [(float(a), float(b)) for a, b in exclude]
    cut += [(float(b), float(b) + trim_s) for b in boundaries_s if trim_s > 0]
    if any(b < a for a, b in cut):
        raise ValueError(
            "an excluded span ends before it starts; give spans as (t0, t1) with t0 <= t1"
        )
    spans = free_spans(start_s, end_s, cut)
    check_window_count(window_s, sum(b - a for a, b in spans))
    out = []
    for a, b in spans:
        n = int(math.floor((b - a) / window_s + 1e-9))
        if n > 0:
            t0 = a + window_s * np.arange(n)
            out.append(np.column_stack([t0, t0 + window_s]))
    return np.concatenate(out) if out else np.empty((0, 2))


def free_spans(start_s: float, end_s: float, exclude: Iterable[tuple[float, float]] = ()
               ) -> list[tuple[float, float]]:
    """The parts ``(a, b)`` (s) of ``[start_s, end_s]`` outside every excluded span, in
    order; spans of no length are left out."""
    removed = _merge(np.asarray(list(exclude), dtype=float).reshape(-1, 2))
    spans, cur = [], float(start_s)
    for a, b in removed:
        if b <= cur:
            continue
        if a >= end_s:
            break
        if a > cur:
            spans.append((cur, float(min(a, end_s))))
        cur = max(cur, float(b))
    if cur < end_s:
        spans.append((cur, float(end_s)))
    return [(a, b) for a, b in spans if b - a > 0]


def _as_windows(bounds_s: np.ndarray) -> np.ndarray:
    b = np.asarray(bounds_s, dtype=float)
    if b.ndim == 1:
        if b.size < 2:
            return np.empty((0, 2))
        if np.any(np.diff(b) < 0):
            raise ValueError("window edges must be non-decreasing")
        return np.column_stack([b[:-1], b[1:]])
    if b.ndim == 2 and b.shape[1] == 2:
        if np.any(b[:, 1] < b[:, 0]):
            raise ValueError("a window ends before it starts; give windows as (t0, t1)")
        return b
    raise ValueError("windows must be N+1 edges or an (N, 2) array of (t0, t1) in s")


def _touches(win: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """True for windows [u, v] that overlap any of the sorted, disjoint spans (g0, g1)."""
    if spans.shape[0] == 0:
        return np.zeros(win.shape[0], dtype=bool)
    j = np.searchsorted(spans[:, 0], win[:, 1], "left")  # spans starting before v
    has = j > 0
    g1 = spans[np.clip(j - 1, 0, None), 1]
    return has & (g1 > win[:, 0])


def window_energies(
    bounds_s: np.ndarray,
    t_s: np.ndarray,
    energy_j: np.ndarray | None = None,
    power_w: np.ndarray | None = None,
    *,
    power_window_s: float | None = None,
    energy_resolution_j: float | None = None,
    gap_factor: float = GAP_FACTOR,
    max_quantisation: float = 0.01,
    min_coverage: float = 1.0,
) -> np.ndarray:
    """Energy (J) one meter measured in each window.

    ``bounds_s``: N+1 edges or an (N, 2) array of ``(t0, t1)`` (s).  With a cumulative
    ``energy_j`` counter the energy is ``E(t1) - E(t0)``, E linearly interpolated at the
    edges; it is used unless its ``energy_resolution_j`` exceeds ``max_quantisation`` of
    the median window energy and ``power_w`` is there.  Otherwise ``power_w`` is
    integrated: each sample holds between the midpoints to its neighbours, centred on
    ``t - power_window_s/2`` when the meter reports the average over ``power_window_s``
    ending at its stamp.  NaN for windows outside the trace, touching a gap (interval
    over ``gap_factor`` median intervals) or a counter reset.  With ``min_coverage`` < 1
    a power-integrated window with some missing (NaN) samples is kept when that share
    of it is covered, its energy scaled up from the covered part.
    """
    win = _as_windows(bounds_s)
    out = np.full(win.shape[0], np.nan)
    if win.shape[0] == 0:
        return out
    if energy_j is None and power_w is None:
        raise ValueError("window_energies needs energy_j or power_w for the meter")
    e_out = None
    if energy_j is not None:
        t, e = paired_trace(t_s, energy_j, "t_s", "energy_j")
        ok = np.isfinite(e)
        t, e = t[ok], e[ok]
        if t.size >= 2:
            e_out = np.full(win.shape[0], np.nan)
            gaps = find_gaps(t, gap_factor)
            resets = np.flatnonzero(np.diff(e) < 0)
            if resets.size:
                gaps = _merge(np.concatenate([gaps, np.column_stack([t[resets], t[resets + 1]])]))
            inside = (win[:, 0] >= t[0]) & (win[:, 1] <= t[-1]) & ~_touches(win, gaps)
            e_out[inside] = np.interp(win[inside, 1], t, e) - np.interp(win[inside, 0], t, e)
            if power_w is None or energy_resolution_j is None:
                return e_out
            typical = np.nanmedian(e_out) if np.any(np.isfinite(e_out)) else 0.0
            if energy_resolution_j <= max_quantisation * abs(typical):
                return e_out
    t, p = paired_trace(t_s, power_w, "t_s", "power_w")
    if power_window_s:
        t = t - 0.5 * float(power_window_s)
    f, c = bin_integrals(t, p, win[:, 0], win[:, 1], gap_factor)
    width = win[:, 1] - win[:, 0]
    if not 0.0 < min_coverage <= 1.0:
        raise ValueError("min_coverage must be in (0, 1]")
    full = c >= width * (1.0 - 1e-9) - 1e-12
    out[full] = f[full]
    part = ~full & (c >= min_coverage * width) & (c > 0)
    out[part] = f[part] * width[part] / c[part]
    if e_out is not None:
        # a coarse counter still beats nothing where power is missing -- but only where its
        # resolution is small against the energy it reports (a 36 kJ register says 0 J for
        # a short window, which is no measurement)
        fill = ~np.isfinite(out) & np.isfinite(e_out)
        if energy_resolution_j is not None:
            fill &= energy_resolution_j <= max_quantisation * np.abs(np.where(np.isfinite(e_out), e_out, 0.0))
        out[fill] = e_out[fill]
    return out


def span_energy(
    span: tuple[float, float],
    t_s: np.ndarray,
    energy_j: np.ndarray | None = None,
    power_w: np.ndarray | None = None,
    *,
    coverage: tuple[float, float, Any] | None = None,
    complete: float = 0.0,
    **kwargs: Any,
) -> tuple[float, float]:
    """``(energy J, seconds measured)`` of one meter over ``span = (t0, t1)`` (s).

    Only the measured parts count: the span is clipped to the meter's ``coverage``
    ``(start_s, end_s, gaps)`` (default: :func:`common_coverage` of its stamps) and split
    around the gaps, each part's energy comes from :func:`window_energies` (keyword options
    as there) and a part it cannot measure (a counter reset, missing samples) is left out
    -- gaps are not filled: the caller sees how much was measured.  ``(NaN, 0.0)`` when
    nothing is; the energy is NaN also when under ``complete`` of the span is measured (a
    total over a phase with a hole is no total).
    """
    if np.size(t_s) < 2:
        return math.nan, 0.0
    start, end, gaps = coverage if coverage is not None else _coverage_of(t_s, kwargs)
    t0, t1 = span
    parts = free_spans(max(t0, start), min(t1, end), gaps)
    if not parts:
        return math.nan, 0.0
    e = window_energies(np.asarray(parts, float), t_s, energy_j, power_w, **kwargs)
    ok = np.isfinite(e)
    if not ok.any():
        return math.nan, 0.0
    covered = float(sum(b - a for (a, b), good in zip(parts, ok) if good))
    if complete and covered < complete * (t1 - t0):
        return math.nan, covered
    return float(e[ok].sum()), covered


def _coverage_of(t_s: np.ndarray, kwargs: dict[str, Any]) -> tuple[float, float, np.ndarray]:
    """A trace's own coverage, its gaps found as :func:`window_energies` finds them."""
    return common_coverage([t_s], kwargs.get("gap_factor", GAP_FACTOR))


def mean_power_w(
    spans: Iterable[tuple[float, float]],
    t_s: np.ndarray,
    energy_j: np.ndarray | None = None,
    power_w: np.ndarray | None = None,
    *,
    coverage: tuple[float, float, Any] | None = None,
    **kwargs: Any,
) -> float:
    """Mean power (W) over the measured parts of the spans (s), e.g. a meter's idle
    baseline: the energy measured in them / the seconds measured (see :func:`span_energy`,
    whose options it takes); NaN when nothing is measured."""
    if coverage is None and np.size(t_s) >= 2:
        coverage = _coverage_of(t_s, kwargs)  # once for all the spans
    e, dur = 0.0, 0.0
    for span in spans:
        v, covered = span_energy(span, t_s, energy_j, power_w, coverage=coverage, **kwargs)
        if math.isfinite(v) and covered > 0:
            e += v
            dur += covered
    return e / dur if dur > 0 else math.nan


def dynamic_energy(energy_j: float, duration_s: float, idle_power_w: float) -> float:
    """Idle-subtracted (dynamic) energy (J): ``energy_j - idle_power_w x duration_s``, what
    a meter measured over ``duration_s`` seconds above its idle power (W)."""
    if not math.isfinite(idle_power_w):
        raise ValueError(
            "idle power is not a finite number of W; record an idle baseline first"
        )
    return energy_j - idle_power_w * duration_s
