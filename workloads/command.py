"""Any user command as the workload (``calibrate run ... -- python train.py``).

The command runs in its own process group (so its children are stopped with it) and
inherits the events pipe (``CALIBRATE_EVENTS_FD``), so a Python script can emit its own
phases through :mod:`workloads.events`.  It is stopped at ``duration_s`` or when this
process gets SIGTERM/SIGINT: SIGTERM to the group, SIGKILL 5 s later.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any, NamedTuple

from . import _stop, events
from .events import Emit
from .process_group import GRACE_S, terminate_group


class CommandOutcome(NamedTuple):
    """How a command ended: its return code (negative: killed by that signal), and why we
    stopped it (``"duration"``, ``"signal"``) or None when it exited by itself."""

    returncode: int
    stopped: str | None


def run_command(argv: list[str], duration_s: float | None = None, **options: Any) -> int:
    """:func:`run_command_outcome` (same options), returning only the return code."""
    return run_command_outcome(argv, duration_s, **options).returncode


def run_command_outcome(
    argv: list[str],
    duration_s: float | None = None,
    *,
    emit: Emit = events.emit,
    stop: Any = None,
    kill_after_s: float = GRACE_S,
) -> CommandOutcome:
    """Run ``argv`` inside phase ``command``; returns its return code and why we stopped it.

    Stops it (:func:`~workloads.process_group.terminate_group`: SIGTERM to its group, SIGKILL
    ``kill_after_s`` s later) at ``duration_s`` or when ``stop`` (default: this process got
    SIGTERM/SIGINT) is set.  Emits ``result`` with ``returncode``, ``duration_s`` and
    ``stopped`` (None, "duration" or "signal").  Raises ValueError when the command cannot
    be started.
    """
    if not argv:
        raise ValueError("the command workload needs a command after `--` (e.g. -- python train.py)")
    stop = _stop.STOP if stop is None else stop
    raw = os.environ.get(events.ENV_FD, "")
    pass_fds = (int(raw),) if raw.isdigit() else ()
    t0 = time.monotonic()
    phase_open = False
    try:
        proc = subprocess.Popen(argv, start_new_session=True, pass_fds=pass_fds)
    except OSError as exc:
        raise ValueError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from None
    stopped: str | None = None
    try:
        emit("phase_start", phase="command", argv=list(argv), pid=proc.pid)
        phase_open = True
        deadline = None if duration_s is None else t0 + duration_s
        while proc.poll() is None:
            if stop.is_set():
                stopped = "signal"
            elif deadline is not None and time.monotonic() >= deadline:
                stopped = "duration"
            if stopped:
                terminate_group(proc, kill_after_s)
                break
            left = 0.05 if deadline is None else min(0.05, max(deadline - time.monotonic(), 0.0))
            stop.wait(left)
    finally:
        if proc.poll() is None:  # an exception of ours: never leave the command behind
            terminate_group(proc, grace_s=0)
        if phase_open:
            emit("phase_end", phase="command")
    rc = proc.returncode
    emit("result", returncode=rc, duration_s=time.monotonic() - t0, stopped=stopped)
    how = f"stopped at {stopped}" if stopped else "exited"
    print(f"command {how} with return code {rc}", file=sys.stderr, flush=True)
    return CommandOutcome(rc, stopped)
