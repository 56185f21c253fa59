"""Stopping a process that was started in its own process group, children included.

A workload (or the user command it runs) is started with ``start_new_session=True``, so
its process id is also its process-group id and everything it spawns is in that group --
unless it leaves (``setsid``).  :func:`terminate_group` stops the group;
:class:`ProcessTree` and :func:`terminate_tree` find and stop every descendant, group or not
(Linux /proc).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass

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


# --------------------------------------------------------------------------- process trees
#
# A process group is not a tree: a child may leave it (``setsid``), and a child whose parent
# exits is re-parented (to init, or to the nearest "child subreaper" ancestor).  A
# :class:`ProcessTree` therefore remembers every process it has seen descend from its root,
# and also claims processes still in the root's session or process group and processes whose
# environment carries the root's token (inherited by everything it starts).

SURVIVOR_GRACE_S = 2.0


@dataclass(frozen=True)
class ProcessInfo:
    """One line of ``/proc/PID/stat``: enough to name a process and to tell it from a later
    process that reuses its pid (``start``, in clock ticks since boot)."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    start: int
    name: str
    state: str

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X")


def read_stat(pid: int) -> ProcessInfo | None:
    """``/proc/PID/stat`` parsed; None when the process is gone (or there is no /proc).

    Read for every process at each tree scan, so without the buffered-I/O layer (one
    ``os.open`` / ``os.read`` / ``os.close``, as :mod:`drivers.kernel_files` does) and split
    only up to ``starttime``: a scan costs about 40 % less than with ``open().read().split()``.
    """
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            raw = os.read(fd, 4096)  # a stat line is a few hundred bytes
        finally:
            os.close(fd)
        lpar, rpar = raw.index(b"("), raw.rindex(b")")
        f = raw[rpar + 2 :].split(None, 20)  # state .. starttime (field 22 of the line)
        return ProcessInfo(pid, int(f[1]), int(f[2]), int(f[3]), int(f[19]),
                           raw[lpar + 1 : rpar].decode("utf-8", "replace"), f[0].decode("ascii", "replace"))
    except (OSError, ValueError, IndexError):
        return None


