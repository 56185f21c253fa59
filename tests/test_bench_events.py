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
    t = threading.Thread(target=pump_events, args=(r, SimpleNamespace(events=sink, record=sink.write), run))
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


# --------------------------------------------------------------------------- a hostile pipe


def test_an_endless_line_is_skipped_in_bounded_memory_and_the_next_line_counts() -> None:
    import tracemalloc

    from calibrate.workload_process import MAX_LINE

    good = json.dumps({"t_ns": time.monotonic_ns(), "kind": "metric", "name": "loss", "value": 1.5})
    flood = b"x" * (20 * 2**20)  # 20 MB, no newline
    payload = flood + b"\n" + good.encode() + b"\n"
    tracemalloc.start()
    try:
        events, run = pump(payload)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert run.bad_lines == 1  # the flood, counted once
    assert [e["kind"] for e in events] == ["metric"] and run.metrics == {"loss": 1.5}
    assert peak < 8 * MAX_LINE + 2**20, peak  # never the 20 MB (the old buffer held all of it, twice)
    assert run.pump_cpu_s > 0


def test_lines_around_the_cap() -> None:
    from calibrate.workload_process import MAX_LINE

    def line(n: int) -> bytes:  # a valid log event exactly n bytes long
        head = json.dumps({"kind": "log", "message": ""})[:-2]
        return (head + "x" * (n - len(head) - 2) + '"}').encode()

    assert len(line(MAX_LINE)) == MAX_LINE
    events, run = pump(line(MAX_LINE) + b"\n" + line(MAX_LINE + 1) + b"\n" + line(100) + b"\n"
                       + b"y" * (3 * MAX_LINE) + b"\n" + b"z" * (MAX_LINE + 5))  # unterminated at EOF
    assert run.bad_lines == 3 and len(events) == 2
    assert len(events[0]["message"]) <= 1000  # a long string field is cut, the event kept
    assert run.bad_fields == 0


def test_chunking_never_changes_what_is_read() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from calibrate.workload_process import MAX_LINE

    now = time.monotonic_ns()
    kinds = st.sampled_from([
        json.dumps({"t_ns": now, "kind": "log", "message": "m"}).encode(),
        b"junk",
        b"",
        b"q" * (MAX_LINE + 1),
    ])

    @settings(max_examples=40, deadline=None)
    @given(st.lists(kinds, max_size=12), st.lists(st.integers(1, 3 * MAX_LINE), max_size=6))
    def check(lines: list[bytes], cuts: list[int]) -> None:
        stream = b"\n".join(lines)
        r, w = os.pipe()
        sink, run = Sink(), WorkloadRun(["x"])
        t = threading.Thread(target=pump_events, args=(r, SimpleNamespace(events=sink, record=sink.write), run))
        t.start()
        pos = 0
        for c in cuts:
            os.write(w, stream[pos:pos + c])
            pos += c
        os.write(w, stream[pos:])
        os.close(w)
        t.join(timeout=10)
        good = sum(1 for x in lines if x.startswith(b"{"))
        bad = sum(1 for x in lines if x and not x.startswith(b"{"))
        assert len(sink.events) == good and run.bad_lines == bad

    check()


# --------------------------------------------------------------------------- field validation


def _accept(fields: dict):
    from calibrate.workload_process import accept_event

    run = WorkloadRun(["x"])
    return accept_event(json.dumps({"t_ns": time.monotonic_ns(), **fields}).encode(), run), run


def test_result_values_must_be_finite_numbers() -> None:
    line = ('{"kind": "result", "accuracy": "n/a", "loss": NaN, "images_per_s": Infinity, "value": true, '
            '"duration_s": 1e400, "samples_seen": 100000000000000000000000000000, "steps": 12, '
            '"val_loss": null, "interrupted": false, "model": "' + "m" * 50_000 + '", "device": "cpu"}')
    events, run = pump(line.encode() + b"\n")
    assert len(events) == 1 and run.bad_lines == 0
    e = events[0]
    for k in ("accuracy", "loss", "images_per_s", "value", "duration_s", "samples_seen"):
        assert k not in e and k not in run.result
    assert e["steps"] == 12 and e["val_loss"] is None and e["interrupted"] is False and e["device"] == "cpu"
    assert len(e["model"]) == 1000
    assert run.bad_fields == 6
    json.dumps(e, allow_nan=False)  # recordable as strict JSON
    assert run.result["steps"] == 12


