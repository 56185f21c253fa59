"""A page comparing sessions: one row per session, and accuracy against energy (Pareto)."""

from __future__ import annotations

import html
from typing import Any

from analysis import plots


def render_compare_html(rows: list[dict[str, Any]]) -> str:
    """Self-contained HTML: the comparison table (every value escaped) and the Pareto plot."""
    from analysis.report import CSS, html_number, html_table, img_tag

    cols = list(dict.fromkeys(k for r in rows for k in r))
    body = [[html.escape(str(r.get(c))) if not isinstance(r.get(c), float) else html_number(r.get(c), 3) for c in cols]
            for r in rows]
    parts = ["<h1>calibrate: sessions compared</h1>", html_table(cols, body)]
    pts = [(r["energy_j"], r["accuracy"], str(r.get("workload"))) for r in rows
           if isinstance(r.get("energy_j"), (int, float)) and isinstance(r.get("accuracy"), (int, float))
           and r["accuracy"] == r["accuracy"]]
    if pts:
        parts.append("<h2>Accuracy against energy (Pareto front)</h2>")
        parts.append(f'<div class="fig">{img_tag(plots.figure_png(plots.pareto_plot, pts), "accuracy against energy")}</div>')
        parts.append("<p class=muted>Energy of the workload phase on the reference meter; the dashed "
                     "line joins the runs no other run beats on both accuracy and energy.</p>")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>compare</title><style>{CSS}</style>"
            f"</head><body>{''.join(parts)}</body></html>\n")
