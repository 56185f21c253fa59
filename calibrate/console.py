"""What the bench prints: progress lines, notes, the closing summary table."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from calibrate.bench import BenchProgress, BenchReporter, BenchResult
from workloads.registry import PreparedWorkload


def say(msg: str = "", *, err: bool = False) -> None:
    """Print one line (stderr with ``err``); a closed pipe is not an error."""
    try:
        print(msg, file=sys.stderr if err else sys.stdout, flush=True)
    except BrokenPipeError:  # `calibrate run ... | head`: keep recording, stop talking
        pass


def _fmt(v: Any, unit: str = "", digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return f"{v:,.{digits}f}{unit}"


def print_summary_table(summary: dict[str, Any], path: Path) -> None:
    """The short table `run`/`demo`/`report` end with."""
    meters = summary.get("meters", {})
    ref = summary.get("reference")
    rows = [("channel", "source", "energy", "mean power", "samples", "faults")]
    for cid, m in meters.items():
        faults = sum((m.get("errors") or {}).values())
        tag = " (reference)" if cid == ref else ""
        rows.append((cid + tag, m.get("source", ""), _fmt(m.get("energy_j"), " J"),
                     _fmt(m.get("mean_power_w"), " W"), str(m.get("samples", 0)), str(faults)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        say("  " + "  ".join(c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            say("  " + "  ".join("-" * w for w in widths))
    agreement = summary.get("agreement") or []
    if agreement:
        say("")
        say(f"  agreement with {ref} (candidate - reference, over {agreement[0].get('window_s', 0):.0f} s windows):")
        for a in agreement:
            ba, reg = a.get("bland_altman", {}), a.get("regression", {})
            if ba.get("bias") is None:
                say(f"    {a['candidate']}: not compared: {a.get('error', 'no common windows')} "
                    "(record longer, or pass a shorter --window)")
                continue
            cal = a.get("calibration", {})
            say(f"    {a['candidate']}: lag {_fmt(a.get('lag_s'), ' s', 2)}, n={a.get('n_windows')}, "
                f"bias {_fmt(ba.get('bias'), ' W')} [LoA {_fmt(ba.get('loa_low'), '')}, {_fmt(ba.get('loa_high'), ' W')}], "
                f"CCC {_fmt((a.get('ccc') or {}).get('value'), '', 3)}; "
                + (f"wall = {_fmt(cal.get('intercept'), ' W')} + {_fmt(cal.get('slope'), '', 3)} x {a['candidate']}"
                   if cal and cal.get("slope") is not None else
                   f"wall = {_fmt(cal.get('intercept'), ' W')} + {a['candidate']} (constant: no gain)" if cal
                   else f"slope {_fmt(reg.get('slope'), '', 3)}"))
    w = summary.get("workload") or {}
    if w.get("accuracy") is not None:
        say(f"\n  workload {w.get('name')}: accuracy {w['accuracy']:.3f}"
            + (f", {w['images_per_s']:.1f} images/s" if w.get("images_per_s") else ""))
    em = summary.get("emissions") or {}
    if em.get("co2_g") is not None:
        say(f"  CO2: {em['co2_g']:.2f} g at {em['intensity_g_per_kwh']:.0f} g/kWh ({em.get('location')}, {em.get('source')})")
    for warning in summary.get("warnings", []):
        say(f"  warning: {warning}")
    say(f"\nsession: {path}")


class ConsoleReporter(BenchReporter):
    """Prints the notes, the recording line and (unless ``quiet``) a progress line a second."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def started(self, path: Path, notes: list[str], workload: PreparedWorkload, n_meters: int) -> None:
        for note in notes:
            say(f"note: {note}")
        say(f"recording {n_meters} meter(s) into {path}; workload {workload.name}")

    def progress(self, tick: BenchProgress) -> None:
        if self.quiet:
            return
        parts = []
        for m in tick.meters:
            for cid, vals in m.values.items():
                if "power_w" in vals:
                    parts.append(f"{cid} {vals['power_w']:.1f} W")
            if not m.connected:
                parts.append(f"{m.name} RECONNECTING")
        phase = f" [{tick.phase}]" if tick.phase else ""
        say(f"  {tick.elapsed_s:6.1f} s{phase}  " + ", ".join(parts), err=True)

    def problem(self, message: str) -> None:
        say(f"calibrate: {message}", err=True)


def print_result(result: BenchResult) -> int:
    """The end of `calibrate run`/`demo`: failure lines, the table, the paths; the exit code."""
    path = result.path
    if result.status == "workload_failed":
        rc = result.run.returncode if result.run else "?"
        say(f"calibrate: the workload failed (exit {rc}); its output is in {path / 'workload.log'}", err=True)
    if result.report_error is not None:
        if os.environ.get("CALIBRATE_DEBUG"):
            raise result.report_error
        exc = result.report_error
        say(f"calibrate: report failed: {type(exc).__name__}: {exc} (data kept in {path})", err=True)
        return 1
    if result.summary is not None:
        say("")
        print_summary_table(result.summary, path)
        say(f"report: {path / 'report.html'}")
    else:
        say(f"session: {path}")
    if result.status == "interrupted":
        say(f"calibrate: interrupted; what was recorded is in {path}", err=True)
    return 0 if result.status == "complete" else 1
