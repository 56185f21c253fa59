"""Smart plugs over their local HTTP API (stdlib http.client, no cloud).

* ``tasmota://HOST[:PORT]`` -- ``GET /cm?cmnd=Status%208`` -> ``StatusSNS.ENERGY`` with
  ``Power`` (W), ``Voltage`` (V), ``Current`` (A), ``Factor`` and ``Total`` (kWh).  Tasmota
  reports power in 1 W steps and refreshes its energy values about once a second.
  Option ``user``/``password`` for a web password.
* ``shelly://HOST[:PORT]?gen=2`` (default) -- Gen2+ RPC ``GET /rpc/Switch.GetStatus?id=0``
  -> ``apower`` (W), ``voltage``, ``current``, ``pf`` (when present), ``aenergy.total`` (Wh).
  ``gen=1`` -- ``GET /meter/0`` -> ``power`` (W) and ``total`` in **watt-minutes**
  (Gen1's unit; 1 Wmin = 60 J), which public code often mistakes for Wh.
  Option ``channel`` picks another relay/meter id.

Energy counters: Tasmota ``Total`` has 3 decimals of kWh (3.6 kJ steps, at best), Shelly
Gen2 ``aenergy.total`` 3 decimals of Wh (3.6 J), Gen1 ``total`` whole watt-minutes (60 J).
The coarse ones leave power as the primary reading.

Every request has an overall deadline (``timeout``, s: connect, send, status line, headers
and body together) and a size cap (:data:`MAX_REPLY_BYTES`, headers and body together), so
a plug (or anything answering on its port) that drips, floods or never ends its reply
costs one flagged poll, never a stalled session or a growing recorder.  Values must be JSON
numbers: ``true``, ``"200"``, ``null``, NaN, infinities and negative power beyond
:data:`NEGATIVE_TOLERANCE_W` are faults (``MeterReadError`` codes garbage, nan, range),
never recorded as watts.  At open, a transient bad reply (HTTP 500, not JSON) is retried
a few times within a bounded time; a host that cannot be reached at the first open
(connection refused, no route, unknown name) is a :class:`MeterConfigError` that names
the host and the fix.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from drivers.base import (
    Channel,
    Meter,
    MeterConfigError,
    MeterDisconnected,
    MeterError,
    MeterReadError,
    Reading,
)
from drivers.http_transport import (
    MAX_REPLY_BYTES,
    Unreachable,
    build_request,
    fetch,
    json_number,
    resolve,
)

COARSE_ENERGY_J = 10.0
# the most bytes one reply may have: MAX_REPLY_BYTES (a Tasmota ``Status 8`` or a Shelly
# ``Switch.GetStatus`` reply is well under 1 KiB)
#: negative power down to this (W) is measurement noise around 0 W and kept; below it the
#: reading is a "range" fault
NEGATIVE_TOLERANCE_W = 2.0
#: the most power a plug can plausibly report (W)
MAX_POWER_W = 1e5
#: the first open tries this many times, OPEN_RETRY_PAUSE_S apart, before giving up
OPEN_ATTEMPTS = 3
OPEN_RETRY_PAUSE_S = 0.3


class HttpPlug(Meter):
    """Base of the HTTP plug drivers: one GET per poll, JSON decoded into one channel."""

    kind = "plug"
    default_interval_s = 1.0
    min_interval_s = 0.05  # an HTTP round trip to an ESP; polling faster than update_interval_s repeats values
    path = "/"
    energy_resolution_j: float | None = None
    update_interval_s: float | None = 1.0
    model = "smart plug"

    def __init__(self, host: str, port: int | None = None, name: str | None = None,
                 interval_s: float | None = None, timeout_s: float = 2.0,
                 user: str | None = None, password: str | None = None) -> None:
        super().__init__(name, interval_s)
        if not host or any(c.isspace() or ord(c) < 32 or c in "/?#@" for c in host):
            raise MeterConfigError(f"{self.kind}://{host}: not a host name or IP address")
        if not (math.isfinite(timeout_s) and 0 < timeout_s <= 60):
            raise MeterConfigError(f"{self.kind}://{host}: timeout={timeout_s:g} s; use more than 0 and at most 60 s")
        self.host, self.port, self.timeout_s = host, port or 80, float(timeout_s)
        if not 0 < self.port < 65536:
            raise MeterConfigError(f"{self.kind}://{host}: port {self.port} is not 1..65535")
        self.user, self.password = user, password
        self.url = f"http://{host}:{self.port}{self.path}"
        self.identity: dict[str, Any] = {}
        self._opened = False
        self._ever_opened = False  # the first open turns "unreachable" into a MeterConfigError
        self._addrs: list[tuple[int, Any]] = []
        headers = {}
        if user is not None:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        self._request = build_request("GET", host, self.port, self.path, headers)

    # -- transport ---------------------------------------------------------------------
    def _unreachable(self, why: str) -> MeterError:
        """The error for a host that cannot be reached: at the first open a one-line
        MeterConfigError naming host and fix, later a MeterDisconnected (the recorder
        reopens the meter until it is back)."""
        if not self._ever_opened:
            return MeterConfigError(
                f"{self.kind}://{self.host}:{self.port}: cannot reach the plug ({why}); check that it is "
                f"powered and on this network and that {self.host} (port {self.port}) is its address")
        return MeterDisconnected(f"{self.url}: {why}")

    def _get(self) -> Any:
        """One request; the decoded JSON document.  Every failure is a MeterError."""
        try:
            if not self._addrs:  # looked up once per open: polls connect to these addresses
                self._addrs = resolve(self.host, self.port)
            reply = fetch(self._addrs, self._request, self.timeout_s, self.url)
        except Unreachable as exc:
            raise self._unreachable(exc.why) from None
        status, body = reply.status, reply.body
        if status in (401, 403):
            raise MeterConfigError(f"{self.url}: HTTP {status}, the plug wants a login "
                                   "(add ?user=...&password=...)")
        if status != 200:
            raise MeterReadError(f"{self.url}: HTTP {status}", code="exception")
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise MeterReadError(f"{self.url}: reply is not JSON ({body[:40]!r})", code="garbage") from None

    def parse(self, doc: Any) -> dict[str, float]:
        raise NotImplementedError

    def _values(self) -> dict[str, float]:
        """One request, parsed and checked: plausible power, non-negative energy."""
        values = self.parse(self._get())
        p = values["power_w"]
        if not -NEGATIVE_TOLERANCE_W <= p <= MAX_POWER_W:
            raise MeterReadError(f"{self.url}: {p:g} W is not plausible", code="range")
        if values.get("energy_j", 0.0) < 0:
            raise MeterReadError(f"{self.url}: energy counter {values['energy_j']:g} J is negative", code="range")
        return values

    def open(self) -> list[Channel]:
        self._opened = False
        self._addrs = []
        # the first open retries a transient bad reply (HTTP 500, not JSON, a timeout) a few
        # times; a reopen tries once (the recorder tries again soon anyway)
        attempts = 1 if self._ever_opened else OPEN_ATTEMPTS
        for attempt in range(1, attempts + 1):
            try:
                values = self._values()
                break
            except MeterConfigError:
                raise
            except MeterDisconnected:
                if self._ever_opened:
                    raise
                if attempt == attempts:
                    raise MeterConfigError(f"{self.kind}://{self.host}:{self.port}: the connection broke "
                                           f"on each of {attempts} tries; is {self.host} a {self.model}?") from None
            except MeterReadError as exc:
                if self._ever_opened:
                    raise
                if attempt == attempts:
                    raise MeterConfigError(
                        f"{self.kind}://{self.host}:{self.port}: no usable reply in {attempts} tries "
                        f"(last: {str(exc)[:120]}); is it a {self.model} with energy metering, "
                        "and is timeout= long enough?") from None
            if self._stop.wait(OPEN_RETRY_PAUSE_S):
                raise MeterReadError(f"{self.url}: stopped while opening", code="timeout")
        res = self.energy_resolution_j
        primary = "energy_j" if res is not None and res <= COARSE_ENERGY_J and "energy_j" in values else "power_w"
        self.channels = [Channel(
            id=self.name, scope="wall", source="measured", quantities=tuple(values),
            window_s=self.update_interval_s, update_interval_s=self.update_interval_s,
            energy_resolution_j=res, primary=primary,
            info={"model": self.model, "url": self.url, **self.identity},
        )]
        self._opened = self._ever_opened = True
        return self.channels

    def read(self) -> Reading:
        if not self._opened:
            raise MeterDisconnected(f"{self.url}: not open")
        return Reading({self.name: self._values()})

    def close(self) -> None:
        self._opened = False

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "url": self.url, "model": self.model,
                "timeout_s": self.timeout_s, "max_reply_bytes": MAX_REPLY_BYTES}


class TasmotaPlug(HttpPlug):
    kind = "tasmota"
    path = "/cm?cmnd=Status%208"
    energy_resolution_j = 0.001 * 3.6e6  # Total in kWh with 3 decimals
    model = "Tasmota plug"

    def parse(self, doc: Any) -> dict[str, float]:
        try:
            energy = doc["StatusSNS"]["ENERGY"]
            if not isinstance(energy, dict):
                raise TypeError
        except (KeyError, TypeError, IndexError):
            raise MeterReadError(f"{self.url}: no StatusSNS.ENERGY in the reply (not an energy-metering Tasmota?)",
                                 code="garbage") from None
        what = self.url
        out = {"power_w": json_number(energy, "Power", what)}
        for q, key in (("voltage_v", "Voltage"), ("current_a", "Current"), ("pf", "Factor"),
                       ("apparent_va", "ApparentPower")):
            if key in energy:
                out[q] = json_number(energy, key, what)
        if "Total" in energy:
            out["energy_j"] = json_number(energy, "Total", what) * 3.6e6
        return out


class ShellyPlug(HttpPlug):
    kind = "shelly"
    model = "Shelly plug"

    def __init__(self, host: str, port: int | None = None, gen: int = 2, channel: int = 0, **kw: Any) -> None:
        if gen not in (1, 2):
            raise MeterConfigError(f"shelly://{host}: gen must be 1 or 2 (Gen3/Gen4 speak the Gen2 RPC API)")
        self.gen, self.channel_no = gen, channel
        self.path = f"/meter/{channel}" if gen == 1 else f"/rpc/Switch.GetStatus?id={channel}"
        # Gen2 aenergy.total: Wh with 3 decimals; Gen1 total: whole watt-minutes
        self.energy_resolution_j = 3.6 if gen == 2 else 60.0
        self.model = f"Shelly Gen{gen}{'+' if gen == 2 else ''} plug"
        super().__init__(host, port, **kw)

    def parse(self, doc: Any) -> dict[str, float]:
        if not isinstance(doc, dict):
            raise MeterReadError(f"{self.url}: unexpected reply", code="garbage")
        what = self.url
        if self.gen == 1:
            if doc.get("is_valid") is False:
                raise MeterReadError(f"{what}: meter reports is_valid=false", code="nan")
            out = {"power_w": json_number(doc, "power", what)}
            if "total" in doc:
                out["energy_j"] = json_number(doc, "total", what) * 60.0  # watt-minutes -> J
            return out
        out = {"power_w": json_number(doc, "apower", what)}
        for q, key in (("voltage_v", "voltage"), ("current_a", "current"), ("pf", "pf"), ("freq_hz", "freq")):
            if key in doc:
                out[q] = json_number(doc, key, what)
        aenergy = doc.get("aenergy")
        if isinstance(aenergy, dict) and "total" in aenergy:
            out["energy_j"] = json_number(aenergy, "total", what) * 3600.0  # Wh -> J
        return out


def from_uri(uri: Any) -> Meter:
    host, port = uri.host_port
    kw: dict[str, Any] = {"name": uri.name, "interval_s": uri.interval_s,
                          "timeout_s": uri.take("timeout", 2.0, float),
                          "user": uri.take("user", None), "password": uri.take("password", None)}
    if uri.scheme == "tasmota":
        return TasmotaPlug(host, port, **kw)
    return ShellyPlug(host, port, gen=uri.take("gen", 2, int), channel=uri.take("channel", 0, int), **kw)
