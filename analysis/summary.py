"""From a loaded session to the ``summary.json`` figures (DESIGN contract).

Steps: per-channel power and energy (counter preferred, power integrated where the
counter is missing or too coarse) -> reference channel -> each candidate's lag against
the reference -> energies over common windows (candidate shifted by its lag, gaps and
phase-boundary ramps skipped) -> agreement statistics on window mean power
(window energy / window length, W) -> a linear calibration wall = a + b * candidate ->
idle (baseline) power and idle-subtracted (dynamic) energy -> emissions and accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.agreement import agreement
from analysis.align import GAP_FACTOR, align, estimate_drift, estimate_lag, find_gaps, power_series
from analysis.emissions import accuracy_per_kwh, compare_locations, emissions
from analysis.load import ChannelTrace, SessionData
from analysis.regression import ols
from analysis.windows import choose_window_s, common_windows, window_energies

COMPARE_LOCATIONS = ("SE", "FR", "GB", "US", "DE", "CN", "IN", "WORLD")
BASELINE_PHASES = ("baseline-before", "baseline-after", "idle")
RAMP_TRIM_S = 2.0
MIN_DRIFT_PPM = 100.0  # a smaller drift is left alone (a common quartz is within 50 ppm)
#: the contract's keys, all null, for a pair with too few windows to compare
EMPTY_AGREEMENT: dict[str, Any] = {
    "bland_altman": {"n": 0, "bias": None, "sd": None, "loa_low": None, "loa_high": None,
                     "bias_ci": [None, None], "loa_low_ci": [None, None], "loa_high_ci": [None, None]},
    "regression": {"method": "ols", "slope": None, "intercept": None, "slope_ci": [None, None],
                   "intercept_ci": [None, None]},
    "ccc": {"value": None, "ci": [None, None]},
}  # skip this long after each phase boundary (load ramps, fan spin-up)


@dataclass
class Series:
    """A channel reduced to what the analysis needs (times in s on the session clock)."""

    id: str
    t_s: np.ndarray  # stamps of OK samples
    power_w: np.ndarray | None  # reported power at t_s (None if the meter has none)
    energy_j: np.ndarray | None  # cumulative energy at t_s, continuous across segments
    t_p: np.ndarray  # stamps of the best power estimate
    p: np.ndarray  # best power estimate (W)
    use_counter: bool
    gaps: list[tuple[float, float]]
    interval_s: float
    window_s: float | None
    resolution_j: float | None


def _continuous_counter(trace: ChannelTrace, ok: Any) -> np.ndarray | None:
    """Energy counter made continuous across reconnect segments (each restarts at an arbitrary origin)."""
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


def _gaps(trace: ChannelTrace) -> list[tuple[float, float]]:
    """Spans with no data: across a disconnect (last OK sample before it to the first after),
    and silences (timeouts) longer than GAP_FACTOR intervals and 3 s."""
    flags = trace.data["flag"].to_numpy()
    ok_idx = np.flatnonzero(flags == "")
    if len(ok_idx) < 2:
        return []
    tt = trace.data["t_s"].to_numpy(float)[ok_idx]
    after = np.searchsorted(ok_idx, np.flatnonzero(np.isin(flags, ["disconnected", "reconnected"])))
    after = after[(after > 0) & (after < len(ok_idx))]
    gaps = {(float(tt[i - 1]), float(tt[i])) for i in after}
    gaps |= {(float(a), float(b)) for a, b in find_gaps(tt, GAP_FACTOR, min_gap_s=3.0)}
    return sorted(gaps)


def series_of(trace: ChannelTrace) -> Series:
    ok = trace.ok
    t = ok["t_s"].to_numpy(float)
    power = ok["power_w"].to_numpy(float) if "power_w" in ok and not ok["power_w"].isna().all() else None
    energy = _continuous_counter(trace, ok)
    res = trace.info.get("energy_resolution_j")
    window = trace.info.get("window_s")
    t_p, p = power_series(t, power_w=power, energy_j=energy, energy_resolution_j=res, window_s=window)
    dt = np.diff(t)
    interval = float(np.median(dt)) if len(dt) else float(trace.info.get("update_interval_s") or 1.0)
    span_e = float(energy[-1] - energy[0]) if energy is not None and len(energy) > 1 else 0.0
    use_counter = energy is not None and (power is None or not res or res <= 0.01 * abs(span_e))
    return Series(trace.id, t, power, energy, np.asarray(t_p, float), np.asarray(p, float), use_counter,
                  _gaps(trace), interval, window, res)


def to_reference_clock(t_s: np.ndarray, lag: dict[str, Any] | None) -> np.ndarray:
    """A candidate's stamps (s) on the reference clock: its lag and, if estimated, its drift."""
    if not lag:
        return np.asarray(t_s, float)
    return align(t_s, lag["lag_s"], lag.get("drift_ppm") or 0.0, lag.get("t0_s") or 0.0)


