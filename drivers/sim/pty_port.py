"""A pseudo-terminal that stands in for a USB serial port, with a stable path.

The simulator owns the master end; the driver opens ``path``, a symlink to the pty's
slave (like udev's ``/dev/serial/by-id/...`` links).  ``unplug()`` closes the pty, so
the driver's next read or write fails the way a yanked USB adapter does (EIO / empty
reads); ``replug()`` makes a fresh pty and re-points the link, as udev would.
"""

from __future__ import annotations

import os
import pty
import select
import tempfile
import termios
import tty


class PtyPort:
    def __init__(self, name: str = "ttySIM", directory: str | None = None) -> None:
        self.dir = directory or tempfile.mkdtemp(prefix="calibrate-sim-")
        self.path = os.path.join(self.dir, name)
        self.master: int | None = None
        self._slave: int | None = None
        self.replug()

    def replug(self) -> None:
        self.unplug()
        master, slave = pty.openpty()
        for fd in (master, slave):
            tty.setraw(fd)
            attrs = termios.tcgetattr(fd)
            attrs[3] &= ~termios.ECHO
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        # Keep the slave fd open ourselves so the master never sees a hang-up between
        # driver connections (a real meter stays powered while the cable is re-opened).
        self.master, self._slave = master, slave
        tmp = self.path + ".new"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.path)

    def unplug(self) -> None:
        for fd in (self.master, self._slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.master = self._slave = None
        if os.path.lexists(self.path):
            os.unlink(self.path)

    @property
    def plugged(self) -> bool:
        return self.master is not None

    def read(self, timeout_s: float) -> bytes:
        """Bytes the driver sent (b"" on timeout or while unplugged)."""
        fd = self.master
        if fd is None:
            return b""
        try:
            r, _, _ = select.select([fd], [], [], timeout_s)
            return os.read(fd, 4096) if r else b""
        except OSError:
            return b""

    def write(self, data: bytes) -> None:
        if self.master is not None:
            try:
                os.write(self.master, data)
            except OSError:
                pass

    def close(self) -> None:
        self.unplug()
        try:
            os.rmdir(self.dir)
        except OSError:
            pass
