"""Load shapes with sharp, known edges (the calibration workloads): idle, steps, square wave, CPU/memory/GPU stress.

Utilisation is produced by duty-cycled busy loops in worker processes (one per core by
default, ``multiprocessing`` spawn).  Every period of ``cycle_s`` a worker is busy for
``level * cycle_s`` and sleeps the rest, so a meter averaging over >= one period sees the
target utilisation.  The whole schedule is fixed before it starts and all workers follow
it on CLOCK_MONOTONIC (shared by every process), so all cores switch level together at the
segment boundary; the parent emits ``phase_start`` / ``phase_end`` at those same instants.

Phases: ``idle``; ``level-0.50`` (step); ``high`` / ``low`` (square, with a ``cycle``
field); ``stress`` (cpu-/memory-/gpu-stress).  The ``result`` event reports the duration
and the CPU time the workers actually used (``mean_utilisation`` per worker, 0..1) next to
the scheduled ``target_utilisation``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import _stop, events
from .events import Emit, phase
from .registry import TORCH_HINT, validate_params


@dataclass
class Segment:
    """One phase of a schedule: ``level`` (utilisation 0..1) for ``duration_s`` s (None = until stopped)."""

    phase: str
    duration_s: float | None
    level: float
    fields: dict[str, Any] = field(default_factory=dict)


def _threads(n: int) -> int:
    return n if n > 0 else (os.cpu_count() or 1)


def _truncate(segments: list[Segment], duration_s: float | None) -> list[Segment]:
    """Cut a schedule to ``duration_s`` s in total (None = as is)."""
    if duration_s is None:
        return segments
    out, left = [], duration_s
    for seg in segments:
        if left <= 1e-9:
            break
        d = left if seg.duration_s is None else min(seg.duration_s, left)
        out.append(Segment(seg.phase, d, seg.level, seg.fields))
        left -= d
    return out


def schedule(name: str, p: dict[str, Any]) -> list[Segment]:
    """The phases of calibration workload ``name`` with validated parameters ``p``."""
    if name == "idle":
        return [Segment("idle", p["duration_s"], 0.0)]
    if name == "step":
        levels = [float(x) for x in p["levels"].split(",")]
        segs = [Segment(f"level-{x:.2f}", p["hold_s"], x, {"utilisation": x}) for x in levels]
        return _truncate(segs, p["duration_s"])
    if name == "square":
        hi, lo = p["period_s"] * p["duty"], p["period_s"] * (1.0 - p["duty"])
        cycles = p["cycles"] if p["duration_s"] is None else int(p["duration_s"] // p["period_s"]) + 1
        segs = []
        for k in range(1, cycles + 1):
            segs.append(Segment("high", hi, p["high"], {"cycle": k, "utilisation": p["high"]}))
            segs.append(Segment("low", lo, p["low"], {"cycle": k, "utilisation": p["low"]}))
        return _truncate(segs, p["duration_s"])
    if name in ("cpu-stress", "memory-stress"):
        return [Segment("stress", p["duration_s"], p["utilisation"], {"utilisation": p["utilisation"]})]
    raise ValueError(f"{name!r} is not a CPU calibration workload")


# --------------------------------------------------------------------------- workers


def _spin_until(t_ns: int) -> None:
    x = 1.0
    while time.monotonic_ns() < t_ns:
        for _ in range(200):
            x = x * 1.0000001 + 1e-9


class _Copier:
    """Memory load: copies one half of a buffer onto the other in 8 MiB chunks."""

    def __init__(self, nbytes: int) -> None:
        import numpy as np

        half = max(nbytes // 2, 4096)
        self.a = np.ones(half, dtype=np.uint8)
        self.b = np.zeros(half, dtype=np.uint8)
        self.chunk = min(half, 8 << 20)
        self.pos = 0
        self.moved = 0.0

    def run_until(self, t_ns: int) -> None:
        import numpy as np

        while time.monotonic_ns() < t_ns:
            end = min(self.pos + self.chunk, len(self.a))
            np.copyto(self.b[self.pos : end], self.a[self.pos : end])
            self.moved += 2.0 * (end - self.pos)  # read + write
            self.pos = 0 if end >= len(self.a) else end
            self.a, self.b = (self.b, self.a) if self.pos == 0 else (self.a, self.b)


def _exit_on_signal(_signum: int, _frame: Any) -> None:
    raise SystemExit(0)


def _worker(
    index: int,
    segments: list[tuple[float, float | None, float]],
    cycle_s: float,
    start_ns: Any,
    go: Any,
    halt: Any,
    ready: Any,
    cpu_s: Any,
    moved: Any,
    mem_bytes: int,
    parent: int,
) -> None:
    """Follow the schedule (relative segment start, end or None, level) from ``start_ns``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    signal.signal(signal.SIGTERM, _exit_on_signal)  # e.g. the whole group terminated: still report
    copier = _Copier(mem_bytes) if mem_bytes else None
    ready.release()
    go.wait()
    t_cpu = time.process_time()
    t0 = start_ns.value
    cycle_ns = int(cycle_s * 1e9)
    try:
        for rel_start, rel_end, level in segments:
            c = t0 + int(rel_start * 1e9)
            seg_end = None if rel_end is None else t0 + int(rel_end * 1e9)
            while seg_end is None or c < seg_end:
                if halt.is_set() or os.getppid() != parent:
                    return
                c_end = c + cycle_ns if seg_end is None else min(c + cycle_ns, seg_end)
                busy_until = c + int(level * (c_end - c))
                if time.monotonic_ns() < busy_until:
                    if copier is not None:
                        copier.run_until(busy_until)
                    else:
                        _spin_until(busy_until)
                rest = c_end - time.monotonic_ns()
                if rest > 0:
                    halt.wait(rest / 1e9)
                c = c_end
    finally:
        cpu_s[index] = time.process_time() - t_cpu
        if copier is not None:
            moved[index] = copier.moved


