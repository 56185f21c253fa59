"""The recorder: polling threads, per-channel trace files, flushing.

Each meter is polled at its own interval: serial, network and push meters in a thread
of their own (push meters, which send a value per interval on their own, are read back
to back), meters whose reads never wait on a device (sysfs, /proc, NVML) together in one
*shared* thread.  A wake-up costs more CPU than a sysfs read (about 80 us of CPU on a
small VM), so one thread for all of them is the cheapest way to poll, and no thread ever
wakes up only to flush: each thread flushes the files it writes, a device thread after
every poll (before it waits on its device again), the shared thread when its rows are
FLUSH_EVERY_S old or before a sleep that would outlast that.  A shared meter whose call
can hang (NVML when a GPU falls off the bus: ``Meter.may_stall``) is moved to a thread of
its own after its first poll or reopen that takes longer than STALL_S, so it never holds
up the others twice.
A polled sample is stamped at
the midpoint of request and reply on the session clock and the round trip is kept.
Faults never stop a session: a failed poll writes a flagged row and is counted; a meter
that disconnects is closed and reopened every 0.5 s until it returns, and the gap is
recorded.  The threads' own CPU time, wake-ups and flushing included, is measured
(``time.thread_time``) so the report can say what the recorder cost.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from analysis.session_format import SEGMENT_BREAKS, TRACE_DIR, EventWriter, TraceWriter, trace_path
from calibrate.clock import midpoint
from drivers.base import Channel, Meter, MeterConfigError, MeterDisconnected, MeterReadError

RECONNECT_EVERY_S = 0.5
FLUSH_EVERY_S = 0.5
MAX_SLEEP_S = 0.25  # a stop request is seen within this long
MAX_LOGGED_FAULTS = 20  # per meter and code; later ones are only counted
FAULT_ROWS_PER_S = 10.0  # fault rows a meter may write a second (a burst of as many); the rest are counted
PUSH_FAULT_BACKOFF_S = 0.02  # a push meter whose read failed is read again after this long, not at once
STALL_S = 0.25  # a shared meter whose poll or reopen takes longer gets a thread of its own
CPU_RECENT_S = 5.0  # the recorder's "current" CPU is its rate over about this long (s)


class ReadingListener(Protocol):
    """Hears every good reading and every fault row a polling thread writes (a live view).

    Called on the polling threads: it must be quick, bounded and never block.
    """

    def on_reading(self, meter: str, t_ns: int, values: dict[str, dict[str, float]]) -> None: ...

    def on_fault(self, meter: str, t_ns: int, code: str, channels: list[str]) -> None: ...


class DiscardEvents:
    """An events sink that keeps nothing (``calibrate watch``: live readings, no session)."""

    def write(self, event: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class _DiscardTrace:
    """A trace writer that keeps nothing (a recorder with no folder)."""

    def write(self, *args: Any, **kwargs: Any) -> None:
        pass

    write_fault = flush = close = write


@dataclass
class MeterState:
    """Live figures of one meter (read by the progress display)."""

    meter: Meter
    writers: dict[str, TraceWriter] = field(default_factory=dict)
    samples: int = 0
    faults: Counter = field(default_factory=Counter)
    last: dict[str, dict[str, float]] = field(default_factory=dict)
    connected: bool = True
    cpu_s: float = 0.0  # CPU time of this meter's polls and reopens (s)
    fault_tokens: float = FAULT_ROWS_PER_S
    fault_refill_ns: int = 0
    suppressed: Counter = field(default_factory=Counter)  # fault rows not written (rate limit)
    suppressed_since_ns: int = 0
    suppressed_total: Counter = field(default_factory=Counter)
    last_ok_ns: int = 0  # stamp of the last good reading (ns)
    last_fault: str | None = None  # code of the last poll's fault, None once a poll succeeds
    next_ns: int = 0
    reopen_ns: int = 0


@dataclass(frozen=True)
class LiveMeter:
    """What a progress display shows of one meter: values by channel and quantity (W, J, ...)."""

    name: str
    connected: bool
    values: dict[str, dict[str, float]]
    samples: int
    faults: int
    silent_s: float | None  # seconds since its last good reading (None: none yet)
    interval_s: float  # its poll interval (s)
    last_fault: str | None = None  # the fault code of its last poll (None: the last poll was good)
    channels: tuple[str, ...] = ()  # the channels it records (shown even while they have no value)

    @property
    def silent(self) -> bool:
        """No good reading for over 3 poll intervals (and 2 s): show it, do not hide it."""
        return self.silent_s is not None and self.silent_s > max(3 * self.interval_s, 2.0)


class Recorder:
    """Records ``meters`` into ``out_dir/traces``; events go to ``events``.

    ``out_dir`` None records nothing (pass :class:`DiscardEvents`): the same polling, faults
    and reconnects for a live display only (``calibrate watch``).
    """

    def __init__(self, meters: list[Meter], out_dir: Path | None, events: EventWriter | DiscardEvents,
                 clock: Callable[[], int] = time.monotonic_ns,
                 on_write_error: Callable[[OSError], None] | None = None) -> None:
        self.check_names(meters)
        self.meters = meters
        #: called once (from a polling thread) when a trace cannot be written (a full disk)
        self.on_write_error = on_write_error
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.events = events
        self.clock = clock
        # push meters stamp readings with CLOCK_MONOTONIC; a test clock maps them onto itself
        self._from_monotonic: Callable[[int], int] | None = getattr(clock, "from_monotonic", None)
        self.states: dict[str, MeterState] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._thread_cpu: dict[str, float] = {}  # polling thread -> its CPU time (s)
        self._started_ns = 0
        self._stopped_ns = 0
        self._listeners: list[ReadingListener] = []
        self._unopened: set[str] = set()  # meters that start disconnected (open_available)
        self._cpu_marks: list[tuple[int, float]] = []  # (clock ns, CPU s) for cpu_recent
        self._cpu_lock = threading.Lock()

    @staticmethod
    def check_names(meters: list[Meter]) -> None:
        """Meter names must be unique (they name the trace files)."""
        names = [m.name for m in meters]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise MeterConfigError(f"two meters are named {', '.join(sorted(dupes))}: add ?name=... to one")

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

    def open_available(self) -> dict[str, Exception]:
        """Open every meter that opens; those that do not start disconnected (reopened every
        RECONNECT_EVERY_S once started) and are returned with why.  A configuration error
        (MeterConfigError) closes those already open and is raised: it will not get better."""
        failed: dict[str, Exception] = {}
        for m in self.meters:
            try:
                m.open()
            except MeterConfigError:
                for other in self.meters:
                    if other is not m and other.name not in failed:
                        try:
                            other.release()
                        except Exception:
                            pass
                raise
            except Exception as exc:
                failed[m.name] = exc
        self._unopened = set(failed)
        return failed

    def add_listener(self, listener: ReadingListener) -> None:
        """Tell ``listener`` of every reading and fault row from now on (see ReadingListener)."""
        self._listeners.append(listener)

    def start(self) -> None:
        """Open files and start the threads (meters must be open: see :meth:`open_all`)."""
        if self.out_dir is not None:
            (self.out_dir / TRACE_DIR).mkdir(parents=True, exist_ok=True)
        for m in self.meters:
            st = MeterState(m)
            if m.name in self._unopened:
                st.connected = False  # reopened by its polling thread at once, then every 0.5 s
            for ch in m.channels:
                self._writer(st, ch)
            self.states[m.name] = st
        self._started_ns = self.clock()
        # Meters whose reads never wait on a device share one thread: each still runs at
        # its own interval, and every wake-up saved is CPU not spent perturbing the
        # measurement.  Serial, network and push meters get a thread each, so a slow or
        # silent device never delays another.
        shared = [st for st in self.states.values() if st.meter.local and not st.meter.push]
        for st in self.states.values():
            if st not in shared:
                self._spawn([st])
        if shared:
            self._spawn(shared, shared=True)

    def _spawn(self, group: list[MeterState], shared: bool = False) -> None:
        label = "shared" if shared else group[0].meter.name
        t = threading.Thread(target=self._poll_loop, args=(group, shared), name=f"meter-{label}",
                             daemon=True)
        self._threads.append(t)
        t.start()

    def stop(self) -> None:
        self._stop.set()
        for m in self.meters:
            m.request_stop()  # push meters end a blocking read within a fraction of a second
        joined = 0
        while joined < len(self._threads):  # a meter moved out of the shared thread adds one
            self._threads[joined].join(timeout=10)
            joined += 1
        self._stopped_ns = self.clock()
        for st in self.states.values():
            self._report_suppressed(st, self._stopped_ns)
            try:
                st.meter.release()
            except Exception as exc:  # a meter that fails to close must not lose data
                self.events.write({"t_ns": self.clock(), "kind": "meter_fault", "meter": st.meter.name,
                                   "code": "close", "message": str(exc)})
            for w in st.writers.values():
                w.close()

    # -- figures ----------------------------------------------------------------------
    @property
    def started_ns(self) -> int:
        """When the polling began (ns on the session clock; 0 before :meth:`start`)."""
        return self._started_ns

    def cpu_seconds(self) -> float:
        """CPU time spent in the polling threads so far, wake-ups and flushes included (s)."""
        return sum(list(self._thread_cpu.values()))

    def cpu_recent(self) -> float | None:
        """The recorder's CPU over about the last CPU_RECENT_S, as a fraction of one core
        (since the start until that long has passed); None before a first measurement.
        The polling threads update their totals at each wake-up, so a slow meter's share
        lags by up to one of its intervals."""
        now, cpu = self.clock(), self.cpu_seconds()
        with self._cpu_lock:
            marks = self._cpu_marks
            if not marks and self._started_ns:
                marks.append((self._started_ns, 0.0))
            marks.append((now, cpu))
            horizon = now - int(CPU_RECENT_S * 1e9)
            while len(marks) > 2 and marks[1][0] <= horizon:
                del marks[0]  # keep one mark at or before the horizon
            t0, c0 = marks[0]
        if now - t0 < 1e9:  # under a second: thread start-up, not a rate
            return None
        return max(0.0, (cpu - c0) / ((now - t0) / 1e9))

    def account_cpu(self, label: str, cpu_s: float) -> None:
        """Count CPU time (s) that bench threads outside the recorder spent on the session
        (the workload's event pump, its process watch) in the overhead it reports."""
        self._thread_cpu[label] = float(cpu_s)

    def summary(self) -> dict[str, Any]:
        wall_s = max((self._stopped_ns or self.clock()) - self._started_ns, 1) / 1e9
        cpu = self.cpu_seconds()
        return {
            "wall_s": wall_s,
            "cpu_s": cpu,
            "cpu_fraction_of_core": cpu / wall_s,
            "meters": {
                name: {"samples": st.samples, "faults": dict(st.faults), "cpu_s": st.cpu_s,
                       "fault_rows_not_written": sum(st.suppressed_total.values())}
                for name, st in self.states.items()
            },
        }

    def latest(self, channel: str) -> dict[str, float] | None:
        """The latest values of ``channel`` by quantity (W, J, ...), or None while it has none
        (not yet read, or its last poll failed)."""
        for st in self.states.values():
            if channel in st.last:
                return dict(st.last[channel])
        return None

    def channels(self) -> list[tuple[Meter, Channel]]:
        """Every (meter, channel) being recorded, in meter order."""
        return [(st.meter, ch) for st in self.states.values() for ch in st.meter.channels]

    def live(self) -> list[LiveMeter]:
        """A snapshot of every meter for a progress display: connected, latest values."""
        now = self.clock()
        return [LiveMeter(st.meter.name, st.connected, {c: dict(v) for c, v in st.last.items()},
                          st.samples, sum(st.faults.values()),
                          (now - st.last_ok_ns) / 1e9 if st.last_ok_ns else None, st.meter.interval_s,
                          last_fault=st.last_fault, channels=tuple(st.writers))
                for st in list(self.states.values())]

    def last_reading_ns(self) -> dict[str, int]:
        """Per meter: the session-clock time (ns) of its last good reading (0: none yet)."""
        return {name: st.last_ok_ns for name, st in self.states.items()}

    # -- internals --------------------------------------------------------------------
    def _writer(self, st: MeterState, ch: Channel) -> TraceWriter:
        w = st.writers.get(ch.id)
        if w is None:
            if self.out_dir is None:
                w = st.writers[ch.id] = _DiscardTrace()  # type: ignore[assignment]
            else:
                w = st.writers[ch.id] = TraceWriter(trace_path(self.out_dir, ch.id), tuple(ch.quantities),
                                                    on_error=self.on_write_error)
        return w

    def _tell(self, method: str, *args: Any) -> None:
        """Pass a reading or fault to the listeners; one that raises is dropped (the recording
        goes on, and the events file says so once)."""
        for listener in list(self._listeners):
            try:
                getattr(listener, method)(*args)
            except Exception as exc:
                try:
                    self._listeners.remove(listener)
                except ValueError:  # another polling thread dropped it first
                    continue
                self.events.write({"t_ns": self.clock(), "kind": "live_listener_failed",
                                   "message": f"{type(exc).__name__}: {exc}"[:300]})

    def _flag_all(self, st: MeterState, t_ns: int, rtt_ns: int, code: str, message: str) -> None:
        if self._stop.is_set() and code in ("timeout", "error", "disconnected"):
            return  # a read cut short by the stop is not a fault of the meter
        st.faults[code] += 1
        st.last_fault = code
        st.last = {}  # no current value: progress, idle sampling and cool-down must not reuse a stale one
        if code not in SEGMENT_BREAKS and not self._take_fault_token(st, t_ns):
            if not st.suppressed:
                st.suppressed_since_ns = t_ns
            st.suppressed[code] += 1  # a flood: counted, summarised, not written row by row
            st.suppressed_total[code] += 1
            return
        self._report_suppressed(st, t_ns)
        for w in st.writers.values():
            w.write_fault(t_ns, rtt_ns, code)
        if self._listeners:  # after the rate limit: a flood reaches a live view at 10 rows a second
            self._tell("on_fault", st.meter.name, t_ns, code, list(st.writers))
        if st.faults[code] <= MAX_LOGGED_FAULTS:
            self.events.write({"t_ns": t_ns, "kind": "meter_fault", "meter": st.meter.name,
                               "code": code, "message": message[:300]})

    @staticmethod
    def _take_fault_token(st: MeterState, t_ns: int) -> bool:
        """Token bucket: FAULT_ROWS_PER_S rows a second, bursts of as many."""
        if st.fault_refill_ns:
            st.fault_tokens = min(FAULT_ROWS_PER_S,
                                  st.fault_tokens + (t_ns - st.fault_refill_ns) / 1e9 * FAULT_ROWS_PER_S)
        st.fault_refill_ns = t_ns
        if st.fault_tokens >= 1.0:
            st.fault_tokens -= 1.0
            return True
        return False

    def _report_suppressed(self, st: MeterState, t_ns: int) -> None:
        """One event for the fault rows a flood left unwritten (codes and counts, and when)."""
        if st.suppressed:
            self.events.write({"t_ns": t_ns, "kind": "meter_faults_suppressed", "meter": st.meter.name,
                               "since_ns": st.suppressed_since_ns, "counts": dict(st.suppressed),
                               "message": f"{sum(st.suppressed.values())} fault rows not written "
                                          f"(over {FAULT_ROWS_PER_S:g} a second); counted in the summary"})
            st.suppressed.clear()

    def _try_reopen(self, st: MeterState) -> bool:
        """One attempt to reopen a disconnected meter; True if it is back."""
        m = st.meter
        try:
            channels = m.open()
        except Exception:  # still gone (or a driver bug while reopening): try again later
            st.reopen_ns = self.clock() + int(RECONNECT_EVERY_S * 1e9)
            return False
        for ch in channels:
            self._writer(st, ch)
        st.connected = True
        t = self.clock()
        for w in st.writers.values():
            w.write_fault(t, 0, "reconnected")
        self.events.write({"t_ns": t, "kind": "meter_reconnected", "meter": m.name})
        return True

    def _poll_once(self, st: MeterState) -> None:
        """One read of one meter: rows written, or the fault flagged and counted."""
        m = st.meter
        t0 = self.clock()
        try:
            reading = m.read()
        except MeterDisconnected as exc:
            self._flag_all(st, *midpoint(t0, self.clock()), "disconnected", str(exc))
            try:
                m.close()
            except Exception:
                pass
            st.connected = False
            st.reopen_ns = self.clock() + int(RECONNECT_EVERY_S * 1e9)
        except MeterReadError as exc:
            self._flag_all(st, *midpoint(t0, self.clock()), exc.code, str(exc))
        except Exception as exc:  # a driver bug: count it, keep the session going
            self._flag_all(st, *midpoint(t0, self.clock()), "error", f"{type(exc).__name__}: {exc}")
        else:
            t1 = self.clock()
            if reading.t_ns is not None:
                t_ns, rtt_ns = reading.t_ns, reading.rtt_ns or 0
                if self._from_monotonic is not None:
                    t_ns = self._from_monotonic(t_ns)
            else:
                t_ns, rtt_ns = midpoint(t0, t1)
            for ch_id, values in reading.values.items():
                w = st.writers.get(ch_id)
                if w is None:  # a channel the meter did not announce: record it anyway
                    w = self._writer(st, Channel(id=ch_id, quantities=tuple(values)))
                w.write(t_ns, rtt_ns, values, note=reading.flags.get(ch_id, ""))
            if st.suppressed:  # a flood just ended: say how many fault rows it left unwritten
                self._report_suppressed(st, t_ns)
            st.samples += 1
            st.last = reading.values
            st.last_ok_ns = t_ns
            st.last_fault = None
            if self._listeners:
                self._tell("on_reading", m.name, t_ns, reading.values)

    def _poll_loop(self, group: list[MeterState], shared: bool = False) -> None:
        """Poll a group of meters, each at its own interval, in this thread.

        A push meter is a group of one and is read back to back (its read blocks until the
        meter's next value).  A disconnected meter is reopened every RECONNECT_EVERY_S.
        The thread flushes its meters' files: a device thread (``shared`` False) after each
        iteration, the shared thread when due or before a sleep past the due time.  A
        ``may_stall`` meter in the shared group whose poll or reopen took longer than
        STALL_S is handed to a thread of its own.
        """
        cpu0 = time.thread_time()
        push = len(group) == 1 and group[0].meter.push
        now = self.clock()
        for st in group:
            if not st.next_ns:
                st.next_ns = now
        flush_ns = now + int(FLUSH_EVERY_S * 1e9)
        name = threading.current_thread().name
        try:
            while not self._stop.is_set() and group:
                # one CPU clock read per wake-up and per poll: the thread's total so far, then
                # each poll's share (a thread_time call is a syscall, not a vDSO read)
                c = time.thread_time()
                self._thread_cpu[name] = c - cpu0
                now = self.clock()
                for st in list(group):  # a copy: _isolate may take a meter out
                    if st.connected:
                        if not (push or now >= st.next_ns):
                            continue
                        self._poll_once(st)
                        polled = True
                    elif now >= st.reopen_ns:
                        self._try_reopen(st)  # connected again on success
                        polled = False
                    else:
                        continue
                    c1 = time.thread_time()
                    st.cpu_s += c1 - c
                    c = c1
                    t = self.clock()
                    took_ns, now = t - now, t
                    if polled:
                        interval_ns = int(st.meter.interval_s * 1e9)
                        st.next_ns += interval_ns
                        if st.next_ns <= t:  # fell behind (slow meter): skip, do not burst
                            st.next_ns = t + interval_ns
                    elif st.connected:  # just reopened: poll at once
                        st.next_ns = t
                    if len(group) > 1 and st.meter.may_stall and took_ns > STALL_S * 1e9:
                        self._isolate(group, st, took_ns / 1e9)
                wake = min(st.next_ns if st.connected else st.reopen_ns for st in group) if group else now
                if not shared or now >= flush_ns or wake > flush_ns:
                    self._flush(group)
                    flush_ns = now + int(FLUSH_EVERY_S * 1e9)
                if push and group[0].connected:
                    if not group[0].last:  # the read failed (a fault clears last): no busy loop
                        self._sleep_until(self.clock() + int(PUSH_FAULT_BACKOFF_S * 1e9), self.clock())
                    continue
                self._sleep_until(wake, self.clock())
        finally:
            self._flush(group)
            self._thread_cpu[name] = time.thread_time() - cpu0

    def _isolate(self, group: list[MeterState], st: MeterState, took_s: float) -> None:
        """Move a stalling meter out of the shared thread into one of its own."""
        group.remove(st)
        self.events.write({"t_ns": self.clock(), "kind": "meter_isolated", "meter": st.meter.name,
                           "stall_s": round(took_s, 3),
                           "message": f"{st.meter.name} took {took_s:.2f} s to answer: "
                                      "polled in a thread of its own from now on"})
        if not self._stop.is_set():
            self._spawn([st])

    def _sleep_until(self, deadline_ns: int, now_ns: int) -> None:
        """Sleep to ``deadline_ns`` in slices of at most MAX_SLEEP_S, returning early on stop.

        ``time.sleep`` is one syscall; ``Event.wait`` builds a lock and a condition per
        call and costs about 1.6 times its CPU time, which at 10 Hz x several meters is
        most of what the recorder spends (see benchmarks/bench_recorder_overhead.py).
        """
        while not self._stop.is_set():
            left = (deadline_ns - now_ns) / 1e9
            if left <= 0:
                return
            time.sleep(min(left, MAX_SLEEP_S))
            now_ns = self.clock()

    @staticmethod
    def _flush(group: list[MeterState]) -> None:
        """Flush the files of these meters (a no-op for a file with no new rows)."""
        for st in group:
            for w in list(st.writers.values()):
                w.flush()
