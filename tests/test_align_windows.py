"""Common windows and window/phase energies against analytic integrals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.windows import (
    choose_window_s,
    common_coverage,
    common_windows,
    dynamic_energy,
    free_spans,
    mean_power_w,
    span_energy,
    window_energies,
)


def energy(t: np.ndarray) -> np.ndarray:
    """Analytic cumulative energy (J) of P(t) = 200 + 50 sin(t / 7) W, plus an origin."""
    return 1234.0 + 200.0 * t - 350.0 * np.cos(t / 7.0)


def test_choose_window() -> None:
    assert choose_window_s([1.0, 0.1, None], [1.0, None]) == pytest.approx(10.0)
    assert choose_window_s([0.1], [5.0]) == pytest.approx(25.0)  # a slow-averaging meter
    assert choose_window_s([0.01], []) == pytest.approx(1.0)  # at least 1 s
    assert choose_window_s([1.0], [1.0], override_s=60.0) == 60.0
    with pytest.raises(ValueError):
        choose_window_s([1.0], [], override_s=-3.0)
    with pytest.raises(ValueError):
        choose_window_s([float("nan")], [])


def test_counter_energy_matches_integral() -> None:
    t = np.arange(0.0, 600.0, 0.37)
    edges = np.arange(10.0, 590.0, 10.0)
    got = window_energies(edges, t, energy_j=energy(t))
    want = np.diff(energy(edges))
    # linear interpolation of the counter errs by at most max|P'| dt^2 / 8 per edge
    bound = 2 * (50.0 / 7.0) * 0.37**2 / 8
    np.testing.assert_allclose(got, want, rtol=0, atol=bound)
    assert np.max(np.abs(got - want)) > bound / 20  # (and the bound is not vacuous)
    # the same windows as (t0, t1) pairs
    pairs = np.column_stack([edges[:-1], edges[1:]])
    np.testing.assert_allclose(window_energies(pairs, t, energy_j=energy(t)), got)


def test_power_energy_matches_integral() -> None:
    # a meter reporting the mean power over the last second, at the end of each second
    t = np.arange(1.0, 600.0, 1.0)
    p = energy(t) - energy(t - 1.0)
    edges = np.arange(10.0, 590.0, 20.0)
    want = np.diff(energy(edges))
    got = window_energies(edges, t, power_w=p, power_window_s=1.0)
    np.testing.assert_allclose(got, want, rtol=1e-12)  # exact: whole samples per window
    # without the window the samples are taken as centred on their stamps: off by a shift
    off = window_energies(edges, t, power_w=p)
    assert np.max(np.abs(off - want)) > 1.0
    # sub-sample edges: exact within the power's variation over half a second
    edges2 = edges + 0.3
    got2 = window_energies(edges2, t, power_w=p, power_window_s=1.0)
    np.testing.assert_allclose(got2, np.diff(energy(edges2)), atol=2 * 50.0 / 7.0 * 1.0)


def test_nan_outside_and_across_gaps() -> None:
    t = np.arange(0.0, 300.0, 1.0)
    keep = (t < 100.0) | (t >= 160.0)
    t = t[keep]
    e = energy(t)
    p = np.full(t.size, 200.0)
    edges = np.arange(-20.0, 330.0, 20.0)  # starts before and ends after the trace
    for kw in ({"energy_j": e}, {"power_w": p}):
        out = window_energies(edges, t, **kw)
        lo = edges[:-1]
        hi = edges[1:]
        bad = (lo < 0.0) | (hi > 299.0) | ((lo < 160.0) & (hi > 99.0))
        assert np.all(np.isnan(out[bad])), kw
        assert np.all(np.isfinite(out[~bad])), kw
    # a counter reset (meter reconnected, new origin) also breaks windows
    e2 = energy(np.arange(0.0, 100.0, 1.0))
    e2[50:] -= 5e4
    out = window_energies(
        np.array([0.0, 20.0, 40.0, 60.0, 80.0]), np.arange(0.0, 100.0, 1.0), energy_j=e2
    )
    assert np.isfinite(out[[0, 1, 3]]).all() and np.isnan(out[2])


def test_coarse_counter_uses_power() -> None:
    t = np.arange(0.0, 3600.0, 1.0)
    coarse = np.floor(energy(t) / 36000.0) * 36000.0
    p = energy(t) - energy(t - 1.0)
    edges = np.arange(60.0, 3540.0, 60.0)
    out = window_energies(
        edges, t, energy_j=coarse, power_w=p, power_window_s=1.0, energy_resolution_j=36000.0
    )
    np.testing.assert_allclose(out, np.diff(energy(edges)), rtol=1e-9)
    # no resolution given: the counter is trusted (and here visibly coarse)
    raw = window_energies(edges, t, energy_j=coarse, power_w=p)
    assert np.max(np.abs(raw - np.diff(energy(edges)))) > 1000.0


def test_common_windows_skip_and_trim() -> None:
    w = common_windows(0.0, 100.0, 10.0)
    assert w.shape == (10, 2) and w[0, 0] == 0.0 and w[-1, 1] == 100.0
    w = common_windows(0.0, 100.0, 10.0, exclude=[(25.0, 31.0)], trim_s=5.0, boundaries_s=[60.0])
    # [0,25) -> 2 windows, [31,60) -> 2, [65,100) -> 3
    np.testing.assert_allclose(w[:, 0], [0.0, 10.0, 31.0, 41.0, 65.0, 75.0, 85.0])
    assert np.all(np.diff(w, axis=1) == 10.0)
    for a, b in w:
        assert not (a < 31.0 and b > 25.0) and not (a < 65.0 and b > 60.0)
    assert common_windows(0.0, 5.0, 10.0).shape == (0, 2)
    with pytest.raises(ValueError):
        common_windows(0.0, 100.0, 0.0)
    with pytest.raises(ValueError):
        common_windows(0.0, 100.0, 10.0, exclude=[(5.0, 1.0)])


def test_common_coverage() -> None:
    a = np.arange(0.0, 100.0, 1.0)
    b = np.concatenate([np.arange(5.0, 40.0, 0.5), np.arange(60.0, 120.0, 0.5)])
    start, end, gaps = common_coverage([a, b])
    assert (start, end) == (5.0, 99.0)
    np.testing.assert_allclose(gaps, [[39.5, 60.0]])
    win = common_windows(start, end, 10.0, exclude=gaps)
    for kw_t, kw in ((a, {"energy_j": energy(a)}), (b, {"energy_j": energy(b)})):
        assert np.isfinite(window_energies(win, kw_t, **kw)).all()


def test_common_coverage_of_known_gaps() -> None:
    # a channel that knows its gaps (a disconnection shorter than the silence rule sees)
    a = np.arange(0.0, 100.0, 1.0)
    start, end, gaps = common_coverage([a, a + 2.0], gaps=[[(50.0, 51.0)], None])
    assert (start, end) == (2.0, 99.0)
    np.testing.assert_allclose(gaps, [[50.0, 51.0]])
    with pytest.raises(ValueError):
        common_coverage([a], gaps=[None, None])


def test_phase_and_dynamic_energies() -> None:
    t = np.arange(0.0, 500.0, 0.5)
    phases = [
        ("idle", 10.0, 60.0),
        ("epoch-1", 100.0, 200.0),
        ("epoch-2", 200.0, 320.0),
        ("idle", 400.0, 450.0),
    ]
    # energy per phase name (a name given several times sums its spans) and its duration
    e: dict[str, float] = {}
    dur: dict[str, float] = {}
    for name, a, b in phases:
        v, covered = span_energy((a, b), t, energy_j=energy(t), complete=1.0)
        assert covered == pytest.approx(b - a)
        e[name] = e.get(name, 0.0) + v
        dur[name] = dur.get(name, 0.0) + (b - a)
    assert e["epoch-1"] == pytest.approx(float(energy(200.0) - energy(100.0)), rel=1e-6)
    idle_want = float(energy(60.0) - energy(10.0) + energy(450.0) - energy(400.0))
    assert e["idle"] == pytest.approx(idle_want, rel=1e-6)
    p_idle = mean_power_w([(10.0, 60.0), (400.0, 450.0)], t, energy_j=energy(t))
    assert p_idle == pytest.approx(idle_want / 100.0, rel=1e-6)
    dyn = {name: dynamic_energy(e[name], dur[name], p_idle) for name in e}
    assert dyn["epoch-2"] == pytest.approx(e["epoch-2"] - p_idle * 120.0)
    assert dyn["idle"] == pytest.approx(0.0, abs=1e-6)
    # a phase outside the trace is NaN, not zero
    late, covered = span_energy((490.0, 600.0), t, energy_j=energy(t), complete=1.0)
    assert math.isnan(late) and covered == pytest.approx(9.5)
    with pytest.raises(ValueError):
        dynamic_energy(e["epoch-2"], 120.0, float("nan"))


def test_span_energy_counts_only_measured_seconds() -> None:
    t = np.arange(0.0, 300.0, 1.0)
    t = t[(t < 100.0) | (t >= 160.0)]  # a gap (99, 160)
    for kw in ({"energy_j": energy(t)}, {"power_w": energy(t + 0.5) - energy(t - 0.5)}):
        # clipped to the trace's coverage and split around the gap, not NaN for them
        got, covered = span_energy((50.0, 350.0), t, **kw)
        parts = free_spans(50.0, 299.0, [(99.0, 160.0)])
        assert parts == [(50.0, 99.0), (160.0, 299.0)] and covered == pytest.approx(49.0 + 139.0)
        want = sum(float(energy(b) - energy(a)) for a, b in parts)
        assert got == pytest.approx(want, rel=1e-3), kw
        # the same with the coverage given, and its mean power over several spans
        cov = common_coverage([t])
        assert span_energy((50.0, 350.0), t, coverage=cov, **kw) == (got, covered)
        p = mean_power_w([(50.0, 350.0), (-10.0, 20.0)], t, **kw)
        e20, c20 = span_energy((-10.0, 20.0), t, **kw)
        assert c20 == pytest.approx(20.0)
        assert p == pytest.approx((got + e20) / (covered + c20))
        # asked for a complete span: NaN energy, the measured seconds still said
        e_c, c_c = span_energy((50.0, 200.0), t, complete=0.99, **kw)
        assert math.isnan(e_c) and c_c == pytest.approx(49.0 + 40.0)
    # nothing measured: NaN energy, 0 s; a trace under 2 samples measures nothing
    e0, c0 = span_energy((120.0, 150.0), t, energy_j=energy(t))
    assert math.isnan(e0) and c0 == 0.0
    assert math.isnan(span_energy((0.0, 1.0), t[:1], energy_j=energy(t[:1]))[0])
    assert math.isnan(mean_power_w([(120.0, 150.0)], t, energy_j=energy(t)))
    assert math.isnan(mean_power_w([], t, energy_j=energy(t)))


def test_partial_coverage_option() -> None:
    t = np.arange(0.5, 100.0, 1.0)
    p = np.full(t.size, 100.0)
    p[30] = np.nan  # one failed read
    edges = np.array([0.0, 20.0, 40.0, 60.0])
    strict = window_energies(edges, t, power_w=p)
    assert np.isnan(strict[1]) and strict[0] == pytest.approx(2000.0)
    lenient = window_energies(edges, t, power_w=p, min_coverage=0.9)
    np.testing.assert_allclose(lenient, [2000.0, 2000.0, 2000.0])
