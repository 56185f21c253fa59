"""Watts Up? Pro / .NET: ASCII packets over a USB (FTDI) serial port, 115200 8N1.

Protocol (Watts Up? communications protocol, 2009; field scaling checked against
open-source readers): commands are ``#<cmd>,<sub>,<argc>[,args];``.  ``#L,W,3,E,,N;``
starts *external* logging: the meter then sends one data packet every N s (N >= 1)::

    #d,-,18,W,V,A,WH,Cost,WH/Mo,Cost/Mo,Wmax,Vmax,Amax,Wmin,Vmin,Amin,PF,DC,PC,Hz,VA;

W, V, WH, Hz and VA are in tenths, A in thousandths, PF in percent; ``_`` marks a
disabled field.  The watts field is the average over the logging interval, so the
channel's ``window_s`` is the interval and the value belongs to the interval that ended
when the packet arrived.  WH counts in 0.1 Wh (360 J) steps: too coarse for short runs,
so power is the primary reading and the register's resolution is recorded.

A device that sends data packets faster than its logging interval (a broken or hostile
one) gets them dropped and counted (``too_fast``; the next accepted reading is flagged
``rate``), never recorded as extra samples; after garbage or a flood the input is flushed
(bounded) and reads back off.
"""

from __future__ import annotations

import time
from typing import Any

from drivers.base import Channel, Meter, MeterDisconnected, MeterReadError, Reading
from drivers.transport import Backoff, LineTransport

FIELDS = ("W", "V", "A", "WH", "Cost", "WH/Mo", "Cost/Mo", "Wmax", "Vmax", "Amax",
          "Wmin", "Vmin", "Amin", "PF", "DC", "PC", "Hz", "VA")
SCALE = {"W": 0.1, "V": 0.1, "A": 0.001, "WH": 0.1, "Wmax": 0.1, "Vmax": 0.1, "Amax": 0.001,
         "Wmin": 0.1, "Vmin": 0.1, "Amin": 0.001, "PF": 0.01, "Hz": 0.1, "VA": 0.1}
#: trace quantity <- packet field
QUANTITIES = {"power_w": "W", "voltage_v": "V", "current_a": "A", "pf": "PF", "freq_hz": "Hz",
              "apparent_va": "VA"}
WH_RESOLUTION_J = 0.1 * 3600.0
#: plausibility ceiling (W): a 16 A, 230 V socket; the 120 V Pro is rated 1800 W.  A higher
#: value is line noise, not a reading (``max_w=`` in the URI changes it)
MAX_W = 3700.0
#: a data packet sooner than this fraction of the logging interval after the last accepted
#: one is dropped and counted (the meter sends one per interval; serial jitter is far smaller)
MIN_GAP_FRACTION = 0.8
#: dropped packets in one read before it fails (MeterReadError "range") and backs off
MAX_FAST_PER_READ = 8


def command(cmd: str, sub: str, *args: str) -> bytes:
    """Encode one command packet, e.g. ``command("L", "W", "E", "", "1")``."""
    return ("#" + ",".join([cmd, sub, str(len(args)), *args]) + ";").encode("ascii")


def start_logging(interval_s: int) -> bytes:
    return command("L", "W", "E", "", str(int(interval_s)))


def parse_packet(packet: str) -> tuple[str, list[str]]:
    """``#d,-,18,a,b;`` -> ("d", ["a", "b"]).  Raises MeterReadError on a malformed packet."""
    if not (packet.startswith("#") and packet.endswith(";")):
        raise MeterReadError(f"malformed packet {packet[:40]!r}", code="garbage")
    parts = packet[1:-1].split(",")
    if len(parts) < 3 or not parts[2].isdigit():
        raise MeterReadError(f"malformed packet {packet[:40]!r}", code="garbage")
    args = parts[3:]
    if int(parts[2]) != len(args):
        raise MeterReadError(f"packet says {parts[2]} fields, has {len(args)}", code="garbage")
    return parts[0], args


def parse_data(args: list[str]) -> dict[str, float | None]:
    """Field values of a ``#d`` packet, scaled to W, V, A, Wh, 0..1, Hz, VA (None = disabled)."""
    if len(args) != len(FIELDS):
        raise MeterReadError(f"data packet has {len(args)} fields, expected 18", code="garbage")
    out: dict[str, float | None] = {}
    for name, raw in zip(FIELDS, args):
        if raw in ("_", ""):
            out[name] = None
            continue
        try:
            out[name] = round(int(raw) * SCALE.get(name, 1.0), 6)
        except ValueError:
            raise MeterReadError(f"field {name}={raw!r} is not a number", code="garbage") from None
    return out


