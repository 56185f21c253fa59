"""Find wall meters on serial ports: list the ports, and ask a port which protocol answers.

``list_serial_ports()`` uses pyserial's ``serial.tools.list_ports`` (USB VID:PID,
manufacturer, description) and adds a hint of which meter an adapter usually carries.
``probe_port(port)`` tries each known protocol with short timeouts and returns the ones
that answered with the identity they gave: Watts Up? (``#V,R,0;``), SCPI (``*IDN?``) and,
when neither ASCII protocol answered, every built-in Modbus profile (one read of its
registers at the profile's defaults).
"""

from __future__ import annotations

from typing import Any

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


def _probe_wattsup(port: str, timeout_s: float) -> str | None:
    from drivers.transport import LineTransport

    line = LineTransport.open(port, baudrate=115200, timeout=0.05)
    try:
        line.flush_input()
        line.write(b"#V,R,0;")
        buf, _ = line.read_until(b";", timeout_s)
        start = buf.find(b"#v")
        return buf[start:].decode("ascii", "replace") if start >= 0 else None
    finally:
        line.close()


def _probe_scpi(port: str, timeout_s: float) -> str | None:
    from drivers.transport import LineTransport

    line = LineTransport.open(port, baudrate=9600, timeout=0.05)
    try:
        line.flush_input()
        line.write(b"*IDN?\n")
        text = line.read_until(b"\n", timeout_s)[0].decode("ascii", "replace").strip()
        return text if text.count(",") >= 2 else None
    finally:
        line.close()


def _probe_modbus(port: str, profile_name: str, timeout_s: float) -> str | None:
    from drivers.base import MeterError
    from drivers.modbus import ModbusMeter, load_profile

    prof = load_profile(profile_name)
    meter = ModbusMeter(port, prof, timeout_s=timeout_s)
    try:
        meter.open()
        p = meter.read().values[meter.name]["power_w"]
        return f"{prof.model} unit {meter.unit} at {meter.baudrate} baud: {p:.1f} W"
    except MeterError:
        return None
    finally:
        meter.close()


def probe_port(port: str, timeout_s: float = 0.5) -> list[tuple[str, str]]:
    """Protocols that answered on ``port``: [(protocol or modbus profile, identity)]."""
    from drivers.base import MeterConfigError, MeterError
    from drivers.modbus import builtin_profiles

    found: list[tuple[str, str]] = []
    for proto, fn in (("wattsup", _probe_wattsup), ("wt310", _probe_scpi)):
        try:
            ident = fn(port, timeout_s)
        except MeterConfigError:
            raise
        except (MeterError, OSError):
            ident = None
        if ident:
            found.append((proto, ident))
    if found:
        return found
    for name in builtin_profiles():
        ident = _probe_modbus(port, name, timeout_s)
        if ident:
            found.append((f"modbus:{name}", ident))
    return found
