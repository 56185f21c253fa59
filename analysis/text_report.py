"""Plain-text and Markdown renderings of results: the table ``calibrate run``/``report``
print, ``summary.md``, and ``calibrate agree``'s table.  Every name and message passes
through :mod:`analysis.escape` (no escape sequences reach a terminal, no markup a page)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from analysis.escape import markdown_text, terminal_text
from analysis.numbers import fmt_number

__all__ = ["agreement_markdown", "summary_markdown", "summary_text"]


def agreement_markdown(result: dict[str, Any]) -> str:
    """Agreement statistics of ``calibrate agree`` as a Markdown table."""
    ba, reg, ccc = result.get("bland_altman", {}), result.get("regression", {}), result.get("ccc", {})

    def f(v: Any, d: int = 4) -> str:
        return fmt_number(v, d, style="g", grouping=False) if v is None or isinstance(v, float) else str(v)

    def ci(c: Any) -> str:
        return "-" if not c else f"[{f(c[0])}, {f(c[1])}]"

    md = markdown_text
    lines = [f"{md(result.get('candidate'))} vs {md(result.get('reference'))} (difference = candidate - reference), n = {ba.get('n')}",
             "", "| statistic | value | 95% CI |", "|---|---|---|",
             f"| bias | {f(ba.get('bias'))} | {ci(ba.get('bias_ci'))} |",
             f"| SD of differences | {f(ba.get('sd'))} | |",
             f"| lower limit of agreement | {f(ba.get('loa_low'))} | {ci(ba.get('loa_low_ci'))} |",
             f"| upper limit of agreement | {f(ba.get('loa_high'))} | {ci(ba.get('loa_high_ci'))} |",
             f"| {md(reg.get('method'))} slope | {f(reg.get('slope'))} | {ci(reg.get('slope_ci'))} |",
             f"| {md(reg.get('method'))} intercept | {f(reg.get('intercept'))} | {ci(reg.get('intercept_ci'))} |",
             f"| Lin's CCC | {f(ccc.get('value'))} | {ci(ccc.get('ci'))} |"]
    if result.get("pearson_r") is not None:
        r = result["pearson_r"]
        lines.append(f"| Pearson r | {f(r.get('value') if isinstance(r, dict) else r)} | {ci(r.get('ci')) if isinstance(r, dict) else ''} |")
    if result.get("mape_pct") is not None:
        lines.append(f"| MAPE (%) | {f(result['mape_pct'])} | |")
    return "\n".join(lines) + "\n"


def _meter_rows(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any], int]]:
    """(channel id, its ``meters`` entry, fault count) per channel, in the summary's order."""
    return [(cid, m, sum((m.get("errors") or {}).values())) for cid, m in summary.get("meters", {}).items()]


def summary_markdown(summary: dict[str, Any]) -> str:
    """A terminal-friendly Markdown summary of a session.  Names and free text are escaped
    (:func:`analysis.escape.markdown_text`): they show as written and add no markup."""
    md = markdown_text
    lines = [f"# {md(summary['session'])}", "", f"status: {md(summary['status'])}, reference: {md(summary['reference'])}", "",
             "| channel | source | energy (J) | mean power (W) | samples | faults |", "|---|---|---|---|---|---|"]
    for cid, m, faults in _meter_rows(summary):
        e = fmt_number(m.get("energy_j"), 1, grouping=False)
        p = fmt_number(m.get("mean_power_w"), 2, grouping=False)
        lines.append(f"| {md(cid)} | {md(m.get('source'))} | {e} | {p} | {m.get('samples')} | {faults} |")
    for a in summary.get("agreement", []):
        ba = a.get("bland_altman") or {}
        if ba.get("bias") is not None:
            lines.append(f"\n{md(a['candidate'])}: lag {a.get('lag_s')} s, bias {ba['bias']:.2f} W, "
                         f"LoA [{ba['loa_low']:.2f}, {ba['loa_high']:.2f}] W over {a.get('n_windows')} windows")
        else:
            lines.append(f"\n{md(a['candidate'])}: not compared ({md(a.get('error', 'no windows'))})")
    return "\n".join(lines) + "\n"


def summary_text(summary: dict[str, Any], path: str | Path) -> str:
    """The short plain-text table ``calibrate run``/``demo``/``report`` end with: meters,
    agreement with the reference, workload, CO2, warnings and the session ``path``.

    Lines joined by newlines, no trailing newline: ``print(summary_text(...))`` prints it.
    Names and messages pass through :func:`analysis.escape.terminal_text` (no escape
    sequences or control characters reach the terminal).
    """
    fmt = fmt_number
    t = terminal_text
    ref = summary.get("reference")
    rows = [("channel", "source", "energy", "mean power", "samples", "faults")]
    for cid, m, faults in _meter_rows(summary):
        tag = " (reference)" if cid == ref else ""
        rows.append((t(cid) + tag, t(m.get("source", "")), fmt(m.get("energy_j"), 1, " J"),
                     fmt(m.get("mean_power_w"), 1, " W"), str(m.get("samples", 0)), str(faults)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out: list[str] = []
    for i, r in enumerate(rows):
        out.append("  " + "  ".join(c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            out.append("  " + "  ".join("-" * w for w in widths))
    agreement = summary.get("agreement") or []
    if agreement:
        out.append("")
        out.append(f"  agreement with {t(ref)} (candidate - reference, over {agreement[0].get('window_s', 0):.0f} s windows):")
        for a in agreement:
            ba, reg = a.get("bland_altman", {}), a.get("regression", {})
            if ba.get("bias") is None:
                out.append(f"    {t(a['candidate'])}: not compared: {t(a.get('error', 'no common windows'), None)} "
                           "(record longer, or pass a shorter --window)")
                continue
            cal = a.get("calibration", {})
            cand = t(a["candidate"])
            out.append(f"    {cand}: lag {fmt(a.get('lag_s'), 2, ' s')}, n={a.get('n_windows')}, "
                       f"bias {fmt(ba.get('bias'), 1, ' W')} [LoA {fmt(ba.get('loa_low'), 1)}, {fmt(ba.get('loa_high'), 1, ' W')}], "
                       f"CCC {fmt((a.get('ccc') or {}).get('value'), 3)}; "
                       + (f"wall = {fmt(cal.get('intercept'), 1, ' W')} + {fmt(cal.get('slope'), 3)} x {cand}"
                          if cal and cal.get("slope") is not None else
                          f"wall = {fmt(cal.get('intercept'), 1, ' W')} + {cand} (constant: no gain)" if cal
                          else f"slope {fmt(reg.get('slope'), 3)}"))
    w = summary.get("workload") or {}
    if w.get("accuracy") is not None:
        out.append(f"\n  workload {t(w.get('name'))}: accuracy {w['accuracy']:.3f}"
                   + (f", {w['images_per_s']:.1f} images/s" if w.get("images_per_s") else ""))
    em = summary.get("emissions") or {}
    if em.get("co2_g") is not None:
        out.append(f"  CO2: {em['co2_g']:.2f} g at {em['intensity_g_per_kwh']:.0f} g/kWh ({t(em.get('location'))}, {t(em.get('source'))})")
    for warning in summary.get("warnings", []):
        out.append(f"  warning: {t(warning, None)}")
    out.append(f"\nsession: {t(path, None)}")
    return "\n".join(out)
