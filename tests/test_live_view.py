"""The live terminal view, the plain lines and the feed behind them (no session, no browser)."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from calibrate.bench import BenchProgress
from calibrate.console import ConsoleReporter, advanced, plain_line, status_view
from calibrate.live_feed import MAX_POINTS_PER_ANSWER, LiveFeed
from calibrate.recorder import LiveMeter
from calibrate.workload_process import WorkloadProgress, WorkloadRun, workload_progress
from workloads.registry import PreparedWorkload

WALL = LiveMeter("wattsup", True, {"wattsup": {"power_w": 123.4}}, 40, 0, silent_s=0.4, interval_s=1.0,
                 channels=("wattsup",))
RAPL = LiveMeter("rapl", True, {}, 80, 3, silent_s=0.9, interval_s=0.5, last_fault="timeout",
                 channels=("rapl.package-0",))
GONE = LiveMeter("[red]plug", True, {}, 5, 0, silent_s=12.0, interval_s=1.0, channels=("[red]plug",))
LOST = LiveMeter("nvml", False, {}, 9, 1, silent_s=3.0, interval_s=0.1, last_fault="disconnected",
                 channels=("nvml.gpu0",))


def _tick(**kw) -> BenchProgress:
    wl = WorkloadProgress(phase="epoch-2", elapsed_s=20.0, epoch=2, epochs=3, step=120, images_per_s=34.5)
    base = dict(elapsed_s=63.2, phase="workload", meters=[WALL, RAPL, GONE, LOST], left_s=41.3,
                workload=wl, recorder_cpu=0.0123)
    base.update(kw)
    return BenchProgress(**base)


def _render(renderable, width: int = 120) -> str:
    buf = io.StringIO()
    Console(file=buf, force_terminal=True, width=width, color_system=None).print(renderable)
    return buf.getvalue()


def test_the_view_shows_phase_time_left_power_age_faults_marks_workload_and_cpu():
    out = _render(status_view(_tick(), title="calibrate vgg16"))
    assert "workload" in out and "42 s left" in out  # ceil: 41.3 s left is "42 s"
    assert "123.4 W" in out and "0.4 s" in out  # the wall meter's power and its age
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "FAULT timeout" in rows["rapl"] and " 3 " in rows["rapl"]  # faulted, with its fault count
    assert "SILENT 12 s" in rows["[red]plug"]  # stale: marked, not dropped
    assert "RECONNECTING" in rows["nvml"]
    assert "ok" in rows["wattsup"]
    assert "epoch 2/3" in out and "step 120" in out and "34.5 images/s" in out
    assert "recorder CPU 1.2 % of a core" in out


def test_names_are_text_not_markup_and_carry_no_escape_sequences():
    evil = LiveMeter("[bold red]x\x1b[2J\x1b]0;t\x07", True, {"[link=http://e]c": {"power_w": 5.0}}, 1, 0,
                     silent_s=0.1, interval_s=1.0, channels=("[link=http://e]c",))
    buf = io.StringIO()
    Console(file=buf, force_terminal=True, width=120).print(status_view(_tick(meters=[evil], phase="[blink]p")))
    out = buf.getvalue()
    assert "[bold red]x" in out and "[link=http://e]c" in out and "[blink]p" in out
    assert "\x1b[2J" not in out and "\x1b]0;" not in out and "\x07" not in out
    assert "\x1b]8;" not in out  # no hyperlink made from a name


def test_cooldown_time_left_is_an_upper_bound_and_baseline_is_exact():
    assert "up to 4 min 00 s left" in _render(status_view(_tick(phase="cooldown", left_s=240.0, left_is_max=True,
                                                                workload=None)))
    assert "3 s left" in plain_line(_tick(phase="baseline-before", left_s=2.2, workload=None))


def test_the_view_keeps_moving_between_ticks():
    later = advanced(_tick(), 2.0)
    assert later.left_s == pytest.approx(39.3) and later.elapsed_s == pytest.approx(65.2)
    assert later.meters[0].silent_s == pytest.approx(2.4)
    assert later.meters[1].silent_s == pytest.approx(2.9) and later.meters[1].silent  # over 2 s: SILENT
    assert not advanced(_tick(), 1.0).meters[1].silent
    assert advanced(_tick(), 5.0).meters[0].silent  # 5.4 s without a reading: SILENT


def test_a_faulted_channel_shows_its_last_good_value_from_the_feed():
    feed = LiveFeed(t0_ns=0)
    feed.on_reading("rapl", 1_000_000_000, {"rapl.package-0": {"energy_j": 10.0}})
    feed.on_reading("rapl", 2_000_000_000, {"rapl.package-0": {"energy_j": 55.5}})  # 45.5 W from the counter
    feed.on_fault("rapl", 3_000_000_000, "timeout", ["rapl.package-0"])
    out = _render(status_view(_tick(meters=[RAPL]), feed.channel_states()))
    assert "45.5 W" in out and "FAULT timeout" in out


def test_plain_mode_prints_one_line_per_tick_on_stderr_and_nothing_on_stdout(capsys):
    reporter = ConsoleReporter(mode="plain")
    for left in (3.0, 2.0, 1.0):
        reporter.progress(_tick(left_s=left))
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 3
    assert [("3 s left" in lines[0]), ("2 s left" in lines[1]), ("1 s left" in lines[2])] == [True] * 3
    for line in lines:
        assert "[workload]" in line and "wattsup 123.4 W" in line and "rapl FAULT timeout (3 faults)" in line
        assert "[red]plug SILENT 12 s" in line and "nvml RECONNECTING" in line
        assert "epoch 2/3" in line and "recorder CPU 1.2 %" in line


def test_quiet_prints_no_progress(capsys):
    reporter = ConsoleReporter(quiet=True)
    reporter.progress(_tick())
    assert capsys.readouterr() == ("", "")


def test_each_note_and_problem_is_printed_once(capsys, tmp_path):
    reporter = ConsoleReporter(mode="plain")
    wl = PreparedWorkload("idle", {}, ["true"], category="load")
    reporter.started(tmp_path, ["cpu-model is MODELLED", "cpu-model is MODELLED", "max assumed"], wl, 1)
    reporter.started(tmp_path, ["max assumed"], wl, 1)
    reporter.problem("meter x went away")
    reporter.problem("meter x went away")
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("note: cpu-model is MODELLED") == 1 and err.count("note: max assumed") == 1
    assert err.count("calibrate: meter x went away") == 1


def test_the_live_view_draws_to_a_terminal_and_a_broken_view_falls_back_to_plain(capsys, tmp_path):
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120, color_system=None)
    feed = LiveFeed()
    reporter = ConsoleReporter(mode="auto", feed=feed, console=console)
    wl = PreparedWorkload("idle", {}, ["true"], category="load")
    reporter.started(tmp_path, [], wl, 4)
    assert reporter._view is not None  # a terminal: the live view, not plain lines
    reporter.progress(_tick())
    reporter._view.stop()  # draws the last state
    assert "123.4 W" in buf.getvalue() and "epoch 2/3" in buf.getvalue()
    assert "live-view" in feed.consumer_cpu()  # its CPU is counted as recorder overhead

    def broken():
        raise RuntimeError("boom")

    reporter = ConsoleReporter(mode="auto", console=Console(file=io.StringIO(), force_terminal=True))
    reporter.started(tmp_path, [], wl, 4)
    view = reporter._view
    assert view is not None
    view.get_tick = broken
    view._thread.join(timeout=10)  # the view thread ends on the error ...
    assert view.failed and reporter.mode == "plain"
    reporter.progress(_tick())  # ... and progress goes on as plain lines
    reporter.finished("complete")
    err = capsys.readouterr().err
    assert err.count("the live view failed (RuntimeError: boom)") == 1
    assert "[workload]" in err and "wattsup 123.4 W" in err


def test_workload_progress_from_its_events():
    run = WorkloadRun(["x"], phase="epoch-3", metrics={"images_per_s": 88.0, "step": 40.0}, epoch=3)
    p = workload_progress(run, {"epochs": 5})
    assert (p.epoch, p.epochs, p.step, p.images_per_s) == (3, 5, 40, 88.0)
    assert workload_progress(WorkloadRun(["x"]), {"epochs": True}).epochs is None  # not a count


# --------------------------------------------------------------------------- the feed
def test_the_feed_serves_points_by_cursor_bounded_and_in_order():
    feed = LiveFeed(t0_ns=0, points_per_channel=50)
    for k in range(1, 41):
        feed.on_reading("a", k * 10**8, {"a": {"power_w": float(k)}, "a.dram": {"power_w": k / 10}})
    feed.on_reading("b", 5 * 10**9, {"b": {"power_w": float("nan")}})  # not finite: not a point
    first = feed.since(0, limit=30)
    assert first["more"] and first["cursor"] == 30 and sum(len(s["t"]) for s in first["series"]) == 30
    rest = feed.since(first["cursor"], limit=1000)
    assert not rest["more"] and rest["cursor"] == 80
    got = {c["id"]: [] for c in rest["channels"]}
    for answer in (first, rest):
        for s in answer["series"]:
            got[answer["channels"][s["i"]]["id"]].extend(s["w"])
    assert got["a"] == [float(k) for k in range(1, 41)] and len(got["a.dram"]) == 40
    assert feed.since(80)["series"] == [] and feed.since(10**17)["cursor"] == 10**17
    assert feed.since(0, limit=10**9)["cursor"] <= MAX_POINTS_PER_ANSWER
    json.dumps(feed.since(0), allow_nan=False)  # valid JSON, always


def test_the_feed_is_bounded_in_points_and_channels():
    feed = LiveFeed(t0_ns=0, points_per_channel=100, max_channels=3)
    for k in range(1000):
        feed.on_reading("m", k * 10**6, {f"c{j}": {"power_w": 1.0} for j in range(10)})
    assert len(feed.channel_states()) == 3 and feed.channels_not_followed == 7000
    assert all(len(s.seq) <= 200 for s in feed._series.values())
    assert feed.since(0, limit=5000)["series"][0]["t"][0] >= (1000 - 200) * 1e-3  # the oldest were dropped


def test_phase_bands_follow_the_ticks():
    clock = iter(range(0, 10**12, 10**9))
    feed = LiveFeed(t0_ns=0, clock=lambda: next(clock))
    for phase in ("baseline-before", "baseline-before", "workload", "cooldown"):
        feed.update(_tick(phase=phase))
    feed.finish("complete")
    phases = feed.since(0)["phases"]
    assert [p["name"] for p in phases] == ["baseline-before", "workload", "cooldown"]
    assert all(p["end_s"] is not None and p["end_s"] >= p["start_s"] for p in phases)
    assert feed.since(0)["state"] == "ended: complete"


def test_a_listener_that_raises_is_dropped_and_recording_goes_on(tmp_path):
    from calibrate.recorder import DiscardEvents, Recorder
    from tests.conftest import ScriptedMeter

    class Boom:
        def on_reading(self, *a):
            raise RuntimeError("boom")

        def on_fault(self, *a):
            raise RuntimeError("boom")

    meter = ScriptedMeter([1.0] * 1000, interval_s=0.01)
    rec = Recorder([meter], None, DiscardEvents())  # no folder: nothing written (calibrate watch)
    rec.open_all()
    feed = LiveFeed()
    rec.add_listener(Boom())
    rec.add_listener(feed)
    rec.start()
    import time

    deadline = time.monotonic() + 10
    while feed.points_total() < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    rec.stop()
    assert feed.points_total() >= 5 and len(rec._listeners) == 1
    assert not list(tmp_path.iterdir())
