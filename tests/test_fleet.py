"""Fleet calibration on synthetic nodes with known truth: the prediction interval's
coverage is checked by simulation, and the checks fire when they should."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.fleet import calibrate_node, eehpc_sample, fit_fleet, nodes_needed, predict_energy


def make_node(rng, a, b, sigma, n=120, lo=100.0, hi=400.0):
    x = rng.uniform(lo, hi, n)
    return x, a + b * x + rng.normal(0, sigma, n)


def trial(rng, k, tau_a=6.0, tau_b=0.03, sigma=4.0, level=0.95):
    a0, b0 = 40.0, 1.08
    cals = []
    for i in range(k):
        a, b = a0 + rng.normal(0, tau_a), b0 + rng.normal(0, tau_b)
        x, y = make_node(rng, a, b, sigma)
        cals.append(calibrate_node(f"n{i}", x, y))
    model = fit_fleet("gpu", cals)
    a, b = a0 + rng.normal(0, tau_a), b0 + rng.normal(0, tau_b)  # the unmetered node
    x = 150 + 200 * (rng.uniform(0, 1, 300) > 0.5) + rng.normal(0, 5, 300)
    dt = 2.0
    truth = float(((a + b * x + rng.normal(0, sigma, x.size)) * dt).sum())
    return predict_energy(model, "new", x, dt, level=level), truth


@pytest.mark.parametrize("k", [3, 6])
def test_prediction_interval_covers_the_truth_at_its_level(k) -> None:
    rng = np.random.default_rng(7 + k)
    hits, widths = [], []
    for _ in range(600):
        p, truth = trial(rng, k)
        hits.append(p.lo_j <= truth <= p.hi_j)
        widths.append(p.half_width_fraction)
        assert not p.unlike_type or "unlike_type" in [c.code for c in p.caveats]
    cover = float(np.mean(hits))
    # nominal 95 %; the spread term is conservative (it holds each line's own noise)
    assert 0.93 <= cover <= 0.995, cover
    assert 0 < np.median(widths) < 0.2
    if k == 6:
        assert np.median(widths) < 0.08


def test_interval_narrows_with_more_nodes_and_coverage_holds_without_spread() -> None:
    rng = np.random.default_rng(3)
    w3 = np.median([trial(rng, 3)[0].half_width_fraction for _ in range(100)])
    w8 = np.median([trial(rng, 8)[0].half_width_fraction for _ in range(100)])
    assert w8 < 0.6 * w3
    hits = []
    for _ in range(300):
        p, truth = trial(rng, 4, tau_a=0.0, tau_b=0.0)
        hits.append(p.lo_j <= truth <= p.hi_j)
    assert np.mean(hits) >= 0.95


def test_one_node_gives_no_interval_and_says_why() -> None:
    rng = np.random.default_rng(1)
    x, y = make_node(rng, 30, 1.1, 3)
    model = fit_fleet("cpu", [calibrate_node("n0", x, y)])
    p = predict_energy(model, "n9", np.full(100, 250.0), 1.0)
    assert p.lo_j is None and p.hi_j is None and p.half_width_fraction is None
    assert p.energy_j == pytest.approx((30 + 1.1 * 250) * 100, rel=0.01)
    assert "one_node" in p.to_dict()["warning_codes"]


def test_out_of_range_and_unlike_type_are_flagged() -> None:
    rng = np.random.default_rng(5)
    cals = [calibrate_node(f"n{i}", *make_node(rng, 40 + rng.normal(0, 2), 1.05, 3)) for i in range(5)]
    model = fit_fleet("gpu", cals, nodes_total=64)
    ok = predict_energy(model, "fine", rng.uniform(100, 400, 200), 1.0)
    assert ok.out_of_range_fraction < 0.05 and not ok.unlike_type and "out_of_range" not in ok.to_dict()["warning_codes"]
    far = predict_energy(model, "hot", rng.uniform(500, 700, 200), 1.0)
    assert far.out_of_range_fraction > 0.9 and "out_of_range" in far.to_dict()["warning_codes"]
    doubled = predict_energy(model, "doubled", 2 * rng.uniform(100, 400, 200), 1.0)  # a doubled BMC reading
    assert doubled.unlike_type and "unlike_type" in doubled.to_dict()["warning_codes"]
    d = model.to_dict()
    assert d["k"] == 5 and d["fraction_measured"] == pytest.approx(5 / 64)
    assert d["slope_mean"] == pytest.approx(1.05, abs=0.02) and len(model.to_frame()) == 5


def test_bad_calibration_input_is_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match="constant"):
        calibrate_node("n0", np.full(20, 100.0), np.arange(20.0))
    with pytest.raises(ValueError, match="at least 3"):
        calibrate_node("n0", [1.0, np.nan], [2.0, 3.0])
    rng = np.random.default_rng(0)
    c = calibrate_node("n0", *make_node(rng, 1, 1, 1))
    with pytest.raises(ValueError, match="twice"):
        fit_fleet("t", [c, c])
    with pytest.raises(ValueError, match="no usable"):
        predict_energy(fit_fleet("t", [c]), "x", [np.nan], 1.0)


def test_eehpc_sampling_rules() -> None:
    # level 1: max(2 kW, 10 %, 15 nodes)
    assert eehpc_sample(1000, 500.0, 1).nodes == 100
    assert eehpc_sample(100, 500.0, 1).nodes == 15
    assert eehpc_sample(100, 50.0, 1).nodes == 40  # 2 kW of 50 W nodes
    assert eehpc_sample(10, 500.0, 1).nodes == 10  # smaller than the rule: all of it
    # level 2: max(1/8, 10 kW)
    assert eehpc_sample(800, 500.0, 2).nodes == 100
    assert eehpc_sample(80, 500.0, 2).nodes == 20
    assert eehpc_sample(80, 500.0, 3).nodes == 80
    with pytest.raises(ValueError):
        eehpc_sample(10, 500.0, 4)


def test_nodes_needed_matches_the_interval_formula() -> None:
    k = nodes_needed(0.05, 0.12)
    from scipy import stats
    half = lambda k: stats.t.ppf(0.975, k - 1) * 0.05 * np.sqrt(1 + 1 / k)  # noqa: E731
    assert k is not None and half(k) <= 0.12 < half(k - 1)
    assert nodes_needed(0.5, 0.01, max_k=50) is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=0, max_size=40),
       st.floats(allow_nan=True, allow_infinity=True))
def test_hostile_arrays_give_a_result_or_a_value_error(xs, dt) -> None:
    rng = np.random.default_rng(0)
    model = fit_fleet("t", [calibrate_node(f"n{i}", *make_node(rng, 10, 1, 1)) for i in range(3)])
    try:
        p = predict_energy(model, "x", xs, dt)
    except ValueError:
        return
    assert np.isfinite(p.energy_j) or not np.isfinite(p.candidate_energy_j)
