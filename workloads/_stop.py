"""Prompt, clean stop on SIGTERM / SIGINT.

The recorder ends a workload at ``--duration`` with SIGTERM.  The first SIGTERM or SIGINT
sets :data:`STOP`; loops check it every step (or wait on it instead of sleeping), end the
running phase and emit a result.  The handlers are then reset to the defaults, so a second
signal ends the process at once.
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType


class _StopEvent(threading.Event):
    """An Event whose waits wake at least every 0.1 s.

    Python runs signal handlers only in the main thread, between bytecodes.  The kernel may
    hand a process-directed SIGTERM (the recorder's, or the parent-death signal when the
    recorder is killed) to any thread -- torch's, a helper's -- and then nothing wakes a
    main thread blocked in a long wait: the handler would run only when the wait ends.
    """

    def __init__(self) -> None:
        super().__init__()
        #: set by the signal handler: a plain attribute, because a handler that takes the
        #: Event's lock deadlocks when it interrupts the main thread inside wait()
        self.signalled = False

    def is_set(self) -> bool:
        return self.signalled or super().is_set()

    def clear(self) -> None:
        self.signalled = False
        super().clear()

    def wait(self, timeout: float | None = None) -> bool:
        end = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = 0.1 if end is None else min(0.1, end - time.monotonic())
            if left <= 0:
                return False
            super().wait(left)
        return True


#: Set when the workload has been asked to stop.
STOP = _StopEvent()
#: The signal that set STOP (0 when none).
received: list[int] = [0]


def _handler(signum: int, _frame: FrameType | None) -> None:
    received[0] = signum
    STOP.signalled = True  # no locks in a signal handler (see _StopEvent)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def install() -> None:
    """Route SIGTERM and SIGINT to :data:`STOP` (call from the main thread)."""
    STOP.clear()
    received[0] = 0
    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)


def watch_parent(interval_s: float = 0.5, grace_s: float = 10.0) -> None:
    """Stop when the process that started us dies (the recorder was killed).

    Linux's parent-death signal is armed by the recorder too, but a daemon thread that
    notices the re-parenting is the portable backstop: it raises SIGTERM in this process
    (the clean path: phase end, result), and ends the process if that has not worked
    within ``grace_s``.
    """
    import os

    parent = os.getppid()
    if parent <= 1:
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(143)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()
