"""The session clock: CLOCK_MONOTONIC in nanoseconds with one anchor to UTC.

Every sample and event of a session is stamped with ``time.monotonic_ns()``; that clock
is shared by every process on the machine (the recorder, the meter threads and the
workload process) and never jumps.  One anchor pairs a monotonic reading with UTC, taken
as the tightest of a few bracketed reads, so stamps can be shown as wall-clock times.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ClockAnchor:
    monotonic_ns: int  # CLOCK_MONOTONIC at the anchor (ns)
    utc_ns: int  # Unix time at the same instant (ns since 1970-01-01 UTC)
    uncertainty_ns: int  # half-width of the bracket the UTC read was taken in (ns)

    def to_utc_ns(self, t_ns: int) -> int:
        """Unix ns of a monotonic stamp (valid while the system clock is not stepped)."""
        return self.utc_ns + (t_ns - self.monotonic_ns)

    def to_json(self) -> dict[str, int]:
        return asdict(self)


def take_anchor(tries: int = 7) -> ClockAnchor:
    """Pair monotonic and UTC clocks; keeps the tightest bracket of ``tries`` reads."""
    best: ClockAnchor | None = None
    for _ in range(tries):
        a = time.monotonic_ns()
        u = time.time_ns()
        b = time.monotonic_ns()
        cand = ClockAnchor(monotonic_ns=(a + b) // 2, utc_ns=u, uncertainty_ns=(b - a + 1) // 2)
        if best is None or cand.uncertainty_ns < best.uncertainty_ns:
            best = cand
    assert best is not None
    return best


def midpoint(t_request_ns: int, t_reply_ns: int) -> tuple[int, int]:
    """Stamp of a polled sample: (midpoint of request and reply, round trip), both ns."""
    return (t_request_ns + t_reply_ns) // 2, t_reply_ns - t_request_ns
