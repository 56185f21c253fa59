"""Does recording perturb the workload?  Training images/s bare vs instrumented, one process.

Runs the same training loop (:func:`workloads.cnn.train`) alternately

* bare: events dropped (``emit`` is a no-op), no other threads;
* instrumented: events written through a real pipe (``CALIBRATE_EVENTS_FD``, the
  protocol of :mod:`workloads.events`) drained by a reader thread that parses every line,
  while calibrate's own Session records a simulated Watts Up? and two cpu-model meters
  (every ``--poll-s`` s) in this same process (``--threads``: 3 bare polling threads);

and prints each run's training images/s (warm-up excluded) and the median ratio
instrumented / bare (target >= 0.97).

    .venv/bin/python benchmarks/bench_workload_overhead.py [--model resnet18] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workloads import events  # noqa: E402
from workloads.cnn import train  # noqa: E402


def _pipe_reader(fd: int, counts: dict[str, int]) -> None:
    buf = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            json.loads(line)
            counts["events"] += 1


def _proc_stat_poller(stop: threading.Event, period: float, counts: dict[str, int]) -> None:
    prev = None
    while not stop.wait(period):
        with open("/proc/stat", "rb") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        if prev is not None:
            total = sum(fields) - sum(prev)
            _busy = 1.0 - (fields[3] - prev[3]) / total if total else 0.0
        prev = fields
        counts["polls"] += 1


def _meter_poller(stop: threading.Event, period: float, counts: dict[str, int]) -> None:
    from drivers.registry import make_meter

    meter = make_meter("cpu-model?idle=10&max=50")
    meter.open()
    try:
        while not stop.wait(period):
            meter.read()
            counts["polls"] += 1
    finally:
        meter.close()


def _pollers(stop: threading.Event, period: float, counts: dict[str, int]) -> tuple[list[threading.Thread], str]:
    try:
        import drivers.cpu_model  # noqa: F401

        target, kind = _meter_poller, "cpu-model meter"
    except ImportError:
        target, kind = _proc_stat_poller, "/proc/stat reader"
    threads = [threading.Thread(target=target, args=(stop, period, counts), daemon=True) for _ in range(3)]
    return threads, kind


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-size", type=int, default=512)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=4, help="bare/instrumented pairs")
    ap.add_argument("--poll-s", type=float, default=0.1, help="meter polling period, s")
    ap.add_argument("--threads", action="store_true", help="bare polling threads instead of calibrate's Session")
    args = ap.parse_args()

    read_fd, write_fd = os.pipe()
    os.environ[events.ENV_FD] = str(write_fd)  # read by events.emit on its first call
    counts = {"events": 0, "polls": 0}
    reader = threading.Thread(target=_pipe_reader, args=(read_fd, counts), daemon=True)
    reader.start()
    params = {
        "model": args.model, "epochs": args.epochs, "train_size": args.train_size,
        "val_size": 64, "image_size": args.image_size, "warmup_steps": 3, "eval_every": 1000,
    }

    def noop(*_a: object, **_k: object) -> None:
        return None

    def instrumented() -> float:
        if args.threads:
            stop = threading.Event()
            pollers, kinds[0] = _pollers(stop, args.poll_s, counts)
            for t in pollers:
                t.start()
            try:
                return train(params, emit=events.emit, verbose=False)["images_per_s"]
            finally:
                stop.set()
                for t in pollers:
                    t.join()
        # calibrate's own recorder in this very process (stricter than `calibrate run`, where
        # the workload has a process of its own): a simulated Watts Up? on a pty and two
        # cpu-model meters at --poll-s, traces written and flushed as in a session
        import tempfile

        from calibrate.session import Session

        kinds[0] = "calibrate Session (sim:wattsup + 2 cpu-model)"
        with tempfile.TemporaryDirectory() as tmp:
            s = Session(["sim:wattsup", f"cpu-model?interval={args.poll_s}",
                         f"cpu-model?name=cpu2&interval={args.poll_s}"], out=Path(tmp) / "s").start()
            try:
                return train(params, emit=events.emit, verbose=False)["images_per_s"]
            finally:
                s.stop()
                assert s.recorder is not None
                counts["polls"] += sum(st.samples for st in s.recorder.states.values())

    def plain() -> float:
        return train(params, emit=noop, verbose=False)["images_per_s"]

    kinds = [""]
    plain()  # discarded: first-run allocator and thread-pool warm-up
    bare, inst = [], []
    for i in range(args.repeats):
        if i % 2:  # alternate the order (ABBA) so drift does not favour one side
            inst.append(instrumented())
            bare.append(plain())
        else:
            bare.append(plain())
            inst.append(instrumented())
        print(f"pair {i + 1}: bare {bare[-1]:8.1f} images/s   instrumented {inst[-1]:8.1f} images/s   "
              f"ratio {inst[-1] / bare[-1]:.3f}", flush=True)
    kind = kinds[0]
    os.close(write_fd)
    reader.join(timeout=5)
    print(f"{args.model} {args.image_size}px, {args.epochs} epochs x {args.train_size} images; "
          f"{counts['events']} events through the pipe, {counts['polls']} polls by {kind} "
          f"every {args.poll_s:g} s")
    ratio = statistics.median(inst) / statistics.median(bare)
    pair_ratio = statistics.median(a / b for a, b in zip(inst, bare, strict=True))
    print(f"median images/s: bare {statistics.median(bare):.1f}, instrumented {statistics.median(inst):.1f}; "
          f"ratio instrumented/bare {ratio:.3f} (median of pair ratios {pair_ratio:.3f}; target >= 0.97)")
    return 0


if __name__ == "__main__":
    t0 = time.monotonic()
    rc = main()
    print(f"({time.monotonic() - t0:.0f} s)")
    sys.exit(rc)
