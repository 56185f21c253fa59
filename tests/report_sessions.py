"""Sessions for the report tests, made quickly on disk: a recorded-like session (host,
versions, a simulated wall meter, a cpu-model with assumed parameters, a channel with a
long name, nested phases, hostile workload parameters) and an imported one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_analysis import synthesise  # noqa: E402

LONG = "gpu-board-" + "x" * 60
EVIL_WORKLOAD = "<script>alert(1)</script>"


def recorded_session(folder: Path) -> Path:
    """Three channels (wattsup reference, cpu-model, LONG) over 3 minutes at 2 Hz with
    baseline-before, workload (epoch-1, eval-1, epoch-2 inside it) and baseline-after."""
    synthesise(folder, hours=0.05, rate_hz=2.0)
    (folder / "traces" / "rapl.package-0.csv").unlink()
    (folder / "traces" / "nvml.0.csv").rename(folder / "traces" / f"{LONG}.csv")
    man = json.loads((folder / "session.json").read_text())
    meters = []
    for m in man["meters"]:
        ch = m["channels"][0]
        if ch["id"] == "rapl.package-0":
            continue
        if ch["id"] == "nvml.0":
            ch["id"] = m["name"] = LONG
        if ch["id"] == "wattsup":
            m.update({"simulated": True, "simulator": "wattsup"})
        if ch["id"] == "cpu-model":
            ch["info"] = {"model": "linear utilisation model", "idle_w": 8.5, "max_w": 85.0,
                          "assumed": {"max_w": "CPU 'AMD EPYC' not in a TDP table: CodeCarbon's unknown-CPU 85 W",
                                      "idle_w": "10% of max (CodeCarbon's cpu_load floor)"}, "cpu": "AMD EPYC"}
        meters.append(m)
    start = man["clock"]["start_ns"]
    man.update({"meters": meters, "created_utc": "2026-01-02T03:04:05+00:00",
                "host": {"hostname": "benchbox", "cpu": "AMD EPYC", "cpus": 2, "python": "3.11.7"},
                "versions": {"calibrate": "0.1.0", "torch": None},
                "workload": {"name": EVIL_WORKLOAD, "parameters": {"note": "</table><b>x", "lr": 0.001, "epochs": 2,
                                                                  "amp": False, "none": None, "empty": {}}}})
    (folder / "session.json").write_text(json.dumps(man))
    spans = [("baseline-before", 0, 20), ("workload", 20, 160), ("epoch-1", 20, 80), ("eval-1", 80, 90),
             ("epoch-2", 90, 150), ("baseline-after", 160, 178)]
    events = [{"t_ns": start, "kind": "session_start"}]
    for name, a, b in spans:
        events.append({"t_ns": start + int(a * 1e9), "kind": "phase_start", "phase": name})
        events.append({"t_ns": start + int(b * 1e9), "kind": "phase_end", "phase": name})
    events.sort(key=lambda e: e["t_ns"])
    (folder / "events.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    return folder


def imported_session(tmp: Path, name: str = "imp") -> Path:
    """Two CSV traces (a wall meter and a modelled tool) imported with ``calibrate import``'s code."""
    from analysis.importer import TraceSpec, import_traces

    t = 1.7e9 + np.arange(240.0)
    load = (np.arange(240) // 20) % 2
    wall = 100 + 60 * load + np.random.default_rng(0).normal(0, 1, 240)
    tool = 10 + 40 * load + np.random.default_rng(1).normal(0, 0.5, 240)
    for n, p in (("wall", wall), ("tool", tool)):
        (tmp / f"{n}.csv").write_text("timestamp,power_w\n" + "".join(f"{a},{b:.3f}\n" for a, b in zip(t, p)))
    specs = [TraceSpec.parse(f"wall={tmp / 'wall.csv'}@wall"), TraceSpec.parse(f"tool={tmp / 'tool.csv'}@package/modelled")]
    return import_traces(tmp / name, specs, reference="wall")


_MADE: dict[tuple[str, str], Path] = {}  # made once per test run, whichever module asks first


def _made(tmp_path_factory, name: str, make) -> Path:  # noqa: ANN001 - pytest objects
    from analysis.report import write_report

    key = (str(tmp_path_factory.getbasetemp()), name)
    if key not in _MADE:
        folder = make(tmp_path_factory.mktemp(name))
        write_report(folder, export_figures=True)  # the paper files are part of what is tested
        _MADE[key] = folder
    return _MADE[key]


@pytest.fixture(scope="session")
def recorded(tmp_path_factory) -> Path:  # noqa: ANN001
    """A recorded-like session with its report written (shared by the report tests)."""
    return _made(tmp_path_factory, "rec", lambda d: recorded_session(d / "rec"))


@pytest.fixture(scope="session")
def imported(tmp_path_factory) -> Path:  # noqa: ANN001
    """An imported session with its report written (shared by the report tests)."""
    return _made(tmp_path_factory, "imp", lambda d: imported_session(d))
