"""Smart plugs over their local HTTP API (stdlib urllib, no cloud).

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
"""

from __future__ import annotations

import base64
import json
import math
import socket
import urllib.error
import urllib.request
from typing import Any

from drivers.base import (
    Channel,
    Meter,
    MeterConfigError,
    MeterDisconnected,
    MeterReadError,
    Reading,
)

COARSE_ENERGY_J = 10.0


def _num(obj: dict[str, Any], key: str, what: str) -> float:
    if key not in obj:
        raise MeterReadError(f"{what}: field {key!r} missing", code="garbage")
    v = obj[key]
    if isinstance(v, list):  # multi-channel Tasmota devices report lists
        v = v[0] if v else None
    if v is None:
        raise MeterReadError(f"{what}: {key} is null (no data)", code="nan")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise MeterReadError(f"{what}: field {key}={v!r} is not a number", code="garbage") from None
    if not math.isfinite(x):
        raise MeterReadError(f"{what}: {key} is {v!r}", code="nan")
    return x


class HttpPlug(Meter):
    """Base of the HTTP plug drivers: one GET per poll, JSON decoded into one channel."""

    kind = "plug"
    default_interval_s = 1.0
    path = "/"
    energy_resolution_j: float | None = None
    update_interval_s: float | None = 1.0
    model = "smart plug"

    def __init__(self, host: str, port: int | None = None, name: str | None = None,
                 interval_s: float | None = None, timeout_s: float = 2.0,
                 user: str | None = None, password: str | None = None) -> None:
        super().__init__(name, interval_s)
        self.host, self.port, self.timeout_s = host, port or 80, timeout_s
        self.user, self.password = user, password
        self.url = f"http://{host}:{self.port}{self.path}"
        self.identity: dict[str, Any] = {}
        self._opened = False

    def _get(self, url: str | None = None) -> Any:
        req = urllib.request.Request(url or self.url, headers={"Accept": "application/json"})
        if self.user is not None:
            token = base64.b64encode(f"{self.user}:{self.password or ''}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise MeterConfigError(f"{self.url}: HTTP {exc.code}, the plug wants a login "
                                       "(add ?user=...&password=...)") from None
            raise MeterReadError(f"{self.url}: HTTP {exc.code}", code="exception") from None
        except TimeoutError:
            raise MeterReadError(f"{self.url}: no reply within {self.timeout_s:g} s", code="timeout") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise MeterReadError(f"{self.url}: no reply within {self.timeout_s:g} s", code="timeout") from None
            raise MeterDisconnected(f"{self.url}: {reason}") from None
        except (ConnectionError, OSError) as exc:
            raise MeterDisconnected(f"{self.url}: {exc}") from None
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise MeterReadError(f"{self.url}: reply is not JSON ({body[:40]!r})", code="garbage") from None

    def parse(self, doc: Any) -> dict[str, float]:
        raise NotImplementedError

    def open(self) -> list[Channel]:
        values = self.parse(self._get())
        res = self.energy_resolution_j
        primary = "energy_j" if res is not None and res <= COARSE_ENERGY_J and "energy_j" in values else "power_w"
        self.channels = [Channel(
            id=self.name, scope="wall", source="measured", quantities=tuple(values),
            window_s=self.update_interval_s, update_interval_s=self.update_interval_s,
            energy_resolution_j=res, primary=primary,
            info={"model": self.model, "url": self.url, **self.identity},
        )]
        self._opened = True
        return self.channels

    def read(self) -> Reading:
        if not self._opened:
            raise MeterDisconnected(f"{self.url}: not open")
        values = self.parse(self._get())
        if not 0.0 <= values["power_w"] <= 1e5:
            raise MeterReadError(f"{self.url}: {values['power_w']} W is not plausible", code="range")
        return Reading({self.name: values})

    def close(self) -> None:
        self._opened = False

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "url": self.url, "model": self.model}


class TasmotaPlug(HttpPlug):
    kind = "tasmota"
    path = "/cm?cmnd=Status%208"
    energy_resolution_j = 0.001 * 3.6e6  # Total in kWh with 3 decimals
    model = "Tasmota plug"

    def parse(self, doc: Any) -> dict[str, float]:
        try:
            energy = doc["StatusSNS"]["ENERGY"]
        except (KeyError, TypeError):
            raise MeterReadError(f"{self.url}: no StatusSNS.ENERGY in the reply (not an energy-metering Tasmota?)",
                                 code="garbage") from None
        what = self.url
        out = {"power_w": _num(energy, "Power", what)}
        for q, key in (("voltage_v", "Voltage"), ("current_a", "Current"), ("pf", "Factor"),
                       ("apparent_va", "ApparentPower")):
            if key in energy:
                out[q] = _num(energy, key, what)
        if "Total" in energy:
            out["energy_j"] = _num(energy, "Total", what) * 3.6e6
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
            out = {"power_w": _num(doc, "power", what)}
            if "total" in doc:
                out["energy_j"] = _num(doc, "total", what) * 60.0  # watt-minutes -> J
            return out
        out = {"power_w": _num(doc, "apower", what)}
        for q, key in (("voltage_v", "voltage"), ("current_a", "current"), ("pf", "pf"), ("freq_hz", "freq")):
            if key in doc:
                out[q] = _num(doc, key, what)
        aenergy = doc.get("aenergy")
        if isinstance(aenergy, dict) and "total" in aenergy:
            out["energy_j"] = _num(aenergy, "total", what) * 3600.0  # Wh -> J
        return out


def from_uri(uri: Any) -> Meter:
    host, port = uri.host_port
    kw: dict[str, Any] = {"name": uri.name, "interval_s": uri.interval_s,
                          "timeout_s": uri.take("timeout", 2.0, float),
                          "user": uri.take("user", None), "password": uri.take("password", None)}
    if uri.scheme == "tasmota":
        return TasmotaPlug(host, port, **kw)
    return ShellyPlug(host, port, gen=uri.take("gen", 2, int), channel=uri.take("channel", 0, int), **kw)
