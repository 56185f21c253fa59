"""Plain-text and Markdown renderings of results: the table ``calibrate run``/``report``
print, ``summary.md``, and ``calibrate agree``'s table.  Every name and message passes
through :mod:`analysis.escape` (no escape sequences reach a terminal, no markup a page)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from analysis.escape import markdown_text, terminal_text
from analysis.numbers import fmt_number

__all__ = ["agreement_markdown", "summary_markdown", "summary_text"]


def _g(v: Any, d: int = 4) -> str:
    return fmt_number(v, d, style="g", grouping=False) if v is None or isinstance(v, (int, float)) else str(v)


def _ci(c: Any, d: int = 4) -> str:
    return "-" if not c or any(x is None for x in c) else f"[{_g(c[0], d)}, {_g(c[1], d)}]"


def agreement_markdown(result: dict[str, Any]) -> str:
    """Agreement statistics of ``calibrate agree`` as a Markdown table: the design (pairs,
    subjects, dropped), Bland-Altman, the proportional-bias test, the ratio, regression,
    CCC, Pearson r, MAPE and the ``warnings`` of the result."""
    ba, reg, ccc = result.get("bland_altman", {}), result.get("regression", {}), result.get("ccc", {})
    md = markdown_text
    f, ci = _g, _ci
    n, dropped = ba.get("n"), result.get("dropped", ba.get("dropped", 0)) or 0
    design = ba.get("design") or "one pair per subject (Bland & Altman 1986)"
    head = (f"{md(result.get('candidate'))} vs {md(result.get('reference'))} (difference = candidate - reference), "
            f"n = {n} pairs" + (f" from {ba['n_subjects']} subjects" if ba.get("n_subjects") else "")
            + f", {dropped} dropped (NaN/inf)")
    lines = [head, f"design: {terminal_text(design)}", "", "| statistic | value | 95% CI |", "|---|---|---|",
             f"| bias | {f(ba.get('bias'))} | {ci(ba.get('bias_ci'))} |",
             f"| SD of differences | {f(ba.get('sd'))} | |",
             f"| lower limit of agreement | {f(ba.get('loa_low'))} | {ci(ba.get('loa_low_ci'))} |",
             f"| upper limit of agreement | {f(ba.get('loa_high'))} | {ci(ba.get('loa_high_ci'))} |"]
    prop = ba.get("proportional_bias") or {}
    if prop.get("slope") is not None:
        lines.append(f"| proportional bias: slope of difference on mean | {f(prop.get('slope'))} | "
                     f"p = {f(prop.get('p_value'), 2)} |")
    ratio = ba.get("ratio") or {}
    if ratio.get("gmr") is not None:
        lines += [f"| ratio candidate/reference: geometric mean | {f(ratio['gmr'])} | {ci(ratio.get('gmr_ci'))} |",
                  f"| ratio limits of agreement | {f(ratio.get('ratio_loa_low'))} to {f(ratio.get('ratio_loa_high'))} | |"]
    elif ba.get("ratio_unavailable"):
        lines.append(f"| ratio candidate/reference | unavailable: {md(ba['ratio_unavailable'])} | |")
    lines += [f"| {md(reg.get('method'))} slope (candidate on reference) | {f(reg.get('slope'))} | {ci(reg.get('slope_ci'))} |",
              f"| {md(reg.get('method'))} intercept | {f(reg.get('intercept'))} | {ci(reg.get('intercept_ci'))} |",
              f"| Lin's CCC | {f(ccc.get('value'))} | {ci(ccc.get('ci'))} |"]
    if result.get("pearson_r") is not None:
        lines.append(f"| Pearson r | {f(result['pearson_r'])} | {ci(result.get('pearson_r_ci'))} |")
    if result.get("mape_pct") is not None:
        lines.append(f"| MAPE (%) | {f(result['mape_pct'])} | |")
    for w in result.get("warnings") or []:
        lines.append(f"\nwarning: {md(w)}")
    return "\n".join(lines) + "\n"


def _meter_rows(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any], int]]:
    """(channel id, its ``meters`` entry, fault count) per channel, in the summary's order."""
    return [(cid, m, sum((m.get("errors") or {}).values())) for cid, m in summary.get("meters", {}).items()]


def _source(m: dict[str, Any]) -> str:
    """A channel's source as the tables show it: modelled ones in capitals, simulation said."""
    src = str(m.get("source") or "")
    src = src if src == "measured" else src.upper()
    return src + (", simulated" if m.get("simulated") else "")


def _entry_warnings(summary: dict[str, Any]) -> set[str]:
    """The warnings shown beside an entry (a meter, a candidate, the workload, the CO2)."""
    entries = [*summary.get("meters", {}).values(), *summary.get("agreement", []),
               summary.get("workload") or {}, summary.get("emissions") or {}]
    return {w for e in entries for w in e.get("warnings") or []}


def _calibration_text(a: dict[str, Any], fmt: Any) -> str:
    """``wattsup = 12.3 W + 1.05 x rapl.package`` with the session's real channel names."""
    cal = a.get("calibration") or {}
    ref, cand = a.get("reference"), a.get("candidate")
    if not cal:
        return ""
    if cal.get("slope") is None:
        return f"{ref} = {fmt(cal.get('intercept'), 1, ' W')} + {cand} (nearly constant: no gain)"
    return f"{ref} = {fmt(cal.get('intercept'), 1, ' W')} + {fmt(cal.get('slope'), 3)} x {cand}"


