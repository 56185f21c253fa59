"""The workload process: started with an events pipe, watched, and ended on time.

The workload runs in its own process (its own process group); its phase markers and
results arrive over a pipe (``CALIBRATE_EVENTS_FD``, the protocol of :mod:`workloads.events`)
and are written to the session's events file with their own stamps (same clock), each
validated on arrival (:func:`accept_event`).

Nothing it starts outlives it: while it runs, this process is a child subreaper (Linux), so
orphans of the workload's descendants are re-parented here rather than to init, and a
:class:`~workloads.process_group.ProcessTree` remembers every descendant (parent chain, the
workload's session and group, and a token in the environment it hands down).  When the
workload ends or is stopped, whatever is left is terminated and reported
(``workload_survivors``).
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calibrate.session import Session
from workloads.events import ENV_FD, ENV_PARENT, ENV_PATH
from workloads.process_group import ProcessTree, terminate_group, terminate_tree


@dataclass
class WorkloadRun:
    """What the bench knows of a running workload process."""

    argv: list[str]
    phase: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    returncode: int | None = None
    terminated: bool = False  # ended by us (at --duration or on interrupt)
    bad_lines: int = 0  # event lines refused whole (not JSON, no kind, bad stamp, over MAX_LINE)
    bad_fields: int = 0  # fields dropped from accepted events (wrong type, non-finite, ...)
    survivors: list[dict[str, Any]] = field(default_factory=list)  # {pid, name, killed}: left running
    pump_cpu_s: float = 0.0  # CPU time of the thread that read the events pipe (recorder overhead)
    watch_cpu_s: float = 0.0  # CPU time of watching the process tree and ending survivors
    output_cpu_s: float = 0.0  # CPU time of the thread that tees its output (``output=``)
    started_at: float | None = None  # time.monotonic() when it was started (s)
    epoch: int | None = None  # N of its latest epoch-N / eval-N phase


@dataclass(frozen=True)
class WorkloadProgress:
    """What a progress display shows of the workload (None: not known)."""

    phase: str | None  # its own phase (setup, warmup, epoch-2, eval-2, ...)
    elapsed_s: float | None  # since it was started (s)
    epoch: int | None = None
    epochs: int | None = None  # of how many (from its ``epochs`` parameter)
    step: int | None = None  # its latest ``step`` / ``steps`` metric or result
    images_per_s: float | None = None  # its latest ``images_per_s`` metric
    metrics: dict[str, float] = field(default_factory=dict)


def _phase_epoch(phase: str) -> int | None:
    """N of ``epoch-N`` or ``eval-N`` (the CNN workloads' phases), else None."""
    head, _, tail = phase.rpartition("-")
    if head in ("epoch", "eval") and tail.isdigit() and len(tail) <= 9:
        return int(tail)
    return None


def workload_progress(run: WorkloadRun, params: dict[str, Any] | None = None) -> WorkloadProgress:
    """A snapshot of ``run`` for a progress display; ``params`` give the epoch count."""
    params = params or {}
    epochs = params.get("epochs")
    step = run.metrics.get("step", run.metrics.get("steps", run.result.get("steps")))
    ips = run.metrics.get("images_per_s", run.result.get("images_per_s"))
    return WorkloadProgress(
        phase=run.phase,
        elapsed_s=time.monotonic() - run.started_at if run.started_at is not None else None,
        epoch=run.epoch,
        epochs=epochs if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0 else None,
        step=int(step) if _is_number(step) else None,
        images_per_s=float(ips) if _is_number(ips) else None,
        metrics=dict(run.metrics),
    )


MAX_SKEW_NS = 86_400 * 10**9  # an event stamp more than a day from now is not on our clock
MAX_LINE = 64 * 1024  # bytes; a longer event line is refused (and skipped to its newline)
MAX_STRING = 1000  # characters kept of a string field (longer ones are truncated)
MAX_NAME = 100  # characters of a phase / metric name (a longer one is refused)
MAX_FIELDS = 100  # fields per event
MAX_ITEMS = 1000  # items of a list / dict inside a field
MAX_DEPTH = 4  # nesting of lists / dicts inside a field
MAX_INT = 2**63 - 1  # an integer field must fit an int64 column
#: fields that are numbers wherever they appear in a result or metric (null: not measured)
NUMERIC_FIELDS = frozenset({
    "accuracy", "loss", "val_loss", "val_accuracy", "images_per_s", "value", "duration_s",
    "train_s", "warmup_s", "samples_seen", "steps", "epochs_completed", "energy_j", "cpu_s",
    "busy_s", "mean_utilisation", "target_utilisation", "bytes_moved", "gb_per_s", "tflops",
    "matmuls", "threads", "parameters", "trainable_parameters", "image_size", "batch_size",
    "num_classes", "returncode", "eval_s", "val_images", "val_samples", "lr",
})
_RESERVED = ("t_ns", "kind", "source")
_INVALID = object()


def _is_number(v: Any) -> bool:
    """A finite real number: int (int64 range) or float; not bool, not a string."""
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return -MAX_INT - 1 <= v <= MAX_INT
    return isinstance(v, float) and math.isfinite(v)


def _is_name(v: Any) -> bool:
    """A short printable name (phase, metric): 1..MAX_NAME characters, no control characters."""
    return isinstance(v, str) and 0 < len(v) <= MAX_NAME and v.isprintable()


def _clean(v: Any, depth: int = 0) -> Any:
    """A field value made safe to record, or _INVALID: strings truncated, numbers finite,
    containers bounded (an invalid item inside a container invalidates the whole field)."""
    if v is None or isinstance(v, bool) or _is_number(v):
        return v
    if isinstance(v, str):
        return v[:MAX_STRING]
    if depth >= MAX_DEPTH:
        return _INVALID
    if isinstance(v, list) and len(v) <= MAX_ITEMS:
        items = [_clean(x, depth + 1) for x in v]
        return _INVALID if any(x is _INVALID for x in items) else items
    if isinstance(v, dict) and len(v) <= MAX_ITEMS:
        out = {k[:MAX_NAME]: _clean(x, depth + 1) for k, x in v.items()}
        return _INVALID if any(x is _INVALID for x in out.values()) else out
    return _INVALID


def _validate_fields(event: dict, run: WorkloadRun) -> bool:
    """Drop (and count in ``run.bad_fields``) every invalid field of ``event``, in place.

    ``result`` / ``metric``: the :data:`NUMERIC_FIELDS` are finite real numbers (or null);
    ``metric`` needs a valid ``name`` and a numeric ``value``; ``phase_start`` / ``phase_end``
    need a valid ``phase`` (short, printable).  Elsewhere numbers must be finite, strings are
    cut to :data:`MAX_STRING`, and lists / dicts are bounded.  False when a field the kind
    cannot do without was dropped: such an event is not recorded at all.
    """
    kind = event["kind"]
    numeric = kind in ("result", "metric")
    extra = [k for k in event if k not in _RESERVED][MAX_FIELDS:]
    for k in extra:  # past the first MAX_FIELDS fields
        del event[k]
        run.bad_fields += 1
    for k in list(event):
        if k in _RESERVED:
            continue
        v = event[k]
        if not _is_name(k):
            ok = False
        elif k in ("phase", "name"):
            ok = _is_name(v) or (v is None and k == "phase" and kind not in ("phase_start", "phase_end"))
        elif numeric and k in NUMERIC_FIELDS:
            ok = _is_number(v) or (v is None and not (kind == "metric" and k == "value"))
        else:
            v = _clean(v)
            ok = v is not _INVALID
        if ok:
            event[k] = v
        else:
            del event[k]
            run.bad_fields += 1
    if kind in ("phase_start", "phase_end"):
        return "phase" in event
    if kind == "metric":
        return "name" in event and "value" in event
    return True


def accept_event(line: bytes, run: WorkloadRun) -> dict | None:
    """One event line from the workload, validated; None (and counted) if malformed.

    A line that is not a JSON object with a short printable ``kind`` and a stamp on our clock
    is refused whole (``run.bad_lines``); within an accepted event, invalid fields are dropped
    and counted (``run.bad_fields``, see :func:`_validate_fields`).  A phase marker without a
    valid ``phase`` or a metric without a valid ``name`` and ``value`` is not recorded (counted
    both as a bad field and a bad line).
    """
    try:
        event = json.loads(line)
        if not isinstance(event, dict) or not _is_name(event.get("kind")):
            raise ValueError
        now = time.monotonic_ns()
        t = event.get("t_ns", now)
        if isinstance(t, bool) or not isinstance(t, (int, float)):
            raise ValueError
        t = int(t)  # OverflowError for inf, ValueError for nan
        if abs(t - now) > MAX_SKEW_NS:
            raise ValueError
    except (ValueError, TypeError, OverflowError, RecursionError):
        run.bad_lines += 1
        return None
    if not _validate_fields(event, run):
        run.bad_lines += 1
        return None
    event["t_ns"] = t
    event["source"] = "workload"
    return event


def _handle(line: bytes, session: Session, run: WorkloadRun) -> None:
    if not line.strip():
        return
    event = accept_event(line, run)
    if event is None:
        return
    kind = event["kind"]
    if kind == "phase_start":
        run.phase = event["phase"]
        epoch = _phase_epoch(run.phase)
        if epoch is not None:
            run.epoch = epoch
    elif kind == "result":
        run.result.update({k: v for k, v in event.items() if k not in _RESERVED})
    elif kind == "metric":
        run.metrics[event["name"]] = float(event["value"])
    session.record(event)  # forwarded to any agents: a phase boundary probes their clocks


def pipe_chunks(fd: int, size: int = 65536) -> Iterator[bytes]:
    """What arrives on the pipe ``fd`` (closed at the end), at most ``size`` bytes at a time,
    until end of file or a read error."""
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        while True:
            try:
                chunk = pipe.read(size)
            except OSError:
                return
            if not chunk:
                return
            yield chunk


def pump_events(fd: int, session: Session, run: WorkloadRun) -> None:
    """Copy JSON event lines from the workload's pipe into the session's events file.

    Malformed lines are counted, never fatal: the pipe is drained to the end whatever the
    workload writes, so it can never block on a full pipe.  Linear in what is read (only
    each new chunk is searched for newlines) and bounded in memory: a line longer than
    :data:`MAX_LINE` bytes is counted as one bad line and skipped up to its newline.  The
    thread's CPU time is left in ``run.pump_cpu_s``.
    """
    parts: list[bytes] = []  # the line being assembled, at most MAX_LINE bytes
    size = 0
    skipping = False  # inside an over-long line, until its newline
    try:
        for chunk in pipe_chunks(fd):
            start = 0
            while True:
                nl = chunk.find(b"\n", start)
                end = len(chunk) if nl < 0 else nl
                if not skipping:
                    if size + end - start > MAX_LINE:
                        run.bad_lines += 1
                        parts, size, skipping = [], 0, True
                    else:
                        parts.append(chunk[start:end])
                        size += end - start
                if nl < 0:
                    break
                if not skipping:
                    _handle(b"".join(parts), session, run)
                parts, size, skipping = [], 0, False
                start = nl + 1
        if parts and not skipping:  # at EOF a final line without newline still counts
            _handle(b"".join(parts), session, run)
    finally:
        run.pump_cpu_s = time.thread_time()


PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER = 1, 36, 37
TREE_ENV = "CALIBRATE_WORKLOAD_TOKEN"  # handed down to everything the workload starts
TREE_POLL_S = 0.5  # how often the workload's process tree is scanned while it runs


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)  # a killed recorder takes its workload along


