"""drivers.probe against the simulators on real ptys."""

from __future__ import annotations

from drivers.probe import list_serial_ports, probe_port, usb_hint
from drivers.sim.pty_port import PtyPort
from drivers.sim.registry import make_simulator


def _probe(kind, **opts):
    s = make_simulator(kind, **opts)
    uri = s.start()
    try:
        port = uri.split(":", 1)[1].split("?")[0]
        return probe_port(port, timeout_s=0.4)
    finally:
        s.stop()


def test_probe_finds_wattsup():
    found = _probe("wattsup", signal="constant:50")
    assert [p for p, _ in found] == ["wattsup"] and found[0][1].startswith("#v")


def test_probe_finds_scpi():
    found = _probe("wt310", signal="constant:50", rate=0.1)
    assert found == [("wt310", "YOKOGAWA,WT310-D-C1,SIM0000001,F1.05")]


def test_probe_finds_modbus_profile():
    found = _probe("sdm630", signal="constant:50", update=0.05)
    names = [p for p, _ in found]
    assert "modbus:sdm630" in names
    ident = dict(found)["modbus:sdm630"]
    assert "SDM630" in ident and "50.0 W" in ident


def test_probe_silent_port_finds_nothing():
    port = PtyPort("ttySILENT")
    try:
        assert probe_port(port.path, timeout_s=0.2) == []
    finally:
        port.close()


def test_hints_and_listing():
    assert "Watts Up" in usb_hint(0x0403, 0x6001)
    assert usb_hint(0x0B21, 0x0025).startswith("Yokogawa")
    assert usb_hint(None, None) is None
    for p in list_serial_ports():
        assert set(p) >= {"device", "usb_id", "manufacturer", "description", "hint"}
