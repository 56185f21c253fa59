"""The Redfish BMC driver against its simulator over real HTTPS on 127.0.0.1."""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calibrate.cli import main
from calibrate.session import Session
from drivers.base import MeterConfigError, MeterError, MeterReadError, Reading
from drivers.redfish import (
    RedfishMeter,
    iso_duration_s,
    load_credentials,
    parse_environment,
    parse_power,
)
from drivers.registry import make_meter
from drivers.sim.registry import make_simulator


@pytest.fixture
def sim():
    s = make_simulator("redfish", signal="constant:200", window=0.2, update=0.05, silent_s=1.0, seed=3)
    s.uri = s.start()
    yield s
    s.stop()


def meter(sim, extra: str = "", timeout: float = 1.0):
    return make_meter(f"{sim.uri}&timeout={timeout}{extra}")


def creds_file(tmp_path: Path, doc: object, mode: int = 0o600, name: str = "c.json") -> str:
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    os.chmod(p, mode)
    return str(p)


def one_line(exc: BaseException, secret: str) -> str:
    msg = str(exc)
    assert "\n" not in msg and secret not in msg
    return msg


# --------------------------------------------------------------------------- readings
def test_power_and_energy_from_environment_metrics(sim):
    m = meter(sim)
    (ch,) = m.open()
    assert (ch.scope, ch.source, ch.quantities) == ("system", "measured", ("power_w", "energy_j"))
    assert ch.window_s == pytest.approx(0.2) and ch.update_interval_s == pytest.approx(0.05)
    assert ch.info["resource"] == "EnvironmentMetrics" and ch.info["tls"] == "verified"
    assert ch.info["serial_number"] == "SIM0001"
    r1 = m.read().values[m.name]
    time.sleep(0.5)
    r2 = m.read().values[m.name]
    assert r2["power_w"] == 200.0
    # kWh with 6 decimals (3.6 J) and updated every 0.05 s: 200 W x 0.5 s = 100 J, within two updates
    assert r2["energy_j"] - r1["energy_j"] == pytest.approx(100.0, abs=2 * 200 * 0.05 + 2 * 3.6 + 30)
    assert sim.password not in json.dumps([m.describe(), ch.to_json(), m.notes])
    m.close()


def test_power_resource_keeps_its_average_interval_apart(sim):
    m = meter(sim, "&source=power")
    (ch,) = m.open()
    assert ch.quantities == ("power_w",) and ch.info["resource"] == "Power"
    # IntervalInMin is the window of AverageConsumedWatts, not of PowerConsumedWatts
    assert ch.info["average_interval_s"] == 60.0 and ch.window_s is None
    assert any("averaging window is unknown" in n for n in m.notes)
    assert m.read().values[m.name] == {"power_w": 200.0}
    m2 = meter(sim, "&source=power&window=2&update=1")
    (ch2,) = m2.open()
    assert (ch2.window_s, ch2.update_interval_s) == (2.0, 1.0)


def test_window_and_update_as_the_bmc_reports_them():
    s = make_simulator("redfish", signal="steps:100,300@0.6", window=0.3, update=0.15)
    uri = s.start()
    try:
        m = make_meter(uri + "&interval=0.05")
        m.open()
        seen = []
        t_end = time.monotonic() + 1.3
        while time.monotonic() < t_end:
            seen.append((time.monotonic(), m.read().values[m.name]["power_w"]))
            time.sleep(0.02)
        t = np.array([a for a, _ in seen])
        p = np.array([b for _, b in seen])
        changes = t[1:][p[1:] != p[:-1]]
        assert len(changes) >= 2
        assert np.all(np.diff(changes) >= 0.15 - 0.05)  # never changes faster than its update period
        assert set(np.unique(p)) - {100.0, 300.0}  # ramp values: the mean over its window
        assert p.min() >= 100.0 and p.max() <= 300.0
    finally:
        s.stop()


