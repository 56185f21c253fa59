"""What the bench prints: progress lines, notes, the closing summary table."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from analysis.escape import terminal_text
from calibrate.bench import BenchProgress, BenchReporter, BenchResult
from workloads.registry import PreparedWorkload


def say(msg: str = "", *, err: bool = False) -> None:
    """Print ``msg`` (stderr with ``err``) with control and escape sequences removed from
    every line: names, device identities and phases come from users and devices, and must
    not clear a screen or forge a line.  A closed pipe is not an error."""
    text = "\n".join(terminal_text(line, max_len=None) for line in str(msg).split("\n"))
    try:
        print(text, file=sys.stderr if err else sys.stdout, flush=True)
    except BrokenPipeError:  # `calibrate run ... | head`: keep recording, stop talking
        pass


def print_summary_table(summary: dict[str, Any], path: Path) -> None:
    """The short table `run`/`demo`/`report` end with."""
    from analysis.text_report import summary_text

    say(summary_text(summary, path))


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
            elif m.silent:
                parts.append(f"{m.name} SILENT {m.silent_s:.0f} s")
        phase = f" [{tick.phase}]" if tick.phase else ""
        say(f"  {tick.elapsed_s:6.1f} s{phase}  " + ", ".join(parts), err=True)

    def problem(self, message: str) -> None:
        say(f"calibrate: {message}", err=True)


def print_result(result: BenchResult) -> int:
    """The end of `calibrate run`/`demo`: failure lines, the table, the paths; the exit code."""
    path = result.path
    if result.failure:
        say(f"calibrate: recording failed: {result.failure}; what was written is kept in {path}", err=True)
        return 1
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
