"""What the bench prints: the live status view, progress lines, notes, the closing table.

Results go to stdout; notes, problems and progress to stderr.  On a terminal a run shows
one live, updating status view (:class:`LiveView`, drawn with rich on its own thread):
the phase and the time left, every channel's latest power with its age and its meter's
fault count (a faulted, reconnecting or silent meter marked so), the workload's progress
(epoch, step, images/s) and the recorder's own CPU.  Elsewhere, or with ``--plain``, one
plain line a second (:func:`plain_line`); with ``-q`` no progress at all.  Every name
comes from a user or a device: it reaches rich as a ``Text`` (never markup) and plain
lines through :func:`say`, with control and escape sequences removed.
"""

from __future__ import annotations

import math
import os
import queue
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from analysis.escape import terminal_text
from calibrate.bench import BenchProgress, BenchReporter, BenchResult
from calibrate.recorder import LiveMeter
from workloads.registry import PreparedWorkload

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from calibrate.live_feed import ChannelState, LiveFeed

REFRESH_S = 0.25  # the live view is redrawn this often (s)
OUTPUT_QUEUE = 1000  # lines of workload output waiting to be shown; more are dropped (not from the log)
MODES = ("auto", "live", "plain", "quiet")


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


# --------------------------------------------------------------------------- formatting
def duration_text(seconds: float) -> str:
    """``41 s``, ``4 min 05 s``, ``2 h 03 min`` (seconds rounded down)."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def left_text(tick: BenchProgress) -> str:
    """What is left of the tick's phase: ``41 s left``, ``up to 5 min 00 s left`` or ''."""
    if tick.left_s is None or not math.isfinite(tick.left_s):
        return ""
    return f"{'up to ' if tick.left_is_max else ''}{duration_text(math.ceil(max(0.0, tick.left_s) - 1e-6))} left"


def workload_text(tick: BenchProgress) -> str:
    """``epoch 2/3  step 120  34.5 images/s`` (what is known of it), or ''."""
    wl = tick.workload
    if wl is None:
        return ""
    parts = []
    if wl.epoch is not None:
        parts.append(f"epoch {wl.epoch}" + (f"/{wl.epochs}" if wl.epochs else ""))
    elif wl.phase:
        parts.append(terminal_text(wl.phase, max_len=40))
    if wl.step is not None:
        parts.append(f"step {wl.step}")
    if wl.images_per_s is not None:
        parts.append(f"{wl.images_per_s:.1f} images/s")
    return "  ".join(parts)


def cpu_text(fraction: float | None) -> str:
    """The recorder's CPU: ``recorder CPU 0.8 % of a core``, or ''."""
    return "" if fraction is None else f"recorder CPU {100 * fraction:.1f} % of a core"


def meter_mark(m: LiveMeter) -> str:
    """What is wrong with a meter now ('' when nothing): RECONNECTING, SILENT N s, FAULT code."""
    if not m.connected:
        return "RECONNECTING"
    if m.silent:
        return f"SILENT {m.silent_s:.0f} s"
    if m.last_fault:
        return f"FAULT {terminal_text(m.last_fault, max_len=30)}"
    if m.silent_s is None:
        return "WAITING"  # no reading yet
    return ""


def plain_line(tick: BenchProgress) -> str:
    """One progress line: elapsed, phase and time left, the workload, every channel's power
    and every meter in trouble, the recorder's CPU."""
    head = f"  {tick.elapsed_s:6.1f} s"
    if tick.phase:
        head += f" [{terminal_text(tick.phase, max_len=40)}]"
    left = left_text(tick)
    if left:
        head += f" {left}"
    parts = []
    for m in tick.meters:
        for cid, vals in m.values.items():
            w = vals.get("power_w")
            if w is not None:
                parts.append(f"{cid} {w:.1f} W")
        mark = meter_mark(m)
        if mark:
            parts.append(f"{m.name} {mark}" + (f" ({m.faults} faults)" if m.faults and "FAULT" in mark else ""))
    sections = [head]
    wl = workload_text(tick)
    if wl:
        sections.append(wl)
    sections.append(", ".join(parts) if parts else "no readings yet")
    cpu = cpu_text(tick.recorder_cpu)
    if cpu:
        sections.append(cpu)
    return terminal_text(" | ".join(sections), max_len=2000)


def advanced(tick: BenchProgress, dt: float) -> BenchProgress:
    """``tick`` as it stands ``dt`` s after it was taken: elapsed and ages grown, time left
    shrunk (the view redraws between the bench's once-a-second ticks)."""
    if dt <= 0:
        return tick
    meters = [replace(m, silent_s=m.silent_s + dt) if m.silent_s is not None else m for m in tick.meters]
    left = max(0.0, tick.left_s - dt) if tick.left_s is not None else None
    return replace(tick, elapsed_s=tick.elapsed_s + dt, left_s=left, meters=meters)


def _age_text(age_s: float | None) -> str:
    if age_s is None:
        return "-"
    return f"{age_s:.1f} s" if age_s < 60 else duration_text(age_s)


