"""workloads.load_shapes (the calibration workloads): schedules, duty-cycled workers, stop, memory and GPU loads."""

from __future__ import annotations

import threading
import time

import pytest

from workloads import load_shapes
from workloads.registry import validate_params


class Recorder:
    def __init__(self, stop_on: str | None = None, stop: threading.Event | None = None) -> None:
        self.events: list[dict] = []
        self.stop_on, self.stop = stop_on, stop

    def __call__(self, kind: str, **fields) -> dict:
        event = {"t_ns": time.monotonic_ns(), "kind": kind, **fields}
        self.events.append(event)
        if self.stop_on and kind == "phase_start" and fields.get("phase") == self.stop_on:
            self.stop.set()
        return event


def segs(name: str, **params) -> list[tuple[str, float | None, float]]:
    return [(s.phase, s.duration_s, s.level) for s in load_shapes.schedule(name, validate_params(name, params))]


def test_schedules():
    assert segs("idle", duration_s=5) == [("idle", 5.0, 0.0)]
    assert segs("step", levels="0,0.5,1", hold_s=2) == [("level-0.00", 2.0, 0.0), ("level-0.50", 2.0, 0.5),
                                                       ("level-1.00", 2.0, 1.0)]
    assert segs("step", levels="0,0.5,1", hold_s=2, duration_s=3) == [("level-0.00", 2.0, 0.0), ("level-0.50", 1.0, 0.5)]
    assert segs("square", period_s=4, duty=0.25, high=0.9, low=0.1, cycles=2) == [
        ("high", 1.0, 0.9), ("low", 3.0, 0.1), ("high", 1.0, 0.9), ("low", 3.0, 0.1)]
    sq = segs("square", period_s=2, duration_s=5)
    assert [s[0] for s in sq] == ["high", "low"] * 2 + ["high"] and sum(s[1] for s in sq) == pytest.approx(5.0)
    assert segs("cpu-stress", utilisation=0.3, duration_s=None) == [("stress", None, 0.3)]


def test_step_load_edges_and_cpu_time():
    rec = Recorder()
    r = load_shapes.run("step", {"levels": "0,1,0.5", "hold_s": 0.4, "threads": 1, "cycle_s": 0.05},
                        emit=rec, stop=threading.Event(), verbose=False)
    starts = [e for e in rec.events if e["kind"] == "phase_start"]
    assert [e["phase"] for e in starts] == ["level-0.00", "level-1.00", "level-0.50"]
    assert [e["utilisation"] for e in starts] == [0.0, 1.0, 0.5]
    gaps = [(b["t_ns"] - a["t_ns"]) / 1e9 for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps == [pytest.approx(0.4, abs=0.05)] * 2  # edges on the schedule
    assert r["threads"] == 1 and not r["interrupted"]
    assert r["target_utilisation"] == pytest.approx(0.5, abs=0.03)
    # scheduled busy time is 0.4 + 0.2 = 0.6 s: the worker never burns more than that,
    # and (even on a loaded machine) gets a good part of it
    assert 0.15 < r["cpu_s"] < 0.6 + 0.1
    assert rec.events[-1]["kind"] == "result"


def test_idle_uses_no_workers_and_stops_promptly():
    stop = threading.Event()
    rec = Recorder()
    threading.Timer(0.2, stop.set).start()
    t = time.monotonic()
    r = load_shapes.run("idle", {"duration_s": 30}, emit=rec, stop=stop, verbose=False)
    assert time.monotonic() - t < 5
    assert r["threads"] == 0 and r["cpu_s"] == 0.0 and r["interrupted"] is True
    assert [(e["kind"], e.get("phase")) for e in rec.events] == [
        ("phase_start", "idle"), ("phase_end", "idle"), ("result", None)]


def test_stop_during_square_ends_the_phase():
    stop = threading.Event()
    rec = Recorder(stop_on="low", stop=stop)
    r = load_shapes.run("square", {"period_s": 0.4, "cycles": 50, "threads": 1}, emit=rec, stop=stop, verbose=False)
    kinds = [(e["kind"], e.get("phase")) for e in rec.events]
    assert kinds == [("phase_start", "high"), ("phase_end", "high"), ("phase_start", "low"),
                     ("phase_end", "low"), ("result", None)]
    assert r["interrupted"] and r["duration_s"] < 5
    assert r["cpu_s"] < 0.2 + 0.1  # only the high half-period was busy


def test_memory_stress_moves_bytes():
    r = load_shapes.run("memory-stress", {"duration_s": 0.3, "bytes": "8M", "threads": 1},
                        emit=Recorder(), stop=threading.Event(), verbose=False)
    assert r["bytes_moved"] > 8 << 20 and r["gb_per_s"] > 0


def test_gpu_stress_without_cuda_is_a_config_error():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        r = load_shapes.run("gpu-stress", {"duration_s": 0.5, "size": 512, "utilisation": 0.5},
                            emit=Recorder(), stop=threading.Event(), verbose=False)
        assert r["matmuls"] > 0 and 0.2 < r["mean_utilisation"] < 0.8
    else:
        with pytest.raises(ValueError, match="needs a CUDA GPU") as err:
            load_shapes.run("gpu-stress", {"duration_s": 1}, emit=Recorder(), stop=threading.Event())
        assert "\n" not in str(err.value)


def test_gpu_stress_duty_cycle_logic_on_cpu_tensors(monkeypatch):
    """The matmul duty-cycling loop, run on CPU tensors with torch.cuda stubbed out."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "stub")
    p = validate_params("gpu-stress", {"duration_s": 0.6, "size": 96, "dtype": "float32", "utilisation": 0.5,
                                       "cycle_s": 0.05})
    p["device"] = "cpu"
    rec = Recorder()
    r = load_shapes.gpu_stress(p, emit=rec, stop=threading.Event(), verbose=False)
    assert [(e["kind"], e.get("phase")) for e in rec.events] == [
        ("phase_start", "setup"), ("phase_end", "setup"), ("phase_start", "stress"), ("phase_end", "stress"),
        ("result", None)]
    assert r["matmuls"] > 0 and r["tflops"] > 0
    # about half of the time busy when the CPU is free; a loaded 2-core machine (parallel tests) measures less
    assert 0.0 < r["mean_utilisation"] < 0.75
    assert r["duration_s"] == pytest.approx(0.6, abs=0.3)
