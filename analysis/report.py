"""Reports: ``summary.json`` (DESIGN keys), a self-contained ``report.html`` and Markdown.

Every user-supplied string (channel names, workload parameters, paths) is escaped;
figures are embedded as base64 PNG so the file can be attached to a paper or mailed.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from analysis import plots
from analysis.load import SessionData, load_session
from analysis.summary import _json_safe, series_of, summarize, to_reference_clock


def write_report(path: str | Path, reference: str | None = None, candidates: list[str] | None = None,
                 window_s: float | None = None, location: str | None = None, intensity: float | None = None,
                 pue: float | None = None) -> dict[str, Any]:
    """Analyse the session at ``path``; write summary.json and report.html there; return the summary."""
    folder = Path(path)
    data = load_session(folder)
    summary = _json_safe(summarize(data, reference=reference, candidates=candidates, window_s=window_s,
                                   location=location, intensity=intensity, pue=pue))
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    (folder / "report.html").write_text(render_html(data, summary))
    (folder / "summary.md").write_text(summary_markdown(summary))
    return summary


# --------------------------------------------------------------------------- HTML
def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _n(v: Any, digits: int = 2, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "&ndash;"
    if isinstance(v, (int, float)):
        return html.escape(f"{v:,.{digits}f}{unit}")
    return html.escape(str(v))


def _ci(ci: Any, digits: int = 2) -> str:
    if not ci or any(c is None for c in ci):
        return "&ndash;"
    return f"[{_n(ci[0], digits)}, {_n(ci[1], digits)}]"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.fig{display:inline-block;vertical-align:top;margin:.3em}img{max-width:100%}
.warn{background:#fff4e0;border-left:4px solid #f0a000;padding:.4em .8em}
.modelled{color:#a05000;font-weight:bold}.muted{color:#777;font-size:.85em}
"""


