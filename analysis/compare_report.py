"""Sessions compared: one row per session (its workload, energy, accuracy, CO2 and each
candidate's bias, gain and offset), as a terminal table, a page and rows for JSON/CSV,
with a warning when the sessions do not share their reference, and accuracy against
energy with the Pareto front."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from analysis import plots
from analysis.escape import terminal_text
from analysis.numbers import fmt_number, is_missing

__all__ = ["AGREEMENT_KEYS", "SESSION_COLUMNS", "agreement_rows", "compare_row", "reference_warning",
           "render_compare_html", "report_links", "terminal_tables"]

#: (row key, header with its unit, decimals; None: text)
SESSION_COLUMNS: list[tuple[str, str, int | None]] = [
    ("session", "session", None), ("status", "status", None), ("workload", "workload", None),
    ("duration_s", "duration (s)", 1), ("accuracy", "accuracy", 4), ("energy_j", "energy (J)", 1),
    ("accuracy_per_kwh", "accuracy per kWh", 1), ("co2_g", "CO2 (g)", 3), ("reference", "reference", None)]
#: a candidate's columns in a row: ``<candidate>:<key>``
AGREEMENT_KEYS: list[tuple[str, str, int]] = [("bias_w", "bias (W)", 2), ("gain", "gain", 3), ("offset_w", "offset (W)", 2)]


def compare_row(name: str, summary: dict[str, Any]) -> dict[str, Any]:
    """One session's row (``name``: its folder's name) from its summary.json: the
    :data:`SESSION_COLUMNS` and ``<candidate>:bias_w``/``:gain``/``:offset_w``."""
    wl = summary.get("workload") or {}
    row: dict[str, Any] = {"session": name, "status": summary.get("status"), "workload": wl.get("name"),
                           "duration_s": wl.get("duration_s"), "accuracy": wl.get("accuracy"),
                           "energy_j": wl.get("energy_j"), "accuracy_per_kwh": wl.get("accuracy_per_kwh"),
                           "co2_g": (summary.get("emissions") or {}).get("co2_g"), "reference": summary.get("reference")}
    for a in summary.get("agreement", []):
        ba = a.get("bland_altman") or {}
        cal = a.get("calibration") or {}
        row[f"{a['candidate']}:bias_w"] = ba.get("bias")
        row[f"{a['candidate']}:gain"] = cal.get("slope")
        row[f"{a['candidate']}:offset_w"] = cal.get("intercept")
    return row


def agreement_rows(rows: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    """(session, candidate, {bias_w, gain, offset_w}) for each candidate of each row."""
    keys = {k for k, _, _ in AGREEMENT_KEYS}
    out = []
    for r in rows:
        cands: dict[str, dict[str, Any]] = {}
        for col, v in r.items():
            cand, sep, key = str(col).rpartition(":")
            if sep and key in keys:
                cands.setdefault(cand, {})[key] = v
        out += [(str(r.get("session")), c, vals) for c, vals in cands.items()]
    return out


def reference_warning(rows: list[dict[str, Any]]) -> str | None:
    """A one-line warning when the sessions were analysed against different references
    (their energies and agreement are then not comparable); None when they share one."""
    by_ref: dict[str, list[str]] = {}
    for r in rows:
        by_ref.setdefault(str(r.get("reference")), []).append(str(r.get("session")))
    if len(by_ref) < 2:
        return None
    shown = "; ".join(f"{ref}: {', '.join(s[:3])}{' ...' if len(s) > 3 else ''}" for ref, s in by_ref.items())
    return (f"the sessions have different references ({shown}): their energies and agreement are not "
            "comparable; pass --reference CHANNEL to compare against one")


def _cell(v: Any, digits: int | None) -> str:
    if digits is None:
        return "\u2013" if v is None or v == "" else terminal_text(v, 40)
    return fmt_number(v, digits, missing="\u2013") if not isinstance(v, str) else terminal_text(v, 40)


def _text_table(headers: list[str], rows: list[list[str]], numeric: list[bool]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def terminal_tables(rows: list[dict[str, Any]]) -> str:
    """The sessions and their candidates as aligned plain-text tables (names made safe for
    a terminal, numbers through fmt_number, an en dash where a value is missing); the
    reference warning is the caller's to print (on stderr)."""
    numeric = [d is not None for _, _, d in SESSION_COLUMNS]
    out = [_text_table([h for _, h, _ in SESSION_COLUMNS],
                       [[_cell(r.get(k), d) for k, _, d in SESSION_COLUMNS] for r in rows], numeric)]
    agr = agreement_rows(rows)
    if agr:
        out.append(_text_table(["session", "candidate", *[h for _, h, _ in AGREEMENT_KEYS]],
                               [[_cell(s, None), _cell(c, None), *[_cell(v.get(k), d) for k, _, d in AGREEMENT_KEYS]]
                                for s, c, v in agr], [False, False, True, True, True]))
    return "\n\n".join(out)


