"""Fault injection for simulators: what real cables and meters do.

Spec (``faults=`` option / ``--faults``), comma-separated, any subset::

    garbage:P     with probability P a reply is replaced by random bytes
    partial:P     with probability P a reply is cut short
    nan:P         with probability P a value is reported as NaN / no data
    silent:P      with probability P a request gets no reply (the driver times out)
    crc:P         (Modbus) with probability P a reply's CRC is corrupted
    exception:P   (Modbus) with probability P the reply is an exception response
    drop:T+D      the device disappears T s after start, for D s (repeatable: drop:5+2;20+1)
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from drivers.base import MeterConfigError

_PROB_KEYS = ("garbage", "partial", "nan", "silent", "crc", "exception")


@dataclass
class FaultPlan:
    garbage: float = 0.0
    partial: float = 0.0
    nan: float = 0.0
    silent: float = 0.0
    crc: float = 0.0
    exception: float = 0.0
    drops: list[tuple[float, float]] = field(default_factory=list)  # (start s, duration s)
    seed: int | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def hit(self, kind: str) -> bool:
        """Draw once: True if fault ``kind`` happens on this reply."""
        p = getattr(self, kind)
        return p > 0 and self.rng.random() < p

    def dropped(self, t_s: float) -> bool:
        """True while the device is gone (t_s since simulator start)."""
        return any(s <= t_s < s + d for s, d in self.drops)

    def garbage_bytes(self, n: int = 12) -> bytes:
        return bytes(self.rng.randrange(256) for _ in range(n))

    @classmethod
    def parse(cls, spec: str | None, seed: int | None = None) -> FaultPlan:
        plan = cls(seed=seed)
        if not spec:
            return plan
        for item in spec.split(","):
            key, _, val = item.strip().partition(":")
            try:
                if key in _PROB_KEYS:
                    p = float(val)
                    if not 0 <= p <= 1:
                        raise ValueError
                    setattr(plan, key, p)
                elif key == "drop":
                    for part in val.split(";"):
                        # in a URI query "+" arrives as a space: accept both
                        s, _, d = part.strip().replace(" ", "+").partition("+")
                        plan.drops.append((float(s), float(d or 2)))
                else:
                    raise MeterConfigError(
                        f"unknown fault {key!r}; known: {', '.join(_PROB_KEYS)}, drop"
                    )
            except ValueError:
                raise MeterConfigError(f"cannot parse fault {item!r} (e.g. garbage:0.05 or drop:10+3)") from None
        return plan
