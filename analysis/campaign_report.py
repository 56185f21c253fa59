"""Aggregate a campaign's sessions: energy per workload with CIs, accuracy per kWh,
agreement pooled over runs (repeated-measures Bland-Altman, runs as subjects) and each
software meter's calibration across workloads (leave-one-workload-out)."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import plots
from analysis.agreement import agreement
from analysis.calibration import fit_calibration
from analysis.intervals import MIN_RUNS, mean_ci
from analysis.regression import ols
from analysis.session_format import json_safe, write_text_atomic


def aggregate(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The campaign report's figures from each session's summary.json."""
    runs = []
    for s in summaries:
        wl = s.get("workload") or {}
        runs.append({"session": Path(s["session"]).name, "workload": wl.get("name"), "energy_j": wl.get("energy_j"),
                     "duration_s": wl.get("duration_s"), "accuracy": wl.get("accuracy"),
                     "accuracy_per_kwh": wl.get("accuracy_per_kwh"), "co2_g": (s.get("emissions") or {}).get("co2_g")})
    df = pd.DataFrame(runs)
    per_workload = []
    for name, g in df.groupby("workload", sort=True):
        # energies, times and CO2 are > 0: their CIs on the log scale cannot go below zero
        cis = {"energy_j": mean_ci(g["energy_j"].tolist(), what=f"{name} energy"),
               "duration_s": mean_ci(g["duration_s"].tolist(), what=f"{name} duration"),
               "accuracy": mean_ci(g["accuracy"].dropna().tolist(), what=f"{name} accuracy", positive=False),
               "accuracy_per_kwh": mean_ci(g["accuracy_per_kwh"].dropna().tolist(), what=f"{name} accuracy per kWh"),
               "co2_g": mean_ci(g["co2_g"].tolist(), what=f"{name} CO2")}
        group_warnings = ([f"{name}: only {len(g)} run(s); CIs need at least {MIN_RUNS} (indicative only)"]
                          if len(g) < MIN_RUNS else [])
        group_warnings += [w for r in cis.values() if r.n >= MIN_RUNS for w in r.warnings]
        per_workload.append({"workload": name, "runs": int(len(g)), **{k: r.to_dict() for k, r in cis.items()},
                             "warnings": group_warnings})
    # pooled agreement per candidate, runs as subjects
    pooled: dict[str, dict[str, list]] = {}
    for s in summaries:
        wl = (s.get("workload") or {}).get("name")
        for a in s.get("agreement", []):
            pairs = a.get("pairs") or {}
            p = pooled.setdefault(a["candidate"], {"ref": [], "cand": [], "run": [], "workload": []})
            n = len(pairs.get("reference_w", []))
            p["ref"] += pairs.get("reference_w", [])
            p["cand"] += pairs.get("candidate_w", [])
            p["run"] += [Path(s["session"]).name] * n
            p["workload"] += [wl] * n
    agreement_out, calibration_out = [], []
    for cand, p in pooled.items():
        entry: dict[str, Any] = {"candidate": cand, "n_windows": len(p["ref"]), "n_runs": len(set(p["run"]))}
        try:
            subjects = np.asarray(p["run"]) if len(set(p["run"])) > 1 else None
            entry.update(agreement(np.asarray(p["ref"]), np.asarray(p["cand"]), subjects=subjects))
            entry["bland_altman_method"] = "repeated measures, runs as subjects (Bland & Altman 2007)" if subjects is not None else "single run"
        except ValueError as exc:
            entry["error"] = str(exc).splitlines()[0]
        agreement_out.append(entry)
        table = pd.DataFrame({"reference": p["ref"], cand: p["cand"], "session": p["run"], "workload": p["workload"]})
        try:
            model = fit_calibration(table, [cand], group="workload")
            per_wl = {}
            for w, g in table.groupby("workload"):
                if len(g) >= 3 and g[cand].nunique() > 1:
                    line = ols(g[cand], g["reference"])
                    per_wl[str(w)] = {"slope": line.slope, "intercept": line.intercept, "n": int(len(g))}
            calibration_out.append({"candidate": cand, "intercept_w": model.intercept_w, "gain": model.gains[cand],
                                    "residual_sd_w": model.residual_sd_w, "cross_validation": model.cross_validation,
                                    "per_workload": per_wl})
        except ValueError as exc:
            calibration_out.append({"candidate": cand, "error": str(exc).splitlines()[0]})
    return {"runs": runs, "per_workload": per_workload, "agreement": agreement_out, "calibration": calibration_out}


