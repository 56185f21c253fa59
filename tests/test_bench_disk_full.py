"""A disk that fills up mid-session: the workload stops, what was written is kept and
readable, the session says `failed: disk full`, one line and a non-zero exit."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analysis.load import load_session
from tests.conftest import ROOT


@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    cp = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if cp.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {cp.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(folder: Path) -> int:
    """Fill the file system holding ``folder`` with a file of the test's own; bytes written."""
    n = 0
    with open(folder / "filler", "wb", buffering=0) as fh:
        chunk = b"\0" * 65536
        while True:
            try:
                n += fh.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    return n


def test_disk_full_mid_session(small_tmpfs):
    out = small_tmpfs / "s"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "calibrate.cli", "run", "--meter", "cpu-model?interval=0.01",
                             "--meter", "sim:wattsup?signal=constant:100", "--workload", "idle",
                             "--duration", "60", "--baseline", "0.5", "--out", str(out), "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while not (out / "session.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2.0)  # some rows on disk
        t_full = time.monotonic()
        assert fill(small_tmpfs) > 0
        _, err = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.monotonic() - t_full < 30  # the 60 s workload was stopped, not waited for
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    lines = [x for x in err.strip().splitlines() if x.startswith("calibrate:")]  # notes are not errors
    assert len(lines) == 1 and "disk full" in lines[0], err
    manifest = json.loads((out / "session.json").read_text())
    assert manifest["status"] == "failed" and manifest["failure"].startswith("disk full")
    assert not (out / ".calibrate-reserve").exists()
    data = load_session(out)  # everything flushed before the disk filled is readable
    assert len(data.channels["cpu-model"].ok) > 20
    assert data.status == "failed"
    assert not (out / "report.html").exists()  # no half report
