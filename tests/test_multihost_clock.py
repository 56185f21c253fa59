"""The clock fit of a multi-host session: offset and drift from four-timestamp probes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.clock_sync import ClockFit, Probe, fit_clock, min_rtt_mask
from analysis.session_format import ProbeWriter, SessionError, read_probes
from calibrate.clock import SkewedClock, clock_from_env

T0 = 5_000_000_000_000  # 5000 s of uptime (ns)


def exchanges(offset_ns: float, drift_ppm: float, n: int = 60, span_s: float = 120.0,
              jitter_ns: float = 50_000.0, base_ns: float = 20_000.0, seed: int = 0,
              asym: float = 1.0) -> np.ndarray:
    """Probes with a known agent clock a(c) = c + offset + drift*(c - T0)."""
    rng = np.random.default_rng(seed)
    c1 = np.sort(rng.uniform(T0, T0 + span_s * 1e9, n))
    up = base_ns + rng.exponential(jitter_ns, n) * asym
    turn = rng.uniform(5_000, 30_000, n)
    down = base_ns + rng.exponential(jitter_ns, n)
    d = drift_ppm * 1e-6

    def agent(c: np.ndarray) -> np.ndarray:
        return c + offset_ns + d * (c - T0)

    t2 = agent(c1 + up)
    t3 = t2 + turn
    t4 = c1 + up + turn / (1 + d) + down
    return np.round(np.c_[c1, t2, t3, t4]).astype(np.int64)


def test_probe_offset_and_rtt_are_the_ntp_formulas() -> None:
    p = Probe(t1_ns=100, t2_ns=1_150, t3_ns=1_160, t4_ns=220)
    assert p.offset_ns == ((1_150 - 100) + (1_160 - 220)) / 2 == 995
    assert p.rtt_ns == 120 - 10
    assert p.mid_ns == 160 and p.valid
    assert not Probe(100, 50, 40, 200).valid


@pytest.mark.parametrize("offset_s,drift_ppm", [(0.0, 0.0), (3.7, 150.0), (-12.5, -200.0), (1e-3, 37.0)])
def test_fit_recovers_offset_and_drift(offset_s: float, drift_ppm: float) -> None:
    probes = exchanges(offset_s * 1e9, drift_ppm, jitter_ns=20_000)
    fit = fit_clock(probes)
    for c in (T0, T0 + 60 * 10**9, T0 + 120 * 10**9):
        truth = offset_s * 1e9 + drift_ppm * 1e-6 * (c - T0)
        assert abs(fit.offset_at(c) - truth) < 1e6 / 10  # 0.1 ms (the issue asks for 1 ms)
    assert abs(fit.drift_ppm - drift_ppm) < 1.0  # the issue asks for 5 ppm
    assert fit.n_probes == 60 and fit.n_valid == 60 and 1 < fit.n_used <= 60
    assert fit.offset_ci95_ns > 0 and fit.drift_ci95_ppm > 0
    assert fit.uncertainty_ns() >= fit.asymmetry_bound_ns > 0
    assert not fit.warnings


def test_interval_covers_truth_most_of_the_time() -> None:
    hits = 0
    for seed in range(40):
        fit = fit_clock(exchanges(2e9, 80.0, seed=seed, jitter_ns=30_000))
        truth = 2e9 + 80e-6 * (fit.ref_ns - T0)
        hits += abs(fit.offset_ns - truth) <= fit.uncertainty_at(fit.ref_ns)
    assert hits >= 36  # a 95 % interval (plus the asymmetry bound) covers nearly always


def test_asymmetric_network_is_bounded_by_half_the_min_rtt() -> None:
    fit = fit_clock(exchanges(1e9, 10.0, asym=6.0, seed=3))
    truth = 1e9 + 10e-6 * (fit.ref_ns - T0)
    err = abs(fit.offset_ns - truth)
    assert err > 1_000  # the bias is real ...
    assert err <= fit.uncertainty_at(fit.ref_ns)  # ... and inside the reported uncertainty


def test_slow_probes_are_filtered_out() -> None:
    probes = exchanges(5e8, 0.0, jitter_ns=5_000, seed=1)
    spoiled = probes.copy()
    spoiled[::4, 3] += 40_000_000  # every fourth reply 40 ms late (a queue): offset error 20 ms
    fit = fit_clock(spoiled)
    assert abs(fit.offset_ns - 5e8) < 50_000
    plain = (((spoiled[:, 1] - spoiled[:, 0]) + (spoiled[:, 2] - spoiled[:, 3])) / 2).mean()
    assert abs(plain - 5e8) > 4e6  # an unfiltered mean would be off by milliseconds


def test_min_rtt_mask_keeps_fastest_of_each_bin() -> None:
    rtt = np.array([5, 1, 9, 3, 7, 2, 8, 4, 100, 90, 80])
    keep = min_rtt_mask(rtt, 0.5, bin_size=8)
    assert keep.tolist() == [False, True, False, True, False, True, False, True, False, True, True]


def test_mapping_round_trips() -> None:
    fit = fit_clock(exchanges(-7.5e9, -180.0))
    for c in (T0, T0 + 1, T0 + 10**11, T0 - 10**10):
        assert abs(fit.to_coordinator_ns(fit.to_agent_ns(c)) - c) <= 1


def test_gap_widens_uncertainty() -> None:
    probes = exchanges(1e9, 50.0, n=120, span_s=240, base_ns=2_000, jitter_ns=5_000)
    mid = (probes[:, 0] + probes[:, 3]) // 2
    gapped = probes[(mid < T0 + 60 * 10**9) | (mid > T0 + 180 * 10**9)]
    full, holed = fit_clock(probes), fit_clock(gapped)
    c = T0 + 120 * 10**9
    assert holed.uncertainty_at(c) > 1.5 * full.uncertainty_at(c)
    assert holed.max_gap_s > 100 and any("without a usable probe" in w for w in holed.warnings)
    assert holed.uncertainty_ns() >= holed.uncertainty_at(c) * 0.99


def test_degenerate_probe_sets() -> None:
    with pytest.raises(ValueError, match="no valid clock probe"):
        fit_clock([])
    with pytest.raises(ValueError, match="no valid"):
        fit_clock([Probe(100, 50, 40, 200)])
    one = fit_clock([Probe(0, 1_000_050, 1_000_060, 110)])
    assert one.n_used == 1 and one.drift_ppm == 0 and math.isinf(one.offset_ci95_ns)
    assert any("one usable probe" in w for w in one.warnings)
    d = one.to_dict()
    assert d["offset_ci95_ns"] is None and d["uncertainty_ns"] is None
    json.dumps(d, allow_nan=False)
    assert ClockFit.identity(10).uncertainty_ns() == 0


@settings(max_examples=60, deadline=None)
@given(offset_s=st.floats(-1e4, 1e4), drift=st.floats(-200, 200), seed=st.integers(0, 2**16),
       n=st.integers(20, 80))
def test_fit_property(offset_s: float, drift: float, seed: int, n: int) -> None:
    fit = fit_clock(exchanges(offset_s * 1e9, drift, n=n, seed=seed, jitter_ns=20_000))
    truth = offset_s * 1e9 + drift * 1e-6 * (fit.ref_ns - T0)
    assert abs(fit.offset_ns - truth) < 1e6
    assert abs(fit.drift_ppm - drift) < 5
    json.dumps(fit.to_dict(), allow_nan=False)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(*[st.integers(-2**62, 2**62)] * 4), max_size=30))
def test_fit_never_crashes_on_hostile_probes(rows: list[tuple[int, int, int, int]]) -> None:
    try:
        fit = fit_clock(np.array(rows, dtype=np.int64).reshape(-1, 4))
    except ValueError:
        return
    json.dumps(fit.to_dict(), allow_nan=False)


def test_probe_file_round_trip(tmp_path) -> None:
    path = tmp_path / "host-a.csv"
    w = ProbeWriter(path)
    w.write(1, 2, 3, 4)
    w.write(10, status="timeout")
    w.write(20, 21, 22, 23, status="bogus")
    w.close()
    with path.open("a") as fh:
        fh.write("1,2,x,4,ok\n9,9,9,9,ok\n5,5")  # a malformed row and a torn last line
    ok, counts = read_probes(path)
    assert ok == [(1, 2, 3, 4), (9, 9, 9, 9)]
    assert counts == {"ok": 2, "timeout": 1, "error": 1, "garbage": 1}
    with pytest.raises(FileExistsError):
        ProbeWriter(path)
    (tmp_path / "bad.csv").write_text("a,b\n")
    with pytest.raises(SessionError, match="header"):
        read_probes(tmp_path / "bad.csv")


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=400))
def test_read_probes_fuzz(text: str) -> None:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "p.csv"
        p.write_text("t1_ns,t2_ns,t3_ns,t4_ns,status\n" + text, errors="replace")
        ok, counts = read_probes(p)
        assert all(len(r) == 4 for r in ok) and sum(counts.values()) >= len(ok)


def test_skewed_clock_and_env() -> None:
    base = iter([0, 10**9, 2 * 10**9])
    clk = SkewedClock(2.5, 100.0, base=lambda: next(base))
    assert clk() == 2_500_000_000
    assert clk() == 10**9 + 2_500_000_000 + 100_000
    assert clk.from_monotonic(2 * 10**9) == 2 * 10**9 + 2_500_000_000 + 200_000
    fn, rec = clock_from_env({})
    assert rec is None and isinstance(fn(), int)
    _, rec = clock_from_env({"CALIBRATE_TEST_CLOCK": "1.5,-20"})
    assert rec is not None and rec.to_json() == {"offset_s": 1.5, "drift_ppm": -20.0}
    for bad in ("1", "a,b", "1,5000", "1e9,0"):
        with pytest.raises(ValueError):
            clock_from_env({"CALIBRATE_TEST_CLOCK": bad})
