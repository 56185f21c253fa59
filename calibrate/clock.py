"""The session clock: CLOCK_MONOTONIC in nanoseconds with one anchor to UTC.

Every sample and event of a session is stamped with ``time.monotonic_ns()``; that clock
is shared by every process on the machine (the recorder, the meter threads and the
workload process) and never jumps.  One anchor pairs a monotonic reading with UTC, taken
as the tightest of a few bracketed reads, so stamps can be shown as wall-clock times.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

#: Test-only: ``"OFFSET_S,DRIFT_PPM"`` makes an agent's session clock run offset and skewed
#: from CLOCK_MONOTONIC, so a multi-host merge can be checked against a known truth on one
#: machine.  It is recorded in the agent's manifest and announced on stderr.
TEST_CLOCK_ENV = "CALIBRATE_TEST_CLOCK"
MAX_TEST_OFFSET_S = 1e6
MAX_TEST_DRIFT_PPM = 1000.0


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


class SkewedClock:
    """CLOCK_MONOTONIC offset by ``offset_s`` and running ``drift_ppm`` fast (ns): stands in
    for another host's clock in tests and demos (see TEST_CLOCK_ENV)."""

    def __init__(self, offset_s: float, drift_ppm: float, base: Callable[[], int] = time.monotonic_ns) -> None:
        if not (abs(offset_s) <= MAX_TEST_OFFSET_S and abs(drift_ppm) <= MAX_TEST_DRIFT_PPM):
            raise ValueError(f"test clock offset must be within +-{MAX_TEST_OFFSET_S:g} s and drift "
                             f"within +-{MAX_TEST_DRIFT_PPM:g} ppm")
        self.offset_ns = int(round(offset_s * 1e9))
        self.drift_ppm = float(drift_ppm)
        self.base = base

    def __call__(self) -> int:
        return self.from_monotonic(self.base())

    def from_monotonic(self, m: int) -> int:
        """This clock's reading at CLOCK_MONOTONIC ``m`` (ns): for push meters, whose
        drivers stamp their readings with CLOCK_MONOTONIC themselves."""
        return m + self.offset_ns + round(self.drift_ppm * 1e-6 * m)

    def to_json(self) -> dict[str, float]:
        return {"offset_s": self.offset_ns / 1e9, "drift_ppm": self.drift_ppm}


def clock_from_env(env: dict[str, str] | None = None) -> tuple[Callable[[], int], SkewedClock | None]:
    """The session clock a process should use: CLOCK_MONOTONIC, or a SkewedClock when
    TEST_CLOCK_ENV is set (then also returned, to be recorded).  ValueError if malformed."""
    spec = (os.environ if env is None else env).get(TEST_CLOCK_ENV, "").strip()
    if not spec:
        return time.monotonic_ns, None
    try:
        off, drift = (float(x) for x in spec.split(","))
    except ValueError:
        raise ValueError(f"{TEST_CLOCK_ENV} must be 'OFFSET_S,DRIFT_PPM', got {spec[:40]!r}") from None
    clock = SkewedClock(off, drift)
    print(f"calibrate: test clock in use ({TEST_CLOCK_ENV}={off:g} s,{drift:g} ppm): "
          "stamps are deliberately wrong", file=sys.stderr)
    return clock, clock


def take_anchor(tries: int = 7, clock: Callable[[], int] = time.monotonic_ns) -> ClockAnchor:
    """Pair the session clock and UTC; keeps the tightest bracket of ``tries`` reads."""
    best: ClockAnchor | None = None
    for _ in range(tries):
        a = clock()
        u = time.time_ns()
        b = clock()
        cand = ClockAnchor(monotonic_ns=(a + b) // 2, utc_ns=u, uncertainty_ns=(b - a + 1) // 2)
        if best is None or cand.uncertainty_ns < best.uncertainty_ns:
            best = cand
    assert best is not None
    return best


def midpoint(t_request_ns: int, t_reply_ns: int) -> tuple[int, int]:
    """Stamp of a polled sample: (midpoint of request and reply, round trip), both ns."""
    return (t_request_ns + t_reply_ns) // 2, t_reply_ns - t_request_ns
