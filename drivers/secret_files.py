"""Reading a secret (a password file, a bearer token) from a file, never from the command line.

One checked reader for every driver that needs a secret: the file must be a regular file
(not a FIFO or device that could block), unreadable by group and others (chmod 600), and
at most ``max_bytes``.  Every problem is a one-line MeterConfigError that names the file
and never quotes its contents.
"""

from __future__ import annotations

import stat
from pathlib import Path

from drivers.base import MeterConfigError

MAX_SECRET_BYTES = 4096


def read_secret_file(path: str, what: str, max_bytes: int = MAX_SECRET_BYTES, encoding: str = "utf-8") -> str:
    """The text of secret file ``path`` (``what`` names it in messages, e.g.
    ``"redfish: credentials file"``), decoded with ``encoding``."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except OSError as exc:
        raise MeterConfigError(f"{what} {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise MeterConfigError(f"{what} {path} is not a regular file")
    if st.st_mode & 0o077:
        raise MeterConfigError(f"{what} {path} is readable by group or others "
                               f"(mode {stat.S_IMODE(st.st_mode):03o}); run chmod 600 {path}")
    if st.st_size > max_bytes:
        raise MeterConfigError(f"{what} {path} is larger than {max_bytes} bytes")
    try:
        return p.read_bytes()[: max_bytes + 1].decode(encoding)
    except (OSError, UnicodeDecodeError) as exc:
        raise MeterConfigError(f"{what}: cannot read {path} ({type(exc).__name__})") from None
