"""Phase markers and metrics from a workload process, on the session clock.

The recorder starts a workload with the write end of a pipe in the environment variable
``CALIBRATE_EVENTS_FD``; each event is one JSON line ``{"t_ns": ..., "kind": ..., ...}``
where ``t_ns`` is ``time.monotonic_ns()`` (CLOCK_MONOTONIC is shared by all processes of
the machine, so workload and recorder stamps are on one clock).  Without the variable
(a workload run by hand) events go nowhere, so user scripts can call :func:`emit` freely.

A process the recorder did not start itself (a worker torchrun started, which does not
inherit the descriptor) opens the pipe through ``CALIBRATE_EVENTS_PATH``
(``/proc/<recorder pid>/fd/<read end>``, which Linux reopens as the same pipe): it knows it
is not the direct child because its parent is not ``CALIBRATE_EVENTS_PARENT``.  Under
torch.distributed every event carries ``rank`` and ``host``; ranks other than 0 send their
phase markers, metrics and result as ``rank_phase_start``, ``rank_phase_end``,
``rank_metric`` and ``rank_result``, so every rank's phases are kept, tagged, and the
session's phases and result are rank 0's (its result holds the global figures).

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
ENV_PATH = "CALIBRATE_EVENTS_PATH"
ENV_PARENT = "CALIBRATE_EVENTS_PARENT"
RANKED = ("phase_start", "phase_end", "metric", "result")
#: What sends an event: ``emit(kind, **fields)``; :func:`emit` or a test's recorder.
Emit = Callable[..., Any]
_lock = threading.Lock()
_fd: int | None = None
_resolved = False


_tags: dict[str, Any] | None = None


def _target() -> int | None:
    global _fd, _resolved
    if not _resolved:
        _resolved = True
        raw, parent = os.environ.get(ENV_FD), os.environ.get(ENV_PARENT)
        if parent and parent.isdigit() and int(parent) != os.getppid():
            # not the recorder's own child: the inherited number may name another file here
            path = os.environ.get(ENV_PATH, "")
            try:
                _fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC) if path.startswith("/proc/") else None
            except OSError:
                _fd = None
        else:
            _fd = int(raw) if raw and raw.isdigit() else None
    return _fd


def rank_tags() -> dict[str, Any]:
    """``{"rank": R, "host": NAME}`` under torch.distributed (RANK set by torchrun), else {}."""
    global _tags
    if _tags is None:
        import socket

        raw = os.environ.get("RANK", "")
        _tags = {"rank": int(raw), "host": socket.gethostname()} if raw.isdigit() else {}
    return _tags


def emit(kind: str, **fields: Any) -> dict[str, Any]:
    """Send one event (stamped now, ns on CLOCK_MONOTONIC); returns it."""
    tags = rank_tags()
    if tags.get("rank", 0) != 0 and kind in RANKED:
        kind = f"rank_{kind}"
    event = {"t_ns": time.monotonic_ns(), "kind": kind, **fields, **tags}
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
