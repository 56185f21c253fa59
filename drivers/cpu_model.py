"""``cpu-model?idle=W&max=W``: CPU power modelled from utilisation (what software tools fall back to).

    P = idle + (max - idle) * util            util in 0..1, all CPUs, from /proc/stat

This is a *model*, not a measurement: the channel says ``source="modelled"`` and the
meter's notes say which numbers were assumed.  When ``max`` is not given it is a TDP
guess: the CPU model name from ``/proc/cpuinfo`` looked up in CodeCarbon's CPU table
(read as a file when CodeCarbon is installed, without importing it) times the number of
sockets, else CodeCarbon's own unknown-CPU constant of 85 W per socket.  When ``idle`` is
not given it is 10 % of ``max``, the floor CodeCarbon's ``cpu_load`` mode uses.

Utilisation is the busy share of all CPUs' jiffies between two polls (``/proc/stat``
line ``cpu``; idle = idle + iowait).  The power value is therefore the model's *average*
over the interval since the previous poll (``window_s`` = the interval), and, since the
model is linear in utilisation, ``power_w * dt`` is the exact integral of the modelled
power over that interval: the meter's own cumulative ``energy_j`` adds these rectangles
(a trapezoid between two interval averages would smear each interval into its
neighbours and lag the counter by half an interval).

Default interval 0.5 s: the kernel counts jiffies at USER_HZ = 100 per CPU, so a 0.5 s
window holds 50 ticks per CPU (2 % utilisation resolution on one CPU, finer with more);
shorter windows make the utilisation quantised and noisy, longer ones blur the load
edges that alignment against a 1 Hz wall meter relies on.
"""

from __future__ import annotations

import importlib.util
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from drivers.base import Channel, Meter, MeterConfigError, MeterReadError, Reading
from drivers.kernel_files import AttrFile, read_bytes

#: CodeCarbon's TDP for an unknown CPU (codecarbon.external.hardware.POWER_CONSTANT), W per socket
UNKNOWN_CPU_TDP_W = 85.0
#: idle as a share of max when not given (CodeCarbon's cpu_load mode floor: tdp * 0.1)
IDLE_SHARE = 0.1


def parse_proc_stat(text: bytes | str, path: str | os.PathLike[str] = "/proc/stat") -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from the aggregate ``cpu`` line that starts ``/proc/stat``."""
    if isinstance(text, bytes):
        text = text.decode("ascii", errors="replace")
    line = text.partition("\n")[0]
    parts = line.split()
    if not parts or parts[0] != "cpu" or len(parts) < 5:
        raise MeterReadError(f"{path}: first line is not the aggregate 'cpu' line: {line[:60]!r}",
                             code="garbage")
    try:
        fields = [int(x) for x in parts[1:]]
    except ValueError:
        raise MeterReadError(f"{path}: non-numeric field in {line[:60]!r}", code="garbage") from None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal; guest is inside user
    return total - idle, total


def read_proc_stat(path: str | os.PathLike[str] = "/proc/stat") -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, read once from ``path`` (see :func:`parse_proc_stat`)."""
    return parse_proc_stat(read_bytes(path), path)


def utilisation(prev: tuple[int, int], now: tuple[int, int]) -> float:
    """Busy share (0..1) between two ``read_proc_stat`` samples; 0 when no tick elapsed."""
    d_busy, d_total = now[0] - prev[0], now[1] - prev[1]
    if d_total < 0 or d_busy < 0:
        raise MeterReadError(f"/proc/stat counters went backwards ({prev} -> {now})", code="range")
    if d_total == 0:
        return 0.0
    return min(max(d_busy / d_total, 0.0), 1.0)


