"""A command never writes into, appends to, follows or deletes what it did not create."""

from __future__ import annotations

import os

import pytest

from analysis.load import load_session
from analysis.session_format import (
    TraceWriter,
    claim_folder,
    trace_path,
    write_manifest,
    write_text_atomic,
)
from tests.conftest import run_cli


def _one_line_exit_2(cp, needle: str) -> None:
    assert cp.returncode == 2, (cp.returncode, cp.stdout, cp.stderr)
    assert "Traceback" not in cp.stderr and len(cp.stderr.strip().splitlines()) == 1, cp.stderr
    assert needle in cp.stderr, cp.stderr


def test_run_refuses_a_non_empty_out_and_touches_nothing(tmp_path):
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "events.jsonl").write_text("someone's events\n")
    (out / "report.html").write_text("someone's report")
    # a meter that fails to open used to delete the existing events.jsonl
    cp = run_cli("run", "--meter", "serial:/dev/ttyNOPE9", "--workload", "idle", "--out", str(out))
    assert cp.returncode == 2
    cp = run_cli("run", "--meter", "cpu-model", "--workload", "idle", "--duration", "1", "--out", str(out))
    _one_line_exit_2(cp, "is not empty")
    assert (out / "events.jsonl").read_text() == "someone's events\n"
    assert (out / "report.html").read_text() == "someone's report"
    assert sorted(p.name for p in out.iterdir()) == ["events.jsonl", "report.html"]


def test_import_refuses_a_non_empty_out(tmp_path):
    src = tmp_path / "wall.csv"
    src.write_text("timestamp,power_w\n" + "".join(f"{1e9 + i},{100 + i % 3}\n" for i in range(20)))
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "events.jsonl").write_text("keep me\n")
    cp = run_cli("import", "--trace", f"wall={src}@wall", "--out", str(out))
    _one_line_exit_2(cp, "is not empty")
    assert (out / "events.jsonl").read_text() == "keep me\n"
    cp = run_cli("import", "--trace", f"wall={src}@wall", "--out", str(tmp_path / "new"))
    assert cp.returncode == 0, cp.stderr
    assert (tmp_path / "new" / "events.jsonl").read_text() == ""


def test_claim_folder_and_exclusive_writers(tmp_path):
    assert claim_folder(tmp_path / "a") is True
    assert claim_folder(tmp_path / "a") is False  # empty: may be used
    (tmp_path / "a" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        claim_folder(tmp_path / "a")
    (tmp_path / "f").write_text("")
    with pytest.raises(FileExistsError, match="not a folder"):
        claim_folder(tmp_path / "f")
    os.symlink(tmp_path / "elsewhere", tmp_path / "link")
    with pytest.raises(FileExistsError):
        claim_folder(tmp_path / "link")
    # a trace is never appended to, nor written through a symlink
    (tmp_path / "s" / "traces").mkdir(parents=True)
    victim = tmp_path / "victim.csv"
    victim.write_text("precious\n")
    os.symlink(victim, trace_path(tmp_path / "s", "m"))
    with pytest.raises(FileExistsError):
        TraceWriter(trace_path(tmp_path / "s", "m"), ("power_w",))
    assert victim.read_text() == "precious\n"


def test_a_symlinked_trace_is_not_followed(tmp_path):
    s = tmp_path / "s"
    (s / "traces").mkdir(parents=True)
    w = TraceWriter(trace_path(s, "m"), ("power_w",))
    w.write(1_000_000_000, 0, {"power_w": 5.0})
    w.write(2_000_000_000, 0, {"power_w": 6.0})
    w.close()
    outside = tmp_path / "outside.csv"
    outside.write_text("t_ns,rtt_ns,flag,power_w\n1000000000,0,,999.0\n2000000000,0,,999.0\n")
    os.symlink(outside, s / "traces" / "evil.csv")
    write_manifest(s, {"status": "complete", "clock": {"start_ns": 0},
                       "meters": [{"name": "m", "channels": [{"id": "m"}]}]})
    data = load_session(s)
    assert list(data.channels) == ["m"]
    assert any("evil.csv" in w and "symlink" in w for w in data.warnings)


def test_a_failed_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "report.html"
    target.write_text("old report")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError):
        write_text_atomic(target, "new report that does not fit")
    assert target.read_text() == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]  # no temporary left
