"""Reports: ``summary.json`` (DESIGN keys), a self-contained ``report.html`` and Markdown.

Every user-supplied string (channel names, workload parameters, paths) is escaped;
figures are embedded as base64 PNG so the file can be attached to a paper or mailed, and
written as SVG and PDF (with the window pairs as CSV) in the session's own ``figures/``.
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
from analysis.figure_export import FigureFolder, pairs_csv, slug
from analysis.load import SessionData, load_session
from analysis.numbers import fmt_number, is_missing
from analysis.pipeline import Analysis, analyse
from analysis.series import to_reference_clock
from analysis.session_format import json_safe, write_text_atomic
from analysis.summary import summarize
from analysis.text_report import summary_markdown

__all__ = ["CSS", "GLOSSARY", "FigureMaker", "ReportOptions", "agreement_tables", "html_number", "html_table", "html_text",
           "img_tag", "page", "render_html", "warning_list", "write_report"]


@dataclass(frozen=True)
class ReportOptions:
    """What a session report compares and how CO2 is counted.

    ``reference``: channel id or meter name (None: the session's); ``candidates``: channel
    ids or sums ``"a+b"`` (None: every other channel); ``window_s``: comparison window (s;
    None: from the meters); ``location``: grid code for the intensity; ``intensity``:
    g CO2e/kWh, overrides ``location``; ``pue``: facility energy / IT energy (>= 1);
    ``export_figures``: also write each figure as SVG and PDF and the window pairs as CSV in
    the session's ``figures/`` (see :mod:`analysis.figure_export`).
    """

    reference: str | None = None
    candidates: tuple[str, ...] | None = None
    window_s: float | None = None
    location: str | None = None
    intensity: float | None = None
    pue: float | None = None
    export_figures: bool = False

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
    figures = FigureFolder(folder) if o.export_figures else None
    write_text_atomic(folder / "report.html", render_html(data, summary, result, figures))
    if figures is not None:
        figures.finish()
    write_text_atomic(folder / "summary.md", summary_markdown(summary))
    return summary


# --------------------------------------------------------------------------- HTML
def img_tag(png: bytes, alt: str) -> str:
    """An <img> with the PNG embedded (base64) and ``alt`` escaped."""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def html_number(v: Any, digits: int = 2, unit: str = "") -> str:
    """:func:`~analysis.numbers.fmt_number` for HTML: escaped, an en dash when missing."""
    return "&ndash;" if is_missing(v) else html.escape(fmt_number(v, digits, unit))


def html_text(v: Any) -> str:
    """``v`` as escaped text; an en dash for None, NaN or an empty string."""
    return "&ndash;" if is_missing(v) or v == "" else html.escape(str(v))


def _ci(ci: Any, digits: int = 2) -> str:
    if not ci or len(ci) != 2 or any(is_missing(c) for c in ci):
        return ""
    return f'<br><span class="ci">[{html_number(ci[0], digits)}, {html_number(ci[1], digits)}]</span>'


def _value_ci(v: Any, ci: Any, digits: int = 2) -> str:
    return html_number(v, digits) + ("" if is_missing(v) else _ci(ci, digits))


def html_table(headers: list[str], rows: list[list[str]], cls: str = "", first_cls: list[str] | None = None) -> str:
    """A <table>: ``headers`` escaped here, ``rows`` cells already HTML; ``cls``: the table's
    class; ``first_cls``: a class for each row's first cell ("" for none)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)

    def row(i: int, r: list[str]) -> str:
        c0 = first_cls[i] if first_cls and i < len(first_cls) and first_cls[i] else ""
        cells = [f'<td class="{html.escape(c0)}">{r[0]}</td>' if c0 else f"<td>{r[0]}</td>"] if r else []
        return "<tr>" + "".join(cells + [f"<td>{c}</td>" for c in r[1:]]) + "</tr>"

    body = "".join(row(i, r) for i, r in enumerate(rows))
    c = f' class="{html.escape(cls)}"' if cls else ""
    return f"<table{c}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def warning_list(items: list[tuple[str, str]]) -> str:
    """Caveats as a list: (what it concerns, message), both escaped; empty when none."""
    if not items:
        return ""
    lis = "".join(f"<li><b>{html.escape(who)}</b>: {html.escape(w)}</li>" if who else f"<li>{html.escape(w)}</li>"
                  for who, w in items)
    return f'<ul class="warn">{lis}</ul>'


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em;overflow-wrap:anywhere}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}h3{overflow-wrap:anywhere}
table{border-collapse:collapse;margin:.5em 0;font-size:.85em;max-width:100%}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:right;vertical-align:top}
th{background:#f4f4f4;font-weight:600}td:first-child,th:first-child{text-align:left;max-width:22em}td:first-child{overflow-wrap:anywhere;min-width:7em}
table.kv td{text-align:left}table.kv td:first-child{color:#555;white-space:nowrap}table.params{font-size:1em;margin:0}
.ci{color:#666;font-size:.85em;white-space:nowrap}td.sub1{padding-left:1.6em}td.sub2{padding-left:2.8em}
figure.fig{display:inline-block;vertical-align:top;margin:.3em;max-width:100%}figcaption{font-size:.8em;color:#555}
img{max-width:100%;height:auto}
.warn{background:#fff4e0;border-left:4px solid #f0a000;padding:.4em .8em .4em 1.8em;overflow-wrap:anywhere}p.warn{padding-left:.8em}
.alarm{background:#fde8e8;border:2px solid #c00;padding:.6em .9em;font-weight:bold}
.modelled{color:#a05000;font-weight:bold}.muted{color:#777;font-size:.85em;overflow-wrap:anywhere}
dl.glossary dt{font-weight:bold;margin-top:.5em}dl.glossary dd{margin-left:1.5em}
"""


def page(title: str, body: str) -> str:
    """A self-contained HTML page: ``title`` escaped here, ``body`` already HTML."""
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>{body}</body></html>\n")


class FigureMaker:
    """Draws a report's figures: each as an embedded PNG and, when ``folder`` is usable,
    also as ``figures/<name>.svg`` and ``.pdf``, linked under the image."""

    def __init__(self, folder: FigureFolder | None = None) -> None:
        self.folder = folder if folder is not None and folder.usable else None
        self.exported: list[tuple[str, list[tuple[str, str]]]] = []  # (alt, [(format, link)])

    def __call__(self, plot: Any, *args: Any, name: str, alt: str, figsize: tuple[float, float] | None = None,
                 **kwargs: Any) -> str:
        """``plot(*args, **kwargs)`` on a new figure, as a <figure> with its export links."""
        ax = plots.new_axes(figsize or plots.FIGSIZE[plot.__name__])
        plot(*args, ax=ax, **kwargs)
        formats = ("png", "svg", "pdf") if self.folder is not None else ("png",)
        out = plots.render(ax.figure, formats)
        links = []
        for fmt in formats[1:]:
            link = self.folder.write(f"{name}.{fmt}", out[fmt]) if self.folder is not None else None
            if link:
                links.append((fmt.upper(), link))
        if links:
            self.exported.append((alt, links))
        cap = html.escape(alt) + ("".join(f' &middot; <a href="{html.escape(lk)}">{f}</a>' for f, lk in links))
        return f'<figure class="fig">{img_tag(out["png"], alt)}<figcaption>{cap}</figcaption></figure>'


GLOSSARY = [
    ("window", "the span (s) over which each meter's energy is taken; every statistic compares the two meters' "
               "window mean power (window energy / window length, W), never single samples."),
    ("bias", "the mean difference, candidate &minus; reference (W), with its 95% confidence interval."),
    ("limits of agreement (LoA)", "bias &plusmn; 1.96 SD of the differences (W): where 95% of the differences "
                                  "between the two meters are expected to lie (Bland &amp; Altman 1986); "
                                  "each with its confidence interval."),
    ("proportional bias", "a difference that grows or shrinks with the level of power: the slope (W/W) of the "
                          "differences on the means and its p value; when significant, one bias misdescribes "
                          "it and the ratio is the better summary."),
    ("ratio (GMR)", "the geometric mean of candidate / reference, with its 95% CI: the share of the reference's "
                    "power the candidate reports."),
    ("Pearson r", "linear correlation of the two meters' window powers: high r says they move together, "
                  "not that they agree."),
    ("CCC", "Lin's concordance correlation coefficient: agreement with the identity line y = x (1 is perfect); "
            "it falls with both scatter and bias."),
    ("MAPE", "mean absolute percentage error of the candidate against the reference (%)."),
    ("calibration", "the least-squares line reference = a + b &times; candidate (W): a is the draw the candidate "
                    "does not see (PSU losses, fans, idle components), b its gain."),
    ("dynamic energy", "energy above the idle power measured in the baselines: energy &minus; idle power "
                       "&times; time (J)."),
    ("energy from counter / power", "counter: from the meter's cumulative energy register (J), the preferred "
                                    "source; power: the integral of its power readings (W) over time."),
    ("delay (lag)", "the time (s) by which a meter's readings trail the reference, estimated by cross-correlation "
                    "and removed before any statistic; shown as lag."),
    ("modelled / simulated", "a modelled meter estimates power from a model (e.g. CPU utilisation), it does not "
                             "measure it; a simulated meter is a protocol-faithful stand-in for hardware whose "
                             "readings follow a model of this machine."),
]


def _fmt_param(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return html.escape(str(v))
    if isinstance(v, float):
        return "&ndash;" if is_missing(v) else html.escape(f"{v:.6g}")
    if v is None or v == "":
        return "&ndash;"
    if isinstance(v, (dict, list, tuple)):
        return html.escape(json.dumps(v, default=str)) if v else "&ndash;"
    return html.escape(str(v))


def _imported_from(manifest: dict[str, Any]) -> list[str]:
    return [str(m.get("source_file") or str(m.get("uri", "")).removeprefix("import:"))
            for m in manifest.get("meters") or [] if m.get("kind") == "import"]


def _header(data: SessionData, summary: dict[str, Any]) -> list[str]:
    """The title, the modelled-reference alarm and the session's facts as a small table
    (only the facts the session has: an imported session names its files, not a host)."""
    manifest, ref = data.manifest, summary["reference"]
    wl = summary.get("workload") or {}
    parts = [f"<h1>calibrate report: {html.escape(data.path.name)}</h1>"]
    if summary.get("reference_modelled", summary.get("reference_source", "measured") != "measured"):
        parts.append(f'<p class="alarm">The reference {html.escape(ref)} is MODELLED, not measured: every figure '
                     "below compares software estimates with an estimate, and the energy and CO<sub>2</sub> are "
                     "an estimate's estimate. Record with a wall meter as the reference to measure.</p>")
    if summary.get("reference_simulated"):
        parts.append(f'<p class="alarm">The reference {html.escape(ref)} is a SIMULATED meter: the figures '
                     "show the method, not this machine's true power.</p>")
    rows: list[list[str]] = [["status", f"<b>{html_text(summary.get('status'))}</b>"]]
    files = _imported_from(manifest)
    if files:
        rows.append(["imported from", "<br>".join(html.escape(f) for f in files)])
    elif manifest.get("created_utc"):
        rows.append(["recorded (UTC)", html_text(manifest.get("created_utc"))])
    host = manifest.get("host") or {}
    machine = ", ".join(x for x in (str(host.get("cpu") or "").strip(),
                                    f"{host['cpus']} CPUs" if isinstance(host.get("cpus"), int) else "") if x)
    if host.get("hostname") or machine:
        name = html.escape(str(host.get("hostname") or ""))
        rows.append(["host", (name + (f" ({html.escape(machine)})" if name and machine else html.escape(machine)))])
    rows.append(["duration (s)", html_number(summary.get("duration_s"), 1)])
    rows.append(["workload", f"<b>{html_text(wl.get('name'))}</b>"])
    params = wl.get("parameters") or {}
    if isinstance(params, dict) and params:
        rows.append(["workload parameters", html_table(["parameter", "value"],
                                                       [[html.escape(str(k)), _fmt_param(v)] for k, v in params.items()],
                                                       cls="params")])
    src = summary.get("reference_source", "measured")
    rows.append(["reference", f"<b>{html.escape(ref)}</b>" + (f' <span class="modelled">({html.escape(str(src))})</span>'
                                                              if src != "measured" else "")])
    versions = manifest.get("versions") or {}
    if versions.get("calibrate"):
        rows.append(["recorded with", f"calibrate {html.escape(str(versions['calibrate']))}"
                     + (f", Python {html.escape(str(host['python']))}" if host.get("python") else "")])
    parts.append(html_table(["session", ""], rows, cls="kv"))
    return parts


def _assumptions(data: SessionData, summary: dict[str, Any]) -> str:
    """Modelled meters' assumed parameters (cpu-model: idle and max W) and simulated meters' caveat."""
    items = []
    for m in data.manifest.get("meters") or []:
        name = str(m.get("name", ""))
        for ch in m.get("channels") or []:
            info = ch.get("info") or {}
            if "idle_w" in info and "max_w" in info:
                assumed = info.get("assumed") or {}
                what = {k: f"assumed: {html.escape(str(assumed[k]))}" if assumed.get(k) else "given"
                        for k in ("idle_w", "max_w")}
                items.append(f"<li><b>{html.escape(str(ch.get('id', name)))}</b> is a model: P = idle + (max &minus; "
                             f"idle) &times; CPU utilisation, with idle {html_number(info['idle_w'], 1, ' W')} "
                             f"({what['idle_w']}) and max {html_number(info['max_w'], 1, ' W')} ({what['max_w']})"
                             + (f"; CPU {html.escape(str(info['cpu']))}" if info.get("cpu") else "")
                             + ". Pass <code>cpu-model?idle=W&amp;max=W</code> (measured, or fitted with "
                               "<code>calibrate fit</code>) to replace assumptions.</li>")
        if m.get("simulated"):
            items.append(f"<li><b>{html.escape(name)}</b> is SIMULATED"
                         + (f" ({html.escape(str(m['simulator']))} simulator)" if m.get("simulator") else "")
                         + ": a protocol-faithful stand-in whose power follows this machine's CPU load through a "
                           "PSU/fan model. Its figures show the method, not this machine's true power.</li>")
    if not items:
        return ""
    return "<h3>Modelled and simulated meters</h3><ul>" + "".join(items) + "</ul>"


def _calibration_cell(a: dict[str, Any]) -> str:
    cal = a.get("calibration") or {}
    if not cal:
        return html.escape(a.get("error", "")) or "&ndash;"
    label = html.escape(a.get("label") or f"{a.get('reference', 'reference')} = a + b x {a['candidate']}")
    b = (f"b = {html_number(cal.get('slope'), 3)}{_ci(cal.get('slope_ci'), 3)}" if not is_missing(cal.get("slope"))
         else "b: none (candidate nearly constant)")
    return f"{label}<br>a = {html_number(cal.get('intercept'), 1)} W{_ci(cal.get('intercept_ci'), 1)}<br>{b}"


def _prop_bias(ba: dict[str, Any]) -> str:
    pb = ba.get("proportional_bias") or {}
    if is_missing(pb.get("slope")):
        return "&ndash;"
    p = pb.get("p_value")
    return (f"{html_number(pb['slope'], 3)} W/W<br><span class=ci>p = "
            f"{'&ndash;' if is_missing(p) else html.escape(f'{p:.2g}')}</span>")


def _ratio(ba: dict[str, Any]) -> str:
    r = ba.get("ratio") or {}
    return _value_ci(r.get("gmr"), r.get("gmr_ci"), 3) if r else "&ndash;"


def agreement_tables(entries: list[dict[str, Any]], runs: bool = False) -> list[str]:
    """The agreement statistics as two tables that fit a page (Bland-Altman; correlation
    and calibration) and each entry's caveats under them.  ``runs``: entries pooled over
    runs (``n_runs``, the design and its subject count shown)."""
    ba_rows, reg_rows, warns = [], [], []
    for a in entries:
        ba, reg, ccc = a.get("bland_altman") or {}, a.get("regression") or {}, a.get("ccc") or {}
        name = html.escape(a["candidate"])
        design = ba.get("design") or a.get("bland_altman_method")
        if design:
            subj = ba.get("n_subjects")
            name += (f'<br><span class="ci">{html.escape(str(design))}'
                     + (f"; {int(subj)} subjects" if isinstance(subj, (int, float)) and not is_missing(subj) else "")
                     + "</span>")
        n = [str(a.get("n_runs", "&ndash;"))] if runs else [html_number(a.get("lag_s"), 2), html_number(a.get("window_s"), 1)]
        ba_rows.append([name, *n, str(a.get("n_windows", 0)),
                        _value_ci(ba.get("bias"), ba.get("bias_ci")), html_number(ba.get("sd")),
                        _value_ci(ba.get("loa_low"), ba.get("loa_low_ci")), _value_ci(ba.get("loa_high"), ba.get("loa_high_ci")),
                        _prop_bias(ba), _ratio(ba)])
        reg_rows.append([html.escape(a["candidate"]), _value_ci(a.get("pearson_r"), a.get("pearson_r_ci"), 3),
                         _value_ci(ccc.get("value"), ccc.get("ci"), 3), html_number(a.get("mape_pct"), 1),
                         _value_ci(reg.get("slope"), reg.get("slope_ci"), 3), _value_ci(reg.get("intercept"), reg.get("intercept_ci")),
                         _calibration_cell(a)])
        warns += [(a["candidate"], w) for w in a.get("warnings") or []]
        if a.get("error") and not a.get("warnings"):
            warns.append((a["candidate"], a["error"]))
    head = ["runs"] if runs else ["lag (s)", "window (s)"]
    return [html_table(["candidate", *head, "windows", "bias (W) [95% CI]", "SD (W)", "LoA low (W)", "LoA high (W)",
                        "proportional bias", "ratio cand./ref. (GMR)"], ba_rows),
            html_table(["candidate", "Pearson r", "CCC", "MAPE (%)", "slope (cand. on ref.)", "intercept (W)",
                        "calibration (W)"], reg_rows),
            warning_list(warns)]


_UNITS = {"_s": " (s)", "_j": " (J)", "_w": " (W)", "_g": " (g)", "_pct": " (%)"}


def _header_name(key: str) -> str:
    """A column name with its unit: ``duration_s`` -> ``duration (s)``, ``images_per_s`` -> ``images/s``."""
    if key.endswith("_per_s"):
        return key[: -len("_per_s")].replace("_", " ") + "/s"
    for suffix, unit in _UNITS.items():
        if key.endswith(suffix):
            return key[: -len(suffix)].replace("_", " ") + unit
    return key.replace("_", " ")


def _exports_section(figs: FigureMaker, csvs: list[tuple[str, str]], note: str | None) -> list[str]:
    parts = ["<h2>Files for a paper</h2>"]
    if note:
        parts.append(f'<p class="warn">{html.escape(note)}</p>')
    items = [f"<li>{html.escape(alt)}: " + ", ".join(f'<a href="{html.escape(lk)}">{f}</a>' for f, lk in links) + "</li>"
             for alt, links in figs.exported]
    items += [f'<li>window pairs, {html.escape(c)} (CSV: window start/end s, reference W, candidate W): '
              f'<a href="{html.escape(lk)}">{html.escape(lk)}</a></li>' for c, lk in csvs]
    items += ['<li>every figure of this report: <a href="summary.json">summary.json</a>, '
              '<a href="summary.md">summary.md</a></li>']
    parts.append("<ul>" + "".join(items) + "</ul>")
    return parts


def render_html(data: SessionData, summary: dict[str, Any], result: Analysis,
                figures: FigureFolder | None = None) -> str:
    """The self-contained report page of a session: ``summary`` (JSON-safe) for the figures,
    ``result`` (the :func:`~analysis.pipeline.analyse` the summary came from) for the traces;
    ``figures``: where the SVG/PDF figures and the pairs CSVs go (None: embedded PNG only)."""
    ref = summary["reference"]
    fig = FigureMaker(figures)
    parts = _header(data, summary)
    meter_warnings = {w for m in summary["meters"].values() for w in m.get("warnings") or []}
    agree_warnings = {w for a in summary.get("agreement", []) for w in a.get("warnings") or []}
    general = [w for w in summary.get("warnings", []) if w not in meter_warnings | agree_warnings]
    for w in general:
        parts.append(f'<p class="warn">{html.escape(w)}</p>')
    if meter_warnings | agree_warnings:
        parts.append(f'<p class="muted">{len(meter_warnings | agree_warnings)} more caveat(s) are shown beside the '
                     "meters and candidates they concern.</p>")

    # meters
    rows = []
    for cid, m in summary["meters"].items():
        src = str(m.get("source") or "measured")
        src_html = f'<span class="modelled">{html.escape(src)}</span>' if src != "measured" else html.escape(src)
        if m.get("simulated"):
            src_html += ' <span class="modelled">(simulated)</span>'
        faults = ", ".join(f"{html.escape(str(k))}: {v}" for k, v in (m.get("errors") or {}).items()) or "none"
        rows.append([html.escape(cid) + (" <b>(reference)</b>" if cid == ref else ""), html_text(m.get("scope")),
                     src_html, html_number(m.get("energy_j"), 1), html_number(m.get("mean_power_w"), 2),
                     html_number(m.get("idle_power_w"), 2), html_number(m.get("dynamic_energy_j"), 1),
                     str(m.get("samples", 0)), html_number(m.get("interval_s"), 3),
                     "counter" if m.get("from_counter") else "power", faults])
    parts.append("<h2>Meters</h2>")
    parts.append(html_table(["channel", "scope", "source", "energy (J)", "mean power (W)", "idle power (W)",
                             "dynamic energy (J)", "samples", "interval (s)", "energy from", "faults"], rows))
    parts.append(warning_list([(cid, w) for cid, m in summary["meters"].items() for w in m.get("warnings") or []]))
    parts.append(_assumptions(data, summary))
    rec = summary.get("recorder") or {}
    if not is_missing(rec.get("cpu_fraction_of_core")):
        parts.append(f"<p class=muted>Recorder overhead: {html_number(rec['cpu_fraction_of_core'] * 100, 3)}% of one core "
                     f"({html_number(rec.get('cpu_s'), 3)} s CPU).</p>")

    # traces
    traces = {cid: (to_reference_clock(s.t_p, result.lags.get(cid)), s.p) for cid, s in result.series.items()}
    parts.append("<h2>Power traces</h2><p class=muted>Power (W) against session time (s); candidates shifted by "
                 "their estimated lag; the innermost phases shaded.</p>")
    parts.append(fig(plots.power_traces, traces, data.phases(), ref, name="power-traces", alt="power traces"))

    # agreement
    parts.append("<h2>Agreement with the reference</h2>")
    parts += agreement_tables(summary.get("agreement", []))
    parts.append("<p class=muted>Differences are candidate &minus; reference, on window mean power "
                 "(window energy / window length, W); 95% confidence intervals under each value. "
                 "The calibration fits reference = a + b &times; candidate: a is the draw the candidate does not "
                 "see (PSU losses, fans, idle components). See the glossary at the end.</p>")
    csvs: list[tuple[str, str]] = []
    for a in summary.get("agreement", []):
        pairs = a.get("pairs") or {}
        if not pairs or len(pairs.get("reference_w", [])) < 3:
            continue
        rw, cw = np.asarray(pairs["reference_w"], float), np.asarray(pairs["candidate_w"], float)
        cname = a["candidate"]
        key = slug(cname)
        parts.append(f"<h3>{html.escape(cname)}</h3>")
        parts.append(fig(plots.scatter_fit, rw, cw, a.get("calibration"), ref, cname, name=f"scatter-{key}",
                         alt=f"{cname}: window power against the reference (W)"))
        parts.append(fig(plots.bland_altman_plot, rw, cw, a.get("bland_altman", {}), cname, name=f"bland-altman-{key}",
                         alt=f"{cname}: Bland-Altman (W)"))
        if a.get("calibration"):
            parts.append(fig(plots.residuals_plot, rw, cw, a["calibration"], name=f"residuals-{key}",
                             alt=f"{cname}: calibration residuals (W)"))
        if fig.folder is not None:
            link = fig.folder.write(f"pairs-{key}.csv", pairs_csv(a.get("windows_s"), pairs["reference_w"],
                                                                  pairs["candidate_w"]))
            if link:
                csvs.append((cname, link))

    # phases
    phases = sorted(summary.get("phases") or [], key=lambda p: (p.get("start_s") or 0.0, -(p.get("duration_s") or 0.0)))
    if phases:
        chans = list(summary["meters"])
        depth = plots.phase_depths(phases)
        parts.append("<h2>Energy per phase (J)</h2>")
        parts.append(html_table(["phase", "start (s)", "duration (s)", *[f"{c} (J)" for c in chans]],
                                [[html.escape(p["phase"]), html_number(p["start_s"], 1), html_number(p["duration_s"], 1),
                                  *[html_number(p.get(c), 1) for c in chans]] for p in phases[:200]],
                                first_cls=[f"sub{min(d, 2)}" if d else "" for d in depth[:200]]))
        if any(depth[:200]):
            parts.append("<p class=muted>Indented phases lie inside the one above (their energy is part of it); "
                         "the chart draws the innermost phases only.</p>")
        parts.append(fig(plots.phase_energy_plot, phases, chans, name="phase-energy", alt="energy per phase (J)",
                         figsize=plots.phase_energy_figsize(phases, chans)))

    # training epochs: energy and metrics side by side
    wl = summary.get("workload") or {}
    epochs = wl.get("epochs") or []
    if epochs:
        keys = [k for k in dict.fromkeys(k for r in epochs for k in r) if k not in ("epoch",)]
        parts.append("<h2>Training epochs</h2>")
        parts.append(html_table(["epoch", *[_header_name(k) for k in keys]],
                                [[html.escape(str(r["epoch"])), *[html_number(r.get(k), 3) for k in keys]]
                                 for r in epochs[:500]]))
        parts.append(f"<p class=muted>energy: {html.escape(ref)} over the epoch phase (J).</p>")

    # workload & emissions
    em = summary.get("emissions") or {}
    where = ", ".join(x for x in (str(em.get("location_name") or em.get("location") or ""),
                                  " ".join(str(x) for x in (em.get("source"), em.get("year")) if x)) if x)
    parts.append("<h2>Workload, energy and CO<sub>2</sub></h2>")
    parts.append(html_table(["figure", "value"], [
        ["workload", html_text(wl.get("name"))],
        ["duration (s)", html_number(wl.get("duration_s"), 1)],
        ["accuracy", html_number(wl.get("accuracy"), 4)],
        ["images/s", html_number(wl.get("images_per_s"), 1)],
        [f"energy of the workload phase, {html.escape(str(em.get('energy_from') or ref))} (J)", html_number(wl.get("energy_j"), 1)],
        ["accuracy per kWh", html_number(wl.get("accuracy_per_kwh"), 1)],
        ["grid intensity (g CO2e/kWh)", html_number(em.get("intensity_g_per_kwh"), 1)
         + (f" &mdash; {html.escape(where)}" if where else "")],
        ["PUE", html_number(em.get("pue"), 2)],
        ["CO2 (g)", html_number(em.get("co2_g"), 3)],
    ]))
    parts.append(warning_list([("workload", w) for w in wl.get("warnings") or []]
                              + [("CO2", w) for w in em.get("warnings") or []]))
    if em.get("by_location"):
        parts.append("<h3>The same energy on other grids</h3>")
        parts.append(html_table(["location", "intensity (g CO2e/kWh)", "year", "CO2 (g)"],
                                [[html_text(r.get("location_name")), html_number(r.get("intensity_g_per_kwh"), 1),
                                  html_text(r.get("year")), html_number(r.get("co2_g"), 3)] for r in em["by_location"]]))

    parts.append("<h2>Glossary</h2><dl class=glossary>" + "".join(f"<dt>{t}</dt><dd>{d}</dd>" for t, d in GLOSSARY)
                 + "</dl>")
    if figures is not None:
        parts += _exports_section(fig, csvs, figures.note)
    else:
        parts.append("<h2>Files for a paper</h2><p class=muted><code>calibrate report "
                     f"{html.escape(str(data.path))} --figures</code> writes every figure as SVG and PDF and the "
                     "window pairs as CSV in this session's <code>figures/</code> (off by default: it takes a "
                     "few seconds); <a href=\"summary.json\">summary.json</a> holds every number.</p>")
    version = _calibrate_version()
    parts.append(f"<p class=muted>Session folder: {html.escape(str(data.path))}"
                 + (f"; report by calibrate {html.escape(version)}" if version else "") + ".</p>")
    return page(f"calibrate report: {data.path.name}", "".join(parts))


def _calibrate_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("calibrate")
    except metadata.PackageNotFoundError:
        return None
