"""Kernel attribute files: kept open and re-read with pread on sysfs/procfs, reopened elsewhere."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from drivers.base import MeterDisconnected
from drivers.cpu_model import parse_proc_stat
from drivers.fakes.powercap import FakePowercap, typical_zones
from drivers.kernel_files import KERNEL_FS, AttrFile, filesystem_of
from drivers.rapl import RaplMeter

SYSFS_ATTR = Path("/sys/devices/system/cpu/online")


def test_filesystems_are_told_apart(tmp_path) -> None:
    assert filesystem_of("/proc/stat") == "proc"
    assert filesystem_of(tmp_path) not in KERNEL_FS
    if SYSFS_ATTR.exists():
        assert filesystem_of(SYSFS_ATTR) == "sysfs"


def test_a_kept_open_proc_file_gives_fresh_values() -> None:
    """One descriptor, read again at offset 0: the kernel regenerates /proc/stat each time."""
    f = AttrFile("/proc/stat")
    assert f.keep_open
    busy0, total0 = parse_proc_stat(f.read())
    fd = f._fd
    end = time.monotonic() + 0.15
    while time.monotonic() < end:  # burn CPU so the jiffies advance
        pass
    busy1, total1 = parse_proc_stat(f.read())
    assert f._fd == fd  # the same descriptor, not reopened
    assert total1 > total0 and busy1 > busy0
    f.close()
    assert f._fd is None


@pytest.mark.skipif(not SYSFS_ATTR.exists(), reason="no sysfs here")
def test_a_kept_open_sysfs_attribute_reads_whole_each_time() -> None:
    f = AttrFile(SYSFS_ATTR)
    assert f.keep_open
    first = f.read()
    assert first == f.read() == SYSFS_ATTR.read_bytes()  # from offset 0 every time
    f.close()


def test_a_regular_file_replaced_by_rename_is_read_anew(tmp_path) -> None:
    p = tmp_path / "energy_uj"
    p.write_text("100\n")
    f = AttrFile(p)
    assert not f.keep_open and f.read() == b"100\n"
    tmp = tmp_path / ".energy_uj.tmp"
    tmp.write_text("250\n")
    os.replace(tmp, p)  # how the fake powercap tree updates a counter
    assert f.read() == b"250\n"
    stale = AttrFile(p, keep_open=True)
    stale.read()
    tmp.write_text("999\n")
    os.replace(tmp, p)
    assert stale.read() == b"250\n"  # why regular files are never kept open
    stale.close()


def test_a_zone_whose_device_is_gone_is_a_disconnect(tmp_path, monkeypatch) -> None:
    """A kept-open sysfs attribute whose device went away fails with ENODEV, not ENOENT."""
    fake = FakePowercap(tmp_path, typical_zones(dram=False))
    m = RaplMeter(root=fake.root)
    m.open()
    m.read()

    class Gone(AttrFile):
        def read(self) -> bytes:
            raise OSError(errno.ENODEV, "No such device")

    monkeypatch.setattr(m.zones[1], "energy_file", Gone(m.zones[1].path / "energy_uj"))
    with pytest.raises(MeterDisconnected, match="vanished"):
        m.read()
    m.close()
    assert [c.id for c in m.open()] == ["rapl.package-0", "rapl.package-0.core"]