def write_campaign_report(folder: Path, sessions: list[Path], reference: str | None = None,
                          name: str | None = None, excluded: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Aggregate ``sessions`` (each's summary.json, analysed first where missing) into
    ``campaign_report.json`` and ``campaign_report.html`` in ``folder``; ``name``: the
    plan's name (the page's title); ``excluded``: the runs left out, each ``{"id",
    "status", "why"}``.  Returns the report."""
    from analysis.report import write_report

    summaries = []
    for p in sessions:
        sp = Path(p) / "summary.json"
        summaries.append(json.loads(sp.read_text()) if sp.exists() else write_report(p, reference=reference))
    report = json_safe(aggregate(summaries))
    report["name"] = name
    base = Path(folder).resolve()
    for run, p in zip(report["runs"], sessions):  # aggregate keeps the sessions' order
        page = Path(p) / "report.html"
        run["report"] = Path(os.path.relpath(page.resolve(), base)).as_posix() if page.is_file() else None
    report["excluded"] = [{"id": str(e.get("id")), "status": str(e.get("status")), "why": str(e.get("why") or "")}
                          for e in excluded or []]
    write_text_atomic(Path(folder) / "campaign_report.json", json.dumps(report, indent=2, allow_nan=False) + "\n")
    write_text_atomic(Path(folder) / "campaign_report.html", render_campaign_html(folder, report))
    return report


def _n(v: Any, d: int = 1) -> str:
    from analysis.report import html_number

    return html_number(v, d)


def _mean_ci(stat: Any, d: int = 1) -> str:
    """A group's mean with its 95% CI under it (and the CI method when the report has one)."""
    from analysis.report import html_number

    if not isinstance(stat, dict):
        return "&ndash;"
    ci = stat.get("ci") or [None, None]
    out = html_number(stat.get("mean"), d)
    if len(ci) == 2 and all(c is not None for c in ci) and stat.get("mean") is not None:
        out += f'<br><span class="ci">[{html_number(ci[0], d)}, {html_number(ci[1], d)}]</span>'
    return out


def render_campaign_html(folder: Path, report: dict[str, Any], name: str | None = None) -> str:
    """The campaign's page: titled by the plan's ``name`` (else ``report["name"]``, else the
    folder's), energy per workload with CIs, every run linked to its report, the runs left
    out and why, agreement pooled over runs and the calibration across workloads."""
    from analysis.report import agreement_tables, html_table, html_text, img_tag, page, warning_list

    title_name = name or report.get("name") or Path(folder).name
    title = f"calibrate campaign: {title_name}"
    parts = [f"<h1>{html.escape(str(title))}</h1>", "<h2>Energy per workload</h2>"]
    per = report.get("per_workload") or []
    parts.append(html_table(["workload", "runs", "energy (J) [95% CI]", "duration (s)", "accuracy", "accuracy per kWh",
                             "CO2 (g)"],
                            [[html_text(w.get("workload")), str(w.get("runs", 0)), _mean_ci(w.get("energy_j")),
                              _mean_ci(w.get("duration_s")), _mean_ci(w.get("accuracy"), 3),
                              _mean_ci(w.get("accuracy_per_kwh")), _mean_ci(w.get("co2_g"), 3)] for w in per]))
    methods = sorted({str(st["method"]) for w in per for st in w.values() if isinstance(st, dict) and st.get("method")})
    parts.append("<p class=muted>Mean over the runs of each workload, its 95% confidence interval under it"
                 + (f" ({html.escape('; '.join(methods))})" if methods else "") + ".</p>")
    parts.append(warning_list([(str(w.get("workload")), m) for w in per for m in w.get("warnings") or []]))

    runs = report.get("runs") or []
    parts.append("<h2>Runs</h2>")
    parts.append(html_table(["session", "workload", "energy (J)", "duration (s)", "accuracy", "accuracy per kWh", "CO2 (g)"],
                            [[(f'<a href="{html.escape(r["report"])}">{html_text(r.get("session"))}</a>'
                               if r.get("report") else html_text(r.get("session"))),
                              html_text(r.get("workload")), _n(r.get("energy_j")), _n(r.get("duration_s")),
                              _n(r.get("accuracy"), 3), _n(r.get("accuracy_per_kwh")), _n(r.get("co2_g"), 3)]
                             for r in runs]))
    excluded = report.get("excluded") or []
    if excluded:
        parts.append("<h2>Runs left out</h2>")
        parts.append(html_table(["run", "status", "why"], [[html_text(e.get("id")), html_text(e.get("status")),
                                                             html_text(e.get("why"))] for e in excluded]))
    pts = [(r["energy_j"], r["accuracy"], str(r["workload"])) for r in runs
           if r.get("energy_j") is not None and r.get("accuracy") is not None]
    if pts:
        parts.append("<h2>Accuracy against energy (Pareto front)</h2>")
        parts.append(f'<figure class="fig">{img_tag(plots.figure_png(plots.pareto_plot, pts), "accuracy against energy")}'
                     "<figcaption>Energy (J) of each run's workload phase on its reference meter.</figcaption></figure>")
    parts.append("<h2>Agreement pooled over runs</h2>")
    parts += agreement_tables(report.get("agreement") or [], runs=True)
    parts.append("<p class=muted>Window mean power (W), candidate &minus; reference; with several runs the "
                 "Bland-Altman statistics treat each run as a subject (repeated measures).</p>")
    parts.append("<h2>Calibration across workloads</h2>")
    rows = []
    for c in report.get("calibration") or []:
        cv = c.get("cross_validation") or {}
        per_wl = "<br>".join(f"{html.escape(str(w))}: {_n(v.get('intercept'), 1)} + {_n(v.get('slope'), 3)} &times; x"
                             for w, v in (c.get("per_workload") or {}).items()) or "&ndash;"
        rows.append([html.escape(str(c.get("candidate"))), _n(c.get("intercept_w"), 2), _n(c.get("gain"), 4),
                     _n(cv.get("rmse_w"), 2), html_text(cv.get("method", c.get("error"))), per_wl])
    parts.append(html_table(["candidate", "intercept (W)", "gain", "CV RMSE (W)", "cross-validation",
                             "per workload (W)"], rows))
    return page(str(title), "".join(parts))
