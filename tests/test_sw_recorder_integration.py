"""The software meters under calibrate's real Recorder: traces, a lost GPU, reconnection."""

from __future__ import annotations

import csv
import json
import time

import pytest

from drivers.cpu_model import CpuModelMeter
from drivers.fakes.nvml import FakeGpu, FakeNvml
from drivers.fakes.powercap import FakePowercap, typical_zones
from drivers.nvml import NvmlMeter
from drivers.rapl import RaplMeter

recorder = pytest.importorskip("calibrate.recorder")
storage = pytest.importorskip("analysis.session_format")


def rows(path):
    with path.open() as fh:
        return list(csv.DictReader(fh))


def record(tmp_path, meters, while_recording):
    """Record ``meters`` with the real Recorder while ``while_recording()`` runs; (recorder, session folder)."""
    out = tmp_path / "session"
    out.mkdir()
    events = storage.EventWriter(out / "events.jsonl")
    rec = recorder.Recorder(meters, out, events)
    rec.open_all()
    rec.start()
    try:
        while_recording(rec)
    finally:
        rec.stop()
        events.close()
    return rec, out


def assert_gpu_reconnected(traces, watts):
    gpu = rows(traces / "nvml.0.csv")
    flags = [r["flag"] for r in gpu]
    assert "disconnected" in flags and "reconnected" in flags
    assert flags.index("reconnected") > flags.index("disconnected")
    assert any(r["power_w"] and float(r["power_w"]) == pytest.approx(watts)
               for r in gpu[flags.index("reconnected"):])


def test_recorder_with_software_meters(tmp_path, monkeypatch):
    monkeypatch.setattr(recorder, "RECONNECT_EVERY_S", 0.05)
    fake = FakePowercap(tmp_path / "pc", typical_zones(dram=False)).start(tick_s=0.005)
    nv = FakeNvml([FakeGpu.model("a100", 0, power=120.0)])
    meters = [RaplMeter(root=fake.root, interval_s=0.05), NvmlMeter(nvml=nv, interval_s=0.05),
              CpuModelMeter(idle_w=5, max_w=50, interval_s=0.05)]

    def lose_gpu_for_a_while(rec):
        time.sleep(0.4)
        nv.gpus[0].lose()
        time.sleep(0.2)
        nv.gpus[0].lost = False
        time.sleep(0.4)

    try:
        rec, out = record(tmp_path, meters, lose_gpu_for_a_while)
    finally:
        fake.stop()
    traces = out / storage.TRACE_DIR
    names = sorted(p.name for p in traces.iterdir())
    assert names == sorted(["rapl.package-0.csv", "rapl.package-0.core.csv", "nvml.0.csv", "cpu-model.csv"])
    pkg = [r for r in rows(traces / "rapl.package-0.csv") if r["energy_j"]]
    energies = [float(r["energy_j"]) for r in pkg]
    assert len(energies) > 5 and energies == sorted(energies)
    assert_gpu_reconnected(traces, 120.0)
    assert rec.summary()["meters"]["nvml"]["faults"].get("disconnected", 0) >= 1


def test_a_stalling_gpu_is_moved_out_of_the_shared_thread(tmp_path, monkeypatch):
    """NVML shares RAPL's polling thread until a call hangs; then it gets a thread of its own.

    While the lost GPU makes every NVML call hang 0.6 s, RAPL must go on being polled at
    its 50 ms interval: one delayed poll at most, then no gap longer than a few intervals.
    """
    monkeypatch.setattr(recorder, "RECONNECT_EVERY_S", 0.05)
    fake = FakePowercap(tmp_path / "pc", typical_zones(dram=False)).start(tick_s=0.005)
    nv = FakeNvml([FakeGpu.model("a100", 0, power=120.0)])
    meters = [RaplMeter(root=fake.root, interval_s=0.05), NvmlMeter(nvml=nv, interval_s=0.05)]
    t_lost = []

    def stall_gpu_for_a_while(rec):
        assert [t.name for t in rec._threads] == ["meter-shared"]  # one wake-up for both meters
        time.sleep(0.3)
        t_lost.append(time.monotonic_ns())
        nv.gpus[0].lose(stall_s=0.6)
        time.sleep(1.2)
        nv.gpus[0].lost = False
        time.sleep(1.5)  # a reopen attempt under way still hangs 0.6 s and fails, the next works

    try:
        rec, out = record(tmp_path, meters, stall_gpu_for_a_while)
    finally:
        fake.stop()
    evs = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    moved = [e for e in evs if e["kind"] == "meter_isolated"]
    assert len(moved) == 1 and moved[0]["meter"] == "nvml" and moved[0]["stall_s"] >= 0.55
    assert sorted(t.name for t in rec._threads) == ["meter-nvml", "meter-shared"]
    traces = out / storage.TRACE_DIR
    t_pkg = [int(r["t_ns"]) for r in rows(traces / "rapl.package-0.csv") if r["energy_j"]]
    after = [t for t in t_pkg if t > moved[0]["t_ns"]]
    gaps = [(b - a) / 1e9 for a, b in zip(after, after[1:])]
    assert len(after) > 30 and max(gaps) < 0.2  # RAPL kept its pace while NVML hung
    before = [t for t in t_pkg if t < t_lost[0]]
    assert before and max((b - a) / 1e9 for a, b in zip(before, before[1:])) < 0.2
    assert_gpu_reconnected(traces, 120.0)
    energies = [float(r["energy_j"]) for r in rows(traces / "rapl.package-0.csv") if r["energy_j"]]
    assert energies == sorted(energies)
