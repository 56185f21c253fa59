"""Phase markers and metrics from a workload process, on the session clock.

The recorder starts a workload with the write end of a pipe in the environment variable
``CALIBRATE_EVENTS_FD``; each event is one JSON line ``{"t_ns": ..., "kind": ..., ...}``
where ``t_ns`` is ``time.monotonic_ns()`` (CLOCK_MONOTONIC is shared by all processes of
the machine, so workload and recorder stamps are on one clock).  Without the variable
(a workload run by hand) events go nowhere, so user scripts can call :func:`emit` freely.

Kinds: ``phase_start`` / ``phase_end`` (``phase``: warmup, epoch-1, eval-1, ...),
``metric`` (``name``, ``value``, ``unit``, optional ``phase``), ``result`` (final
figures: accuracy, images_per_s, ...), ``log`` (``message``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

ENV_FD = "CALIBRATE_EVENTS_FD"
#: What sends an event: ``emit(kind, **fields)``; :func:`emit` or a test's recorder.
Emit = Callable[..., Any]
_lock = threading.Lock()
_fd: int | None = None
_resolved = False


def _target() -> int | None:
    global _fd, _resolved
    if not _resolved:
        raw = os.environ.get(ENV_FD)
        _fd = int(raw) if raw and raw.isdigit() else None
        _resolved = True
    return _fd


def emit(kind: str, **fields: Any) -> dict[str, Any]:
    """Send one event (stamped now, ns on CLOCK_MONOTONIC); returns it."""
    event = {"t_ns": time.monotonic_ns(), "kind": kind, **fields}
    fd = _target()
    if fd is not None:
        line = (json.dumps(event, default=float) + "\n").encode()
        with _lock:
            try:
                os.write(fd, line)
            except OSError:
                pass  # the recorder went away; the workload goes on
    return event


def _emit_default() -> Emit:
    return emit  # looked up at each call (the ``emit`` parameter of phase() hides the name)


@contextmanager
def phase(name: str, *, emit: Emit | None = None, **fields: Any) -> Iterator[None]:
    """``with phase("epoch-1"):`` emits phase_start / phase_end around the block.

    ``fields`` go with phase_start; phase_end is emitted even when the block raises.
    ``emit`` sends the events (default: this module's :func:`emit`, the events pipe).
    """
    send = _emit_default() if emit is None else emit
    send("phase_start", phase=name, **fields)
    try:
        yield
    finally:
        send("phase_end", phase=name)


def metric(name: str, value: float, unit: str = "", **fields: Any) -> None:
    emit("metric", name=name, value=value, unit=unit, **fields)
