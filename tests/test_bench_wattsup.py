"""Watts Up? Pro: packet bytes, and the driver against the pty simulator with faults."""

from __future__ import annotations

import time

import pytest

from drivers.base import MeterDisconnected, MeterReadError
from drivers.registry import make_meter
from drivers.sim.wattsup import WattsUpSimulator
from drivers.wattsup import command, parse_data, parse_packet, start_logging


def test_command_bytes() -> None:
    assert start_logging(1) == b"#L,W,3,E,,1;"
    assert command("V", "R") == b"#V,R,0;"
    assert command("R", "W") == b"#R,W,0;"


def test_data_packet_scaling() -> None:
    # a packet as the meter sends it: 12.4 W, 119.1 V, 0.097 A, 0.0 Wh, PF 100 %
    kind, args = parse_packet("#d,-,18,124,1191,97,0,_,_,_,124,_,_,_,_,_,100,_,_,600,_;")
    assert kind == "d"
    f = parse_data(args)
    assert f["W"] == pytest.approx(12.4) and f["V"] == pytest.approx(119.1)
    assert f["A"] == pytest.approx(0.097) and f["WH"] == 0.0
    assert f["PF"] == pytest.approx(1.0) and f["Hz"] == pytest.approx(60.0)
    assert f["Cost"] is None and f["VA"] is None


@pytest.mark.parametrize("bad", ["#d,-,18,1,2;", "d,-,18;", "#d,-,x,1;", "#d,-,18," + ",".join(["zz"] * 18) + ";"])
def test_malformed_packets_are_garbage(bad: str) -> None:
    with pytest.raises(MeterReadError) as exc:
        parse_data(parse_packet(bad)[1])
    assert exc.value.code == "garbage"


def _meter(sim: WattsUpSimulator):
    uri = sim.start()
    m = make_meter(uri)
    m.open()
    return m


def test_simulated_meter_reports_the_signal_and_integrates_energy() -> None:
    sim = WattsUpSimulator(signal="constant:150")
    m = _meter(sim)
    try:
        readings = [m.read() for _ in range(3)]
    finally:
        m.release()
        sim.stop()
    values = [r.values["wattsup"] for r in readings]
    assert all(v["power_w"] == pytest.approx(150.0, abs=0.15) for v in values)
    assert all(v["voltage_v"] == 230.0 for v in values)
    # 150 W / 230 V / PF 0.93 -> 0.701 A
    assert values[-1]["current_a"] == pytest.approx(150 / 230 / 0.93, abs=0.002)
    stamps = [r.t_ns for r in readings]
    assert all(1.0e9 * 0.9 < b - a < 1.0e9 * 1.1 for a, b in zip(stamps, stamps[1:]))


def test_garbage_and_partial_lines_are_errors_and_the_stream_resynchronises() -> None:
    sim = WattsUpSimulator(signal="constant:80", faults="garbage:0.5,partial:0.2", seed=3)
    m = _meter(sim)
    codes, good = [], 0
    try:
        deadline = time.monotonic() + 12
        while good < 3 and time.monotonic() < deadline:
            try:
                v = m.read().values["wattsup"]
                assert v["power_w"] == pytest.approx(80.0, abs=0.15)
                good += 1
            except MeterReadError as exc:
                codes.append(exc.code)
    finally:
        m.release()
        sim.stop()
    assert good == 3
    assert codes and set(codes) <= {"garbage", "nan", "range", "timeout"}


def test_unplugged_meter_disconnects_and_reopens_after_it_returns() -> None:
    sim = WattsUpSimulator(signal="constant:60", faults="drop:1.5+1.5")
    m = _meter(sim)
    try:
        m.read()
        with pytest.raises(MeterDisconnected):
            for _ in range(5):
                m.read()
        back_at = sim.t0 + 3.0
        while time.monotonic() < back_at - 0.1:
            time.sleep(0.1)
        t_open = None
        while time.monotonic() < back_at + 2.0:  # must be back within 2 s of the return
            try:
                m.open()
                t_open = time.monotonic()
                break
            except Exception:
                time.sleep(0.2)
        assert t_open is not None
        assert m.read().values["wattsup"]["power_w"] == pytest.approx(60.0, abs=0.15)
    finally:
        m.release()
        sim.stop()


def test_session_survives_an_unplugged_meter_and_records_the_gap(tmp_path) -> None:
    from analysis.load import load_session
    from calibrate.session import Session

    meter = make_meter("sim:wattsup?signal=constant:100&faults=drop:2.5+2")
    back_ns = int((meter.sim.t0 + 4.5) * 1e9)  # the simulated cable is back 4.5 s after start
    with Session([meter], out=tmp_path / "s"):
        time.sleep(8.5)
    tr = load_session(tmp_path / "s").channels["wattsup"]
    flags = tr.data["flag"].tolist()
    assert flags.count("disconnected") == 1 and flags.count("reconnected") == 1
    reconnected_ns = int(tr.data.loc[tr.data["flag"] == "reconnected", "t_ns"].iloc[0])
    assert 0 <= reconnected_ns - back_ns < 2_000_000_000  # back within 2 s of the return
    ok = tr.ok
    before = ok[ok["t_ns"] < back_ns]
    after = ok[ok["t_ns"] > reconnected_ns]
    assert len(before) >= 1 and len(after) >= 2  # nothing before lost, and the session went on
    assert (ok["power_w"] - 100.0).abs().max() < 0.15


def test_stopping_does_not_wait_for_a_silent_push_meter(tmp_path) -> None:
    from calibrate.session import Session

    meter = make_meter("sim:wattsup?faults=silent:1&interval=5")  # never sends a packet
    s = Session([meter], out=tmp_path / "s").start()
    time.sleep(1.0)
    t0 = time.monotonic()
    s.stop()
    assert time.monotonic() - t0 < 2.0  # not the 15 s read timeout
    text = (tmp_path / "s" / "traces" / "wattsup.csv").read_text()
    assert "timeout" not in text  # a read cut short by the stop is not a meter fault