def _load_prctl():
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl  # loaded before any fork
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl() if sys.platform.startswith("linux") else None
_reaper_lock = threading.Lock()
_reaper_users = 0
_reaper_was = 0


def _subreaper(on: bool) -> None:
    """Make this process a child subreaper while any workload runs (restored after the last)."""
    global _reaper_users, _reaper_was
    if _PRCTL is None:
        return
    import ctypes

    with _reaper_lock:
        if on:
            if _reaper_users == 0:
                was = ctypes.c_int(0)
                _PRCTL(PR_GET_CHILD_SUBREAPER, ctypes.byref(was))
                _reaper_was = was.value
                _PRCTL(PR_SET_CHILD_SUBREAPER, 1)
            _reaper_users += 1
        else:
            _reaper_users -= 1
            if _reaper_users == 0 and not _reaper_was:
                _PRCTL(PR_SET_CHILD_SUBREAPER, 0)


def end_survivors(session: Session, tree: ProcessTree, run: WorkloadRun) -> None:
    """Terminate what the workload left running; record it (``workload_survivors``)."""
    c0 = time.thread_time()
    try:
        found = terminate_tree(tree)
    finally:
        run.watch_cpu_s += time.thread_time() - c0
    run.survivors = [{"pid": p.pid, "name": p.name, "killed": killed} for p, killed in found]
    if found:
        session.mark("workload_survivors", pids=[p.pid for p, _ in found], names=[p.name for p, _ in found],
                     killed=[p.pid for p, k in found if k])