def summary_markdown(summary: dict[str, Any]) -> str:
    """A terminal-friendly Markdown summary of a session.  Names and free text are escaped
    (:func:`analysis.escape.markdown_text`): they show as written and add no markup."""
    md = markdown_text
    ref = summary.get("reference")
    ref_tag = " (MODELLED)" if summary.get("reference_modelled") else ""
    lines = [f"# {md(summary['session'])}", "", f"status: {md(summary['status'])}, reference: {md(ref)}{ref_tag}", "",
             "| channel | source | energy (J) | mean power (W) | samples | faults |", "|---|---|---|---|---|---|"]
    for cid, m, faults in _meter_rows(summary):
        e = fmt_number(m.get("energy_j"), 1, grouping=False)
        p = fmt_number(m.get("mean_power_w"), 2, grouping=False)
        lines.append(f"| {md(cid)} | {md(_source(m))} | {e} | {p} | {m.get('samples')} | {faults} |")
    for a in summary.get("agreement", []):
        ba = a.get("bland_altman") or {}
        if ba.get("bias") is not None:
            lines.append(f"\n{md(a['candidate'])}: lag {fmt_number(a.get('lag_s'), 2, ' s')}, bias "
                         f"{fmt_number(ba['bias'], 2, ' W')}, LoA [{fmt_number(ba['loa_low'], 2)}, "
                         f"{fmt_number(ba['loa_high'], 2, ' W')}] over {a.get('n_windows')} windows"
                         + (f"; {md(cal)}" if (cal := _calibration_text(a, fmt_number)) else ""))
        else:
            lines.append(f"\n{md(a['candidate'])}: not compared ({md(a.get('error', 'no windows'))})")
        lines += [f"- warning: {md(w)}" for w in a.get("warnings") or [] if not w.startswith("agreement ")]
    shown = {w for a in summary.get("agreement", []) for w in a.get("warnings") or []}
    rest = [w for w in summary.get("warnings", []) if w not in shown]
    if rest:
        lines += ["", "## Warnings", ""] + [f"- {md(w)}" for w in rest]
    return "\n".join(lines) + "\n"


def summary_text(summary: dict[str, Any], path: str | Path) -> str:
    """The short plain-text table ``calibrate run``/``demo``/``report`` end with: meters,
    agreement with the reference (each candidate's caveats under it), workload, CO2, the
    other warnings and the session ``path``.

    Lines joined by newlines, no trailing newline: ``print(summary_text(...))`` prints it.
    Names and messages pass through :func:`analysis.escape.terminal_text` (no escape
    sequences or control characters reach the terminal).
    """
    fmt = fmt_number
    t = terminal_text
    ref = summary.get("reference")
    modelled = bool(summary.get("reference_modelled"))
    rows = [("channel", "source", "energy", "mean power", "samples", "faults")]
    for cid, m, faults in _meter_rows(summary):
        tag = (" (reference, MODELLED)" if modelled else " (reference)") if cid == ref else ""
        rows.append((t(cid) + tag, t(_source(m)), fmt(m.get("energy_j"), 1, " J"),
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
        out.append(f"  agreement with {t(ref)}{' (MODELLED)' if modelled else ''} (candidate - reference, over "
                   f"{fmt(agreement[0].get('window_s'), 3, ' s', style='g')} windows):")
        for a in agreement:
            ba, reg = a.get("bland_altman", {}), a.get("regression", {})
            cand = t(a["candidate"])
            if ba.get("bias") is None:
                out.append(f"    {cand}: not compared: {t(a.get('error', 'no common windows'), None)} "
                           "(record longer, or pass a shorter --window)")
                continue
            codes = a.get("warning_codes") or []
            n_note = " (too few: indicative only)" if "few_windows" in codes else ""
            cal = _calibration_text(a, fmt)
            out.append(f"    {cand}: lag {fmt(a.get('lag_s'), 2, ' s')}, n={a.get('n_windows')}{n_note}, "
                       f"bias {fmt(ba.get('bias'), 1, ' W')} [LoA {fmt(ba.get('loa_low'), 1)}, {fmt(ba.get('loa_high'), 1, ' W')}], "
                       f"CCC {fmt((a.get('ccc') or {}).get('value'), 3)}; "
                       + (t(cal, None) if cal else f"slope {fmt(reg.get('slope'), 3)}"))
            out += [f"      ! {t(w, None)}" for w in a.get("warnings") or []]
    w = summary.get("workload") or {}
    if w.get("accuracy") is not None:
        at_chance = "accuracy_at_chance" in (w.get("warning_codes") or [])
        chance = (w.get("accuracy_vs_chance") or {}).get("chance")
        acc = (f"accuracy {w['accuracy']:.3f} AT CHANCE ({fmt(chance, 3)}): the model did not learn"
               if at_chance else f"accuracy {w['accuracy']:.3f}")
        out.append(f"\n  workload {t(w.get('name'))}: {acc}"
                   + (f", {w['images_per_s']:.1f} images/s" if w.get("images_per_s") else ""))
    out += [f"      ! {t(x, None)}" for x in w.get("warnings") or []]
    em = summary.get("emissions") or {}
    if em.get("co2_g") is not None:
        src = f", from the MODELLED {t(em.get('energy_from'))}" if em.get("energy_modelled") else ""
        out.append(f"  CO2: {em['co2_g']:.2f} g at {em['intensity_g_per_kwh']:.0f} g/kWh "
                   f"({t(em.get('location'))}, {t(em.get('source'))}){src}")
    by_entry = _entry_warnings(summary) - {x for m in summary.get("meters", {}).values() for x in m.get("warnings") or []}
    for warning in summary.get("warnings", []):
        if warning not in by_entry:
            out.append(f"  warning: {t(warning, None)}")
    out.append(f"\nsession: {t(path, None)}")
    return "\n".join(out)
