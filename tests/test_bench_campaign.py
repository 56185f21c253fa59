"""Campaigns: randomised order, one session per run, resume without repeating, aggregate report."""

from __future__ import annotations

import json

from calibrate.campaign import load_plan, make_order
from tests.conftest import run_cli

PLAN = """
[campaign]
name = "t"
meters = ["sim:wattsup", "cpu-model"]
reference = "wattsup"
repetitions = 2
seed = 3
baseline_s = 2  # long enough for a 1 Hz reference to report: no idle value, no cool-down
cooldown_max_s = 4
cooldown_tolerance = 0.5
window_s = 1
out = "camp"

[[run]]
workload = "square"
params = { duration_s = 5, period_s = 2 }

[[run]]
label = "idle-short"
workload = "idle"
params = { duration_s = 6 }
"""


def test_order_is_seeded_and_complete(tmp_path) -> None:
    p = tmp_path / "plan.toml"
    p.write_text(PLAN)
    plan = load_plan(p)
    a, b = make_order(plan), make_order(plan)
    assert [x["id"] for x in a] == [x["id"] for x in b]
    assert sorted((x["label"], x["rep"]) for x in a) == [("idle-short", 1), ("idle-short", 2), ("square", 1), ("square", 2)]


def test_bad_plan_is_a_usage_error(tmp_path) -> None:
    p = tmp_path / "plan.toml"
    p.write_text(PLAN.replace('workload = "idle"', 'workload = "nosuch"'))
    cp = run_cli("campaign", str(p))
    assert cp.returncode == 2 and "nosuch" in cp.stderr and "Traceback" not in cp.stderr


def test_campaign_runs_resumes_and_aggregates(tmp_path) -> None:
    p = tmp_path / "plan.toml"
    p.write_text(PLAN)
    cp = run_cli("campaign", str(p), "-q", timeout=240)
    assert cp.returncode == 0, cp.stderr
    out = tmp_path / "camp"
    state = json.loads((out / "campaign.json").read_text())
    assert [x["status"] for x in state["order"]] == ["complete"] * 4
    for it in state["order"]:
        assert (out / it["id"] / "summary.json").exists()
        phases = [p["phase"] for p in json.loads((out / it["id"] / "summary.json").read_text())["phases"]]
        assert phases[0] == "baseline-before" and "cooldown" in phases and phases[-1] == "baseline-after"
        cool = [json.loads(x) for x in (out / it["id"] / "events.jsonl").read_text().splitlines()
                if '"cooldown"' in x and '"phase_end"' in x][0]
        assert cool["waited_s"] <= 4.6  # bounded
    report = json.loads((out / "campaign_report.json").read_text())
    assert {w["workload"]: w["runs"] for w in report["per_workload"]} == {"idle": 2, "square": 2}
    sq = next(w for w in report["per_workload"] if w["workload"] == "square")
    assert sq["energy_j"]["mean"] > 0 and sq["energy_j"]["ci"][0] <= sq["energy_j"]["mean"] <= sq["energy_j"]["ci"][1]
    assert report["agreement"][0]["candidate"] == "cpu-model" and report["agreement"][0]["n_runs"] == 4
    assert "repeated measures" in report["agreement"][0]["bland_altman_method"]
    assert "Calibration across workloads" in (out / "campaign_report.html").read_text()

    # a crash in the middle: the last run was being recorded, the one before never started
    first, *_, before_last, last = state["order"]
    mtime_first = (out / first["id"] / "session.json").stat().st_mtime
    last["status"] = "running"
    before_last["status"] = "pending"
    import shutil

    shutil.rmtree(out / before_last["id"])
    (out / "campaign.json").write_text(json.dumps(state))
    again = run_cli("campaign", str(p), "-q", timeout=240)
    assert again.returncode == 2 and "--resume" in again.stderr  # never silently starts over
    resumed = run_cli("campaign", str(p), "--resume", "-q", timeout=240)
    assert resumed.returncode == 0, resumed.stderr
    ran = [line for line in resumed.stdout.splitlines() if line.startswith("campaign: 0")]
    assert [r.split()[1] for r in ran] == [before_last["id"], last["id"]]
    assert (out / first["id"] / "session.json").stat().st_mtime == mtime_first  # not repeated
    assert (out / f"{last['id']}.incomplete-1").is_dir()  # the interrupted attempt is kept aside
    state2 = json.loads((out / "campaign.json").read_text())
    assert all(x["status"] == "complete" for x in state2["order"])
