"""Kernel attribute files (sysfs, procfs) read again and again, cheaply.

A software meter polls a few small files many times a second (RAPL ``energy_uj``,
``/proc/stat``).  What that costs is what the recorder adds to the machine it measures,
so the hot path avoids Python's text I/O stack: ``open()`` builds a buffered reader and a
``TextIOWrapper`` (about 27 us here), while ``os.open`` + ``os.read`` + ``os.close`` costs
about 6 us on a regular file and 12 us on sysfs.

Files the kernel generates on every read (sysfs attributes, procfs seq files) are kept
open and re-read with ``pread(fd, n, 0)``: a read at offset 0 makes sysfs call the
attribute's ``show()`` again and makes a seq file restart, so the value is fresh (procps'
``top`` reads ``/proc/stat`` this way), at about 1.3 us per sysfs read.  Any other file --
a copied tree, a test fake that is replaced by rename -- is opened for every read, since
a kept descriptor would go on reading the replaced file.  The filesystem is taken from
``/proc/self/mountinfo`` (the longest mount point above the file's real path).
"""

from __future__ import annotations

import errno
import os
from functools import lru_cache

#: filesystems whose files the kernel regenerates on each read at offset 0
KERNEL_FS = frozenset({"sysfs", "proc"})
#: errors that mean the file (or the device behind it) is gone: a vanished zone, an unplugged device
GONE = frozenset({errno.ENOENT, errno.ENODEV, errno.ENXIO, errno.ESTALE})
READ_SIZE = 4096  # bytes per read: a whole sysfs attribute page, /proc/stat's first lines


@lru_cache(maxsize=1)
def _mounts() -> tuple[tuple[str, str], ...]:
    """(mount point, filesystem type) of this process's mounts, longest mount point first."""
    out: list[tuple[str, str]] = []
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                fields, rfields = left.split(), right.split()
                if len(fields) >= 5 and rfields:
                    point = fields[4].replace("\\040", " ")
                    out.append((point, rfields[0]))
    except OSError:
        pass
    out.sort(key=lambda m: len(m[0]), reverse=True)
    return tuple(out)


def filesystem_of(path: str | os.PathLike[str]) -> str | None:
    """Type of the filesystem holding ``path`` (``sysfs``, ``proc``, ``ext4``...), or None if unknown."""
    real = os.path.realpath(os.fspath(path))
    for point, fstype in _mounts():
        if real == point or real.startswith(point.rstrip("/") + "/"):
            return fstype
    return None


def read_bytes(path: str | os.PathLike[str], size: int = READ_SIZE) -> bytes:
    """The first ``size`` bytes of a file with one open/read/close (no text I/O layer)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


class AttrFile:
    """One attribute file polled repeatedly; :meth:`read` returns its current bytes.

    ``keep_open`` None decides from the filesystem (kept open on sysfs and procfs only).
    Raises what ``os.open``/``os.read`` raise: PermissionError, FileNotFoundError, or
    OSError with ENODEV when a kept-open sysfs attribute's device went away.
    """

    __slots__ = ("path", "keep_open", "size", "_fd")

    def __init__(self, path: str | os.PathLike[str], keep_open: bool | None = None,
                 size: int = READ_SIZE) -> None:
        self.path = os.fspath(path)
        self.keep_open = filesystem_of(self.path) in KERNEL_FS if keep_open is None else keep_open
        self.size = size
        self._fd: int | None = None

    def read(self) -> bytes:
        if not self.keep_open:
            return read_bytes(self.path, self.size)
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.pread(self._fd, self.size, 0)
        except OSError:
            self.close()  # the next read opens afresh (or reports the file gone)
            raise

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass

    def __del__(self) -> None:
        self.close()
