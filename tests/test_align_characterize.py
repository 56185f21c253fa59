"""Meter characterisation on synthetic sensors with known update period, window, delay."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.characterize import characterize, update_period_s, update_samples

FS = 1000.0  # the "true" load is known at 1 kHz


def square_load(
    seed: int, dur: float, on: tuple[float, float], off: tuple[float, float], noise: float = 3.0
):
    """A square-ish load (60 W idle, 250 W bursts of random length) sampled at 1 kHz,
    its edge times, and its cumulative energy for exact boxcar averages."""
    rng = np.random.default_rng(seed)
    n = int(dur / min(on[0], off[0])) + 2
    d = np.empty(2 * n)
    d[0::2] = rng.uniform(*off, n)
    d[1::2] = rng.uniform(*on, n)
    edges = np.cumsum(d)
    edges = edges[edges < dur - 1.0]
    tf = np.arange(0.0, dur, 1.0 / FS)
    high = np.searchsorted(edges, tf, "right") % 2 == 1
    pf = np.where(high, 250.0, 60.0) + rng.normal(0, noise, tf.size)
    cum = np.concatenate([[0.0], np.cumsum(pf) / FS])
    tc = np.arange(cum.size) / FS

    def sensor(t: np.ndarray, window: float, delay: float) -> np.ndarray:
        hi = t - delay
        return (np.interp(hi, tc, cum) - np.interp(hi - window, tc, cum)) / window

    return edges, sensor


def test_nvml_like_sensor_update_100ms_window_25ms() -> None:
    """Yang et al. (SC 2024): A100/H100 NVML power updates every ~100 ms but averages
    only ~25 ms of it.  Bursts of 0.2-0.6 s at random phase to the update clock."""
    edges, sensor = square_load(1, 90.0, on=(0.2, 0.6), off=(0.2, 0.6))
    t_upd = 0.5 + 0.037 + np.arange(0.0, 88.0, 0.1)
    p_upd = sensor(t_upd, 0.025, 0.0)
    # read with the driver's own timestamps (nvmlDeviceGetSamples)
    c = characterize(t_upd, p_upd, edges)
    assert c.update_period_s == pytest.approx(0.1, abs=1e-6)
    assert c.window_s == pytest.approx(0.025, abs=0.002)
    assert abs(c.delay_s) < 0.002
    assert c.seen_fraction == pytest.approx(0.25, abs=0.03)
    assert c.n_edges > 100
    assert c.rms_residual < 0.05
    # polled every 5 ms: repeated values, stamps up to one poll late
    t_poll = np.arange(0.6, 88.0, 0.005)
    held = p_upd[np.searchsorted(t_upd, t_poll, "right") - 1]
    assert update_period_s(t_poll, held) == pytest.approx(0.1, abs=0.006)
    tu, _ = update_samples(t_poll, held)
    assert tu.size < t_poll.size / 15
    c2 = characterize(t_poll, held, edges)
    assert c2.update_period_s == pytest.approx(0.1, abs=0.006)
    assert c2.window_s == pytest.approx(0.025, abs=0.006)
    assert 0.0 <= c2.delay_s < 0.006


def test_wattmeter_like_one_second_window_with_delay() -> None:
    edges, sensor = square_load(2, 200.0, on=(8.0, 15.0), off=(8.0, 15.0), noise=1.0)
    rng = np.random.default_rng(5)
    t = np.arange(2.0, 199.0, 1.0) + 0.3
    p = sensor(t, 1.0, 0.2) + rng.normal(0, 0.5, t.size)
    c = characterize(t, p, edges)
    assert c.update_period_s == pytest.approx(1.0)
    assert c.window_s == pytest.approx(1.0, abs=0.08)
    assert c.delay_s == pytest.approx(0.2, abs=0.08)
    # alignment sees the 50 % point: delay + window / 2
    assert c.response_lag_s == pytest.approx(0.7, abs=0.2)
    assert c.seen_fraction == 1.0


def test_first_order_sensor_rise_time_and_fast_reference() -> None:
    """An RC-like sensor (tau = 0.2 s) polled at 100 Hz: 10-90 % rise = tau ln 9; edges
    taken from a fast reference trace instead of phase markers."""
    edges, _ = square_load(3, 60.0, on=(2.0, 4.0), off=(2.0, 4.0))
    tf = np.arange(0.0, 60.0, 1e-3)
    high = np.searchsorted(edges, tf, "right") % 2 == 1
    x = np.where(high, 250.0, 60.0)
    a = 1e-3 / 0.2
    y = np.empty_like(x)
    y[0] = x[0]
    # exact discrete first-order filter, vectorised over segments would obscure it: loop
    acc = x[0]
    for i in range(x.size):
        acc += a * (x[i] - acc)
        y[i] = acc
    t = tf[::10]
    c = characterize(t, y[::10], ref_t_s=tf[::5], ref_power_w=x[::5])
    assert c.n_edges >= 10
    assert c.rise_time_s == pytest.approx(0.2 * np.log(9.0), rel=0.05)
    assert c.update_period_s == pytest.approx(0.01, abs=1e-6)


def test_characterize_rejects_unusable_input() -> None:
    edges, sensor = square_load(4, 30.0, on=(0.2, 0.4), off=(0.2, 0.4))
    t = np.arange(1.0, 29.0, 1.0)
    with pytest.raises(ValueError):
        characterize(t, sensor(t, 1.0, 0.0), edges)  # edges closer than the update period
    with pytest.raises(ValueError):
        characterize(t, sensor(t, 1.0, 0.0))  # no edge times, no reference
    with pytest.raises(ValueError):
        characterize(t, sensor(t, 1.0, 0.0), np.array([100.0, 110.0]))  # edges outside
