"""The workload process: started with an events pipe, watched, and ended on time.

The workload runs in its own process (its own process group); its phase markers and
results arrive over a pipe (``CALIBRATE_EVENTS_FD``, the protocol of :mod:`workloads.events`)
and are written to the session's events file with their own stamps (same clock).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calibrate.session import Session
from workloads.events import ENV_FD
from workloads.process_group import terminate_group


@dataclass
class WorkloadRun:
    """What the bench knows of a running workload process."""

    argv: list[str]
    phase: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    returncode: int | None = None
    terminated: bool = False  # ended by us (at --duration or on interrupt)
    bad_lines: int = 0


MAX_SKEW_NS = 86_400 * 10**9  # an event stamp more than a day from now is not on our clock


def accept_event(line: bytes, run: WorkloadRun) -> dict | None:
    """One event line from the workload, validated; None (and counted) if malformed."""
    try:
        event = json.loads(line)
        if not isinstance(event, dict) or not isinstance(event.get("kind"), str):
            raise ValueError
        now = time.monotonic_ns()
        t = event.get("t_ns", now)
        if isinstance(t, bool) or not isinstance(t, (int, float)):
            raise ValueError
        t = int(t)  # OverflowError for inf, ValueError for nan
        if abs(t - now) > MAX_SKEW_NS:
            raise ValueError
    except (ValueError, TypeError, OverflowError, RecursionError):
        run.bad_lines += 1
        return None
    event["t_ns"] = t
    event["source"] = "workload"
    return event


def pump_events(fd: int, session: Session, run: WorkloadRun) -> None:
    """Copy JSON event lines from the workload's pipe into the session's events file.

    Malformed lines are counted, never fatal: the pipe is drained to the end whatever the
    workload writes, so it can never block on a full pipe.
    """
    buf = b""
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        while True:
            try:
                chunk = pipe.read(65536)
            except OSError:
                chunk = b""
            last = not chunk
            buf += chunk
            lines = buf.split(b"\n")
            buf = b"" if last else lines.pop()  # at EOF a final line without newline still counts
            for line in lines:
                if not line.strip():
                    continue
                event = accept_event(line, run)
                if event is None:
                    continue
                kind = event["kind"]
                if kind == "phase_start":
                    run.phase = str(event.get("phase"))
                elif kind == "result":
                    run.result.update({k: v for k, v in event.items() if k not in ("t_ns", "kind", "source")})
                elif kind == "metric" and isinstance(event.get("value"), (int, float)):
                    run.metrics[str(event.get("name"))] = float(event["value"])
                assert session.events is not None
                session.events.write(event)
            if last:
                return


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: a killed recorder takes its workload along


def _load_prctl():
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl  # loaded before any fork
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl() if sys.platform.startswith("linux") else None


def run_workload(session: Session, argv: Sequence[str], log_path: Path, stop: threading.Event,
                 progress: Callable[[WorkloadRun], None] | None = None, phase_name: str | None = None,
                 stop_after_s: float | None = None) -> WorkloadRun:
    """Start ``argv`` with the events pipe and wait for it.

    ``stop_after_s``: terminate it (SIGTERM, then SIGKILL after 5 s) that long after the
    start -- the duration for an external command; for a workload that keeps its own
    duration, its duration plus a grace period, so that it can finish its evaluation.
    The workload dies with the recorder (PR_SET_PDEATHSIG on Linux), and whatever happens
    here it is never left running.
    """
    run = WorkloadRun(list(argv))
    r, w = os.pipe()
    env = dict(os.environ, **{ENV_FD: str(w), "PYTHONUNBUFFERED": "1"})
    with log_path.open("ab") as log:
        if phase_name:
            session.begin(phase_name)
        try:
            proc = subprocess.Popen(list(argv), env=env, pass_fds=(w,), stdout=log, stderr=log,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    preexec_fn=_die_with_parent if _PRCTL is not None else None)
        except OSError as exc:
            os.close(r)
            os.close(w)
            if phase_name:
                session.end(phase_name)
            raise FileNotFoundError(f"cannot start workload {argv[0]!r}: {exc.strerror}") from None
        os.close(w)
        pump = threading.Thread(target=pump_events, args=(r, session, run), daemon=True)
        pump.start()
        session.mark("workload_started", pid=proc.pid, argv=list(argv))
        deadline = time.monotonic() + stop_after_s if stop_after_s else None
        terminated = False
        last_progress = 0.0
        try:
            while proc.poll() is None:
                now = time.monotonic()
                if (stop.is_set() or (deadline and now >= deadline)) and not terminated:
                    terminate_group(proc)
                    terminated = True
                if progress and now - last_progress >= 1.0:
                    progress(run)
                    last_progress = now
                time.sleep(0.1)
        finally:
            if proc.poll() is None:  # an error here: never leave the workload running
                terminate_group(proc)
                terminated = True
            run.returncode, run.terminated = proc.returncode, terminated
            pump.join(timeout=5)
            if phase_name:
                session.end(phase_name)
            session.mark("workload_exited", returncode=proc.returncode, terminated=terminated)
    return run