def test_metric_needs_a_name_and_a_finite_value() -> None:
    for fields in ({"kind": "metric", "name": "loss", "value": "n/a"},
                   {"kind": "metric", "name": "loss", "value": True},
                   {"kind": "metric", "name": "loss", "value": float("nan")},
                   {"kind": "metric", "name": "loss", "value": None},
                   {"kind": "metric", "name": "lo\nss", "value": 1.0},
                   {"kind": "metric", "name": "n" * 101, "value": 1.0},
                   {"kind": "metric", "value": 1.0}):
        event, run = _accept(fields)
        assert event is None and run.bad_lines == 1 and run.bad_fields == (0 if "name" not in fields else 1)
    event, run = _accept({"kind": "metric", "name": "loss", "value": 2, "unit": "", "phase": "epoch-1",
                          "accuracy": float("inf")})
    assert event is not None and event["value"] == 2 and "accuracy" not in event and run.bad_fields == 1
    events, run = pump(b'{"kind": "metric", "name": "loss", "value": "n/a"}\n'
                       b'{"kind": "metric", "name": "loss", "value": 0.5}\n')
    assert run.metrics == {"loss": 0.5} and len(events) == 1


def test_phase_names_are_short_and_printable() -> None:
    for phase in ("epoch\x1b[2J", "a\nb", "", "p" * 101, 7, None, ["epoch-1"]):
        for kind in ("phase_start", "phase_end"):
            event, run = _accept({"kind": kind, "phase": phase})
            assert event is None and run.bad_fields == 1 and run.bad_lines == 1, (kind, phase)
    event, run = _accept({"kind": "phase_start", "phase": "p" * 100, "note": "n" * 5000})
    assert event["phase"] == "p" * 100 and len(event["note"]) == 1000 and run.bad_fields == 0
    events, run = pump(b'{"kind": "phase_start", "phase": "evil\\u0007"}\n{"kind": "phase_start", "phase": "ok"}\n')
    assert run.phase == "ok" and [e["phase"] for e in events] == ["ok"]


def test_other_fields_are_bounded() -> None:
    event, run = _accept({"kind": "log", "message": "x" * 10_000, "argv": ["a"] * 5, "bad": [1.0, float("nan")],
                          "deep": [[[[[1]]]]], "k" * 200: 1, "ok": {"a": 1}})
    assert len(event["message"]) == 1000 and event["argv"] == ["a"] * 5 and event["ok"] == {"a": 1}
    assert "bad" not in event and "deep" not in event and "k" * 200 not in event
    assert run.bad_fields == 3
    event, _ = _accept({"kind": "k\x00ind"})
    assert event is None
    event, run = _accept({"kind": "log", **{f"f{i}": i for i in range(150)}})
    assert event is not None and len(event) <= 100 + 3 and run.bad_fields == 50


def test_any_accepted_event_is_strict_json_with_valid_fields() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from calibrate.workload_process import MAX_STRING, NUMERIC_FIELDS, accept_event

    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                        st.text(max_size=50))
    values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=4),
                          max_leaves=10)
    keys = st.sampled_from(["accuracy", "loss", "value", "name", "phase", "message", "unit", "steps", "x"])

    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from(["result", "metric", "phase_start", "phase_end", "log", "custom"]),
           st.dictionaries(keys, values, max_size=6))
    def check(kind: str, fields: dict) -> None:
        run = WorkloadRun(["x"])
        line = json.dumps({"kind": kind, **fields}).encode()
        event = accept_event(line, run)
        if event is None:
            return
        json.dumps(event, allow_nan=False)
        for k, v in event.items():
            if kind in ("result", "metric") and k in NUMERIC_FIELDS:
                assert v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)), (k, v)
            if isinstance(v, str) and k not in ("kind", "source"):
                assert len(v) <= MAX_STRING
        if kind.startswith("phase_"):
            assert isinstance(event["phase"], str) and event["phase"].isprintable() and len(event["phase"]) <= 100

    check()
