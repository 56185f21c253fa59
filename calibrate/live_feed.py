"""The live feed: what a run shows while it records, for the terminal view and the live page.

One :class:`LiveFeed` per run hears every reading and fault row from the recorder's polling
threads (it is a :class:`~calibrate.recorder.ReadingListener`) and every progress tick from
the bench (phase, time left, meters' state, workload progress, the recorder's CPU).  It
keeps, per channel, a bounded ring of ``(seq, t_s, W)`` points on the session clock (t_s:
seconds since the session's clock origin; W None where a fault row broke the trace), and
serves them by cursor: :meth:`since` returns the points whose sequence number is above the
cursor, at most a bounded number per call, so a client that polls with the last cursor it
got never misses a point that is still retained and never receives more than a bounded
answer.

Everything a polling thread calls is O(1) amortised and holds one lock for a few list
appends; readers copy slices under the lock and build their answers outside it.  Names
(meters, channels, phases) come from users and devices: they are kept with control and
escape sequences removed and bounded in length, and whoever shows them must still show
them as text (rich ``Text``, DOM ``textContent``).
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from analysis.escape import terminal_text

# a tick is a calibrate.bench.BenchProgress (not imported: bench imports this module's user)
BenchProgress = Any

POINTS_PER_CHANNEL = 7200  # points kept per channel (2 h at 1 Hz, 12 min at 10 Hz)
MAX_CHANNELS = 64  # channels followed; readings of further ones are counted, not kept
MAX_POINTS_PER_ANSWER = 5000  # points one since() answer holds at most
MAX_PHASES = 500  # phase bands kept (the oldest dropped)
MAX_NOTES = 50
MAX_NAME = 100  # characters of a name kept


def clean_name(value: Any) -> str:
    """A name from a user or a device, as the feed keeps it: no control or escape
    sequences, at most MAX_NAME characters."""
    return terminal_text(value, max_len=MAX_NAME)


@dataclass(frozen=True)
class ChannelState:
    """What a view shows of one channel: its meter, its latest power and when (session s)."""

    channel: str
    meter: str
    power_w: float | None  # latest point (None: the latest row was a fault)
    t_s: float | None  # session time of the latest point (s; None: no point yet)
    last_good_w: float | None  # latest good power (W), shown greyed when power_w is None
    last_good_t_s: float | None  # its session time (s)
    points: int  # points received


class _Series:
    """One channel's ring of points: parallel lists trimmed to ``cap`` every ``cap`` appends."""

    __slots__ = ("channel", "meter", "seq", "t", "w", "cap", "count", "last_good_w", "last_good_t",
                 "last_energy")

    def __init__(self, channel: str, meter: str, cap: int) -> None:
        self.channel, self.meter, self.cap = channel, meter, cap
        self.seq: list[int] = []
        self.t: list[float] = []
        self.w: list[float | None] = []
        self.count = 0
        self.last_good_w: float | None = None
        self.last_good_t: float | None = None
        self.last_energy: tuple[float, float] | None = None  # (t_s, J) for W from a counter

    def append(self, seq: int, t_s: float, w: float | None) -> None:
        self.seq.append(seq)
        self.t.append(t_s)
        self.w.append(w)
        self.count += 1
        if w is not None:
            self.last_good_w, self.last_good_t = w, t_s
        if len(self.seq) > 2 * self.cap:
            cut = len(self.seq) - self.cap
            del self.seq[:cut], self.t[:cut], self.w[:cut]


