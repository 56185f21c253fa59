"""Find wall meters: list the serial ports, and ask a port (or host) which meter answers.

``list_serial_ports()`` uses pyserial's ``serial.tools.list_ports`` (USB VID:PID,
manufacturer, description) and adds a hint of which meter an adapter usually carries.

``probe_port(target)`` names ONE meter and the ``--meter`` URI that reads it.  ``target`` is
a serial port (``/dev/ttyUSB0`` or ``serial:/dev/ttyUSB0``), a raw socket (``socket://HOST:PORT``
or ``HOST:PORT``: an instrument's SCPI port or a serial-to-Ethernet gateway), a Modbus TCP
server (``modbus-tcp://HOST:PORT``) or a smart plug (``tasmota://HOST``, ``shelly://HOST``).
It tries Watts Up? (``#V,R,0;``), SCPI (``*IDN?``) and then the built-in Modbus profiles.  A
Modbus answer counts only when it is plausible as a whole -- voltage in a mains range
(:data:`MAINS_V`) AND frequency 45-65 Hz, power finite -- so a register map that reads zeros
(a 0 W "answer") is not a match.  The three-phase SDM630 is told apart by its system registers
(average L-N voltage at 0x002A); the SDM120 and SDM230 share one register map and are told
apart by the baud rate they answer at (their factory defaults 2400 / 9600); where that cannot
decide (a socket, or both rates answer) the result says which it assumed and why.  Device
identity strings are reduced to printable text (:func:`drivers.transport.printable`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drivers.transport import printable

#: (VID, PID) -> hint; VID alone (PID None) for a vendor
USB_HINTS: dict[tuple[int, int | None], str] = {
    (0x0403, 0x6001): "FTDI FT232R: Watts Up? Pro/.NET (also generic USB-serial and RS-485 adapters)",
    (0x0403, 0x6015): "FTDI FT230X: USB-RS485 adapter, likely a Modbus meter",
    (0x1A86, 0x7523): "CH340 USB-serial: common USB-RS485 adapter, likely a Modbus meter (SDM...)",
    (0x10C4, 0xEA60): "CP210x USB-serial: USB-RS485/RS-232 adapter (Modbus meter or Yokogawa RS-232)",
    (0x067B, 0x2303): "Prolific PL2303 RS-232 adapter: e.g. a Yokogawa WT analyzer's RS-232 port",
    (0x0B21, None): "Yokogawa instrument (USB-TMC appears as /dev/usbtmcN, not a tty)",
}


def usb_hint(vid: int | None, pid: int | None) -> str | None:
    if vid is None:
        return None
    return USB_HINTS.get((vid, pid)) or USB_HINTS.get((vid, None))


def list_serial_ports() -> list[dict[str, Any]]:
    """Serial ports here: device, USB ids, manufacturer, description and a meter hint."""
    from serial.tools import list_ports

    out = []
    for p in sorted(list_ports.comports(), key=lambda p: p.device):
        vid, pid = getattr(p, "vid", None), getattr(p, "pid", None)
        out.append({
            "device": p.device,
            "usb_id": f"{vid:04x}:{pid:04x}" if vid is not None and pid is not None else None,
            "manufacturer": getattr(p, "manufacturer", None),
            "description": p.description if p.description and p.description != "n/a" else "",
            "serial_number": getattr(p, "serial_number", None),
            "hint": usb_hint(vid, pid),
        })
    return out


#: a plausible mains voltage (V, line to neutral): 100 V Japan ... 240 V + 10 %
MAINS_V = (85.0, 265.0)
#: a plausible mains frequency (Hz)
MAINS_HZ = (45.0, 65.0)


class Found(tuple):
    """``(protocol, identity)`` -- compares as that pair -- with ``uri`` (the ``--meter`` URI)
    and ``note`` (why this model, or what was ambiguous; "" when nothing needs saying)."""

    uri: str
    note: str

    def __new__(cls, protocol: str, identity: str, uri: str, note: str = "") -> Found:
        self = super().__new__(cls, (protocol, printable(identity)))
        self.uri, self.note = uri, note
        return self

    @property
    def protocol(self) -> str:
        return self[0]

    @property
    def identity(self) -> str:
        return self[1]


@dataclass(frozen=True)
class Target:
    kind: str  # serial | socket | modbus-tcp | plug
    port: str  # what LineTransport / pymodbus opens (device path, socket://H:P, H:P, or the plug URI)
    host_port: str = ""  # HOST:PORT for socket and modbus-tcp


def parse_target(text: str) -> Target:
    """Where ``text`` points: a serial port, a raw socket, a Modbus TCP server or a plug."""
    from drivers.base import MeterConfigError

    t = text.strip()
    low = t.lower()
    if low.startswith(("tasmota://", "shelly://")):
        return Target("plug", t)
    if low.startswith("modbus-tcp://"):
        hp = t.split("://", 1)[1].split("?")[0].rstrip("/")
        if ":" not in hp:
            hp += ":502"
        return Target("modbus-tcp", hp, hp)
    if low.startswith(("socket://", "tcp://")):
        hp = t.split("://", 1)[1].split("?")[0].rstrip("/")
        return Target("socket", f"socket://{hp}", hp)
    if low.startswith("serial:"):
        t = t[len("serial:"):].split("?")[0]
        if t.lower().startswith("socket://"):
            return parse_target(t)
    elif low.startswith("modbus:"):
        t = t[len("modbus:"):].split("?")[0]
    host, sep, port = t.rpartition(":")
    if sep and host and "/" not in t and port.isdigit():
        return Target("socket", f"socket://{host}:{port}", f"{host}:{port}")
    if not t:
        raise MeterConfigError(f"--probe {text!r}: give a serial port, HOST:PORT or modbus-tcp://HOST:PORT")
    return Target("serial", t)


def _probe_wattsup(port: str, timeout_s: float) -> str | None:
    from drivers.transport import LineTransport

    line = LineTransport.open(port, baudrate=115200, timeout=0.05)
    try:
        line.flush_input()
        line.write(b"#V,R,0;")
        buf, _ = line.read_until(b";", timeout_s)
        start = buf.find(b"#v")
        return printable(buf[start:].decode("ascii", "replace")) if start >= 0 else None
    finally:
        line.close()


def _probe_scpi(port: str, timeout_s: float) -> str | None:
    from drivers.transport import LineTransport

    line = LineTransport.open(port, baudrate=9600, timeout=0.05)
    try:
        line.flush_input()
        line.write(b"*IDN?\n")
        text = printable(line.read_until(b"\n", timeout_s)[0].decode("ascii", "replace"))
        return text if text.count(",") >= 2 else None
    finally:
        line.close()


def plausible(values: dict[str, float]) -> str | None:
    """Why a Modbus reading is not a live mains meter's (None when it is plausible)."""
    v, hz, p = values.get("voltage_v"), values.get("freq_hz"), values.get("power_w")
    if p is None or not abs(p) < 1e6:
        return f"power {p!r} W"
    if v is None or not MAINS_V[0] <= v <= MAINS_V[1]:
        return f"voltage {v!r} V is not in {MAINS_V[0]:g}..{MAINS_V[1]:g} V"
    if hz is None or not MAINS_HZ[0] <= hz <= MAINS_HZ[1]:
        return f"frequency {hz!r} Hz is not in {MAINS_HZ[0]:g}..{MAINS_HZ[1]:g} Hz"
    return None


