"""Defects found by trying the analysis commands as a new user and as an attacker:
characterize on recorded square sessions, fit/correct semantics and warnings, the
calibration-model loader, denormal data, import trace specs, CSV formula cells."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from calibrate.cli import main


def cli(*args: str) -> tuple[int, str, str]:
    """``calibrate ARGS`` in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in args])
    return rc, out.getvalue(), err.getvalue()


def one_line_error(rc: int, err: str) -> None:
    assert rc == 2, err
    lines = [x for x in err.splitlines() if x.strip() and "Warning" not in x and not x.startswith("  ")]
    assert len(lines) == 1 and lines[0].startswith("calibrate: error:"), err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def square(tmp_path_factory) -> Path:
    """A session recorded by `calibrate run --workload square` (sim wall meter + cpu-model)."""
    from tests.conftest import run_cli

    out = tmp_path_factory.mktemp("sq") / "s"
    cp = run_cli("run", "--meter", "sim:wattsup?signal=square:80,160@4", "--meter", "cpu-model",
                 "--workload", "square", "-p", "period_s=4", "--duration", "16", "--baseline", "3",
                 "--out", str(out), "-q", timeout=180)
    assert cp.returncode == 0, cp.stderr
    return out


# --------------------------------------------------------------------------- 1. characterize
def test_characterize_a_recorded_square_session(square: Path, tmp_path: Path) -> None:
    """The phase markers as `calibrate run --workload square` stamps them (a phase's end and
    the next start 0.1-0.4 ms apart); the cpu-model trace is replaced by one that follows
    those phases exactly (high 80 W, low 20 W), since the real one depends on how busy this
    machine's CPUs are."""
    import shutil

    import pandas as pd

    from analysis.load import load_session

    folder = tmp_path / "s"
    shutil.copytree(square, folder)
    data = load_session(folder)
    phases = [(n, a, b) for n, a, b in data.phases() if n in ("high", "low")]
    assert len(phases) >= 6
    gaps = [b2[1] - a2[2] for a2, b2 in zip(phases, phases[1:])]
    assert all(0 < g < 0.01 for g in gaps)  # two stamps per edge, as recorded
    f = folder / "traces" / "cpu-model.csv"
    tr = pd.read_csv(f)
    t = (tr["t_ns"].to_numpy() - data.start_ns) / 1e9
    high = np.zeros(t.size, bool)
    for n, a, b in phases:
        high |= (n == "high") & (t >= a) & (t < b)
    tr["power_w"] = np.where(high, 80.0, 20.0) + np.random.default_rng(0).normal(0, 0.3, t.size)
    tr["energy_j"] = np.concatenate([[0.0], np.cumsum(tr["power_w"].to_numpy()[1:] * np.diff(t))])
    tr.to_csv(f, index=False)
    rc, out, err = cli("characterize", folder, "--json")
    assert rc == 0, err
    rows = {r["channel"]: r for r in json.loads(out)}
    cpu = rows["cpu-model"]
    assert "error" not in cpu, cpu
    assert cpu["n_edges"] >= 5
    assert cpu["update_period_s"] == pytest.approx(0.5, abs=0.1)
    # the wall simulator updates every second: 2 s between edges is too close, and the hint
    # names the half-period, not the period
    assert "half-period" in rows["wattsup"]["error"]


def test_edges_a_fraction_of_a_millisecond_apart_are_one_edge() -> None:
    from analysis.characterize import characterize, merge_edges

    assert merge_edges(np.array([2.0, 1.0, 1.0003, 3.0, 2.0001])).tolist() == pytest.approx([1.00015, 2.00005, 3.0])
    t = np.arange(0.0, 40.0, 0.1)
    p = np.where((t % 8.0) < 4.0, 50.0, 150.0) + np.random.default_rng(1).normal(0, 0.5, t.size)
    edges = np.array([e + d for e in np.arange(4.0, 40.0, 4.0) for d in (0.0, 0.0003)])  # end + next start
    c = characterize(t, p, edges_s=edges)
    assert c.n_edges >= 8


# --------------------------------------------------------------------------- 5. denormals
@pytest.mark.parametrize("scale", [1e-320, 1e-160, 1e-140])
def test_denormal_or_tiny_values_do_not_crash_agree(tmp_path: Path, scale: float) -> None:
    rng = np.random.default_rng(3)
    ref = rng.uniform(1, 5, 20) * scale
    cand = ref * 1.1 + rng.uniform(0, 1, 20) * scale
    f = tmp_path / "d.csv"
    f.write_text("ref,cand\n" + "".join(f"{float(a)!r},{float(b)!r}\n" for a, b in zip(ref, cand)))
    for method in ("ols", "deming", "passing-bablok"):
        rc, out, err = cli("agree", f, "--reference", "ref", "--candidate", "cand", "--method", method, "--json")
        if rc == 2:
            one_line_error(rc, err)
            assert "spread" in err or "undefined" in err
        else:
            assert rc == 0, err
            json.loads(out)


