"""The workload's event pipe: malformed, hostile or unterminated lines never break a session."""

from __future__ import annotations

import json
import os
import threading
import time
from types import SimpleNamespace

from calibrate.workload_process import WorkloadRun, pump_events


class Sink:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def write(self, event: dict) -> None:
        self.events.append(event)


def pump(payload: bytes) -> tuple[list[dict], WorkloadRun]:
    r, w = os.pipe()
    sink = Sink()
    run = WorkloadRun(["x"])
    t = threading.Thread(target=pump_events, args=(r, SimpleNamespace(events=sink), run))
    t.start()
    os.write(w, payload)
    os.close(w)
    t.join(timeout=5)
    assert not t.is_alive()
    return sink.events, run


def test_good_bad_and_unterminated_lines() -> None:
    now = time.monotonic_ns()
    lines = [
        json.dumps({"t_ns": now, "kind": "phase_start", "phase": "epoch-1"}),
        '{"kind": "x", "t_ns": Infinity}',  # OverflowError on int(): counted, not fatal
        '{"kind": "x", "t_ns": 1e30}',  # not on this clock
        '{"kind": "x", "t_ns": "12"}',  # a string is not a stamp
        "not json at all",
        "[1, 2, 3]",
        json.dumps({"t_ns": now + 1, "kind": "metric", "name": "loss", "value": 2.5}),
    ]
    tail = json.dumps({"t_ns": now + 2, "kind": "result", "accuracy": 0.9})  # no newline at EOF
    events, run = pump(("\n".join(lines) + "\n" + tail).encode())
    assert [e["kind"] for e in events] == ["phase_start", "metric", "result"]
    assert all(isinstance(e["t_ns"], int) and e["source"] == "workload" for e in events)
    assert run.bad_lines == 5
    assert run.phase == "epoch-1" and run.metrics == {"loss": 2.5} and run.result == {"accuracy": 0.9}


def test_an_event_without_a_stamp_is_stamped_on_arrival() -> None:
    t0 = time.monotonic_ns()
    events, _ = pump(b'{"kind": "log", "message": "hello"}\n')
    assert t0 <= events[0]["t_ns"] <= time.monotonic_ns()


def test_an_error_while_waiting_never_leaves_the_workload_running(tmp_path) -> None:
    import pytest

    from calibrate.session import Session
    from calibrate.workload_process import run_workload
    from tests.conftest import ScriptedMeter

    session = Session([ScriptedMeter([1.0])], out=tmp_path / "s").start()

    def broken_display(run: WorkloadRun) -> None:
        raise RuntimeError("the terminal went away")

    with pytest.raises(RuntimeError):
        run_workload(session, ["sleep", "30"], tmp_path / "log", threading.Event(), broken_display,
                     phase_name="workload")
    session.stop("failed")
    events = [json.loads(x) for x in (tmp_path / "s" / "events.jsonl").read_text().splitlines()]
    started = next(e for e in events if e["kind"] == "workload_started")
    exited = next(e for e in events if e["kind"] == "workload_exited")
    assert exited["terminated"] is True
    assert [e["kind"] for e in events if e.get("phase") == "workload"] == ["phase_start", "phase_end"]
    assert not os.path.exists(f"/proc/{started['pid']}") or open(f"/proc/{started['pid']}/stat").read().split()[2] == "Z"
