"""What recording costs: CPU time of the meter threads vs CodeCarbon's tracker, same run.

Polls four software meters at 10 Hz -- ``rapl`` on a live fake powercap tree, a second
``rapl`` on another tree, ``cpu-model`` and ``nvml`` on the fake NVML library -- for
``--seconds`` (default 60) s, while CodeCarbon's ``OfflineEmissionsTracker`` runs in the
same process.  The meters are driven by calibrate's real :class:`calibrate.recorder.Recorder`
(trace files, flusher; its threads measure their own ``time.thread_time``), or with
``--plain`` by bare threads that call ``read()`` and write one CSV line per channel.
CodeCarbon's work is measured the same way: its two scheduled functions (measurement
step and 1 s power monitor) are wrapped to add up ``time.thread_time`` in the thread
that runs them.  The fake trees' counter threads are not counted (they stand in for
the hardware).  Prints both costs as a fraction of one core and their ratio.

    .venv/bin/python benchmarks/bench_recorder_overhead.py --seconds 20
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drivers.base import Meter, MeterError  # noqa: E402
from drivers.cpu_model import CpuModelMeter  # noqa: E402
from drivers.fakes.nvml import FakeGpu, FakeNvml  # noqa: E402
from drivers.fakes.powercap import FakePowercap, typical_zones  # noqa: E402
from drivers.nvml import NvmlMeter  # noqa: E402
from drivers.rapl import RaplMeter  # noqa: E402


class ThreadCpu:
    """Adds up thread CPU time (s) of calls to a wrapped function, whatever thread runs it."""

    def __init__(self) -> None:
        self.cpu_s = 0.0
        self.calls = 0
        self._lock = threading.Lock()

    def wrap(self, fn: Any) -> Any:
        def wrapped(*a: Any, **kw: Any) -> Any:
            t0 = time.thread_time()
            try:
                return fn(*a, **kw)
            finally:
                dt = time.thread_time() - t0
                with self._lock:
                    self.cpu_s += dt
                    self.calls += 1
        return wrapped


def start_codecarbon(step_s: float, out: Path) -> tuple[Any, ThreadCpu, float]:
    """A started OfflineEmissionsTracker whose scheduled work is CPU-timed; (tracker, meter, start cpu s)."""
    from codecarbon import OfflineEmissionsTracker

    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    cpu = ThreadCpu()
    out.mkdir(parents=True, exist_ok=True)
    tracker = OfflineEmissionsTracker(country_iso_code="FRA", measure_power_secs=step_s,
                                      output_dir=str(out), log_level="error", allow_multiple_runs=True)
    if getattr(tracker, "_scheduler", None) is None:  # its __init__ swallows exceptions
        raise RuntimeError("CodeCarbon's tracker failed to initialise")
    # CodeCarbon's two periodic jobs (private attributes; benchmark only)
    for sched in (tracker._scheduler, tracker._scheduler_monitor_power):
        sched.function = cpu.wrap(sched.function)
    t0 = time.process_time()  # start-up runs in a thread pool: take the whole process
    tracker.start()
    return tracker, cpu, time.process_time() - t0


def plain_threads(meters: list[Meter], seconds: float, out: Path) -> tuple[float, int, int]:
    """Poll each meter in a bare thread at its interval, one CSV line per channel; (cpu s, samples, faults)."""
    stop = threading.Event()
    results: dict[str, tuple[float, int, int]] = {}
    out.mkdir(parents=True, exist_ok=True)

    def loop(m: Meter) -> None:
        cpu0 = time.thread_time()
        n = faults = 0
        interval = m.interval_s
        next_t = time.monotonic()
        with (out / f"{m.name}.csv").open("w") as fh:
            while not stop.is_set():
                t0 = time.monotonic_ns()
                try:
                    r = m.read()
                except MeterError:
                    faults += 1
                else:
                    t = (t0 + time.monotonic_ns()) // 2
                    for ch, vals in r.values.items():
                        fh.write(f"{t},{ch}," + ",".join(f"{k}={v:.6f}" for k, v in vals.items()) + "\n")
                    n += 1
                next_t += interval
                stop.wait(max(0.0, next_t - time.monotonic()))
        results[m.name] = (time.thread_time() - cpu0, n, faults)

    threads = [threading.Thread(target=loop, args=(m,), name=f"plain-{m.name}") for m in meters]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return (sum(r[0] for r in results.values()), sum(r[1] for r in results.values()),
            sum(r[2] for r in results.values()))


#: CPU of the recorder's polls alone (read + write), without its threads' wake-ups: measured
#: the way CodeCarbon's scheduled calls are (its timer threads' start-ups are not counted)
RECORDER_WORK_S = [0.0]


def recorder_run(meters: list[Meter], seconds: float, out: Path) -> tuple[float, int, int]:
    from calibrate.recorder import Recorder
    from calibrate.storage import EventWriter

    out.mkdir(parents=True, exist_ok=True)
    events = EventWriter(out / "events.jsonl")
    rec = Recorder(meters, out, events)
    rec.start()
    time.sleep(seconds)
    rec.stop()
    events.close()
    s = rec.summary()
    RECORDER_WORK_S[0] = sum(m["cpu_s"] for m in s["meters"].values())
    samples = sum(m["samples"] for m in s["meters"].values())
    faults = sum(sum(m["faults"].values()) for m in s["meters"].values())
    return s["cpu_s"], samples, faults


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="recording time (s), default 60")
    ap.add_argument("--hz", type=float, default=10.0, help="poll rate of each meter (Hz), default 10")
    ap.add_argument("--cc-step", type=float, default=1.0,
                    help="CodeCarbon measure_power_secs (s); calibrate's default 1, CodeCarbon's own 15")
    ap.add_argument("--plain", action="store_true", help="bare threads instead of calibrate's Recorder")
    ap.add_argument("--no-codecarbon", action="store_true")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        tmpd = Path(tmp)
        tree_a = FakePowercap(tmpd / "powercap-a", typical_zones(packages=1, dram=True))
        tree_b = FakePowercap(tmpd / "powercap-b", typical_zones(packages=2, dram=False))
        interval = 1.0 / args.hz
        meters: list[Meter] = [
            RaplMeter(root=tree_a.root, name="rapl", interval_s=interval),
            RaplMeter(root=tree_b.root, name="rapl2", interval_s=interval),
            CpuModelMeter(idle_w=10.0, max_w=65.0, interval_s=interval),
            NvmlMeter(nvml=FakeNvml([FakeGpu.model("a100", 0), FakeGpu.model("v100", 1)]),
                      interval_s=interval),
        ]
        channels = sum(len(m.open()) for m in meters)
        cc = None
        if not args.no_codecarbon:
            try:
                tracker, cc, cc_start_cpu = start_codecarbon(args.cc_step, tmpd / "cc")
            except ImportError:
                print("CodeCarbon not installed: measuring the recorder only")
        tree_a.start(tick_s=0.02)  # counters advance every 20 ms (real RAPL: 1 ms)
        tree_b.start(tick_s=0.02)
        mode = "plain threads" if args.plain else "calibrate Recorder"
        if not args.plain:
            try:
                import calibrate.recorder  # noqa: F401
            except ImportError:
                mode, args.plain = "plain threads (calibrate.recorder not importable)", True
        wall0, proc0 = time.monotonic(), time.process_time()
        cpu_s, samples, faults = (plain_threads if args.plain else recorder_run)(
            meters, args.seconds, tmpd / "rec")
        wall = time.monotonic() - wall0
        proc = time.process_time() - proc0
        if cc is not None:
            tracker.stop()
        for m in meters:
            m.close()
        tree_a.stop()
        tree_b.stop()

    frac = cpu_s / wall
    print(f"{mode}: {len(meters)} meters, {channels} channels at {args.hz:g} Hz for {wall:.1f} s: "
          f"{samples} polls ({samples / wall:.1f}/s), {faults} faults")
    print(f"  meter threads CPU {cpu_s:.3f} s = {100 * frac:.3f} % of one core "
          f"({1e6 * cpu_s / max(samples, 1):.0f} us per poll)")
    if cc is not None:
        cc_frac = cc.cpu_s / wall
        print(f"CodeCarbon {args.cc_step:g} s steps: {cc.calls} scheduled calls, CPU {cc.cpu_s:.3f} s = "
              f"{100 * cc_frac:.3f} % of one core ({1e6 * cc.cpu_s / max(cc.calls, 1):.0f} us per call; "
              f"start-up {cc_start_cpu:.2f} s CPU, not counted)")
        if cc_frac > 0:
            print(f"ratio recorder / CodeCarbon = {frac / cc_frac:.2f}")
        if not args.plain and cc_frac > 0:
            w_frac = RECORDER_WORK_S[0] / wall
            print(f"work only, both measured per call (no wake-ups): recorder {100 * w_frac:.3f} % vs "
                  f"CodeCarbon {100 * cc_frac:.3f} % of one core; ratio {w_frac / cc_frac:.2f}")
    print(f"whole process (incl. fake counter threads) {100 * proc / wall:.1f} % of one core")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
