"""cpu-model: utilisation from a fake /proc/stat, linear model, own energy integral, fit."""

from __future__ import annotations

import math

import pytest

from drivers.base import MeterConfigError, MeterReadError
from drivers.cpu_model import CpuModelMeter, fit_idle_max, lookup_tdp, read_proc_stat, utilisation
from drivers.registry import make_meter


def write_stat(path, user, nice, system, idle, iowait=0, irq=0, softirq=0, steal=0):
    path.write_text(
        f"cpu  {user} {nice} {system} {idle} {iowait} {irq} {softirq} {steal} 0 0\n"
        f"cpu0 {user} {nice} {system} {idle} {iowait} {irq} {softirq} {steal} 0 0\n"
        "intr 12345\n"
    )


class Clock:
    def __init__(self):
        self.ns = 1_000_000_000

    def __call__(self):
        return self.ns

    def tick(self, s):
        self.ns += int(round(s * 1e9))


def test_read_proc_stat_counts_iowait_as_idle(tmp_path):
    p = tmp_path / "stat"
    write_stat(p, 100, 10, 50, 800, iowait=40, irq=5, softirq=5, steal=0)
    busy, total = read_proc_stat(p)
    assert total == 100 + 10 + 50 + 800 + 40 + 5 + 5
    assert busy == total - 840


def test_utilisation_and_backwards():
    assert utilisation((10, 100), (60, 200)) == pytest.approx(0.5)
    assert utilisation((10, 100), (10, 100)) == 0.0
    with pytest.raises(MeterReadError):
        utilisation((10, 100), (5, 90))


def test_model_power_and_energy_integral(tmp_path):
    p = tmp_path / "stat"
    write_stat(p, 0, 0, 0, 1000)
    clock = Clock()
    m = CpuModelMeter(idle_w=20.0, max_w=120.0, stat_path=str(p), clock_ns=clock)
    (ch,) = m.open()
    assert ch.source == "modelled" and ch.scope == "cpu" and ch.primary == "power_w"
    assert "energy_j" in ch.quantities
    # 25 % busy for 2 s -> 45 W, 90 J
    write_stat(p, 50, 0, 0, 1150)
    clock.tick(2.0)
    r = m.read().values["cpu-model"]
    assert r["utilisation"] == pytest.approx(0.25)
    assert r["power_w"] == pytest.approx(45.0)
    assert r["energy_j"] == pytest.approx(90.0)
    # fully busy for 0.5 s -> 120 W, +60 J
    write_stat(p, 100, 0, 0, 1150)
    clock.tick(0.5)
    r = m.read().values["cpu-model"]
    assert r["power_w"] == pytest.approx(120.0)
    assert r["energy_j"] == pytest.approx(150.0)
    # idle for 1 s -> 20 W, +20 J; the counter is cumulative
    write_stat(p, 100, 0, 0, 1250)
    clock.tick(1.0)
    r = m.read().values["cpu-model"]
    assert r["power_w"] == pytest.approx(20.0)
    assert r["energy_j"] == pytest.approx(170.0)


def test_defaults_are_said_loudly(tmp_path):
    p = tmp_path / "stat"
    write_stat(p, 0, 0, 0, 10)
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Mystery CPU 9000\nphysical id\t: 0\n\n"
                    "processor\t: 1\nmodel name\t: Mystery CPU 9000\nphysical id\t: 1\n")
    m = CpuModelMeter(stat_path=str(p), cpuinfo_path=str(info))
    assert m.max_w == pytest.approx(170.0)  # 85 W x 2 sockets, CodeCarbon's unknown-CPU TDP
    assert m.idle_w == pytest.approx(17.0)
    text = " ".join(m.notes)
    assert "MODELLED" in text and "85 W" in text and "idle assumed" in text
    (ch,) = m.open()
    assert set(ch.info["assumed"]) == {"idle_w", "max_w"}


def test_given_values_are_not_assumed(tmp_path):
    p = tmp_path / "stat"
    write_stat(p, 0, 0, 0, 10)
    m = make_meter(f"cpu-model?idle=12&max=95&stat={p}")
    assert (m.idle_w, m.max_w) == (12.0, 95.0)
    assert m.assumed == {}
    assert m.interval_s == 0.5


def test_tdp_lookup_from_codecarbon_table():
    pytest.importorskip("codecarbon")
    tdp, name = lookup_tdp("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz")
    assert (tdp, name) == (65.0, "Intel Core i7-8700")
    assert lookup_tdp("AMD EPYC 7763 64-Core Processor")[0] == 280.0
    assert lookup_tdp("Nothing Known") == (None, None)


def test_bad_options(tmp_path):
    with pytest.raises(MeterConfigError):
        make_meter("cpu-model?idle=50&max=10")
    with pytest.raises(MeterConfigError):
        make_meter("cpu-model?idle=abc")
    with pytest.raises(MeterConfigError, match="unknown option"):
        make_meter("cpu-model?tdp=10")
    m = make_meter(f"cpu-model?stat={tmp_path / 'missing'}&idle=1&max=2")
    with pytest.raises(MeterConfigError, match="stat=PATH"):
        m.open()


def test_fit_idle_max_recovers_line():
    u = [0.0, 0.1, 0.5, 0.8, 1.0]
    w = [30.0 + 90.0 * x for x in u]
    idle, mx = fit_idle_max(u, w)
    assert idle == pytest.approx(30.0) and mx == pytest.approx(120.0)
    # with noise, least squares sits between
    idle, mx = fit_idle_max([0, 0, 1, 1], [29, 31, 119, 121])
    assert (idle, mx) == (pytest.approx(30.0), pytest.approx(120.0))
    with pytest.raises(ValueError):
        fit_idle_max([0.5, 0.5], [10, 12])
    idle, mx = fit_idle_max([0, math.nan, 1], [10, 99, 20])
    assert (idle, mx) == (pytest.approx(10.0), pytest.approx(20.0))


def test_real_proc_stat_if_present():
    import os
    if not os.path.exists("/proc/stat"):
        pytest.skip("no /proc/stat")
    m = make_meter("cpu-model?idle=10&max=100")
    m.open()
    r = m.read().values["cpu-model"]
    assert 10.0 <= r["power_w"] <= 100.0
    assert 0.0 <= r["utilisation"] <= 1.0