def test_session_auth_logs_in_again_once_and_deletes_its_session(sim):
    m = meter(sim, "&auth=session")
    m.open()
    assert sim.logins == 1 and len(sim.sessions) == 1
    sim.sessions.clear()  # the BMC expired the session
    assert m.read().values[m.name]["power_w"] == 200.0
    assert sim.logins == 2
    m.close()
    assert sim.sessions == {} and sim.deleted_sessions == 1
    m.close()  # twice is safe


# --------------------------------------------------------------------------- authentication
@pytest.mark.parametrize("auth", ["basic", "session"])
def test_wrong_password_is_a_one_line_config_error(sim, tmp_path, auth):
    bad = "Wr0ng-" + "x" * 12
    path = creds_file(tmp_path, {"user": "admin", "password": bad})
    m = make_meter(sim.uri.split("&credentials=")[0] + f"&credentials={path}&auth={auth}&timeout=1")
    with pytest.raises(MeterConfigError) as exc:
        m.open()
    msg = one_line(exc.value, bad)
    assert "401" in msg and path in msg and sim.password not in msg


def test_auth_failure_after_open_is_a_coded_read_error(sim):
    m = meter(sim)
    m.open()
    sim.faults.auth = 1.0
    with pytest.raises(MeterReadError) as exc:
        m.read()
    assert exc.value.code == "auth" and sim.password not in str(exc.value)
    sim.faults.auth = 0.0
    assert m.read().values[m.name]["power_w"] == 200.0


def test_secrets_never_in_the_uri(sim):
    for opt in ("user=admin", "password=hunter2", "username=x", "token=y"):
        with pytest.raises(MeterConfigError, match="credentials=PATH") as exc:
            make_meter(f"redfish://10.0.0.9/Chassis/1?{opt}")
        assert "\n" not in str(exc.value) and "hunter2" not in str(exc.value)


def test_credentials_file_is_checked(tmp_path):
    secret = "Sup3r-s3cret-pw"
    ok = creds_file(tmp_path, {"user": "root", "password": secret})
    assert load_credentials(ok) == ("root", secret)
    toml = creds_file(tmp_path, f'user = "root"\npassword = "{secret}"\n', name="c.toml")
    assert load_credentials(toml) == ("root", secret)
    cases = [
        (creds_file(tmp_path, {"user": "root", "password": secret}, mode=0o644, name="open.json"), "chmod 600"),
        (creds_file(tmp_path, {"user": "root", "password": 12345}, name="int.json"), "string"),
        (creds_file(tmp_path, {"user": "root"}, name="nopw.json"), "user and password"),
        (creds_file(tmp_path, {"user": "root", "password": secret + "\r\nX: y"}, name="crlf.json"), "printable"),
        (creds_file(tmp_path, {"user": "root", "password": "x" * 5000}, name="big.json"), "larger"),
        (creds_file(tmp_path, f"password = {secret}", name="bad.toml"), "neither JSON nor TOML"),
        (str(tmp_path / "missing.json"), "missing.json"),
    ]
    for path, match in cases:
        with pytest.raises(MeterConfigError, match=match) as exc:
            load_credentials(path)
        one_line(exc.value, secret)


# --------------------------------------------------------------------------- TLS
def test_certificate_verification_is_on_by_default(sim):
    no_ca = sim.uri.replace(f"ca={sim.folder / 'ca.pem'}&", "")
    assert "ca=" not in no_ca
    with pytest.raises(MeterConfigError, match="not trusted.*ca=PATH") as exc:
        make_meter(no_ca + "&timeout=1").open()
    one_line(exc.value, sim.password)
    m = make_meter(no_ca + "&timeout=1&verify=0")
    (ch,) = m.open()
    assert ch.info["tls"].startswith("NOT verified") and any("NOT verified" in n for n in m.notes)
    assert m.describe()["tls_verified"] is False
    with pytest.raises(MeterConfigError, match="no such file"):
        make_meter("redfish://127.0.0.1/Chassis/1?ca=/nonexistent/ca.pem")


