"""The meter registry: meter URIs (the ``--meter`` contract of DESIGN.md) and ``make_meter``.

``scheme:target?opt=value&...`` or ``scheme://host:port?...``.  Every driver takes the
common options ``name`` (the meter id in the session) and ``interval`` (poll interval,
s); any other option it does not know is an error, never ignored.

Drivers are looked up in a table of ``"module:factory"`` strings and imported only
when used, so that heavy or platform-specific libraries never load for other meters.
A scheme in :data:`FAKES` has a stand-in for its library (tests and ``calibrate demo``):
its trigger option (``nvml?fake=a100,v100``) picks the fake's factory, which builds the
production driver around the fake library; production drivers know nothing of fakes.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from drivers.base import Meter, MeterConfigError

#: scheme -> "module:factory"; factory(uri: MeterURI) -> Meter
SCHEMES: dict[str, str] = {
    "serial": "drivers.serial_meters:from_uri",
    "tcp": "drivers.serial_meters:from_uri",
    "modbus": "drivers.modbus:from_uri",
    "modbus-tcp": "drivers.modbus:from_uri",
    "tasmota": "drivers.plugs:from_uri",
    "shelly": "drivers.plugs:from_uri",
    "rapl": "drivers.rapl:from_uri",
    "nvml": "drivers.nvml:from_uri",
    "cpu-model": "drivers.cpu_model:from_uri",
    "codecarbon": "drivers.codecarbon_meter:from_uri",
    "redfish": "drivers.redfish:from_uri",
    "prometheus": "drivers.prometheus:from_uri",
    "sim": "drivers.sim.meter:from_uri",
}

#: scheme -> (trigger option, "module:factory", other options only the fake takes)
FAKES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "nvml": ("fake", "drivers.fakes.nvml:from_uri", ("signal",)),
}


@dataclass
class MeterURI:
    """A parsed meter URI.  Drivers ``take()`` the options they know, then ``finish()``."""

    raw: str
    scheme: str
    target: str = ""  # path, host[:port], domain or index; "" when absent
    options: dict[str, str] = field(default_factory=dict)
    _taken: set[str] = field(default_factory=set)

    @property
    def host_port(self) -> tuple[str, int | None]:
        host, _, port = self.target.rpartition(":") if ":" in self.target else (self.target, "", "")
        if not host:
            raise MeterConfigError(f"{self.raw}: expected HOST or HOST:PORT")
        try:
            return host, int(port) if port else None
        except ValueError:
            raise MeterConfigError(f"{self.raw}: port {port!r} is not a number") from None

    def take(self, key: str, default: Any = None, conv: Callable[[str], Any] = str) -> Any:
        """Return option ``key`` converted with ``conv`` (or ``default`` if absent)."""
        self._taken.add(key)
        if key not in self.options:
            return default
        value = self.options[key]
        try:
            return conv(value)
        except (TypeError, ValueError):
            raise MeterConfigError(
                f"{self.raw}: option {key}={value!r} is not a valid {getattr(conv, '__name__', 'value')}"
            ) from None

    def finish(self) -> None:
        """Raise MeterConfigError if an option was given that no one took."""
        unknown = sorted(set(self.options) - self._taken - {"name", "interval"})
        if unknown:
            known = sorted(self._taken | {"name", "interval"})
            raise MeterConfigError(
                f"{self.raw}: unknown option{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(unknown)} (known here: {', '.join(known)})"
            )

    @property
    def name(self) -> str | None:
        return self.options.get("name")

    @property
    def interval_s(self) -> float | None:
        """Option ``interval`` (s), or None when absent.  Zero, negative, inf and nan are
        refused here for every scheme (a meter's own floor and ceiling are checked by
        :meth:`drivers.base.Meter.check_interval`), so no driver can mistake 0 for "absent"."""
        x = self.take("interval", None, float)
        if x is not None and not (math.isfinite(x) and x > 0):
            raise MeterConfigError(f"{self.raw}: interval={self.options['interval']} s cannot work; "
                                   f"give a finite number of seconds > 0 (at most {Meter.max_interval_s:g})")
        return x


def parse_uri(text: str) -> MeterURI:
    """Parse a ``--meter`` URI.  Raises MeterConfigError on an unknown scheme."""
    text = text.strip()
    if not text:
        raise MeterConfigError("empty meter URI")
    base, _, query = text.partition("?")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise MeterConfigError(f"{text}: cannot parse options {query!r} (expected key=value&...)") from None
    options: dict[str, str] = {}
    for k, v in pairs:
        if k in options:
            raise MeterConfigError(f"{text}: option {k} given twice")
        options[k] = v
    scheme, sep, rest = base.partition(":")
    scheme = scheme.lower()
    if rest.startswith("//"):
        rest = rest[2:].rstrip("/")
    if scheme not in SCHEMES:
        raise MeterConfigError(
            f"unknown meter {scheme!r} in {text!r}; known: {', '.join(sorted(SCHEMES))} "
            "(see `calibrate meters`)"
        )
    return MeterURI(raw=text, scheme=scheme, target=rest if sep else "", options=options)


def make_meter(text: str) -> Meter:
    """Build (but do not open) the meter a URI names.  Raises MeterConfigError."""
    uri = parse_uri(text)
    factory = SCHEMES[uri.scheme]
    if uri.scheme in FAKES:
        trigger, fake_factory, fake_only = FAKES[uri.scheme]
        if trigger in uri.options:
            factory = fake_factory
        else:
            for key in fake_only:
                if key in uri.options:
                    raise MeterConfigError(f"{uri.raw}: {key}= only applies to simulated devices ({trigger}=)")
    module_name, _, func = factory.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise MeterConfigError(f"{uri.raw}: driver for {uri.scheme!r} is not available ({exc})") from None
    meter: Meter = getattr(module, func)(uri)
    uri.finish()
    return meter
