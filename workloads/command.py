"""Any user command as the workload (``calibrate run ... -- python train.py``).

The command runs in its own process group (so its children are stopped with it) and
inherits the events pipe (``CALIBRATE_EVENTS_FD``), so a Python script can emit its own
phases through :mod:`workloads.events`.  It is stopped at ``duration_s`` or when this
process gets SIGTERM/SIGINT: SIGTERM to the group, SIGKILL 5 s later.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from . import _stop, events
from ._common import Emit

KILL_AFTER_S = 5.0


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


def run_command(
    argv: list[str],
    duration_s: float | None = None,
    *,
    emit: Emit = events.emit,
    stop: Any = None,
    kill_after_s: float = KILL_AFTER_S,
) -> int:
    """Run ``argv`` inside phase ``command``; returns its return code (negative: killed by that signal).

    Emits ``result`` with ``returncode``, ``duration_s`` and ``stopped`` (None, "duration"
    or "signal": why we ended it).  Raises ValueError when the command cannot be started.
    """
    return run_command_ex(argv, duration_s, emit=emit, stop=stop, kill_after_s=kill_after_s)[0]


def run_command_ex(
    argv: list[str],
    duration_s: float | None = None,
    *,
    emit: Emit = events.emit,
    stop: Any = None,
    kill_after_s: float = KILL_AFTER_S,
) -> tuple[int, str | None]:
    """As :func:`run_command`, returning (return code, why we stopped it or None)."""
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
                _signal_group(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout=kill_after_s)
                except subprocess.TimeoutExpired:
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait()
                break
            left = 0.05 if deadline is None else min(0.05, max(deadline - time.monotonic(), 0.0))
            stop.wait(left)
    finally:
        if proc.poll() is None:  # an exception of ours: never leave the command behind
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
        if phase_open:
            emit("phase_end", phase="command")
    rc = proc.returncode
    emit("result", returncode=rc, duration_s=time.monotonic() - t0, stopped=stopped)
    how = f"stopped at {stopped}" if stopped else "exited"
    print(f"command {how} with return code {rc}", file=sys.stderr, flush=True)
    return rc, stopped
