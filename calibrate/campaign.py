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

    [[campaign.hosts]]                         # optional: meters on other hosts (see
    name = "node-b"                            #   calibrate.campaign_hosts): an agent placed
    placement = "ssh"                          #   local, over ssh or by slurm, reached at
    target = "lab@node-b"                      #   address; its channels are node-b.<meter>
    address = "node-b:7710"
    meters = ["serial:/dev/ttyUSB0?protocol=wattsup"]

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
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from analysis.numbers import fmt_number
from analysis.session_format import check_path_component, read_status, write_json_atomic
from calibrate.bench import BenchPlan, run_bench
from calibrate.campaign_hosts import CampaignHosts, HostSpec
from calibrate.console import ConsoleReporter, print_result
from calibrate.errors import UsageError

STATE_FILE = "campaign.json"
WARMUP_DEFAULT_S = 60.0  # a warm-up without a duration runs this long


MAX_RUNS = 10_000  # runs x repetitions: a campaign of more is a typo, not a plan

Seconds = Annotated[float, Field(ge=0, le=86_400, allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
ParamValue = Union[bool, int, float, str]  # noqa: UP007 - pydantic tries the members in order


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class WarmupSpec(_Schema):
    workload: Name
    params: dict[str, ParamValue] = {}


class RunSpec(_Schema):
    workload: Name
    params: dict[str, ParamValue] = {}
    label: str | None = None
    command: Annotated[list[Annotated[str, Field(max_length=4096)]], Field(min_length=1, max_length=256)] | None = None

    @field_validator("label")
    @classmethod
    def _label_names_a_folder(cls, v: str | None) -> str | None:
        return None if v is None else check_path_component(v, "label")


class CampaignSpec(_Schema):
    name: Name | None = None
    meters: Annotated[list[Annotated[str, Field(min_length=1, max_length=1000)]], Field(min_length=1, max_length=64)]
    reference: Name | None = None
    repetitions: Annotated[int, Field(ge=1, le=MAX_RUNS)] = 1
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    baseline_s: Seconds = 10.0
    cooldown_max_s: Seconds = 0.0
    cooldown_tolerance: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] = 0.05
    window_s: Annotated[float, Field(gt=0, le=86_400, allow_inf_nan=False)] | None = None
    location: Annotated[str, Field(min_length=1, max_length=40)] | None = None
    intensity: Annotated[float, Field(ge=0, le=10_000, allow_inf_nan=False)] | None = None
    pue: Annotated[float, Field(ge=1, le=10, allow_inf_nan=False)] | None = None
    out: Name | None = None
    warmup: WarmupSpec | None = None
    hosts: Annotated[list[HostSpec], Field(max_length=64)] | None = None

    @field_validator("hosts")
    @classmethod
    def _distinct_hosts(cls, v: list[HostSpec] | None) -> list[HostSpec] | None:
        names = [h.name for h in v or []]
        if len(set(names)) != len(names):
            raise ValueError("two hosts have the same name")
        return v


class PlanSpec(_Schema):
    campaign: CampaignSpec
    run: Annotated[list[RunSpec], Field(min_length=1, max_length=MAX_RUNS)]


def plan_error(path: Path, exc: ValidationError) -> UsageError:
    """The first schema error as one line: the file, the key, what is allowed, what was given."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    if loc[:1] == ["run"] and len(loc) > 1:
        where = f"[[run]] {int(loc[1]) + 1}" + (f" {'.'.join(loc[2:])}" if loc[2:] else "")
    elif loc:
        where = f"[{loc[0]}] {'.'.join(loc[1:])}".rstrip()
    else:
        where = "plan"
    msg = str(err["msg"])
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "is required"
    elif "input" in err and err["type"] != "value_error":
        msg += f" (got {str(err['input'])[:40]!r})"
    return UsageError(f"{path}: {where}: {msg}".encode("ascii", "backslashreplace").decode())


def load_plan(path: Path) -> dict[str, Any]:
    """Read and validate a campaign plan (TOML); UsageError (one line) naming the key."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10: tomli is a dependency there
        import tomli as tomllib

    try:
        if path.stat().st_size > 1 << 20:
            raise UsageError(f"{path}: a plan is at most 1 MiB")
        plan = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"plan {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"plan {path}: cannot read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: invalid TOML ({exc})") from None
    try:
        spec = PlanSpec.model_validate(plan)
    except ValidationError as exc:
        raise plan_error(path, exc) from None
    if len(spec.run) * spec.campaign.repetitions > MAX_RUNS:
        raise UsageError(f"{path}: {len(spec.run)} runs x {spec.campaign.repetitions} repetitions is over "
                         f"{MAX_RUNS} sessions")
    for i, r in enumerate(spec.run, 1):
        try:
            check_path_component(_label(r.model_dump()), "workload (the run's label)")
        except ValueError as exc:
            raise UsageError(f"{path}: [[run]] {i}: {exc}") from None
    return plan


def _label(run: dict[str, Any]) -> str:
    return str(run.get("label") or run["workload"])


def check_resumed_order(order: list[dict[str, Any]], plan: dict[str, Any]) -> None:
    """Check a resumed campaign's order against its plan: an id is a folder name, so one
    that the plan does not give (a tampered campaign.json) is refused, never used."""
    reps = int(plan["campaign"].get("repetitions", 1))
    seen = set()
    for n, it in enumerate(order, 1):
        try:
            run, rep = int(it["run"]), int(it["rep"])
            label = _label(plan["run"][run])
        except (KeyError, TypeError, ValueError, IndexError):
            raise UsageError(f"campaign.json: order item {n} does not match the plan") from None
        want = f"{n:03d}-{label}-rep{rep}"
        if not (0 < rep <= reps) or it.get("id") != want or it.get("label") != label or want in seen \
                or it.get("status") not in ("pending", "running", "complete", "failed", "interrupted"):
            raise UsageError(f"campaign.json: order item {n} ({str(it.get('id'))[:40]!r}) does not match the plan; "
                             "start a new campaign (another out=)")
        seen.add(want)
    if len(order) != len(plan["run"]) * reps:
        raise UsageError("campaign.json: the order does not match the plan; start a new campaign (another out=)")


def make_order(plan: dict[str, Any]) -> list[dict[str, Any]]:
    camp = plan["campaign"]
    reps = int(camp.get("repetitions", 1))
    items = [{"run": i, "rep": r + 1, "label": _label(run)} for i, run in enumerate(plan["run"]) for r in range(reps)]
    random.Random(camp.get("seed", 0)).shuffle(items)
    for n, it in enumerate(items, 1):
        it["id"] = f"{n:03d}-{it['label']}-rep{it['rep']}"
        it["status"] = "pending"
    return items


def run_plan(camp: dict[str, Any], run: dict[str, Any], out: Path | None = None,
             agents: Sequence[str] = ()) -> BenchPlan:
    """The bench plan of one campaign run (``out``: its session folder; ``agents``: the
    ``agent://`` URIs of the plan's hosts, as started)."""
    return BenchPlan(meters=[*camp["meters"], *agents], workload=run["workload"], params=dict(run.get("params", {})),
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
    for i, r in enumerate(plan["run"]):  # every run checked before the first starts
        try:
            run_plan(camp, r).check()
        except UsageError as exc:
            raise UsageError(f"{plan_path}: run {i + 1}: {exc}") from None
    if state_path.exists():
        if not resume:
            raise UsageError(f"{out} already holds a campaign: add --resume to continue it, or change out=")
        try:
            state = json.loads(state_path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise UsageError(f"{state_path}: not readable ({str(exc)[:80]})") from None
        if not isinstance(state, dict) or state.get("plan") != plan or not isinstance(state.get("order"), list):
            raise UsageError(f"{plan_path} changed since the campaign started; resume needs the same plan")
        check_resumed_order(state["order"], plan)
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

    agents = CampaignHosts([HostSpec.model_validate(h) for h in camp.get("hosts") or []])
    with agents:  # started before the first run (one line and exit 2 if one cannot be), stopped after the last
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
            bench_plan = run_plan(camp, plan["run"][it["run"]], session_dir, agents.uris())
            print(f"campaign: {it['id']} ({sum(x['status'] == 'complete' for x in state['order']) + 1}/{len(state['order'])})",
                  flush=True)
            it["status"] = "running"
            write_json_atomic(state_path, state)
            result = run_bench(bench_plan, ConsoleReporter(quiet=quiet))
            rc = print_result(result)
            if rc != 0:
                it["why"] = failure_reason(result)
            else:
                it.pop("why", None)
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
    excluded = [{"id": it["id"], "status": it["status"], "why": it.get("why") or it["status"]}
                for it in state["order"] if it["status"] != "complete"]
    report = write_campaign_report(out, sessions, reference=camp.get("reference"),
                                   name=camp.get("name") or plan_path.stem, excluded=excluded)
    print(campaign_lines(report, len(sessions), failures, out))
    return 0 if failures == 0 else 1


def failure_reason(result: Any) -> str:
    """Why a run is left out of the campaign's report, in one line (from its BenchResult)."""
    if getattr(result, "failure", None):
        return f"recording failed: {result.failure}"
    if result.status == "workload_failed":
        rc = result.run.returncode if result.run is not None else None
        return f"the workload failed (exit {rc})" if rc is not None else "the workload failed"
    if result.status == "interrupted":
        return "interrupted"
    if result.report_error is not None:
        return f"no report: {str(result.report_error).splitlines()[0] if str(result.report_error) else type(result.report_error).__name__}"
    return f"status {result.status}"


def campaign_lines(report: dict[str, Any], complete: int, failures: int, out: Path) -> str:
    """What a campaign prints at its end: runs, energy per workload (J, with its 95 % CI
    when there are runs enough for one), the report's path."""
    lines = [f"\ncampaign: {complete} run(s) complete, {failures} failed"]
    for row in report.get("per_workload", []):
        e = row.get("energy_j") or {}
        lo, hi = (list(e.get("ci") or []) + [None, None])[:2]
        ci = (f"[95% CI {fmt_number(lo, grouping=False)}, {fmt_number(hi, grouping=False)}]"
              if lo is not None and hi is not None
              else "(no CI from one run)" if row.get("runs", 0) < 2 else "(no CI)")
        lines.append(f"  {row['workload']}: energy {fmt_number(e.get('mean'), grouping=False)} J {ci} "
                     f"over {row.get('runs', 0)} run(s)")
    lines.append(f"report: {out / 'campaign_report.html'}")
    return "\n".join(lines)


def cmd_campaign(args: argparse.Namespace) -> int:
    return run_campaign(Path(args.plan), resume=args.resume, quiet=args.quiet)


def add_campaign_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("campaign", help="run a calibration campaign from a plan (TOML); resumable")
    p.add_argument("plan", metavar="PLAN.toml", help="the campaign plan (meters, runs, repetitions; see README)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted campaign")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines while each run records")
    p.set_defaults(func=cmd_campaign)
