"""HTTP plugs against hostile and broken servers on 127.0.0.1.

A raw TCP server started in each test answers with random bytes, partial or malformed
replies, endless bodies and headers, a slow drip, or wrong JSON types.  Every such read
must raise MeterReadError within the request deadline (plus a margin), never record a
value, keep memory bounded by the reply cap, and leave the meter reading the next good
reply.  At open, a transient bad reply is retried and an unreachable host is a one-line
MeterConfigError (exit code 2 in the CLI).  Every server loop here is bounded (bytes,
seconds, or the client hanging up) and stops with the test.
"""

from __future__ import annotations

import errno
import json
import random
import socket
import threading
import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.load import load_session
from calibrate.cli import main
from calibrate.session import Session
from drivers.base import MeterConfigError, MeterDisconnected, MeterReadError
from drivers.plugs import MAX_REPLY_BYTES, OPEN_ATTEMPTS, OPEN_RETRY_PAUSE_S, TasmotaPlug
from drivers.registry import make_meter
from drivers.sim.registry import make_simulator

TIMEOUT_S = 0.5
MARGIN_S = 0.5
MAX_SEND = 64 * 2**20  # a hostile server stops after this many bytes ...
MAX_SEND_S = 20.0  # ... or seconds, whichever first
BLOCK = b"x" * 65536
GOOD_DOC = {"StatusSNS": {"ENERGY": {"Power": 200, "Total": 1.5, "Voltage": 230, "Current": 0.9}}}


def http(body: bytes, status: str = "200 OK", length: int | None = -1, extra: str = "") -> bytes:
    n = len(body) if length == -1 else length
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}"
    if n is not None:
        head += f"Content-Length: {n}\r\n"
    return (head + "Connection: close\r\n\r\n").encode() + body


def energy(power) -> bytes:
    return http(json.dumps({"StatusSNS": {"ENERGY": {"Power": power, "Total": 1.5}}}).encode())


GOOD = http(json.dumps(GOOD_DOC).encode())


