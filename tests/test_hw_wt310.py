"""Yokogawa WT310 driver against its SCPI simulator, over a real pty and a real TCP socket."""

from __future__ import annotations

import errno

import pytest

from drivers.base import MeterConfigError, MeterReadError
from drivers.registry import make_meter
from drivers.sim.wt310 import WT310Simulator
from drivers.wt310 import parse_number, parse_values
from tests.conftest import unplug_and_replug


@pytest.fixture(params=["pty", "tcp"])
def sim(request):
    s = WT310Simulator(signal="constant:120", transport=request.param, rate=0.1, seed=1)
    s.uri = s.start()
    yield s
    s.stop()


def _meter(sim, extra="&vrange=300&irange=1"):
    return make_meter(sim.uri + "&interval=0.1" + extra)


def test_open_configures_meter_and_reads_fresh_values(sim):
    m = _meter(sim)
    (ch,) = m.open()
    try:
        assert ch.scope == "wall" and ch.source == "measured"
        assert ch.update_interval_s == 0.1 and ch.window_s == 0.1
        assert ch.info["identity"].startswith("YOKOGAWA,WT310")
        assert ch.info["voltage_range_v"] == 300.0 and ch.info["current_range_a"] == 1.0
        assert ch.primary == "energy_j"
        # the simulator's state is what the driver asked for
        assert (sim.vrange, sim.irange, sim.vauto, sim.iauto) == (300.0, 1.0, False, False)
        assert sim.rate_s == 0.1 and sim.fmt == "ASC" and sim.integ == "STAR"
        assert sim.items[: sim.n_items] == ["U,1", "I,1", "P,1", "S,1", "LAMB,1", "FU,1", "WH,1"]
        before = sim.updates
        r1 = m.read()
        r2 = m.read()
        assert sim.updates >= before + 2  # each read waited for a new update
        v = r2.values[m.name]
        assert v["power_w"] == pytest.approx(120.0, rel=1e-3)
        assert v["voltage_v"] == pytest.approx(230.0)
        assert v["pf"] == pytest.approx(0.93)
        assert v["energy_j"] > r1.values[m.name]["energy_j"] > 0
        assert r2.t_ns is not None and r2.rtt_ns > 0
        d = m.describe()
        assert d["update_rate_s"] == 0.1 and d["ranges"]["voltage_v"] == 300.0
    finally:
        m.close()


def test_ranges_default_to_current_and_note(sim):
    m = _meter(sim, extra="")
    (ch,) = m.open()
    m.close()
    assert sim.vauto is False and sim.iauto is False
    assert ch.info["voltage_range_v"] == 300.0
    assert any("ranges fixed" in n for n in m.notes)


def test_bad_range_option_is_config_error():
    with pytest.raises(MeterConfigError, match="irange"):
        make_meter("serial:/dev/null?protocol=wt310&irange=3")
    with pytest.raises(MeterConfigError, match="rate"):
        make_meter("serial:/dev/null?protocol=wt310&rate=0.3")


def test_unknown_command_queues_scpi_error(sim):
    m = _meter(sim)
    m.open()
    try:
        m._write(":BOGus:COMMand 1")
        assert m.query(":STATus:ERRor?") == '113,"Undefined header"'
        assert m.query(":STATus:ERRor?") == '0,"No error"'
        m._write(":INPut:CURRent:RANGe 1A")  # refused while integrating
        assert m.query(":STAT:ERR?").startswith("813,")
        assert m.query(":INP:CURR:RANG?") == "1.0E+00"
    finally:
        m.close()


def test_over_range_reports_range_never_watts(sim):
    m = _meter(sim, extra="&vrange=300&irange=0.2")  # 120 W at 230 V is 0.56 A > 140 % of 0.2 A
    m.open()
    try:
        with pytest.raises(MeterReadError) as exc:
            m.read()
        assert exc.value.code == "range"
    finally:
        m.close()


@pytest.mark.parametrize("fault,code", [("garbage", "garbage"), ("partial", "garbage"),
                                        ("nan", "nan"), ("silent", "timeout")])
def test_faults_raise_coded_errors_and_next_read_works(sim, fault, code):
    m = _meter(sim)
    m.open()
    try:
        setattr(sim.faults, fault, 1.0)
        with pytest.raises(MeterReadError) as exc:
            m.read()
        assert exc.value.code == code
        setattr(sim.faults, fault, 0.0)
        assert m.read().values[m.name]["power_w"] == pytest.approx(120.0, rel=1e-3)
    finally:
        m.close()


def test_disappear_and_come_back(sim):
    m = _meter(sim)
    m.open()
    assert unplug_and_replug(m, sim, 0.5) < 2.0
    try:
        assert m.read().values[m.name]["power_w"] == pytest.approx(120.0, rel=1e-3)
    finally:
        m.close()


def test_permission_denied_names_dialout(monkeypatch, tmp_path):
    import serial

    port = tmp_path / "ttyUSB9"
    port.touch()

    def deny(*a, **k):
        raise serial.SerialException(errno.EACCES, f"could not open port {port}: Permission denied")

    monkeypatch.setattr(serial, "serial_for_url", deny)
    m = make_meter(f"serial:{port}?protocol=wt310")
    with pytest.raises(MeterConfigError, match="dialout"):
        m.open()


def test_special_values():
    assert parse_number("123.4E+00", "P") == 123.4
    for text, code in (("NAN", "nan"), ("INF", "range"), ("-INF", "range"),
                       ("9.91E+37", "nan"), ("9.9E+37", "range"), ("12x", "garbage")):
        with pytest.raises(MeterReadError) as exc:
            parse_number(text, "P")
        assert exc.value.code == code
    values, bad = parse_values("230.0E+00,NAN,100.0E+00", ("voltage_v", "freq_hz", "power_w"))
    assert values == {"voltage_v": 230.0, "power_w": 100.0} and bad == {"freq_hz": "nan"}


def test_wt210_family_uses_its_own_command_set():
    s = WT310Simulator(signal="constant:90", rate=0.1, model="wt210")
    uri = s.start()
    try:
        m = make_meter(uri + "&interval=0.25&vrange=300&irange=2")
        (ch,) = m.open()
        assert ch.info["family"] == "wt200" and ch.info["identity"].startswith("YOKOGAWA,7604")
        assert (s.vrange, s.irange, s.vauto, s.iauto, s.rate_s) == (300.0, 2.0, False, False, 0.25)
        assert [k for k, on in s.meas_items.items() if on] == ["V", "A", "W", "VA", "PF", "VHZ", "WH"]
        v = m.read().values[m.name]
        assert v["power_w"] == pytest.approx(90.0, rel=1e-3) and v["voltage_v"] == pytest.approx(230.0)
        # WT300 headers are refused in WT200 mode
        assert m.query(":NUMeric:NORMal:VALue?;:STATus:ERRor?") == '113,"Undefined header"'
        s.faults.nan = 1.0  # 9.91E+37 on the wire
        with pytest.raises(MeterReadError) as exc:
            m.read()
        assert exc.value.code == "nan"
        m.close()
    finally:
        s.stop()