def processes() -> dict[int, ProcessInfo]:
    """Every process visible in /proc, by pid (empty where there is no /proc)."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return {}
    out = {}
    for name in names:
        if name.isdigit():
            info = read_stat(int(name))
            if info is not None:
                out[info.pid] = info
    return out


def _environ_has(pid: int, entry: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return entry in f.read().split(b"\0")
    except OSError:
        return False


class ProcessTree:
    """Every process descended from ``root`` (a pid), remembered as it is seen.

    :meth:`poll` adds the processes whose parent chain reaches the root or an already known
    member, those in the root's session or process group (started after it), and those whose
    initial environment holds ``token`` (a ``NAME=VALUE`` entry only the root's environment
    was given): the environment is checked for orphans re-parented to ``reaper`` (this process,
    when it is a child subreaper) at each poll, and for every process at :meth:`survivors`.
    The root itself is never a member (its starter waits for it).
    """

    def __init__(self, root: int, token: str | None = None, reaper: int | None = None) -> None:
        self.root = root
        self.token = token.encode() if token else None
        self.reaper = os.getpid() if reaper is None else reaper
        info = read_stat(root)
        self.root_start = info.start if info is not None else 0
        self.members: dict[int, ProcessInfo] = {}
        self._strangers: set[tuple[int, int]] = set()  # (pid, start) checked and not ours

    def _known(self, p: ProcessInfo) -> bool:
        if p.pid == self.root:
            return p.start == self.root_start
        m = self.members.get(p.pid)
        return m is not None and m.start == p.start

    def poll(self, everyone: bool = False) -> dict[int, ProcessInfo]:
        """Scan /proc once and add new members; returns the scan (pid -> info)."""
        procs = processes()
        me = os.getpid()
        verdict: dict[int, bool] = {}  # pid -> descends from the root or a member
        for p in procs.values():
            chain, cur, ours = [], p, False
            for _ in range(len(procs) + 1):  # parent chains are short; the bound is a guard
                if cur is not p and self._known(cur):
                    ours = True
                    break
                if cur.pid in verdict:
                    ours = verdict[cur.pid]
                    break
                chain.append(cur.pid)
                parent = procs.get(cur.ppid)
                if parent is None or cur.ppid <= 1 or cur.ppid == me:
                    break
                cur = parent
            for pid in chain:
                verdict[pid] = ours
        for p in procs.values():
            if p.pid in (self.root, me):
                continue
            if self._known(p):
                self.members[p.pid] = p  # refresh its state and parent
                continue
            later = p.start >= self.root_start
            ours = verdict.get(p.pid, False) or (later and self.root in (p.sid, p.pgid))
            if not ours and later and self.token and (p.pid, p.start) not in self._strangers \
                    and (everyone or p.ppid == self.reaper):
                ours = _environ_has(p.pid, self.token)
                if not ours:
                    self._strangers.add((p.pid, p.start))
            if ours:
                self.members[p.pid] = p
        return procs

    def survivors(self) -> list[ProcessInfo]:
        """The members still running now (a full scan, environments included)."""
        procs = self.poll(everyone=True)
        return [p for pid, p in procs.items()
                if pid in self.members and self.members[pid].start == p.start and p.alive]


def _send(p: ProcessInfo, sig: int) -> bool:
    """``sig`` to ``p`` if the pid still names that very process (pidfd where available)."""
    try:
        fd = os.pidfd_open(p.pid)
    except AttributeError:  # pragma: no cover - Python < 3.9 or not Linux
        fd = None
    except ProcessLookupError:
        return False
    except OSError:  # pragma: no cover - kernel without pidfd_open
        fd = None
    try:
        now = read_stat(p.pid)
        if now is None or now.start != p.start or not now.alive:
            return False
        if fd is not None:
            signal.pidfd_send_signal(fd, sig)
        else:  # pragma: no cover
            os.kill(p.pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
    finally:
        if fd is not None:
            os.close(fd)


def _reap(tree: ProcessTree) -> None:
    """Collect the exit status of members that ended as this process's children."""
    me = os.getpid()
    for p in list(tree.members.values()):
        now = read_stat(p.pid)
        if now is not None and now.start == p.start and now.ppid == me and not now.alive:
            try:
                os.waitpid(p.pid, os.WNOHANG)
            except ChildProcessError:
                pass


def terminate_tree(tree: ProcessTree, grace_s: float = SURVIVOR_GRACE_S) -> list[tuple[ProcessInfo, bool]]:
    """End every member of ``tree`` still running: SIGTERM, up to ``grace_s`` s for them to
    exit, SIGKILL to the rest (and to any they started meanwhile), then reap those that were
    re-parented to this process.  Returns what was found running, each with whether it
    needed SIGKILL; the root is left to its starter (:func:`terminate_group`)."""
    found: dict[int, ProcessInfo] = {p.pid: p for p in tree.survivors()}
    if not found:
        _reap(tree)
        return []
    for p in found.values():
        _send(p, signal.SIGTERM)
    deadline = time.monotonic() + max(grace_s, 0.0)
    alive = list(found.values())
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        _reap(tree)
        alive = tree.survivors()
        for p in alive:
            if p.pid not in found:  # started while we waited
                found[p.pid] = p
                _send(p, signal.SIGTERM)
    killed: set[int] = set()
    for _ in range(50):  # SIGKILL cannot be ignored; a few rounds catch last-moment forks
        alive = tree.survivors()
        if not alive:
            break
        for p in alive:
            found.setdefault(p.pid, p)
            if _send(p, signal.SIGKILL):
                killed.add(p.pid)
        time.sleep(0.02)
        _reap(tree)
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        _reap(tree)
        if not any((n := read_stat(p.pid)) is not None and n.start == p.start and n.ppid == os.getpid()
                   for p in found.values()):
            break
        time.sleep(0.01)
    return [(p, p.pid in killed) for p in found.values()]
