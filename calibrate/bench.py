"""A bench run as a library call: ``run_bench(plan)``.

::

    from calibrate.bench import BenchPlan, run_bench

    result = run_bench(BenchPlan(meters=["sim:wattsup", "cpu-model"], workload="square",
                                 params={"duration_s": 20}, reference="wattsup"))
    print(result.status, result.path, result.summary["agreement"][0]["bland_altman"]["bias"])

The procedure, the same for ``calibrate run``, ``calibrate demo`` and every campaign run:
check the plan (bad options raise :class:`~calibrate.errors.UsageError` or
:class:`~drivers.base.MeterConfigError` before anything is recorded), open every meter,
an idle baseline (``baseline-before``), the workload in its own process (``workload``),
a bounded cool-down until the reference power is back near idle (``cooldown``), a second
baseline (``baseline-after``), then the report (``report.html``, ``summary.json``).
What happens along the way reaches an optional :class:`BenchReporter`.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calibrate.errors import UsageError
from calibrate.recorder import LiveMeter
from calibrate.remote import is_agent_uri
from calibrate.session import Session
from calibrate.workload_process import (
    WorkloadProgress,
    WorkloadRun,
    run_workload,
    workload_progress,
)
from drivers.base import Meter
from workloads.registry import PreparedWorkload

if TYPE_CHECKING:  # analysis (pandas, matplotlib) is imported when a report is made
    from analysis.report import ReportOptions
    from calibrate.live_feed import LiveFeed

GRACE_S = 15.0  # a built-in workload given a duration gets this long past it to finish
FIRST_READING_MIN_S = 5.0  # pre-flight: every meter's first reading within max(this, 3 intervals + 2 s)
TRAIL_MAX_S = 30.0  # after the last phase, wait at most this long for every meter's next reading
MAX_PHASE_S = 86_400.0  # a baseline or cool-down longer than a day is a typo
TICK_S = 1.0  # progress ticks this often (s), and at the start of every phase

#: a progress tick of the bench's own phases: (phase, seconds left or None, left is an upper bound)
Ticker = Callable[[str, float | None, bool], None]


@dataclass
class BenchPlan:
    """Everything one bench run needs (durations in s, intensity in g CO2/kWh).

    ``workload`` names a registered workload (``calibrate workloads``); leave it None and
    give ``command`` to run any command (its ``duration_s`` then stops it).
    """

    meters: Sequence[str]
    workload: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    command: Sequence[str] | None = None
    out: str | Path | None = None
    reference: str | None = None
    baseline_s: float = 3.0
    cooldown_max_s: float = 0.0
    cooldown_tolerance: float = 0.05
    analyse: bool = True
    candidates: Sequence[str] | None = None
    window_s: float | None = None
    location: str | None = None
    intensity: float | None = None
    pue: float | None = None
    export_figures: bool = False  # the report also writes figures/ (SVG, PDF, pairs CSV)

    def prepare(self) -> PreparedWorkload:
        """Validate the workload and its parameters; UsageError (one line) if they cannot run."""
        from workloads.registry import prepare, validate_params

        command = list(self.command or [])
        if command and command[0] == "--":
            command = command[1:]
        name = self.workload or ("command" if command else None)
        if name is None:
            raise UsageError("give --workload NAME (e.g. idle, square, vgg16) or a command after --")
        params = dict(self.params)
        if name == "command":  # run as given, in its own process group (no interpreter between)
            if not command:
                raise UsageError("--workload command needs the command after -- (e.g. -- python train.py)")
            extra = set(params) - {"duration_s", "seed"}
            if extra:
                raise UsageError(f"options {', '.join(sorted(extra))} do not apply to an external command")
            try:
                validate_params("command", params)  # ranges: a duration of 1e308 s is a typo
            except ValueError as exc:
                raise UsageError(str(exc).splitlines()[0]) from None
            return PreparedWorkload(name, params, command, category="command")
        if command:
            raise UsageError(f"a command after -- runs as the workload; drop --workload {name} or the command")
        try:
            return prepare(name, params)
        except ValueError as exc:  # UnknownWorkload is a ValueError
            raise UsageError(str(exc).splitlines()[0]) from None

    def check(self) -> PreparedWorkload:
        """Reject options that cannot work, before an hour of recording (UsageError): the
        meters and durations, the report options, the workload, a command that is not
        there, a CUDA device that torch cannot see.  Returns the prepared workload."""
        if not self.meters:
            raise UsageError("give at least one --meter (e.g. --meter sim:wattsup --meter cpu-model); "
                             "see `calibrate meters`")
        for what, value in (("--baseline", self.baseline_s), ("--cooldown-max", self.cooldown_max_s)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= MAX_PHASE_S):
                raise UsageError(f"{what} must be 0..{MAX_PHASE_S:.0f} s, got {value}")
        tol = self.cooldown_tolerance
        if not (isinstance(tol, (int, float)) and math.isfinite(tol) and 0 < tol < 1):
            raise UsageError(f"--cooldown-tolerance must be a fraction in (0, 1), got {tol}")
        try:
            self.report_options().validate()
        except ValueError as exc:
            raise UsageError(str(exc).splitlines()[0]) from None
        workload = self.prepare()
        check_runnable(workload)
        return workload

    def report_options(self) -> ReportOptions:
        """The analysis options of this plan's report."""
        from analysis.report import ReportOptions

        return ReportOptions(reference=self.reference, candidates=tuple(self.candidates) if self.candidates else None,
                             window_s=self.window_s, location=self.location, intensity=self.intensity, pue=self.pue,
                             export_figures=self.export_figures)


