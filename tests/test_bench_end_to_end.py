"""The whole path as a user runs it: record, report, SIGKILL, agree on published data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from analysis.load import load_session
from tests.conftest import ROOT, run_cli


def test_run_idle_then_report(tmp_path) -> None:
    out = tmp_path / "s"
    cp = run_cli("run", "--meter", "sim:wattsup", "--meter", "cpu-model", "--workload", "square",
                 "-p", "period_s=4", "--duration", "12", "--baseline", "2", "--window", "2", "--out", str(out), "-q")
    assert cp.returncode == 0, cp.stderr
    assert f"session: {out}" in cp.stdout
    assert "wattsup (reference)" in cp.stdout and "cpu-model" in cp.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["reference"] == "wattsup"
    w = summary["meters"]["wattsup"]
    # the simulated wall meter follows this machine's CPU load through a PSU model: > its idle draw
    assert 50.0 < w["mean_power_w"] < 200.0
    assert w["samples"] >= 14 and w["errors"] == {}
    assert summary["meters"]["cpu-model"]["source"] == "modelled"
    agreement = summary["agreement"][0]
    for key in ("bland_altman", "regression", "ccc"):
        assert key in agreement
    assert set(agreement["bland_altman"]) >= {"n", "bias", "sd", "loa_low", "loa_high", "bias_ci", "loa_low_ci", "loa_high_ci"}
    assert {"lag_s", "window_s", "n_windows"} <= set(agreement)
    assert set(summary["emissions"]) >= {"location", "intensity_g_per_kwh", "co2_g"}
    assert summary["workload"]["name"] == "square"
    # both meters see the square wave of CPU load: they must correlate and fit a positive gain
    assert agreement["n_windows"] >= 4
    assert agreement["regression"]["slope"] > 0 and agreement["calibration"]["slope"] > 0
    assert abs(agreement["lag_s"]) < 1.5
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 4  # traces, scatter, Bland-Altman, residuals (+ phases)
    phases = [p["phase"] for p in summary["phases"]]
    assert phases[0] == "baseline-before" and "workload" in phases and phases[-1] == "baseline-after"


def test_sigkill_keeps_what_was_flushed_and_report_works(tmp_path) -> None:
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "calibrate.cli", "run", "--meter", "sim:wattsup",
                             "--meter", "cpu-model", "--workload", "idle", "--duration", "60", "--baseline", "0",
                             "--out", str(out), "-q"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    trace = out / "traces" / "wattsup.csv"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if trace.exists() and trace.read_text().count("\n") >= 5:
            break
        time.sleep(0.2)
    rows_before = trace.read_text().count("\n")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    pid = next(json.loads(x)["pid"] for x in (out / "events.jsonl").read_text().splitlines()
               if json.loads(x)["kind"] == "workload_started")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    alive = _alive(pid)
    state = "".join(x for x in open(f"/proc/{pid}/status") if x.startswith(("Sig", "Shd", "PPid"))) if alive else ""
    if alive:
        os.killpg(pid, signal.SIGKILL)
    assert not alive, f"the workload outlived the killed recorder: {state}"
    assert rows_before >= 5
    data = load_session(out)
    assert data.status == "incomplete"
    assert len(data.channels["wattsup"].ok) >= 4
    cp = run_cli("report", str(out), "--window", "1")
    assert cp.returncode == 0, cp.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "incomplete"
    assert any("incomplete" in w for w in summary["warnings"])
    assert "incomplete" in (out / "report.html").read_text()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_agree_on_a_published_bland_altman_example(shared_data, tmp_path) -> None:
    """Bland & Altman 1986 (Lancet i:307-310), PEFR, first readings: Wright - mini = -2.1 l/min, SD 38.8.

    calibrate's difference is candidate - reference (mini - Wright), so the bias is +2.1.
    """
    src = shared_data / "method-comparison" / "pefr_bland_altman_1986.csv"
    cols = [c for c in src.read_text().splitlines() if not c.startswith("#")][0].split(",")
    ref_col = next(c for c in cols if "wright" in c.lower() and "mini" not in c.lower() and c.endswith("1"))
    cand_col = next(c for c in cols if "mini" in c.lower() and c.endswith("1"))
    cp = run_cli("agree", str(src), "--reference", ref_col, "--candidate", cand_col, "--json")
    assert cp.returncode == 0, cp.stderr
    res = json.loads(cp.stdout)
    assert res["bland_altman"]["n"] == 17
    assert res["bland_altman"]["bias"] == pytest.approx(2.1, abs=0.05)
    assert res["bland_altman"]["sd"] == pytest.approx(38.8, abs=0.05)
    assert res["bland_altman"]["loa_low"] == pytest.approx(2.1 - 1.96 * 38.8, abs=0.5)
    md = run_cli("agree", str(src), "--reference", ref_col, "--candidate", cand_col)
    assert md.returncode == 0 and "| bias |" in md.stdout


def test_a_gap_in_the_reference_is_left_out_not_counted_as_zero(tmp_path) -> None:
    # a 4 s drop 5 s in (inside the workload phase however slow the start): the ~5 s gap is
    # more than the edge allowance (2 x (interval + window) = 4 s) and under half the phase
    out = tmp_path / "gap"
    cp = run_cli("run", "--meter", "sim:wattsup?faults=drop:5+4&signal=constant:100", "--workload", "idle",
                 "--duration", "16", "--baseline", "1", "--out", str(out), "-q")
    assert cp.returncode == 0, cp.stderr
    s = json.loads((out / "summary.json").read_text())
    w = s["meters"]["wattsup"]
    assert w["errors"].get("disconnected") == 1 and w["gaps_s"] > 2.5
    assert w["mean_power_w"] == pytest.approx(100.0, abs=0.5)  # energy / time actually measured
    assert s["workload"]["energy_j"] == pytest.approx(100.0 * s["workload"]["duration_s"], rel=0.03)
    assert s["emissions"]["co2_g"] > 0
    assert any("missed" in w for w in s["warnings"])
    gap_phase = next(p for p in s["phases"] if p["phase"] == "workload")
    assert gap_phase["wattsup"] is None and gap_phase["wattsup:covered_s"] < gap_phase["duration_s"] - 2.5


def test_cnn_training_session_reports_accuracy_and_energy_per_epoch(tmp_path) -> None:
    out = tmp_path / "cnn"
    cp = run_cli("run", "--meter", "sim:wattsup", "--meter", "cpu-model", "--workload", "tinyvgg",
                 "--epochs", "3", "--batch-size", "16", "--image-size", "16", "-p", "train_size=256",
                 "--baseline", "1", "--out", str(out), "-q")
    assert cp.returncode == 0, cp.stderr
    s = json.loads((out / "summary.json").read_text())
    wl = s["workload"]
    assert wl["name"] == "tinyvgg" and wl["accuracy"] > 0.3  # chance is 0.1 on the generated set
    assert wl["images_per_s"] > 0 and wl["accuracy_per_kwh"] > 0
    assert [r["epoch"] for r in wl["epochs"]] == ["1", "2", "3"]
    assert all(r["loss"] > 0 and "val_accuracy" in r for r in wl["epochs"])
    assert "Training epochs" in (out / "report.html").read_text()
    assert "accuracy" in cp.stdout
    # tested against chance on the final evaluation's images (not every evaluation's)
    vs = wl["accuracy_vs_chance"]
    events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    result = next(e for e in events if e.get("kind") == "result")
    assert vs["n"] == result["val_samples"] > 0 and result["val_images"] == 3 * result["val_samples"]
    assert vs["chance"] == 0.1 and vs["ci"][0] < wl["accuracy"] < vs["ci"][1]
    assert ("accuracy_at_chance" in wl["warning_codes"]) is (vs["ci"][0] <= 0.1)