def _energies(s: Series, windows: np.ndarray, lag: dict[str, Any] | None = None) -> np.ndarray:
    """Energy (J) per window (rows t0, t1, s) of ``s``, mapped onto the reference clock by ``lag``."""
    return np.asarray(window_energies(windows, to_reference_clock(s.t_s, lag), energy_j=s.energy_j, power_w=s.power_w,
                                      power_window_s=s.window_s, energy_resolution_j=s.resolution_j), float)


def covered_energy(s: Series, t0: float = -np.inf, t1: float = np.inf) -> tuple[float, float]:
    """(energy J, seconds covered) of ``s`` within [t0, t1], over the spans that have data.

    Gaps (disconnections, silences) are left out, not filled: the caller sees how much of
    the span was measured and decides what to say.
    """
    if len(s.t_s) < 2:
        return float("nan"), 0.0
    # reported power averages the window before its stamp: the trace covers [t0 - w/2, tN - w/2]
    half = 0.5 * (s.window_s or 0.0) if not s.use_counter else 0.0
    a = max(t0, float(s.t_s[0]) - half)
    b = min(t1, float(s.t_s[-1]) - half)
    spans = _ok_spans(a, b, s.gaps) if b > a else []
    if not spans:
        return float("nan"), 0.0
    e = _energies(s, np.asarray(spans, float))
    ok = np.isfinite(e)
    if not ok.any():
        return float("nan"), 0.0
    return float(e[ok].sum()), float(sum(y - x for (x, y), good in zip(spans, ok) if good))


def _ok_spans(t0: float, t1: float, gaps: list[tuple[float, float]]) -> list[tuple[float, float]]:
    spans, cur = [], t0
    for a, b in sorted(gaps):
        if a > cur:
            spans.append((cur, min(a, t1)))
        cur = max(cur, b)
    if cur < t1:
        spans.append((cur, t1))
    return [(a, b) for a, b in spans if b - a > 0]


def _mean_power(s: Series, spans: list[tuple[float, float]]) -> float | None:
    """Mean power (W) over the measured parts of ``spans``."""
    e, dur = 0.0, 0.0
    for a, b in spans:
        v, covered = covered_energy(s, a, b)
        if np.isfinite(v) and covered > 0:
            e += v
            dur += covered
    return e / dur if dur > 0 else None


def epoch_table(data: SessionData, phase_rows: list[dict[str, Any]], ref_id: str) -> list[dict[str, Any]]:
    """One row per training epoch: its duration (s), reference energy (J) and the workload's
    metrics for the epoch and its evaluation (loss, accuracy, val_accuracy, images/s)."""
    ev = data.events
    if not len(ev) or "name" not in ev:
        return []
    metrics = ev[ev["kind"] == "metric"]
    rows = []
    for p in phase_rows:
        name = str(p["phase"])
        if not name.startswith("epoch-"):
            continue
        n = name.split("-", 1)[1]
        row: dict[str, Any] = {"epoch": n, "duration_s": p["duration_s"], "energy_j": p.get(ref_id)}
        for _, m in metrics[metrics.get("phase").isin([name, f"eval-{n}"])].iterrows():
            if isinstance(m.get("value"), (int, float)) and np.isfinite(m["value"]):
                row[str(m["name"])] = float(m["value"])
        rows.append(row)
    return rows


def _workload_energy(ref: Series, span: tuple[float, float] | None, warnings: list[str]
                     ) -> tuple[float | None, float]:
    """Reference energy (J) of the workload phase and its duration (s).

    Where the reference had a gap, the measured part is scaled to the whole phase at its
    own mean power, and a warning says how much was missing; under half measured: None.
    """
    if span is None:
        e, covered = covered_energy(ref)
        return (e if np.isfinite(e) else None), covered
    a, b = span
    e, covered = covered_energy(ref, a, b)
    if not np.isfinite(e) or covered <= 0:
        warnings.append(f"the reference {ref.id} has no data in the workload phase: its energy is unknown")
        return None, b - a
    missing = (b - a) - covered
    edge = 2.0 * (ref.interval_s + (ref.window_s or 0.0))  # a first/last sample's worth at the ends
    if missing > max(edge, 0.01 * (b - a)):
        if covered < 0.5 * (b - a):
            warnings.append(f"the reference {ref.id} measured only {covered:.0f} s of the {b - a:.0f} s workload: "
                            "energy and CO2 not reported")
            return None, b - a
        warnings.append(f"the reference {ref.id} missed {missing:.1f} s of the workload phase; its energy is "
                        "extrapolated over the gap at the phase's measured mean power")
        return e * (b - a) / covered, b - a
    return e * (b - a) / covered, b - a  # scaled over the edge samples: within one interval