@dataclass(frozen=True)
class BenchProgress:
    """A progress tick: seconds since recording began, the bench's phase (``pre-flight``,
    ``baseline-before``, ``workload``, ``cooldown``, ``baseline-after``), every meter, and
    where known the seconds left in the phase, the workload's progress and the recorder's
    recent CPU (a fraction of one core)."""

    elapsed_s: float
    phase: str | None
    meters: list[LiveMeter]
    left_s: float | None = None  # seconds left in this phase (None: not known)
    left_is_max: bool = False  # left_s is an upper bound (a cool-down ends once idle is back)
    workload: WorkloadProgress | None = None  # while the workload runs
    recorder_cpu: float | None = None  # the recorder's CPU over the last seconds (fraction of a core)


@dataclass
class BenchResult:
    """What a bench run left: the session folder, its status and the report's summary."""

    path: Path
    status: str  # complete | interrupted | workload_failed | failed
    workload: PreparedWorkload
    run: WorkloadRun | None = None
    summary: dict[str, Any] | None = None  # summary.json (None when not analysed)
    failure: str | None = None  # why recording failed (e.g. "disk full: ..."), data kept
    report_error: BaseException | None = None  # why the report failed (data kept)

    @property
    def ok(self) -> bool:
        return self.status == "complete" and self.report_error is None


class BenchReporter:
    """Receives what happens during a bench run; the default says nothing.

    ``show_output`` True: the workload's output (stdout and stderr, also written to
    ``workload.log``) reaches :meth:`workload_output` line by line.
    """

    show_output: bool = False

    def started(self, path: Path, notes: list[str], workload: PreparedWorkload, n_meters: int) -> None:
        """Recording began into ``path``; ``notes`` are what the user should know of the meters."""

    def progress(self, tick: BenchProgress) -> None:
        """About once a second from the pre-flight to the last baseline, and as each phase begins."""

    def problem(self, message: str) -> None:
        """Something went wrong that does not stop the session (one line)."""

    def workload_output(self, line: str) -> None:
        """One line of the workload's output (with ``show_output``); called from a reader
        thread, and must not block (drop rather than wait)."""

    def finished(self, status: str) -> None:
        """Recording ended with ``status`` (before the report is made): stop any live display."""


def check_runnable(workload: PreparedWorkload) -> None:
    """UsageError if the workload cannot start here: a command not found or not executable,
    a CUDA device torch does not see."""
    if workload.category == "command":
        exe = workload.argv[0]
        found = shutil.which(exe) if os.sep not in exe else (exe if os.access(exe, os.X_OK) else None)
        if not found or os.path.isdir(found):
            raise UsageError(f"cannot run {exe!r}: not found on PATH or not executable")
    device = str(workload.params.get("device") or "")
    if device.startswith("cuda"):
        try:
            import torch
        except ImportError:
            raise UsageError(f"--device {device}: torch is not installed (scripts/setup installs it)") from None
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            raise UsageError(f"--device {device}: torch sees {count} CUDA device(s)"
                             + (f" (0..{count - 1})" if count else "; use --device cpu or install a CUDA build"))


