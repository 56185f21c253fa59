"""Power signals that simulators report, so tests know the truth they compare against.

A signal is a callable ``signal(t_s) -> watts`` on the simulator's own time base
(seconds since the simulator started).  ``make_signal(spec)`` parses the ``signal=``
option of ``sim:KIND?signal=...`` and ``calibrate simulate KIND --signal ...``:

========================================  =============================================
``host`` (default)                        wall power following this machine's real CPU
                                          load through a PSU/fan model (see HostLoad)
``constant:W``                            constant W
``steps:W1,W2,...@S``                     each level held S seconds, then repeats
``square:LOW,HIGH@PERIOD[/DUTY]``         square wave, DUTY (0..1, default 0.5) high
``csv:PATH``                              a trace: columns t_s (or timestamp), power_w;
                                          played from its first time stamp, repeated
========================================  =============================================
"""

from __future__ import annotations

import csv
import math
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

from drivers.base import MeterConfigError
from drivers.cpu_model import read_proc_stat

PowerSignal = Callable[[float], float]


def constant(watts: float) -> PowerSignal:
    return lambda t: watts


def steps(levels: list[float], hold_s: float) -> PowerSignal:
    if hold_s <= 0 or not levels:
        raise MeterConfigError("steps signal needs levels and a hold time > 0 s")
    return lambda t: levels[int(max(t, 0.0) // hold_s) % len(levels)]


def square(low: float, high: float, period_s: float, duty: float = 0.5) -> PowerSignal:
    if period_s <= 0 or not 0 < duty < 1:
        raise MeterConfigError("square signal needs period > 0 s and 0 < duty < 1")
    return lambda t: high if (max(t, 0.0) % period_s) < duty * period_s else low


def from_csv(path: str | os.PathLike[str]) -> PowerSignal:
    """Replay a power trace (t_s or timestamp column, power_w column), linearly interpolated."""
    p = Path(path)
    if not p.is_file():
        raise MeterConfigError(f"signal trace {p} not found")
    ts: list[float] = []
    ws: list[float] = []
    with p.open(newline="") as fh:
        for row in csv.DictReader(fh):
            t = row.get("t_s", row.get("timestamp"))
            w = row.get("power_w")
            if t is None or w is None:
                raise MeterConfigError(f"{p}: needs columns t_s (or timestamp) and power_w")
            ts.append(float(t))
            ws.append(float(w))
    if len(ts) < 2:
        raise MeterConfigError(f"{p}: needs at least two samples")
    t0, span = ts[0], ts[-1] - ts[0]

    def signal(t: float) -> float:
        x = t0 + (t % span)
        lo, hi = 0, len(ts) - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if ts[mid] <= x:
                lo = mid
            else:
                hi = mid
        f = (x - ts[lo]) / (ts[hi] - ts[lo]) if ts[hi] > ts[lo] else 0.0
        return ws[lo] + f * (ws[hi] - ws[lo])

    return signal


class HostLoad:
    """Wall power that follows this machine's real CPU load.

    A plausible wall model: component (DC) power = base + span * util^0.9, plus a fan term
    that rises with a ~8 s thermal lag; wall (AC) = DC / PSU efficiency, where the
    efficiency curve of an 80 PLUS-like supply is lower at light load.  Utilisation is
    sampled from ``/proc/stat`` at 10 Hz in a background thread.  Gaussian noise of
    ``noise_w`` W (1 sigma) is added so fits have realistic residuals.
    """

    def __init__(
        self,
        idle_dc_w: float = 42.0,
        span_dc_w: float = 85.0,
        fan_w: float = 6.0,
        psu_rated_w: float = 400.0,
        noise_w: float = 0.6,
        stat_path: str = "/proc/stat",
        seed: int | None = None,
    ) -> None:
        self.idle_dc_w, self.span_dc_w, self.fan_w = idle_dc_w, span_dc_w, fan_w
        self.psu_rated_w, self.noise_w, self.stat_path = psu_rated_w, noise_w, stat_path
        self._rng = random.Random(seed)
        self._util = 0.0
        self._fan = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sampler(self) -> None:
        busy0, total0 = read_proc_stat(self.stat_path)
        last = time.monotonic()
        while not self._stop.wait(0.1):
            busy1, total1 = read_proc_stat(self.stat_path)
            now = time.monotonic()
            dt_total = total1 - total0
            util = (busy1 - busy0) / dt_total if dt_total > 0 else 0.0
            with self._lock:
                self._util = min(max(util, 0.0), 1.0)
                tau = 8.0
                self._fan += (self._util - self._fan) * min(1.0, (now - last) / tau)
            busy0, total0, last = busy1, total1, now

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._sampler, name="sim-hostload", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def efficiency(self, dc_w: float) -> float:
        load = dc_w / self.psu_rated_w
        return 0.72 + 0.18 * (1.0 - math.exp(-load / 0.12))  # ~0.76 at 5% load, ~0.90 at 50%

    def __call__(self, t: float) -> float:
        self.start()
        with self._lock:
            util, fan = self._util, self._fan
        dc = self.idle_dc_w + self.span_dc_w * util**0.9 + self.fan_w * fan
        return dc / self.efficiency(dc) + self._rng.gauss(0.0, self.noise_w)


def make_signal(spec: str | None) -> PowerSignal:
    """Parse a signal spec (see module doc).  Raises MeterConfigError."""
    spec = (spec or "host").strip()
    kind, _, arg = spec.partition(":")
    try:
        if kind == "host":
            return HostLoad()
        if kind == "constant":
            return constant(float(arg))
        if kind == "steps":
            levels, _, hold = arg.partition("@")
            return steps([float(x) for x in levels.split(",")], float(hold or 5))
        if kind == "square":
            lv, _, timing = arg.partition("@")
            low, high = (float(x) for x in lv.split(","))
            period, _, duty = timing.partition("/")
            return square(low, high, float(period or 10), float(duty or 0.5))
        if kind == "csv":
            return from_csv(arg)
    except (ValueError, TypeError):
        raise MeterConfigError(f"cannot parse signal {spec!r} (see `calibrate simulate --help`)") from None
    raise MeterConfigError(
        f"unknown signal {spec!r}; use host, constant:W, steps:W1,W2@S, square:LOW,HIGH@PERIOD[/DUTY] or csv:PATH"
    )
