"""Prompt, clean stop on SIGTERM / SIGINT.

The recorder ends a workload at ``--duration`` with SIGTERM.  The first SIGTERM or SIGINT
sets :data:`STOP`; loops check it every step (or wait on it instead of sleeping), end the
running phase and emit a result.  The handlers are then reset to the defaults, so a second
signal ends the process at once.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

#: Set when the workload has been asked to stop.
STOP = threading.Event()
#: The signal that set STOP (0 when none).
received: list[int] = [0]


def _handler(signum: int, _frame: FrameType | None) -> None:
    received[0] = signum
    STOP.set()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def install() -> None:
    """Route SIGTERM and SIGINT to :data:`STOP` (call from the main thread)."""
    STOP.clear()
    received[0] = 0
    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