def fit_idle_max(util: Sequence[float], watts: Sequence[float]) -> tuple[float, float]:
    """Least-squares (idle W, max W) of ``watts = idle + (max - idle) * util``.

    ``util`` in 0..1; needs at least two distinct utilisation values.
    """
    import numpy as np
    from scipy.stats import linregress

    u = np.asarray(util, dtype=float)
    w = np.asarray(watts, dtype=float)
    if u.shape != w.shape or u.ndim != 1:
        raise ValueError(f"util and watts must be 1-D of equal length, got {u.shape} and {w.shape}")
    ok = np.isfinite(u) & np.isfinite(w)
    u, w = u[ok], w[ok]
    if u.size < 2 or np.ptp(u) <= 0:
        raise ValueError("fitting idle/max needs at least two different utilisation values")
    fit = linregress(u, w)
    return float(fit.intercept), float(fit.intercept + fit.slope)


def _cpuinfo(path: str = "/proc/cpuinfo") -> tuple[str | None, int]:
    """(model name, number of sockets) from /proc/cpuinfo; (None, 1) if unknown."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return None, 1
    models = re.findall(r"^model name\s*:\s*(.+)$", text, flags=re.M)
    sockets = set(re.findall(r"^physical id\s*:\s*(\d+)$", text, flags=re.M))
    return (models[0].strip() if models else None), max(1, len(sockets))


def _normalise(name: str) -> str:
    name = re.sub(r"\((R|TM|tm|r)\)", "", name)
    name = re.sub(r"\s+CPU\s*@.*$", "", name)
    name = re.sub(r"@\s*\d+(\.\d+)?\s*GHz", "", name)
    name = re.sub(r"\b\d+-Core Processor\b|\bProcessor\b|\bCPU\b", "", name)
    return " ".join(name.lower().split())


def lookup_tdp(model: str | None) -> tuple[float | None, str | None]:
    """(TDP W per socket, matched table name) from CodeCarbon's CPU table, or (None, None).

    Reads ``codecarbon/data/hardware/cpu_power.csv`` as a file (CodeCarbon is not
    imported).  An exact normalised match wins; otherwise the longest table name whose
    words all appear in the model name.
    """
    if not model:
        return None, None
    try:
        spec = importlib.util.find_spec("codecarbon")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None, None
    table = Path(list(spec.submodule_search_locations)[0]) / "data" / "hardware" / "cpu_power.csv"
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return None, None
    target = _normalise(model)
    words = set(target.split())
    best: tuple[int, str, float] | None = None
    for line in lines:
        name, _, tdp = line.rpartition(",")
        try:
            watts = float(tdp)
        except ValueError:
            continue
        norm = _normalise(name)
        if norm == target:
            return watts, name
        toks = norm.split()
        if len(toks) >= 2 and words.issuperset(toks) and any(c.isdigit() for c in norm):
            if best is None or len(norm) > best[0]:
                best = (len(norm), name, watts)
    return (best[2], best[1]) if best else (None, None)


class CpuModelMeter(Meter):
    """Modelled CPU power (W) and its integral (J) from system-wide utilisation."""

    local = True  # reads never block: polled in the recorder's shared local thread

    kind = "cpu-model"
    default_interval_s = 0.5
    min_interval_s = 0.01  # a /proc read: local and cheap

    def __init__(self, idle_w: float | None = None, max_w: float | None = None,
                 stat_path: str = "/proc/stat", name: str | None = None,
                 interval_s: float | None = None, cpuinfo_path: str = "/proc/cpuinfo",
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        super().__init__(name, interval_s)
        self.stat_path = stat_path
        self._clock = clock_ns
        model, sockets = _cpuinfo(cpuinfo_path)
        self.cpu_model, self.sockets = model, sockets
        self.assumed: dict[str, str] = {}
        if max_w is None:
            tdp, matched = lookup_tdp(model)
            if tdp is not None:
                max_w = tdp * sockets
                self.assumed["max_w"] = (f"TDP {tdp:g} W x {sockets} socket(s) of {matched!r} "
                                         "from CodeCarbon's CPU table")
            else:
                max_w = UNKNOWN_CPU_TDP_W * sockets
                self.assumed["max_w"] = (f"CPU {model!r} not in a TDP table: CodeCarbon's "
                                         f"unknown-CPU {UNKNOWN_CPU_TDP_W:g} W x {sockets} socket(s)")
        if idle_w is None:
            idle_w = IDLE_SHARE * max_w
            self.assumed["idle_w"] = f"{IDLE_SHARE:.0%} of max (CodeCarbon's cpu_load floor)"
        if not (idle_w >= 0 and max_w > 0 and max_w >= idle_w):
            raise MeterConfigError(f"{self.name}: need 0 <= idle <= max and max > 0 W, "
                                   f"got idle={idle_w} max={max_w}")
        self.idle_w, self.max_w = float(idle_w), float(max_w)
        self.notes.append(
            f"{self.name}: MODELLED, not measured: P = {self.idle_w:.1f} W + "
            f"({self.max_w:.1f} - {self.idle_w:.1f}) W x CPU utilisation"
        )
        self.notes_explain_modelled = True
        for key, why in self.assumed.items():
            self.notes.append(f"{self.name}: {key.replace('_w', '')} assumed: {why}; "
                              f"pass cpu-model?idle=W&max=W (measured or fitted) to override")
        self._prev: tuple[int, int] | None = None
        self._stat: AttrFile | None = None  # kept open on procfs (pread), else opened per read
        self._prev_ns = 0
        self._energy_j = 0.0

    def power(self, util: float) -> float:
        """Modelled power (W) at utilisation ``util`` (0..1)."""
        return self.idle_w + (self.max_w - self.idle_w) * util

    def open(self) -> list[Channel]:
        self.close()
        try:
            self._stat = AttrFile(self.stat_path)
            self._prev = parse_proc_stat(self._stat.read(), self.stat_path)
        except OSError as exc:
            raise MeterConfigError(f"{self.name}: cannot read {self.stat_path} ({exc.strerror}); "
                                   "cpu-model needs Linux /proc/stat (or pass stat=PATH)") from None
        except MeterReadError as exc:
            raise MeterConfigError(f"{self.name}: {exc}; pass stat=PATH to a Linux /proc/stat") from None
        self._prev_ns = self._clock()  # energy_j keeps counting across a reopen
        self.channels = [Channel(
            id=self.name, scope="cpu", source="modelled",
            quantities=("power_w", "energy_j", "utilisation"),
            window_s=self.interval_s, update_interval_s=0.01,  # USER_HZ jiffies
            primary="power_w",
            info={"model": "linear utilisation model", "idle_w": self.idle_w, "max_w": self.max_w,
                  "assumed": dict(self.assumed), "cpu": self.cpu_model, "sockets": self.sockets,
                  "stat_path": str(self.stat_path),
                  "energy": "integral of the modelled power between this meter's own polls"},
        )]
        return self.channels

    def read(self) -> Reading:
        if self._prev is None or self._stat is None:
            raise MeterReadError(f"{self.name}: not open", code="exception")
        try:
            now = parse_proc_stat(self._stat.read(), self.stat_path)
        except OSError as exc:
            raise MeterReadError(f"{self.name}: {self.stat_path}: {exc}", code="exception") from None
        t_ns = self._clock()
        util = utilisation(self._prev, now)
        p = self.power(util)
        dt = (t_ns - self._prev_ns) / 1e9
        if dt > 0:
            self._energy_j += p * dt
        self._prev, self._prev_ns = now, t_ns
        return Reading({self.name: {"power_w": p, "energy_j": self._energy_j, "utilisation": util}})

    def close(self) -> None:
        self._prev = None
        if self._stat is not None:
            self._stat.close()
            self._stat = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "idle_w": self.idle_w, "max_w": self.max_w,
                "assumed": dict(self.assumed), "stat_path": str(self.stat_path),
                "cpu": self.cpu_model, "sockets": self.sockets}


def from_uri(uri: Any) -> CpuModelMeter:
    """``cpu-model?idle=W&max=W&stat=PATH`` -> CpuModelMeter."""
    if uri.target:
        raise MeterConfigError(f"{uri.raw}: cpu-model takes no target (use cpu-model?idle=W&max=W)")
    return CpuModelMeter(idle_w=uri.take("idle", None, float), max_w=uri.take("max", None, float),
                         stat_path=uri.take("stat", "/proc/stat"),
                         name=uri.name, interval_s=uri.interval_s)
