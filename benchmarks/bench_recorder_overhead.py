"""What recording costs: CPU time of the recorder vs CodeCarbon's tracker, same run.

Records four software meters at 10 Hz -- ``rapl`` on a fake powercap tree, a second
``rapl`` on another tree, ``cpu-model`` and ``nvml`` on the fake NVML library -- for
``--seconds`` (default 60) s with calibrate's real :class:`calibrate.recorder.Recorder`
(trace files and flushing included), while CodeCarbon's ``OfflineEmissionsTracker``
runs in the same process at each step of ``--cc-steps`` (default ``1,0.1``: the step
calibrate's ``codecarbon`` meter uses, and the recorder's own 10 Hz).

Both sides are measured the same way, as whole threads: the recorder's threads add up
their own ``time.thread_time`` (wake-ups, polls, writes, flushes), and every
``threading.Timer`` thread CodeCarbon's schedulers start (one per step: it waits, starts
the next Timer, then measures) reports its ``time.thread_time`` when it ends.  Start-up
is not counted on either side.  The fake trees' counters are advanced by child
processes, outside the measured process, as the hardware would, and rewritten in place so
that RAPL reads them as it reads sysfs: kept open, ``pread`` (``--reopen``: opened per
read); the fake NVML library runs inside the meter's calls and is counted (a real NVML
call costs about as much).

``--load N`` runs N busy processes meanwhile (a training job's CPU pressure): on a VM
an idle vCPU halts between polls and every wake-up then starts with cold caches, so the
idle machine is the recorder's worst case.

    .venv/bin/python benchmarks/bench_recorder_overhead.py --seconds 20
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drivers.base import Meter  # noqa: E402
from drivers.cpu_model import CpuModelMeter  # noqa: E402
from drivers.fakes.nvml import FakeGpu, FakeNvml  # noqa: E402
from drivers.fakes.powercap import FakePowercap, typical_zones  # noqa: E402
from drivers.kernel_files import AttrFile, filesystem_of  # noqa: E402
from drivers.nvml import NvmlMeter  # noqa: E402
from drivers.rapl import RaplMeter  # noqa: E402

TREES = {"a": {"packages": 1, "dram": True}, "b": {"packages": 2, "dram": False}}


def advance_tree(root: str, layout: dict[str, Any], ready: Any) -> None:
    """Child process: a live fake powercap tree (counters advance every 20 ms) until killed.

    Counters are rewritten in place, so the meter keeps ``energy_uj`` open and ``pread``s
    it as it does on a real sysfs (the cost a user's machine sees).
    """
    FakePowercap(root, typical_zones(**layout), in_place=True).start(tick_s=0.02)
    ready.set()
    while True:
        time.sleep(3600)


def busy() -> None:
    """Child process: one core of CPU load."""
    x = 0
    while True:
        x = (x * 1103515245 + 12345) % 2**31


class TimerThreadCpu:
    """Whole-thread CPU of CodeCarbon's ``threading.Timer`` threads, per scheduler (s)."""

    def __init__(self) -> None:
        self.cpu_s: dict[int, float] = {}
        self.threads: dict[int, int] = {}
        self._lock = threading.Lock()

    def install(self) -> None:
        import codecarbon.external.scheduler as sched_mod

        meter = self

        class MeasuredTimer(threading.Timer):
            def run(self) -> None:
                try:
                    super().run()
                finally:  # a fresh thread: its CPU time so far is the whole thread's
                    key = id(getattr(self.function, "__self__", None))
                    with meter._lock:
                        meter.cpu_s[key] = meter.cpu_s.get(key, 0.0) + time.thread_time()
                        meter.threads[key] = meter.threads.get(key, 0) + 1

        sched_mod.Timer = MeasuredTimer  # PeriodicScheduler looks Timer up in its module

    def of(self, *schedulers: Any) -> tuple[float, int]:
        keys = [id(s) for s in schedulers]
        with self._lock:
            return sum(self.cpu_s.get(k, 0.0) for k in keys), sum(self.threads.get(k, 0) for k in keys)


def start_codecarbon(step_s: float, out: Path) -> Any:
    from codecarbon import OfflineEmissionsTracker

    out.mkdir(parents=True, exist_ok=True)
    tracker = OfflineEmissionsTracker(country_iso_code="FRA", measure_power_secs=step_s,
                                      output_dir=str(out), log_level="error", allow_multiple_runs=True,
                                      save_to_file=False)
    if getattr(tracker, "_scheduler", None) is None:  # its __init__ swallows exceptions
        raise RuntimeError("CodeCarbon's tracker failed to initialise")
    tracker.start()
    return tracker


def sysfs_read_costs(n: int = 2000) -> str | None:
    """Per-read CPU (us) of one real sysfs attribute: kept open (pread) vs opened per read."""
    path = "/sys/devices/system/cpu/online"
    if filesystem_of(path) != "sysfs":
        return None
    out = []
    for keep in (True, False):
        f = AttrFile(path, keep_open=keep)
        f.read()
        t0 = time.thread_time()
        for _ in range(n):
            f.read()
        out.append(1e6 * (time.thread_time() - t0) / n)
        f.close()
    return f"a real sysfs attribute costs {out[0]:.1f} us kept open (pread) vs {out[1]:.1f} us opened per read"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="recording time (s), default 60")
    ap.add_argument("--hz", type=float, default=10.0, help="poll rate of each meter (Hz), default 10")
    ap.add_argument("--cc-steps", default="1,0.1",
                    help="CodeCarbon measure_power_secs values, comma-separated (s); default 1,0.1")
    ap.add_argument("--load", type=int, default=0, metavar="N", help="N busy processes meanwhile")
    ap.add_argument("--reopen", action="store_true",
                    help="open energy_uj for every read (how a copied tree is read) instead of pread")
    ap.add_argument("--no-codecarbon", action="store_true")
    args = ap.parse_args(argv)
    steps = [] if args.no_codecarbon else [float(x) for x in args.cc_steps.split(",") if x.strip()]
    logging.getLogger("codecarbon").setLevel(logging.ERROR)

    from analysis.session_format import EventWriter
    from calibrate.recorder import Recorder

    ctx = mp.get_context("spawn")
    children: list[Any] = []
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        tmpd = Path(tmp)
        try:
            for key, layout in TREES.items():  # each tree exists once its child says ready
                ready = ctx.Event()
                children.append(ctx.Process(target=advance_tree, args=(str(tmpd / key), layout, ready),
                                            daemon=True))
                children[-1].start()
                ready.wait(30)
            interval = 1.0 / args.hz
            meters: list[Meter] = [
                RaplMeter(root=tmpd / "a", name="rapl", interval_s=interval, keep_open=not args.reopen),
                RaplMeter(root=tmpd / "b", name="rapl2", interval_s=interval, keep_open=not args.reopen),
                CpuModelMeter(idle_w=10.0, max_w=65.0, interval_s=interval),
                NvmlMeter(nvml=FakeNvml([FakeGpu.model("a100", 0), FakeGpu.model("v100", 1)]),
                          interval_s=interval),
            ]
            timers = TimerThreadCpu()
            trackers: list[tuple[float, Any]] = []
            if steps:
                try:
                    timers.install()
                    trackers = [(s, start_codecarbon(s, tmpd / f"cc{i}")) for i, s in enumerate(steps)]
                except ImportError:
                    print("CodeCarbon not installed: measuring the recorder only")
            for _ in range(args.load):
                children.append(ctx.Process(target=busy, daemon=True))
                children[-1].start()
            out = tmpd / "rec"
            out.mkdir()
            events = EventWriter(out / "events.jsonl")
            rec = Recorder(meters, out, events)
            rec.open_all()
            channels = sum(len(m.channels) for m in meters)
            cc0 = {s: timers.of(t._scheduler, t._scheduler_monitor_power) for s, t in trackers}
            proc0 = time.process_time()
            rec.start()
            time.sleep(args.seconds)
            rec.stop()
            proc = time.process_time() - proc0
            cc1 = {s: timers.of(t._scheduler, t._scheduler_monitor_power) for s, t in trackers}
            for _, t in trackers:
                t.stop()
            events.close()
            summary = rec.summary()
        finally:
            for c in children:
                c.kill()

    wall = summary["wall_s"]
    polls = sum(m["samples"] for m in summary["meters"].values())
    faults = sum(sum(m["faults"].values()) for m in summary["meters"].values())
    frac = summary["cpu_s"] / wall
    per_poll = {k: 1e6 * m["cpu_s"] / max(m["samples"], 1) for k, m in summary["meters"].items()}
    load = f", {args.load} busy processes" if args.load else ", machine otherwise idle"
    print(f"recorder: {len(meters)} meters, {channels} channels at {args.hz:g} Hz for {wall:.1f} s{load}: "
          f"{polls} polls ({polls / wall:.1f}/s), {faults} faults")
    print(f"  CPU {summary['cpu_s']:.3f} s = {100 * frac:.3f} % of one core "
          f"({1e6 * summary['cpu_s'] / max(polls, 1):.0f} us per poll, wake-ups and writes included; "
          f"polls alone: median {statistics.median(per_poll.values()):.0f} us)")
    for s, _ in trackers:
        cpu = cc1[s][0] - cc0[s][0]
        n = cc1[s][1] - cc0[s][1]
        cc_frac = cpu / wall
        ratio = f"; recorder / CodeCarbon = {frac / cc_frac:.2f}" if cc_frac > 0 else ""
        print(f"CodeCarbon at {s:g} s steps: {n} timer threads, CPU {cpu:.3f} s = {100 * cc_frac:.3f} % "
              f"of one core ({1e6 * cpu / max(n, 1):.0f} us per step){ratio}")
    print(f"whole process {100 * proc / wall:.2f} % of one core (recorder, CodeCarbon, fake NVML; "
          "the fake trees' counters run in child processes)")
    line = sysfs_read_costs()
    if line:
        print(f"note: {line} (a fake tree's file: about 1 us kept open, 6 us opened per read)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