def render_html(data: SessionData, summary: dict[str, Any]) -> str:
    ref = summary["reference"]
    manifest = data.manifest
    parts: list[str] = []
    title = f"calibrate report: {data.path.name}"
    parts.append(f"<h1>{html.escape(title)}</h1>")
    wl = summary.get("workload") or {}
    host = manifest.get("host", {})
    parts.append(
        "<p>"
        f"Status <b>{html.escape(summary['status'])}</b>; recorded {html.escape(str(manifest.get('created_utc', '')))} on "
        f"{html.escape(str(host.get('hostname', '')))} ({html.escape(str(host.get('cpu', '')))}, {html.escape(str(host.get('cpus', '')))} CPUs); "
        f"duration {_n(summary.get('duration_s'), 1, ' s')}; workload <b>{html.escape(str(wl.get('name')))}</b> "
        f"<span class=muted>{html.escape(json.dumps(wl.get('parameters', {})))}</span>; reference <b>{html.escape(ref)}</b>.</p>"
    )
    for w in summary.get("warnings", []):
        parts.append(f'<p class="warn">{html.escape(w)}</p>')

    # meters
    rows = []
    for cid, m in summary["meters"].items():
        src = m.get("source", "")
        src_html = f'<span class="modelled">{html.escape(src)}</span>' if src != "measured" else html.escape(src)
        if m.get("simulated"):
            src_html += " (simulated)"
        faults = ", ".join(f"{html.escape(k)}: {v}" for k, v in (m.get("errors") or {}).items()) or "none"
        rows.append([html.escape(cid) + (" <b>(reference)</b>" if cid == ref else ""), html.escape(str(m.get("scope", ""))),
                     src_html, _n(m.get("energy_j"), 1), _n(m.get("mean_power_w"), 2), _n(m.get("idle_power_w"), 2),
                     _n(m.get("dynamic_energy_j"), 1), str(m.get("samples", 0)), _n(m.get("interval_s"), 3),
                     "counter" if m.get("from_counter") else "power", faults])
    parts.append("<h2>Meters</h2>")
    parts.append(_table(["channel", "scope", "source", "energy (J)", "mean power (W)", "idle power (W)",
                         "dynamic energy (J)", "samples", "interval (s)", "energy from", "faults"], rows))
    rec = summary.get("recorder") or {}
    if rec.get("cpu_fraction_of_core") is not None:
        parts.append(f"<p class=muted>Recorder overhead: {rec['cpu_fraction_of_core'] * 100:.3f}% of one core "
                     f"({_n(rec.get('cpu_s'), 3)} s CPU).</p>")

    # traces
    traces = {}
    lags = summary.get("lags", {})
    for cid, tr in data.channels.items():
        if len(tr.ok) < 2:
            continue
        s = series_of(tr)
        traces[cid] = (to_reference_clock(s.t_p, lags.get(cid)), s.p)
    parts.append("<h2>Power traces</h2><p class=muted>Candidates shifted by their estimated lag; phases shaded.</p>")
    parts.append(f'<div class="fig">{_img(plots.power_traces(traces, data.phases(), ref), "power traces")}</div>')

    # agreement
    parts.append("<h2>Agreement with the reference</h2>")
    agree_rows = []
    for a in summary.get("agreement", []):
        ba, reg, ccc, cal = a.get("bland_altman", {}), a.get("regression", {}), a.get("ccc", {}), a.get("calibration", {})
        agree_rows.append([html.escape(a["candidate"]), _n(a.get("lag_s"), 2), _n(a.get("window_s"), 1), str(a.get("n_windows", 0)),
                           _n(ba.get("bias")) + " " + _ci(ba.get("bias_ci")), _n(ba.get("sd")),
                           _n(ba.get("loa_low")) + " " + _ci(ba.get("loa_low_ci")),
                           _n(ba.get("loa_high")) + " " + _ci(ba.get("loa_high_ci")),
                           _n(reg.get("slope"), 3) + " " + _ci(reg.get("slope_ci"), 3),
                           _n(reg.get("intercept")) + " " + _ci(reg.get("intercept_ci")),
                           _n(ccc.get("value"), 3) + " " + _ci(ccc.get("ci"), 3),
                           (f"{_n(cal.get('intercept'))} + {_n(cal.get('slope'), 3)} &times; x" if cal else html.escape(a.get("error", "")))])
    parts.append(_table(["candidate", "lag (s)", "window (s)", "n", "bias (W) [95% CI]", "SD (W)", "LoA low", "LoA high",
                         "slope (cand. on ref.)", "intercept (W)", "CCC", "calibration: reference ="], agree_rows))
    parts.append("<p class=muted>Differences are candidate &minus; reference, on window mean power "
                 "(window energy / window length). The calibration fits reference = a + b &times; candidate: "
                 "a is the draw the candidate does not see (PSU losses, fans, idle components).</p>")
    for a in summary.get("agreement", []):
        pairs = a.get("pairs") or {}
        if not pairs or len(pairs.get("reference_w", [])) < 3:
            continue
        rw, cw = np.asarray(pairs["reference_w"], float), np.asarray(pairs["candidate_w"], float)
        cname = a["candidate"]
        parts.append(f"<h3>{html.escape(cname)}</h3>")
        figs = [plots.scatter_fit(rw, cw, a.get("calibration"), ref, cname),
                plots.bland_altman_plot(rw, cw, a.get("bland_altman", {}), cname)]
        if a.get("calibration"):
            figs.append(plots.residuals_plot(rw, cw, a["calibration"]))
        parts.append("".join(f'<div class="fig">{_img(f, cname)}</div>' for f in figs))

    # phases
    phases = summary.get("phases") or []
    if phases:
        chans = list(summary["meters"])
        parts.append("<h2>Energy per phase (J)</h2>")
        parts.append(_table(["phase", "start (s)", "duration (s)", *chans],
                            [[html.escape(p["phase"]), _n(p["start_s"], 1), _n(p["duration_s"], 1),
                              *[_n(p.get(c), 1) for c in chans]] for p in phases[:200]]))
        parts.append(f'<div class="fig">{_img(plots.phase_energy_plot(phases, chans), "energy per phase")}</div>')

    # training epochs: energy and metrics side by side
    epochs = wl.get("epochs") or []
    if epochs:
        keys = [k for k in dict.fromkeys(k for r in epochs for k in r) if k not in ("epoch",)]
        parts.append("<h2>Training epochs</h2>")
        parts.append(_table(["epoch", *[k.replace("_", " ") for k in keys]],
                            [[html.escape(str(r["epoch"])), *[_n(r.get(k), 3) for k in keys]] for r in epochs[:500]]))
        parts.append(f"<p class=muted>energy: {html.escape(ref)} over the epoch phase (J).</p>")

    # workload & emissions
    em = summary.get("emissions") or {}
    parts.append("<h2>Workload, energy and CO<sub>2</sub></h2>")
    parts.append(_table(["figure", "value"], [
        ["workload", html.escape(str(wl.get("name")))],
        ["duration (s)", _n(wl.get("duration_s"), 1)],
        ["accuracy", _n(wl.get("accuracy"), 4)],
        ["images/s", _n(wl.get("images_per_s"), 1)],
        [f"energy of the workload phase, {html.escape(str(em.get('energy_from', ref)))} (J)", _n(wl.get("energy_j"), 1)],
        ["accuracy per kWh", _n(wl.get("accuracy_per_kwh"), 1)],
        ["grid intensity (g CO2e/kWh)", f"{_n(em.get('intensity_g_per_kwh'), 1)} &mdash; {html.escape(str(em.get('location_name', em.get('location'))))}, "
                                         f"{html.escape(str(em.get('source')))} {html.escape(str(em.get('year') or ''))}"],
        ["PUE", _n(em.get("pue"), 2)],
        ["CO2 (g)", _n(em.get("co2_g"), 3)],
    ]))
    if em.get("by_location"):
        parts.append("<h3>The same energy on other grids</h3>")
        parts.append(_table(["location", "g CO2e/kWh", "year", "CO2 (g)"],
                            [[html.escape(str(r["location_name"])), _n(r["intensity_g_per_kwh"], 1), html.escape(str(r["year"] or "")),
                              _n(r["co2_g"], 3)] for r in em["by_location"]]))
    parts.append(f"<p class=muted>Session folder: {html.escape(str(data.path))}; generated by calibrate "
                 f"{html.escape(str((manifest.get('versions') or {}).get('calibrate')))}.</p>")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>\n")


