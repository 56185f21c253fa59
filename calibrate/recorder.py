"""The recorder: one polling thread per meter, per-channel trace files, one flusher.

Each meter is polled in its own thread at its own interval (push meters, which send a
value per interval on their own, are read back to back).  A polled sample is stamped at
the midpoint of request and reply on the session clock and the round trip is kept.
Faults never stop a session: a failed poll writes a flagged row and is counted; a meter
that disconnects is closed and reopened every 0.5 s until it returns, and the gap is
recorded.  The threads' own CPU time is measured (``time.thread_time``) so the report
can say what the recorder cost.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calibrate.clock import midpoint
from calibrate.storage import TRACE_DIR, EventWriter, TraceWriter
from drivers.base import Channel, Meter, MeterDisconnected, MeterError, MeterReadError, safe_name

RECONNECT_EVERY_S = 0.5
FLUSH_EVERY_S = 0.5
MAX_LOGGED_FAULTS = 20  # per meter and code; later ones are only counted


@dataclass
class MeterState:
    """Live figures of one meter (read by the progress display)."""

    meter: Meter
    writers: dict[str, TraceWriter] = field(default_factory=dict)
    samples: int = 0
    faults: Counter = field(default_factory=Counter)
    last: dict[str, dict[str, float]] = field(default_factory=dict)
    connected: bool = True
    cpu_s: float = 0.0
    thread: threading.Thread | None = None


class Recorder:
    """Records ``meters`` into ``out_dir/traces``; events go through :meth:`event`."""

    def __init__(self, meters: list[Meter], out_dir: Path, events: EventWriter,
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        names = [m.name for m in meters]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise MeterError(f"two meters are named {', '.join(sorted(dupes))}: add ?name=... to one")
        self.meters = meters
        self.out_dir = Path(out_dir)
        self.events = events
        self.clock = clock
        self.states: dict[str, MeterState] = {}
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self._started_ns = 0
        self._stopped_ns = 0

    # -- lifecycle --------------------------------------------------------------------
    def open_all(self) -> None:
        """Open every meter; on a failure close those already open and re-raise."""
        opened: list[Meter] = []
        try:
            for m in self.meters:
                m.open()
                opened.append(m)
        except BaseException:
            for m in opened:
                try:
                    m.release()
                except Exception:
                    pass
            raise

    def start(self) -> None:
        """Open files and start the threads (meters must be open: see :meth:`open_all`)."""
        (self.out_dir / TRACE_DIR).mkdir(parents=True, exist_ok=True)
        for m in self.meters:
            st = MeterState(m)
            for ch in m.channels:
                self._writer(st, ch)
            self.states[m.name] = st
        self._started_ns = self.clock()
        for st in self.states.values():
            st.thread = threading.Thread(target=self._poll_loop, args=(st,),
                                         name=f"meter-{st.meter.name}", daemon=True)
            st.thread.start()
        self._flusher = threading.Thread(target=self._flush_loop, name="flusher", daemon=True)
        self._flusher.start()

    def stop(self) -> None:
        self._stop.set()
        for st in self.states.values():
            if st.thread is not None:
                st.thread.join(timeout=10)
        self._stopped_ns = self.clock()
        for st in self.states.values():
            try:
                st.meter.release()
            except Exception as exc:  # a meter that fails to close must not lose data
                self.events.write({"t_ns": self.clock(), "kind": "meter_fault", "meter": st.meter.name,
                                   "code": "close", "message": str(exc)})
            for w in st.writers.values():
                w.close()
        if self._flusher is not None:
            self._flusher.join(timeout=2)

    # -- figures ----------------------------------------------------------------------
    def cpu_seconds(self) -> float:
        """CPU time spent in the meter threads so far (s)."""
        return sum(st.cpu_s for st in self.states.values())

    def summary(self) -> dict[str, Any]:
        wall_s = max((self._stopped_ns or self.clock()) - self._started_ns, 1) / 1e9
        cpu = self.cpu_seconds()
        return {
            "wall_s": wall_s,
            "cpu_s": cpu,
            "cpu_fraction_of_core": cpu / wall_s,
            "meters": {
                name: {"samples": st.samples, "faults": dict(st.faults), "cpu_s": st.cpu_s}
                for name, st in self.states.items()
            },
        }

    # -- internals --------------------------------------------------------------------
    def _writer(self, st: MeterState, ch: Channel) -> TraceWriter:
        w = st.writers.get(ch.id)
        if w is None:
            path = self.out_dir / TRACE_DIR / f"{safe_name(ch.id)}.csv"
            w = st.writers[ch.id] = TraceWriter(path, tuple(ch.quantities))
        return w

    def _flag_all(self, st: MeterState, t_ns: int, rtt_ns: int, code: str, message: str) -> None:
        st.faults[code] += 1
        for w in st.writers.values():
            w.write(t_ns, rtt_ns, None, flag=code)
        if st.faults[code] <= MAX_LOGGED_FAULTS:
            self.events.write({"t_ns": t_ns, "kind": "meter_fault", "meter": st.meter.name,
                               "code": code, "message": message[:300]})

    def _reconnect(self, st: MeterState) -> bool:
        """Reopen a meter until it answers or the session stops; True if back."""
        m = st.meter
        try:
            m.close()
        except Exception:
            pass
        st.connected = False
        while not self._stop.wait(RECONNECT_EVERY_S):
            try:
                channels = m.open()
            except (MeterError, OSError):
                continue
            except Exception:  # a driver bug during reopen: keep trying, never crash
                continue
            for ch in channels:
                self._writer(st, ch)
            st.connected = True
            t = self.clock()
            for w in st.writers.values():
                w.write(t, 0, None, flag="reconnected")
            self.events.write({"t_ns": t, "kind": "meter_reconnected", "meter": m.name})
            return True
        return False

    def _poll_loop(self, st: MeterState) -> None:
        m = st.meter
        push = getattr(m, "push", False)
        interval_ns = int(m.interval_s * 1e9)
        next_ns = self.clock()
        cpu0 = time.thread_time()
        try:
            while not self._stop.is_set():
                t0 = self.clock()
                try:
                    reading = m.read()
                except MeterDisconnected as exc:
                    t1 = self.clock()
                    self._flag_all(st, *midpoint(t0, t1), "disconnected", str(exc))
                    st.cpu_s = time.thread_time() - cpu0
                    if not self._reconnect(st):
                        break
                    next_ns = self.clock()
                    continue
                except MeterReadError as exc:
                    t1 = self.clock()
                    self._flag_all(st, *midpoint(t0, t1), exc.code, str(exc))
                except Exception as exc:  # a driver bug: count it, keep the session going
                    t1 = self.clock()
                    self._flag_all(st, *midpoint(t0, t1), "error", f"{type(exc).__name__}: {exc}")
                else:
                    t1 = self.clock()
                    if reading.t_ns is not None:
                        t_ns, rtt_ns = reading.t_ns, reading.rtt_ns or 0
                    else:
                        t_ns, rtt_ns = midpoint(t0, t1)
                    for ch_id, values in reading.values.items():
                        w = st.writers.get(ch_id)
                        if w is None:  # a channel the meter did not announce: record it anyway
                            w = self._writer(st, Channel(id=ch_id, quantities=tuple(values)))
                        w.write(t_ns, rtt_ns, values, flag=reading.flags.get(ch_id, ""))
                    st.samples += 1
                    st.last = reading.values
                st.cpu_s = time.thread_time() - cpu0
                if push:
                    continue
                next_ns += interval_ns
                now = self.clock()
                if next_ns <= now:  # fell behind (slow meter): skip, do not burst
                    next_ns = now + interval_ns
                self._stop.wait((next_ns - now) / 1e9)
        finally:
            st.cpu_s = time.thread_time() - cpu0

    def _flush_loop(self) -> None:
        while not self._stop.wait(FLUSH_EVERY_S):
            for st in list(self.states.values()):
                for w in list(st.writers.values()):
                    w.flush()
