"""The analysis on a session whose truth is known: lags, gains, offsets, energies.

A 4-minute session is written in the on-disk format: a wall meter (1 Hz, power averaged
over 1 s) and two software meters (2 Hz, cumulative counters) follow one square-wave
load with known delays; wall = 95 W + 180 W x load, rapl = 12 W + 95 W x load, gpu =
30 W + 120 W x load.  Every figure the summary reports is checked against that truth.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.calibration import CalibrationModel, correct_energy, fit_calibration
from analysis.load import load_session
from analysis.pipeline import window_table
from analysis.summary import summarize

START_NS = 5 * 10**12
DURATION_S = 240.0
TRUE = {  # channel: (idle W, span W, delay s, rate Hz, counter, scope, source)
    "wall": (95.0, 180.0, 0.0, 1.0, False, "wall", "measured"),
    "rapl.package-0": (12.0, 95.0, 1.5, 2.0, True, "package", "measured"),
    "gpu": (30.0, 120.0, -0.7, 2.0, True, "gpu", "measured"),
}


def load_at(t: np.ndarray) -> np.ndarray:
    """Square wave of CPU load: 20 s period, high 60 % of it, after a 20.37 s idle start
    (edges off the 10 s window grid, as they are on a real bench)."""
    return np.where((t >= 20.37) & (((t - 20.37) % 20.0) < 12.0), 1.0, 0.0)


def energy_until(t: np.ndarray, idle: float, span: float, delay: float) -> np.ndarray:
    """Exact cumulative energy (J) of idle + span * load(t - delay), on a 1 ms grid."""
    grid = np.arange(-5.0, DURATION_S + 5.0, 0.001)
    p = idle + span * load_at(grid - delay)
    cum = np.concatenate([[0.0], np.cumsum(p[:-1] * 0.001)])
    return np.interp(t, grid, cum)


def write_session(folder: Path, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    (folder / "traces").mkdir(parents=True)
    meters = []
    for cid, (idle, span, delay, rate, counter, scope, source) in TRUE.items():
        t = np.arange(1.0, DURATION_S, 1.0 / rate) + rng.uniform(0, 0.01)
        e = energy_until(t, idle, span, delay)
        df = pd.DataFrame({"t_ns": (START_NS + t * 1e9).astype(np.int64), "rtt_ns": 100_000, "flag": ""})
        if counter:
            df["energy_j"] = e - e[0]
            df["power_w"] = np.nan
        else:  # the average over the second before the stamp
            df["power_w"] = (e - energy_until(t - 1.0, idle, span, delay)) / 1.0 + rng.normal(0, 0.2, t.size)
        df.to_csv(folder / "traces" / f"{cid}.csv", index=False)
        meters.append({"name": cid.split(".")[0], "kind": "synthetic", "channels": [{
            "id": cid, "scope": scope, "source": source, "quantities": ["energy_j", "power_w"],
            "window_s": None if counter else 1.0, "update_interval_s": 1.0 / rate,
            "energy_resolution_j": 1e-6 if counter else None, "primary": "energy_j" if counter else "power_w"}]})
    events = [{"t_ns": START_NS, "kind": "phase_start", "phase": "baseline-before"},
              {"t_ns": START_NS + int(18e9), "kind": "phase_end", "phase": "baseline-before"},
              {"t_ns": START_NS + int(20e9), "kind": "phase_start", "phase": "workload"},
              {"t_ns": START_NS + int(220e9), "kind": "phase_end", "phase": "workload"},
              {"t_ns": START_NS + int(221e9), "kind": "result", "accuracy": 0.5}]
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (folder / "session.json").write_text(json.dumps({
        "format": "calibrate-session/1", "status": "complete", "reference": "wall",
        "clock": {"start_ns": START_NS}, "meters": meters, "workload": {"name": "square-truth", "parameters": {}}}))


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("truth") / "s"
    write_session(folder)
    return folder


def test_lags_gains_offsets_and_energies_are_recovered(session: Path) -> None:
    data = load_session(session)
    s = summarize(data, window_s=10.0)
    assert s["reference"] == "wall"
    for cid in ("rapl.package-0", "gpu"):
        idle, span, delay, rate, *_ = TRUE[cid]
        assert s["lags"][cid]["lag_s"] == pytest.approx(delay, abs=1.0 / rate)  # within one sample period
        a = next(x for x in s["agreement"] if x["candidate"] == cid)
        cal = a["calibration"]
        gain = 180.0 / span  # wall = 95 + 180 L = 95 - gain * idle + gain * meter
        # a 2 Hz counter is interpolated linearly at window edges: where a load edge falls
        # inside a 0.5 s sample interval part of its energy lands in the neighbouring window,
        # which compresses the meter's window powers by about 1 % here (less at 10 Hz)
        assert cal["slope"] == pytest.approx(gain, rel=0.02)
        assert cal["intercept"] == pytest.approx(95.0 - gain * idle, abs=3.0)
        assert a["n_windows"] >= 15
    # energy of the workload phase (20..220 s) on the reference: exact integral of the truth
    truth_j = float(np.diff(energy_until(np.array([20.0, 220.0]), 95.0, 180.0, 0.0))[0])
    assert s["workload"]["energy_j"] == pytest.approx(truth_j, rel=0.01)
    # totals: the counter meters over their own span are exact
    t_rapl = data.channels["rapl.package-0"].ok["t_s"].to_numpy()
    e_truth = float(np.diff(energy_until(t_rapl[[0, -1]], 12.0, 95.0, 1.5))[0])
    assert s["meters"]["rapl.package-0"]["energy_j"] == pytest.approx(e_truth, rel=1e-6)
    assert s["meters"]["rapl.package-0"]["from_counter"] is True
    # idle from the baseline phase
    assert s["meters"]["wall"]["idle_power_w"] == pytest.approx(95.0, abs=0.5)
    assert s["meters"]["gpu"]["idle_power_w"] == pytest.approx(30.0, abs=0.5)
    assert s["workload"]["accuracy_per_kwh"] == pytest.approx(0.5 / (truth_j / 3.6e6), rel=0.01)


def test_a_sum_of_software_meters_is_one_candidate(session: Path) -> None:
    s = summarize(load_session(session), candidates=["rapl.package-0+gpu"], window_s=10.0)
    a = s["agreement"][0]
    assert a["components"] == ["rapl.package-0", "gpu"]
    # wall = 95 + 180 L; rapl + gpu = 42 + 215 L  ->  wall = (95 - 42 * 180/215) + 180/215 * sum
    assert a["calibration"]["slope"] == pytest.approx(180 / 215, rel=0.02)
    assert a["calibration"]["intercept"] == pytest.approx(95 - 42 * 180 / 215, abs=3.0)


def test_fit_and_correct_recover_the_wall_with_prediction_intervals(session: Path, tmp_path: Path) -> None:
    data = load_session(session)
    table = window_table(data, "wall", ["rapl.package-0", "gpu"], window_s=10.0)
    assert list(table.columns[:3]) == ["t0_s", "t1_s", "reference"]
    model = fit_calibration(table, ["rapl.package-0", "gpu"], window_s=10.0)
    model.save(tmp_path / "m.json")
    again = CalibrationModel.load(tmp_path / "m.json")
    # rapl and gpu are collinear here (one load drives both): only the prediction is identified
    pred = again.predict(table)
    assert np.max(np.abs(pred["predicted_w"] - table["reference"])) < 2.0
    res = correct_energy(again, table)
    assert res["reference_in_pi"] and abs(res["error_pct"]) < 0.5


def test_calibrate_cli_fit_correct_characterize_compare(session: Path, tmp_path: Path) -> None:
    from tests.conftest import run_cli

    model = tmp_path / "model.json"
    cp = run_cli("fit", str(session), "--candidate", "rapl.package-0", "--window", "10", "-o", str(model))
    assert cp.returncode == 0, cp.stderr
    m = json.loads(model.read_text())
    assert m["gains"]["rapl.package-0"] == pytest.approx(180 / 95, rel=0.02)
    cp = run_cli("correct", str(session), "--model", str(model), "--json")
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout)["reference_in_pi"] is True
    cp = run_cli("compare", str(session), str(session), "--json")
    assert cp.returncode == 0, cp.stderr
    rows = json.loads(cp.stdout)
    assert len(rows) == 2 and rows[0]["workload"] == "square-truth"
    bad = run_cli("fit", str(session), "--candidate", "nosuch")
    assert bad.returncode == 2 and "nosuch" in bad.stderr


def test_a_constant_candidate_gets_an_offset_not_a_gain() -> None:
    from analysis.summary import calibration_fit

    ref = np.array([100.0, 150.0, 120.0, 180.0])
    const = np.array([20.0, 20.001, 19.999, 20.0])  # a modelled constant, e.g. CodeCarbon's RAM
    cal = calibration_fit(ref, const)
    assert cal["slope"] is None and cal["intercept"] == pytest.approx(ref.mean() - const.mean())
    assert "no gain" in cal["note"]
    varying = calibration_fit(2.0 * ref + 5.0, ref)
    assert varying["slope"] == pytest.approx(2.0) and varying["intercept"] == pytest.approx(5.0)


def test_characterize_recovers_update_period_window_and_delay(tmp_path: Path) -> None:
    """A square-wave session with phase markers at the load edges: characterize each meter."""
    from tests.conftest import run_cli

    folder = tmp_path / "sq"
    write_session(folder)
    # mark every load edge as the calibration loads do (high / low phases)
    edges = [20.37 + 20.0 * k + d for k in range(11) for d in (0.0, 12.0) if 20.37 + 20.0 * k + d < 235]
    events = []
    for a, b in zip(edges, edges[1:]):
        name = "high" if round((a - 20.37) % 20.0, 6) == 0 else "low"
        events += [{"t_ns": START_NS + int(a * 1e9), "kind": "phase_start", "phase": name},
                   {"t_ns": START_NS + int(b * 1e9), "kind": "phase_end", "phase": name}]
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    cp = run_cli("characterize", str(folder), "--json")
    assert cp.returncode == 0, cp.stderr
    rows = {r["channel"]: r for r in json.loads(cp.stdout)}
    wall = rows["wall"]
    assert wall["update_period_s"] == pytest.approx(1.0, abs=0.05)
    # it averages the second before its stamp; sampled at 1 Hz with every edge at the same phase
    # of the sample grid (a 20 s period), the ramp is seen through two samples at most
    assert 0.5 <= wall["window_s"] <= 2.0
    assert wall["n_edges"] >= 10
    # the GPU meter follows the load 0.7 s early (negative delay in the truth), RAPL 1.5 s late
    for cid, delay in (("rapl.package-0", 1.5), ("gpu", -0.7)):  # a boxcar's lag = delay + window / 2
        r = rows[cid]
        assert r["delay_s"] + r["window_s"] / 2 == pytest.approx(delay, abs=0.3)
    assert rows["gpu"]["update_period_s"] == pytest.approx(0.5, abs=0.05)


def test_fit_of_a_cpu_model_gives_the_refitted_model(tmp_path: Path) -> None:
    """rapl.package-0 relabelled as a cpu-model (12 W + 95 W x load is idle 12, max 107 W):
    fitted to the wall (95 W + 180 W x load), the model to use is idle 95 W, max 275 W."""
    from analysis.calibration import refit_cpu_model
    from tests.conftest import run_cli

    folder = tmp_path / "s"
    write_session(folder)
    man = json.loads((folder / "session.json").read_text())
    meter = next(m for m in man["meters"] if m["channels"][0]["id"] == "rapl.package-0")
    meter["kind"] = "cpu-model"
    meter["channels"][0].update(source="modelled", info={"idle_w": 12.0, "max_w": 107.0})
    (folder / "session.json").write_text(json.dumps(man))
    cp = run_cli("fit", str(folder), "--candidate", "rapl.package-0", "--window", "10",
                 "-o", str(tmp_path / "m.json"))
    assert cp.returncode == 0, cp.stderr
    line = next(x for x in cp.stdout.splitlines() if "cpu-model?idle=" in x)
    idle, top = (float(v) for v in line.split("cpu-model?idle=")[1].split(" ")[0].split("&max="))
    assert idle == pytest.approx(95.0, abs=3.0) and top == pytest.approx(275.0, rel=0.02)
    exact = CalibrationModel("wall", ["c"], 50.0, {"c": 1.5}, [[0.0, 0.0], [0.0, 0.0]], 1.0, 10, 12, 10.0)
    assert refit_cpu_model(exact, 10.0, 65.0) == (65.0, 147.5)
    cp = run_cli("fit", str(folder), "--candidate", "gpu", "--window", "10", "-o", str(tmp_path / "g.json"))
    assert cp.returncode == 0 and "cpu-model?" not in cp.stdout  # only for a utilisation model