def _finite(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


class LiveFeed:
    """The in-process feed of one run (see the module doc); thread-safe."""

    def __init__(self, t0_ns: int | None = None, clock: Callable[[], int] = time.monotonic_ns,
                 points_per_channel: int = POINTS_PER_CHANNEL, max_channels: int = MAX_CHANNELS) -> None:
        self.clock = clock
        self.t0_ns = clock() if t0_ns is None else t0_ns
        self.points_per_channel = max(1, int(points_per_channel))
        self.max_channels = max(1, int(max_channels))
        self._lock = threading.Lock()
        self._series: dict[str, _Series] = {}
        self._seq = 0
        self.channels_not_followed = 0  # readings of channels past max_channels
        self._tick: BenchProgress | None = None
        self._phases: list[list[Any]] = []  # [name, start_s, end_s | None]
        self._notes: list[str] = []
        self.title = ""
        self.state = "starting"  # starting | recording | ended: STATUS
        self._consumer_cpu: dict[str, float] = {}

    # -- the clock ----------------------------------------------------------------------
    def set_origin(self, t0_ns: int) -> None:
        """The session clock's origin (ns): point times are seconds since it."""
        with self._lock:
            self.t0_ns = int(t0_ns)

    def now_s(self) -> float:
        """Seconds on the session clock now."""
        return (self.clock() - self.t0_ns) / 1e9

    # -- from the recorder (polling threads) --------------------------------------------
    def _series_for(self, channel: str, meter: str) -> _Series | None:
        s = self._series.get(channel)
        if s is None:
            if len(self._series) >= self.max_channels:
                self.channels_not_followed += 1
                return None
            s = self._series[channel] = _Series(channel, meter, self.points_per_channel)
        return s

    def on_reading(self, meter: str, t_ns: int, values: dict[str, dict[str, float]]) -> None:
        """A good reading of ``meter`` stamped ``t_ns`` (ns): one point per channel with a
        power (W), or one derived from an energy counter (J) between two readings."""
        with self._lock:
            t_s = (t_ns - self.t0_ns) / 1e9
            for channel, q in values.items():
                s = self._series_for(channel, meter)
                if s is None:
                    continue
                w = _finite(q.get("power_w"))
                e = _finite(q.get("energy_j"))
                if w is None and e is not None and s.last_energy is not None:
                    dt = t_s - s.last_energy[0]
                    if dt > 0 and e >= s.last_energy[1]:
                        w = (e - s.last_energy[1]) / dt
                if e is not None:
                    s.last_energy = (t_s, e)
                if w is None:
                    continue
                self._seq += 1
                s.append(self._seq, t_s, w)

    def on_fault(self, meter: str, t_ns: int, code: str, channels: list[str]) -> None:
        """A fault row of ``meter`` (already rate-limited by the recorder): a break in each
        of its channels' traces."""
        with self._lock:
            t_s = (t_ns - self.t0_ns) / 1e9
            for channel in channels:
                s = self._series_for(channel, meter)
                if s is None:
                    continue
                s.last_energy = None  # do not bridge a gap with a counter difference
                self._seq += 1
                s.append(self._seq, t_s, None)

    # -- from the bench -----------------------------------------------------------------
    def update(self, tick: BenchProgress) -> None:
        """The latest progress tick; a change of phase opens a new band (at this instant)."""
        now = self.now_s()
        with self._lock:
            self._tick = tick
            self.state = "recording"
            name = clean_name(tick.phase) if tick.phase else None
            current = self._phases[-1] if self._phases and self._phases[-1][2] is None else None
            if current is not None and current[0] != name:
                current[2] = now
                current = None
            if name and current is None:
                self._phases.append([name, now, None])
                if len(self._phases) > MAX_PHASES:
                    del self._phases[0]

    def add_notes(self, notes: list[str]) -> None:
        """What the user should know of the meters (kept once each, bounded)."""
        with self._lock:
            for n in notes:
                n = terminal_text(n, max_len=300)
                if n not in self._notes and len(self._notes) < MAX_NOTES:
                    self._notes.append(n)

    def finish(self, status: str) -> None:
        """The run ended with ``status``; the open phase band is closed."""
        now = self.now_s()
        with self._lock:
            if self._phases and self._phases[-1][2] is None:
                self._phases[-1][2] = now
            self.state = f"ended: {clean_name(status)}"

    # -- what the views cost ------------------------------------------------------------
    def account_cpu(self, label: str, cpu_s: float) -> None:
        """A consumer of the feed (the terminal view, the live page's server) reports the CPU
        time (s) its threads have spent so far: the bench counts it as recorder overhead."""
        with self._lock:
            self._consumer_cpu[label] = float(cpu_s)

    def consumer_cpu(self) -> dict[str, float]:
        """CPU time (s) by consumer, as last reported."""
        with self._lock:
            return dict(self._consumer_cpu)

    # -- for the views ------------------------------------------------------------------
    @property
    def tick(self) -> BenchProgress | None:
        """The latest progress tick (None before the first)."""
        return self._tick

    def channel_states(self) -> list[ChannelState]:
        """Every followed channel's latest point, in the order they first read."""
        with self._lock:
            return [ChannelState(s.channel, s.meter, s.w[-1] if s.w else None, s.t[-1] if s.t else None,
                                 s.last_good_w, s.last_good_t, s.count) for s in self._series.values()]

    def points_total(self) -> int:
        """Points received since the start (all channels; trimmed ones included)."""
        with self._lock:
            return self._seq

    def since(self, cursor: int, limit: int = MAX_POINTS_PER_ANSWER) -> dict[str, Any]:
        """The points above ``cursor`` (oldest first, at most ``limit``, capped at
        MAX_POINTS_PER_ANSWER), as a JSON-ready dict: ``cursor`` (pass it next time), ``more``
        (more are waiting), ``series`` ([{i, t: [s], w: [W | null]}] by channel index into
        ``channels``), ``channels``, ``phases`` and ``status``.  A cursor older than what is
        retained starts from the oldest point kept."""
        limit = max(1, min(int(limit), MAX_POINTS_PER_ANSWER))
        cursor = max(0, int(cursor))
        with self._lock:
            series = list(self._series.values())
            slices = []
            for s in series:
                k = bisect_right(s.seq, cursor)
                n = len(s.seq) - k
                take = min(n, limit)  # no channel can contribute more than limit
                slices.append((s.seq[k:k + take], s.t[k:k + take], s.w[k:k + take], n > take))
            tick, phases, notes, state = self._tick, [list(p) for p in self._phases], list(self._notes), self.state
            total = self._seq
            channels = [{"id": s.channel, "meter": s.meter} for s in series]
        # the globally oldest `limit` points across channels
        merged = heapq.merge(*[_tagged(seqs, i) for i, (seqs, _, _, _) in enumerate(slices)])
        out: dict[int, tuple[list[float], list[float | None]]] = {}
        last = cursor
        n = 0
        for q, i, j in merged:
            if n >= limit:
                break
            ts, ws = out.setdefault(i, ([], []))
            ts.append(round(slices[i][1][j], 4))
            ws.append(None if slices[i][2][j] is None else round(slices[i][2][j], 4))
            last = q
            n += 1
        more = last < total and (n >= limit or any(sl[3] for sl in slices))
        return {
            "cursor": last,
            "more": bool(more),
            "points_total": total,
            "now_s": round(self.now_s(), 3),
            "channels": channels,
            "series": [{"i": i, "t": ts, "w": ws} for i, (ts, ws) in sorted(out.items())],
            "phases": [{"name": p[0], "start_s": round(p[1], 3), "end_s": None if p[2] is None else round(p[2], 3)}
                       for p in phases],
            "notes": notes,
            "title": self.title,
            "state": state,
            "status": status_dict(tick),
        }


def _tagged(seqs: list[int], i: int) -> Iterator[tuple[int, int, int]]:
    """(seq, channel index, position) of each point of one channel, for the merge."""
    for j, q in enumerate(seqs):
        yield q, i, j


def status_dict(tick: BenchProgress | None) -> dict[str, Any] | None:
    """A progress tick as JSON-ready data (names cleaned; numbers finite or null)."""
    if tick is None:
        return None
    wl = tick.workload
    return {
        "elapsed_s": _finite(tick.elapsed_s),
        "phase": clean_name(tick.phase) if tick.phase else None,
        "left_s": _finite(tick.left_s),
        "left_is_max": bool(tick.left_is_max),
        "recorder_cpu": _finite(tick.recorder_cpu),
        "workload": None if wl is None else {
            "phase": clean_name(wl.phase) if wl.phase else None,
            "epoch": wl.epoch, "epochs": wl.epochs, "step": wl.step,
            "images_per_s": _finite(wl.images_per_s),
        },
        "meters": [{
            "name": clean_name(m.name), "connected": bool(m.connected), "faults": int(m.faults),
            "samples": int(m.samples), "last_fault": clean_name(m.last_fault) if m.last_fault else None,
            "silent_s": _finite(m.silent_s), "silent": bool(m.silent),
        } for m in tick.meters[:MAX_CHANNELS]],
    }