def split_candidate(expr: str) -> list[str]:
    """``"rapl.package-0+nvml.0"`` -> its channel ids; a sum of meters is one candidate."""
    parts = [p.strip() for p in expr.split("+")]
    if not all(parts):
        raise ValueError(f"candidate {expr!r} has an empty term (expected CHANNEL or CHANNEL+CHANNEL...)")
    return parts


def _parse_candidate(expr: str, known: list[str]) -> list[str]:
    parts = split_candidate(expr)
    missing = [p for p in parts if p not in known]
    if missing:
        raise ValueError(f"unknown channel {missing[0]!r} in candidate {expr!r}; channels: {', '.join(known)}")
    return parts


def pick_reference(data: SessionData, requested: str | None = None) -> str:
    ids = list(data.channels)
    if requested:
        if requested in data.channels:
            return requested
        matches = [c for c in ids if data.channels[c].meter == requested]
        if len(matches) == 1:
            return matches[0]
        raise ValueError(f"no channel {requested!r} in this session; channels: {', '.join(ids)}")
    manifest_ref = data.manifest.get("reference")
    if manifest_ref and manifest_ref in data.channels:
        return manifest_ref
    # the first wall meter in the order the meters were given (the manifest's order)
    order = [ch["id"] for m in data.manifest.get("meters", []) for ch in m.get("channels", [])]
    ids = [c for c in order if c in data.channels] + [c for c in ids if c not in order]
    walls = [c for c in ids if data.channels[c].scope == "wall" and data.channels[c].source == "measured"]
    return walls[0] if walls else ids[0]


def default_window_s(chans: list[Series]) -> float:
    """The comparison window (s): from the slowest meter (see choose_window_s), shortened for
    short sessions so that about 10 windows fit, but never under 2 of the slowest intervals."""
    chosen = choose_window_s([s.interval_s for s in chans], [s.window_s for s in chans])
    span = min(s.t_s[-1] for s in chans) - max(s.t_s[0] for s in chans)
    slowest = max(max(s.interval_s, s.window_s or 0.0) for s in chans)
    return float(min(chosen, max(2.0 * slowest, span / 10.0)))


def lag_against(ref: Series, s: Series, max_lag_s: float, warnings: list[str],
                own_clock: bool = False) -> dict[str, Any]:
    """The lag of ``s`` against the reference, as applied (0 s when weak or unusable, and said).

    ``own_clock``: the channel's stamps come from its own clock (imported traces), so a
    linear drift is estimated too and applied when it is clearly there.
    """
    lag = _lag_only(ref, s, max_lag_s, warnings)
    if own_clock and lag.get("applied"):
        lag.update(_drift(ref, s, max_lag_s, lag, warnings))
    return lag


