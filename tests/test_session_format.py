"""The session format's contract, pinned by write-then-read round trips."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.load import load_session
from analysis.session_format import (
    EVENTS_FILE,
    FORMAT,
    EventWriter,
    SessionError,
    TraceWriter,
    encode_flag,
    json_safe,
    read_manifest,
    read_status,
    trace_path,
    write_manifest,
)


def manifest(channels: dict[str, list[str]], status: str = "complete") -> dict:
    return {"format": FORMAT, "status": status, "clock": {"start_ns": 1_000_000_000, "unit": "ns"},
            "meters": [{"name": cid.split(".")[0], "kind": "test",
                        "channels": [{"id": cid, "scope": "wall", "source": "measured", "quantities": qs}]}
                       for cid, qs in channels.items()]}


def test_round_trip_keeps_suspect_rows_and_drops_only_faults(tmp_path):
    qs = ("power_w", "energy_j", "freq_hz", "pf")
    (tmp_path / "traces").mkdir()
    w = TraceWriter(trace_path(tmp_path, "wt310"), qs)
    base = 1_000_000_000
    w.write(base + 1 * 10**9, 1000, {"power_w": 100.0, "energy_j": 0.0, "freq_hz": 50.0, "pf": 0.9})
    # a WT310 row whose only problems are two non-power items: its power and energy are valid
    w.write(base + 2 * 10**9, 1000, {"power_w": 101.5, "energy_j": 100.75, "freq_hz": math.nan, "pf": math.nan},
            note="freq_hz:nan,pf:nan")
    w.write_fault(base + 3 * 10**9, 2000, "timeout")
    w.write_fault(base + 4 * 10**9, 0, "disconnected")
    w.write_fault(base + 5 * 10**9, 0, "reconnected")
    w.write(base + 6 * 10**9, 900, {"power_w": 1e-7, "energy_j": 5.0, "freq_hz": 50.0, "pf": 1.0})
    w.close()
    events = EventWriter(tmp_path / EVENTS_FILE)
    events.write({"t_ns": base, "kind": "phase_start", "phase": "workload", "value": math.nan})
    events.write({"t_ns": base + 7 * 10**9, "kind": "phase_end", "phase": "workload"})
    events.close()
    write_manifest(tmp_path, manifest({"wt310": list(qs)}))

    data = load_session(tmp_path)
    tr = data.channels["wt310"]
    assert tr.meter == "wt310" and tr.info["meter_kind"] == "test"
    assert len(tr.data) == 6
    ok = tr.ok
    assert ok["power_w"].tolist() == [100.0, 101.5, 1e-7]  # the suspect row keeps its power
    assert ok["energy_j"].tolist() == [0.0, 100.75, 5.0]
    assert ok["flag"].tolist() == ["", "freq_hz:nan;pf:nan", ""]  # a comma never reaches the CSV
    assert math.isnan(ok["freq_hz"].iloc[1]) and math.isnan(ok["pf"].iloc[1])
    assert tr.faults == {"timeout": 1, "disconnected": 1, "reconnected": 1}
    assert tr.notes == {"freq_hz:nan": 1, "pf:nan": 1}
    assert tr.segments().tolist() == [0, 0, 2]  # the counter restarts after the reconnect
    assert ok["t_s"].tolist() == [1.0, 2.0, 6.0]
    assert data.phases() == [("workload", 0.0, 7.0)]
    assert read_status(tmp_path) == "complete"
    # every line has exactly the header's number of cells
    lines = trace_path(tmp_path, "wt310").read_text().splitlines()
    assert {line.count(",") for line in lines} == {len(qs) + 2}
    # the event's NaN was written as strict JSON
    assert json.loads((tmp_path / EVENTS_FILE).read_text().splitlines()[0])["value"] is None


def test_torn_last_line_is_dropped_and_recording_is_incomplete(tmp_path):
    (tmp_path / "traces").mkdir()
    w = TraceWriter(trace_path(tmp_path, "m"), ("power_w",))
    w.write(2_000_000_000, 0, {"power_w": 5.0})
    w.close()
    with trace_path(tmp_path, "m").open("a") as fh:
        fh.write("3000000000,0,,6.")  # killed mid-write
    write_manifest(tmp_path, manifest({"m": ["power_w"]}, status="recording"))
    data = load_session(tmp_path)
    assert data.channels["m"].ok["power_w"].tolist() == [5.0]
    assert data.status == "incomplete" and any("incomplete" in w for w in data.warnings)


@pytest.mark.parametrize("bad, key", [
    ([], "expected a JSON object"), ("x", "expected a JSON object"),
    ({"clock": None}, "clock"), ({"clock": {"start_ns": 1e300}}, "start_ns"),
    ({"meters": {}}, "meters"), ({"meters": [{"channels": [{"scope": "wall"}]}]}, "id"),
    ({"host": None, "workload": 3}, "workload"), ({"status": 7}, "status"),
])
def test_malformed_manifests_are_one_line_errors(tmp_path, bad, key):
    (tmp_path / "session.json").write_text(json.dumps(bad))
    with pytest.raises(SessionError, match=key) as err:
        read_manifest(tmp_path)
    assert "\n" not in str(err.value)
    assert read_status(tmp_path) is None


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=60))
def test_no_flag_text_can_break_a_row(text):
    flag = encode_flag(text)
    assert not set(flag) & set(',"\n\r\'')
    assert len(flag) <= 200


@settings(max_examples=50, deadline=None)
@given(values=st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.none()),
                       min_size=2, max_size=2),
       note=st.text(max_size=20))
def test_values_round_trip_exactly(tmp_path_factory, values, note):
    folder = tmp_path_factory.mktemp("s")
    (folder / "traces").mkdir()
    w = TraceWriter(trace_path(folder, "c"), ("power_w", "energy_j"))
    w.write(1_000_000_000, 5, dict(zip(("power_w", "energy_j"), values)), note=note)
    w.close()
    write_manifest(folder, manifest({"c": ["power_w", "energy_j"]}))
    row = load_session(folder).channels["c"].data.iloc[0]
    for q, v in zip(("power_w", "energy_j"), values):
        if v is None or not math.isfinite(v):
            assert math.isnan(row[q])
        else:
            assert row[q] == v
    assert row["flag"] == encode_flag(note)


def test_json_safe_gives_strict_json():
    import numpy as np

    out = json_safe({"a": np.float64("nan"), "b": (1, np.int64(2)), "c": np.array([1.5, np.inf]),
                     "d": float("-inf"), "e": np.bool_(True)})
    assert out == {"a": None, "b": [1, 2], "c": [1.5, None], "d": None, "e": True}
    json.dumps(out, allow_nan=False)
