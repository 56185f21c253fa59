"""Sessions: the library API and the manifest.

::

    from calibrate import Session

    with Session(["sim:wattsup", "cpu-model"], out="sessions/mine") as s:
        with s.window("epoch-1"):
            train_one_epoch()
        s.mark("checkpoint", step=1000)

Opening a session opens every meter (a misconfigured meter raises
:class:`drivers.base.MeterConfigError` before anything is recorded), writes
``session.json`` with status ``recording``, and starts the recorder.  Leaving the block
stops it and rewrites the manifest with status ``complete`` (``failed`` or
``interrupted`` if the block raised).  A session whose recorder was killed keeps status
``recording`` on disk; the loader reports it as incomplete.
"""

from __future__ import annotations

import errno
import getpass
import os
import platform
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from analysis.session_format import EVENTS_FILE, FORMAT, EventWriter, claim_folder, write_manifest
from calibrate.clock import ClockAnchor, take_anchor
from calibrate.recorder import Recorder
from calibrate.remote import RemoteHosts, is_agent_uri
from drivers.base import Meter
from drivers.registry import make_meter

RESERVE_FILE = ".calibrate-reserve"
RESERVE_BYTES = 1 << 20  # room kept back to close a session on a full disk (1 MiB)

VERSIONED = ("calibrate", "numpy", "scipy", "pandas", "matplotlib", "pyserial", "pymodbus",
             "nvidia-ml-py", "torch", "torchvision", "codecarbon")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def host_info() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    return {"hostname": socket.gethostname(), "platform": platform.platform(), "cpu": cpu,
            "cpus": os.cpu_count(), "memory_bytes": mem, "python": sys.version.split()[0],
            "user": _user()}


def _user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:
        return None


def new_session_dir(base: Path | str = "sessions", label: str = "session") -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in label)[:40]
    return Path(base) / f"{stamp}-{safe}-{uuid.uuid4().hex[:4]}"


