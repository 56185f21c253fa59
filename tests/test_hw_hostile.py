"""Hostile or broken devices on every transport: floods, random bytes, partial frames and
endless lines.  Every read returns a plausible value or raises MeterReadError (or
MeterDisconnected) within a bounded time; nothing garbage becomes watts; memory stays
bounded; a recorded session completes with the faults flagged and no garbage values."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from drivers.base import MeterReadError
from drivers.registry import make_meter
from drivers.sim.registry import make_simulator


def _reads(meter, seconds, per_read_s):
    """Poll like the recorder for ``seconds``: (values, faults); each call bounded in time."""
    values, faults = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            r = meter.read()
            v = r.values[meter.name]
            assert 0.0 <= v["power_w"] <= 3700.0, v  # never garbage as watts
            values.append((r.t_ns, v["power_w"]))
        except MeterReadError as exc:
            faults.append(exc.code)
        assert time.monotonic() - t0 < per_read_s
    return values, faults


def _run(kind, seconds=2.0, per_read_s=4.0, open_ok=True, **opts):
    s = make_simulator(kind, signal="constant:50", **opts)
    uri = s.start()
    m = make_meter(uri)
    tracemalloc.start()
    try:
        t0 = time.monotonic()
        try:
            m.open()
        except MeterReadError:  # MeterDisconnected too: a device that never speaks its protocol
            assert not open_ok
            assert time.monotonic() - t0 < per_read_s + 3
            return [], ["open"], m
        values, faults = _reads(m, seconds, per_read_s)
        peak = tracemalloc.get_traced_memory()[1]
        assert peak < 16 << 20, peak
        return values, faults, m
    finally:
        tracemalloc.stop()
        m.close()
        s.stop()


# -- Watts Up? (serial pty) -----------------------------------------------------------------
def test_wattsup_flood_of_valid_packets_is_not_recorded_as_extra_samples():
    values, faults, m = _run("wattsup", seconds=3.5, hostile="flood", hostile_at=0.0)
    stamps = [t for t, _ in values]
    assert len(stamps) == len(set(stamps))  # no duplicate stamps
    assert len(values) <= 5  # at most one per 1 s interval (with tolerance)
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert all(g >= 0.75e9 for g in gaps), gaps
    assert m.too_fast > 0 and len(faults) < 40


@pytest.mark.parametrize("mode", ["random", "endless"])
def test_wattsup_garbage_and_endless_lines(mode):
    values, faults, _ = _run("wattsup", seconds=2.5, hostile=mode, hostile_at=0.0)
    assert not values and faults and len(faults) < 80  # backs off instead of spinning
    assert set(faults) <= {"garbage", "timeout", "range", "nan"}


# -- WT310 (serial pty and TCP) ----------------------------------------------------------------
@pytest.mark.parametrize("transport", ["pty", "tcp"])
@pytest.mark.parametrize("mode", ["flood", "random", "endless"])
def test_wt310_hostile_after_open(transport, mode):
    values, faults, _ = _run("wt310", seconds=2.0, rate=0.1, transport=transport, hostile=mode,
                             hostile_at=0.3)
    assert faults and len(faults) < 80, (len(faults), faults[:5])  # was 100k faults/s for a ';' flood
    assert set(faults) <= {"garbage", "timeout", "range", "nan"}


# -- Modbus RTU (pty) and Modbus TCP -----------------------------------------------------------
@pytest.mark.parametrize(("transport", "mode"), [("pty", "random"), ("pty", "partial"), ("pty", "flood"),
                                                 ("tcp", "random"), ("tcp", "partial"), ("tcp", "flood")])
def test_modbus_hostile(transport, mode):
    values, faults, _ = _run("sdm120", seconds=1.5, per_read_s=3.0, open_ok=False, update=0.05,
                             transport=transport, hostile=mode)
    assert not values and faults


# -- recorded sessions ---------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "opts"), [
    ("wattsup", {"hostile": "flood", "hostile_at": 1.2}),
    ("wt310", {"rate": 0.1, "transport": "tcp", "hostile": "flood", "hostile_at": 2.0}),
])
def test_session_with_a_hostile_device_completes_flagged(tmp_path, kind, opts):
    from analysis.load import load_session
    from calibrate.session import Session

    s = make_simulator(kind, signal="constant:50", **opts)
    uri = s.start()
    try:
        with Session([uri], out=tmp_path / "s"):
            time.sleep(3.5)
    finally:
        s.stop()
    data = load_session(tmp_path / "s")
    (tr,) = data.channels.values()
    good = tr.data[~tr.data["fault"]]
    assert len(good) and good["power_w"].between(0, 3700).all()
    assert good["t_ns"].is_unique
    assert len(tr.data) < 400  # not hundreds of thousands of fault rows
    assert tr.data["fault"].any() or (tr.data["flag"].astype(str) == "rate").any()
