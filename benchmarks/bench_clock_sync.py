"""How well a multi-host session places another host's clock, and what an agent costs.

Part 1, the clock fit (no network; probes synthesised with a known offset and drift):
the median error of the fitted offset (µs) against the number of probes and the network
jitter (exponential one-way delays, asymmetric by a random factor), for calibrate's fit
(:func:`analysis.clock_sync.fit_clock`: min-RTT filter, outlier rejection, LSQ line)
against two baselines measured on the same probes: an unfiltered LSQ line through every
probe, and the single fastest probe (what a one-shot NTP query gives).  Also the share of
trials whose reported uncertainty covers the true error.

Part 2, the agent's CPU: ``cpu-model`` polled at 10 Hz for ``--seconds`` s, once recorded
by a local session in its own process and once by ``calibrate agent`` in its own process
driven by this coordinator (probes every 2 s).  Both are whole-process CPU seconds over the
recording, start-up excluded; the ratio is agent / local.

    .venv/bin/python benchmarks/bench_clock_sync.py            # about 40 s
    .venv/bin/python benchmarks/bench_clock_sync.py --quick    # about 10 s
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.clock_sync import fit_clock  # noqa: E402

T0 = 10**13


def synth(n: int, jitter_ns: float, rng: np.random.Generator, offset_ns: float, drift_ppm: float,
          span_s: float) -> np.ndarray:
    c1 = np.sort(rng.uniform(T0, T0 + span_s * 1e9, n))
    skew = rng.uniform(0.5, 2.0)  # the two legs differ by up to a factor 2 in typical delay
    up = 20_000 + rng.exponential(jitter_ns * skew, n)
    down = 20_000 + rng.exponential(jitter_ns / skew, n)
    turn = rng.uniform(5_000, 50_000, n)
    d = drift_ppm * 1e-6
    t2 = c1 + up + offset_ns + d * (c1 + up - T0)
    t3 = t2 + turn
    t4 = c1 + up + turn / (1 + d) + down
    return np.round(np.c_[c1, t2, t3, t4]).astype(np.int64)


def part_fit(trials: int) -> None:
    print("clock fit: median |offset error| (µs) over", trials, "trials; 120 s of probes, drift 150 ppm")
    print(f"{'probes':>7} {'jitter µs':>10} {'calibrate':>10} {'plain LSQ':>10} {'best probe':>11} "
          f"{'LSQ/ours':>9} {'covered':>8}")
    rng = np.random.default_rng(7)
    for jitter_us in (10, 100, 1000):
        for n in (8, 30, 120, 600):
            ours, plain, best, covered = [], [], [], 0
            for _ in range(trials):
                off = rng.uniform(-5e9, 5e9)
                p = synth(n, jitter_us * 1e3, rng, off, 150.0, 120.0)
                fit = fit_clock(p)
                truth = off + 150e-6 * (fit.ref_ns - T0)
                err = abs(fit.offset_ns - truth)
                ours.append(err)
                covered += err <= fit.uncertainty_at(fit.ref_ns)
                mid = (p[:, 0] + p[:, 3]) / 2 - fit.ref_ns
                o = ((p[:, 1] - p[:, 0]) + (p[:, 2] - p[:, 3])) / 2
                plain.append(abs(np.polyval(np.polyfit(mid, o, 1), 0.0) - truth))
                rtt = (p[:, 3] - p[:, 0]) - (p[:, 2] - p[:, 1])
                k = int(np.argmin(rtt))
                best.append(abs(o[k] - (off + 150e-6 * ((p[k, 0] + p[k, 3]) / 2 - T0))))
            mo, mp_, mb = (float(np.median(x)) / 1e3 for x in (ours, plain, best))
            print(f"{n:>7} {jitter_us:>10} {mo:>10.2f} {mp_:>10.2f} {mb:>11.2f} {mp_ / mo:>9.2f} "
                  f"{covered / trials:>8.0%}")


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


LOCAL_SCRIPT = """
import sys, time
from calibrate.session import Session
with Session(["cpu-model?interval=0.1"], out=sys.argv[1]) as s:
    c0 = time.process_time(); w0 = time.monotonic()
    time.sleep(float(sys.argv[2]))
    print(time.process_time() - c0, time.monotonic() - w0)
"""


def part_agent(seconds: float) -> None:
    from calibrate.session import Session

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([sys.executable, "-c", LOCAL_SCRIPT, f"{tmp}/local", str(seconds)], capture_output=True,
                           text=True, env=env, cwd=ROOT, check=True)
        local_cpu, local_wall = (float(x) for x in r.stdout.split())
        agent = subprocess.Popen([sys.executable, "-m", "calibrate.cli", "agent", "--meter", "cpu-model?interval=0.1",
                                  "--port", "0", "--out", f"{tmp}/agent", "--name", "bench"],
                                 stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        try:
            port = int(re.search(r":(\d+) ", agent.stdout.readline()).group(1))
            with Session([f"agent://127.0.0.1:{port}"], out=f"{tmp}/coord"):
                c0, w0 = proc_cpu_s(agent.pid), time.monotonic()
                time.sleep(seconds)
                agent_cpu, agent_wall = proc_cpu_s(agent.pid) - c0, time.monotonic() - w0
        finally:
            agent.terminate()
            agent.wait(timeout=10)
    lo, ag = local_cpu / local_wall * 100, agent_cpu / agent_wall * 100
    print(f"\nagent CPU, cpu-model at 10 Hz for {seconds:g} s (whole process, % of one core):")
    print(f"  local session : {lo:6.2f} %")
    print(f"  agent         : {ag:6.2f} %   (recording + serving probes every 2 s)")
    print(f"  agent / local : {ag / lo if lo else float('nan'):6.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer trials, shorter recording")
    ap.add_argument("--seconds", type=float, default=None, help="recording length of part 2 (s)")
    args = ap.parse_args()
    part_fit(15 if args.quick else 60)
    part_agent(args.seconds or (4.0 if args.quick else 15.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
