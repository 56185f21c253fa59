"""Aggregate a campaign's sessions: energy per workload with CIs, accuracy per kWh,
agreement pooled over runs (repeated-measures Bland-Altman, runs as subjects) and each
software meter's calibration across workloads (leave-one-workload-out)."""

from __future__ import annotations

import html
import json
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


def write_campaign_report(folder: Path, sessions: list[Path], reference: str | None = None) -> dict[str, Any]:
    from analysis.report import write_report

    summaries = []
    for p in sessions:
        sp = Path(p) / "summary.json"
        summaries.append(json.loads(sp.read_text()) if sp.exists() else write_report(p, reference=reference))
    report = json_safe(aggregate(summaries))
    write_text_atomic(Path(folder) / "campaign_report.json", json.dumps(report, indent=2, allow_nan=False) + "\n")
    write_text_atomic(Path(folder) / "campaign_report.html", render_campaign_html(folder, report))
    return report


def _n(v: Any, d: int = 1) -> str:
    from analysis.report import html_number

    return html_number(v, d)


def render_campaign_html(folder: Path, report: dict[str, Any]) -> str:
    from analysis.report import CSS, html_table, img_tag

    parts = [f"<h1>calibrate campaign: {html.escape(Path(folder).name)}</h1>", "<h2>Energy per workload</h2>"]
    parts.append(html_table(["workload", "runs", "energy (J) mean [95% CI]", "duration (s)", "accuracy", "accuracy per kWh", "CO2 (g)"],
                        [[html.escape(str(w["workload"])), str(w["runs"]),
                          f"{_n(w['energy_j']['mean'])} [{_n(w['energy_j']['ci'][0])}, {_n(w['energy_j']['ci'][1])}]",
                          _n(w["duration_s"]["mean"]), _n(w["accuracy"]["mean"], 3), _n(w["accuracy_per_kwh"]["mean"], 1),
                          _n(w["co2_g"]["mean"], 3)] for w in report["per_workload"]]))
    pts = [(r["energy_j"], r["accuracy"], str(r["workload"])) for r in report["runs"]
           if r.get("energy_j") is not None and r.get("accuracy") is not None]
    if pts:
        parts.append("<h2>Accuracy against energy (Pareto front)</h2>")
        parts.append(f'<div class="fig">{img_tag(plots.figure_png(plots.pareto_plot, pts), "accuracy against energy")}</div>')
    parts.append("<h2>Agreement pooled over runs</h2>")
    parts.append(html_table(["candidate", "runs", "windows", "bias (W)", "LoA (W)", "method"],
                        [[html.escape(a["candidate"]), str(a.get("n_runs")), str(a.get("n_windows")),
                          _n((a.get("bland_altman") or {}).get("bias"), 2),
                          f"{_n((a.get('bland_altman') or {}).get('loa_low'), 2)} to {_n((a.get('bland_altman') or {}).get('loa_high'), 2)}",
                          html.escape(a.get("bland_altman_method", a.get("error", "")))] for a in report["agreement"]]))
    parts.append("<h2>Calibration across workloads</h2>")
    rows = []
    for c in report["calibration"]:
        cv = c.get("cross_validation") or {}
        per = "; ".join(f"{html.escape(w)}: {v['intercept']:.1f} + {v['slope']:.3f}x" for w, v in (c.get("per_workload") or {}).items())
        rows.append([html.escape(c["candidate"]), _n(c.get("intercept_w"), 2), _n(c.get("gain"), 4),
                     _n(cv.get("rmse_w"), 2), html.escape(str(cv.get("method", c.get("error", "")))), per])
    parts.append(html_table(["candidate", "intercept (W)", "gain", "CV RMSE (W)", "CV", "per workload"], rows))
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>campaign</title><style>{CSS}</style></head>"
            f"<body>{''.join(parts)}</body></html>\n")