# --------------------------------------------------------------------------- faults
@pytest.mark.parametrize("fault,code", [("exception", "exception"), ("silent", "timeout"),
                                        ("garbage", "garbage"), ("partial", "garbage"), ("nan", "nan")])
def test_faults_raise_coded_errors_and_the_next_read_works(sim, fault, code):
    m = meter(sim, timeout=0.3)
    m.open()
    setattr(sim.faults, fault, 1.0)
    t0 = time.monotonic()
    with pytest.raises(MeterReadError) as exc:
        m.read()
    assert time.monotonic() - t0 < 0.3 + 0.5
    setattr(sim.faults, fault, 0.0)
    assert exc.value.code == code
    assert m.read().values[m.name]["power_w"] == 200.0


def test_stale_value_is_flagged(sim):
    m = meter(sim, "&stale=0.25&interval=0.05")
    m.open()
    assert m.read().flags == {}
    sim.faults.stale = [(sim.now(), 60.0)]  # the BMC stops refreshing: same value, same ReadingTime
    readings = []
    t_end = time.monotonic() + 0.6
    while time.monotonic() < t_end:
        readings.append(m.read())
        time.sleep(0.05)
    assert readings[-1].flags == {m.name: "stale"}
    assert readings[0].flags == {}  # not before stale= has passed
    assert len({json.dumps(r.values) for r in readings}) == 1  # recorded as the BMC gives them
    sim.faults.stale = []
    time.sleep(0.1)
    assert m.read().flags == {}


def test_energy_counter_reset_keeps_energy_monotonic(sim):
    m = meter(sim)
    m.open()
    time.sleep(0.5)
    # a reset is seen as a count below the last one read: read just before it
    e0 = m.read().values[m.name]["energy_j"]
    assert e0 > 60.0
    sim.faults.resets = [sim.now()]
    time.sleep(0.15)
    r = m.read()
    assert "energy_j:reset" in r.flags[m.name] and m.resets == 1
    e1 = r.values[m.name]["energy_j"]
    assert e1 >= e0
    time.sleep(0.3)
    e2 = m.read().values[m.name]["energy_j"]
    assert e2 - e1 == pytest.approx(60.0, abs=35.0)  # 200 W x 0.3 s, counted on from the reset


def test_unreachable_host_is_a_config_error(tmp_path):
    from drivers.sim.modbus_sim import free_port

    m = make_meter(f"redfish://127.0.0.1:{free_port()}/Chassis/1?timeout=0.5")
    with pytest.raises(MeterConfigError, match="cannot reach"):
        m.open()


def test_uri_checked():
    with pytest.raises(MeterConfigError, match="Chassis/ID"):
        make_meter("redfish://10.0.0.9/Systems/1")
    with pytest.raises(MeterConfigError, match="auth"):
        make_meter("redfish://10.0.0.9/Chassis/1?auth=digest")
    with pytest.raises(MeterConfigError, match="source"):
        make_meter("redfish://10.0.0.9/Chassis/1?source=psu")
    with pytest.raises(MeterConfigError, match="unknown option"):
        make_meter("redfish://10.0.0.9/Chassis/1?protocol=x")
    m = make_meter("redfish://[::1]:8443/Chassis/Self")
    assert (m.host, m.port, m.chassis) == ("[::1]", 8443, "Self")
    assert make_meter("redfish://bmc.lab").port == 443
    assert iso_duration_s("PT0.5S") == 0.5 and iso_duration_s("PT1M") == 60.0 and iso_duration_s("P") is None


# --------------------------------------------------------------------------- sessions
def _record(tmp_path, uri: str, seconds: float, marks=None):
    with Session([uri], out=tmp_path / "s") as s:
        time.sleep(seconds)
        for kind, t_ns, phase in marks(s) if marks else ():
            s.mark(kind, t_ns=t_ns, phase=phase)
    return s


