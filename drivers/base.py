"""The one small interface every meter implements.

A meter is opened once, then polled by the recorder in its own thread.  Each poll
returns a :class:`Reading`: for every channel the meter exposes, a dict of
quantities in SI-ish units with the unit in the key name:

* ``power_w``   -- power in W (the meter's own averaging window is ``Channel.window_s``)
* ``energy_j``  -- cumulative energy in J, already unwrapped (monotonic within a
  connection; the origin is arbitrary, only differences matter)
* ``voltage_v``, ``current_a``, ``pf`` (0..1), ``freq_hz``, ``apparent_va``, ...

The recorder stamps each reading at the midpoint of request and reply on the session
clock (``time.monotonic_ns``) and keeps the round trip.  Push meters, which send a line
per interval on their own, supply ``Reading.t_ns`` themselves.

Errors a driver raises:

* :class:`MeterConfigError` -- the meter cannot be used as configured (bad URI option,
  port missing, permission denied).  The message is one line that names the fix.
  The CLI turns it into exit code 2.
* :class:`MeterReadError` -- one poll failed (timeout, garbage, bad CRC, exception
  response, NaN/over-range value).  ``code`` says which; the recorder counts it per
  meter and goes on.
* :class:`MeterDisconnected` -- the device went away (port closed, TCP reset).  The
  recorder closes the meter, records a gap, and calls ``open()`` again until it comes
  back.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

#: Quantities the trace format knows, with their units in the name.
STANDARD_QUANTITIES = (
    "power_w",
    "energy_j",
    "voltage_v",
    "current_a",
    "pf",
    "freq_hz",
    "apparent_va",
    "utilisation",
)


class MeterError(Exception):
    """Base class of every error a driver raises."""


class MeterConfigError(MeterError, ValueError):
    """The meter cannot be used as configured; the message names the fix (exit 2)."""


class MeterReadError(MeterError):
    """One poll failed; ``code`` is one of timeout, garbage, crc, exception, nan, range."""

    def __init__(self, message: str, code: str = "garbage") -> None:
        super().__init__(message)
        self.code = code


class MeterDisconnected(MeterReadError):
    """The device went away; the recorder will reopen the meter."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="disconnected")


@dataclass(frozen=True)
class Channel:
    """One series a meter produces (a wall socket, a RAPL domain, a GPU).

    ``id`` is unique within a session: single-channel meters use the meter's name,
    multi-channel meters ``<name>.<channel>`` (``rapl.package-0``, ``nvml.0``).
    """

    id: str
    scope: str = "wall"  # wall | package | core | uncore | dram | psys | gpu | cpu | system
    source: str = "measured"  # measured | modelled  (say loudly which)
    quantities: tuple[str, ...] = ("power_w",)
    window_s: float | None = None  # the meter's own power averaging window (s)
    update_interval_s: float | None = None  # how often the meter refreshes its value (s)
    energy_resolution_j: float | None = None  # resolution of the energy register (J)
    primary: str = "power_w"  # "energy_j" where a cumulative counter is the primary reading
    info: dict[str, Any] = field(default_factory=dict)  # identity: model, UUID, range, ...

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "scope": self.scope,
            "source": self.source,
            "quantities": list(self.quantities),
            "window_s": self.window_s,
            "update_interval_s": self.update_interval_s,
            "energy_resolution_j": self.energy_resolution_j,
            "primary": self.primary,
            "info": self.info,
        }


@dataclass
class Reading:
    """One poll's result: channel id -> {quantity: value}.

    ``t_ns``/``rtt_ns`` are set only by push meters that know when their value was
    produced; otherwise the recorder stamps the midpoint of the ``read()`` call.
    ``flags`` marks channels whose values are present but suspect: channel -> text, the
    text being either one code for the whole channel (``"field-error"``) or
    ``";"``-separated ``quantity:code`` notes for single quantities
    (``"freq_hz:nan;pf:range"``), the way the session format stores flags.  Neither
    codes nor quantity names contain ``";"`` or ``":"``.
    """

    values: dict[str, dict[str, float]]
    t_ns: int | None = None
    rtt_ns: int | None = None
    flags: dict[str, str] = field(default_factory=dict)