def first_reading_s(meter: Meter) -> float:
    """How long a meter may take to give its first reading (s) before the run is refused."""
    return max(FIRST_READING_MIN_S, 3 * meter.interval_s + 2.0)


def wait_for_first_readings(session: Session, stop: threading.Event, tick: Ticker | None = None) -> list[str]:
    """Wait until every meter has given a good reading; the names of those that did not
    within :func:`first_reading_s` (empty when all did).  ``tick`` hears ``pre-flight``
    with the seconds left at most, once a second while it waits."""
    assert session.recorder is not None
    limits = {m.name: first_reading_s(m) for m in session.meters}
    t0 = time.monotonic()
    last_tick = None
    while True:
        missing = [n for n, t in session.recorder.last_reading_ns().items() if not t]
        waited = time.monotonic() - t0
        if not missing or stop.is_set() or all(waited > limits[n] for n in missing):
            return missing
        # a meter that answers at once is not worth a line; one that keeps us waiting is
        if tick is not None and waited >= TICK_S / 2 and (last_tick is None or waited - last_tick >= TICK_S):
            tick("pre-flight", max(limits[n] for n in missing) - waited, True)
            last_tick = waited
        stop.wait(0.02)


def wait_past(session: Session, t_ns: int, stop: threading.Event) -> None:
    """Keep recording until every connected meter has a good reading stamped after ``t_ns``
    (ns), so the last phase is covered to its end; at most 2 intervals each, TRAIL_MAX_S."""
    assert session.recorder is not None
    limit = min(TRAIL_MAX_S, max((2 * m.interval_s for m in session.meters), default=0.0) + 0.5)
    end = time.monotonic() + limit
    while time.monotonic() < end and not stop.is_set():
        live = {m.name: m.connected for m in session.recorder.live()}
        last = session.recorder.last_reading_ns()
        if all(last[n] > t_ns for n, up in live.items() if up):
            return
        stop.wait(0.05)


def meter_notes(meters: Sequence[Meter]) -> list[str]:
    """What a user must be told of these meters (assumed defaults, modelled channels), once each."""
    out: list[str] = []
    for m in meters:
        out.extend(dict.fromkeys(m.notes))
        for ch in m.channels:
            if ch.source != "measured" and not m.notes_explain_modelled:
                out.append(f"{ch.id} is MODELLED, not measured ({m.kind})")
    return out


def build_meters(uris: Sequence[str]) -> list[Meter]:
    """Build (not open) the meters the URIs name; on a bad one release those already built."""
    from drivers.registry import make_meter

    meters: list[Meter] = []
    try:
        for uri in uris:
            meters.append(make_meter(uri))
    except BaseException:
        for m in meters:
            try:
                m.release()
            except Exception:
                pass
        raise
    return meters


def reference_power(session: Session, reference: str | None) -> float | None:
    """The reference channel's latest power (W): the named channel (or meter, local or
    ``<host>.<channel>`` on an agent), else the first local wall-scope channel; None while
    it has no current value."""
    assert session.recorder is not None
    for meter, ch in session.recorder.channels():
        if (ch.id == reference or meter.name == reference) if reference else ch.scope == "wall":
            v = (session.recorder.latest(ch.id) or {}).get("power_w")
            return float(v) if v is not None else None
    if reference and session.remote is not None:
        v = (session.remote.latest(reference) or {}).get("power_w")
        return float(v) if v is not None else None
    return None


