"""Wall-meter drivers against their simulators: maximum poll rate, wire limit, CPU cost.

For each driver: polls/s achieved back-to-back against its simulator (on this machine's
pty or loopback), beside the limit the wire sets at the configured baud
((request + reply bytes) x 10 bits / baud, plus RTU's 3.5-character silences), and the
driver's own CPU time per poll (``time.thread_time`` in the polling thread, so the
simulator's threads are not counted) as a fraction of the wire time one poll takes at
115200 baud (target < 5 %).  Network drivers (Modbus TCP, HTTP plugs) have no baud; their
CPU per poll is shown against a 1 s poll interval instead.

Run: ``.venv/bin/python benchmarks/bench_drivers.py [--seconds S]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivers.registry import make_meter  # noqa: E402
from drivers.sim.registry import make_simulator  # noqa: E402


class CountingPort:
    """Wraps a pyserial port and counts the bytes each way (to size one poll on the wire)."""

    def __init__(self, ser: Any) -> None:
        self._ser, self.tx, self.rx = ser, 0, 0

    def write(self, data: bytes) -> int:
        self.tx += len(data)
        return self._ser.write(data)

    def read(self, n: int = 1) -> bytes:
        data = self._ser.read(n)
        self.rx += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ser, name)


def poll(meter: Any, seconds: float) -> tuple[int, float, float]:
    """(polls, wall s, thread CPU s) of back-to-back reads for about ``seconds``."""
    meter.read()  # warm up
    n, t0, c0 = 0, time.perf_counter(), time.thread_time()
    while time.perf_counter() - t0 < seconds:
        meter.read()
        n += 1
    return n, time.perf_counter() - t0, time.thread_time() - c0


def row(name: str, polls: int, wall: float, cpu: float, wire_s: float | None, wire_115k_s: float | None,
        note: str = "") -> None:
    rate = polls / wall
    cpu_ms = 1e3 * cpu / polls
    wire_rate = f"{1 / wire_s:8.1f}" if wire_s else "     n/a"
    frac = f"{100 * (cpu / polls) / wire_115k_s:7.1f}%" if wire_115k_s else f"{100 * (cpu / polls) / 1.0:6.2f}%*"
    print(f"{name:<28} {rate:9.1f} {wire_rate} {cpu_ms:10.3f} {frac}  {note}")


def bench_wt310(seconds: float) -> None:
    for wait, baud in ((0, 9600), (1, 9600), (1, 115200)):
        sim = make_simulator("wt310", signal="constant:150", rate=0.1)
        uri = sim.start().replace("baud=9600", f"baud={baud}")
        m = make_meter(uri + f"&interval=0.1&vrange=300&irange=1&wait={wait}")
        try:
            m.open()
            port = m.line.port = CountingPort(m.line.port)  # under the driver's LineTransport
            m.read()
            port.tx = port.rx = 0
            n, wall, cpu = poll(m, seconds)
            per_poll = (port.tx + port.rx) / (n + 1)
            wire = per_poll * 10 / m.baudrate
            row(f"wt310 pty {baud} wait={wait}", n, wall, cpu, wire, per_poll * 10 / 115200,
                f"{per_poll:.0f} B/poll" + (", 1 poll per 0.1 s update" if wait else ""))
        finally:
            m.close()
            sim.stop()


def bench_modbus(seconds: float) -> None:
    for kind, transport, baud in (("sdm120", "pty", None), ("sdm120", "pty", 115200), ("sdm630", "pty", None),
                                  ("sdm630", "pty", 115200),
                                  ("sdm630", "tcp", None)):
        sim = make_simulator(kind, signal="constant:150", transport=transport, update=0.05)
        uri = sim.start()
        m = make_meter(uri + (f"&baud={baud}" if baud else ""))
        try:
            m.open()
            n, wall, cpu = poll(m, seconds)
            blocks = [c for _, c, _ in m.profile.blocks]
            if transport == "tcp":
                row(f"{kind} modbus-tcp", n, wall, cpu, None, None, f"{len(blocks)} read(s)/poll")
                continue
            wire = sum(m.wire_time_s(c) for c in blocks)
            baud = m.baudrate
            m.baudrate = 115200
            wire_115k = sum(m.wire_time_s(c) for c in blocks)
            m.baudrate = baud
            row(f"{kind} rtu pty {baud}", n, wall, cpu, wire, wire_115k,
                f"{len(blocks)} read(s)/poll, {sum(13 + 2 * c for c in blocks)} B + silences")
        finally:
            m.close()
            sim.stop()


def bench_plugs(seconds: float) -> None:
    for kind, opts in (("tasmota", {}), ("shelly", {"gen": 2}), ("shelly", {"gen": 1})):
        sim = make_simulator(kind, signal="constant:150", update=0.05, **opts)
        uri = sim.start()
        m = make_meter(uri)
        try:
            m.open()
            n, wall, cpu = poll(m, seconds)
            row(f"{kind}{opts.get('gen', '')} http", n, wall, cpu, None, None)
        finally:
            m.close()
            sim.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.5, help="polling time per driver (s)")
    args = ap.parse_args()
    print(f"{'driver':<28} {'polls/s':>9} {'wire/s':>8} {'cpu ms/poll':>11} {'cpu/wire@115200':>8}")
    bench_wt310(args.seconds)
    bench_modbus(args.seconds)
    bench_plugs(args.seconds)
    print("wire/s: most polls per second the wire allows at the configured baud; "
          "* network drivers: CPU per poll as a fraction of a 1 s poll interval")


if __name__ == "__main__":
    main()
