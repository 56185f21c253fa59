"""workloads.command: run, time-limit (SIGTERM then SIGKILL), exit codes, events."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from workloads.command import run_command, run_command_outcome

from .test_workloads_cli import assert_well_formed, run_workload


class Recorder(list):
    def __call__(self, kind: str, **fields) -> dict:
        event = {"t_ns": time.monotonic_ns(), "kind": kind, **fields}
        self.append(event)
        return event


def test_returncode_and_events():
    rec = Recorder()
    assert run_command(["sh", "-c", "exit 3"], emit=rec, stop=threading.Event()) == 3
    assert [e["kind"] for e in rec] == ["phase_start", "phase_end", "result"]
    assert rec[0]["phase"] == "command" and rec[0]["argv"] == ["sh", "-c", "exit 3"]
    assert rec[-1]["returncode"] == 3 and rec[-1]["stopped"] is None


def test_duration_terminates():
    rec = Recorder()
    rc, why = run_command_outcome(["sleep", "30"], 0.3, emit=rec, stop=threading.Event())
    assert rc == -15 and why == "duration"
    assert rec[-1]["duration_s"] < 5


def test_sigkill_when_sigterm_is_ignored():
    rec = Recorder()
    t = time.monotonic()
    rc, why = run_command_outcome(["sh", "-c", "trap '' TERM; sleep 30"], 0.2, emit=rec, stop=threading.Event(),
                                  kill_after_s=0.3)
    assert rc == -9 and why == "duration" and time.monotonic() - t < 5


def test_stop_request_forwards_sigterm():
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    rc, why = run_command_outcome(["sleep", "30"], None, emit=Recorder(), stop=stop)
    assert rc == -15 and why == "signal"


def test_start_failure():
    with pytest.raises(ValueError, match="cannot start"):
        run_command(["/nonexistent/x"], emit=Recorder(), stop=threading.Event())
    with pytest.raises(ValueError, match="needs a command"):
        run_command([], emit=Recorder(), stop=threading.Event())


def test_cli_command_inherits_the_events_pipe(tmp_path):
    script = "from workloads import events; events.emit('log', message='from the user script'); raise SystemExit(4)"
    rc, events, err = run_workload("command", {}, tmp_path, command=[sys.executable, "-c", script])
    assert rc == 4, err
    assert_well_formed(events)
    kinds = [(e["kind"], e.get("phase") or e.get("message")) for e in events]
    assert kinds == [("phase_start", "command"), ("log", "from the user script"), ("phase_end", "command"),
                     ("result", None)]
    assert events[-1]["returncode"] == 4


def test_cli_command_stopped_at_duration_exits_0(tmp_path):
    rc, events, _ = run_workload("command", {"duration_s": 0.3}, tmp_path, command=["sleep", "30"])
    assert rc == 0 and events[-1]["stopped"] == "duration" and events[-1]["returncode"] == -15
