"""The software meters under calibrate's real Recorder: traces, a lost GPU, reconnection."""

from __future__ import annotations

import csv
import time

import pytest

from drivers.cpu_model import CpuModelMeter
from drivers.fakes.nvml import FakeGpu, FakeNvml
from drivers.fakes.powercap import FakePowercap, typical_zones
from drivers.nvml import NvmlMeter
from drivers.rapl import RaplMeter

recorder = pytest.importorskip("calibrate.recorder")
storage = pytest.importorskip("calibrate.storage")


def rows(path):
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_recorder_with_software_meters(tmp_path, monkeypatch):
    monkeypatch.setattr(recorder, "RECONNECT_EVERY_S", 0.05)
    fake = FakePowercap(tmp_path / "pc", typical_zones(dram=False)).start(tick_s=0.005)
    nv = FakeNvml([FakeGpu.model("a100", 0, power=120.0)])
    meters = [RaplMeter(root=fake.root, interval_s=0.05), NvmlMeter(nvml=nv, interval_s=0.05),
              CpuModelMeter(idle_w=5, max_w=50, interval_s=0.05)]
    out = tmp_path / "session"
    out.mkdir()
    events = storage.EventWriter(out / "events.jsonl")
    rec = recorder.Recorder(meters, out, events)
    rec.open_all()
    rec.start()
    try:
        time.sleep(0.4)
        nv.gpus[0].lose()
        time.sleep(0.2)
        nv.gpus[0].lost = False
        time.sleep(0.4)
    finally:
        rec.stop()
        events.close()
        fake.stop()
    traces = out / storage.TRACE_DIR
    names = sorted(p.name for p in traces.iterdir())
    assert names == sorted(["rapl.package-0.csv", "rapl.package-0.core.csv", "nvml.0.csv", "cpu-model.csv"])
    pkg = [r for r in rows(traces / "rapl.package-0.csv") if r["energy_j"]]
    energies = [float(r["energy_j"]) for r in pkg]
    assert len(energies) > 5 and energies == sorted(energies)
    gpu = rows(traces / "nvml.0.csv")
    flags = [r["flag"] for r in gpu]
    assert "disconnected" in flags and "reconnected" in flags
    assert flags.index("reconnected") > flags.index("disconnected")
    assert any(r["power_w"] and float(r["power_w"]) == pytest.approx(120.0)
               for r in gpu[flags.index("reconnected"):])
    assert rec.summary()["meters"]["nvml"]["faults"].get("disconnected", 0) >= 1