def test_lin_ccc_of_tiny_spreads_is_not_a_zero_division() -> None:
    from analysis.agreement import agreement, lin_ccc

    x = np.array([1.0, 2.0, 3.0, 4.0, 5.5]) * 1e-140
    y = np.array([1.1, 2.3, 2.9, 4.2, 5.0]) * 1e-134
    c = lin_ccc(x, y)
    assert math.isfinite(c["value"])
    with pytest.raises(ValueError, match="spread"):
        agreement(np.array([1.0, 2.0, 3.0]) * 1e-320, np.array([1.0, 2.5, 3.0]) * 1e-320)


def test_ratio_bland_altman_out_of_range_is_unavailable_not_overflow() -> None:
    from analysis.agreement import agreement

    ref = np.array([1.0, 2.0, 3.0, 4.0]) * 1e-153
    cand = np.array([1.0, 3.0, 2.0, 5.0]) * 1e153  # log ratios ~705: exp() overflows
    res = agreement(ref, cand)
    assert res["bland_altman"]["ratio"] is None


# --------------------------------------------------------------------------- 2. fit a+b
@pytest.fixture(scope="module")
def truth(tmp_path_factory) -> Path:
    from tests.test_analysis_pipeline import write_session

    folder = tmp_path_factory.mktemp("truth") / "s"
    write_session(folder)
    return folder


def test_fit_of_a_sum_is_one_gain_on_the_sum_as_report_does(truth: Path, tmp_path: Path) -> None:
    model = tmp_path / "m.json"
    rc, out, err = cli("fit", truth, "--candidate", "rapl.package-0+gpu", "--window", "10", "-o", model)
    assert rc == 0, err
    m = json.loads(model.read_text())
    assert m["combine"] == "sum" and list(m["gains"]) == ["rapl.package-0+gpu"]
    # wall = 95 + 180 L; rapl + gpu = 42 + 215 L (tests/test_analysis_pipeline.py)
    assert m["gains"]["rapl.package-0+gpu"] == pytest.approx(180 / 215, rel=0.02)
    rc, out, err = cli("correct", truth, "--model", model, "--json")
    assert rc == 0, err
    assert json.loads(out)["workload"]["reference_in_pi"] is True


def test_fit_per_component_only_when_asked_and_says_the_collinearity(truth: Path, tmp_path: Path) -> None:
    model = tmp_path / "m.json"
    rc, out, err = cli("fit", truth, "--candidate", "rapl.package-0+gpu", "--window", "10", "--per-component",
                       "-o", model)
    assert rc == 0, err
    m = json.loads(model.read_text())
    assert m["combine"] == "per-component" and set(m["gains"]) == {"rapl.package-0", "gpu"}
    assert "collinearity" in out and "condition number" in out
    assert m["collinearity"]["correlation"]["rapl.package-0~gpu"] > 0.99  # one load drives both
    assert any("collinear" in w for w in m["warnings"])
    assert "warning:" in out and "per parameter" in out  # 20 windows for 3 parameters


# --------------------------------------------------------------------------- 3. correct
def test_correct_gives_the_whole_workload_and_its_phases(square: Path, tmp_path: Path) -> None:
    model = tmp_path / "m.json"
    rc, out, err = cli("fit", square, "--candidate", "cpu-model", "-o", model)
    assert rc == 0, err
    rc, out, err = cli("correct", square, "--model", model, "--json")
    assert rc == 0, err
    res = json.loads(out)
    wl = res["workload"]
    assert wl["energy_j"] is not None, res["warnings"]
    assert wl["phase"] == "workload" and wl["duration_s"] == pytest.approx(16.0, abs=1.5)
    from analysis.load import load_session

    _, a, b = next(ph for ph in load_session(square).phases() if ph[0] == "workload")
    assert (wl["t0_s"], wl["t1_s"]) == pytest.approx((a, b))  # the whole phase, not its complete windows
    lo, hi = wl["pi_j"]
    assert lo < wl["energy_j"] < hi and wl["reference_in_pi"] is True
    assert {p["phase"] for p in res["phases"]} == {"high", "low"}
    assert isinstance(res["warnings"], list) and not any("differs" in w for w in res["warnings"])
    rc, text, err = cli("correct", square, "--model", model)
    assert rc == 0 and "energy of the workload" in text