class Session:
    """Record meters on one clock into a session folder (see module doc)."""

    def __init__(self, meters: Sequence[str | Meter], out: str | Path | None = None,
                 workload: dict[str, Any] | None = None, reference: str | None = None,
                 uris: Sequence[str] | None = None, notes: str | None = None,
                 on_failure: Callable[[str], None] | None = None,
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.clock = clock  # the session clock (ns); CLOCK_MONOTONIC but in tests of other hosts
        agents = [m for m in meters if is_agent_uri(m)]
        meters = [m for m in meters if not is_agent_uri(m)]
        #: the agents on other hosts (``agent://`` meters), or None
        self.remote = RemoteHosts(agents, clock=clock) if agents else None
        self.meters: list[Meter] = [make_meter(m) if isinstance(m, str) else m for m in meters]
        self.uris = ([u for u in uris if not is_agent_uri(u)] if uris is not None
                     else [m if isinstance(m, str) else m.kind for m in meters])
        label = (workload or {}).get("name", "session")
        self.path = Path(out) if out else new_session_dir(label=label)
        self.workload: dict[str, Any] = dict(workload or {})
        self.reference = reference
        self.notes = notes
        self.anchor: ClockAnchor | None = None
        self.status = "new"
        self.recorder: Recorder | None = None
        self.events: EventWriter | None = None
        self.start_ns = 0
        self.end_ns: int | None = None
        self.extra: dict[str, Any] = {}
        #: why recording failed (a full disk), or None; ``on_failure`` hears it once, at once
        self.failure: str | None = None
        self.on_failure = on_failure
        self._failure_lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> Session:
        Recorder.check_names(self.meters)  # before anything is created on disk
        if self.remote is not None:
            self.remote.connect()  # UsageError (one line) before anything is recorded
        try:
            made_dir = claim_folder(self.path)  # FileExistsError unless new or empty
        except BaseException:
            if self.remote is not None:
                for link in self.remote.links:
                    link.client.close()
            raise
        self.events = EventWriter(self.path / EVENTS_FILE, on_error=self._write_failed)
        self.recorder = Recorder(self.meters, self.path, self.events, on_write_error=self._write_failed,
                                 clock=self.clock)
        self._reserve()
        try:
            self.recorder.open_all()
        except BaseException:  # undo what this call created, and only that
            self.events.close()
            (self.path / EVENTS_FILE).unlink(missing_ok=True)
            self._release_reserve()
            if made_dir:
                try:
                    self.path.rmdir()
                except OSError:
                    pass
            raise
        self.anchor = take_anchor(clock=self.clock)
        self.start_ns = self.anchor.monotonic_ns
        self.status = "recording"
        self.write_manifest()
        self.recorder.start()
        self.mark("session_start")
        if self.remote is not None:
            self.remote.start(self.path, self.path.name, self.workload, self.events.write)
            self.write_manifest()
        return self

    def stop(self, status: str = "complete") -> None:
        if self.status != "recording":
            return
        self.mark("session_end", status=status)
        assert self.recorder is not None and self.events is not None
        self.recorder.stop()
        self.end_ns = self.clock()
        if self.remote is not None:
            try:
                self.remote.finish(status)
            except Exception as exc:  # the local session must close whatever an agent did
                self.extra["remote_error"] = f"{type(exc).__name__}: {exc}"[:300]
        if self.failure:
            status = "failed"
            self.extra["failure"] = self.failure
        self.status = status
        self._release_reserve()
        try:
            self.write_manifest()
        except OSError as exc:  # the disk is full even after the reserve: the loader will say incomplete
            self._write_failed(exc)
        self.events.close()

    # -- a full disk --------------------------------------------------------------------
    def _reserve(self) -> None:
        """Set aside RESERVE_BYTES in the session folder, so that a session whose disk fills
        up can still close its files and write its final manifest (the reserve is released
        then, and at every stop)."""
        try:
            fd = os.open(self.path / RESERVE_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            return
        try:
            os.posix_fallocate(fd, 0, RESERVE_BYTES)
        except (OSError, AttributeError):
            pass  # no room to reserve (or no fallocate): the stop may then not be written
        finally:
            os.close(fd)

    def _release_reserve(self) -> None:
        (self.path / RESERVE_FILE).unlink(missing_ok=True)

    def _write_failed(self, exc: OSError) -> None:
        """A trace or event could not be written: record why, free the reserve, tell once."""
        with self._failure_lock:
            if self.failure is not None:
                return
            what = "disk full" if exc.errno == errno.ENOSPC else "write failed"
            self.failure = f"{what}: {exc.strerror or exc}"
        self._release_reserve()
        if self.on_failure is not None:
            self.on_failure(self.failure)

    def __enter__(self) -> Session:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is None:
            self.stop("complete")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.stop("interrupted")
        else:
            self.stop("failed")

    # -- events -----------------------------------------------------------------------
    def mark(self, kind: str, t_ns: int | None = None, **fields: Any) -> None:
        """Record an event now (or at ``t_ns``, ns on the session clock)."""
        if self.events is None:
            raise RuntimeError("session not started")
        self.record({"t_ns": t_ns if t_ns is not None else self.clock(), "kind": kind, **fields})

    def record(self, event: dict[str, Any]) -> None:
        """Write an event that already has its ``t_ns`` and ``kind`` (the workload's own), and
        forward it to the agents of other hosts (a phase boundary triggers a clock probe burst)."""
        if self.events is None:
            raise RuntimeError("session not started")
        self.events.write(event)
        if self.remote is not None and self.remote.links:
            self.remote.on_mark(event)

    def begin(self, phase: str, **fields: Any) -> None:
        self.mark("phase_start", phase=phase, **fields)

    def end(self, phase: str, **fields: Any) -> None:
        self.mark("phase_end", phase=phase, **fields)

    @contextmanager
    def window(self, phase: str, **fields: Any) -> Iterator[None]:
        """``with s.window("epoch-1"):`` marks the start and end of a phase."""
        self.begin(phase, **fields)
        try:
            yield
        finally:
            self.end(phase)

    # -- manifest ---------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        assert self.anchor is not None
        return {
            "format": FORMAT,
            "status": self.status,
            "created_utc": datetime.fromtimestamp(self.anchor.utc_ns / 1e9, timezone.utc).isoformat(),
            "clock": {"source": "CLOCK_MONOTONIC", "unit": "ns", "anchor": self.anchor.to_json(),
                      "start_ns": self.start_ns, "end_ns": self.end_ns},
            "host": host_info(),
            "versions": package_versions(),
            "reference": self.reference,
            "meters": [
                {"uri": uri, **m.describe(), "channels": [c.to_json() for c in m.channels]}
                for uri, m in zip(self.uris, self.meters)
            ] + (self.remote.meters if self.remote is not None else []),
            **({"hosts": self.remote.describe()} if self.remote is not None else {}),
            "workload": self.workload,
            "recorder": self.recorder.summary() if self.recorder and self.end_ns else None,
            "notes": self.notes,
            **self.extra,
        }

    def write_manifest(self) -> None:
        write_manifest(self.path, self.manifest())
