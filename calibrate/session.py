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

import getpass
import os
import platform
import socket
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from analysis.session_format import EVENTS_FILE, FORMAT, EventWriter, claim_folder, write_manifest
from calibrate.clock import ClockAnchor, take_anchor
from calibrate.recorder import Recorder
from drivers.base import Meter
from drivers.registry import make_meter

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
                 uris: Sequence[str] | None = None, notes: str | None = None) -> None:
        self.meters: list[Meter] = [make_meter(m) if isinstance(m, str) else m for m in meters]
        self.uris = list(uris) if uris is not None else [m if isinstance(m, str) else m.kind for m in meters]
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

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> Session:
        Recorder.check_names(self.meters)  # before anything is created on disk
        made_dir = claim_folder(self.path)  # FileExistsError unless new or empty
        self.events = EventWriter(self.path / EVENTS_FILE)
        self.recorder = Recorder(self.meters, self.path, self.events)
        try:
            self.recorder.open_all()
        except BaseException:  # undo what this call created, and only that
            self.events.close()
            (self.path / EVENTS_FILE).unlink(missing_ok=True)
            if made_dir:
                try:
                    self.path.rmdir()
                except OSError:
                    pass
            raise
        self.anchor = take_anchor()
        self.start_ns = self.anchor.monotonic_ns
        self.status = "recording"
        self.write_manifest()
        self.recorder.start()
        self.mark("session_start")
        return self

    def stop(self, status: str = "complete") -> None:
        if self.status != "recording":
            return
        self.mark("session_end", status=status)
        assert self.recorder is not None and self.events is not None
        self.recorder.stop()
        self.end_ns = time.monotonic_ns()
        self.status = status
        self.write_manifest()
        self.events.close()

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
        self.events.write({"t_ns": t_ns if t_ns is not None else time.monotonic_ns(), "kind": kind, **fields})

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
            ],
            "workload": self.workload,
            "recorder": self.recorder.summary() if self.recorder and self.end_ns else None,
            "notes": self.notes,
            **self.extra,
        }

    def write_manifest(self) -> None:
        write_manifest(self.path, self.manifest())
