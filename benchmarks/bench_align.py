"""Timing of alignment on a long session: 24 h, 4 meters at 10 Hz (864k samples each).

Run: ``.venv/bin/python benchmarks/bench_align.py [hours]``.  Prints the wall time of
each step and the lag errors against the synthetic truth.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from analysis.align import estimate_drift, estimate_lag
from analysis.sampling import power_series, resample
from analysis.windows import common_windows, window_energies


def main(hours: float = 24.0) -> None:
    rng = np.random.default_rng(0)
    dur = hours * 3600.0
    # true load: levels that switch every 5-60 s, kept as a cumulative energy function
    sw = np.cumsum(rng.uniform(5, 60, int(dur / 5) + 10))
    sw = sw[sw < dur + 100]
    lv = rng.uniform(80, 400, sw.size + 1)
    seg_e = np.concatenate([[0.0], np.cumsum(lv[:-1] * np.diff(np.concatenate([[0.0], sw])))])
    knots = np.concatenate([[0.0], sw])

    def energy(t: np.ndarray) -> np.ndarray:
        j = np.clip(np.searchsorted(knots, t, "right") - 1, 0, knots.size - 1)
        return seg_e[j] + lv[j] * (t - knots[j])

    def meter(t: np.ndarray, w: float, lag: float) -> np.ndarray:
        return (energy(t - lag) - energy(t - lag - w)) / w

    t_ref = np.arange(10.0, dur, 0.1)
    truth = {"ref": 0.0, "a": 1.3, "b": -2.75, "c": 0.42}
    traces = {}
    for name, lag in truth.items():
        t = t_ref + rng.uniform(-0.005, 0.005, t_ref.size)
        traces[name] = (t, meter(t, 0.1, lag) + rng.normal(0, 1.0, t.size))
    n = t_ref.size
    print(f"{hours:g} h, {len(traces)} meters, {n} samples each")

    t0 = time.perf_counter()
    ps = {k: power_series(t, p) for k, (t, p) in traces.items()}
    print(f"power_series x4   {time.perf_counter() - t0:7.3f} s")

    t0 = time.perf_counter()
    grid = np.arange(20.0, dur - 20, 1.0)
    for t, p in traces.values():
        resample(t, p, grid)
    print(f"resample 1 s x4   {time.perf_counter() - t0:7.3f} s")

    t_all = time.perf_counter()
    for k in ("a", "b", "c"):
        t0 = time.perf_counter()
        r = estimate_lag(*ps["ref"], *ps[k], max_lag_s=30)
        print(
            f"estimate_lag {k}    {time.perf_counter() - t0:7.3f} s  lag {r.lag_s:+.4f} "
            f"(truth {truth[k]:+.4f}, xcorr {r.lag_xcorr_s:+.4f}, {r.method}, {r.n_edges} edges)"
        )
    print(f"estimate_lag x3   {time.perf_counter() - t_all:7.3f} s total")

    t0 = time.perf_counter()
    d = estimate_drift(*ps["ref"], *ps["a"], max_lag_s=30)
    print(
        f"estimate_drift    {time.perf_counter() - t0:7.3f} s  drift {d.drift_ppm:+.3f} ppm (truth 0)"
    )

    t0 = time.perf_counter()
    win = common_windows(20.0, dur - 20, 60.0)
    for t, p in traces.values():
        window_energies(win, t, power_w=p)
    print(f"window_energies x4 {time.perf_counter() - t0:6.3f} s  ({win.shape[0]} windows)")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 24.0)
