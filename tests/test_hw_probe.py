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


# -- one model, a ready URI, any transport (issue: SDM120 reported as SDM230, SDM630 twice) --
def _probe_target(kind, make_target, **opts):
    from drivers.registry import make_meter

    s = make_simulator(kind, **opts)
    uri = s.start()
    try:
        found = probe_port(make_target(uri), timeout_s=0.4)
        assert len(found) == 1, found
        m = make_meter(found[0].uri)  # the URI it prints reads the meter
        try:
            m.open()
            assert m.read().values[m.name]["power_w"] >= 0
        finally:
            m.close()
        return found[0]
    finally:
        s.stop()


def _path(uri):
    return uri.split(":", 1)[1].split("?")[0]


def test_probe_names_one_sdm_model_each():
    for model in ("sdm120", "sdm230", "sdm630"):
        f = _probe_target(model, _path, signal="constant:50", update=0.05)
        assert f.protocol == f"modbus:{model}", (model, f)
        assert f"profile={model}" in f.uri and f.uri.startswith("modbus:") and f.note


def test_probe_zero_watts_still_one_model():
    f = _probe_target("sdm630", lambda u: "serial:" + _path(u), signal="constant:0", update=0.05)
    assert f.protocol == "modbus:sdm630" and "0.0 W" in f.identity


def test_probe_modbus_tcp_and_socket_targets():
    f = _probe_target("sdm630", lambda u: u.split("?")[0], signal="constant:50", update=0.05, transport="tcp")
    assert f.protocol == "modbus:sdm630" and f.uri.startswith("modbus-tcp://127.0.0.1:")
    f = _probe_target("sdm120", lambda u: u.split("?")[0].split("://")[1], signal="constant:50",
                      update=0.05, transport="tcp")  # bare HOST:PORT
    assert f.protocol == "modbus:sdm120" and "SDM230" in f.note  # ambiguity said, one model named


def test_probe_wt310_over_socket_and_serial_prefix():
    f = _probe_target("wt310", lambda u: u.split("?")[0], signal="constant:50", rate=0.1, transport="tcp")
    assert f == ("wt310", "YOKOGAWA,WT310-D-C1,SIM0000001,F1.05") and f.uri.startswith("tcp://127.0.0.1:")
    f = _probe_target("wattsup", lambda u: u.split("?")[0], signal="constant:50")
    assert f.protocol == "wattsup" and f.uri.endswith("?protocol=wattsup")


def test_probe_identity_is_stripped_of_escapes():
    import threading

    port = PtyPort("ttyEVIL")
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            if b"*IDN?" in port.read(0.05):
                port.write(b"YOKOGAWA,\x1b]0;pwned\x07WT310\x1b[2J\x1b[31m,\x08\x08X1\x9b,F1\r\n")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        found = probe_port(port.path, timeout_s=0.4)
    finally:
        stop.set()
        t.join(2)
        port.close()
    assert found and found[0].protocol == "wt310"
    ident = found[0].identity
    assert ident == "YOKOGAWA,WT310,X1,F1"
    assert all(c.isprintable() for c in ident)
