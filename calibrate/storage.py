"""The on-disk session format (``calibrate-session/1``).

A session folder holds::

    session.json        manifest: clock anchor, host, meters and channels, workload, status
    traces/<id>.csv     one file per channel: t_ns,rtt_ns,flag,<quantities...>
    events.jsonl        phase markers, metrics, meter faults: {"t_ns":..., "kind":..., ...}

Trace rows are appended and flushed at least twice a second, so a recorder killed with
SIGKILL leaves every flushed row readable (a torn last line is dropped on load).  A row
with a non-empty ``flag`` is a fault (timeout, garbage, crc, exception, nan, range,
disconnected, reconnected, error) and carries no values; energy counters restart after
``disconnected``/``reconnected`` rows, so analysis never differences across them.
``session.json`` is rewritten atomically (temp file + rename).
"""

from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path
from typing import Any

FORMAT = "calibrate-session/1"
TRACE_DIR = "traces"
EVENTS_FILE = "events.jsonl"
MANIFEST_FILE = "session.json"
BASE_COLUMNS = ("t_ns", "rtt_ns", "flag")


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as fh:
        json.dump(data, fh, indent=2, default=_json_default)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def _fmt(v: float) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if not math.isfinite(v):
            return ""
        return repr(v) if abs(v) >= 1e-4 or v == 0 else f"{v:.9g}"
    return str(v)


class TraceWriter:
    """Appends rows to one channel's CSV; thread-safe; ``flush()`` from any thread."""

    def __init__(self, path: Path, quantities: tuple[str, ...]) -> None:
        self.path = path
        self.quantities = quantities
        new = not path.exists()
        self._fh = path.open("a", buffering=1 << 16)
        self._lock = threading.Lock()
        self._dirty = False
        if new:
            self._fh.write(",".join((*BASE_COLUMNS, *quantities)) + "\n")
            self._dirty = True
        self.rows = 0

    def write(self, t_ns: int, rtt_ns: int, values: dict[str, float] | None, flag: str = "") -> None:
        if values:
            try:  # fast path (the recorder's hot loop): every quantity present and plainly printable
                cells = ",".join([repr(values[q]) for q in self.quantities])
                plain = "n" not in cells and "e-" not in cells  # no nan/inf, no tiny value
            except KeyError:
                plain = False
            if not plain:
                cells = ",".join([_fmt(values.get(q)) for q in self.quantities])
        else:
            cells = "," * (len(self.quantities) - 1) if self.quantities else ""
        line = f"{t_ns},{rtt_ns},{flag},{cells}\n"
        with self._lock:
            if self._fh.closed:  # a straggling thread after stop: nothing more to record
                return
            self._fh.write(line)
            self._dirty = True
            self.rows += 1

    def flush(self) -> None:
        with self._lock:
            if self._dirty and not self._fh.closed:
                self._fh.flush()
                self._dirty = False

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.flush()
                self._fh.close()


class EventWriter:
    """Appends JSON lines to ``events.jsonl``; thread-safe; each line flushed at once."""

    def __init__(self, path: Path) -> None:
        self._fh = path.open("a", buffering=1)
        self._lock = threading.Lock()

    def write(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, default=_json_default) + "\n"
        with self._lock:
            if not self._fh.closed:
                self._fh.write(line)

    def write_raw(self, line: str) -> None:
        """A line that is already JSON (from the workload pipe); validated by the caller."""
        with self._lock:
            if not self._fh.closed:
                self._fh.write(line if line.endswith("\n") else line + "\n")

    def close(self) -> None:
        with self._lock:
            self._fh.close()


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST_FILE
    with path.open() as fh:
        return json.load(fh)