def run_schedule(
    segments: list[Segment],
    *,
    threads: int,
    cycle_s: float = 0.1,
    mem_bytes: int = 0,
    emit: Emit = events.emit,
    stop: Any = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Run a schedule on ``threads`` worker processes (0 workers when every level is 0).

    Returns (and emits as ``result``): duration_s, threads, cpu_s (the workers' CPU time),
    mean_utilisation (cpu_s / (threads * duration_s)), target_utilisation, interrupted,
    and for memory loads bytes_moved and gb_per_s (10^9 bytes/s, read + write).
    """
    stop = _stop.STOP if stop is None else stop
    busy = any(s.level > 0 for s in segments)
    n = threads if busy else 0
    if n:
        ctx = mp.get_context("spawn")
        go, halt, ready = ctx.Event(), ctx.Event(), ctx.Semaphore(0)
        start_ns = ctx.Value("q", 0, lock=False)
        cpu_s, moved = ctx.Array("d", n, lock=False), ctx.Array("d", n, lock=False)
    else:  # idle: no workers, no multiprocessing machinery (no helper processes either)
        go, halt, ready = threading.Event(), threading.Event(), threading.Semaphore(0)
        start_ns, cpu_s, moved = mp.RawValue("q", 0), [0.0], [0.0]
    rel: list[tuple[float, float | None, float]] = []
    t = 0.0
    for s in segments:
        end = None if s.duration_s is None else t + s.duration_s
        rel.append((t, end, s.level))
        t = end if end is not None else t
    per_worker = mem_bytes // n if n and mem_bytes else 0
    procs = [] if not n else [
        ctx.Process(
            target=_worker,
            args=(i, rel, cycle_s, start_ns, go, halt, ready, cpu_s, moved, per_worker, os.getpid()),
            daemon=True,
            name=f"calibrate-load-{i}",
        )
        for i in range(n)
    ]
    interrupted = False
    t_start = time.monotonic_ns()
    try:
        for proc in procs:
            proc.start()
        started, deadline = 0, time.monotonic() + 60.0
        while started < n and not stop.is_set():
            if ready.acquire(timeout=0.1):
                started += 1
            elif not all(proc.is_alive() for proc in procs):
                raise RuntimeError("a load worker process died while starting")
            elif time.monotonic() > deadline:
                raise RuntimeError(f"load workers did not start within 60 s ({started}/{n} ready)")
        t_start = time.monotonic_ns() + 20_000_000  # all workers begin on this instant
        start_ns.value = t_start
        go.set()
        for s, (rel_start, rel_end, _level) in zip(segments, rel, strict=True):
            if stop.is_set():
                break
            _wait_until(t_start + int(rel_start * 1e9), stop)
            if stop.is_set():
                break
            with phase(s.phase, emit=emit, **s.fields):
                if verbose:
                    extra = f" (cycle {s.fields['cycle']})" if "cycle" in s.fields else ""
                    print(f"{s.phase}{extra}: utilisation {s.level:.2f} on {n} worker(s) for "
                          f"{'until stopped' if s.duration_s is None else f'{s.duration_s:g} s'}", file=sys.stderr, flush=True)
                if rel_end is None:
                    stop.wait()
                else:
                    _wait_until(t_start + int(rel_end * 1e9), stop)
        interrupted = stop.is_set()
    finally:
        t_end = time.monotonic_ns()
        halt.set()
        go.set()
        for proc in procs:
            proc.join(timeout=cycle_s + 2.0)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=1.0)
    duration = max(t_end - t_start, 0) / 1e9
    # the scheduled utilisation averaged over the time actually run
    covered = sum(max(0.0, min(duration, e if e is not None else duration) - b) * lv for b, e, lv in rel)
    target = covered / duration if duration > 0 else 0.0
    cpu = float(sum(cpu_s[:n])) if n else 0.0
    result: dict[str, Any] = {
        "duration_s": duration,
        "threads": n,
        "cpu_s": cpu,
        "mean_utilisation": cpu / (n * duration) if n and duration > 0 else 0.0,
        "target_utilisation": target,
        "interrupted": interrupted,
    }
    if mem_bytes:
        total = float(sum(moved[:n])) if n else 0.0
        result["bytes_moved"] = total
        result["gb_per_s"] = total / duration / 1e9 if duration > 0 else 0.0
    emit("result", **result)
    if verbose:
        print(f"done{' (stopped)' if interrupted else ''}: {duration:.1f} s, workers used "
              f"{result['mean_utilisation']:.2f} of their cores (target {result['target_utilisation']:.2f})",
              file=sys.stderr, flush=True)
    return result


def _wait_until(t_ns: int, stop: Any) -> None:
    """Sleep until monotonic time ``t_ns`` (returns early when ``stop`` is set)."""
    while not stop.is_set():
        left = (t_ns - time.monotonic_ns()) / 1e9
        if left <= 0:
            return
        # coarse wait, then a short fine wait so the phase event lands on the edge
        stop.wait(left - 0.002 if left > 0.004 else left)


# --------------------------------------------------------------------------- GPU


def gpu_stress(p: dict[str, Any], emit: Emit = events.emit, *, stop: Any = None, verbose: bool = True) -> dict[str, Any]:
    """Matrix multiplications on a CUDA GPU, duty-cycled to ``utilisation`` (phase ``stress``)."""
    stop = _stop.STOP if stop is None else stop
    try:
        import torch
    except ImportError:
        raise ValueError(f"gpu-stress needs torch: {TORCH_HINT}") from None
    if not torch.cuda.is_available():
        raise ValueError("gpu-stress needs a CUDA GPU but torch.cuda.is_available() is False")
    device = torch.device(p["device"])
    if (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"gpu-stress: device={p['device']} but only {torch.cuda.device_count()} CUDA device(s) exist")
    dtype = getattr(torch, p["dtype"])
    n, level, cycle = p["size"], p["utilisation"], p["cycle_s"]
    with phase("setup", emit=emit, device=str(device)):  # CUDA context, buffers, one timing
        gen = torch.Generator(device=device).manual_seed(p["seed"])
        a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
        b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
        c = torch.empty(n, n, device=device, dtype=dtype)
        for _ in range(3):
            torch.matmul(a, b, out=c)
        torch.cuda.synchronize(device)
        t = time.perf_counter()
        for _ in range(5):
            torch.matmul(a, b, out=c)
        torch.cuda.synchronize(device)
        t_mm = (time.perf_counter() - t) / 5  # s per matmul, refined as we go
    count, busy_s, credit = 0, 0.0, 0.0
    t0 = time.monotonic()
    end = None if p["duration_s"] is None else t0 + p["duration_s"]
    with phase("stress", emit=emit, utilisation=level, size=n, dtype=p["dtype"]):
        if verbose:
            print(f"stress: {n}x{n} {p['dtype']} matmuls at utilisation {level:.2f} on {device}", file=sys.stderr, flush=True)
        cycle_start = time.monotonic()
        while not stop.is_set() and (end is None or time.monotonic() < end):
            cycle_end = cycle_start + cycle if end is None else min(cycle_start + cycle, end)
            credit += level * (cycle_end - cycle_start) / t_mm  # matmuls owed; fractions carry over
            k = int(credit)
            credit -= k
            if k:
                ts = time.perf_counter()
                for _ in range(k):
                    torch.matmul(a, b, out=c)
                torch.cuda.synchronize(device)
                dt = time.perf_counter() - ts
                busy_s += dt
                count += k
                t_mm = 0.8 * t_mm + 0.2 * dt / k
            rest = cycle_end - time.monotonic()
            if rest > 0:
                stop.wait(rest)
            cycle_start = max(cycle_end, time.monotonic()) if level >= 1 else cycle_end
    duration = time.monotonic() - t0
    result = {
        "duration_s": duration,
        "matmuls": count,
        "busy_s": busy_s,
        "mean_utilisation": busy_s / duration if duration > 0 else 0.0,
        "target_utilisation": level,
        "tflops": 2.0 * n**3 * count / busy_s / 1e12 if busy_s > 0 else 0.0,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device),
        "interrupted": stop.is_set(),
    }
    emit("result", **result)
    if verbose:
        print(f"done: {count} matmuls, {result['tflops']:.1f} TFLOP/s while busy, busy {result['mean_utilisation']:.2f}",
              file=sys.stderr, flush=True)
    return result


def run(name: str, params: dict[str, Any], emit: Emit = events.emit, *, stop: Any = None, verbose: bool = True) -> dict[str, Any]:
    """Run calibration workload ``name`` (params validated here); returns the result dict."""
    p = validate_params(name, params)
    if name == "gpu-stress":
        return gpu_stress(p, emit, stop=stop, verbose=verbose)
    segments = schedule(name, p)
    return run_schedule(
        segments,
        threads=_threads(p.get("threads", 0)),
        cycle_s=p.get("cycle_s", 0.1),
        mem_bytes=p["bytes"] if name == "memory-stress" else 0,
        emit=emit,
        stop=stop,
        verbose=verbose,
    )