def _read_modbus(target: Target, profile_name: str, baud: int | None,
                 timeout_s: float) -> dict[str, float] | None:
    """One read of ``profile_name``'s registers; None when nothing (or garbage) answered."""
    from drivers.base import MeterError
    from drivers.modbus import ModbusMeter, load_profile

    prof = load_profile(profile_name)
    tcp = target.kind == "modbus-tcp"
    meter = ModbusMeter(target.port, prof, tcp=tcp, baudrate=None if tcp else (baud or prof.default_baud),
                        timeout_s=timeout_s)
    try:
        meter.open()
        return meter.read().values[meter.name]
    except MeterError:
        return None
    finally:
        meter.close()


def _probe_modbus(target: Target, timeout_s: float) -> Found | None:
    """The one built-in Modbus model that answers plausibly on ``target``."""
    from drivers.modbus import load_profile

    def uri(name: str, baud: int | None = None) -> str:
        if target.kind == "modbus-tcp":
            return f"modbus-tcp://{target.host_port}?profile={name}&unit=1"
        b = f"&baud={baud}" if baud and baud != load_profile(name).default_baud else ""
        return f"modbus:{target.port}?profile={name}&unit=1{b}"

    def ident(name: str, vals: dict[str, float], baud: int | None) -> str:
        how = "" if target.kind != "serial" else f" at {baud} baud"
        return (f"{load_profile(name).model} unit 1{how}: {vals['power_w']:.1f} W, "
                f"{vals['voltage_v']:.1f} V, {vals['freq_hz']:.1f} Hz")

    wire = target.kind == "serial"  # only a real serial line tells baud rates apart
    # three-phase first: an SDM630 also answers the single-phase map (phase 1 at 0x0000)
    vals = _read_modbus(target, "sdm630", None, timeout_s)
    if vals is not None and plausible(vals) is None:
        return Found("modbus:sdm630", ident("sdm630", vals, 9600 if wire else None), uri("sdm630"),
                     "three-phase system registers (average L-N voltage 0x002A, total power 0x0034) "
                     "answer plausibly: an SDM630")
    # one register map; on a wire each at its factory baud (2400 / 9600), else asked once
    single = [(n, load_profile(n).default_baud) for n in ("sdm120", "sdm230")] if wire else [("sdm120", None)]
    answers: list[tuple[str, int | None, dict[str, float]]] = []
    for name, b in single:
        vals = _read_modbus(target, name, b, timeout_s)
        if vals is not None and plausible(vals) is None:
            answers.append((name, b, vals))
    if not answers:
        return None
    name, b, vals = answers[0]
    if len(answers) == 1 and wire:
        other = "sdm230" if name == "sdm120" else "sdm120"
        note = (f"single-phase map answered at {b} baud only (the {name.upper()}'s factory rate; "
                f"an {other.upper()} answers at {load_profile(other).default_baud}); if you changed "
                "the meter's baud rate, both profiles read it the same")
    else:
        why = "answered at both 2400 and 9600 baud" if wire else "baud rates do not apply over a socket"
        note = (f"SDM120 or SDM230 ({why}): they share one register map, so profile={name} reads "
                "either correctly; assumed SDM120")
    return Found(f"modbus:{name}", ident(name, vals, b), uri(name, b), note)