class WattsUpMeter(Meter):
    """Watts Up? Pro on a serial port; ``interval`` is the meter's logging interval (s, >= 1)."""

    kind = "wattsup"
    default_interval_s = 1.0
    min_interval_s = 1.0  # the meter logs in whole seconds
    default_baud = 115200
    push = True

    def __init__(self, port: str, name: str | None = None, interval_s: float | None = None,
                 baudrate: int = 115200, parity: str = "N", stopbits: float = 1,
                 open_port: Any = None, max_w: float = MAX_W) -> None:
        super().__init__(name, interval_s)
        self.max_w = float(max_w)
        self.log_interval = max(1, round(self.interval_s))
        if self.log_interval != self.interval_s:
            self.notes.append(f"{self.name}: Watts Up? logs in whole seconds; using {self.log_interval} s")
        self.interval_s = float(self.log_interval)
        self.port, self.baudrate, self.parity, self.stopbits = port, baudrate, parity, stopbits
        self._open_port = open_port  # None: drivers.transport.open_serial
        self.line: LineTransport | None = None
        self.identity: str | None = None
        #: data packets dropped because they came sooner than the logging interval allows
        self.too_fast = 0
        self._last_ns: int | None = None
        self._backoff = Backoff(0.05, 1.0)

    @classmethod
    def uri_options(cls, uri: Any) -> dict[str, Any]:
        """Driver options from ``serial:PORT?protocol=wattsup&max_w=W``."""
        return {"max_w": uri.take("max_w", MAX_W, float)}

    def open(self) -> list[Channel]:
        self.close()
        self._last_ns = None
        self.line = line = LineTransport.open(self.port, self._open_port, baudrate=self.baudrate,
                                              parity=self.parity, stopbits=self.stopbits, timeout=0.2)
        try:
            line.flush_input()
            line.write(command("V", "R"))
            self.identity = self._wait_for("v", 1.0)
            line.write(start_logging(self.log_interval))
        except MeterDisconnected:
            self.close()
            raise
        except MeterReadError:
            self.identity = None  # older firmware may not answer #V; data packets decide
            line.write(start_logging(self.log_interval))
        self.channels = [Channel(
            id=self.name, scope="wall", source="measured",
            quantities=("power_w", "energy_j", "voltage_v", "current_a", "pf", "freq_hz", "apparent_va"),
            window_s=float(self.log_interval), update_interval_s=float(self.log_interval),
            energy_resolution_j=WH_RESOLUTION_J, primary="power_w",
            info={"model": "Watts Up? Pro", "version_packet": self.identity, "port": self.port},
        )]
        return self.channels

    def _next_packet(self, deadline: float) -> tuple[str, int]:
        """Next ``#...;`` packet and the monotonic ns its last byte arrived."""
        if self.line is None:
            raise MeterDisconnected(f"{self.port}: not open")
        try:
            # a cut-off packet stays buffered: the next one's "#" resynchronises the stream
            raw, arrival_ns = self.line.read_until(b";", deadline - time.monotonic(),
                                                   stop=lambda: self.stop_requested, keep_partial=True)
        except MeterReadError as exc:
            if exc.code != "timeout" or isinstance(exc, MeterDisconnected):
                raise
            raise MeterReadError(f"{self.port}: no packet within {self.log_interval * 3} s",
                                 code="timeout") from None
        raw = raw.replace(b"\r", b"").replace(b"\n", b"")
        start = raw.rfind(b"#")
        text = raw[start:] if start >= 0 else raw
        try:
            return text.decode("ascii").strip(), arrival_ns
        except UnicodeDecodeError:
            raise MeterReadError(f"non-ASCII bytes {raw[:20]!r}", code="garbage") from None

    def _wait_for(self, kind: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            packet, _ = self._next_packet(deadline)
            if packet[1:2] == kind:
                return packet

    def read(self) -> Reading:
        try:
            reading = self._read()
        except MeterDisconnected:
            raise
        except MeterReadError as exc:
            if exc.code in ("garbage", "range") and self.line is not None:
                self.line.flush_input()  # a broken or flooding line: drop it (bounded), pause
                self._backoff.fail(self._stop)
            raise
        self._backoff.ok()
        return reading

    def _read(self) -> Reading:
        if self.line is None:
            raise MeterDisconnected(f"{self.port}: not open")
        deadline = time.monotonic() + 3 * self.log_interval
        min_gap_ns = int(MIN_GAP_FRACTION * self.log_interval * 1e9)
        fast = 0
        while True:
            packet, arrival_ns = self._next_packet(deadline)
            kind, args = parse_packet(packet)
            if kind != "d":
                continue
            if self._last_ns is not None and arrival_ns - self._last_ns < min_gap_ns:
                # the meter logs one packet per interval: more is a broken or hostile device,
                # never extra samples (they would carry duplicate or crowded stamps)
                fast += 1
                self.too_fast += 1
                if fast >= MAX_FAST_PER_READ:
                    raise MeterReadError(
                        f"{self.port}: data packets faster than the {self.log_interval} s logging "
                        f"interval ({self.too_fast} dropped so far)", code="range")
                continue
            break
        self._last_ns = arrival_ns
        fields = parse_data(args)
        watts = fields["W"]
        if watts is None:
            raise MeterReadError("data packet has no watts field", code="nan")
        if not 0.0 <= watts <= self.max_w:
            raise MeterReadError(f"{watts} W is outside 0..{self.max_w} W (max_w=)", code="range")
        values: dict[str, float] = {}
        for q, f in QUANTITIES.items():
            if fields.get(f) is not None:
                values[q] = float(fields[f])  # type: ignore[arg-type]
        if fields.get("WH") is not None:
            values["energy_j"] = float(fields["WH"]) * 3600.0  # type: ignore[operator]
        wire_ns = int(len(packet) * 10 / self.baudrate * 1e9)
        flags = {self.name: "rate"} if fast else {}  # packets were dropped before this one
        return Reading({self.name: values}, t_ns=arrival_ns - wire_ns, rtt_ns=wire_ns, flags=flags)

    def close(self) -> None:
        if self.line is not None:
            try:
                self.line.write(command("L", "W", "0"))
            except MeterDisconnected:
                pass
            self.line.close()
            self.line = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "port": self.port, "baudrate": self.baudrate,
                "protocol": "wattsup", "log_interval_s": self.log_interval, "identity": self.identity}
