"""Progress through every phase of a run, --show-output, and `calibrate watch` (short sessions)."""

from __future__ import annotations

import threading

from calibrate.bench import BenchPlan, BenchReporter, run_bench
from calibrate.cli import main
from calibrate.live_feed import LiveFeed


class Ticks(BenchReporter):
    show_output = True

    def __init__(self) -> None:
        self.ticks = []
        self.lines: list[str] = []
        self.ended: list[str] = []

    def progress(self, tick):
        self.ticks.append(tick)

    def workload_output(self, line):
        self.lines.append(line)

    def finished(self, status):
        self.ended.append(status)


def test_ticks_arrive_in_the_baselines_and_the_cooldown_with_the_time_left(tmp_path):
    reporter = Ticks()
    feed = LiveFeed()
    # cpu-model as the reference, a tolerance no reading meets: the cool-down lasts its 1.2 s
    plan = BenchPlan(meters=["cpu-model?interval=0.1"], command=["sh", "-c", "echo hello-from-workload"],
                     out=tmp_path / "s", reference="cpu-model", baseline_s=1.3, cooldown_max_s=1.2,
                     cooldown_tolerance=1e-9, analyse=False)
    result = run_bench(plan, reporter, feed=feed)
    assert result.status == "complete" and reporter.ended == ["complete"]
    by_phase: dict[str, list] = {}
    for t in reporter.ticks:
        by_phase.setdefault(t.phase, []).append(t)
    assert {"baseline-before", "cooldown", "baseline-after"} <= set(by_phase)
    for name in ("baseline-before", "baseline-after"):
        lefts = [t.left_s for t in by_phase[name]]
        assert len(lefts) >= 2 and lefts[0] > lefts[-1] and 1.1 <= lefts[0] <= 1.3  # counts down from 1.3 s
        assert not any(t.left_is_max for t in by_phase[name])
    cool = by_phase["cooldown"]
    assert len(cool) >= 2 and all(t.left_is_max for t in cool) and cool[0].left_s > cool[-1].left_s
    assert all(t.meters and t.meters[0].name == "cpu-model" for t in reporter.ticks)
    assert reporter.lines == ["hello-from-workload"]  # teed ...
    assert (result.path / "workload.log").read_text() == "hello-from-workload\n"  # ... and logged
    # the feed heard the same run: points on the session clock, one band per phase
    data = feed.since(0)
    names = [p["name"] for p in data["phases"] if p["name"] != "pre-flight"]
    assert names[:1] == ["baseline-before"] and "cooldown" in names and names[-1] == "baseline-after"
    assert data["points_total"] >= 20 and data["state"] == "ended: complete"
    t = data["series"][0]["t"]
    assert t == sorted(t) and 0 <= t[0] < 10


def test_show_output_tees_a_command_to_the_terminal_and_to_workload_log(tmp_path, capsys):
    out = tmp_path / "s"
    rc = main(["run", "--meter", "cpu-model", "--baseline", "0", "--no-report", "--plain", "--show-output",
               "--out", str(out), "--", "sh", "-c", "echo hello-from-workload; printf 'a\\033[2J\\rdone\\n' >&2"])
    assert rc == 0
    stdout, stderr = capsys.readouterr()
    assert "hello-from-workload" in stderr.splitlines() and "done" in stderr.splitlines()  # redrawn line: its end
    assert "hello-from-workload" not in stdout and "\x1b" not in stderr
    assert stdout.strip() == f"session: {out}"  # the result, alone on stdout
    log = (out / "workload.log").read_bytes()
    assert b"hello-from-workload\n" in log and b"a\x1b[2J\rdone\n" in log  # the log has every byte


def test_without_show_output_the_output_goes_only_to_the_log(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["run", "--meter", "cpu-model", "--baseline", "0", "--no-report", "-q",
                 "--out", str(out), "--", "sh", "-c", "echo quiet-workload"]) == 0
    stdout, stderr = capsys.readouterr()
    assert "quiet-workload" not in stdout + stderr
    assert (out / "workload.log").read_text() == "quiet-workload\n"


def test_watch_shows_readings_and_a_failing_meter_records_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = main(["watch", "cpu-model?interval=0.1", "sim:sdm120?interval=0.2&name=plug&faults=drop:0.6+60",
               "--seconds", "2"])
    stdout, stderr = capsys.readouterr()
    lines = stdout.splitlines()
    assert rc == 0 and 2 <= len(lines) <= 3, stdout
    assert all("[watch]" in x for x in lines)
    assert any(" W" in x and "cpu-model " in x for x in lines)
    assert "plug RECONNECTING" in lines[-1] or "plug FAULT" in lines[-1] or "plug SILENT" in lines[-1], stdout
    assert "note: plug" in stderr  # notes on stderr
    assert not list(tmp_path.iterdir())  # no session folder, no file


def test_watch_refuses_a_bad_uri_and_bad_seconds_with_one_line(capsys):
    assert main(["watch", "nope:x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0]
    assert main(["watch", "cpu-model", "--seconds", "inf"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--seconds" in err[0]


def test_watch_ends_on_stop():
    from calibrate.watch import watch

    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    assert watch(["cpu-model?interval=0.05"], mode="plain", stop=stop) == 0


def test_live_port_out_of_range_is_one_line(capsys, tmp_path):
    assert main(["run", "--meter", "cpu-model", "--live", "70000", "--out", str(tmp_path / "s"),
                 "--", "true"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "PORT" in err[0] and not (tmp_path / "s").exists()
