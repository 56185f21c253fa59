"""The base class of every meter simulator: a power signal, an energy integrator, a fault plan."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from drivers.base import MeterConfigError
from drivers.sim.faults import FaultPlan
from drivers.sim.signals import PowerSignal, make_signal

#: ``start``: the signal's t=0 is the simulator's start; ``machine``: CLOCK_MONOTONIC's zero.
TIMEBASES = ("start", "machine")


class Simulator(ABC):
    """Base of every simulator: a power signal, an energy integrator and a fault plan.

    ``power_w()`` and ``energy_j()`` give the truth at the simulator's current time;
    subclasses serve them in their meter's protocol.
    """

    kind: ClassVar[str] = "sim"
    #: the fault plan class whose faults this simulator knows
    fault_plan: ClassVar[type[FaultPlan]] = FaultPlan
    #: options (besides signal, faults, seed) a subclass accepts, with defaults
    options: ClassVar[dict[str, Any]] = {}

    def __init__(self, signal: str | PowerSignal | None = None, faults: str | FaultPlan | None = None,
                 seed: int | None = None, timebase: str = "start", **opts: Any) -> None:
        self.signal: PowerSignal = signal if callable(signal) else make_signal(signal)
        self.faults = self.fault_plan.coerce(faults, seed=seed)
        unknown = set(opts) - set(self.options)
        if unknown:
            raise MeterConfigError(
                f"sim:{self.kind}: unknown option(s) {', '.join(sorted(unknown))}; "
                f"known: signal, faults, seed, timebase{''.join(', ' + k for k in self.options)}"
            )
        self.opts = {**self.options, **opts}
        if timebase not in TIMEBASES:
            raise MeterConfigError(f"sim:{self.kind}: timebase must be one of {', '.join(TIMEBASES)}")
        self.timebase = timebase
        # "machine": the signal runs on CLOCK_MONOTONIC itself, so simulators in different
        # processes of one machine (agents on one bench) play the same signal at the same instant
        self.t0 = 0.0 if timebase == "machine" else time.monotonic()
        self._lock = threading.Lock()
        self._last_t = self.now()
        self._energy_j = 0.0
        self._last_p = self.signal(self._last_t)

    def now(self) -> float:
        """Seconds since the simulator started (``timebase=machine``: CLOCK_MONOTONIC, s)."""
        return time.monotonic() - self.t0

    def power_w(self) -> float:
        """Instantaneous power now (W); advances the energy integrator."""
        with self._lock:
            t = self.now()
            p = self.signal(t)
            self._energy_j += 0.5 * (p + self._last_p) * (t - self._last_t)
            self._last_t, self._last_p = t, p
            return p

    def energy_j(self) -> float:
        """Energy since start (J), trapezoidal on the signal as sampled so far."""
        self.power_w()
        with self._lock:
            return self._energy_j

    @abstractmethod
    def start(self) -> str:
        """Start serving; return the meter URI that reaches this simulator."""

    @abstractmethod
    def stop(self) -> None:
        """Stop serving and release ports."""

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