class Meter(ABC):
    """Base class of every meter driver.

    Subclasses set ``kind`` and implement :meth:`open` and :meth:`read`.
    ``interval_s`` is the poll interval the recorder uses (s).
    """

    kind: ClassVar[str] = "meter"
    default_interval_s: ClassVar[float] = 1.0
    #: True for meters that send a value per interval on their own: the recorder then
    #: calls ``read()`` back to back (it blocks until the next value) instead of sleeping.
    push: ClassVar[bool] = False
    #: True for meters whose reads never wait on a device (sysfs, /proc, NVML, in-process):
    #: the recorder polls them together in one thread, which saves a wake-up per meter and poll.
    local: ClassVar[bool] = False
    #: True for a ``local`` meter whose calls can nevertheless hang now and then (NVML while a
    #: GPU falls off the bus): after one poll or reopen that takes longer than the recorder's
    #: STALL_S it is moved to a thread of its own, so it cannot hold up the others again.
    may_stall: ClassVar[bool] = False

    #: the shortest poll interval this meter can honour (s): a local software meter's read
    #: costs CPU, a device needs time to answer, and some devices refresh only so often
    #: (Watts Up? logs in whole seconds); a shorter ``interval`` is a MeterConfigError
    min_interval_s: ClassVar[float] = 0.01
    #: the longest poll interval accepted (s): beyond it a session sees too few samples to
    #: align or compare anything
    max_interval_s: ClassVar[float] = 3600.0

    def __init__(self, name: str | None = None, interval_s: float | None = None) -> None:
        self.name = name or self.kind
        self.interval_s = self.check_interval(self.name, interval_s)
        self.channels: list[Channel] = []
        self._stop = threading.Event()
        #: things the user should know (assumed defaults, modelled values); the CLI prints them
        self.notes: list[str] = []
        #: the parts (GPUs, components) this meter dropped on open, one line each saying
        #: which and why; the human wording is also in ``notes``
        self.skipped: list[str] = []
        #: True once ``notes`` say which of this meter's channels are modelled and how, so
        #: the CLI does not add its generic "<channel> is MODELLED, not measured" line
        self.notes_explain_modelled = False

    @classmethod
    def check_interval(cls, name: str, interval_s: float | str | None) -> float:
        """The poll interval to use: ``default_interval_s`` when None, else ``interval_s``
        if it is a finite number within ``min_interval_s..max_interval_s``.  Anything else
        (0, negative, inf, nan, below this meter's floor) raises MeterConfigError naming
        the meter and the allowed range: a value that cannot work is refused, never
        replaced silently."""
        if interval_s is None:
            return float(cls.default_interval_s)
        lo, hi = cls.min_interval_s, cls.max_interval_s
        allowed = f"use {lo:g} to {hi:g} s"
        try:
            x = float(interval_s)
        except (TypeError, ValueError):
            raise MeterConfigError(f"{name}: interval={interval_s!r} is not a number of seconds; {allowed}") from None
        if not math.isfinite(x) or x <= 0:
            raise MeterConfigError(f"{name}: interval={interval_s!r} s cannot work (it must be a finite "
                                   f"number > 0); {allowed}")
        if x < lo:
            raise MeterConfigError(f"{name}: interval={x:g} s is below this meter's floor of {lo:g} s "
                                   f"({cls.kind} cannot be polled faster); {allowed}")
        if x > hi:
            raise MeterConfigError(f"{name}: interval={x:g} s is above the limit of {hi:g} s; {allowed}")
        return x

    def request_stop(self) -> None:
        """The session is stopping: a ``read()`` blocked on a push meter's next value gives
        up soon (MeterReadError code "timeout").  Safe from any thread; cannot be undone."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        """Whether :meth:`request_stop` was called (drivers check it while they wait)."""
        return self._stop.is_set()

    @abstractmethod
    def open(self) -> list[Channel]:
        """Connect and configure; return the channels.  Raise MeterConfigError if unusable."""

    @abstractmethod
    def read(self) -> Reading:
        """One poll.  Raise MeterReadError / MeterDisconnected on failure."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device.  Must be safe to call twice and after a failed open."""

    def release(self) -> None:
        """Called once when the session ends, after ``close()`` (stops simulators)."""
        self.close()

    def describe(self) -> dict[str, Any]:
        """Settings and identity for the session manifest (JSON-serialisable)."""
        return {"kind": self.kind, "name": self.name, "interval_s": self.interval_s,
                "notes": list(self.notes)}

    def __enter__(self) -> Meter:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CounterUnwrapper:
    """Turns a wrapping hardware counter into a monotonic cumulative value.

    ``max_value`` is the value at which the counter wraps to zero (RAPL's
    ``max_energy_range_uj``).  A decrease is taken as exactly one wrap; the caller must
    poll faster than the wrap period (RAPL package counters can wrap in about a minute
    under load).  Returns the unwrapped count relative to the first value seen.
    """

    def __init__(self, max_value: float | None) -> None:
        self.max_value = max_value
        self._first: float | None = None
        self._last: float | None = None
        self._wraps = 0

    @property
    def wraps(self) -> int:
        return self._wraps

    def update(self, raw: float) -> float:
        if self._first is None:
            self._first = self._last = raw
            return 0.0
        assert self._last is not None
        if raw < self._last:
            if not self.max_value:
                raise MeterReadError(
                    f"counter went backwards ({self._last} -> {raw}) and its wrap value is unknown",
                    code="range",
                )
            self._wraps += 1
        self._last = raw
        return raw + self._wraps * (self.max_value or 0.0) - self._first
