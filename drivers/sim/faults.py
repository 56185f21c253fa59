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
from typing import Any, ClassVar

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

    EXTRA_PROBS: ClassVar[tuple[str, ...]] = ()
    EXTRA_SPANS: ClassVar[dict[str, tuple[str, float]]] = {}
    EXTRA_TIMES: ClassVar[dict[str, str]] = {}

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def hit(self, kind: str) -> bool:
        """Draw once: True if fault ``kind`` happens on this reply."""
        p = getattr(self, kind)
        return p > 0 and self.rng.random() < p

    def dropped(self, t_s: float) -> bool:
        """True while the device is gone (t_s since simulator start)."""
        return self.within(self.drops, t_s)

    def garbage_bytes(self, n: int = 12) -> bytes:
        return bytes(self.rng.randrange(256) for _ in range(n))

    def within(self, spans: list[tuple[float, float]], t_s: float) -> bool:
        """True while ``t_s`` (s since simulator start) lies in one of ``spans`` (start, length s)."""
        return any(s <= t_s < s + d for s, d in spans)

    @classmethod
    def parse(cls, spec: str | None, seed: int | None = None) -> FaultPlan:
        """A plan from a spec (module doc).  A subclass adds its own faults as data:
        probabilities (``EXTRA_PROBS``, the key is the attribute), spans ``T+D``
        (``EXTRA_SPANS``: key -> (list attribute, default D s)) and instants ``T1;T2``
        (``EXTRA_TIMES``: key -> list attribute, kept sorted)."""
        plan = cls(seed=seed)
        probs = _PROB_KEYS + cls.EXTRA_PROBS
        spans = {"drop": ("drops", 2.0), **cls.EXTRA_SPANS}
        times = cls.EXTRA_TIMES
        for item in (spec or "").split(","):
            item = item.strip()
            if not item:
                continue
            key, _, val = item.partition(":")
            if key not in probs and key not in spans and key not in times:
                known = [*_PROB_KEYS, "drop", *cls.EXTRA_PROBS, *cls.EXTRA_SPANS, *times]
                raise MeterConfigError(f"unknown fault {key!r}; known: {', '.join(known)}")
            try:
                if key in probs:
                    p = float(val)
                    if not 0 <= p <= 1:
                        raise ValueError
                    setattr(plan, key, p)
                elif key in spans:
                    attr, default_d = spans[key]
                    for part in val.split(";"):
                        # in a URI query "+" arrives as a space: accept both
                        s, _, d = part.strip().replace(" ", "+").partition("+")
                        getattr(plan, attr).append((float(s), float(d or default_d)))
                else:
                    getattr(plan, times[key]).extend(float(x) for x in val.split(";"))
                    getattr(plan, times[key]).sort()
            except ValueError:
                raise MeterConfigError(f"cannot parse fault {item!r} (e.g. garbage:0.05 or drop:10+3)") from None
        return plan

    @classmethod
    def coerce(cls, faults: Any, seed: int | None = None) -> FaultPlan:
        """A plan of this class from a spec, or from another plan (its settings and draws
        kept; faults only this class knows stay off)."""
        if isinstance(faults, cls):
            return faults
        plan = cls.parse(None if isinstance(faults, FaultPlan) else faults, seed=seed)
        if isinstance(faults, FaultPlan):
            plan.__dict__.update(faults.__dict__)
        return plan
