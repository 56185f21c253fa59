"""Small helpers shared by the workloads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Emit = Callable[..., Any]


@contextmanager
def phase(emit: Emit, name: str, **fields: Any) -> Iterator[None]:
    """``with phase(emit, "epoch-1"):`` phase_start / phase_end through ``emit`` (end even on error)."""
    emit("phase_start", phase=name, **fields)
    try:
        yield
    finally:
        emit("phase_end", phase=name)