def test_correct_warns_when_the_session_is_not_the_models(square: Path, tmp_path: Path) -> None:
    import shutil

    model = tmp_path / "m.json"
    assert cli("fit", square, "--candidate", "cpu-model", "-o", model)[0] == 0
    other = tmp_path / "other"
    shutil.copytree(square, other)
    man = json.loads((other / "session.json").read_text())
    man["host"]["hostname"] = "another-host"
    man["workload"]["name"] = "vgg16"
    for m in man["meters"]:
        if m["name"] == "wattsup":
            m["kind"] = "sdm120"
    (other / "session.json").write_text(json.dumps(man))
    rc, out, err = cli("correct", other, "--model", model, "--json")
    assert rc == 0, err
    w = " | ".join(json.loads(out)["warnings"])
    assert "host differs" in w and "another-host" in w
    assert "workload differs" in w and "vgg16" in w
    assert "reference meter kind differs" in w and "sdm120" in w
    rc, text, err = cli("correct", other, "--model", model)
    assert rc == 0 and "warning: host differs" in text


# --------------------------------------------------------------------------- 4. model files
def _good_model(tmp_path: Path) -> dict:
    return {"format": "calibrate-model/1", "reference": "wall", "components": ["rapl.package-0"],
            "intercept_w": 60.0, "gains": {"rapl.package-0": 1.8}, "cov": [[1.0, -0.01], [-0.01, 0.001]],
            "residual_sd_w": 2.0, "dof": 18, "n_windows": 20, "window_s": 10.0}


BAD_MODELS = {
    "a list": [1, 2],
    "null": None,
    "missing gains": {"drop": "gains"},
    "gains a list": {"gains": [1.8]},
    "gain a string": {"gains": {"rapl.package-0": "1.8"}},
    "NaN gain": {"gains": {"rapl.package-0": float("nan")}},
    "inf intercept": {"intercept_w": float("inf")},
    "NaN covariance": {"cov": [[float("nan"), 0.0], [0.0, 1.0]]},
    "negative variance": {"cov": [[-1.0, 0.0], [0.0, 1.0]]},
    "not PSD": {"cov": [[1.0, 5.0], [5.0, 1.0]]},
    "wrong shape": {"cov": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]},
    "dof 0": {"dof": 0},
    "dof negative": {"dof": -3},
    "tiny window": {"window_s": 1e-9},
    "unknown key": {"extra": 1},
    "bool dof": {"dof": True},
    "gain for another channel": {"gains": {"gpu": 1.0}},
}


@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_bad_model_files_are_one_line_exit_2(truth: Path, tmp_path: Path, case: str) -> None:
    change = BAD_MODELS[case]
    if isinstance(change, dict):
        raw = _good_model(tmp_path)
        if "drop" in change:
            raw.pop(change["drop"])
        else:
            raw.update(change)
    else:
        raw = change
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(raw))  # NaN/Infinity written as the JSON extensions Python reads back
    rc, out, err = cli("correct", truth, "--model", f)
    one_line_error(rc, err)
    assert str(f) in err
    assert "NaN" not in out and "Infinity" not in out


def test_a_good_model_file_loads_and_correct_json_is_strict(truth: Path, tmp_path: Path) -> None:
    f = tmp_path / "good.json"
    f.write_text(json.dumps(_good_model(tmp_path)))
    rc, out, err = cli("correct", truth, "--model", f, "--json")
    assert rc == 0, err
    json.loads(out, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))


def test_a_window_that_would_cut_too_many_windows_is_refused(truth: Path, tmp_path: Path) -> None:
    f = tmp_path / "good.json"
    f.write_text(json.dumps(_good_model(tmp_path)))
    one_line_error(*cli("correct", truth, "--model", f, "--window", "1e-6")[::2])