def render_compare_html(rows: list[dict[str, Any]], reports: dict[str, str] | None = None,
                        title: str = "calibrate: sessions compared") -> str:
    """Self-contained HTML: the sessions table, the candidates table (every value escaped),
    a warning when the references differ, and the accuracy/energy Pareto plot.
    ``reports``: session name -> link to its report.html (relative to the page)."""
    from analysis.report import html_number, html_table, html_text, img_tag, page

    def text(r: dict[str, Any], k: str) -> str:
        v = html_text(r.get(k))
        if k == "session" and reports and reports.get(str(r.get(k))):
            return f'<a href="{html.escape(reports[str(r.get(k))])}">{v}</a>'
        return v

    body = [[text(r, k) if d is None or isinstance(r.get(k), str) else html_number(r.get(k), d)
             for k, _, d in SESSION_COLUMNS] for r in rows]
    parts = [f"<h1>{html.escape(title)}</h1>"]
    warn = reference_warning(rows)
    if warn:
        parts.append(f'<p class="alarm">{html.escape(warn)}</p>')
    parts.append(html_table([h for _, h, _ in SESSION_COLUMNS], body))
    agr = agreement_rows(rows)
    if agr:
        parts.append("<h2>Candidates against each session's reference</h2>")
        parts.append(html_table(["session", "candidate", *[h for _, h, _ in AGREEMENT_KEYS]],
                                [[html.escape(s), html.escape(c), *[html_number(v.get(k), d) for k, _, d in AGREEMENT_KEYS]]
                                 for s, c, v in agr]))
        parts.append("<p class=muted>bias: mean of candidate &minus; reference over the windows (W); gain and offset: "
                     "the calibration reference = offset + gain &times; candidate.</p>")
    pts = [(float(r["energy_j"]), float(r["accuracy"]), str(r.get("workload"))) for r in rows
           if isinstance(r.get("energy_j"), (int, float)) and isinstance(r.get("accuracy"), (int, float))
           and not is_missing(r["energy_j"]) and not is_missing(r["accuracy"])]
    if pts:
        parts.append("<h2>Accuracy against energy (Pareto front)</h2>")
        parts.append(f'<figure class="fig">{img_tag(plots.figure_png(plots.pareto_plot, pts), "accuracy against energy")}'
                     "<figcaption>Energy (J) of the workload phase on each session's reference meter; the dashed "
                     "line joins the runs no other run beats on both accuracy and energy.</figcaption></figure>")
    return page(title, "".join(parts))


def report_links(page_path: str | Path, sessions: list[str | Path]) -> dict[str, str]:
    """Session name -> the link from ``page_path`` to its report.html, where it exists."""
    import os

    base = Path(page_path).resolve().parent
    out = {}
    for s in sessions:
        rp = Path(s) / "report.html"
        if rp.is_file():
            out[Path(s).name] = Path(os.path.relpath(rp.resolve(), base)).as_posix()
    return out
