"""``calibrate watch URI...``: what meters read, live, with nothing recorded.

The meters are polled by the recorder itself, with no session folder (no files, no
events): the same intervals, fault handling and reconnects as a recording, so what watch
shows is what a run would record.  On a terminal the readings are one live status view;
elsewhere (or with ``--plain``) one plain line a second, on stdout: they are this
command's result.  A meter that cannot be opened, or whose polls fail, is shown failing
(FAULT, RECONNECTING, SILENT), never dropped.  Ctrl-C or ``--seconds S`` ends it; the exit
code is 1 when a meter gave no reading at all, else 0.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from typing import Any

from calibrate.bench import BenchProgress, StopOnSignal, build_meters, meter_notes
from calibrate.console import REFRESH_S, LiveView, live_capable, plain_line, say
from calibrate.errors import UsageError
from calibrate.live_feed import LiveFeed
from calibrate.recorder import DiscardEvents, Recorder

MAX_SECONDS = 7 * 86_400.0  # --seconds beyond a week is a typo


def watch(uris: Sequence[str], seconds: float | None = None, mode: str = "auto",
          stop: threading.Event | None = None, tick_s: float = 1.0) -> int:
    """Show what the meters ``uris`` read until ``seconds`` (s) have passed, ``stop`` is set
    or SIGINT/SIGTERM arrive; ``mode`` auto (a live view on a terminal), live or plain.
    Returns the exit code (1: some meter gave no reading).  Bad URIs and options raise
    UsageError / MeterConfigError before any meter is opened."""
    if seconds is not None and not (math.isfinite(seconds) and 0 < seconds <= MAX_SECONDS):
        raise UsageError(f"--seconds must be more than 0 and at most {MAX_SECONDS:.0f} s, got {seconds}")
    if not uris:
        raise UsageError("give at least one meter URI (e.g. calibrate watch sim:wattsup cpu-model)")
    stop = stop or threading.Event()
    meters = build_meters(uris)
    recorder = Recorder(meters, None, DiscardEvents())
    failed = recorder.open_available()  # a MeterConfigError is raised (exit 2); others are shown failing
    for name, exc in failed.items():
        say(f"calibrate: {name}: cannot open ({type(exc).__name__}: {exc}); retrying every 0.5 s", err=True)
    for note in dict.fromkeys(meter_notes(meters)):
        say(f"note: {note}", err=True)
    feed = LiveFeed()
    recorder.add_listener(feed)
    view = None
    state: dict[str, Any] = {"latest": (None, None)}
    try:
        recorder.start()
        feed.set_origin(recorder.started_ns)
        t0 = time.monotonic()
        if mode in ("auto", "live"):
            from rich.console import Console

            console = Console(highlight=False, markup=False, emoji=False)  # stdout: the readings are the result
            if mode == "live" or live_capable(console):
                view = LiveView(console, lambda: state["latest"], feed, on_error=None, title="calibrate watch")
                view.start()
        with StopOnSignal(stop):
            period = REFRESH_S if view is not None else tick_s  # a live view follows the readings closely
            next_tick = next_line = t0
            while not stop.is_set():
                now = time.monotonic()
                if seconds is not None and now - t0 >= seconds:
                    break
                if now >= next_tick:
                    left = None if seconds is None else max(0.0, seconds - (now - t0))
                    tick = BenchProgress(now - t0, "watch", recorder.live(), left_s=left,
                                         recorder_cpu=recorder.cpu_recent())
                    state["latest"] = (tick, time.monotonic())
                    feed.update(tick)
                    if (view is None or view.failed) and now >= next_line:
                        say(plain_line(tick))
                        next_line = max(next_line + tick_s, now + tick_s / 2)
                    next_tick = max(next_tick + period, now + period / 2)
                wait = next_tick - time.monotonic()
                if seconds is not None:
                    wait = min(wait, seconds - (time.monotonic() - t0))
                stop.wait(max(0.0, min(wait, 0.25)))
    except KeyboardInterrupt:
        pass
    finally:
        if view is not None:
            view.stop()
        recorder.stop()
    silent = [name for name, t in recorder.last_reading_ns().items() if not t]
    if silent:
        say(f"calibrate: no reading from {', '.join(silent)}", err=True)
        return 1
    return 0