def _probe_plug(target: Target, timeout_s: float) -> Found | None:
    from drivers.base import MeterError
    from drivers.registry import make_meter

    uri = target.port
    meter = make_meter(uri)
    try:
        meter.open()
        p = meter.read().values[meter.name].get("power_w")
        if p is None or not abs(p) < 1e6:
            return None
        return Found(uri.split("://", 1)[0].lower(), f"{meter.kind} plug: {p:.1f} W", uri)
    except MeterError:
        return None
    finally:
        meter.close()


def probe_port(port: str, timeout_s: float = 0.5) -> list[Found]:
    """The meter that answered on ``port`` -- at most one -- as [Found(protocol, identity)].

    Each entry also carries ``uri`` (ready for ``--meter``) and ``note`` (why this model).
    A configuration problem (no such port, permission) raises MeterConfigError.
    """
    from drivers.base import MeterConfigError, MeterError

    target = parse_target(port)
    if target.kind == "plug":
        found = _probe_plug(target, timeout_s)
        return [found] if found else []
    if target.kind != "modbus-tcp":
        uri_base = (f"tcp://{target.host_port}" if target.kind == "socket" else f"serial:{target.port}")
        for proto, fn in (("wattsup", _probe_wattsup), ("wt310", _probe_scpi)):
            try:
                ident = fn(target.port, timeout_s)
            except MeterConfigError:
                raise
            except (MeterError, OSError):
                ident = None
            if ident:
                return [Found(proto, ident, f"{uri_base}?protocol={proto}")]
    found = _probe_modbus(target, timeout_s)
    if found is None and target.kind == "socket":  # a HOST:PORT may be a Modbus TCP server
        found = _probe_modbus(Target("modbus-tcp", target.host_port, target.host_port), timeout_s)
    return [found] if found else []
