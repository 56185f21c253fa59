"""Stage 2: each candidate channel's lag (s) and clock drift (ppm) against the reference,
as applied to the analysis.

:func:`channel_lag` is the lag the pipeline applies: the cross-correlation / edge
estimate of :func:`analysis.align.estimate_lag`, kept only when it stands above noise
(else 0 s, and a warning says why), plus, for a channel on its own clock, a linear drift
(:func:`drift_correction`) when it is clearly there.  The result is a :class:`ChannelLag`;
``to_dict()`` gives the ``lags`` entry of ``summary.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from analysis.align import align, estimate_drift, estimate_lag
from analysis.series import Series

__all__ = ["MIN_DRIFT_PPM", "ChannelLag", "channel_lag", "drift_correction", "lag_without_drift"]

MIN_DRIFT_PPM = 100.0  # a smaller drift is left alone (a common quartz is within 50 ppm)


@dataclass
class ChannelLag:
    """The lag (s) applied to one channel, with what it rests on.

    ``lag_s``: applied (0 s when the estimate was not usable); ``estimate_s``: what the
    estimate said (None when it failed); ``corr*``: peak and level correlations;
    ``ci_s``: 95 % interval of the estimate (s).  Drift (own-clock channels only):
    ``drift_ppm`` applied (0 when not; None when never estimated), ``t0_s`` its origin
    (s, reference clock), ``drift_ci_ppm`` its 95 % interval, ``drift_estimate_ppm`` an
    estimate left unapplied, ``drift_note`` why none was estimated.
    """

    lag_s: float
    applied: bool
    method: str
    quality: str
    corr: float | None = None
    estimate_s: float | None = None
    ci_s: tuple[float, float] | None = None
    corr_before: float | None = None
    corr_after: float | None = None
    drift_ppm: float | None = None
    t0_s: float | None = None
    drift_ci_ppm: tuple[float, float] | None = None
    drift_estimate_ppm: float | None = None
    drift_note: str | None = None

    def apply(self, t_s: np.ndarray) -> np.ndarray:
        """This channel's stamps (s) on the reference clock."""
        return align(t_s, self.lag_s, self.drift_ppm or 0.0, self.t0_s or 0.0)

    def to_dict(self) -> dict[str, Any]:
        """The ``lags`` entry of ``summary.json`` (raw floats: NaN stays NaN until json_safe)."""
        if self.estimate_s is None:
            out: dict[str, Any] = {"lag_s": self.lag_s, "corr": self.corr, "method": self.method,
                                   "quality": self.quality, "applied": self.applied}
        else:
            out = {"lag_s": self.lag_s, "estimate_s": self.estimate_s, "applied": self.applied, "corr": self.corr,
                   "method": self.method, "quality": self.quality, "ci_s": list(self.ci_s or ()),
                   "corr_before": self.corr_before, "corr_after": self.corr_after}
        if self.drift_ppm is None:
            return out
        out["drift_ppm"] = self.drift_ppm
        if self.drift_note is not None:
            out["drift_note"] = self.drift_note
        elif self.t0_s is not None:
            out["t0_s"] = self.t0_s
            out["drift_ci_ppm"] = list(self.drift_ci_ppm or ())
        else:
            out["drift_estimate_ppm"] = self.drift_estimate_ppm
            out["drift_ci_ppm"] = list(self.drift_ci_ppm or ())
        return out


def channel_lag(ref: Series, s: Series, max_lag_s: float, warnings: list[str],
                own_clock: bool = False) -> ChannelLag:
    """The lag of ``s`` against the reference, as applied (0 s when weak or unusable, and said).

    ``own_clock``: the channel's stamps come from its own clock (imported traces), so a
    linear drift is estimated too and applied when it is clearly there.
    """
    lag = lag_without_drift(ref, s, max_lag_s, warnings)
    if own_clock and lag.applied:
        drift_correction(ref, s, max_lag_s, lag, warnings)
    return lag


def drift_correction(ref: Series, s: Series, max_lag_s: float, lag: ChannelLag, warnings: list[str]) -> None:
    """Estimate the drift (ppm) of a channel on its own clock and record it in ``lag``; it is
    applied (with the lag of the drift fit) if its 95 % CI excludes 0 and it exceeds
    MIN_DRIFT_PPM (a good quartz is within about 50 ppm)."""
    try:
        d = estimate_drift(ref.t_p, ref.p, s.t_p, s.p, max_lag_s=max(min(max_lag_s, 10.0), 1.0))
    except ValueError as exc:
        lag.drift_ppm, lag.drift_note = 0.0, f"not estimated ({str(exc).splitlines()[0]})"
        return
    lo, hi = d.drift_ci_ppm
    lag.drift_ci_ppm = (float(lo), float(hi))
    if abs(d.drift_ppm) >= MIN_DRIFT_PPM and (lo > 0 or hi < 0):
        warnings.append(f"{s.id} keeps its own time: clock drift {d.drift_ppm:.0f} ppm "
                        f"[{lo:.0f}, {hi:.0f}] corrected")
        lag.lag_s, lag.drift_ppm, lag.t0_s = float(d.lag_s), float(d.drift_ppm), float(d.t0_s)
        return
    lag.drift_ppm, lag.drift_estimate_ppm = 0.0, float(d.drift_ppm)


def lag_without_drift(ref: Series, s: Series, max_lag_s: float, warnings: list[str]) -> ChannelLag:
    """The lag (s) of ``s`` against ``ref`` from :func:`estimate_lag`, applied only when its
    correlation peak stands above noise and it does not misalign the levels."""
    try:
        # a lag longer than a quarter of the overlap rests on too few samples to trust
        span = min(ref.t_s[-1], s.t_s[-1]) - max(ref.t_s[0], s.t_s[0])
        searched_s = max(min(max_lag_s, 0.25 * span), 1.0)
        lr = estimate_lag(ref.t_p, ref.p, s.t_p, s.p, max_lag_s=searched_s)
    except ValueError as exc:
        warnings.append(f"lag of {s.id} not estimated ({str(exc).splitlines()[0]}); assumed 0 s")
        return ChannelLag(lag_s=0.0, applied=False, method="none", quality="failed")
    # the peak must stand above what noise alone reaches: the largest of 2K+1 correlations
    # of n independent points is about sqrt(2 ln(2K+1) / n); ask for 1.4 times that
    n = max(span / lr.step_s, 1.0)
    k = searched_s / lr.step_s
    noise = float(np.sqrt(2.0 * np.log(2.0 * k + 1.0) / n))
    usable = (lr.quality == "good" and np.isfinite(lr.lag_s) and lr.corr > 1.4 * noise
              and not (lr.corr_after < lr.corr_before - 0.02))  # a shift that misaligns the levels
    if not usable:
        why = lr.quality if lr.quality != "good" else f"not above noise ({1.4 * noise:.2f})"
        warnings.append(f"lag of {s.id}: {why} (peak correlation {lr.corr:.2f}, estimate "
                        f"{lr.lag_s:.2f} s): not applied; a load with sharp edges (square) helps")
    return ChannelLag(lag_s=float(lr.lag_s) if usable else 0.0, applied=bool(usable), method=lr.method,
                      quality=lr.quality, corr=float(lr.corr), estimate_s=float(lr.lag_s), ci_s=tuple(lr.ci_s),
                      corr_before=lr.corr_before, corr_after=lr.corr_after)
