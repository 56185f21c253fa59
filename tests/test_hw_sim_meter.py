"""``sim:KIND`` meters schedule and stop as the real driver they wrap."""

from __future__ import annotations

import time

import pytest

from drivers.base import Meter, MeterReadError
from drivers.registry import make_meter


@pytest.mark.parametrize("kind", ["wattsup", "wt310", "sdm120"])
def test_scheduling_hints_are_the_inner_drivers(kind):
    m = make_meter(f"sim:{kind}?signal=constant:50")
    try:
        for hint in ("push", "local", "may_stall"):
            assert getattr(m, hint) is getattr(m.inner, hint)
        assert m.push is (kind == "wattsup")
        assert m.skipped == [] and m.notes_explain_modelled is False
    finally:
        m.release()


def test_request_stop_reaches_the_inner_driver_and_ends_a_blocked_read():
    m = make_meter("sim:wattsup?signal=constant:50&faults=silent:1")
    try:
        m.open()
        assert not m.stop_requested and not m.inner.stop_requested
        m.request_stop()
        assert m.stop_requested and m.inner.stop_requested
        t0 = time.monotonic()
        with pytest.raises(MeterReadError) as exc:
            m.read()
        assert exc.value.code == "timeout" and time.monotonic() - t0 < 1.0
    finally:
        m.release()


def test_stop_requested_is_read_only():
    m = make_meter("cpu-model?idle=10&max=100")
    assert isinstance(m, Meter) and m.notes_explain_modelled
    with pytest.raises(AttributeError):
        m.stop_requested = True  # type: ignore[misc]
