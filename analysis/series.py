"""Stage 1: a channel reduced to what the analysis needs -- power and energy arrays.

A :class:`Series` holds one channel's good samples on the session clock (s), its
reported power (W) and continuous cumulative energy (J) where the meter has them, its
best power estimate (W) and the spans with no data.  :func:`covered_energy` is the
energy (J) a series measured over a span, gaps left out, and :func:`mean_power_over` its
mean power over spans: thin wrappers passing the series' arrays to
:func:`analysis.windows.span_energy` and :func:`analysis.windows.mean_power_w`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from analysis.align import align
from analysis.load import ChannelTrace
from analysis.sampling import GAP_FACTOR, find_gaps, power_series
from analysis.session_format import SEGMENT_BREAKS
from analysis.windows import common_coverage, mean_power_w, span_energy, window_energies

__all__ = ["Series", "continuous_counter", "covered_energy", "mean_power_over", "series_energies",
           "series_of", "to_reference_clock", "trace_gaps"]


@dataclass
class Series:
    """A channel reduced to what the analysis needs (times in s on the session clock)."""

    id: str
    t_s: np.ndarray  # stamps of OK samples (s)
    power_w: np.ndarray | None  # reported power at t_s (W; None if the meter has none)
    energy_j: np.ndarray | None  # cumulative energy at t_s (J), continuous across segments
    t_p: np.ndarray  # stamps of the best power estimate (s)
    p: np.ndarray  # best power estimate (W)
    use_counter: bool  # energies come from the counter (else from integrating power)
    gaps: list[tuple[float, float]]  # spans with no data (s)
    interval_s: float  # median sampling interval (s)
    window_s: float | None  # the meter's own averaging window (s)
    resolution_j: float | None  # the counter's resolution (J)

    def coverage(self) -> tuple[float, float, np.ndarray] | None:
        """(start s, end s, gaps (k, 2) s) the series measured; None under 2 samples."""
        if len(self.t_s) < 2:
            return None
        # reported power averages the window before its stamp: the trace covers [t0 - w/2, tN - w/2]
        half = 0.5 * (self.window_s or 0.0) if not self.use_counter else 0.0
        return common_coverage([self.t_s - half], gaps=[self.gaps])

    def energy_options(self) -> dict[str, Any]:
        """The meter's options to :func:`analysis.windows.window_energies` and the functions on it."""
        return {"power_window_s": self.window_s, "energy_resolution_j": self.resolution_j}


def continuous_counter(trace: ChannelTrace, ok: Any) -> np.ndarray | None:
    """Energy counter (J) made continuous across reconnect segments (each restarts at an
    arbitrary origin); None when the channel has no counter."""
    if "energy_j" not in ok or ok["energy_j"].isna().all():
        return None
    e = ok["energy_j"].to_numpy(float)
    seg = trace.segments()
    out = e.copy()
    offset = 0.0
    for s in np.unique(seg):
        idx = np.flatnonzero(seg == s)
        finite = e[idx][np.isfinite(e[idx])]
        out[idx] = e[idx] - (finite[0] if finite.size else 0.0) + offset
        offset = out[idx[-1]] if np.isfinite(out[idx[-1]]) else offset
    return out


def trace_gaps(trace: ChannelTrace) -> list[tuple[float, float]]:
    """Spans (s) with no data: across a disconnect (last OK sample before it to the first
    after), and silences (timeouts) longer than GAP_FACTOR intervals and 3 s."""
    fault = trace.data["fault"].to_numpy(bool)
    flags = trace.data["flag"].to_numpy()
    ok_idx = np.flatnonzero(~fault)
    if len(ok_idx) < 2:
        return []
    tt = trace.data["t_s"].to_numpy(float)[ok_idx]
    breaks = np.flatnonzero(fault & np.isin(flags, SEGMENT_BREAKS))
    after = np.searchsorted(ok_idx, breaks)
    after = after[(after > 0) & (after < len(ok_idx))]
    gaps = {(float(tt[i - 1]), float(tt[i])) for i in after}
    gaps |= {(float(a), float(b)) for a, b in find_gaps(tt, GAP_FACTOR, min_gap_s=3.0)}
    return sorted(gaps)


def series_of(trace: ChannelTrace) -> Series:
    """The :class:`Series` of one channel (its OK rows: values, suspect-but-valid included)."""
    ok = trace.ok
    t = ok["t_s"].to_numpy(float)
    power = ok["power_w"].to_numpy(float) if "power_w" in ok and not ok["power_w"].isna().all() else None
    energy = continuous_counter(trace, ok)
    res = trace.info.get("energy_resolution_j")
    window = trace.info.get("window_s")
    t_p, p = power_series(t, power_w=power, energy_j=energy, energy_resolution_j=res, window_s=window)
    dt = np.diff(t)
    interval = float(np.median(dt)) if len(dt) else float(trace.info.get("update_interval_s") or 1.0)
    span_e = float(energy[-1] - energy[0]) if energy is not None and len(energy) > 1 else 0.0
    use_counter = energy is not None and (power is None or not res or res <= 0.01 * abs(span_e))
    return Series(trace.id, t, power, energy, np.asarray(t_p, float), np.asarray(p, float), use_counter,
                  trace_gaps(trace), interval, window, res)


def to_reference_clock(t_s: np.ndarray, lag: Any) -> np.ndarray:
    """A candidate's stamps (s) on the reference clock: its lag and, if estimated, its drift.

    ``lag``: a :class:`analysis.lags.ChannelLag`, its ``to_dict()``, or None (no shift).
    """
    if not lag:
        return np.asarray(t_s, float)
    if not isinstance(lag, Mapping):
        return lag.apply(t_s)
    return align(t_s, lag["lag_s"], lag.get("drift_ppm") or 0.0, lag.get("t0_s") or 0.0)


def series_energies(s: Series, windows: np.ndarray, lag: Any = None) -> np.ndarray:
    """Energy (J) per window (rows t0, t1 in s) of ``s``, mapped onto the reference clock by ``lag``."""
    return np.asarray(window_energies(windows, to_reference_clock(s.t_s, lag), energy_j=s.energy_j,
                                      power_w=s.power_w, **s.energy_options()), float)


def covered_energy(s: Series, t0: float = -np.inf, t1: float = np.inf, *, complete: float = 0.0
                   ) -> tuple[float, float]:
    """(energy J, seconds covered) of ``s`` within [t0, t1] s, over the spans that have data.

    Gaps (disconnections, silences) are left out, not filled: the caller sees how much of
    the span was measured and decides what to say (or asks for NaN energy when under
    ``complete`` of it is).  See :func:`analysis.windows.span_energy`.
    """
    return span_energy((t0, t1), s.t_s, s.energy_j, s.power_w, coverage=s.coverage(), complete=complete,
                       **s.energy_options())


def mean_power_over(s: Series, spans: list[tuple[float, float]]) -> float | None:
    """Mean power (W) over the measured parts of ``spans`` (s); None when none is measured.
    See :func:`analysis.windows.mean_power_w`."""
    p = mean_power_w(spans, s.t_s, s.energy_j, s.power_w, coverage=s.coverage(), **s.energy_options())
    return p if math.isfinite(p) else None