def _drift(ref: Series, s: Series, max_lag_s: float, lag: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    """Drift (ppm) of a channel on its own clock; applied if its 95 % CI excludes 0 and it
    exceeds MIN_DRIFT_PPM (a good quartz is within about 50 ppm)."""
    try:
        d = estimate_drift(ref.t_p, ref.p, s.t_p, s.p, max_lag_s=max(min(max_lag_s, 10.0), 1.0))
    except ValueError as exc:
        return {"drift_ppm": 0.0, "drift_note": f"not estimated ({str(exc).splitlines()[0]})"}
    lo, hi = d.drift_ci_ppm
    if abs(d.drift_ppm) >= MIN_DRIFT_PPM and (lo > 0 or hi < 0):
        warnings.append(f"{s.id} keeps its own time: clock drift {d.drift_ppm:.0f} ppm "
                        f"[{lo:.0f}, {hi:.0f}] corrected")
        return {"lag_s": float(d.lag_s), "drift_ppm": float(d.drift_ppm), "t0_s": float(d.t0_s),
                "drift_ci_ppm": [float(lo), float(hi)]}
    return {"drift_ppm": 0.0, "drift_estimate_ppm": float(d.drift_ppm), "drift_ci_ppm": [float(lo), float(hi)]}


def _lag_only(ref: Series, s: Series, max_lag_s: float, warnings: list[str]) -> dict[str, Any]:
    try:
        # a lag longer than a quarter of the overlap rests on too few samples to trust
        span = min(ref.t_s[-1], s.t_s[-1]) - max(ref.t_s[0], s.t_s[0])
        lr = estimate_lag(ref.t_p, ref.p, s.t_p, s.p, max_lag_s=max(min(max_lag_s, 0.25 * span), 1.0))
    except ValueError as exc:
        warnings.append(f"lag of {s.id} not estimated ({str(exc).splitlines()[0]}); assumed 0 s")
        return {"lag_s": 0.0, "corr": None, "method": "none", "quality": "failed", "applied": False}
    # the peak must stand above what noise alone reaches: the largest of 2K+1 correlations
    # of n independent points is about sqrt(2 ln(2K+1) / n); ask for 1.4 times that
    n = max(span / lr.step_s, 1.0)
    k = max(min(max_lag_s, 0.25 * span), 1.0) / lr.step_s
    noise = float(np.sqrt(2.0 * np.log(2.0 * k + 1.0) / n))
    usable = (lr.quality == "good" and np.isfinite(lr.lag_s) and lr.corr > 1.4 * noise
              and not (lr.corr_after < lr.corr_before - 0.02))  # a shift that misaligns the levels
    if not usable:
        why = lr.quality if lr.quality != "good" else f"not above noise ({1.4 * noise:.2f})"
        warnings.append(f"lag of {s.id}: {why} (peak correlation {lr.corr:.2f}, estimate "
                        f"{lr.lag_s:.2f} s): not applied; a load with sharp edges (square) helps")
    return {"lag_s": float(lr.lag_s) if usable else 0.0, "estimate_s": float(lr.lag_s),
            "applied": bool(usable), "corr": float(lr.corr), "method": lr.method,
            "quality": lr.quality, "ci_s": list(lr.ci_s), "corr_before": lr.corr_before,
            "corr_after": lr.corr_after}


def _cuts(phases: list[tuple[str, float, float]], window_s: float, chans: list[Series]
          ) -> tuple[list[float], list[tuple[float, float]]]:
    """Phase boundaries to trim after, and every channel's gaps to skip."""
    # trim ramps after the boundaries of long phases (baselines, the workload, epochs); the
    # edges of short phases (a square wave's half periods) are averaged over by the windows
    boundaries = sorted({t for _, a, b in phases if b - a >= 2 * window_s for t in (a, b)})
    return boundaries, [g for s in chans for g in s.gaps]


def window_table(data: SessionData, reference: str | None, components: list[str],
                 window_s: float | None = None, max_lag_s: float = 30.0) -> pd.DataFrame:
    """Tidy per-window mean power (W) of the reference and each component, lag-aligned.

    Columns: t0_s, t1_s, reference, one per component; attrs hold the lags and window.
    """
    warnings: list[str] = []
    ref_id = pick_reference(data, reference)
    ids = [ref_id, *components]
    missing = [c for c in ids if c not in data.channels or len(data.channels[c].ok) < 2]
    if missing:
        raise ValueError(f"{data.path}: no usable channel {missing[0]!r}; channels: {', '.join(data.channels)}")
    series = {c: series_of(data.channels[c]) for c in ids}
    win = float(window_s) if window_s else default_window_s([series[c] for c in ids])
    own = data.status == "imported"
    lags = {c: lag_against(series[ref_id], series[c], max_lag_s, warnings,
                           own or bool(data.channels[c].info.get("own_clock"))) for c in components}
    boundaries, exclude = _cuts(data.phases(), win, list(series.values()))
    wins, ref_w, comp_w = paired_windows(series[ref_id], {c: series[c] for c in components}, lags, win,
                                         boundaries, exclude)
    df = pd.DataFrame({"t0_s": wins[:, 0], "t1_s": wins[:, 1], "reference": ref_w, **comp_w})
    df.attrs.update({"reference": ref_id, "window_s": win, "lags": lags, "warnings": warnings})
    return df


def calibration_fit(ref_w: np.ndarray, cand_w: np.ndarray) -> dict[str, Any]:
    """OLS of reference on candidate (W).  A candidate that hardly varies (a modelled
    constant, such as CodeCarbon's RAM) cannot give a gain: then only the offset is
    reported, with a note, instead of a meaningless slope."""
    spread = float(np.std(cand_w))
    if spread <= 1e-3 * max(float(np.mean(np.abs(cand_w))), 1e-9) or spread < 1e-6:
        diff = ref_w - cand_w
        return {"model": "reference = intercept + candidate (candidate constant: no gain)", "method": "mean",
                "slope": None, "intercept": float(np.mean(diff)), "slope_ci": [None, None],
                "intercept_ci": [None, None],
                "note": "the candidate is constant over the windows, so no gain can be fitted; "
                        "only the offset is reported (a load that varies is needed)"}
    cal = ols(cand_w, ref_w)
    return {"model": "reference = intercept + slope * candidate", "method": "ols", "slope": cal.slope,
            "intercept": cal.intercept, "slope_ci": list(cal.slope_ci), "intercept_ci": list(cal.intercept_ci)}


def paired_windows(ref: Series, comps: dict[str, Series], lags: dict[str, Any], window_s: float,
                   boundaries: list[float], exclude: list[tuple[float, float]]
                   ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Common windows where every channel has data: (windows (N, 2) s, reference W, {component: W}).

    Components are shifted onto the reference clock by their lag; W is window energy / length.
    """
    ends = {c: to_reference_clock(s.t_s[[0, -1]], lags[c]) for c, s in comps.items()}
    start = max([ref.t_s[0]] + [e[0] for e in ends.values()])
    end = min([ref.t_s[-1]] + [e[1] for e in ends.values()])
    # the ramp after a boundary lasts about the meters' averaging windows, which are well
    # under the comparison window: trim half a window, at most RAMP_TRIM_S
    trim = min(RAMP_TRIM_S, 0.5 * window_s)
    wins = common_windows(start, end, window_s, exclude=exclude, boundaries_s=boundaries, trim_s=trim)
    ref_e = _energies(ref, wins)
    comp_e = {c: _energies(s, wins, lags[c]) for c, s in comps.items()}
    ok = np.isfinite(ref_e)
    for e in comp_e.values():
        ok &= np.isfinite(e)
    widths = wins[:, 1] - wins[:, 0]
    return wins[ok], ref_e[ok] / widths[ok], {c: e[ok] / widths[ok] for c, e in comp_e.items()}


def summarize(data: SessionData, reference: str | None = None, candidates: list[str] | None = None,
              window_s: float | None = None, location: str | None = None, intensity: float | None = None,
              pue: float | None = None, max_lag_s: float = 30.0) -> dict[str, Any]:
    """The whole ``summary.json`` dict for a session (see module doc)."""
    series = {cid: series_of(tr) for cid, tr in data.channels.items() if len(tr.ok) >= 2}
    warnings = list(data.warnings)
    for cid in data.channels:
        if cid not in series:
            warnings.append(f"{cid}: fewer than 2 good samples; left out")
    if not series:
        raise ValueError("no channel has at least 2 good samples")
    ref_id = pick_reference(data, reference)
    if ref_id not in series:
        raise ValueError(f"reference {ref_id} has fewer than 2 good samples")
    ref = series[ref_id]
    phases = data.phases()
    # idle power from the baselines, skipping the ramp at their start (at most a quarter of them)
    baseline_spans = [(a + min(RAMP_TRIM_S, 0.25 * (b - a)), b) for n, a, b in phases
                      if n in BASELINE_PHASES and b > a]

    meters: dict[str, Any] = {}
    for cid, tr in data.channels.items():
        s = series.get(cid)
        energy, span = covered_energy(s) if s else (float("nan"), 0.0)
        idle_w = _mean_power(s, baseline_spans) if s is not None and baseline_spans else None
        meters[cid] = {
            "kind": tr.info.get("meter_kind"), "meter": tr.meter, "scope": tr.scope, "source": tr.source,
            "simulated": bool(tr.info.get("simulated")),
            "energy_j": energy, "covered_s": span, "gaps_s": sum(b - a for a, b in s.gaps) if s else None,
            "mean_power_w": energy / span if span > 0 else None,
            "samples": int(len(tr.ok)), "errors": tr.faults,
            "from_counter": bool(s.use_counter) if s else False,
            "interval_s": s.interval_s if s else None, "window_s": tr.info.get("window_s"),
            "idle_power_w": idle_w,
            "dynamic_energy_j": (energy - idle_w * span) if idle_w is not None and span > 0 else None,
        }

    known = list(series)
    cand_exprs = candidates or [c for c in known if c != ref_id]
    cands = {expr: _parse_candidate(expr, known) for expr in cand_exprs}
    all_ids = {ref_id, *[c for parts in cands.values() for c in parts]}
    win = float(window_s) if window_s else default_window_s([series[c] for c in all_ids])

    own = data.status == "imported"
    lags = {cid: lag_against(ref, series[cid], max_lag_s, warnings,
                             own or bool(data.channels[cid].info.get("own_clock")))
            for cid in sorted({c for parts in cands.values() for c in parts})}
    boundaries, exclude = _cuts(phases, win, [series[c] for c in all_ids])
    agreement_list: list[dict[str, Any]] = []
    for expr, parts in cands.items():
        entry: dict[str, Any] = {"reference": ref_id, "candidate": expr, "components": parts,
                                 "lag_s": lags[parts[0]]["lag_s"] if len(parts) == 1 else None,
                                 "component_lags_s": {c: lags[c]["lag_s"] for c in parts},
                                 "window_s": win, "unit": "W (window energy / window length)"}
        try:
            wins, ref_w, comp_w = paired_windows(ref, {c: series[c] for c in parts}, lags, win, boundaries, exclude)
            cand_w = np.sum(list(comp_w.values()), axis=0) if comp_w else np.array([])
            entry["windows_s"] = wins.tolist()
            entry["n_windows"] = int(len(ref_w))
            stats = agreement(ref_w, cand_w, method="ols")
            entry.update(stats)
            entry["calibration"] = calibration_fit(ref_w, cand_w)
            if entry["calibration"].get("note"):
                warnings.append(f"calibration of {expr}: {entry['calibration']['note']}")
            entry["pairs"] = {"reference_w": ref_w.tolist(), "candidate_w": cand_w.tolist()}
        except ValueError as exc:
            entry["n_windows"] = int(entry.get("n_windows", 0))
            entry["error"] = str(exc).splitlines()[0]
            entry.update(EMPTY_AGREEMENT)
            warnings.append(f"agreement {expr} vs {ref_id}: {entry['error']}")
        agreement_list.append(entry)

    # workload, phases, emissions
    wl = data.manifest.get("workload") or {}
    result = data.result()
    run_phase = [(a, b) for n, a, b in phases if n == "workload"]
    ref_workload_j, duration = _workload_energy(ref, run_phase[0] if run_phase else None, warnings)
    if not run_phase:
        duration = data.duration_s
    accuracy = result.get("accuracy")
    workload = {"name": wl.get("name"), "parameters": wl.get("parameters", {}), "duration_s": duration,
                "accuracy": float(accuracy) if accuracy is not None else None,
                "images_per_s": result.get("images_per_s"), "returncode": wl.get("returncode"),
                "energy_j": ref_workload_j,
                "accuracy_per_kwh": accuracy_per_kwh(accuracy, ref_workload_j) if ref_workload_j else None}
    phase_rows = []
    for name, a, b in phases:
        row = {"phase": name, "start_s": a, "end_s": b, "duration_s": b - a}
        for cid, s in series.items():
            e, covered = covered_energy(s, a, b)
            row[cid] = e if covered >= 0.99 * (b - a) else None  # a phase with a gap has no total
            row[f"{cid}:covered_s"] = covered
        phase_rows.append(row)
    workload["epochs"] = epoch_table(data, phase_rows, ref_id)
    known_energy = ref_workload_j is not None and np.isfinite(ref_workload_j)
    emis = emissions(ref_workload_j if known_energy else 0.0, location, intensity, pue)
    if not known_energy:  # unknown energy has unknown CO2, never 0 g
        emis.update({"energy_j": None, "energy_kwh": None, "co2_g": None})
    emis["energy_from"] = ref_id
    # the same run's CO2 elsewhere: the grids of the seed study's spread, and the world average
    emis["by_location"] = [{k: e[k] for k in ("location", "location_name", "intensity_g_per_kwh", "year", "co2_g")}
                           for e in compare_locations(emis["energy_j"], list(COMPARE_LOCATIONS), emis["pue"])
                           ] if known_energy else []
    rec = data.manifest.get("recorder") or {}
    return {
        "session": str(data.path), "status": data.status, "duration_s": data.duration_s,
        "reference": ref_id, "meters": meters, "lags": lags, "workload": workload, "phases": phase_rows,
        "agreement": agreement_list, "emissions": emis,
        "recorder": {"cpu_fraction_of_core": rec.get("cpu_fraction_of_core"), "cpu_s": rec.get("cpu_s")},
        "warnings": warnings,
    }


def _json_safe(obj: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python, recursively (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj
