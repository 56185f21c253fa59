"""Transports injected into drivers: serial ports (and ``socket://`` / ``loop://`` URLs).

:class:`LineTransport` is the one line reader of the serial drivers (Watts Up?, WT310,
the port probe): write, read up to a terminator within an overall deadline into a bounded
buffer, and the single place where a vanished port (pyserial, OS, termios or socket
errors) becomes :class:`MeterDisconnected`.

Opening goes through ``serial.serial_for_url`` so a device path, a pty, ``socket://HOST:PORT``
(a serial-over-TCP gateway or an instrument's raw socket) and ``loop://`` all work.
Failures to open become one-line :class:`MeterConfigError` messages that name the fix.
"""

from __future__ import annotations

import errno
import os
import re
import time
from collections.abc import Callable
from typing import Any

from drivers.base import MeterConfigError, MeterDisconnected, MeterReadError

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


#: longest line (bytes, terminator included) a :class:`LineTransport` buffers; anything
#: longer is line noise, reported as ``garbage`` and dropped (the buffer never grows past it)
MAX_LINE = 4096


#: most bytes one :meth:`LineTransport.flush_input` drops from a socket before giving up
MAX_DRAIN = 1 << 16


class Backoff:
    """Growing pause after consecutive faults, so a device that sends garbage non-stop costs
    a few polls a second, not a core: ``fail()`` waits (``first`` s, doubling up to ``cap``),
    ``ok()`` resets.  The wait ends early when ``stop`` (a threading.Event) is set."""

    def __init__(self, first: float = 0.05, cap: float = 1.0) -> None:
        self.first, self.cap, self.delay = first, cap, 0.0

    def ok(self) -> None:
        self.delay = 0.0

    def fail(self, stop: Any = None) -> float:
        self.delay = min(self.cap, self.delay * 2 if self.delay else self.first)
        if stop is not None:
            stop.wait(self.delay)
        else:
            time.sleep(self.delay)
        return self.delay


def _port_errors() -> tuple[type[BaseException], ...]:
    """Every exception that means "the port is gone" on a pyserial object.

    ``SerialException`` (pyserial's own, including a socket:// EOF, "device reports readiness
    to read but returned no data" on a pty whose other end closed, and PortNotOpenError);
    ``OSError`` (EIO from read/ioctl, ECONNRESET/EPIPE on sockets); ``termios.error`` (tcflush
    on a vanished tty, which is *not* an OSError); ``EOFError``; and ``TypeError`` /
    ``AttributeError``, which pyserial raises when the port is closed under a blocked call
    (its fd or socket is already None).
    """
    import serial

    errors: list[type[BaseException]] = [serial.SerialException, OSError, EOFError, TypeError,
                                          AttributeError]
    try:
        import termios

        errors.append(termios.error)
    except ImportError:  # not POSIX
        pass
    return tuple(errors)


class LineTransport:
    """A byte stream (a pyserial object: device, pty, ``socket://``, ``loop://``) read as lines.

    The one place where port errors become :class:`MeterDisconnected`: every call on the
    port goes through :meth:`_on_port`.  Drivers hold one of these, not the pyserial object,
    and keep only their protocol.  ``label`` (the port name) starts every error message.
    """

    def __init__(self, port: Any, label: str, max_line: int = MAX_LINE) -> None:
        self.port = port
        self.label = label
        self.max_line = max_line
        self._buf = b""
        self._scanned = 0  # bytes of _buf already searched for the terminator
        self._arrival_ns = 0
        self._errors = _port_errors()

    @classmethod
    def open(cls, port: str, opener: Any = None, max_line: int = MAX_LINE, **settings: Any) -> LineTransport:
        """Open ``port`` with ``opener`` (default :func:`open_serial`, same keywords) and wrap it."""
        return cls((opener or open_serial)(port, **settings), port, max_line)

    def _on_port(self, action: Callable[[Any], Any]) -> Any:
        """``action(port)``; every port error becomes MeterDisconnected, here and only here."""
        port = self.port
        if port is None:
            raise MeterDisconnected(f"{self.label}: not open")
        try:
            return action(port)
        except self._errors as exc:
            raise MeterDisconnected(f"{self.label}: {str(exc) or type(exc).__name__}") from None

    def write(self, data: bytes) -> None:
        """Send ``data``; a vanished port raises MeterDisconnected."""
        self._on_port(lambda port: port.write(data))

    def flush_input(self, limit: int = MAX_DRAIN) -> int:
        """Drop everything received and not yet read (ours and the OS's input buffer).

        Bounded: a socket is drained by at most ``limit`` bytes (pyserial's own
        ``reset_input_buffer`` on ``socket://`` loops for as long as a flooding peer sends);
        a tty's buffer is flushed by the kernel.  Returns the bytes dropped here (approx.)."""
        dropped = len(self.discard())

        def drain(port: Any) -> int:
            if not hasattr(port, "_socket"):
                port.reset_input_buffer()
                return 0
            n = 0
            while n < limit and port.in_waiting:
                chunk = port.read(min(4096, limit - n))
                if not chunk:
                    break
                n += len(chunk)
            return n

        return dropped + int(self._on_port(drain) or 0)

    def discard(self) -> bytes:
        """Drop and return what is buffered here (a partial line)."""
        partial, self._buf, self._scanned = self._buf, b"", 0
        return partial

    def read_until(self, terminator: bytes, timeout_s: float, stop: Any = None,
                   keep_partial: bool = False) -> tuple[bytes, int]:
        """The next line, terminator included, and the ``time.monotonic_ns`` it arrived.

        The arrival time is that of the read that brought the terminator in (or, for a line
        already buffered, the latest read).  Raises :class:`MeterReadError`: ``timeout`` when
        no terminator comes within ``timeout_s`` s or ``stop()`` turns true; ``garbage`` for
        a line longer than ``max_line`` bytes, or (unless ``keep_partial``, which keeps it
        buffered for a driver that resynchronises on the next line) for a partial line at the
        deadline.  A vanished port raises :class:`MeterDisconnected`.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            end = self._buf.find(terminator, max(0, self._scanned - len(terminator) + 1))
            if end >= 0:
                end += len(terminator)
                line, self._buf, self._scanned = self._buf[:end], self._buf[end:], 0
                if len(line) > self.max_line:
                    raise MeterReadError(f"{self.label}: {len(line)} bytes without a terminator "
                                         f"(more than {self.max_line})", code="garbage")
                return line, self._arrival_ns
            self._scanned = len(self._buf)
            if len(self._buf) > self.max_line:  # a line noise storm with no terminator
                self.discard()
                raise MeterReadError(f"{self.label}: more than {self.max_line} bytes without a "
                                     "terminator", code="garbage")
            if time.monotonic() > deadline or (stop is not None and stop()):
                if self._buf and not keep_partial:
                    partial = self.discard()
                    raise MeterReadError(f"{self.label}: partial reply {partial[:40]!r} (no terminator "
                                         f"within {timeout_s:g} s)", code="garbage")
                raise MeterReadError(f"{self.label}: no reply within {timeout_s:g} s", code="timeout")
            # what has arrived: at least one byte, or nothing after the port's read timeout
            chunk = self._on_port(lambda port: port.read(max(1, port.in_waiting or 1)))
            if chunk:
                self._arrival_ns = time.monotonic_ns()
                self._buf += chunk

    def close(self) -> None:
        """Close the port; safe to call twice.  Errors while closing are ignored."""
        port, self.port = self.port, None
        self.discard()
        if port is not None:
            try:
                port.close()
            except Exception:
                pass


_ESCAPE_RE = re.compile(r"\x9b[0-?]*[ -/]*[@-~]|\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-_])")


def printable(text: str, limit: int = 200) -> str:
    """``text`` as one printable line for a terminal: ANSI/VT escape sequences and every
    control character (C0, DEL, C1) removed, runs of spaces collapsed, at most ``limit``
    characters.  For identity strings a device sends (``*IDN?``, ``#v``)."""
    text = "".join(c for c in _ESCAPE_RE.sub("", text) if c.isprintable() and c != "\ufffd")
    return " ".join(text.split())[:limit]
