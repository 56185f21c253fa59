"""Stage 4: from a session's :class:`~analysis.pipeline.Analysis` to the ``summary.json``
figures (DESIGN contract).

Per-channel energy (J) and mean power (W) over what was measured, idle (baseline) power
and idle-subtracted (dynamic) energy; per candidate, agreement statistics on the paired
window mean powers (W) and a linear calibration wall = a + b * candidate; the workload's
energy, epochs, emissions and accuracy.  The series, lags, windows and pairs come from
:func:`analysis.pipeline.analyse`, computed once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from analysis.agreement import agreement
from analysis.caveats import (
    Caveat,
    accuracy_check,
    bias_caveats,
    calibration_caveats,
    codes,
    messages,
    near_constant,
    reading_step,
    reference_caveats,
    sample_size_caveats,
    window_caveats,
)
from analysis.emissions import accuracy_per_kwh, compare_locations, emissions
from analysis.load import SessionData
from analysis.pairing import RAMP_TRIM_S
from analysis.pipeline import Analysis, analyse
from analysis.regression import ols
from analysis.series import Series, covered_energy, mean_power_over
from analysis.windows import dynamic_energy

__all__ = ["BASELINE_PHASES", "COMPARE_LOCATIONS", "EMPTY_AGREEMENT", "calibration_fit", "epoch_table",
           "summarize", "workload_energy"]

COMPARE_LOCATIONS = ("SE", "FR", "GB", "US", "DE", "CN", "IN", "WORLD")
SILENT_S = 5.0  # a meter with no reading for longer (and 5 intervals) is said to have been silent
BASELINE_PHASES = ("baseline-before", "baseline-after", "idle")
#: the contract's keys, all null, for a pair with too few windows to compare
EMPTY_AGREEMENT: dict[str, Any] = {
    "bland_altman": {"n": 0, "bias": None, "sd": None, "loa_low": None, "loa_high": None,
                     "bias_ci": [None, None], "loa_low_ci": [None, None], "loa_high_ci": [None, None]},
    "regression": {"method": "ols", "slope": None, "intercept": None, "slope_ci": [None, None],
                   "intercept_ci": [None, None]},
    "ccc": {"value": None, "ci": [None, None]},
}


def phase_coverage_needed(s: Series, duration_s: float) -> float:
    """The share of a phase a meter must have measured for the phase's energy (0.5..0.99):
    all of it but one update interval (s) -- a meter that reports every second cannot cover
    a 10 s baseline's first second -- and never less than half."""
    if not duration_s > 0:
        return 0.99
    update_s = max(float(s.interval_s or 0.0), float(s.window_s or 0.0))
    return float(min(0.99, max(0.5, 1.0 - update_s / duration_s)))


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


