"""codecarbon: component channels, measured/modelled from CodeCarbon's hardware, flags; offline."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest

from drivers.base import MeterConfigError, MeterReadError
from drivers.codecarbon_meter import CodeCarbonMeter, component_sources
from drivers.registry import make_meter


class CPU:
    def __init__(self, mode):
        self._mode = mode

    def description(self):
        return f"CPU({self._mode})"


class GPU:
    def description(self):
        return "GPU(NVIDIA A100)"


class RAM:
    def description(self):
        return "RAM()"


class FakeTracker:
    """Stands in for OfflineEmissionsTracker: start/stop, _hardware, calls the handler."""

    def __init__(self, handler, hardware):
        self.handler, self._hardware = handler, hardware
        self.started = self.stopped = False

    def start(self):
        self.started = True

    def stop(self):
        self.stopped = True

    def step(self, cpu, gpu, ram):  # cumulative kWh
        total = SimpleNamespace(cpu_energy=cpu, gpu_energy=gpu, ram_energy=ram,
                                energy_consumed=cpu + gpu + ram, cpu_power=0, gpu_power=0, ram_power=0)
        self.handler.live_out(total, total)


def fake_meter(hardware):
    holder = {}

    def factory(handler):
        holder["t"] = FakeTracker(handler, hardware)
        return holder["t"]

    m = CodeCarbonMeter(measure_power_secs=1.0, tracker_factory=factory)
    return m, holder


def test_sources_from_codecarbon_hardware():
    src = component_sources([RAM(), CPU("intel_rapl"), GPU()])
    assert src["cpu"][0] == "measured" and src["gpu"][0] == "measured" and src["ram"][0] == "modelled"
    assert component_sources([CPU("constant")])["cpu"][0] == "modelled"
    assert component_sources([CPU("cpu_load")])["cpu"][0] == "modelled"


def test_channels_energy_and_power():
    m, h = fake_meter([RAM(), CPU("intel_rapl"), GPU()])
    chans = {c.id: c for c in m.open()}
    assert list(chans) == ["codecarbon.cpu", "codecarbon.gpu", "codecarbon.ram", "codecarbon.total"]
    assert chans["codecarbon.cpu"].source == "measured"
    assert chans["codecarbon.ram"].source == "modelled"
    assert chans["codecarbon.total"].source == "modelled"  # RAM is modelled
    assert all(c.primary == "energy_j" for c in chans.values())
    t = h["t"]
    assert t.started
    t.step(0.0, 0.0, 0.0)
    r0 = m.read()
    assert r0.t_ns is not None and r0.values["codecarbon.cpu"] == {"energy_j": 0.0}
    t.step(1e-3, 2e-3, 0.5e-3)
    r1 = m.read()
    assert r1.values["codecarbon.cpu"]["energy_j"] == pytest.approx(3600.0)
    assert r1.values["codecarbon.gpu"]["energy_j"] == pytest.approx(7200.0)
    assert r1.values["codecarbon.total"]["energy_j"] == pytest.approx(12600.0)
    dt = (r1.t_ns - r0.t_ns) / 1e9
    assert r1.values["codecarbon.ram"]["power_w"] == pytest.approx(1800.0 / dt)
    assert r1.flags == {}
    m.close()
    assert t.stopped


def test_negative_and_non_monotonic_are_flagged():
    m, h = fake_meter([RAM(), CPU("intel_rapl")])
    m.open()
    t = h["t"]
    t.step(2e-3, 0.0, 1e-3)
    m.read()
    t.step(1e-3, 0.0, 2e-3)  # CPU went backwards (unwrapped RAPL gone wrong, #1309)
    r = m.read()
    assert r.flags["codecarbon.cpu"] == "non-monotonic"
    assert "codecarbon.ram" not in r.flags
    t.step(-1e-3, 0.0, 3e-3)
    assert m.read().flags["codecarbon.cpu"] == "negative"
    assert any("non-monotonic" in n for n in m.notes) and any("negative" in n for n in m.notes)


def test_no_gpu_means_no_gpu_channel_not_zero():
    m, _ = fake_meter([RAM(), CPU("constant")])
    ids = [c.id for c in m.open()]
    assert "codecarbon.gpu" not in ids
    assert any("no GPU" in n for n in m.notes)
    assert any("codecarbon.cpu: MODELLED" in n for n in m.notes)


def test_read_times_out_without_steps():
    m, _ = fake_meter([RAM()])
    assert m.read_timeout_s == 3.0
    m.open()
    m.read_timeout_s = 0.05  # nothing is pushed: read gives up
    with pytest.raises(MeterReadError) as exc:
        m.read()
    assert exc.value.code == "timeout"


def test_uri_options():
    with pytest.raises(MeterConfigError):
        make_meter("codecarbon?measure_power_secs=0.1")
    with pytest.raises(MeterConfigError):
        make_meter("codecarbon?measure_power_secs=2&interval=3")
    with pytest.raises(MeterConfigError, match="unknown option"):
        make_meter("codecarbon?mode=x")
    m = make_meter("codecarbon?country=deu&interval=2")
    assert m.country == "DEU" and m.measure_power_secs == 2.0


def test_real_codecarbon_offline(tmp_path, monkeypatch):
    pytest.importorskip("codecarbon")
    monkeypatch.chdir(tmp_path)
    real_connect = socket.socket.connect

    def local_only(self, address):
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"network access to {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", local_only)
    m = make_meter("codecarbon?measure_power_secs=0.5&country=FRA")
    with pytest.raises(MeterConfigError, match="country"):
        make_meter("codecarbon?country=XYZ").open()
    chans = m.open()
    try:
        ids = [c.id for c in chans]
        assert "codecarbon.cpu" in ids and "codecarbon.ram" in ids and ids[-1] == "codecarbon.total"
        assert {c.id: c.source for c in chans}["codecarbon.ram"] == "modelled"
        e = [m.read().values["codecarbon.total"]["energy_j"] for _ in range(3)]
        assert e[0] <= e[1] <= e[2] and e[2] > 0
    finally:
        m.close()
    assert not list(tmp_path.iterdir())  # no emissions.csv or lock files written