_LINE_BREAKS = re.compile(rb"(\r\n|\r|\n)")
MAX_OUTPUT_LINE = 2000  # bytes of one line of the workload's output shown (the log has all)


def tee_output(fd: int, log: Any, output: Callable[[str], None], run: WorkloadRun) -> None:
    """Copy the workload's output from ``fd`` into ``log`` (every byte, as written) and hand
    each line, decoded, to ``output``.

    A carriage return starts the line over (a progress bar redrawn in place shows as its
    latest state); a line longer than MAX_OUTPUT_LINE is cut there and the rest of it is
    skipped.  The pipe is always drained: a log that cannot be written (a full disk) or an
    ``output`` that raises is given up, never the reading.  The thread's CPU time is left
    in ``run.output_cpu_s``.
    """
    line = bytearray()
    skipping = False  # past MAX_OUTPUT_LINE, until the next newline
    after_cr = False  # a carriage return: the next text replaces the line
    sink: Callable[[str], None] | None = output
    log_ok = True

    def emit(raw: bytes) -> None:
        nonlocal sink
        if sink is not None:
            try:
                sink(raw.decode("utf-8", errors="replace"))
            except Exception:  # a display that fails must not stop the workload's output
                sink = None

    try:
        for chunk in pipe_chunks(fd):
            if log_ok:
                try:
                    log.write(chunk)
                    log.flush()
                except (OSError, ValueError):
                    log_ok = False
            for token in _LINE_BREAKS.split(chunk):
                if token in (b"\n", b"\r\n"):
                    if not skipping:
                        emit(bytes(line))
                    line.clear()
                    skipping = after_cr = False
                elif token == b"\r":
                    after_cr = True
                elif token and not skipping:
                    if after_cr:
                        line.clear()
                        after_cr = False
                    line += token[: MAX_OUTPUT_LINE - len(line)]
                    if len(line) >= MAX_OUTPUT_LINE:
                        emit(bytes(line) + "…".encode())
                        skipping = True
        if line and not skipping:
            emit(bytes(line))
    finally:
        run.output_cpu_s = time.thread_time()


