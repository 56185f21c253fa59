"""workloads.process_group.terminate_group: SIGTERM to the group, SIGKILL after the grace time."""

from __future__ import annotations

import subprocess
import time

import pytest

from workloads.process_group import terminate_group


def _start(script: str) -> subprocess.Popen:
    return subprocess.Popen(["sh", "-c", script], start_new_session=True, stdout=subprocess.PIPE, text=True)


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for whoever adopted it counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_sigterm_ends_the_group():
    proc = _start("sleep 30")
    terminate_group(proc, grace_s=5.0)
    assert proc.returncode == -15


def test_sigkill_after_the_grace_time_reaches_the_children():
    proc = _start("trap '' TERM; sh -c \"trap '' TERM; sleep 30\" & echo $!; wait")
    child = int(proc.stdout.readline())
    t = time.monotonic()
    terminate_group(proc, grace_s=0.3)
    assert proc.returncode == -9 and 0.3 <= time.monotonic() - t < 5
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:  # re-parented, reaped by init
        time.sleep(0.02)
    assert not _alive(child)


def test_no_grace_kills_at_once():
    proc = _start("sleep 30")
    terminate_group(proc, grace_s=0)
    assert proc.returncode == -9


@pytest.mark.parametrize("grace_s", [0, 1.0])
def test_an_exited_process_is_only_reaped(grace_s):
    proc = _start("exit 3")
    proc.stdout.read()
    time.sleep(0.1)
    terminate_group(proc, grace_s=grace_s)
    assert proc.returncode == 3