def status_view(tick: BenchProgress | None, channels: list[ChannelState] | None = None,
                title: str = "calibrate") -> RenderableType:
    """The live status view of one tick, as a rich renderable: a heading (phase, time
    left, elapsed), one row per channel (meter, channel, W, age, faults, state) and a
    footer (workload progress, recorder CPU).  ``channels`` (from the feed) supply the
    last good value of a channel whose latest poll failed, shown dimmed.  Every name is
    a ``Text``: ``[red]`` in a name is shown as it is written."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    head = Text()
    head.append(terminal_text(title, max_len=80), style="bold")
    if tick is None:
        head.append("  waiting for the first readings")
        return head
    if tick.phase:
        head.append("  ")
        head.append(terminal_text(tick.phase, max_len=40), style="bold cyan")
    left = left_text(tick)
    if left:
        head.append(f"  {left}")
    head.append(f"  elapsed {duration_text(tick.elapsed_s)}", style="dim")

    last_good = {c.channel: c for c in channels or []}
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for name, justify in (("meter", "left"), ("channel", "left"), ("power", "right"), ("age", "right"),
                          ("faults", "right"), ("state", "left")):
        table.add_column(name, justify=justify, no_wrap=True, overflow="ellipsis")
    for m in tick.meters:
        mark = meter_mark(m)
        style = "bold red" if mark in ("RECONNECTING",) or mark.startswith(("FAULT", "SILENT")) else "yellow"
        state = Text(mark or "ok", style=style if mark else "green")
        faults = Text(str(m.faults), style="red" if m.faults else "")
        age = Text(_age_text(m.silent_s), style="bold red" if m.silent else "")
        ids = list(m.channels) or list(m.values)
        for cid in [c for c in m.values if c not in ids]:
            ids.append(cid)
        if not ids:
            ids = [""]
        for i, cid in enumerate(ids):
            w = (m.values.get(cid) or {}).get("power_w")
            if w is not None:
                power = Text(f"{w:.1f} W", style="bold")
            elif cid in last_good and last_good[cid].last_good_w is not None:
                power = Text(f"{last_good[cid].last_good_w:.1f} W", style="dim strike" if mark else "dim")
            else:
                power = Text("-", style="dim")
            table.add_row(Text(terminal_text(m.name, max_len=40)) if i == 0 else Text(""),
                          Text(terminal_text(cid, max_len=60)), power, age if i == 0 else Text(""),
                          faults if i == 0 else Text(""), state if i == 0 else Text(""))
    foot = Text()
    wl = workload_text(tick)
    if wl:
        foot.append("workload  ", style="bold")
        foot.append(wl)
        foot.append("    ")
    cpu = cpu_text(tick.recorder_cpu)
    if cpu:
        foot.append(cpu, style="dim")
    return Group(head, table, foot) if foot.plain else Group(head, table)


# --------------------------------------------------------------------------- the live view
class LiveView:
    """The status view kept on screen by a thread of its own (redrawn every REFRESH_S).

    It reads the latest tick (``get_tick``: a tick, or (tick, time.monotonic() when it was
    taken) so that ages and time left move between ticks) and, when given, the feed; what it draws never
    waits on the recording.  A failure to draw is handed to ``on_error`` once and ends the
    view (the reporter falls back to plain lines).  Its CPU time goes to the feed as
    ``live-view`` (counted as recorder overhead).
    """

    def __init__(self, console: Console, get_tick: Any, feed: LiveFeed | None = None,
                 on_error: Any = None, title: str = "calibrate", refresh_s: float = REFRESH_S) -> None:
        self.console = console
        self.get_tick = get_tick
        self.feed = feed
        self.on_error = on_error
        self.title = title
        self.refresh_s = refresh_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Any = None
        self.failed = False
        self.cpu_s = 0.0

    def render(self) -> RenderableType:
        channels = self.feed.channel_states() if self.feed is not None else None
        got = self.get_tick()
        tick, taken = got if isinstance(got, tuple) else (got, None)
        if tick is not None and taken is not None:
            tick = advanced(tick, min(time.monotonic() - taken, 5.0))  # not past a stalled bench
        return status_view(tick, channels, self.title)

    def start(self) -> None:
        from rich.live import Live

        self._live = Live(self.render(), console=self.console, auto_refresh=False, transient=False,
                          redirect_stdout=_is_tty(sys.stdout), redirect_stderr=True)
        self._live.start(refresh=True)
        self._thread = threading.Thread(target=self._run, name="live-view", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        c0 = time.thread_time()
        try:
            while not self._stop.wait(self.refresh_s):
                self._live.update(self.render(), refresh=True)
                self._account(time.thread_time() - c0)
        except Exception as exc:  # the recording goes on; the reporter falls back to plain lines
            self.failed = True
            self._close()
            if self.on_error is not None:
                self.on_error(exc)
        finally:
            self._account(time.thread_time() - c0)

    def _account(self, cpu_s: float) -> None:
        self.cpu_s = cpu_s
        if self.feed is not None:
            self.feed.account_cpu("live-view", cpu_s)

    def print(self, text: str, style: str | None = None) -> None:
        """One line above the view (``text`` is shown as it is: no markup)."""
        from rich.text import Text

        self.console.print(Text(text, style=style or ""), soft_wrap=True)

    def _close(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            try:
                live.stop()
            except Exception:
                pass

    def stop(self) -> None:
        """Draw the last state and leave it on screen."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        if self._live is not None and not self.failed:
            try:
                self._live.update(self.render(), refresh=True)
            except Exception:
                pass
        self._close()


