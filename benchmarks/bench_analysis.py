"""Analysis speed: a 24-hour session of 4 meters at 10 Hz, loaded, aligned, compared, reported.

Target (issue 5): load + align + all statistics + report under 30 s on 2 cores.  Prints
how the time splits by stage.  The session is synthesised on disk in the real format
(traces/*.csv, events.jsonl, session.json): a wall meter and three software meters
following one load with known lags, gains and noise.

    .venv/bin/python benchmarks/bench_analysis.py [--hours 24] [--rate 10] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def synthesise(folder: Path, hours: float, rate_hz: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n = int(hours * 3600 * rate_hz)
    t_s = np.arange(n) / rate_hz
    start_ns = 10**12
    # load: 10-minute epochs of training with 1-minute evaluation dips, plus noise
    phase = (t_s % 660.0) < 600.0
    load = np.where(phase, 1.0, 0.3) + 0.05 * rng.standard_normal(n)
    specs = {  # channel: (idle W, span W, lag s, noise W, scope, source, has counter)
        "wattsup": (95.0, 180.0, 0.0, 1.0, "wall", "measured", False),
        "rapl.package-0": (12.0, 95.0, 0.3, 0.3, "package", "measured", True),
        "nvml.0": (30.0, 120.0, 0.8, 0.8, "gpu", "measured", True),
        "cpu-model": (8.5, 76.5, 0.1, 0.0, "cpu", "modelled", True),
    }
    (folder / "traces").mkdir(parents=True)
    meters = []
    for cid, (idle, span, lag, noise, scope, source, counter) in specs.items():
        shift = int(round(lag * rate_hz))
        p = idle + span * np.roll(load, shift) + noise * rng.standard_normal(n)
        t_ns = start_ns + (t_s * 1e9).astype(np.int64) + rng.integers(0, 2_000_000, n)
        cols = {"t_ns": t_ns, "rtt_ns": np.full(n, 150_000), "power_w": np.round(p, 3)}
        if counter:
            cols["energy_j"] = np.round(np.cumsum(p) / rate_hz, 6)
        header = "t_ns,rtt_ns,flag," + ",".join(k for k in cols if k not in ("t_ns", "rtt_ns"))
        body = np.column_stack([cols[k] for k in cols])
        fmt = ["%d", "%d"] + ["%.6f"] * (len(cols) - 2)
        with (folder / "traces" / f"{cid}.csv").open("w") as fh:
            fh.write(header + "\n")
            lines = np.char.mod(fmt[0], body[:, 0].astype(np.int64))
            rest = [np.char.mod(f, body[:, i]) for i, f in enumerate(fmt[1:], 1)]
            rows = lines
            rows = np.char.add(np.char.add(rows, ","), rest[0])
            rows = np.char.add(rows, ",")  # empty flag
            for r in rest[1:]:
                rows = np.char.add(np.char.add(rows, ","), r)
            fh.write("\n".join(rows.tolist()) + "\n")
        name = cid.split(".")[0]
        meters.append({"uri": name, "kind": name, "name": name, "channels": [{
            "id": cid, "scope": scope, "source": source,
            "quantities": [k for k in cols if k not in ("t_ns", "rtt_ns")],
            "window_s": 1.0 / rate_hz, "update_interval_s": 1.0 / rate_hz, "energy_resolution_j": None,
            "primary": "energy_j" if counter else "power_w", "info": {}}]})
    events = [{"t_ns": start_ns, "kind": "session_start"}]
    for k in range(int(hours * 3600 // 660)):
        events.append({"t_ns": start_ns + int(k * 660e9), "kind": "phase_start", "phase": f"epoch-{k + 1}"})
        events.append({"t_ns": start_ns + int((k * 660 + 600) * 1e9), "kind": "phase_end", "phase": f"epoch-{k + 1}"})
    (folder / "events.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    manifest = {"format": "calibrate-session/1", "status": "complete", "reference": "wattsup",
                "clock": {"start_ns": start_ns, "anchor": {"monotonic_ns": start_ns, "utc_ns": 0, "uncertainty_ns": 0}},
                "meters": meters, "workload": {"name": "synthetic-24h", "parameters": {}}, "host": {}, "versions": {}}
    (folder / "session.json").write_text(json.dumps(manifest))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--keep", metavar="DIR", help="write the session here and keep it")
    args = ap.parse_args()
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="calibrate-bench-")) / "s"
    t0 = time.perf_counter()
    synthesise(folder, args.hours, args.rate)
    print(f"synthesised {args.hours:g} h x 4 meters at {args.rate:g} Hz in {time.perf_counter() - t0:.1f} s ({folder})")

    from analysis.load import load_session
    from analysis.pipeline import analyse
    from analysis.report import render_html
    from analysis.session_format import json_safe
    from analysis.summary import summarize
    from analysis.text_report import summary_markdown

    stages = {}
    t = time.perf_counter()
    data = load_session(folder)
    stages["load"] = time.perf_counter() - t
    t = time.perf_counter()
    result = analyse(data)
    stages["series + lags + windows + pairs"] = time.perf_counter() - t
    t = time.perf_counter()
    summary = json_safe(summarize(data, result=result))
    stages["statistics + summary"] = time.perf_counter() - t
    t = time.perf_counter()
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "report.html").write_text(render_html(data, summary, result))
    (folder / "summary.md").write_text(summary_markdown(summary))
    stages["report (figures, html, json)"] = time.perf_counter() - t
    total = sum(stages.values())
    for k, v in stages.items():
        print(f"  {k:<32} {v:6.2f} s  ({100 * v / total:4.1f} %)")
    print(f"  {'total':<32} {total:6.2f} s   target < 30 s: {'OK' if total < 30 else 'MISSED'}")
    for a in summary["agreement"]:
        print(f"  {a['candidate']}: lag {a['lag_s']:.2f} s, {a['n_windows']} windows, "
              f"calibration wattsup = {a['calibration']['intercept']:.1f} + {a['calibration']['slope']:.3f} x")
    if not args.keep:
        shutil.rmtree(folder.parent)


if __name__ == "__main__":
    main()
