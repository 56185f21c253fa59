"""Hostile session folders: `calibrate report` answers exit 0, or exit 2 with one line --
never a traceback, never exit 1 with a Python error."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.session_format import EVENTS_FILE, FORMAT, MANIFEST_FILE, TraceWriter, trace_path
from calibrate.cli import main

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
START = 1_000_000_000_000


def base_manifest() -> dict:
    return {"format": FORMAT, "status": "complete", "clock": {"start_ns": START, "unit": "ns"},
            "host": {"hostname": "h"}, "reference": "wall", "workload": {"name": "idle", "parameters": {}},
            "meters": [{"name": "wall", "kind": "sim", "channels": [
                           {"id": "wall", "scope": "wall", "source": "measured", "quantities": ["power_w"],
                            "update_interval_s": 1.0}]},
                       {"name": "cpu", "kind": "cpu-model", "channels": [
                           {"id": "cpu", "scope": "cpu", "source": "modelled", "quantities": ["power_w"],
                            "update_interval_s": 1.0}]}]}


def make_session(folder: Path, manifest: dict | str | None = None, events: str | None = None,
                 trace: str | None = None) -> Path:
    (folder / "traces").mkdir(parents=True)
    for cid, w0 in (("wall", 100.0), ("cpu", 40.0)):
        w = TraceWriter(trace_path(folder, cid), ("power_w",))
        for i in range(30):
            w.write(START + i * 10**9, 1000, {"power_w": w0 + 20 * ((i // 5) % 2)})
        w.close()
    if trace is not None:
        (folder / "traces" / "cpu.csv").write_text(trace)
    m = base_manifest() if manifest is None else manifest
    (folder / MANIFEST_FILE).write_text(m if isinstance(m, str) else json.dumps(m))
    lines = [json.dumps({"t_ns": START, "kind": "phase_start", "phase": "workload"}),
             json.dumps({"t_ns": START + 29 * 10**9, "kind": "phase_end", "phase": "workload"})]
    (folder / EVENTS_FILE).write_text(events if events is not None else "\n".join(lines) + "\n")
    return folder


def report(folder: Path) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["report", str(folder)])
    return rc, err.getvalue()


def assert_clean(rc: int, err: str) -> None:
    assert "Traceback" not in err
    assert rc in (0, 2), err
    if rc == 2:
        assert len(err.strip().splitlines()) == 1, err


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                           max_leaves=8)


def test_the_base_session_reports(tmp_path):
    rc, err = report(make_session(tmp_path / "s"))
    assert rc == 0, err


@pytest.mark.parametrize("manifest", [[], "x", None, 3, {"clock": None}, {"host": None}, {"meters": {}},
                                      {"meters": [{"channels": [{"scope": "x"}]}]}, {"clock": {"start_ns": 1e300}}])
def test_known_bad_manifests(tmp_path, manifest):
    m = base_manifest()
    if isinstance(manifest, dict):
        m.update(manifest)
    else:
        m = manifest
    assert_clean(*report(make_session(tmp_path / "s", manifest=json.dumps(m))))


@FUZZ
@given(key=st.sampled_from(["format", "status", "clock", "host", "meters", "workload", "reference", "recorder"]),
       value=json_values)
def test_fuzzed_manifest_fields(tmp_path_factory, key, value):
    m = base_manifest()
    m[key] = value
    folder = tmp_path_factory.mktemp("m")
    shutil.rmtree(folder)
    assert_clean(*report(make_session(folder, manifest=m)))


@FUZZ
@given(lines=st.lists(st.one_of(
    st.text(max_size=30),
    st.builds(lambda t, k, p: json.dumps({"t_ns": t, "kind": k, "phase": p}),
              st.one_of(st.integers(-2**64, 2**64), st.floats(), st.text(max_size=4)),
              st.sampled_from(["phase_start", "phase_end", "result", "x"]), json_values)), max_size=6))
def test_fuzzed_events(tmp_path_factory, lines):
    folder = tmp_path_factory.mktemp("e")
    shutil.rmtree(folder)
    assert_clean(*report(make_session(folder, events="\n".join(lines) + "\n")))


@FUZZ
@given(rows=st.lists(st.text(alphabet="0123456789,.-enaif\n", max_size=40), max_size=5),
       header=st.sampled_from(["t_ns,rtt_ns,flag,power_w", "t_ns,rtt_ns,flag", "a,b", "", "t_ns,rtt_ns,flag,power_w,x"]))
def test_fuzzed_traces(tmp_path_factory, rows, header):
    folder = tmp_path_factory.mktemp("t")
    shutil.rmtree(folder)
    assert_clean(*report(make_session(folder, trace=header + "\n" + "\n".join(rows) + "\n")))


def test_a_trace_path_that_is_a_directory(tmp_path):
    folder = make_session(tmp_path / "s")
    (folder / "traces" / "cpu.csv").unlink()
    (folder / "traces" / "cpu.csv").mkdir()
    assert_clean(*report(folder))
