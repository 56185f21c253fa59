"""Stopping a process that was started in its own process group, children included.

A workload (or the user command it runs) is started with ``start_new_session=True``, so
its process id is also its process-group id and everything it spawns is in that group.
"""

from __future__ import annotations

import os
import signal
import subprocess

GRACE_S = 5.0


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    """``sig`` to ``proc``'s process group; to ``proc`` alone when the group cannot be signalled."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


def terminate_group(proc: subprocess.Popen, grace_s: float = GRACE_S) -> None:
    """Stop the process group led by ``proc`` and reap ``proc``.

    SIGTERM to the group, wait up to ``grace_s`` s for ``proc`` to exit, then SIGKILL to the
    group and wait for ``proc``.  ``grace_s <= 0`` sends SIGKILL at once (no SIGTERM).
    When the group is gone (or not ours to signal) the signal goes to ``proc`` alone; a
    process that has already exited is only reaped.  ``proc.returncode`` is set on return.
    """
    if grace_s > 0:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            pass
    _signal_group(proc, signal.SIGKILL)
    proc.wait()