def workload_energy(ref: Series, span: tuple[float, float] | None, warnings: list[str]
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


def calibration_fit(ref_w: np.ndarray, cand_w: np.ndarray, resolution_w: float = 0.0) -> dict[str, Any]:
    """OLS of reference on candidate (W).  A candidate too nearly constant for a gain (its
    window powers' spread within ``resolution_w`` W or under 1% of their mean: a modelled
    constant such as CodeCarbon's RAM, or a load that did not vary) gets only the offset,
    with a note, instead of a meaningless slope."""
    why = near_constant(cand_w, resolution_w)
    if why is not None:
        diff = ref_w - cand_w
        return {"model": "reference = intercept + candidate (candidate nearly constant: no gain)", "method": "mean",
                "slope": None, "intercept": float(np.mean(diff)), "slope_ci": [None, None],
                "intercept_ci": [None, None], "near_constant": why,
                "note": f"the candidate is nearly constant: {why}; no gain can be fitted, only the offset is "
                        "reported (a load that varies is needed)"}
    cal = ols(cand_w, ref_w)
    return {"model": "reference = intercept + slope * candidate", "method": "ols", "slope": cal.slope,
            "intercept": cal.intercept, "slope_ci": list(cal.slope_ci), "intercept_ci": list(cal.intercept_ci)}


def _with_caveats(entry: dict[str, Any], caveats: list[Caveat]) -> dict[str, Any]:
    """``entry`` with its ``warnings`` (messages) and ``warning_codes`` (same order)."""
    entry["warnings"] = messages(caveats)
    entry["warning_codes"] = codes(caveats)
    return entry


def _meter_entries(data: SessionData, series: dict[str, Series], phases: list[tuple[str, float, float]]
                   ) -> dict[str, Any]:
    """Per channel: energy (J) and mean power (W) over what it measured, idle power (W)
    from the baselines and dynamic energy (J), samples and faults."""
    # idle power from the baselines, skipping the ramp at their start (at most a quarter of them)
    baseline_spans = [(a + min(RAMP_TRIM_S, 0.25 * (b - a)), b) for n, a, b in phases
                      if n in BASELINE_PHASES and b > a]
    meters: dict[str, Any] = {}
    for cid, tr in data.channels.items():
        s = series.get(cid)
        energy, span = covered_energy(s) if s else (float("nan"), 0.0)
        idle_w = mean_power_over(s, baseline_spans) if s is not None and baseline_spans else None
        meters[cid] = {
            "kind": tr.info.get("meter_kind"), "meter": tr.meter, "scope": tr.scope, "source": tr.source,
            "simulated": bool(tr.info.get("simulated")),
            "energy_j": energy, "covered_s": span, "gaps_s": sum(b - a for a, b in s.gaps) if s else None,
            "longest_gap_s": max((b - a for a, b in s.gaps), default=0.0) if s else None,
            "suspect": tr.notes,  # notes on values kept but suspect (freq_hz:nan: 3)
            "mean_power_w": energy / span if span > 0 else None,
            "samples": int(len(tr.ok)), "errors": tr.faults,
            "from_counter": bool(s.use_counter) if s else False,
            "interval_s": s.interval_s if s else None, "window_s": tr.info.get("window_s"),
            "idle_power_w": idle_w,
            "dynamic_energy_j": dynamic_energy(energy, span, idle_w) if idle_w is not None and span > 0 else None,
        }
    return meters


def _agreement_entry(res: Analysis, p: Any, lags: dict[str, Any]) -> dict[str, Any]:
    """One ``agreement`` entry: the pairs' statistics (W) and their caveats, or the
    contract's keys as null and an error."""
    expr, parts, ref_id = p.candidate, p.components, res.reference
    entry: dict[str, Any] = {"reference": ref_id, "candidate": expr, "components": parts,
                             "label": f"{ref_id} = a + b x {expr}",
                             "lag_s": lags[parts[0]]["lag_s"] if len(parts) == 1 else None,
                             "component_lags_s": {c: lags[c]["lag_s"] for c in parts},
                             "window_s": res.window_s, "unit": "W (window energy / window length)"}
    caveats: list[Caveat] = []
    try:
        if p.error is not None:
            raise ValueError(p.error)
        ref_w, cand_w = p.reference_w, p.candidate_w
        n = int(len(ref_w))
        entry["windows_s"] = p.windows_s.tolist()
        entry["n_windows"] = n
        timing = {c: (res.series[c].interval_s, res.series[c].window_s) for c in [ref_id, *parts]}
        caveats += window_caveats(res.window_s, timing, n)
        caveats += sample_size_caveats(n)
        stats = agreement(ref_w, cand_w, method="ols")
        entry.update(stats)
        resolution = sum(reading_step(res.series[c].p) for c in parts)
        cal = calibration_fit(ref_w, cand_w, resolution)
        entry["calibration"] = cal
        if cal.get("near_constant"):
            caveats.append(Caveat("near_constant_candidate",
                                  f"{expr} is nearly constant ({cal['near_constant']}): no gain can be fitted "
                                  f"for {ref_id} = a + b x {expr}; only the offset is reported"))
        caveats += calibration_caveats(cal, ref_id, expr)
        caveats += bias_caveats(stats, expr)
        entry["pairs"] = {"reference_w": ref_w.tolist(), "candidate_w": cand_w.tolist()}
    except ValueError as exc:
        entry["n_windows"] = int(entry.get("n_windows", 0))
        entry["error"] = str(exc).splitlines()[0]
        entry.update(EMPTY_AGREEMENT)
        caveats.append(Caveat("not_compared", f"agreement {expr} vs {ref_id}: {entry['error']}"))
    return _with_caveats(entry, caveats)


def summarize(data: SessionData, reference: str | None = None, candidates: list[str] | None = None,
              window_s: float | None = None, location: str | None = None, intensity: float | None = None,
              pue: float | None = None, max_lag_s: float = 30.0, *, result: Analysis | None = None
              ) -> dict[str, Any]:
    """The whole ``summary.json`` dict for a session (see module doc; raw floats, NaN kept:
    pass it through :func:`analysis.session_format.json_safe` before writing).

    ``result``: the session's :func:`~analysis.pipeline.analyse` result, when the caller
    has it (else it is computed here with ``reference``, ``candidates``, ``window_s``, ``max_lag_s``).
    """
    res = result if result is not None else analyse(data, reference, candidates, window_s, max_lag_s)
    series, ref_id = res.series, res.reference
    ref = series[ref_id]
    ref_info = data.channels[ref_id]
    ref_caveats = reference_caveats(ref_id, ref_info.source, bool(ref_info.info.get("simulated")))
    warnings = list(data.warnings) + res.warnings + messages(ref_caveats)
    phases = data.phases()
    meters = _meter_entries(data, series, phases)
    meter_caveats: dict[str, list[Caveat]] = {cid: [] for cid in meters}
    meter_caveats[ref_id] += ref_caveats
    for cid in res.left_out:
        meter_caveats[cid].append(Caveat("left_out", f"{cid}: fewer than 2 good samples; left out"))
    for cid, m in meters.items():  # a meter that went silent is marked, not smoothed over
        gap, interval = m.get("longest_gap_s") or 0.0, m.get("interval_s") or 0.0
        if gap > max(SILENT_S, 5 * interval):
            meter_caveats[cid].append(Caveat("silent", f"{cid} was silent for {gap:.1f} s at a stretch "
                                                       f"({m['gaps_s']:.1f} s in all): its energy covers only "
                                                       "what it measured"))
    lags = {cid: lag.to_dict() for cid, lag in res.lags.items()}
    agreement_list = [_agreement_entry(res, p, lags) for p in res.pairings.values()]
    # workload, phases, emissions
    wl = data.manifest.get("workload") or {}
    params = wl.get("parameters") or {}
    run = data.result()
    run_phase = [(a, b) for n, a, b in phases if n == "workload"]
    energy_notes: list[str] = []
    ref_workload_j, duration = workload_energy(ref, run_phase[0] if run_phase else None, energy_notes)
    workload_caveats = [Caveat("reference_gap", m) for m in energy_notes]
    if not run_phase:
        duration = data.duration_s
    accuracy = run.get("accuracy")
    accuracy = float(accuracy) if isinstance(accuracy, (int, float)) and np.isfinite(accuracy) else None
    acc_test, acc_caveats = accuracy_check(accuracy, run.get("num_classes", params.get("num_classes")),
                                           run.get("val_samples", params.get("val_size")))
    workload_caveats += acc_caveats
    workload = {"name": wl.get("name"), "parameters": params, "duration_s": duration,
                "accuracy": accuracy, "accuracy_vs_chance": acc_test or None,
                "images_per_s": run.get("images_per_s"), "returncode": wl.get("returncode"),
                "energy_j": ref_workload_j,
                "accuracy_per_kwh": accuracy_per_kwh(accuracy, ref_workload_j) if ref_workload_j else None}
    phase_rows = []
    missed: dict[str, list[str]] = {}
    for name, a, b in phases:
        row = {"phase": name, "start_s": a, "end_s": b, "duration_s": b - a}
        for cid, s in series.items():
            need = phase_coverage_needed(s, b - a)
            e, covered = covered_energy(s, a, b, complete=need)
            if np.isfinite(e) and 0 < covered < b - a:  # at most one update interval unmeasured:
                e *= (b - a) / covered  # the phase's energy at its measured mean power (J)
            row[cid] = e  # NaN when the meter missed too much of the phase: then it has no total
            row[f"{cid}:covered_s"] = covered
            if not np.isfinite(e):
                missed.setdefault(cid, []).append(f"{name} ({covered:.1f} of {b - a:.1f} s, needs {need:.0%})")
        phase_rows.append(row)
    for cid, items in missed.items():
        shown = "; ".join(items[:4]) + (f"; and {len(items) - 4} more" if len(items) > 4 else "")
        meter_caveats[cid].append(Caveat("phases_missed", f"{cid} has no energy for {len(items)} phase(s), "
                                                          f"measured too little of them: {shown}"))
    for cid, m in meters.items():
        _with_caveats(m, meter_caveats[cid])
    workload["epochs"] = epoch_table(data, phase_rows, ref_id)
    _with_caveats(workload, workload_caveats)
    known_energy = ref_workload_j is not None and np.isfinite(ref_workload_j)
    emis = emissions(ref_workload_j if known_energy else 0.0, location, intensity, pue)
    if not known_energy:  # unknown energy has unknown CO2, never 0 g
        emis.update({"energy_j": None, "energy_kwh": None, "co2_g": None})
    emis["energy_from"] = ref_id
    emis["energy_modelled"] = ref_info.source != "measured"
    # the same run's CO2 elsewhere: the grids of the seed study's spread, and the world average
    emis["by_location"] = [{k: e[k] for k in ("location", "location_name", "intensity_g_per_kwh", "year", "co2_g")}
                           for e in compare_locations(emis["energy_j"], list(COMPARE_LOCATIONS), emis["pue"])
                           ] if known_energy else []
    _with_caveats(emis, [Caveat("co2_from_model", f"CO2 comes from the MODELLED reference {ref_id}: it is an "
                                                  "estimate's estimate, not a measurement")]
                  if emis["energy_modelled"] and known_energy else [])
    for entry in (*meters.values(), *agreement_list, workload, emis):
        warnings += [w for w in entry["warnings"] if w not in warnings]
    rec = data.manifest.get("recorder") or {}
    return {
        "session": str(data.path), "status": data.status, "duration_s": data.duration_s,
        "reference": ref_id, "reference_source": ref_info.source,
        "reference_modelled": ref_info.source != "measured", "reference_simulated": bool(ref_info.info.get("simulated")),
        "meters": meters, "lags": lags, "workload": workload, "phases": phase_rows,
        "agreement": agreement_list, "emissions": emis,
        "recorder": {"cpu_fraction_of_core": rec.get("cpu_fraction_of_core"), "cpu_s": rec.get("cpu_s")},
        "warnings": warnings,
    }
