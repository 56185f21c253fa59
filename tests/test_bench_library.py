"""A whole bench session from a Python script, without argparse: run_bench(BenchPlan)."""

from __future__ import annotations

import threading

import pytest

from analysis.load import load_session
from calibrate.bench import BenchPlan, BenchProgress, BenchReporter, run_bench
from calibrate.errors import UsageError


class Recording(BenchReporter):
    def __init__(self) -> None:
        self.started_with: tuple | None = None
        self.ticks: list[BenchProgress] = []

    def started(self, path, notes, workload, n_meters):
        self.started_with = (path, notes, workload.name, n_meters)

    def progress(self, tick):
        self.ticks.append(tick)


def test_run_bench_records_and_reports(tmp_path):
    reporter = Recording()
    plan = BenchPlan(meters=["sim:wattsup?signal=square:80,160@2", "cpu-model"], workload="idle",
                     params={"duration_s": 3}, out=tmp_path / "s", reference="wattsup", baseline_s=1.5,
                     window_s=1.0)
    result = run_bench(plan, reporter)
    assert result.status == "complete" and result.ok and result.report_error is None
    assert result.path == tmp_path / "s"
    path, notes, name, n = reporter.started_with
    assert path == tmp_path / "s" and name == "idle" and n == 2
    assert any("MODELLED" in note for note in notes)  # cpu-model says what it is
    assert len(reporter.ticks) >= 2 and reporter.ticks[-1].elapsed_s > reporter.ticks[0].elapsed_s
    assert {m.name for m in reporter.ticks[-1].meters} == {"wattsup", "cpu-model"}
    summary = result.summary
    assert summary is not None and set(summary["meters"]) >= {"wattsup", "cpu-model"}
    assert summary["reference"] == "wattsup"
    data = load_session(result.path)
    names = [p[0] for p in data.phases()]
    assert names[0] == "baseline-before" and names[-1] == "baseline-after" and "workload" in names
    assert (result.path / "report.html").is_file() and (result.path / "summary.json").is_file()


@pytest.mark.parametrize("plan, needle", [
    (BenchPlan(meters=[], workload="idle"), "--meter"),
    (BenchPlan(meters=["cpu-model"]), "--workload"),
    (BenchPlan(meters=["cpu-model"], workload="nope"), "nope"),
    (BenchPlan(meters=["cpu-model"], workload="idle", baseline_s=float("inf")), "--baseline"),
    (BenchPlan(meters=["cpu-model"], workload="idle", baseline_s=-1), "--baseline"),
    (BenchPlan(meters=["cpu-model"], workload="idle", window_s=0), "--window"),
    (BenchPlan(meters=["cpu-model"], workload="idle", reference="wall"), "--reference"),
    (BenchPlan(meters=["cpu-model"], workload="idle", command=["true"]), "command"),
])
def test_a_plan_that_cannot_run_is_refused_before_recording(tmp_path, plan, needle):
    plan.out = tmp_path / "s"
    with pytest.raises(UsageError, match=needle):
        run_bench(plan)
    assert not (tmp_path / "s").exists()


def test_stop_event_interrupts(tmp_path):
    stop = threading.Event()

    class StopSoon(BenchReporter):
        def progress(self, tick):
            if tick.elapsed_s > 1.0:
                stop.set()

    plan = BenchPlan(meters=["cpu-model"], workload="idle", params={"duration_s": 60}, out=tmp_path / "s",
                     baseline_s=0, analyse=False)
    result = run_bench(plan, StopSoon(), stop=stop)
    assert result.status == "interrupted" and result.summary is None
    assert result.run is not None and result.run.terminated
