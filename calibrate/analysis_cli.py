"""The commands that analyse recorded sessions beyond `report`: import, fit, correct,
characterize, compare."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from calibrate.console import print_summary_table
from calibrate.errors import UsageError


def _load(path: str) -> Any:
    from analysis.load import SessionError, load_session

    try:
        return load_session(path)
    except SessionError as exc:
        raise UsageError(str(exc)) from None


def _components(expr: str) -> list[str]:
    from analysis.pairing import split_candidate

    try:
        return split_candidate(expr)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


# --------------------------------------------------------------------------- fit / correct
def _meter_of(data: Any, cid: str) -> tuple[str | None, str | None]:
    """(meter kind, meter name) of channel ``cid``, as the loader read them from the manifest."""
    tr = data.channels.get(cid)
    return (tr.info.get("meter_kind"), tr.meter) if tr is not None else (None, None)


def _provenance(data: Any, reference: str | None, comps: list[str]) -> dict[str, Any]:
    """What a model fitted on (or applied to) this session depends on."""
    kind, name = _meter_of(data, reference) if reference else (None, None)
    host = data.manifest["host"].get("hostname")  # the loader's schema makes host an object
    return {"reference": reference, "reference_kind": kind, "reference_name": name, "host": host,
            "channel_kinds": {c: _meter_of(data, c)[0] for c in comps if c in data.channels},
            "workload": (data.manifest.get("workload") or {}).get("name")}


def _session_table(path: str, reference: str | None, comps: list[str], window: float | None) -> Any:
    from analysis.pipeline import window_table

    data = _load(path)
    try:
        df = window_table(data, reference, comps, window_s=window)
    except ValueError as exc:
        raise UsageError(str(exc).splitlines()[0]) from None
    df["session"] = Path(path).name
    df["workload"] = (data.manifest.get("workload") or {}).get("name") or Path(path).name
    df.attrs["channels"] = {c: data.channels[c].info for c in comps if c in data.channels}
    df.attrs["provenance"] = _provenance(data, df.attrs["reference"], comps)
    return df


def cmd_fit(args: argparse.Namespace) -> int:
    import pandas as pd

    from analysis.calibration import fit_calibration, refit_cpu_model

    comps = _components(args.candidate)
    if args.window is not None:
        _check_window(args.window)
    tables = [_session_table(p, args.reference, comps, args.window) for p in args.sessions]
    refs = {t.attrs["reference"] for t in tables}
    if len(refs) > 1:
        raise UsageError(f"sessions use different references ({', '.join(sorted(refs))}); pass --reference")
    table = pd.concat(tables, ignore_index=True)
    table.attrs["reference"] = refs.pop()
    provs = [t.attrs["provenance"] for t in tables]
    provenance = {
        "reference_kind": provs[0]["reference_kind"], "reference_name": provs[0]["reference_name"],
        "hosts": sorted({p["host"] for p in provs if p["host"]}),
        "channel_kinds": provs[0]["channel_kinds"],
        "workloads": sorted({p["workload"] for p in provs if p["workload"]}),
    }
    combine = "per-component" if args.per_component else "sum"
    if args.per_component and len(comps) < 2:
        raise UsageError("--per-component needs a candidate of two or more channels (e.g. a+b)")
    try:
        model = fit_calibration(table, comps, window_s=float(tables[0].attrs["window_s"]), combine=combine,
                                provenance=provenance)
    except ValueError as exc:
        raise UsageError(str(exc).splitlines()[0]) from None
    model.save(args.output)
    cv = model.cross_validation
    print(model.to_json()["equation"])
    print(f"  fitted on {model.n_windows} windows of {model.window_s:.1f} s from {len(args.sessions)} session(s); "
          f"residual SD {model.residual_sd_w:.2f} W")
    if model.combine == "sum" and len(comps) > 1:
        print(f"  one gain on the sum {'+'.join(comps)} (pass --per-component for a gain per channel)")
    if model.collinearity:
        corr = ", ".join(f"r({k}) = {_num(v)}" for k, v in model.collinearity["correlation"].items())
        print(f"  collinearity of the components: {corr}; condition number {_num(model.collinearity['condition_number'])}")
    if cv.get("folds"):
        print(f"  {cv['method']}: RMSE {cv['rmse_w']:.2f} W, MAPE {cv['mape_pct']:.2f} %")
        for f in cv["folds"]:
            print(f"    held out {f['held_out']}: RMSE {f['rmse_w']:.2f} W, bias {f['bias_w']:+.2f} W")
    else:
        print(f"  cross-validation: {cv.get('method')}")
    for w in model.warnings:
        print(f"  warning: {w}")
    chan = tables[0].attrs.get("channels", {}).get(comps[0], {})
    settings = chan.get("info") or {}
    if len(comps) == 1 and chan.get("meter_kind") == "cpu-model" and "idle_w" in settings:
        idle, top = refit_cpu_model(model, float(settings["idle_w"]), float(settings["max_w"]))
        print(f"  the utilisation model fitted to {model.reference}: cpu-model?idle={idle:.1f}&max={top:.1f} "
              f"(was idle={settings['idle_w']:g}&max={settings['max_w']:g})")
    print(f"model: {args.output}")
    return 0


def _check_window(window_s: float, span_s: float | None = None) -> None:
    from analysis.calibration import MIN_WINDOW_S
    from analysis.windows import check_window_count

    if not (window_s >= MIN_WINDOW_S) or not np.isfinite(window_s):
        raise UsageError(f"--window must be at least {MIN_WINDOW_S} s")
    if span_s is not None:
        try:
            check_window_count(window_s, span_s)
        except ValueError as exc:
            raise UsageError(str(exc)) from None


def _phase_corrections(model: Any, data: Any, lags: dict[str, Any]) -> list[dict[str, Any]]:
    """Calibrated energy of the workload and of each of its phases: the corrected power
    integrated over the whole phase (not only its complete windows)."""
    from analysis.calibration import correct_span
    from analysis.series import series_of, to_reference_clock
    from analysis.windows import span_energy

    series = {c: series_of(data.channels[c]) for c in model.components}
    ref = series_of(data.channels[model.reference]) if model.reference in data.channels \
        and len(data.channels[model.reference].ok) >= 2 else None
    phases = [(n, a, b) for n, a, b in data.phases() if n not in ("baseline-before", "baseline-after")]
    if not any(n == "workload" for n, _, _ in phases):  # an imported session: the components' common span
        t0 = max(float(s.t_s[0]) for s in series.values())
        t1 = min(float(s.t_s[-1]) for s in series.values())
        phases = [("session", t0, t1)] if t1 > t0 else []
    out = []
    for name, a, b in phases:
        row: dict[str, Any] = {"phase": name, "t0_s": a, "t1_s": b}
        comp_j, short = {}, []
        for c, s in series.items():
            t = to_reference_clock(s.t_s, lags.get(c)) if lags.get(c) and lags[c].get("applied") else s.t_s
            e, covered = span_energy((a, b), t, s.energy_j, s.power_w, **s.energy_options())
            comp_j[c] = e
            if not np.isfinite(e) or covered < 0.9 * (b - a):
                short.append(f"{c} measured {covered:.1f} of {b - a:.1f} s")
        if short:
            row.update(energy_j=None, pi_j=[None, None], warnings=[f"no calibrated energy: {'; '.join(short)}"])
            out.append(row)
            continue
        row.update(correct_span(model, b - a, comp_j))
        row["warnings"] = []
        if ref is not None:
            e, covered = span_energy((a, b), ref.t_s, ref.energy_j, ref.power_w, **ref.energy_options())
            if np.isfinite(e) and covered >= 0.9 * (b - a):
                row["reference_j"] = e
                row["error_pct"] = 100 * (row["energy_j"] - e) / e if e else None
                row["reference_in_pi"] = bool(row["pi_j"][0] <= e <= row["pi_j"][1])
        out.append(row)
    return out


def cmd_correct(args: argparse.Namespace) -> int:
    from analysis.calibration import CalibrationModel, correct_energy, provenance_warnings
    from analysis.pipeline import window_table
    from analysis.session_format import json_safe

    try:
        model = CalibrationModel.load(args.model)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    data = _load(args.session)
    missing = [c for c in model.components if c not in data.channels or len(data.channels[c].ok) < 2]
    if missing:
        raise UsageError(f"{args.session}: no usable channel {missing[0]!r} (the model needs "
                         f"{', '.join(model.components)}); channels: {', '.join(data.channels)}")
    window = args.window or model.window_s
    _check_window(window, data.duration_s)
    has_ref = model.reference in data.channels and len(data.channels[model.reference].ok) >= 2
    try:
        if has_ref:
            table = window_table(data, model.reference, model.components, window_s=window)
        else:  # no wall meter in this session: windows on the first component's clock
            table = window_table(data, model.components[0], model.components[1:], window_s=window)
            table[model.components[0]] = table.pop("reference")
    except ValueError as exc:
        raise UsageError(str(exc).splitlines()[0]) from None
    if len(table) == 0:
        raise UsageError("no complete windows in this session to correct")
    warnings = provenance_warnings(model, _provenance(data, model.reference if has_ref else None, model.components))
    if not has_ref:
        warnings.append(f"this session has no {model.reference} channel: the calibrated energy cannot be checked")
    warnings += [f"model: {w}" for w in model.warnings]
    result = correct_energy(model, table)
    result["scope"] = "complete windows"
    lags = table.attrs.get("lags") or {} if has_ref else {}
    phases = _phase_corrections(model, data, lags)
    workload = next((p for p in phases if p["phase"] in ("workload", "session")), None)
    if workload is None:
        warnings.append("no workload phase in this session: only its complete windows are corrected")
    for p in phases:
        warnings += [f"{p['phase']}: {w}" for w in p.get("warnings", [])]
    out = {"model": str(args.model), "session": str(args.session), "workload": workload,
           "phases": [p for p in phases if p is not workload], "windows": dict(result), **result,
           "warnings": warnings}
    if args.json:
        print(json.dumps(json_safe(out), indent=2, allow_nan=False))
        return 0
    if workload is not None and workload.get("energy_j") is not None:
        lo, hi = workload["pi_j"]
        print(f"calibrated {model.reference} energy of the {workload['phase']} ({workload['duration_s']:.1f} s): "
              f"{_num(workload['energy_j'])} J, 95% PI [{_num(lo)}, {_num(hi)}] J")
        if "reference_j" in workload:
            print(f"  {model.reference} measured: {_num(workload['reference_j'])} J "
                  f"(error {_num(workload['error_pct'])} %, {'inside' if workload['reference_in_pi'] else 'OUTSIDE'} "
                  "the PI)")
        for p in out["phases"]:
            if p.get("energy_j") is not None:
                print(f"  phase {p['phase']} ({p['duration_s']:.1f} s): {_num(p['energy_j'])} J, "
                      f"95% PI [{_num(p['pi_j'][0])}, {_num(p['pi_j'][1])}] J")
    lo, hi = result["pi_j"]
    print(f"over complete windows, {result['covered_s']:.0f} s ({result['n_windows']} windows): "
          f"{_num(result['energy_j'])} J, 95% PI [{_num(lo)}, {_num(hi)}] J")
    for c, e in result["uncorrected_j"].items():
        print(f"  {c} (uncorrected): {_num(e)} J")
    if "reference_j" in result:
        print(f"  {model.reference} measured: {_num(result['reference_j'])} J "
              f"(error {_num(result['error_pct'])} %, {'inside' if result['reference_in_pi'] else 'OUTSIDE'} the PI)")
    for w in warnings:
        print(f"warning: {w}")
    return 0


# --------------------------------------------------------------------------- characterize
def cmd_characterize(args: argparse.Namespace) -> int:
    from analysis.characterize import characterize, merge_edges
    from analysis.series import series_of

    data = _load(args.session)
    # a phase's end and the next one's start are one load edge, stamped ~0.1-0.4 ms apart
    edges = merge_edges(np.array([t for name, a, b in data.phases()
                                  if name not in ("workload", "baseline-before", "baseline-after") for t in (a, b)]))
    if len(edges) < 2:
        raise UsageError("characterize needs a step or square-wave session (phase markers at the load edges): "
                     "record one with --workload square or --workload step")
    rows = []
    for cid, tr in data.channels.items():
        if len(tr.ok) < 4:
            continue
        s = series_of(tr)
        t = s.t_s if s.power_w is not None else s.t_p
        p = s.power_w if s.power_w is not None else s.p
        try:
            c = characterize(t, p, edges_s=edges)
        except ValueError as exc:
            rows.append({"channel": cid, "error": str(exc).splitlines()[0]})
            continue
        rows.append({"channel": cid, "update_period_s": c.update_period_s, "window_s": c.window_s,
                     "delay_s": c.delay_s, "rise_time_s": c.rise_time_s, "n_edges": c.n_edges,
                     "response_lag_s": c.response_lag_s, "seen_fraction": c.seen_fraction})
    out = Path(args.session) / "characterization.json"
    out.write_text(json.dumps(rows, indent=2, default=float) + "\n")
    if args.json:
        print(json.dumps(rows, indent=2, default=float))
        return 0
    print(f"{'channel':<28}{'update (s)':>12}{'window (s)':>12}{'delay (s)':>12}{'rise (s)':>12}{'seen':>8}{'edges':>7}")
    for r in rows:
        if "error" in r:
            print(f"{r['channel']:<28}  {r['error']}")
            continue
        print(f"{r['channel']:<28}" + "".join(f"{_num(r[k]):>12}" for k in ("update_period_s", "window_s", "delay_s", "rise_time_s"))
              + f"{_num(r['seen_fraction']):>8}{r['n_edges']:>7}")
    print(f"written: {out}")
    return 0


def _num(v: Any) -> str:
    from analysis.numbers import fmt_number

    return fmt_number(v, 3, grouping=False)


# --------------------------------------------------------------------------- compare
def cmd_compare(args: argparse.Namespace) -> int:
    import pandas as pd

    from analysis.compare_report import (
        compare_row,
        reference_warning,
        render_compare_html,
        report_links,
        terminal_tables,
    )
    from analysis.escape import terminal_text
    from analysis.report import write_report
    from analysis.session_format import write_text_atomic

    rows = []
    for p in args.sessions:
        summary_path = Path(p) / "summary.json"
        if summary_path.exists() and not args.refresh:
            try:
                summary = json.loads(summary_path.read_text())
            except ValueError:
                raise UsageError(f"{summary_path} is not valid JSON: run with --refresh to re-analyse") from None
        else:
            _load(p)
            summary = write_report(p, reference=args.reference, location=args.location)
        rows.append(compare_row(Path(p).name, summary))
    warn = reference_warning(rows)
    if warn:
        print(f"warning: {terminal_text(warn, None)}", file=sys.stderr)
    df = pd.DataFrame(rows)
    if args.html:
        write_text_atomic(args.html, render_compare_html(rows, reports=report_links(args.html, args.sessions)))
        print(f"report: {terminal_text(args.html, None)}", file=sys.stderr if args.json else sys.stdout)
    if args.output:
        out = Path(args.output)
        _csv_safe(df).to_csv(out, index=False) if out.suffix == ".csv" else out.write_text(df.to_json(orient="records", indent=2))
    if args.json:
        print(df.to_json(orient="records", indent=2))
    else:
        print(terminal_tables(rows))
    return 0


def _csv_safe(df: Any) -> Any:
    """A copy whose text cells cannot run as spreadsheet formulas: a cell starting with
    = + - @ (or a tab/CR) gets a leading single quote (OWASP CSV injection)."""
    out = df.copy()
    for col in out.columns:
        if any(isinstance(v, str) for v in out[col]):
            out[col] = [("'" + v) if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r") else v
                        for v in out[col].astype(object)]
    out.columns = [("'" + c) if isinstance(c, str) and c[:1] in ("=", "+", "-", "@") else c for c in out.columns]
    return out


# --------------------------------------------------------------------------- import
def cmd_import(args: argparse.Namespace) -> int:
    from analysis.importer import TraceSpec, import_traces

    warnings: list[str] = []
    if bool(args.trace) == bool(args.power_dev):
        raise UsageError("give either --trace NAME=FILE.csv (repeatable) or --power-dev DIR")
    if args.power_dev:
        from analysis.power_dev import import_power_dev

        try:
            out = import_power_dev(Path(args.power_dev), Path(args.out), warnings)
        except (ValueError, OSError) as exc:
            raise UsageError(str(exc).splitlines()[0]) from None
        print(f"imported MLPerf power-dev results into {out} (channel ptd; PTDaemon clock, UTC)")
        for w in warnings:
            print(f"warning: {w}")
        return _import_report(args, out)
    try:
        specs = [TraceSpec.parse(t) for t in args.trace]
        names = {s.name for s in specs}
        for m in args.modelled or []:
            if m not in names:
                raise ValueError(f"--modelled {m!r} is not one of the traces ({', '.join(sorted(names))})")
        specs = [dataclasses.replace(s, source="modelled") if s.name in (args.modelled or []) else s for s in specs]
        out = import_traces(Path(args.out), specs, reference=args.reference, time_col=args.time_col,
                            power_col=args.power_col, energy_col=args.energy_col, warnings=warnings)
    except ValueError as exc:
        raise UsageError(str(exc).splitlines()[0]) from None
    print(f"imported {len(specs)} trace(s) into {out}")
    for w in warnings:
        print(f"warning: {w}")
    return _import_report(args, out)


def _import_report(args: argparse.Namespace, out: Path) -> int:
    if args.report:
        from analysis.report import write_report

        try:
            summary = write_report(out, reference=args.reference, window_s=args.window)
        except ValueError as exc:  # imported, but these traces cannot be compared
            raise UsageError(f"imported into {out}, but no report: {str(exc).splitlines()[0]}") from None
        print_summary_table(summary, out)
        print(f"report: {out / 'report.html'}")
    return 0


def add_analysis_commands(sub: argparse._SubParsersAction) -> None:
    """Register import, fit, correct, characterize and compare on ``sub``."""
    im = sub.add_parser("import", help="make a session from external power traces (CSV), to analyse them")
    im.add_argument("--power-dev", metavar="DIR",
                    help="import an MLPerf power-dev result folder instead: its PTDaemon sample logs (spl.txt) "
                         "as wall channel ptd, a phase per mark, LoadGen's power_begin..power_end as power_window")
    im.add_argument("--trace", action="append", metavar="NAME=FILE.csv[@SCOPE[/SOURCE][:POWERCOL]]",
                    help="a trace with a Unix-time column and a power (W) or energy (J) column; repeatable. "
                         "SCOPE: wall, system (default), package, core, uncore, dram, psys, gpu, cpu; SOURCE: "
                         "measured (default) or modelled; POWERCOL: this trace's power column (default --power-col), "
                         "e.g. wall=wall.csv@wall:watts --trace tool=tool.csv@package/modelled:power")
    im.add_argument("--modelled", action="append", metavar="NAME",
                    help="label trace NAME as modelled (an estimate), not measured; repeatable")
    im.add_argument("--reference", metavar="NAME", help="the reference trace (e.g. the wall meter)")
    im.add_argument("--out", required=True, metavar="DIR", help="the new session folder to write (must not exist or be empty)")
    im.add_argument("--time-col", default="timestamp", help="time column, Unix s (default timestamp)")
    im.add_argument("--power-col", default="power_w",
                    help="power column, W, of every trace without its own :POWERCOL (default power_w)")
    im.add_argument("--energy-col", default="energy_j", help="cumulative energy column, J (default energy_j)")
    im.add_argument("--window", type=float, metavar="S", help="comparison window for --report (s)")
    im.add_argument("--report", action="store_true", help="analyse at once (report.html, summary.json)")
    im.set_defaults(func=cmd_import)

    f = sub.add_parser("fit", help="fit wall = a + b x software over sessions (cross-validated)")
    f.add_argument("sessions", nargs="+", metavar="SESSION", help="session folders to fit on (one fold each for cross-validation)")
    f.add_argument("--reference", metavar="CHANNEL", help="reference channel (default: each session's)")
    f.add_argument("--candidate", required=True, metavar="EXPR", help="channel or sum, e.g. rapl.package-0+nvml.0")
    f.add_argument("--window", type=float, metavar="S", help="comparison window (s; default from the slowest meter)")
    f.add_argument("--per-component", action="store_true",
                   help="a gain per channel of a sum a+b (default: one gain on the sum, as report does); "
                        "prints the channels' collinearity")
    f.add_argument("-o", "--output", default="model.json", metavar="MODEL.json", help="where to write the model (default model.json)")
    f.set_defaults(func=cmd_fit)

    c = sub.add_parser("correct", help="apply a calibration model to a session, with prediction intervals")
    c.add_argument("session", metavar="SESSION", help="session folder to correct")
    c.add_argument("--model", required=True, metavar="MODEL.json", help="a model written by `calibrate fit`")
    c.add_argument("--window", type=float, metavar="S", help="window of the corrected windows (s; default the model's window)")
    c.add_argument("--json", action="store_true", help="print the corrections as JSON")
    c.set_defaults(func=cmd_correct)

    ch = sub.add_parser("characterize", help="each meter's update period, averaging window, delay, rise time")
    ch.add_argument("session", metavar="SESSION", help="session folder (best: one with a step or square load)")
    ch.add_argument("--json", action="store_true", help="print the characterisation as JSON")
    ch.set_defaults(func=cmd_characterize)

    cm = sub.add_parser("compare", help="compare several sessions (a campaign)")
    cm.add_argument("sessions", nargs="+", metavar="SESSION", help="session folders to compare")
    cm.add_argument("--reference", metavar="CHANNEL", help="reference channel for every session (default: each session's)")
    cm.add_argument("--location", metavar="CODE", help="grid location for CO2 (ISO country code; default WORLD)")
    cm.add_argument("--refresh", action="store_true", help="re-analyse even where summary.json exists")
    cm.add_argument("-o", "--output", metavar="FILE.csv|json", help="also write the table to a CSV or JSON file")
    cm.add_argument("--json", action="store_true", help="print the table as JSON")
    cm.add_argument("--html", metavar="FILE.html", help="also write a page with the table and the accuracy/energy Pareto plot")
    cm.set_defaults(func=cmd_compare)
