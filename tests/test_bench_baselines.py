"""Idle baselines carry the wall meter's energy: meters warm before, running past the end."""

from __future__ import annotations

import json

from tests.conftest import run_cli


def test_baselines_have_wall_energy_and_gaps_are_said(tmp_path):
    out = tmp_path / "s"
    cp = run_cli("run", "--meter", "sim:wattsup?signal=constant:100&faults=drop:5+6", "--meter", "cpu-model",
                 "--workload", "idle", "--duration", "14", "--baseline", "3", "--reference", "wattsup",
                 "--out", str(out), timeout=180)
    assert cp.returncode == 0, cp.stderr
    summary = json.loads((out / "summary.json").read_text())
    phases = {p["phase"]: p for p in summary["phases"]}
    for name in ("baseline-before", "baseline-after"):
        assert phases[name]["wattsup"] is not None, (name, phases[name])  # was null in every session
        assert abs(phases[name]["wattsup"] / phases[name]["duration_s"] - 100.0) < 5.0
    # the 6 s drop (inside the workload) is marked in the summary and said once
    assert summary["meters"]["wattsup"]["longest_gap_s"] > 5.0
    assert any("wattsup was silent" in w for w in summary["warnings"])
    assert "warning: wattsup was silent" in cp.stdout


def test_a_tiny_report_window_is_refused_not_run(tmp_path):
    out = tmp_path / "s"
    cp = run_cli("run", "--meter", "cpu-model", "--workload", "idle",
                 "--duration", "2", "--baseline", "0", "--no-report", "--out", str(out), timeout=120)
    assert cp.returncode == 0, cp.stderr
    cp = run_cli("report", str(out), "--reference", "cpu-model", "--window", "1e-6", timeout=60)  # modelled: named
    assert cp.returncode == 2 and "--window" in cp.stderr and len(cp.stderr.strip().splitlines()) == 1, cp.stderr
    assert "Traceback" not in cp.stderr
