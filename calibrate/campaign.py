"""Calibration campaigns: a matrix of workloads x repetitions, one session per run.

``calibrate campaign plan.toml [--resume]``.  The plan (TOML)::

    [campaign]
    name = "bench-check"
    meters = ["sim:wattsup", "cpu-model"]     # --meter URIs
    reference = "wattsup"                      # optional
    repetitions = 3
    seed = 1                                   # randomised run order (seeded)
    baseline_s = 10                            # idle before and after each run
    cooldown_max_s = 60                        # after a run: wait until the reference power is
    cooldown_tolerance = 0.05                  #   within 5 % of the pre-run idle (bounded)
    window_s = 5                               # comparison window (optional)
    location = "FR"                            # grid for CO2 (optional)
    out = "campaigns/bench-check"              # relative to the plan file

    [campaign.warmup]                          # optional: run once before the first run
    workload = "cpu-stress"
    params = { duration_s = 20 }

    [[run]]
    workload = "resnet18"
    params = { epochs = 1, image_size = 32 }

Runs are shuffled once with the seed and the order is written to ``campaign.json`` before
the first run, so ``--resume`` continues the same order: finished runs are skipped, a
run that was interrupted is recorded again (its partial session is kept aside).  At the
end ``campaign_report.json`` / ``campaign_report.html`` aggregate the sessions.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from analysis.session_format import read_status, write_json_atomic
from calibrate.bench import BenchPlan, run_bench
from calibrate.console import ConsoleReporter, print_result
from calibrate.errors import UsageError
from workloads.registry import PreparedWorkload

STATE_FILE = "campaign.json"
WARMUP_DEFAULT_S = 60.0  # a warm-up without a duration runs this long


def load_plan(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10: tomli is a dependency there
        import tomli as tomllib

    try:
        plan = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"plan {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: invalid TOML ({exc})") from None
    camp = plan.get("campaign")
    runs = plan.get("run")
    if not isinstance(camp, dict) or not isinstance(runs, list) or not runs:
        raise UsageError(f"{path}: needs a [campaign] table and at least one [[run]]")
    known = {"name", "meters", "reference", "repetitions", "seed", "baseline_s", "cooldown_max_s",
             "cooldown_tolerance", "window_s", "location", "out", "warmup", "intensity", "pue"}
    unknown = set(camp) - known
    if unknown:
        raise UsageError(f"{path}: unknown [campaign] key(s) {', '.join(sorted(unknown))}")
    if not camp.get("meters"):
        raise UsageError(f"{path}: [campaign] meters = [...] is required")
    for key, conv in (("repetitions", int), ("seed", int), ("baseline_s", float), ("cooldown_max_s", float),
                      ("cooldown_tolerance", float)):
        if key in camp:
            try:
                value = conv(camp[key])
            except (TypeError, ValueError):
                raise UsageError(f"{path}: [campaign] {key} = {camp[key]!r} is not a number") from None
            if value < 0 or (key == "repetitions" and value < 1):
                raise UsageError(f"{path}: [campaign] {key} must be {'>= 1' if key == 'repetitions' else '>= 0'}")
    warm = camp.get("warmup")
    if warm is not None and (not isinstance(warm, dict) or "workload" not in warm):
        raise UsageError(f"{path}: [campaign.warmup] needs workload = \"...\"")
    for i, r in enumerate(runs):
        if "workload" not in r:
            raise UsageError(f"{path}: run {i + 1} has no workload")
        extra = set(r) - {"workload", "params", "label", "command"}
        if extra:
            raise UsageError(f"{path}: run {i + 1}: unknown key(s) {', '.join(sorted(extra))}")
    return plan


def _label(run: dict[str, Any]) -> str:
    return str(run.get("label") or run["workload"])


def make_order(plan: dict[str, Any]) -> list[dict[str, Any]]:
    camp = plan["campaign"]
    reps = int(camp.get("repetitions", 1))
    items = [{"run": i, "rep": r + 1, "label": _label(run)} for i, run in enumerate(plan["run"]) for r in range(reps)]
    random.Random(camp.get("seed", 0)).shuffle(items)
    for n, it in enumerate(items, 1):
        it["id"] = f"{n:03d}-{it['label']}-rep{it['rep']}"
        it["status"] = "pending"
    return items


def run_plan(camp: dict[str, Any], run: dict[str, Any], out: Path | None = None) -> BenchPlan:
    """The bench plan of one campaign run (``out``: its session folder)."""
    return BenchPlan(meters=list(camp["meters"]), workload=run["workload"], params=dict(run.get("params", {})),
                     command=run.get("command"), out=out, reference=camp.get("reference"),
                     baseline_s=float(camp.get("baseline_s", 10)), cooldown_max_s=float(camp.get("cooldown_max_s", 0)),
                     cooldown_tolerance=float(camp.get("cooldown_tolerance", 0.05)), window_s=camp.get("window_s"),
                     location=camp.get("location"), intensity=camp.get("intensity"), pue=camp.get("pue"))


def run_campaign(plan_path: Path, resume: bool = False, quiet: bool = False) -> int:
    plan = load_plan(plan_path)
    camp = plan["campaign"]
    out = (plan_path.parent / camp.get("out", f"campaigns/{camp.get('name', plan_path.stem)}")).resolve()
    state_path = out / STATE_FILE
    # validate every workload (and the warm-up) before anything runs
    warm = camp.get("warmup")
    warm_argv = None
    if warm:
        try:
            wp = BenchPlan(meters=[], workload=warm["workload"],
                           params={"duration_s": WARMUP_DEFAULT_S, **dict(warm.get("params", {}))}).prepare()
        except UsageError as exc:
            raise UsageError(f"{plan_path}: warm-up: {exc}") from None
        warm_argv = (wp.argv, float(wp.params.get("duration_s") or WARMUP_DEFAULT_S))
    prepared: dict[int, PreparedWorkload] = {}
    for i, r in enumerate(plan["run"]):
        try:
            prepared[i] = run_plan(camp, r).prepare()
            run_plan(camp, r).check()
        except UsageError as exc:
            raise UsageError(f"{plan_path}: run {i + 1}: {exc}") from None
    if state_path.exists():
        if not resume:
            raise UsageError(f"{out} already holds a campaign: add --resume to continue it, or change out=")
        state = json.loads(state_path.read_text())
        if state.get("plan") != plan:
            raise UsageError(f"{plan_path} changed since the campaign started; resume needs the same plan")
    else:
        out.mkdir(parents=True, exist_ok=True)
        state = {"format": "calibrate-campaign/1", "plan": plan, "plan_file": str(plan_path),
                 "order": make_order(plan), "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        write_json_atomic(state_path, state)

    todo = [it for it in state["order"] if it["status"] != "complete"]
    if warm_argv and todo:
        argv, seconds = warm_argv
        print(f"campaign: warm-up ({warm['workload']}, {seconds:.0f} s)", flush=True)
        try:
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
                           timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            print("campaign: the warm-up overran its duration and was stopped", file=sys.stderr)

    failures = 0
    for it in state["order"]:
        if it["status"] == "complete":
            continue
        session_dir = out / it["id"]
        if session_dir.exists():  # an interrupted attempt: keep it aside, record again
            n = 1
            while (aside := out / f"{it['id']}.incomplete-{n}").exists():
                n += 1
            shutil.move(str(session_dir), str(aside))
        bench_plan = run_plan(camp, plan["run"][it["run"]], session_dir)
        bench_plan.params = prepared[it["run"]].params
        print(f"campaign: {it['id']} ({sum(x['status'] == 'complete' for x in state['order']) + 1}/{len(state['order'])})",
              flush=True)
        it["status"] = "running"
        write_json_atomic(state_path, state)
        rc = print_result(run_bench(bench_plan, ConsoleReporter(quiet=quiet)))
        if rc != 0 and read_status(session_dir) == "interrupted":
            it["status"] = "interrupted"
            write_json_atomic(state_path, state)
            print(f"campaign interrupted; continue with: calibrate campaign {plan_path} --resume", file=sys.stderr)
            return 1
        it["status"] = "complete" if rc == 0 else "failed"
        failures += rc != 0
        write_json_atomic(state_path, state)

    from analysis.campaign_report import write_campaign_report

    sessions = [out / it["id"] for it in state["order"] if it["status"] == "complete"]
    report = write_campaign_report(out, sessions, reference=camp.get("reference"))
    print(f"\ncampaign: {len(sessions)} run(s) complete, {failures} failed")
    for row in report.get("per_workload", []):
        e = row.get("energy_j") or {}
        print(f"  {row['workload']}: energy {e.get('mean', float('nan')):.1f} J "
              f"[95% CI {e.get('ci', [float('nan')] * 2)[0]:.1f}, {e.get('ci', [float('nan')] * 2)[1]:.1f}] over {row['runs']} run(s)")
    print(f"report: {out / 'campaign_report.html'}")
    return 0 if failures == 0 else 1


def cmd_campaign(args: argparse.Namespace) -> int:
    return run_campaign(Path(args.plan), resume=args.resume, quiet=args.quiet)


def add_campaign_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("campaign", help="run a calibration campaign from a plan (TOML); resumable")
    p.add_argument("plan", metavar="PLAN.toml")
    p.add_argument("--resume", action="store_true", help="continue an interrupted campaign")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_campaign)