# --------------------------------------------------------------------------- 6. import / compare
def _two_column_csv(path: Path) -> Path:
    t = 1.7e9 + np.arange(200.0)
    load = ((np.arange(200) // 10) % 2).astype(float)
    rows = [f"{float(a)!r},{float(100 + 50 * x)!r},{float(20 + 30 * x + 0.1 * (i % 3))!r}\n" for i, (a, x) in enumerate(zip(t, load))]
    path.write_text("timestamp,wall_w,tool_w\n" + "".join(rows))
    return path


def test_import_per_trace_power_columns_scopes_and_modelled(tmp_path: Path) -> None:
    f = _two_column_csv(tmp_path / "both.csv")
    rc, out, err = cli("import", "--trace", f"wall={f}@wall:wall_w", "--trace", f"tool={f}@package/modelled:tool_w",
                       "--reference", "wall", "--out", tmp_path / "s")
    assert rc == 0, err
    assert "identical" not in out
    man = json.loads((tmp_path / "s" / "session.json").read_text())
    ch = {m["channels"][0]["id"]: m["channels"][0] for m in man["meters"]}
    assert ch["wall"]["scope"] == "wall" and ch["tool"]["source"] == "modelled" and ch["wall"]["source"] == "measured"
    from analysis.load import load_session

    d = load_session(tmp_path / "s")
    assert d.channels["wall"].ok["power_w"].iloc[10] == 150.0 and d.channels["tool"].ok["power_w"].iloc[10] != 150.0
    rc, out, err = cli("import", "--trace", f"wall={f}@wall:wall_w", "--trace", f"tool={f}@package:tool_w",
                       "--modelled", "tool", "--out", tmp_path / "s2")
    assert rc == 0, err
    man = json.loads((tmp_path / "s2" / "session.json").read_text())
    assert {m["name"]: m["channels"][0]["source"] for m in man["meters"]}["tool"] == "modelled"


def test_import_warns_when_two_traces_are_identical(tmp_path: Path) -> None:
    f = _two_column_csv(tmp_path / "both.csv")
    rc, out, err = cli("import", "--trace", f"wall={f}@wall:wall_w", "--trace", f"tool={f}@package:wall_w",
                       "--out", tmp_path / "s")
    assert rc == 0, err
    assert "warning: traces wall and tool have identical readings" in out


@pytest.mark.parametrize("spec", ["wall={f}@walll", "wall={f}@wall/guessed", "wall={f}@wall:", "wall=@wall"])
def test_import_rejects_unknown_scopes_and_sources(tmp_path: Path, spec: str) -> None:
    f = tmp_path / "w.csv"
    f.write_text("timestamp,power_w\n" + "".join(f"{1.7e9 + i},{100 + i % 7}\n" for i in range(50)))
    assert cli("import", "--trace", f"wall={f}@wall", "--out", tmp_path / "ok")[0] == 0
    one_line_error(*cli("import", "--trace", spec.format(f=f), "--out", tmp_path / "s")[::2])


def test_compare_csv_cells_cannot_be_formulas(truth: Path, tmp_path: Path) -> None:
    import shutil

    evil = tmp_path / '=HYPERLINK("evil.example","y")'
    shutil.copytree(truth, evil)
    out = tmp_path / "x.csv"
    rc, _, err = cli("compare", evil, "-o", out)
    assert rc == 0, err
    import csv

    rows = list(csv.reader(out.open()))
    cell = rows[1][rows[0].index("session")]
    assert cell.startswith("'=HYPERLINK")
    assert not any(c[:1] in "=+-@" for r in rows for c in r if c and not _is_number(c))


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


# --------------------------------------------------------------------------- 7. fuzz
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4), max_leaves=12)
_model_keys = list(_good_model(Path(".")))


def _outcome_ok(rc: int, err: str) -> None:
    assert "Traceback" not in err
    if rc != 0:
        one_line_error(rc, err)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(key=st.sampled_from(_model_keys + ["cov.0", "gains.x", "whole"]), value=_json_values)
def test_fuzz_model_loader(truth: Path, tmp_path_factory, key: str, value) -> None:
    raw = _good_model(Path("."))
    if key == "whole":
        raw = value
    elif key == "cov.0":
        raw["cov"][0] = value
    elif key == "gains.x":
        raw["gains"]["rapl.package-0"] = value
    else:
        raw[key] = value
    f = tmp_path_factory.mktemp("fz") / "m.json"
    f.write_text(json.dumps(raw))
    rc, out, err = cli("correct", truth, "--model", f, "--json")
    _outcome_ok(rc, err)
    if rc == 0:
        json.loads(out, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))


_cells = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers().map(str),
                   st.sampled_from(["", "x", "1e-320", "5e-324", "nan", "-0", "1e308", '"', ",", "#"]))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=st.lists(st.tuples(_cells, _cells), min_size=0, max_size=30), header=st.booleans())
def test_fuzz_agree_csv(tmp_path_factory, rows, header: bool) -> None:
    f = tmp_path_factory.mktemp("fa") / "d.csv"
    f.write_text(("ref,cand\n" if header else "") + "".join(f"{a},{b}\n" for a, b in rows))
    rc, out, err = cli("agree", f, "--reference", "ref", "--candidate", "cand", "--json")
    _outcome_ok(rc, err)
    if rc == 0:
        json.loads(out)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=st.lists(st.tuples(_cells, _cells), min_size=0, max_size=30))
def test_fuzz_import_csv(tmp_path_factory, rows) -> None:
    d = tmp_path_factory.mktemp("fi")
    f = d / "t.csv"
    f.write_text("timestamp,power_w\n" + "".join(f"{a},{b}\n" for a, b in rows))
    good = _two_column_csv(d / "good.csv")
    rc, out, err = cli("import", "--trace", f"wall={good}@wall:wall_w", "--trace", f"tool={f}@package",
                       "--reference", "wall", "--out", d / "s", "--report")
    _outcome_ok(rc, err)
