"""The ``calibrate`` command line.

Exit codes: 0 success, 2 usage or configuration error (one line, no traceback), 1 anything
else.  Set ``CALIBRATE_DEBUG=1`` to see tracebacks.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from calibrate import __version__
from calibrate.bench import BenchPlan, run_bench
from calibrate.console import ConsoleReporter, print_result, print_summary_table, say
from calibrate.errors import UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        raise UsageError(f"{message} (see `{self.prog} --help`)")


# --------------------------------------------------------------------------- helpers
def _parse_params(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"workload option {item!r} must be KEY=VALUE")
        out[key.strip().replace("-", "_")] = value
    return out


def _workload_params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for flag, key in (("duration", "duration_s"), ("epochs", "epochs"), ("steps", "steps"),
                      ("batch_size", "batch_size"), ("image_size", "image_size"), ("device", "device"),
                      ("seed", "seed"), ("nproc_per_node", "nproc_per_node"), ("nnodes", "nnodes"),
                      ("node_rank", "node_rank"), ("rdzv_endpoint", "rdzv_endpoint"), ("backend", "backend")):
        v = getattr(args, flag, None)
        if v is not None:
            params[key] = v
    params.update(_parse_params(args.param or []))
    return params


def plan_from_args(args: argparse.Namespace, meters: Sequence[str], workload: str | None,
                   params: dict[str, Any], command: Sequence[str] | None = None) -> BenchPlan:
    """The bench plan a `run`/`demo` command line asks for."""
    return BenchPlan(meters=list(meters), workload=workload, params=params, command=command,
                     out=args.out, reference=args.reference, baseline_s=args.baseline,
                     cooldown_max_s=getattr(args, "cooldown_max", 0.0),
                     cooldown_tolerance=getattr(args, "cooldown_tolerance", 0.05),
                     analyse=not args.no_report, candidates=args.candidate, window_s=args.window,
                     location=args.location, intensity=args.intensity, pue=args.pue,
                     export_figures=bool(getattr(args, "figures", False)))


def _port(value: str) -> int:
    """A --live PORT: 0..65535 (0: any free port)."""
    try:
        port = int(value, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"PORT must be a number 0..65535, got {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"PORT must be 0..65535, got {port}")
    return port


def _add_progress_opts(p: argparse.ArgumentParser) -> None:
    """How a recording shows itself: -q, --plain, --show-output, --live [PORT]."""
    p.add_argument("-q", "--quiet", action="store_true", help="no progress at all (notes and problems still shown)")
    p.add_argument("--plain", action="store_true",
                   help="one plain progress line a second on stderr (the default when stderr is not a terminal)")
    p.add_argument("--show-output", action="store_true",
                   help="show the workload's output on stderr as it runs (it is still written to workload.log)")
    p.add_argument("--live", nargs="?", const=0, type=_port, metavar="PORT",
                   help="serve a live page plotting every channel at http://127.0.0.1:PORT/ "
                        "(local only; no PORT or 0: a free port, printed)")


def run_plan(args: argparse.Namespace, plan: BenchPlan) -> int:
    """Run ``plan`` with the progress a command line asks for (-q, --plain, --show-output,
    --live); the exit code."""
    from calibrate.console import live_capable

    mode = "quiet" if args.quiet else "plain" if args.plain else "auto"
    feed = None
    server = None
    if args.live is not None or mode == "auto":
        from rich.console import Console

        if args.live is not None or live_capable(Console(stderr=True)):
            from calibrate.live_feed import LiveFeed

            feed = LiveFeed()
    if args.live is not None:
        from calibrate.live_web import LiveServer

        assert feed is not None
        server = LiveServer(feed, args.live)
        try:
            server.start()  # bound before anything is recorded: a port in use is exit 2
        except OSError as exc:
            raise UsageError(f"--live {args.live}: cannot listen on 127.0.0.1:{args.live} "
                             f"({exc.strerror or exc})") from None
    reporter = ConsoleReporter(mode=mode, show_output=args.show_output, feed=feed,
                               live_url=server.url if server else None)
    try:
        result = run_bench(plan, reporter, feed=feed)
    finally:
        if server is not None:
            server.stop()
    return print_result(result)


def cmd_run(args: argparse.Namespace) -> int:
    command = list(args.command or [])
    if command and command[0] == "--":
        command = command[1:]
    if not args.meter:
        raise UsageError("give at least one --meter (e.g. --meter sim:wattsup --meter cpu-model); see `calibrate meters`")
    plan = plan_from_args(args, args.meter, args.workload, _workload_params(args), command)
    return run_plan(args, plan)


def cmd_watch(args: argparse.Namespace) -> int:
    from calibrate.watch import watch

    return watch(args.uri, seconds=args.seconds, mode="plain" if args.plain else "auto")



# --------------------------------------------------------------------------- report / agree
def _report_options(args: argparse.Namespace) -> Any:
    """The report options a command line gives; UsageError (exit 2) for a bad one."""
    from analysis.report import ReportOptions

    cands = getattr(args, "candidate", None)
    options = ReportOptions(reference=getattr(args, "reference", None), candidates=tuple(cands) if cands else None,
                            window_s=getattr(args, "window", None), location=getattr(args, "location", None),
                            intensity=getattr(args, "intensity", None), pue=getattr(args, "pue", None),
                            export_figures=bool(getattr(args, "figures", False)))
    try:
        return options.validate()
    except ValueError as exc:
        raise UsageError(str(exc).splitlines()[0]) from None


def cmd_report(args: argparse.Namespace) -> int:
    from analysis.load import SessionError
    from analysis.report import write_report

    options = _report_options(args)
    try:
        summary = write_report(Path(args.session), options)
    except (SessionError, ValueError) as exc:  # a bad --reference/--candidate, an unusable session
        raise UsageError(str(exc).splitlines()[0]) from None
    print_summary_table(summary, Path(args.session))
    say(f"report: {Path(args.session) / 'report.html'}")
    return 0


def cmd_agree(args: argparse.Namespace) -> int:
    import pandas as pd

    from analysis.agreement import agreement

    path = Path(args.data)
    if not path.is_file():
        raise UsageError(f"{path} not found")
    try:
        df = pd.read_csv(path, comment="#")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise UsageError(f"{path} is not a readable CSV ({str(exc).splitlines()[0]})") from None
    for col in (args.reference, args.candidate):
        if col not in df.columns:
            raise UsageError(f"{path} has no column {col!r}; columns: {', '.join(map(str, df.columns))}")
    subjects = None
    if args.subject:
        if args.subject not in df.columns:
            raise UsageError(f"{path} has no column {args.subject!r}")
        subjects = df[args.subject].to_numpy()
    try:
        ref = pd.to_numeric(df[args.reference], errors="raise").to_numpy(float)
        cand = pd.to_numeric(df[args.candidate], errors="raise").to_numpy(float)
        result = agreement(ref, cand, method=args.method, subjects=subjects, deming_ratio=args.ratio)
    except ValueError as exc:
        raise UsageError(str(exc).splitlines()[0]) from None
    from analysis.caveats import bias_caveats, messages, sample_size_caveats

    caveats = (sample_size_caveats(int(result["n"]), what="complete pairs", hint="more pairs are needed")
               + bias_caveats(result, args.candidate, unit=""))
    if result.get("dropped"):
        caveats_text = [f"{result['dropped']} pair(s) dropped for NaN/inf"]
    else:
        caveats_text = []
    result = {"reference": args.reference, "candidate": args.candidate, **result,
              "warnings": caveats_text + messages(caveats)}
    if args.json:
        print(json.dumps(result, indent=2, default=float))
        return 0
    from analysis.text_report import agreement_markdown

    print(agreement_markdown(result))
    return 0


# --------------------------------------------------------------------------- meters / simulate
def cmd_meters(args: argparse.Namespace) -> int:
    if args.probe:
        from drivers.probe import probe_port

        found = probe_port(args.probe)
        if not found:
            say(f"{args.probe}: no known protocol answered (tried wattsup, wt310, the Modbus profiles; "
                "a serial port, socket://HOST:PORT, HOST:PORT, modbus-tcp://, tasmota:// or shelly:// can be probed)")
            return 1
        for f in found:
            say(f"{args.probe}: {f.protocol} answered: {f.identity}")
            if f.note:
                say(f"  {f.note}")
            say(f"  use: --meter '{f.uri}'")
        return 0
    rows: list[dict[str, Any]] = []
    try:
        from drivers.probe import list_serial_ports

        for p in list_serial_ports():  # a port is there; whether a meter answers on it is unknown
            rows.append({"uri": f"serial:{p['device']}", "available": None,
                         "detail": " ".join(x for x in (p.get("description", ""), "(port present, not probed)") if x),
                         "fix": f"calibrate meters --probe {p['device']}"})
    except ImportError:
        pass
    from drivers.discover import available_meters

    rows.extend(available_meters())
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        mark = {True: "ok ", None: "?  "}.get(r.get("available"), "-- ")
        say(f"{mark} {r['uri']:<28} {r.get('detail', '')}")
        if r.get("fix") and not r.get("available"):
            say(f"     {'probe' if r.get('available') is None else 'fix'}: {r['fix']}")
    say("simulators (no hardware): " + ", ".join(f"sim:{k}" for k in _simulator_kinds()))
    return 0


def _simulator_kinds() -> list[str]:
    from drivers.sim.registry import SIMULATORS

    return sorted(SIMULATORS)


def cmd_simulate(args: argparse.Namespace) -> int:
    from drivers.sim.registry import make_simulator

    opts: dict[str, Any] = {}
    if args.signal:
        opts["signal"] = args.signal
    if args.faults:
        opts["faults"] = args.faults
    sim = make_simulator(args.kind, **opts)
    uri = sim.start()
    say(uri)
    say(f"simulating {args.kind}; pass  --meter '{uri}'  (Ctrl-C to stop)", err=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    try:
        stop.wait(args.seconds if args.seconds else None)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


# --------------------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    from calibrate.demo import demo_plan

    plan = demo_plan(args)
    plan.export_figures = bool(args.figures)
    say("calibrate demo: a simulated Watts Up? wall meter (its power follows this machine's real CPU load)")
    shown = {k: plan.params[k] for k in ("duration_s", "image_size", "batch_size", "optimizer", "lr")
             if plan.params.get(k)}
    say(f"  vs software meters on this machine ({', '.join(plan.meters[1:])}); workload {plan.workload} "
        + ", ".join(f"{k}={v}" for k, v in shown.items()))
    return run_plan(args, plan)


# --------------------------------------------------------------------------- parser
def _add_analysis_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reference", metavar="CHANNEL", help="reference channel (default: the wall meter)")
    p.add_argument("--candidate", action="append", metavar="EXPR",
                   help="candidate channel or sum a+b (repeatable; default: every other channel)")
    p.add_argument("--window", type=float, metavar="S", help="comparison window (s; default from the slowest meter)")
    p.add_argument("--location", metavar="CODE", help="grid location for CO2 (ISO country code, e.g. FR, US; default WORLD)")
    p.add_argument("--intensity", type=float, metavar="G_PER_KWH", help="grid carbon intensity override (g CO2/kWh)")
    p.add_argument("--pue", type=float, help="data-centre PUE to apply to wall energy for CO2 (default 1)")
    p.add_argument("--figures", action="store_true",
                   help="also write every figure as SVG and PDF and the window pairs as CSV in the session's "
                        "figures/ (for a paper; a few seconds more)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="calibrate", description="Calibrate software energy meters against a wall-socket wattmeter.")
    p.add_argument("--version", action="version", version=f"calibrate {__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)

    r = sub.add_parser("run", help="record meters while a workload runs")
    r.add_argument("--meter", action="append", metavar="URI", help="meter URI (repeatable); see `calibrate meters`")
    r.add_argument("--workload", metavar="NAME", help="idle, step, square, cpu-stress, vgg16, resnet50, ... or a command after --")
    r.add_argument("--duration", type=float, metavar="S", help="workload duration (s)")
    r.add_argument("--epochs", type=int, metavar="N", help="CNN workloads: training epochs (see `calibrate workloads NAME`)")
    r.add_argument("--steps", type=int, metavar="N", help="CNN workloads: stop after N optimiser steps")
    r.add_argument("--batch-size", type=int, metavar="N", help="CNN workloads: images per step")
    r.add_argument("--image-size", type=int, metavar="PX", help="CNN workloads: image side (pixels)")
    r.add_argument("--device", help="cpu, cuda, cuda:1, mps, auto")
    r.add_argument("--seed", type=int, help="random seed of the workload (data, initial weights)")
    r.add_argument("--nproc-per-node", type=int, metavar="N",
                   help="CNN workloads: train with N processes here, DistributedDataParallel under torchrun")
    r.add_argument("--nnodes", type=int, metavar="M", help="CNN workloads: nodes in a distributed run (default 1)")
    r.add_argument("--node-rank", type=int, metavar="R", help="CNN workloads: this node's rank, 0..M-1")
    r.add_argument("--rdzv-endpoint", metavar="HOST:PORT",
                   help="CNN workloads: rendezvous of a multi-node run (node 0's address, the same on every node)")
    r.add_argument("--backend", choices=("auto", "gloo", "nccl"),
                   help="CNN workloads: torch.distributed backend (default auto: nccl on cuda, else gloo)")
    r.add_argument("-p", "--param", action="append", metavar="KEY=VALUE", help="other workload option (repeatable)")
    r.add_argument("--baseline", type=float, default=3.0, metavar="S", help="idle baseline before and after (s, default 3)")
    r.add_argument("--cooldown-max", type=float, default=0.0, metavar="S",
                   help="after the workload, wait up to S s for the reference power to return near idle")
    r.add_argument("--cooldown-tolerance", type=float, default=0.05, metavar="FRACTION",
                   help="how near idle counts as cooled down (default 0.05)")
    r.add_argument("--out", metavar="DIR", help="session folder (default: a new one under sessions/)")
    r.add_argument("--no-report", action="store_true", help="record only")
    _add_progress_opts(r)
    _add_analysis_opts(r)
    r.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ...: any command as the workload")
    r.set_defaults(func=cmd_run)

    rep = sub.add_parser("report", help="analyse a session: report.html and summary.json")
    rep.add_argument("session", metavar="SESSION", help="session folder (from `calibrate run` or `calibrate import`)")
    _add_analysis_opts(rep)
    rep.set_defaults(func=cmd_report)

    a = sub.add_parser("agree", help="agreement statistics on paired data in a CSV")
    a.add_argument("data", metavar="DATA.csv", help="a CSV with one row per paired measurement")
    a.add_argument("--reference", required=True, metavar="COL", help="column of the reference values")
    a.add_argument("--candidate", required=True, metavar="COL", help="column of the candidate values (difference = candidate - reference)")
    a.add_argument("--method", default="ols", choices=["ols", "deming", "passing-bablok"],
                   help="regression of candidate on reference (default ols)")
    a.add_argument("--ratio", type=float, default=1.0, help="Deming error-variance ratio: reference error variance / candidate error variance (default 1, as R mcr error.ratio)")
    a.add_argument("--subject", metavar="COL", help="subject/run column: repeated-measures Bland-Altman")
    a.add_argument("--json", action="store_true", help="print the statistics as JSON (the DESIGN keys)")
    a.set_defaults(func=cmd_agree)

    m = sub.add_parser("meters", help="what can be measured here, and why not")
    m.add_argument("--probe", metavar="PORT|HOST:PORT|URI",
                   help="try the known protocols on a serial port, socket, Modbus-TCP or plug host; "
                        "prints the --meter URI to use")
    m.add_argument("--json", action="store_true", help="print the list as JSON")
    m.set_defaults(func=cmd_meters)

    s = sub.add_parser("simulate", help="run a meter simulator and print the URI to use")
    s.add_argument("kind", help="wattsup, wt310, sdm120, sdm230, sdm630, tasmota, shelly")
    s.add_argument("--signal", help="host | constant:W | steps:W1,W2@S | square:LOW,HIGH@PERIOD[/DUTY] | csv:PATH")
    s.add_argument("--faults", help="e.g. garbage:0.05,drop:10+3")
    s.add_argument("--seconds", type=float, help="stop after S seconds (default: until Ctrl-C)")
    s.set_defaults(func=cmd_simulate)

    d = sub.add_parser("demo", help="the whole flow on this machine, no hardware")
    d.add_argument("--duration", type=float, default=None, metavar="S", help="cap on the training (s, default 90; the demo's ResNet-18 ends after 3 epochs, about 20-40 s on 2 cores)")
    d.add_argument("--workload", default=None, help="demo load (default resnet18 if torch is installed, else square; see `calibrate workloads`)")
    d.add_argument("--out", metavar="DIR", help="session folder (default: a new one under sessions/)")
    d.add_argument("--baseline", type=float, default=10.0, metavar="S", help="idle baseline before and after (s, default 10)")
    _add_progress_opts(d)
    d.set_defaults(func=cmd_demo, no_report=False, param=None, command=None)
    _add_analysis_opts(d)

    w = sub.add_parser("watch", help="show what meters read, live, recording nothing")
    w.add_argument("uri", nargs="+", metavar="URI", help="meter URI (as for --meter)")
    w.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds (default: until Ctrl-C)")
    w.add_argument("--plain", action="store_true",
                   help="one plain line a second (the default when stdout is not a terminal)")
    w.set_defaults(func=cmd_watch)

    from calibrate.analysis_cli import add_analysis_commands
    from calibrate.campaign import add_campaign_command
    from calibrate.multihost_cli import add_multihost_commands
    from calibrate.ptd_shim import add_ptd_shim_command
    from calibrate.workloads_cli import add_workloads_command

    add_analysis_commands(sub)
    add_campaign_command(sub)
    add_workloads_command(sub)
    add_multihost_commands(sub)
    add_ptd_shim_command(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from drivers.base import MeterConfigError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "cmd", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except (UsageError, MeterConfigError) as exc:
        say(f"calibrate: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", err=True)
        return 2
    except KeyboardInterrupt:
        say("calibrate: interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:
        if os.environ.get("CALIBRATE_DEBUG"):
            raise
        say(f"calibrate: error: {type(exc).__name__}: {exc} (set CALIBRATE_DEBUG=1 for a traceback)", err=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
