"""Tasmota and Shelly smart-plug simulators: ``http.server`` on 127.0.0.1, a random port.

They serve the same JSON as the firmware (Tasmota ``/cm?cmnd=Status 8``; Shelly Gen2
``/rpc/Switch.GetStatus?id=0`` and Gen1 ``/meter/0`` with ``total`` in watt-minutes),
with the firmware's rounding (Tasmota: whole watts, kWh with 3 decimals; Shelly Gen2: W with
1 decimal, Wh with 3 decimals; Gen1: whole watt-minutes).  Values refresh every ``update``
s (1 s like the firmware).  Faults: ``garbage`` (not JSON), ``partial`` (JSON cut short),
``nan`` (power is null), ``silent`` (the reply is held back past the client's timeout),
``exception`` (HTTP 500), ``drop`` (the server stops listening, then comes back), and the
hostile HTTP ones only these simulators know (:class:`PlugFaultPlan`):

* ``endless:P``  a 200 reply whose body never ends (no Content-Length; it stops after
  option ``endless_bytes``, when the client hangs up, or when the simulator stops)
* ``drip:P``     the reply's body is sent one byte every ``drip_s`` s (option, 0.5 s)
* ``flood:P``    a status line followed by an endless header (no line break), bounded
  like ``endless``
* ``types:P``    power has a wrong type or value: option ``wrong`` picks one of bool
  (``true``), string (``"200"``), negative (-50 W), nan (``NaN``), inf (``Infinity``), or
  ``any`` (the default: drawn each time)

e.g. ``calibrate simulate tasmota --faults exception:0.2,types:0.1,drip:0.05``.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from drivers.base import MeterConfigError
from drivers.sim.faults import FaultPlan
from drivers.sim.modbus_sim import free_port
from drivers.sim.simulator import Simulator

VOLTS = 230.0
HZ = 50.0
#: the wrong values fault ``types`` puts in place of power (option ``wrong``)
WRONG_VALUES: dict[str, Any] = {"bool": True, "string": "200", "negative": -50.0,
                                "nan": float("nan"), "inf": float("inf")}
_PLUG_FAULTS = ("endless", "drip", "flood", "types")


@dataclass
class PlugFaultPlan(FaultPlan):
    """The common fault plan plus the hostile HTTP faults of the plug simulators."""

    endless: float = 0.0
    drip: float = 0.0
    flood: float = 0.0
    types: float = 0.0

    EXTRA_PROBS = _PLUG_FAULTS


class _PlugSimulator(Simulator):
    options: dict[str, Any] = {"update": 1.0, "pf": 0.93, "silent_s": 3.0, "drip_s": 0.5,
                               "endless_bytes": 256 * 2**20, "wrong": "any"}
    scheme = "plug"
    fault_plan = PlugFaultPlan
    faults: PlugFaultPlan

    def __init__(self, signal: Any = None, faults: str | FaultPlan | None = None,
                 seed: int | None = None, **opts: Any) -> None:
        super().__init__(signal=signal, faults=faults, seed=seed, **opts)
        if self.opts["wrong"] != "any" and self.opts["wrong"] not in WRONG_VALUES:
            raise MeterConfigError(f"sim:{self.kind}: wrong={self.opts['wrong']!r}; use any, "
                                   f"{', '.join(WRONG_VALUES)}")

    def wrong_power(self) -> Any:
        """The value fault ``types`` reports as power."""
        pick = str(self.opts["wrong"])
        if pick == "any":
            pick = self.faults.rng.choice(sorted(WRONG_VALUES))
        return WRONG_VALUES[pick]

    def snapshot(self) -> tuple[float, float]:
        """(power W averaged over the last refresh period, energy J) at the last refresh."""
        t = self.now()
        with self._snap_lock:
            if t >= self._next or self._snap is None:
                e = self.energy_j()
                t = self._last_t  # the integrator's own time of e
                p = (e - self._e_last) / (t - self._t_last) if t > self._t_last else self.power_w()
                self._e_last, self._t_last, self._next = e, t, t + float(self.opts["update"])
                self._snap = (p, e)
            return self._snap

    def document(self, path: str, query: dict[str, list[str]]) -> Any:
        raise NotImplementedError

    def start(self) -> str:
        self._snap_lock = threading.Lock()
        self._snap: tuple[float, float] | None = None
        self._next = 0.0
        self._e_last = self.energy_j()
        self._t_last = self._last_t
        self._stop = threading.Event()
        self.port_no = free_port()
        self.httpd: ThreadingHTTPServer | None = None
        self._serve()
        self._watch = threading.Thread(target=self._watch_drops, name=f"sim-{self.kind}-drops", daemon=True)
        self._watch.start()
        return self.uri()

    def uri(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port_no}"

    def _serve(self) -> None:
        sim = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                url = urlparse(self.path)
                try:
                    doc = sim.document(url.path, parse_qs(url.query))
                except KeyError:
                    self.send_error(404)
                    return
                if sim.faults.hit("exception"):
                    self.send_error(500)
                    return
                if sim.faults.hit("silent"):
                    sim._stop.wait(float(sim.opts["silent_s"]))
                if sim.faults.hit("endless"):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()  # no Content-Length: the body ends when the connection does
                    self._stream(b'{"StatusSNS": ', b" " * 65536)
                    return
                if sim.faults.hit("flood"):
                    self._stream(b"HTTP/1.0 200 OK\r\nX-Flood: ", b"x" * 65536)
                    return
                body = json.dumps(doc).encode()
                if sim.faults.hit("garbage"):
                    body = sim.faults.garbage_bytes(len(body))
                elif sim.faults.hit("partial"):
                    body = body[: len(body) // 2]
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    if sim.faults.hit("drip"):
                        self.wfile.flush()
                        for i in range(len(body)):  # bounded by the body; ends with the simulator
                            if sim._stop.wait(float(sim.opts["drip_s"])):
                                return
                            self.wfile.write(body[i:i + 1])
                            self.wfile.flush()
                        return
                    self.wfile.write(body)
                except OSError:
                    pass

            def _stream(self, head: bytes, block: bytes) -> None:
                """Write ``head``, then ``block`` over and over: until endless_bytes, the client
                hangs up or the simulator stops."""
                sent, cap = 0, int(sim.opts["endless_bytes"])
                try:
                    self.wfile.write(head)
                    while sent < cap and not sim._stop.is_set():
                        self.wfile.write(block)
                        sent += len(block)
                except OSError:
                    pass
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port_no), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"sim-{self.kind}", daemon=True)
        self._thread.start()

    def _shutdown(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self._thread.join(timeout=2)
            self.httpd = None

    def _watch_drops(self) -> None:
        while not self._stop.wait(0.02):
            gone = self.faults.dropped(self.now())
            if gone and self.httpd is not None:
                self._shutdown()
            elif not gone and self.httpd is None:
                try:
                    self._serve()
                except OSError:
                    time.sleep(0.05)

    def stop(self) -> None:
        if hasattr(self, "_stop"):
            self._stop.set()
            self._watch.join(timeout=2)
            self._shutdown()


class TasmotaSimulator(_PlugSimulator):
    kind = "tasmota"
    scheme = "tasmota"

    def document(self, path: str, query: dict[str, list[str]]) -> Any:
        cmnd = " ".join(query.get("cmnd", [""])).strip().lower()
        if path != "/cm" or cmnd not in ("status 8", "status 10"):
            if path == "/cm":
                return {"Command": "Unknown"}
            raise KeyError(path)
        p, e = self.snapshot()
        pf = float(self.opts["pf"])
        amps = p / (VOLTS * pf)
        power: Any = None if self.faults.hit("nan") else round(p)
        if self.faults.hit("types"):
            power = self.wrong_power()
        return {"StatusSNS": {"Time": time.strftime("%Y-%m-%dT%H:%M:%S"), "ENERGY": {
            "TotalStartTime": "2024-01-01T00:00:00", "Total": round(e / 3.6e6, 3), "Yesterday": 0.0,
            "Today": round(e / 3.6e6, 3), "Power": power, "ApparentPower": round(VOLTS * amps),
            "ReactivePower": round(VOLTS * amps * math.sqrt(1 - pf * pf)), "Factor": round(pf, 2),
            "Voltage": round(VOLTS), "Current": round(amps, 3)}}}


class ShellySimulator(_PlugSimulator):
    kind = "shelly"
    scheme = "shelly"
    options = {**_PlugSimulator.options, "gen": 2}

    def uri(self) -> str:
        return f"shelly://127.0.0.1:{self.port_no}?gen={int(self.opts['gen'])}"

    def document(self, path: str, query: dict[str, list[str]]) -> Any:
        p, e = self.snapshot()
        pf = float(self.opts["pf"])
        nan = self.faults.hit("nan")
        wrong = self.faults.hit("types")
        power: Any = self.wrong_power() if wrong else None  # None: the nan fault's null
        if int(self.opts["gen"]) == 1:
            if path != "/meter/0":
                raise KeyError(path)
            return {"power": power if nan or wrong else round(p, 2), "overpower": 0.0, "is_valid": True,
                    "timestamp": int(time.time()), "counters": [0.0, 0.0, 0.0], "total": int(e / 60.0)}
        if path != "/rpc/Switch.GetStatus" or query.get("id", ["0"])[0] != "0":
            raise KeyError(path)
        return {"id": 0, "source": "init", "output": True, "apower": power if nan or wrong else round(p, 1),
                "voltage": round(VOLTS, 1), "freq": HZ, "current": round(p / (VOLTS * pf), 3), "pf": round(pf, 2),
                "aenergy": {"total": round(e / 3600.0, 3), "by_minute": [0.0, 0.0, 0.0],
                            "minute_ts": int(time.time())},
                "temperature": {"tC": 40.0, "tF": 104.0}}