def _is_tty(stream: TextIO | None) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False


def live_capable(console: Console) -> bool:
    """Whether ``console`` can hold a live view: a terminal that is not 'dumb'."""
    return bool(console.is_terminal and not console.is_dumb_terminal)


class ConsoleReporter(BenchReporter):
    """Prints the notes (each once), the recording line and the progress: a live status view
    on a terminal (``mode`` auto or live), one plain line a second (``plain``, or auto when
    stderr is not a terminal) or none (``quiet``).  ``show_output`` shows the workload's
    output too (it still goes to workload.log), on stderr, above the view.

    ``console`` is the rich console of the live view (default: stderr); ``feed`` gives the
    view each channel's last good value and takes its CPU time; ``live_url`` (the live
    page) is printed with the recording line.
    """

    def __init__(self, quiet: bool = False, *, mode: str = "auto", show_output: bool = False,
                 feed: LiveFeed | None = None, console: Console | None = None,
                 live_url: str | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        self.mode = "quiet" if quiet else mode
        self.show_output = show_output
        self.feed = feed
        self._console = console
        self._latest: tuple[BenchProgress | None, float | None] = (None, None)  # (tick, when), swapped whole
        self._said: set[str] = set()
        self._view: LiveView | None = None
        self._lock = threading.Lock()
        self._output: queue.Queue[str | None] | None = None
        self._printer: threading.Thread | None = None
        self.output_dropped = 0
        self.title = "calibrate"
        self.live_url = live_url

    # -- where things go ----------------------------------------------------------------
    def _err(self, text: str, style: str | None = None) -> None:
        view = self._view
        if view is not None and not view.failed:
            try:
                view.print(terminal_text(text, max_len=None), style)
                return
            except Exception:
                pass
        say(text, err=True)

    def _once(self, text: str) -> bool:
        with self._lock:
            if text in self._said:
                return False
            self._said.add(text)
            return True

    def _console_for_view(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False, markup=False, emoji=False)
        return self._console

    # -- BenchReporter ------------------------------------------------------------------
    def started(self, path: Path, notes: list[str], workload: PreparedWorkload, n_meters: int) -> None:
        for note in notes:
            if self._once(f"note: {note}"):
                say(f"note: {note}", err=True)
        say(f"recording {n_meters} meter(s) into {path}; workload {workload.name}", err=True)
        if self.live_url:
            say(f"live: {self.live_url}", err=True)
        self.title = f"calibrate {workload.name}"
        if self.show_output:
            self._output = queue.Queue(OUTPUT_QUEUE)
            self._printer = threading.Thread(target=self._print_output, name="workload-output-printer",
                                             daemon=True)
            self._printer.start()
        if self.mode in ("auto", "live"):
            console = self._console_for_view()
            if self.mode == "live" or live_capable(console):
                self._view = LiveView(console, lambda: self._latest, self.feed,
                                      self._view_failed, self.title)
                try:
                    self._view.start()
                except Exception as exc:
                    self._view = None
                    self._view_failed(exc)
            else:
                self.mode = "plain"

    def _view_failed(self, exc: BaseException) -> None:
        self.mode = "plain"
        self._view = None
        self.problem(f"the live view failed ({type(exc).__name__}: {terminal_text(exc, max_len=200)}); "
                     "plain progress lines from now on")

    def progress(self, tick: BenchProgress) -> None:
        self._latest = (tick, time.monotonic())
        if self.mode == "plain" or (self.mode == "auto" and self._view is None):  # auto: plain until a view
            say(plain_line(tick), err=True)

    def problem(self, message: str) -> None:
        if self._once(f"problem: {message}"):
            self._err(f"calibrate: {message}")

    def workload_output(self, line: str) -> None:
        q = self._output
        if q is None:
            return
        try:
            q.put_nowait(line)
        except queue.Full:
            self.output_dropped += 1

    def _print_output(self) -> None:
        assert self._output is not None
        while True:
            line = self._output.get()
            if line is None:
                return
            self._err(terminal_text(line, max_len=None))

    def finished(self, status: str) -> None:
        if self._printer is not None and self._output is not None:
            try:
                self._output.put(None, timeout=5)
            except queue.Full:
                pass
            self._printer.join(timeout=5)
            self._printer = None
        view, self._view = self._view, None
        if view is not None:
            view.stop()
        if self.output_dropped:
            say(f"note: {self.output_dropped} lines of the workload's output were not shown "
                "(the terminal fell behind); workload.log has them all", err=True)


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
        if isinstance(exc, ValueError):  # the session cannot be analysed as asked (one line, exit 2)
            say(f"calibrate: no report: {str(exc).splitlines()[0]} (data kept in {path}; "
                f"`calibrate report {path}` with other options)", err=True)
            return 2
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
