"""Transports injected into drivers: serial ports (and ``socket://`` / ``loop://`` URLs).

Opening goes through ``serial.serial_for_url`` so a device path, a pty, ``socket://HOST:PORT``
(a serial-over-TCP gateway or an instrument's raw socket) and ``loop://`` all work.
Failures to open become one-line :class:`MeterConfigError` messages that name the fix.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from drivers.base import MeterConfigError

PARITIES = ("N", "E", "O", "M", "S")  # none, even, odd, mark, space

DIALOUT_FIX = (
    "add your user to the dialout group (sudo usermod -aG dialout $USER, then log in again) "
    'or add a udev rule such as SUBSYSTEM=="tty", ATTRS{idVendor}=="0403", MODE="0666"'
)


def open_serial(port: str, baudrate: int = 9600, parity: str = "N", stopbits: float = 1,
                bytesize: int = 8, timeout: float = 1.0, **kw: Any) -> Any:
    """Open ``port`` (device path or pyserial URL) and return the pyserial object."""
    import serial  # pyserial

    parity = parity.upper()
    if parity not in PARITIES:
        raise MeterConfigError(f"parity must be one of N, E, O (got {parity!r})")
    if "://" not in port and not os.path.exists(port):
        hint = "; `calibrate meters` lists the serial ports here"
        raise MeterConfigError(f"serial port {port} does not exist (is the meter plugged in?){hint}")
    try:
        return serial.serial_for_url(port, baudrate=baudrate, parity=parity, stopbits=stopbits,
                                     bytesize=bytesize, timeout=timeout, write_timeout=timeout,
                                     exclusive=None if "://" in port else True, **kw)
    except serial.SerialException as exc:
        code = getattr(exc, "errno", None)
        text = str(exc)
        if code == errno.EACCES or "Permission denied" in text:
            raise MeterConfigError(f"permission denied on {port}: {DIALOUT_FIX}") from None
        if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO) or "No such file" in text:
            raise MeterConfigError(f"serial port {port} does not exist (is the meter plugged in?)") from None
        if code == errno.EBUSY or "lock" in text.lower():
            raise MeterConfigError(f"serial port {port} is busy: another program has it open") from None
        if "Connection refused" in text or code == errno.ECONNREFUSED:
            raise MeterConfigError(f"nothing listens at {port} (connection refused)") from None
        raise MeterConfigError(f"cannot open {port}: {text}") from None
    except ValueError as exc:
        raise MeterConfigError(f"cannot open {port}: {exc}") from None
