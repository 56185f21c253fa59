"""A device that floods faults is counted and summarised, not written row by row."""

from __future__ import annotations

import json
import time

from analysis.load import load_session
from calibrate.session import Session
from drivers.base import Channel, Meter, MeterReadError, Reading


class GarbagePush(Meter):
    """A push meter whose every read fails at once (a wire full of ';' bytes)."""

    kind = "garbage-push"
    push = True

    def __init__(self, good_every: int = 0) -> None:
        super().__init__("flood", 1.0)
        self.reads = 0
        self.good_every = good_every

    def open(self) -> list[Channel]:
        self.channels = [Channel(id="flood", quantities=("power_w",))]
        return self.channels

    def read(self) -> Reading:
        self.reads += 1
        if self.good_every and self.reads % self.good_every == 0:
            return Reading({"flood": {"power_w": 100.0}})
        raise MeterReadError("unparseable ';;;;;'", code="garbage")


def test_a_fault_flood_is_rate_limited_and_summarised(tmp_path):
    m = GarbagePush(good_every=40)
    with Session([m], out=tmp_path / "s") as s:
        time.sleep(2.0)
    data = load_session(tmp_path / "s")
    tr = data.channels["flood"]
    rows = tr.faults.get("garbage", 0)
    assert m.reads > 40  # the device was read again and again...
    assert rows <= 10 + 10 * 2.5  # ...but at most a burst plus 10 fault rows a second were written
    assert tr.ok["power_w"].eq(100.0).all() and len(tr.ok) >= 1  # the good values in between are kept
    manifest = json.loads((tmp_path / "s" / "session.json").read_text())
    rec = manifest["recorder"]["meters"]["flood"]
    assert rec["faults"]["garbage"] == m.reads - len(tr.ok)  # every fault counted
    assert rec["fault_rows_not_written"] == rec["faults"]["garbage"] - rows
    events = [json.loads(x) for x in (tmp_path / "s" / "events.jsonl").read_text().splitlines()]
    summarised = sum(sum(e["counts"].values()) for e in events if e["kind"] == "meter_faults_suppressed")
    assert summarised == rec["fault_rows_not_written"] > 0
    assert s.recorder is not None


def test_a_failing_push_meter_does_not_spin(tmp_path):
    m = GarbagePush()
    with Session([m], out=tmp_path / "s"):
        time.sleep(1.0)
    # read back to back it would fail ~10^5 times a second; with the backoff at most 50
    assert m.reads <= 1.2 / 0.02 + 5
