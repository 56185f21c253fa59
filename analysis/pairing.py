"""Stage 3: common comparison windows and the reference/candidate pairs on them.

A candidate is one channel or a sum of channels (``"rapl.package-0+nvml.0"``).  Each
component is shifted onto the reference clock by its lag; the pairs are window mean
powers (W = window energy J / window length s) over windows where every channel has
data, skipping gaps and the ramps after long phases' boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analysis.caveats import MIN_WINDOWS
from analysis.series import Series, series_energies, to_reference_clock
from analysis.windows import choose_window_s, common_coverage, common_windows

__all__ = ["RAMP_TRIM_S", "Pairing", "comparison_cuts", "default_window_s", "paired_windows",
           "parse_candidate", "split_candidate"]

RAMP_TRIM_S = 2.0  # skip this long after each phase boundary (load ramps, fan spin-up)


@dataclass
class Pairing:
    """One candidate's pairs: windows ``(t0, t1)`` (s, shape (N, 2)), the reference's and
    each component's window mean power (W), and their sum, the candidate (W).  ``error``
    (one or more lines) when no windows could be formed."""

    candidate: str
    components: list[str]
    windows_s: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    reference_w: np.ndarray = field(default_factory=lambda: np.empty(0))
    component_w: dict[str, np.ndarray] = field(default_factory=dict)
    error: str | None = None

    @property
    def candidate_w(self) -> np.ndarray:
        """The candidate's window mean power (W): the sum of its components'."""
        return np.sum(list(self.component_w.values()), axis=0) if self.component_w else np.array([])


def split_candidate(expr: str) -> list[str]:
    """``"rapl.package-0+nvml.0"`` -> its channel ids; a sum of meters is one candidate."""
    parts = [p.strip() for p in expr.split("+")]
    if not all(parts):
        raise ValueError(f"candidate {expr!r} has an empty term (expected CHANNEL or CHANNEL+CHANNEL...)")
    return parts


def parse_candidate(expr: str, known: list[str]) -> list[str]:
    """The channel ids of ``expr``, each checked against ``known`` (ValueError naming the channels)."""
    parts = split_candidate(expr)
    missing = [p for p in parts if p not in known]
    if missing:
        raise ValueError(f"unknown channel {missing[0]!r} in candidate {expr!r}; channels: {', '.join(known)}")
    return parts


def default_window_s(chans: list[Series]) -> float:
    """The comparison window (s): from the slowest meter (see choose_window_s), shortened for
    short sessions so that about 20 windows fit (twice the minimum the caveats ask for,
    :data:`analysis.caveats.MIN_WINDOWS`: trims and gaps take some), but never under 2 of
    the slowest meter's update intervals or averaging windows."""
    chosen = choose_window_s([s.interval_s for s in chans], [s.window_s for s in chans])
    span = min(s.t_s[-1] for s in chans) - max(s.t_s[0] for s in chans)
    slowest = max(max(s.interval_s, s.window_s or 0.0) for s in chans)
    return float(min(chosen, max(2.0 * slowest, span / (2.0 * MIN_WINDOWS))))


def comparison_cuts(phases: list[tuple[str, float, float]], window_s: float, chans: list[Series]
                    ) -> tuple[list[float], list[tuple[float, float]]]:
    """Phase boundaries (s) to trim after, and every channel's gaps (s) to skip."""
    # trim ramps after the boundaries of long phases (baselines, the workload, epochs); the
    # edges of short phases (a square wave's half periods) are averaged over by the windows
    boundaries = sorted({t for _, a, b in phases if b - a >= 2 * window_s for t in (a, b)})
    return boundaries, [g for s in chans for g in s.gaps]


def paired_windows(ref: Series, comps: dict[str, Series], lags: dict[str, Any], window_s: float,
                   boundaries: list[float], exclude: list[tuple[float, float]]
                   ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Common windows where every channel has data: (windows (N, 2) s, reference W, {component: W}).

    Components are shifted onto the reference clock by their lag; W is window energy / length.
    """
    # every channel's first and last stamp on the reference clock; the gaps to skip go with the reference
    ends = [ref.t_s[[0, -1]], *(to_reference_clock(s.t_s[[0, -1]], lags[c]) for c, s in comps.items())]
    start, end, gaps = common_coverage(ends, gaps=[exclude, *([()] * len(comps))])
    # the ramp after a boundary lasts about the meters' averaging windows, which are well
    # under the comparison window: trim half a window, at most RAMP_TRIM_S
    trim = min(RAMP_TRIM_S, 0.5 * window_s)
    wins = common_windows(start, end, window_s, exclude=gaps, boundaries_s=boundaries, trim_s=trim)
    ref_e = series_energies(ref, wins)
    comp_e = {c: series_energies(s, wins, lags[c]) for c, s in comps.items()}
    ok = np.isfinite(ref_e)
    for e in comp_e.values():
        ok &= np.isfinite(e)
    widths = wins[:, 1] - wins[:, 0]
    return wins[ok], ref_e[ok] / widths[ok], {c: e[ok] / widths[ok] for c, e in comp_e.items()}