def test_secrets_never_reach_the_session_folder(tmp_path):
    s = _record(tmp_path, "sim:redfish?signal=constant:150&window=0.2&update=0.1&interval=0.05&auth=session", 0.6)
    password = s.meters[0].sim.password
    assert len(password) >= 16
    files = [p for p in (tmp_path / "s").rglob("*") if p.is_file()]
    assert files
    for p in files:
        assert password.encode() not in p.read_bytes(), p
    manifest = json.loads((tmp_path / "s" / "session.json").read_text())
    (m,) = manifest["meters"]
    assert m["channels"][0]["window_s"] == 0.2 and m["channels"][0]["update_interval_s"] == 0.1
    assert s.meters[0].sim.deleted_sessions >= 1  # the session was deleted at close


@pytest.mark.xfail(reason="characterize finds new values only where the reading changes: a noiseless held level between edges has none, so no edge has samples before it (analysis.characterize.update_samples); the sim needs reading noise or characterize the raw polls for levels", strict=False)
def test_characterize_recovers_the_update_period(tmp_path):
    """A square wave on the machine clock (edges every 2 s), read through sim:redfish updating
    every 0.25 s over a 0.5 s window; the load edges are marked as phases."""
    half = 2.0
    uri = f"sim:redfish?signal=square:100,300@{2 * half}&timebase=machine&window=0.5&update=0.25&interval=0.05"

    def marks(s):
        t0, t1 = s.start_ns / 1e9, time.monotonic()
        edges = [k * half for k in range(int(t0 // half) + 1, int(t1 // half) + 1)]
        out = []
        for a, b in zip(edges, edges[1:]):
            phase = "high" if round(a / half) % 2 == 0 else "low"
            out += [("phase_start", int(a * 1e9), phase), ("phase_end", int(b * 1e9), phase)]
        return out

    _record(tmp_path, uri, 9.0, marks)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["characterize", str(tmp_path / "s"), "--json"])
    assert rc == 0, err.getvalue()
    (row,) = [r for r in json.loads(out.getvalue()) if r["channel"] == "redfish"]
    assert "error" not in row, row
    assert row["update_period_s"] == pytest.approx(0.25, abs=0.25)
    assert row["n_edges"] >= 2


def test_calibrate_simulate_prints_a_redfish_uri():
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        rc = main(["simulate", "redfish", "--seconds", "0.2"])
    assert rc == 0
    uri = out.getvalue().strip().splitlines()[0]
    assert uri.startswith("redfish://127.0.0.1:") and "ca=" in uri and "credentials=" in uri


def test_simulator_fault_spec():
    s = make_simulator("redfish", faults="auth:0.2,stale:5+3,reset:10;20,exception:0.1")
    assert (s.faults.auth, s.faults.stale, s.faults.resets, s.faults.exception) == (0.2, [(5.0, 3.0)], [10.0, 20.0], 0.1)
    with pytest.raises(MeterConfigError, match="auth, stale, reset"):
        make_simulator("redfish", faults="bogus:1")
    with pytest.raises(MeterConfigError):
        make_simulator("redfish", window=0)


# --------------------------------------------------------------------------- fuzz
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
        st.sampled_from(["PowerControl", "PowerConsumedWatts", "PowerWatts", "Reading", "EnergykWh", "Oem",
                         "ReadingTime", "PowerMetrics", "IntervalInMin", "DataSourceUri", "x"]), kids, max_size=5),
    max_leaves=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=JSON, resource=st.sampled_from(["Power", "EnvironmentMetrics"]))
def test_hostile_documents_raise_only_meter_errors(doc, resource):
    m = RedfishMeter("127.0.0.1", 1, "1")
    m.resource, m.resource_path, m._opened = resource, "/redfish/v1/Chassis/1/" + resource, True
    m._get_json = lambda path: doc  # type: ignore[method-assign]
    for f in (lambda: parse_power(doc, "w"), lambda: parse_environment(doc, "w"), m.read, m.read):
        try:
            r = f()
        except MeterError:
            continue
        vals = r.values[m.name] if isinstance(r, Reading) else r  # parse_* return a dict (it has .values too)
        assert all(isinstance(v, float) and np.isfinite(v) for v in vals.values())
