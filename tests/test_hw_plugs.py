"""Tasmota and Shelly drivers against their HTTP simulators on 127.0.0.1."""

from __future__ import annotations

import time

import pytest

from drivers.base import MeterConfigError, MeterDisconnected, MeterReadError
from drivers.registry import make_meter
from drivers.sim.registry import make_simulator
from tests.conftest import unplug_and_replug

CASES = [("tasmota", {}), ("shelly", {"gen": 2}), ("shelly", {"gen": 1})]


@pytest.fixture(params=CASES, ids=["tasmota", "shelly-gen2", "shelly-gen1"])
def sim(request):
    kind, opts = request.param
    s = make_simulator(kind, signal="constant:200", update=0.02, silent_s=0.6, seed=5, **opts)
    s.uri = s.start()
    yield s
    s.stop()


def test_read_values_and_energy_units(sim):
    m = make_meter(sim.uri + ("&" if "?" in sim.uri else "?") + "timeout=0.4")
    (ch,) = m.open()
    assert ch.scope == "wall" and ch.source == "measured"
    time.sleep(0.25)
    v = m.read().values[m.name]
    assert v["power_w"] == pytest.approx(200.0, abs=0.6)
    truth = sim.energy_j()
    # energy in J whatever the wire unit (kWh, Wh, watt-minutes), within the register's step
    assert abs(v["energy_j"] - truth) <= ch.energy_resolution_j + 200.0 * 0.1
    if sim.kind == "shelly" and sim.opts["gen"] == 1:
        assert ch.energy_resolution_j == 60.0 and ch.primary == "power_w"
    elif sim.kind == "shelly":
        assert ch.energy_resolution_j == pytest.approx(3.6) and ch.primary == "energy_j"
        assert v["voltage_v"] == pytest.approx(230.0)
    else:
        assert ch.energy_resolution_j == pytest.approx(3600.0) and v["pf"] == pytest.approx(0.93)


def test_shelly_gen1_total_is_watt_minutes():
    s = make_simulator("shelly", gen=1, signal="constant:600", update=0.01)
    uri = s.start()
    try:
        m = make_meter(uri)
        m.open()
        time.sleep(0.3)  # 600 W for 0.3 s = 180 J = 3 watt-minutes
        e = m.read().values[m.name]["energy_j"]
        assert e == pytest.approx(s.energy_j() // 60 * 60, abs=60)
        assert e >= 60.0  # read as Wh it would be 3 Wh = 10.8 kJ; as J it is 180 J
        assert e < 1000.0
    finally:
        s.stop()


@pytest.mark.parametrize("fault,code", [("garbage", "garbage"), ("partial", "garbage"), ("nan", "nan"),
                                        ("exception", "exception"), ("silent", "timeout"),
                                        # the hostile HTTP faults of the plug simulators
                                        ("endless", "garbage"), ("flood", "garbage"), ("drip", "timeout")])
def test_faults_raise_coded_errors_and_next_read_works(sim, fault, code):
    m = make_meter(sim.uri + ("&" if "?" in sim.uri else "?") + "timeout=0.3")
    m.open()
    setattr(sim.faults, fault, 1.0)
    t0 = time.monotonic()
    with pytest.raises(MeterReadError) as exc:
        m.read()
    assert time.monotonic() - t0 < 0.3 + 0.5  # the timeout is per request, not per recv
    setattr(sim.faults, fault, 0.0)
    assert exc.value.code == code
    assert m.read().values[m.name]["power_w"] == pytest.approx(200.0, abs=0.6)


@pytest.mark.parametrize("wrong,code", [("bool", "garbage"), ("string", "garbage"), ("negative", "range"),
                                        ("nan", "nan"), ("inf", "range")])
def test_wrong_types_are_faults_never_watts(wrong, code):
    for kind, opts in CASES:
        s = make_simulator(kind, signal="constant:200", update=0.02, faults="types:1", wrong=wrong, **opts)
        uri = s.start()
        try:
            m = make_meter(uri)
            with pytest.raises(MeterConfigError, match="no usable reply"):  # at open: retried, then refused
                m.open()
            s.faults.types = 0.0
            m.open()
            s.faults.types = 1.0
            with pytest.raises(MeterReadError) as exc:
                m.read()
            assert exc.value.code == code, (kind, opts, str(exc.value))
        finally:
            s.stop()


def test_open_survives_a_transient_http_500():
    s = make_simulator("tasmota", signal="constant:200", update=0.02, faults="exception:0.5", seed=1)
    uri = s.start()
    try:
        for _ in range(5):  # each open tries up to 3 times: P(all 500) = 1/8, per open
            m = make_meter(uri)
            try:
                m.open()
                break
            except MeterConfigError:
                continue
        else:
            raise AssertionError("no open in 5 went through")
        assert m.channels
    finally:
        s.stop()


def test_simulator_fault_spec():
    s = make_simulator("tasmota", faults="endless:0.1,drip:0.2,flood:0.3,types:0.4,garbage:0.5,drop:5+1")
    assert (s.faults.endless, s.faults.drip, s.faults.flood, s.faults.types, s.faults.garbage) == \
        (0.1, 0.2, 0.3, 0.4, 0.5)
    assert s.faults.drops == [(5.0, 1.0)]
    with pytest.raises(MeterConfigError, match="endless"):
        make_simulator("shelly", faults="bogus:0.1")
    with pytest.raises(MeterConfigError):
        make_simulator("shelly", faults="drip:2")
    with pytest.raises(MeterConfigError, match="wrong"):
        make_simulator("shelly", wrong="maybe")


def test_disappear_and_come_back(sim):
    m = make_meter(sim.uri)
    m.open()
    assert unplug_and_replug(m, sim, 0.4, expect=MeterDisconnected, read_pause_s=0.02) < 2.0
    assert m.read().values[m.name]["power_w"] == pytest.approx(200.0, abs=0.6)


def test_options_checked():
    with pytest.raises(MeterConfigError, match="gen"):
        make_meter("shelly://10.0.0.9?gen=5")
    with pytest.raises(MeterConfigError, match="unknown option"):
        make_meter("tasmota://10.0.0.9?protocol=x")