class HostileServer:
    """Answers each connection as ``mode`` says (``script`` first, one mode per connection)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.mode: object = "good"
        self.script: list[object] = []
        self.connections = 0
        self.rng = random.Random(7)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def stop(self) -> None:
        self._stop.set()
        self._accept.join(timeout=2)
        for t in self._threads:
            t.join(timeout=2)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            mode = self.script.pop(0) if self.script else self.mode
            t = threading.Thread(target=self._handle, args=(conn, mode), daemon=True)
            self._threads.append(t)
            t.start()

    # -- bounded writers ---------------------------------------------------------------
    def _send(self, conn: socket.socket, data: bytes) -> bool:
        try:
            conn.sendall(data)
            return True
        except OSError:
            return False

    def _stream(self, conn: socket.socket, head: bytes, block: bytes = BLOCK) -> None:
        t_end, sent = time.monotonic() + MAX_SEND_S, 0
        if not self._send(conn, head):
            return
        while sent < MAX_SEND and time.monotonic() < t_end and not self._stop.is_set():
            if not self._send(conn, block):
                return
            sent += len(block)

    def _drip(self, conn: socket.socket, data: bytes, every_s: float = 0.2) -> None:
        for i in range(len(data)):
            if self._stop.wait(every_s) or not self._send(conn, data[i:i + 1]):
                return

    def _handle(self, conn: socket.socket, mode: object) -> None:
        conn.settimeout(1.0)
        try:
            req = b""
            while b"\r\n\r\n" not in req and len(req) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                req += chunk
            if isinstance(mode, bytes):
                self._send(conn, mode)
            elif mode == "good":
                self._send(conn, GOOD)
            elif mode == "random":
                self._send(conn, self.rng.randbytes(4096))
            elif mode == "close":
                pass
            elif mode == "partial_headers":
                self._send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: appl")
            elif mode == "partial_body":
                self._send(conn, http(json.dumps(GOOD_DOC).encode())[:-20])
            elif mode == "endless":
                self._stream(conn, http(b'{"StatusSNS": ', length=None))
            elif mode == "endless_chunked":
                self._stream(conn, http(b"", length=None, extra="Transfer-Encoding: chunked\r\n"),
                             b"10000\r\n" + BLOCK + b"\r\n")
            elif mode == "huge_length":
                self._stream(conn, http(b"", length=10**12))
            elif mode == "header_flood":
                self._stream(conn, b"HTTP/1.1 200 OK\r\n", b"X-A: b\r\n" * 8192)
            elif mode == "header_line":
                self._stream(conn, b"HTTP/1.1 200 OK\r\nX-A: ")
            elif mode == "continue_flood":
                self._stream(conn, b"", b"HTTP/1.1 100 Continue\r\n\r\n" * 2048)
            elif mode == "drip_body":
                data = GOOD
                head = data.index(b"\r\n\r\n") + 4
                if self._send(conn, data[:head]):
                    self._drip(conn, data[head:])
            elif mode == "drip_status":
                self._drip(conn, GOOD)
            elif mode == "silent":
                self._stop.wait(MAX_SEND_S)
        except OSError:
            pass
        finally:
            conn.close()


@pytest.fixture
def server():
    s = HostileServer()
    yield s
    s.stop()


@pytest.fixture
def plug(server):
    m = TasmotaPlug("127.0.0.1", server.port, timeout_s=TIMEOUT_S)
    m.open()
    yield m
    m.close()


HOSTILE = [
    ("random", None),
    ("close", "garbage"),
    ("partial_headers", "garbage"),
    ("partial_body", "garbage"),
    ("endless", "garbage"),
    ("endless_chunked", "garbage"),
    ("huge_length", "garbage"),
    ("header_flood", "garbage"),
    ("header_line", "garbage"),
    ("continue_flood", "garbage"),
    ("drip_body", "timeout"),
    ("drip_status", "timeout"),
    ("silent", "timeout"),
    (http(b"oops", status="500 Internal Server Error"), "exception"),
    (http(b"<html>not json</html>"), "garbage"),
    (http(b"{}" * 10), "garbage"),
    (http(b"[" * 30000), "garbage"),  # nesting past the recursion limit
    (http(b'{"StatusSNS": {"ENERGY": "x"}}'), "garbage"),
    (http(b'{"StatusSNS": {"ENERGY": {"Power": 1' + b"0" * 5000 + b"}}}"), "garbage"),  # int too long
    (http(b'{"StatusSNS": {"ENERGY": {"Power": 1e400}}}'), "range"),
    (energy(True), "garbage"),
    (energy(False), "garbage"),
    (energy("200"), "garbage"),
    (energy([True]), "garbage"),
    (energy({"v": 200}), "garbage"),
    (energy(None), "nan"),
    (energy([]), "nan"),
    (energy(float("nan")), "nan"),
    (energy(float("inf")), "range"),
    (energy(-50), "range"),
    (energy(2e5), "range"),
    (http(json.dumps({"StatusSNS": {"ENERGY": {"Power": 200, "Total": -1}}}).encode()), "range"),
    (http(json.dumps({"StatusSNS": {"ENERGY": {"Power": 200, "Voltage": "230"}}}).encode()), "garbage"),
]


def _id(case) -> str:
    mode = case[0]
    return mode if isinstance(mode, str) else mode.split(b"\r\n\r\n", 1)[-1][:24].decode(errors="replace")


@pytest.mark.parametrize("mode,code", HOSTILE, ids=[_id(c) for c in HOSTILE])
def test_hostile_reply_is_a_bounded_read_error_and_the_next_reply_reads(server, plug, mode, code):
    server.mode = mode
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(MeterReadError) as exc:
            plug.read()
        elapsed = time.monotonic() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < TIMEOUT_S + MARGIN_S, f"{elapsed:.2f} s"
    assert peak < 8 * MAX_REPLY_BYTES, f"{peak} bytes held while reading"
    if code is not None:
        assert exc.value.code == code, str(exc.value)
    assert "\n" not in str(exc.value)
    server.mode = "good"
    v = plug.read().values[plug.name]
    assert v["power_w"] == 200.0 and v["energy_j"] == pytest.approx(1.5 * 3.6e6)


def test_negative_power_within_the_tolerance_is_kept(server, plug):
    server.mode = energy(-0.4)
    assert plug.read().values[plug.name]["power_w"] == -0.4


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=3000) | st.builds(lambda b: http(b), st.binary(max_size=2000)))
def test_fuzzed_replies_never_escape_as_other_errors(server, plug, reply):
    server.mode = reply
    t0 = time.monotonic()
    try:
        v = plug.read().values[plug.name]
    except MeterReadError:
        pass
    else:  # a random reply that happens to be valid must still be a plausible number
        assert isinstance(v["power_w"], float) and -2.0 <= v["power_w"] <= 1e5
    assert time.monotonic() - t0 < TIMEOUT_S + MARGIN_S


JSON = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                    max_leaves=8)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(JSON)
def test_fuzzed_power_values_are_numbers_or_faults(server, plug, value):
    server.mode = http(json.dumps({"StatusSNS": {"ENERGY": {"Power": value, "Total": 1.0}}}).encode())
    try:
        p = plug.read().values[plug.name]["power_w"]
    except MeterReadError as exc:
        assert exc.code in ("garbage", "nan", "range")
        return
    first = value[0] if isinstance(value, list) else value
    assert not isinstance(first, bool) and isinstance(first, (int, float))
    assert p == float(first)


# -- open ------------------------------------------------------------------------------

def test_open_retries_a_transient_bad_reply(server):
    server.script = [http(b"busy", status="500 Internal Server Error"), http(b"<html>"), "good"]
    m = TasmotaPlug("127.0.0.1", server.port, timeout_s=TIMEOUT_S)
    (ch,) = m.open()
    assert server.connections == 3 and ch.quantities[0] == "power_w"
    assert m.read().values[m.name]["power_w"] == 200.0


def test_open_gives_up_on_a_bad_plug_in_bounded_time(server):
    server.mode = "silent"
    m = TasmotaPlug("127.0.0.1", server.port, timeout_s=TIMEOUT_S)
    t0 = time.monotonic()
    with pytest.raises(MeterConfigError, match="127.0.0.1") as exc:
        m.open()
    assert time.monotonic() - t0 < OPEN_ATTEMPTS * (TIMEOUT_S + OPEN_RETRY_PAUSE_S) + MARGIN_S
    assert "\n" not in str(exc.value) and server.connections == OPEN_ATTEMPTS


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("uri", ["tasmota://127.0.0.1:{port}", "shelly://127.0.0.1:{port}?gen=1",
                                 "shelly://127.0.0.1:{port}"])
def test_refused_at_start_is_a_config_error(uri):
    m = make_meter(uri.format(port=_closed_port()))
    t0 = time.monotonic()
    with pytest.raises(MeterConfigError) as exc:
        m.open()
    text = str(exc.value)
    assert time.monotonic() - t0 < 1.0
    assert "127.0.0.1" in text and "cannot reach" in text and "check" in text and "\n" not in text
    assert not isinstance(exc.value, MeterDisconnected)


def test_unknown_host_at_start_is_a_config_error(monkeypatch):
    def no_such_host(*a, **k):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    with pytest.raises(MeterConfigError, match="plug.example.*cannot resolve"):
        make_meter("tasmota://plug.example").open()


def test_no_route_at_start_is_a_config_error(monkeypatch):
    def no_route(self, addr):
        raise OSError(errno.EHOSTUNREACH, "No route to host")

    monkeypatch.setattr(socket.socket, "connect", no_route)
    with pytest.raises(MeterConfigError, match="No route to host"):
        make_meter("tasmota://127.0.0.1:8080").open()


def test_refused_after_a_good_open_is_a_disconnect(server):
    m = TasmotaPlug("127.0.0.1", server.port, timeout_s=TIMEOUT_S)
    m.open()
    server.stop()
    with pytest.raises(MeterDisconnected):
        m.read()
    with pytest.raises(MeterDisconnected):  # the recorder's reopen: not a config error now
        m.open()


@pytest.mark.parametrize("uri", ["tasmota://127.0.0.1:{port}", "modbus-tcp://127.0.0.1:{port}?profile=sdm630"])
def test_cli_unreachable_at_start_exits_2(uri, tmp_path, capsys):
    rc = main(["run", "--meter", uri.format(port=_closed_port()), "--workload", "idle", "--duration", "1",
               "--baseline", "0", "--no-report", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("calibrate: error")]
    assert len(lines) == 1 and "127.0.0.1" in lines[0] and "check" in lines[0], err
    assert "Traceback" not in err and "MeterDisconnected" not in err


# -- a recorded session against a faulty plug simulator --------------------------------

def test_session_against_a_faulty_plug_completes_and_flags_faults(tmp_path):
    sim = make_simulator("tasmota", signal="constant:200", update=0.02, seed=11, drip_s=0.2, wrong="bool",
                         endless_bytes=8 * 2**20)
    uri = sim.start()
    try:
        t0 = time.monotonic()
        with Session([f"{uri}?timeout=0.3&interval=0.1&name=plug"], out=tmp_path / "s"):
            f = sim.faults
            f.exception, f.garbage, f.partial, f.types, f.endless, f.flood, f.drip = \
                0.1, 0.08, 0.05, 0.15, 0.05, 0.05, 0.05
            time.sleep(3.0)
        assert time.monotonic() - t0 < 3.0 + 2.0
    finally:
        sim.stop()
    data = load_session(tmp_path / "s")
    assert data.status == "complete"
    ch = data.channels["plug"]
    faults = ch.faults
    assert sum(faults.values()) >= 3, faults
    assert set(faults) <= {"exception", "garbage", "timeout", "nan", "range"}, faults
    ok = ch.ok
    assert len(ok) >= 3 and len(ok) + sum(faults.values()) >= 8, (len(ok), faults)
    # nothing but the simulator's 200 W was recorded as power: not true -> 1.0 W
    assert set(ok["power_w"].round(6)) == {200.0}