def run_workload(session: Session, argv: Sequence[str], log_path: Path, stop: threading.Event,
                 progress: Callable[[WorkloadRun], None] | None = None, phase_name: str | None = None,
                 stop_after_s: float | None = None,
                 output: Callable[[str], None] | None = None) -> WorkloadRun:
    """Start ``argv`` with the events pipe and wait for it.

    Its output (stdout and stderr) goes to ``log_path``; with ``output`` also, line by line,
    to that callable (which must not block: see :func:`tee_output`).

    ``stop_after_s``: terminate it (SIGTERM, then SIGKILL after 5 s) that long after the
    start -- the duration for an external command; for a workload that keeps its own
    duration, its duration plus a grace period, so that it can finish its evaluation.
    The workload dies with the recorder (PR_SET_PDEATHSIG on Linux), and whatever happens
    here it is never left running -- nor is anything it started: when it ends, every
    remaining descendant (left in its group, moved out with ``setsid``, or orphaned) is
    terminated (SIGTERM, SIGKILL after 2 s) and listed in ``run.survivors``.
    """
    run = WorkloadRun(list(argv))
    r, w = os.pipe()
    secret = secrets.token_hex(16)
    env = dict(os.environ, **{ENV_FD: str(w), "PYTHONUNBUFFERED": "1", TREE_ENV: secret,
                              # for grandchildren (torchrun's workers), which do not inherit ``w``
                              ENV_PATH: f"/proc/{os.getpid()}/fd/{r}", ENV_PARENT: str(os.getpid())})
    with log_path.open("ab") as log:
        if phase_name:
            session.begin(phase_name)
        _subreaper(True)
        try:
            out_r = out_w = None
            if output is not None:
                out_r, out_w = os.pipe()
            try:
                proc = subprocess.Popen(list(argv), env=env, pass_fds=(w,),
                                        stdout=log if out_w is None else out_w,
                                        stderr=log if out_w is None else subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                        preexec_fn=_die_with_parent if _PRCTL is not None else None)
            except OSError as exc:
                for fd in (r, w, out_r, out_w):
                    if fd is not None:
                        os.close(fd)
                if phase_name:
                    session.end(phase_name)
                raise FileNotFoundError(f"cannot start workload {argv[0]!r}: {exc.strerror}") from None
            run.started_at = time.monotonic()
            tree = ProcessTree(proc.pid, token=f"{TREE_ENV}={secret}")
            os.close(w)
            pump = threading.Thread(target=pump_events, args=(r, session, run), daemon=True)
            pump.start()
            tee = None
            if out_r is not None and out_w is not None and output is not None:
                os.close(out_w)
                tee = threading.Thread(target=tee_output, args=(out_r, log, output, run), daemon=True,
                                       name="workload-output")
                tee.start()
            session.mark("workload_started", pid=proc.pid, argv=list(argv))
            deadline = time.monotonic() + stop_after_s if stop_after_s else None
            terminated = False
            last_progress = last_scan = 0.0
            try:
                while proc.poll() is None:
                    now = time.monotonic()
                    if (stop.is_set() or (deadline and now >= deadline)) and not terminated:
                        terminate_group(proc)
                        terminated = True
                    if now - last_scan >= TREE_POLL_S:  # remember descendants before they are orphaned
                        c0 = time.thread_time()
                        tree.poll()
                        run.watch_cpu_s += time.thread_time() - c0
                        last_scan = now
                    if progress and now - last_progress >= 1.0:
                        progress(run)
                        last_progress = now
                    time.sleep(0.1)
            finally:
                if proc.poll() is None:  # an error here: never leave the workload running
                    terminate_group(proc)
                    terminated = True
                run.returncode, run.terminated = proc.returncode, terminated
                end_survivors(session, tree, run)  # before the join: survivors may hold the pipe
                pump.join(timeout=5)
                if tee is not None:
                    tee.join(timeout=5)
                if phase_name:
                    session.end(phase_name)
                session.mark("workload_exited", returncode=proc.returncode, terminated=terminated,
                             survivors=len(run.survivors), bad_lines=run.bad_lines, bad_fields=run.bad_fields)
        finally:
            _subreaper(False)
    return run
