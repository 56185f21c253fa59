"""``sim:KIND``: a simulator started for the session, read by the real driver of its meter."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from drivers.base import Channel, Meter, Reading
from drivers.sim.registry import make_simulator, simulator_class
from drivers.sim.simulator import Simulator


def inner_meter_uri(inner_uri: str, name: str, interval_s: float | None) -> str:
    """The simulator's own URI plus the session's ``name`` and ``interval``, each value
    percent-encoded: a name is a name, never more options (``w&max_w=10`` stays one name)."""
    extra: dict[str, str] = {"name": name}
    if interval_s:
        extra["interval"] = repr(float(interval_s))
    return inner_uri + ("&" if "?" in inner_uri else "?") + urlencode(extra, quote_via=quote, errors="surrogatepass")


class SimMeter(Meter):
    """``sim:KIND``: starts a simulator for the session and reads it with the real driver."""

    kind = "sim"

    def __init__(self, sim: Simulator, inner_uri: str, name: str | None, interval_s: float | None) -> None:
        from drivers.registry import make_meter

        self.sim = sim
        self.inner_uri = inner_uri
        self.inner = make_meter(inner_meter_uri(inner_uri, name or sim.kind, interval_s))
        super().__init__(self.inner.name, self.inner.interval_s)
        # the recorder schedules this meter as it would the real driver
        self.push = self.inner.push  # type: ignore[misc]
        self.local = self.inner.local  # type: ignore[misc]
        self.may_stall = self.inner.may_stall  # type: ignore[misc]
        self._sync()

    def _sync(self) -> None:
        """What the user is told is what the real driver says (it may change on open)."""
        self.notes = self.inner.notes
        self.skipped = self.inner.skipped
        self.notes_explain_modelled = self.inner.notes_explain_modelled

    def request_stop(self) -> None:
        """The recorder's stop reaches the real driver, which is the one that blocks."""
        super().request_stop()
        self.inner.request_stop()

    def open(self) -> list[Channel]:
        self.channels = self.inner.open()
        self._sync()
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
    for key in ("signal", "faults", "timebase"):
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
