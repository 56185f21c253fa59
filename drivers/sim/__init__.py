"""Protocol-faithful meter simulators (``calibrate simulate KIND``, ``--meter sim:KIND``).

Each simulator speaks the real bytes of its meter over a real pseudo-terminal, socket
or HTTP server; its power follows a :mod:`drivers.sim.signals` signal (by default this
machine's real CPU load through a wall-power model) and it can inject the faults of
:mod:`drivers.sim.faults`.  ``start()`` returns the meter URI a driver opens.
"""

from __future__ import annotations

import importlib
import threading
import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from drivers.base import Channel, Meter, MeterConfigError, Reading
from drivers.sim.faults import FaultPlan
from drivers.sim.signals import PowerSignal, make_signal

#: kind -> "module:Class"
SIMULATORS: dict[str, str] = {
    "wattsup": "drivers.sim.wattsup:WattsUpSimulator",
    "wt310": "drivers.sim.wt310:WT310Simulator",
    "sdm120": "drivers.sim.modbus_sim:SDMSimulator",
    "sdm230": "drivers.sim.modbus_sim:SDMSimulator",
    "sdm630": "drivers.sim.modbus_sim:SDMSimulator",
    "tasmota": "drivers.sim.plugs_sim:TasmotaSimulator",
    "shelly": "drivers.sim.plugs_sim:ShellySimulator",
}


class Simulator(ABC):
    """Base of every simulator: a power signal, an energy integrator and a fault plan.

    ``power_w()`` and ``energy_j()`` give the truth at the simulator's current time;
    subclasses serve them in their meter's protocol.
    """

    kind: ClassVar[str] = "sim"
    #: options (besides signal, faults, seed) a subclass accepts, with defaults
    options: ClassVar[dict[str, Any]] = {}

    def __init__(self, signal: str | PowerSignal | None = None, faults: str | FaultPlan | None = None,
                 seed: int | None = None, **opts: Any) -> None:
        self.signal: PowerSignal = signal if callable(signal) else make_signal(signal)
        self.faults = faults if isinstance(faults, FaultPlan) else FaultPlan.parse(faults, seed=seed)
        unknown = set(opts) - set(self.options)
        if unknown:
            raise MeterConfigError(
                f"sim:{self.kind}: unknown option(s) {', '.join(sorted(unknown))}; "
                f"known: signal, faults, seed{''.join(', ' + k for k in self.options)}"
            )
        self.opts = {**self.options, **opts}
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self._last_t = 0.0
        self._energy_j = 0.0
        self._last_p = self.signal(0.0)

    def now(self) -> float:
        """Seconds since the simulator started."""
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


def simulator_class(kind: str) -> type[Simulator]:
    if kind not in SIMULATORS:
        raise MeterConfigError(f"unknown simulator {kind!r}; known: {', '.join(sorted(SIMULATORS))}")
    module, _, cls = SIMULATORS[kind].partition(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as exc:
        raise MeterConfigError(f"simulator {kind!r} is not available ({exc})") from None


def make_simulator(kind: str, **opts: Any) -> Simulator:
    cls = simulator_class(kind)
    if "model" in cls.options and "model" not in opts:
        opts["model"] = kind
    return cls(**opts)


class SimMeter(Meter):
    """``sim:KIND``: starts a simulator for the session and reads it with the real driver."""

    kind = "sim"

    def __init__(self, sim: Simulator, inner_uri: str, name: str | None, interval_s: float | None) -> None:
        from drivers.uri import make_meter

        self.sim = sim
        self.inner_uri = inner_uri
        self.inner = make_meter(inner_uri + ("&" if "?" in inner_uri else "?") + f"name={name or sim.kind}"
                                + (f"&interval={interval_s}" if interval_s else ""))
        super().__init__(self.inner.name, self.inner.interval_s)
        self.push = self.inner.push  # type: ignore[misc]
        self.notes = self.inner.notes

    @property  # type: ignore[override]
    def stopping(self) -> bool:
        return self.inner.stopping

    @stopping.setter
    def stopping(self, value: bool) -> None:  # the recorder's stop reaches the real driver
        self.inner.stopping = value

    def open(self) -> list[Channel]:
        self.channels = self.inner.open()
        return self.channels

    def read(self) -> Reading:
        return self.inner.read()

    def close(self) -> None:
        self.inner.close()

    def release(self) -> None:
        self.inner.close()
        self.sim.stop()

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "simulated": True, "simulator": self.sim.kind,
                "inner_uri": self.inner_uri}


def from_uri(uri: Any) -> Meter:
    kind = uri.target
    cls = simulator_class(kind)
    opts: dict[str, Any] = {}
    for key in ("signal", "faults"):
        if key in uri.options:
            opts[key] = uri.take(key)
    if "seed" in uri.options:
        opts["seed"] = uri.take("seed", None, int)
    for key, default in cls.options.items():
        if key in uri.options:
            opts[key] = uri.take(key, default, type(default) if default is not None else str)
    sim = make_simulator(kind, **opts)
    inner = sim.start()
    try:
        return SimMeter(sim, inner, uri.name, uri.interval_s)
    except Exception:
        sim.stop()
        raise
