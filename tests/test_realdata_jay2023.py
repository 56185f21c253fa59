"""Jay et al. CCGrid 2023 reproduced from raw traces: import, align, compare, calibrate.

Jay, Ostapenco, Lefèvre, Trystram, Orgerie, Fichel, "An experimental comparison of
software-based power meters: focus on CPU and GPU", CCGrid 2023; replication package
data (CC BY-SA 4.0): a node's wall power (Omegawatt) and a software tool's power for the
same run, each on its own clock.  The paper's fits over all runs (per-sample pairs):
wall = 1.17 x tool + 974 W, per-sample Pearson r 0.93-0.97.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize("tool", ["powerapi", "scaphandre", "perf"])
def test_imported_run_reproduces_the_published_calibration(shared_data, tmp_path, tool: str) -> None:
    real = shared_data / "realdata"
    fits = pd.read_csv(real / "jay2023_published_fits.csv")
    pub = fits[(fits["tool"] == tool) & (fits["benchmark"] == "all")].iloc[0]
    out = tmp_path / tool
    cp = run_cli("import", "--trace", f"wall={real / f'jay2023_{tool}_wall.csv'}@wall",
                 "--trace", f"{tool}={real / f'jay2023_{tool}_tool.csv'}@package",
                 "--reference", "wall", "--out", str(out), "--report")
    assert cp.returncode == 0, cp.stderr
    s = json.loads((out / "summary.json").read_text())
    a = s["agreement"][0]
    cal = a["calibration"]
    # one run, aligned and compared over windows, against the paper's fit over all runs
    assert cal["slope"] == pytest.approx(pub["slope"], abs=0.1)
    assert cal["intercept"] == pytest.approx(pub["intercept"], abs=25.0)
    # the software tool sees about 1 kW less than the wall: the node's fixed draw
    assert a["bland_altman"]["bias"] < -900
    # the two clocks differ: a lag is found and applied, and agreement beats the per-sample r
    assert a["lag_s"] is not None and s["lags"][tool]["applied"]
    assert a["pearson_r"] > pub["r"]


def test_a_tool_that_keeps_its_own_time_has_its_drift_corrected(shared_data, tmp_path) -> None:
    """Energy Scope's stamps step exactly 0.5 s: computed from a nominal period, so its clock
    drifts against the wall meter's (about -2600 ppm in this run)."""
    real = shared_data / "realdata"
    out = tmp_path / "es"
    cp = run_cli("import", "--trace", f"wall={real / 'jay2023_gpu_energyscope_wall.csv'}@wall",
                 "--trace", f"es={real / 'jay2023_gpu_energyscope_tool.csv'}@gpu",
                 "--reference", "wall", "--out", str(out), "--report")
    assert cp.returncode == 0, cp.stderr
    s = json.loads((out / "summary.json").read_text())
    lag = s["lags"]["es"]
    lo, hi = lag["drift_ci_ppm"]
    assert -3500 < lag["drift_ppm"] < -1800 and hi < 0
    assert any("drift" in w and "corrected" in w for w in s["warnings"])
    assert s["agreement"][0]["pearson_r"] > 0.995