# --------------------------------------------------------------------------- Markdown
def agreement_markdown(result: dict[str, Any]) -> str:
    """Agreement statistics of ``calibrate agree`` as a Markdown table."""
    ba, reg, ccc = result.get("bland_altman", {}), result.get("regression", {}), result.get("ccc", {})

    def f(v: Any, d: int = 4) -> str:
        return "-" if v is None else f"{v:.{d}g}" if isinstance(v, float) else str(v)

    def ci(c: Any) -> str:
        return "-" if not c else f"[{f(c[0])}, {f(c[1])}]"

    lines = [f"{result.get('candidate')} vs {result.get('reference')} (difference = candidate - reference), n = {ba.get('n')}",
             "", "| statistic | value | 95% CI |", "|---|---|---|",
             f"| bias | {f(ba.get('bias'))} | {ci(ba.get('bias_ci'))} |",
             f"| SD of differences | {f(ba.get('sd'))} | |",
             f"| lower limit of agreement | {f(ba.get('loa_low'))} | {ci(ba.get('loa_low_ci'))} |",
             f"| upper limit of agreement | {f(ba.get('loa_high'))} | {ci(ba.get('loa_high_ci'))} |",
             f"| {reg.get('method')} slope | {f(reg.get('slope'))} | {ci(reg.get('slope_ci'))} |",
             f"| {reg.get('method')} intercept | {f(reg.get('intercept'))} | {ci(reg.get('intercept_ci'))} |",
             f"| Lin's CCC | {f(ccc.get('value'))} | {ci(ccc.get('ci'))} |"]
    if result.get("pearson_r") is not None:
        r = result["pearson_r"]
        lines.append(f"| Pearson r | {f(r.get('value') if isinstance(r, dict) else r)} | {ci(r.get('ci')) if isinstance(r, dict) else ''} |")
    if result.get("mape_pct") is not None:
        lines.append(f"| MAPE (%) | {f(result['mape_pct'])} | |")
    return "\n".join(lines) + "\n"


def summary_markdown(summary: dict[str, Any]) -> str:
    """A terminal-friendly Markdown summary of a session."""
    lines = [f"# {summary['session']}", "", f"status: {summary['status']}, reference: {summary['reference']}", "",
             "| channel | source | energy (J) | mean power (W) | samples | faults |", "|---|---|---|---|---|---|"]
    for cid, m in summary["meters"].items():
        e, p = m.get("energy_j"), m.get("mean_power_w")
        lines.append(f"| {cid} | {m.get('source')} | {'-' if e is None else f'{e:.1f}'} | "
                     f"{'-' if p is None else f'{p:.2f}'} | {m.get('samples')} | {sum((m.get('errors') or {}).values())} |")
    for a in summary.get("agreement", []):
        ba = a.get("bland_altman") or {}
        if ba.get("bias") is not None:
            lines.append(f"\n{a['candidate']}: lag {a.get('lag_s')} s, bias {ba['bias']:.2f} W, "
                         f"LoA [{ba['loa_low']:.2f}, {ba['loa_high']:.2f}] W over {a.get('n_windows')} windows")
        else:
            lines.append(f"\n{a['candidate']}: not compared ({a.get('error', 'no windows')})")
    return "\n".join(lines) + "\n"
