"""The recorder and the Session API: stamps, flushing, faults, reconnects, manifest."""

from __future__ import annotations

import json
import threading
import time

import pytest

from analysis.load import load_session
from calibrate.clock import midpoint, take_anchor
from calibrate.session import Session
from drivers.base import Channel, Meter, MeterConfigError, Reading
from tests.conftest import ScriptedMeter


class SlowMeter(Meter):
    """Takes exactly ``delay_s`` to answer, so the midpoint stamp is checkable."""

    kind = "slow"

    def __init__(self, delay_s: float) -> None:
        super().__init__("slow", 0.05)
        self.delay_s = delay_s
        self.calls: list[tuple[int, int]] = []

    def open(self) -> list[Channel]:
        self.channels = [Channel(id="slow", quantities=("power_w",))]
        return self.channels

    def read(self) -> Reading:
        t0 = time.monotonic_ns()
        time.sleep(self.delay_s)
        self.calls.append((t0, time.monotonic_ns()))
        return Reading({"slow": {"power_w": 1.0}})


def test_anchor_pairs_clocks_tightly() -> None:
    a = take_anchor()
    assert a.uncertainty_ns < 1_000_000  # bracket under 1 ms
    assert abs(a.to_utc_ns(time.monotonic_ns()) - time.time_ns()) < 50_000_000
    assert midpoint(100, 300) == (200, 200)


def test_polled_samples_are_stamped_at_the_midpoint(tmp_path) -> None:
    m = SlowMeter(0.02)
    with Session([m], out=tmp_path / "s"):
        time.sleep(0.4)
    data = load_session(tmp_path / "s")
    df = data.channels["slow"].data
    assert len(df) >= 4
    for (t0, t1), (_, row) in zip(m.calls, df.iterrows()):
        # the recorder's stamp lies inside the call and its rtt covers the 20 ms answer time
        assert t0 - 1_000_000 <= row["t_ns"] <= t1 + 1_000_000
        assert row["rtt_ns"] >= 19_000_000


def test_faults_are_flagged_counted_and_the_session_goes_on(tmp_path) -> None:
    script = [10, 11, "timeout", 12, "garbage", "garbage", "disconnected", 13, 14, 15]
    m = ScriptedMeter(script, interval_s=0.01, reopen_fails=2)
    with Session([m], out=tmp_path / "s") as s:
        deadline = time.monotonic() + 5
        while m.i < len(script) + 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        summary = s.recorder.summary()
    data = load_session(tmp_path / "s")
    tr = data.channels["scripted"]
    flags = tr.data["flag"].tolist()
    assert tr.faults["timeout"] == 1 and tr.faults["garbage"] == 2
    assert tr.faults["disconnected"] == 1 and tr.faults["reconnected"] == 1
    assert flags.index("disconnected") < flags.index("reconnected")
    powers = tr.ok["power_w"].tolist()
    assert powers[:3] == [10, 11, 12] and 13 in powers and 15 in powers  # nothing received is lost
    assert m.opens >= 4  # first open + 2 failed reopens + the good one
    assert summary["meters"]["scripted"]["faults"]["garbage"] == 2
    faults = [json.loads(x) for x in (tmp_path / "s" / "events.jsonl").read_text().splitlines()]
    assert any(e["kind"] == "meter_reconnected" for e in faults)


def test_manifest_records_clock_meters_and_status(tmp_path) -> None:
    m = ScriptedMeter([5.0])
    with Session([m], out=tmp_path / "s", workload={"name": "unit", "parameters": {"x": 1}}) as s:
        with s.window("phase-a"):
            time.sleep(0.05)
        s.mark("note", text="<b>escaped?</b>")
    man = json.loads((tmp_path / "s" / "session.json").read_text())
    assert man["status"] == "complete"
    assert man["clock"]["source"] == "CLOCK_MONOTONIC"
    assert man["clock"]["anchor"]["monotonic_ns"] == man["clock"]["start_ns"]
    assert man["meters"][0]["channels"][0]["id"] == "scripted"
    assert man["workload"]["parameters"] == {"x": 1}
    assert 0 <= man["recorder"]["cpu_fraction_of_core"] < 1
    data = load_session(tmp_path / "s")
    assert [p[0] for p in data.phases()] == ["phase-a"]
    assert data.phases()[0][2] - data.phases()[0][1] == pytest.approx(0.05, abs=0.04)


def test_a_failing_meter_opens_nothing_and_leaves_no_session(tmp_path) -> None:
    class Broken(ScriptedMeter):
        def open(self):
            raise MeterConfigError("permission denied on /dev/ttyUSB0: add your user to dialout")

    good = ScriptedMeter([1.0], name="good")
    with pytest.raises(MeterConfigError):
        Session([good, Broken([1.0], name="bad")], out=tmp_path / "s").start()
    assert not (tmp_path / "s" / "session.json").exists()


class LocalScripted(ScriptedMeter):
    local = True  # polled in the shared thread, which flushes when its rows are 0.5 s old


@pytest.mark.parametrize("cls", [ScriptedMeter, LocalScripted])
def test_rows_are_flushed_while_recording(tmp_path, cls) -> None:
    m = cls([7.0], interval_s=0.02)
    s = Session([m], out=tmp_path / "s").start()
    try:
        time.sleep(1.3)  # rows are flushed within 0.5 s, by the thread that writes them
        text = (tmp_path / "s" / "traces" / "scripted.csv").read_text()
        assert text.count("\n") > 20
        names = [t.name for t in threading.enumerate() if t.name.startswith("meter-") or t.name == "flusher"]
        assert names == (["meter-scripted"] if cls is ScriptedMeter else ["meter-shared"])  # no flusher
    finally:
        s.stop()


def test_a_slow_shared_meter_flushes_each_row_at_once(tmp_path) -> None:
    """Polled every 1 s: its thread flushes before sleeping past the 0.5 s deadline, so each
    row is on disk right after its poll, with no extra wake-up in between."""
    m = LocalScripted([5.0], interval_s=1.0)
    s = Session([m], out=tmp_path / "s").start()
    try:
        time.sleep(0.3)
        first = (tmp_path / "s" / "traces" / "scripted.csv").read_text().splitlines()
        time.sleep(1.0)
        second = (tmp_path / "s" / "traces" / "scripted.csv").read_text().splitlines()
    finally:
        s.stop()
    assert len(first) == 2 and len(second) == 3  # header + one row, then + the next second's row
