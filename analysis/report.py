"""Reports: ``summary.json`` (DESIGN keys), a self-contained ``report.html`` and Markdown.

Every user-supplied string (channel names, workload parameters, paths) is escaped;
figures are embedded as base64 PNG so the file can be attached to a paper or mailed.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from analysis import plots
from analysis.emissions import lookup_intensity
from analysis.load import SessionData, load_session
from analysis.numbers import fmt_number, is_missing
from analysis.pipeline import Analysis, analyse
from analysis.series import to_reference_clock
from analysis.session_format import json_safe, write_text_atomic
from analysis.summary import summarize
from analysis.text_report import summary_markdown

__all__ = ["CSS", "ReportOptions", "html_number", "html_table", "img_tag", "render_html", "write_report"]


@dataclass(frozen=True)
class ReportOptions:
    """What a session report compares and how CO2 is counted.

    ``reference``: channel id or meter name (None: the session's); ``candidates``: channel
    ids or sums ``"a+b"`` (None: every other channel); ``window_s``: comparison window (s;
    None: from the meters); ``location``: grid code for the intensity; ``intensity``:
    g CO2e/kWh, overrides ``location``; ``pue``: facility energy / IT energy (>= 1).
    """

    reference: str | None = None
    candidates: tuple[str, ...] | None = None
    window_s: float | None = None
    location: str | None = None
    intensity: float | None = None
    pue: float | None = None

    def validate(self) -> ReportOptions:
        """Raise ValueError (one line) for a bad window, intensity, PUE or location; return self."""
        w = self.window_s
        if w is not None and not (math.isfinite(w) and w > 0):
            raise ValueError(f"--window must be a positive number of seconds, got {w}")
        i = self.intensity
        if i is not None and not (math.isfinite(i) and i >= 0):
            raise ValueError(f"--intensity must be >= 0 g CO2/kWh, got {i}")
        pue = self.pue
        if pue is not None and not (math.isfinite(pue) and pue >= 1):
            raise ValueError(f"--pue must be >= 1 (facility energy / IT energy), got {pue}")
        if i is None and self.location:
            lookup_intensity(self.location)  # ValueError naming the known locations
        return self


def write_report(path: str | Path, options: ReportOptions | None = None, **kwargs: Any) -> dict[str, Any]:
    """Analyse the session at ``path``; write summary.json, report.html and summary.md there;
    return the (JSON-safe) summary.

    ``options`` or the same fields as keywords (``reference=``, ``candidates=``,
    ``window_s=``, ``location=``, ``intensity=``, ``pue=``), not both.
    """
    unknown = set(kwargs) - {f.name for f in fields(ReportOptions)}
    if unknown:
        raise TypeError(f"write_report() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    if options is not None and kwargs:
        raise TypeError("write_report() takes options or keyword arguments, not both")
    if options is None:
        cands = kwargs.get("candidates")
        options = ReportOptions(**{**kwargs, "candidates": tuple(cands) if cands is not None else None})
    folder = Path(path)
    data = load_session(folder)
    o = options
    result = analyse(data, o.reference, list(o.candidates) if o.candidates is not None else None, o.window_s)
    summary = json_safe(summarize(data, location=o.location, intensity=o.intensity, pue=o.pue, result=result))
    # each file via a temporary name and a rename: a failure (a full disk) leaves no half file
    write_text_atomic(folder / "summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n")
    write_text_atomic(folder / "report.html", render_html(data, summary, result))
    write_text_atomic(folder / "summary.md", summary_markdown(summary))
    return summary


# --------------------------------------------------------------------------- HTML
def img_tag(png: bytes, alt: str) -> str:
    """An <img> with the PNG embedded (base64) and ``alt`` escaped."""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def html_number(v: Any, digits: int = 2, unit: str = "") -> str:
    """:func:`~analysis.numbers.fmt_number` for HTML: escaped, an en dash when missing."""
    return "&ndash;" if is_missing(v) else html.escape(fmt_number(v, digits, unit))


def _ci(ci: Any, digits: int = 2) -> str:
    if not ci or any(c is None for c in ci):
        return "&ndash;"
    return f"[{html_number(ci[0], digits)}, {html_number(ci[1], digits)}]"


def html_table(headers: list[str], rows: list[list[str]]) -> str:
    """A <table>: ``headers`` escaped here, ``rows`` cells already HTML."""
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


def render_html(data: SessionData, summary: dict[str, Any], result: Analysis) -> str:
    """The self-contained report page of a session: ``summary`` (JSON-safe) for the figures,
    ``result`` (the :func:`~analysis.pipeline.analyse` the summary came from) for the traces."""
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
        f"duration {html_number(summary.get('duration_s'), 1, ' s')}; workload <b>{html.escape(str(wl.get('name')))}</b> "
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
                     src_html, html_number(m.get("energy_j"), 1), html_number(m.get("mean_power_w"), 2), html_number(m.get("idle_power_w"), 2),
                     html_number(m.get("dynamic_energy_j"), 1), str(m.get("samples", 0)), html_number(m.get("interval_s"), 3),
                     "counter" if m.get("from_counter") else "power", faults])
    parts.append("<h2>Meters</h2>")
    parts.append(html_table(["channel", "scope", "source", "energy (J)", "mean power (W)", "idle power (W)",
                         "dynamic energy (J)", "samples", "interval (s)", "energy from", "faults"], rows))
    rec = summary.get("recorder") or {}
    if rec.get("cpu_fraction_of_core") is not None:
        parts.append(f"<p class=muted>Recorder overhead: {rec['cpu_fraction_of_core'] * 100:.3f}% of one core "
                     f"({html_number(rec.get('cpu_s'), 3)} s CPU).</p>")

    # traces
    traces = {cid: (to_reference_clock(s.t_p, result.lags.get(cid)), s.p) for cid, s in result.series.items()}
    parts.append("<h2>Power traces</h2><p class=muted>Candidates shifted by their estimated lag; phases shaded.</p>")
    parts.append(f'<div class="fig">{img_tag(plots.figure_png(plots.power_traces, traces, data.phases(), ref), "power traces")}</div>')

    # agreement
    parts.append("<h2>Agreement with the reference</h2>")
    agree_rows = []
    for a in summary.get("agreement", []):
        ba, reg, ccc, cal = a.get("bland_altman", {}), a.get("regression", {}), a.get("ccc", {}), a.get("calibration", {})
        agree_rows.append([html.escape(a["candidate"]), html_number(a.get("lag_s"), 2), html_number(a.get("window_s"), 1), str(a.get("n_windows", 0)),
                           html_number(ba.get("bias")) + " " + _ci(ba.get("bias_ci")), html_number(ba.get("sd")),
                           html_number(ba.get("loa_low")) + " " + _ci(ba.get("loa_low_ci")),
                           html_number(ba.get("loa_high")) + " " + _ci(ba.get("loa_high_ci")),
                           html_number(reg.get("slope"), 3) + " " + _ci(reg.get("slope_ci"), 3),
                           html_number(reg.get("intercept")) + " " + _ci(reg.get("intercept_ci")),
                           html_number(ccc.get("value"), 3) + " " + _ci(ccc.get("ci"), 3),
                           (f"{html_number(cal.get('intercept'))} + {html_number(cal.get('slope'), 3)} &times; x" if cal else html.escape(a.get("error", "")))])
    parts.append(html_table(["candidate", "lag (s)", "window (s)", "n", "bias (W) [95% CI]", "SD (W)", "LoA low", "LoA high",
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
        figs = [plots.figure_png(plots.scatter_fit, rw, cw, a.get("calibration"), ref, cname),
                plots.figure_png(plots.bland_altman_plot, rw, cw, a.get("bland_altman", {}), cname)]
        if a.get("calibration"):
            figs.append(plots.figure_png(plots.residuals_plot, rw, cw, a["calibration"]))
        parts.append("".join(f'<div class="fig">{img_tag(f, cname)}</div>' for f in figs))

    # phases
    phases = summary.get("phases") or []
    if phases:
        chans = list(summary["meters"])
        parts.append("<h2>Energy per phase (J)</h2>")
        parts.append(html_table(["phase", "start (s)", "duration (s)", *chans],
                            [[html.escape(p["phase"]), html_number(p["start_s"], 1), html_number(p["duration_s"], 1),
                              *[html_number(p.get(c), 1) for c in chans]] for p in phases[:200]]))
        parts.append(f'<div class="fig">{img_tag(plots.figure_png(plots.phase_energy_plot, phases, chans, figsize=plots.phase_energy_figsize(phases, chans)), "energy per phase")}</div>')

    # training epochs: energy and metrics side by side
    epochs = wl.get("epochs") or []
    if epochs:
        keys = [k for k in dict.fromkeys(k for r in epochs for k in r) if k not in ("epoch",)]
        parts.append("<h2>Training epochs</h2>")
        parts.append(html_table(["epoch", *[k.replace("_", " ") for k in keys]],
                            [[html.escape(str(r["epoch"])), *[html_number(r.get(k), 3) for k in keys]] for r in epochs[:500]]))
        parts.append(f"<p class=muted>energy: {html.escape(ref)} over the epoch phase (J).</p>")

    # workload & emissions
    em = summary.get("emissions") or {}
    parts.append("<h2>Workload, energy and CO<sub>2</sub></h2>")
    parts.append(html_table(["figure", "value"], [
        ["workload", html.escape(str(wl.get("name")))],
        ["duration (s)", html_number(wl.get("duration_s"), 1)],
        ["accuracy", html_number(wl.get("accuracy"), 4)],
        ["images/s", html_number(wl.get("images_per_s"), 1)],
        [f"energy of the workload phase, {html.escape(str(em.get('energy_from', ref)))} (J)", html_number(wl.get("energy_j"), 1)],
        ["accuracy per kWh", html_number(wl.get("accuracy_per_kwh"), 1)],
        ["grid intensity (g CO2e/kWh)", f"{html_number(em.get('intensity_g_per_kwh'), 1)} &mdash; {html.escape(str(em.get('location_name', em.get('location'))))}, "
                                         f"{html.escape(str(em.get('source')))} {html.escape(str(em.get('year') or ''))}"],
        ["PUE", html_number(em.get("pue"), 2)],
        ["CO2 (g)", html_number(em.get("co2_g"), 3)],
    ]))
    if em.get("by_location"):
        parts.append("<h3>The same energy on other grids</h3>")
        parts.append(html_table(["location", "g CO2e/kWh", "year", "CO2 (g)"],
                            [[html.escape(str(r["location_name"])), html_number(r["intensity_g_per_kwh"], 1), html.escape(str(r["year"] or "")),
                              html_number(r["co2_g"], 3)] for r in em["by_location"]]))
    parts.append(f"<p class=muted>Session folder: {html.escape(str(data.path))}; generated by calibrate "
                 f"{html.escape(str((manifest.get('versions') or {}).get('calibrate')))}.</p>")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>\n")
