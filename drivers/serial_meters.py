"""``serial:PORT?protocol=...`` and ``tcp://HOST:PORT?protocol=...``: protocol dispatch.

The protocol table maps a name to its driver class; the transport options (baud,
parity, stopbits) are common.  ``serial:PORT`` alone assumes the Watts Up? protocol and
says so.
"""

from __future__ import annotations

import importlib
from typing import Any

from drivers.base import Meter, MeterConfigError

PROTOCOLS: dict[str, str] = {
    "wattsup": "drivers.wattsup:WattsUpMeter",
    "wt310": "drivers.wt310:WT310Meter",
}
DEFAULT_PROTOCOL = "wattsup"


def from_uri(uri: Any) -> Meter:
    protocol = uri.take("protocol", None)
    assumed = protocol is None
    protocol = (protocol or DEFAULT_PROTOCOL).lower()
    if protocol not in PROTOCOLS:
        raise MeterConfigError(f"{uri.raw}: unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    module, _, cls_name = PROTOCOLS[protocol].partition(":")
    cls = getattr(importlib.import_module(module), cls_name)
    if not uri.target:
        raise MeterConfigError(f"{uri.raw}: no port given (e.g. serial:/dev/ttyUSB0)")
    if uri.scheme == "tcp":
        host, port = uri.host_port
        if port is None:
            raise MeterConfigError(f"{uri.raw}: tcp needs HOST:PORT")
        target = f"socket://{host}:{port}"
    else:
        target = uri.target
    kwargs: dict[str, Any] = {
        "baudrate": uri.take("baud", cls.default_baud, int),
        "parity": uri.take("parity", "N"),
        "stopbits": uri.take("stopbits", 1, float),
    }
    kwargs.update(cls.uri_options(uri) if hasattr(cls, "uri_options") else {})
    meter: Meter = cls(target, name=uri.name, interval_s=uri.interval_s, **kwargs)
    if assumed:
        meter.notes.append(
            f"{uri.raw}: no protocol given, assumed protocol={DEFAULT_PROTOCOL} "
            f"(Watts Up? Pro, {kwargs['baudrate']} baud 8N1); add ?protocol=wt310 for a Yokogawa analyzer"
        )
    return meter