def sampled_idle(session: Session, name: str, seconds: float, stop: threading.Event,
                 reference: str | None, tick: Ticker | None = None) -> float | None:
    """An idle phase of ``seconds`` s; returns the reference's mean power over its settled
    second half (W), or None without a reference value.  ``tick`` hears the phase and the
    seconds left as it begins and about once a second."""
    if seconds <= 0:
        return None
    values: list[float] = []
    with session.window(name):
        end = time.monotonic() + seconds
        next_tick = time.monotonic()
        while not stop.is_set() and time.monotonic() < end:
            now = time.monotonic()
            if tick is not None and now >= next_tick:
                tick(name, max(0.0, end - now), False)
                next_tick = now + TICK_S
            stop.wait(min(0.5, max(0.0, end - time.monotonic())))
            p = reference_power(session, reference)
            if p is not None:
                values.append(p)
    half = values[len(values) // 2:]  # the settled second half
    return sum(half) / len(half) if half else None


def cooldown(session: Session, idle_w: float | None, tolerance: float, max_s: float,
             stop: threading.Event, reference: str | None, tick: Ticker | None = None) -> dict[str, Any]:
    """Wait (at most ``max_s`` s) until the reference power is back within ``tolerance``
    (a fraction) of ``idle_w`` (W) for three reads in a row.  ``tick`` hears ``cooldown``
    and the seconds left at most, as it begins and about once a second."""
    if max_s <= 0 or idle_w is None:
        return {"skipped": True}
    session.begin("cooldown", idle_w=idle_w, tolerance=tolerance)
    t0 = time.monotonic()
    settled = 0
    reached = False
    next_tick = t0
    while not stop.is_set() and time.monotonic() - t0 < max_s:
        now = time.monotonic()
        if tick is not None and now >= next_tick:
            tick("cooldown", max(0.0, max_s - (now - t0)), True)
            next_tick = now + TICK_S
        stop.wait(0.5)
        p = reference_power(session, reference)
        settled = settled + 1 if p is not None and abs(p - idle_w) <= tolerance * idle_w else 0
        if settled >= 3:
            reached = True
            break
    waited = time.monotonic() - t0
    session.end("cooldown", reached=reached, waited_s=waited)
    return {"reached": reached, "waited_s": waited, "idle_w": idle_w}


class StopOnSignal:
    """SIGINT/SIGTERM set ``stop`` while the run lasts (main thread only; restored after)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.saved: list[tuple[int, Any]] = []

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved.append((sig, signal.signal(sig, lambda *_: self.stop.set())))
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self.saved:
            signal.signal(sig, old)


def run_bench(plan: BenchPlan, reporter: BenchReporter | None = None,
              stop: threading.Event | None = None, feed: LiveFeed | None = None) -> BenchResult:
    """Run one bench session (see the module doc); returns where it is and how it ended.

    ``stop`` ends the run early (status ``interrupted``), as SIGINT/SIGTERM do when called
    from the main thread.  Raises UsageError / MeterConfigError for a plan that cannot
    run, before anything is recorded; a failed report is kept in ``result.report_error``.
    ``feed`` (a :class:`~calibrate.live_feed.LiveFeed`) hears every reading, fault row and
    progress tick, for a live view; the CPU its consumers report counts as recorder overhead.
    """
    reporter = reporter or BenchReporter()
    stop = stop or threading.Event()
    workload = plan.check()
    ref = plan.reference
    agents = [u for u in plan.meters if is_agent_uri(u)]
    meters = build_meters([u for u in plan.meters if not is_agent_uri(u)])

    def failed(reason: str) -> None:  # a full disk: stop the workload, keep what was written
        stop.set()

    session = Session([*meters, *agents], out=plan.out, uris=list(plan.meters), reference=ref,
                      workload={"name": workload.name, "parameters": workload.params, "argv": workload.argv},
                      on_failure=failed)
    try:
        if session.remote is not None:
            session.remote.connect()  # an unreachable agent: one line, nothing recorded
        names = [m.name for m in meters] + (session.remote.meter_names() if session.remote else [])
        if ref and ref not in names and not any(ref.startswith(n + ".") for n in names):
            raise UsageError(f"--reference {ref!r} is none of the meters ({', '.join(names)})")
    except BaseException:
        for m in meters:
            m.release()
        for link in session.remote.links if session.remote else []:
            link.client.close()
        raise
    try:
        session.start()
    except FileExistsError as exc:
        raise UsageError(str(exc)) from None
    assert session.recorder is not None
    recorder = session.recorder
    notes = meter_notes(meters)  # after open: some (no energy counter, modelled parts) come from the device
    if feed is not None:
        feed.set_origin(session.start_ns)
        feed.add_notes(notes)
        feed.title = f"{workload.name}: {session.path.name}"
        recorder.add_listener(feed)
        if session.remote is not None:  # remote meters' live readings, stamped on arrival
            session.remote.add_listener(feed.on_reading)
        for st in list(recorder.states.values()):  # what was read before the feed was attached
            last, t_ns = dict(st.last), st.last_ok_ns
            if last and t_ns:
                feed.on_reading(st.meter.name, t_ns, last)
    reporter.started(session.path, notes, workload, len(meters))
    t_start = time.monotonic()

    def progress(phase: str, left_s: float | None, left_is_max: bool = False,
                 wl: WorkloadProgress | None = None) -> None:
        if feed is not None:
            for label, cpu_s in feed.consumer_cpu().items():  # the live view is overhead too
                recorder.account_cpu(label, cpu_s)
        tick = BenchProgress(time.monotonic() - t_start, phase, recorder.live(), left_s=left_s,
                             left_is_max=left_is_max, workload=wl, recorder_cpu=recorder.cpu_recent())
        if feed is not None:
            feed.update(tick)
        try:
            reporter.progress(tick)
        except Exception as exc:  # a display that fails must not stop the recording
            if not progress_failed:
                progress_failed.append(exc)
                reporter.problem(f"progress display failed: {type(exc).__name__}: {exc}")

    progress_failed: list[BaseException] = []

    duration = workload.params.get("duration_s")

    def workload_tick(run: WorkloadRun) -> None:
        wl = workload_progress(run, workload.params)
        left = max(0.0, duration - wl.elapsed_s) if duration and wl.elapsed_s is not None else None
        progress("workload", left, False, wl)

    status = "complete"
    run = None
    with StopOnSignal(stop):
        try:
            silent = wait_for_first_readings(session, stop, progress)  # warmed up before any phase begins
            if silent and not stop.is_set():
                waited = max(first_reading_s(m) for m in meters if m.name in silent)
                session.mark("preflight_failed", meters=silent, waited_s=waited)
                session.failure = f"pre-flight: no reading from {', '.join(silent)} within {waited:.0f} s"
                session.stop("failed")
                raise UsageError(f"{', '.join(silent)} gave no reading within {waited:.0f} s: check the port, "
                                 "protocol and baud (`calibrate meters --probe PORT`); nothing was run "
                                 f"(what was recorded is in {session.path})")
            idle_w = sampled_idle(session, "baseline-before", plan.baseline_s, stop, ref, progress)
            if not stop.is_set():
                # an external command is stopped at the duration; a built-in workload keeps its
                # own clock (it starts after the interpreter) and gets a grace to finish evaluating
                stop_after = (duration if workload.name == "command" else duration + GRACE_S) if duration else None
                run = run_workload(session, workload.argv, session.path / "workload.log", stop, workload_tick,
                                   phase_name="workload", stop_after_s=stop_after,
                                   output=reporter.workload_output if reporter.show_output else None)
            cooldown(session, idle_w, plan.cooldown_tolerance, plan.cooldown_max_s, stop, ref, progress)
            sampled_idle(session, "baseline-after", plan.baseline_s if not stop.is_set() else 0, stop, ref,
                         progress)
            wait_past(session, session.clock(), stop)  # every meter's last reading covers the end
            if session.failure:
                status = "failed"
            elif stop.is_set():
                status = "interrupted"
            elif run is not None and run.returncode not in (0, None) and not run.terminated:
                status = "workload_failed"
        except FileNotFoundError as exc:
            status = "workload_failed"
            reporter.problem(str(exc))
        except BaseException:
            status = "failed"  # whatever went wrong here, the session must not claim to be complete
            raise
        finally:
            if run is not None:
                session.workload.update({"returncode": run.returncode, "terminated_at_duration": run.terminated,
                                         "result": run.result})
                recorder.account_cpu("workload-events", run.pump_cpu_s)  # the pump and the process
                recorder.account_cpu("workload-watch", run.watch_cpu_s)  # watch count as overhead
                if run.output_cpu_s:
                    recorder.account_cpu("workload-output", run.output_cpu_s)
            if feed is not None:
                for label, cpu_s in feed.consumer_cpu().items():
                    recorder.account_cpu(label, cpu_s)
            session.stop(status)
            if feed is not None:
                feed.finish(session.status)
            try:
                reporter.finished(session.status)
            except Exception:  # a display that fails to close must not lose the session
                pass
    result = BenchResult(session.path, session.status, workload, run, failure=session.failure)
    if plan.analyse and not session.failure:
        from analysis.report import write_report

        try:
            result.summary = write_report(session.path, plan.report_options())
        except Exception as exc:  # recorded data is safe; the caller says why the report failed
            result.report_error = exc
    return result
