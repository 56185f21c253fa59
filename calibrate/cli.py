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
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from calibrate import __version__
from calibrate.errors import UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        raise UsageError(f"{message} (see `{self.prog} --help`)")


# --------------------------------------------------------------------------- helpers
def _say(msg: str = "", *, err: bool = False) -> None:
    try:
        print(msg, file=sys.stderr if err else sys.stdout, flush=True)
    except BrokenPipeError:  # `calibrate run ... | head`: keep recording, stop talking
        pass


def _parse_params(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"workload option {item!r} must be KEY=VALUE")
        out[key.strip().replace("-", "_")] = value
    return out


def _fmt(v: Any, unit: str = "", digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return f"{v:,.{digits}f}{unit}"


def print_summary_table(summary: dict[str, Any], path: Path) -> None:
    """The short table `run`/`demo`/`report` end with."""
    meters = summary.get("meters", {})
    ref = summary.get("reference")
    rows = [("channel", "source", "energy", "mean power", "samples", "faults")]
    for cid, m in meters.items():
        faults = sum((m.get("errors") or {}).values())
        tag = " (reference)" if cid == ref else ""
        rows.append((cid + tag, m.get("source", ""), _fmt(m.get("energy_j"), " J"),
                     _fmt(m.get("mean_power_w"), " W"), str(m.get("samples", 0)), str(faults)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        _say("  " + "  ".join(c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            _say("  " + "  ".join("-" * w for w in widths))
    agreement = summary.get("agreement") or []
    if agreement:
        _say("")
        _say(f"  agreement with {ref} (candidate - reference, over {agreement[0].get('window_s', 0):.0f} s windows):")
        for a in agreement:
            ba, reg = a.get("bland_altman", {}), a.get("regression", {})
            if ba.get("bias") is None:
                _say(f"    {a['candidate']}: not compared: {a.get('error', 'no common windows')} "
                     "(record longer, or pass a shorter --window)")
                continue
            cal = a.get("calibration", {})
            _say(f"    {a['candidate']}: lag {_fmt(a.get('lag_s'), ' s', 2)}, n={a.get('n_windows')}, "
                 f"bias {_fmt(ba.get('bias'), ' W')} [LoA {_fmt(ba.get('loa_low'), '')}, {_fmt(ba.get('loa_high'), ' W')}], "
                 f"CCC {_fmt((a.get('ccc') or {}).get('value'), '', 3)}; "
                 + (f"wall = {_fmt(cal.get('intercept'), ' W')} + {_fmt(cal.get('slope'), '', 3)} x {a['candidate']}"
                    if cal and cal.get("slope") is not None else
                    f"wall = {_fmt(cal.get('intercept'), ' W')} + {a['candidate']} (constant: no gain)" if cal
                    else f"slope {_fmt(reg.get('slope'), '', 3)}"))
    w = summary.get("workload") or {}
    if w.get("accuracy") is not None:
        _say(f"\n  workload {w.get('name')}: accuracy {w['accuracy']:.3f}"
             + (f", {w['images_per_s']:.1f} images/s" if w.get("images_per_s") else ""))
    em = summary.get("emissions") or {}
    if em.get("co2_g") is not None:
        _say(f"  CO2: {em['co2_g']:.2f} g at {em['intensity_g_per_kwh']:.0f} g/kWh ({em.get('location')}, {em.get('source')})")
    for warning in summary.get("warnings", []):
        _say(f"  warning: {warning}")
    _say(f"\nsession: {path}")


def _analyse(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    from analysis.report import write_report

    return write_report(path, reference=getattr(args, "reference", None),
                        candidates=getattr(args, "candidate", None) or None,
                        window_s=getattr(args, "window", None),
                        location=getattr(args, "location", None),
                        intensity=getattr(args, "intensity", None),
                        pue=getattr(args, "pue", None))


# --------------------------------------------------------------------------- run
def _build_meters(uris: Sequence[str]) -> list[Any]:
    from drivers.uri import make_meter

    meters = []
    try:
        for uri in uris:
            meters.append(make_meter(uri))
    except BaseException:
        for m in meters:
            try:
                m.release()
            except Exception:
                pass
        raise
    return meters


def _workload_params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for flag, key in (("duration", "duration_s"), ("epochs", "epochs"), ("steps", "steps"),
                      ("batch_size", "batch_size"), ("image_size", "image_size"), ("device", "device"),
                      ("seed", "seed")):
        v = getattr(args, flag, None)
        if v is not None:
            params[key] = v
    params.update(_parse_params(args.param or []))
    return params


def cmd_run(args: argparse.Namespace) -> int:
    command = list(args.command or [])
    if command and command[0] == "--":
        command = command[1:]
    if not args.meter:
        raise UsageError("give at least one --meter (e.g. --meter sim:wattsup --meter cpu-model); see `calibrate meters`")
    name = args.workload or ("command" if command else None)
    if name is None:
        raise UsageError("give --workload NAME (e.g. idle, square, vgg16) or a command after --")
    params = _workload_params(args)
    if name == "command":
        if not command:
            raise UsageError("--workload command needs the command after -- (e.g. -- python train.py)")
        argv = command
        extra = set(params) - {"duration_s", "seed"}
        if extra:
            raise UsageError(f"options {', '.join(sorted(extra))} do not apply to an external command")
    else:
        if command:
            raise UsageError(f"a command after -- runs as the workload; drop --workload {name} or the command")
        from workloads.registry import command_for, validate_params

        try:
            params = validate_params(name, params)
        except ValueError as exc:  # UnknownWorkload is a ValueError
            raise UsageError(str(exc).splitlines()[0]) from None
        argv = command_for(name, params)
    return record(args.meter, name, params, argv, args)


def record(uris: Sequence[str], name: str, params: dict[str, Any], argv: list[str],
           args: argparse.Namespace) -> int:
    """Record a session while ``argv`` runs; print progress, the summary table and the path."""
    from calibrate.bench import GRACE_S, cooldown, run_workload, sampled_idle
    from calibrate.session import Session

    _check_analysis_options(args)  # before an hour of recording, not after
    meters = _build_meters(uris)
    names = [m.name for m in meters]
    if args.reference and args.reference not in names and not any(
            args.reference.startswith(n + ".") for n in names):
        for m in meters:
            m.release()
        raise UsageError(f"--reference {args.reference!r} is none of the meters ({', '.join(names)})")
    session = Session(meters, out=args.out, uris=uris, reference=args.reference,
                      workload={"name": name, "parameters": params, "argv": argv})
    stop = threading.Event()
    try:
        session.start()
    except FileExistsError as exc:
        raise UsageError(str(exc)) from None
    for m in meters:  # after open: some notes (no energy counter, modelled components) come from the device
        for note in dict.fromkeys(m.notes):
            _say(f"note: {note}")
        for ch in m.channels:
            if ch.source != "measured" and not any("MODELLED" in n for n in m.notes):
                _say(f"note: {ch.id} is MODELLED, not measured ({m.kind})")
    _say(f"recording {len(meters)} meter(s) into {session.path}; workload {name}")

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    old = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    t_start = time.monotonic()

    def progress(run: Any) -> None:
        if args.quiet:
            return
        parts = []
        assert session.recorder is not None
        for st in session.recorder.states.values():
            for cid, vals in st.last.items():
                if "power_w" in vals:
                    parts.append(f"{cid} {vals['power_w']:.1f} W")
            if not st.connected:
                parts.append(f"{st.meter.name} RECONNECTING")
        phase = f" [{run.phase}]" if run and run.phase else ""
        _say(f"  {time.monotonic() - t_start:6.1f} s{phase}  " + ", ".join(parts), err=True)

    status = "complete"
    run = None
    try:
        idle_w = sampled_idle(session, "baseline-before", args.baseline, stop, args.reference)
        if not stop.is_set():
            duration = params.get("duration_s")
            # an external command is stopped at the duration; a built-in workload keeps its
            # own clock (it starts after the interpreter) and gets a grace to finish evaluating
            stop_after = (duration if name == "command" else duration + GRACE_S) if duration else None
            run = run_workload(session, argv, session.path / "workload.log", stop, progress,
                               phase_name="workload", stop_after_s=stop_after)
        cooldown(session, idle_w, getattr(args, "cooldown_tolerance", 0.05), getattr(args, "cooldown_max", 0.0),
                 stop, args.reference)
        sampled_idle(session, "baseline-after", args.baseline if not stop.is_set() else 0, stop, args.reference)
        if stop.is_set():
            status = "interrupted"
        elif run is not None and run.returncode not in (0, None) and not run.terminated:
            status = "workload_failed"
    except FileNotFoundError as exc:
        status = "workload_failed"
        _say(f"calibrate: {exc}", err=True)
    except BaseException:
        status = "failed"  # whatever went wrong here, the session must not claim to be complete
        raise
    finally:
        if run is not None:
            session.workload.update({"returncode": run.returncode, "terminated_at_duration": run.terminated,
                                     "result": run.result})
        session.stop(status)
        signal.signal(signal.SIGINT, old)
        signal.signal(signal.SIGTERM, old_term)
    if status == "workload_failed":
        _say(f"calibrate: the workload failed (exit {run.returncode if run else '?'}); its output is in "
             f"{session.path / 'workload.log'}", err=True)
    summary = None
    if not args.no_report:
        try:
            summary = _analyse(session.path, args)
        except Exception as exc:  # recorded data is safe; say why the report failed
            if os.environ.get("CALIBRATE_DEBUG"):
                raise
            _say(f"calibrate: report failed: {type(exc).__name__}: {exc} (data kept in {session.path})", err=True)
            return 1
    if summary is not None:
        _say("")
        print_summary_table(summary, session.path)
        _say(f"report: {session.path / 'report.html'}")
    else:
        _say(f"session: {session.path}")
    if status == "interrupted":
        _say(f"calibrate: interrupted; what was recorded is in {session.path}", err=True)
    return 0 if status == "complete" else 1


# --------------------------------------------------------------------------- report / agree
def _check_analysis_options(args: argparse.Namespace) -> None:
    """Reject bad --location/--intensity/--pue/--window before any work (exit 2)."""
    import math

    from analysis.emissions import lookup_intensity

    window = getattr(args, "window", None)
    if window is not None and not (math.isfinite(window) and window > 0):
        raise UsageError(f"--window must be a positive number of seconds, got {window}")
    intensity = getattr(args, "intensity", None)
    if intensity is not None and not (math.isfinite(intensity) and intensity >= 0):
        raise UsageError(f"--intensity must be >= 0 g CO2/kWh, got {intensity}")
    pue = getattr(args, "pue", None)
    if pue is not None and not (math.isfinite(pue) and pue >= 1):
        raise UsageError(f"--pue must be >= 1 (facility energy / IT energy), got {pue}")
    if intensity is None and getattr(args, "location", None):
        try:
            lookup_intensity(args.location)
        except ValueError as exc:
            raise UsageError(str(exc)) from None


def cmd_report(args: argparse.Namespace) -> int:
    from analysis.load import SessionError

    _check_analysis_options(args)
    try:
        summary = _analyse(Path(args.session), args)
    except (SessionError, ValueError) as exc:  # a bad --reference/--candidate, an unusable session
        raise UsageError(str(exc).splitlines()[0]) from None
    print_summary_table(summary, Path(args.session))
    _say(f"report: {Path(args.session) / 'report.html'}")
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
    result = {"reference": args.reference, "candidate": args.candidate, **result}
    if args.json:
        print(json.dumps(result, indent=2, default=float))
        return 0
    from analysis.report import agreement_markdown

    print(agreement_markdown(result))
    return 0


# --------------------------------------------------------------------------- meters / simulate
def cmd_meters(args: argparse.Namespace) -> int:
    if args.probe:
        from drivers.probe import probe_port

        found = probe_port(args.probe)
        if not found:
            _say(f"{args.probe}: no known protocol answered (tried wattsup, wt310, Modbus profiles)")
            return 1
        for protocol, identity in found:
            _say(f"{args.probe}: {protocol} answered: {identity}")
        return 0
    rows: list[dict[str, Any]] = []
    try:
        from drivers.probe import list_serial_ports

        for p in list_serial_ports():
            rows.append({"uri": f"serial:{p['device']}", "available": True,
                         "detail": p.get("description", ""), "fix": p.get("hint", "")})
    except ImportError:
        pass
    from drivers.discover import available_meters

    rows.extend(available_meters())
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        mark = "ok " if r.get("available") else "-- "
        _say(f"{mark} {r['uri']:<28} {r.get('detail', '')}")
        if r.get("fix") and not r.get("available"):
            _say(f"     fix: {r['fix']}")
    _say("simulators (no hardware): " + ", ".join(f"sim:{k}" for k in _simulator_kinds()))
    return 0


def _simulator_kinds() -> list[str]:
    from drivers.sim import SIMULATORS

    return sorted(SIMULATORS)


def cmd_simulate(args: argparse.Namespace) -> int:
    from drivers.sim import make_simulator

    opts: dict[str, Any] = {}
    if args.signal:
        opts["signal"] = args.signal
    if args.faults:
        opts["faults"] = args.faults
    sim = make_simulator(args.kind, **opts)
    uri = sim.start()
    _say(uri)
    _say(f"simulating {args.kind}; pass  --meter '{uri}'  (Ctrl-C to stop)", err=True)
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

    uris, name, params, argv = demo_plan(args)
    _say("calibrate demo: a simulated Watts Up? wall meter (its power follows this machine's real CPU load)")
    shown = {k: params[k] for k in ("duration_s", "image_size", "batch_size", "optimizer", "lr") if params.get(k)}
    _say(f"  vs software meters on this machine ({', '.join(uris[1:])}); workload {name} "
         + ", ".join(f"{k}={v}" for k, v in shown.items()))
    args.reference = args.reference or "wattsup"
    return record(uris, name, params, argv, args)


# --------------------------------------------------------------------------- parser
def _add_analysis_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reference", metavar="CHANNEL", help="reference channel (default: the wall meter)")
    p.add_argument("--candidate", action="append", metavar="EXPR",
                   help="candidate channel or sum a+b (repeatable; default: every other channel)")
    p.add_argument("--window", type=float, metavar="S", help="comparison window (s; default from the slowest meter)")
    p.add_argument("--location", metavar="CODE", help="grid location for CO2 (ISO country code, e.g. FR, US; default WORLD)")
    p.add_argument("--intensity", type=float, metavar="G_PER_KWH", help="grid carbon intensity override (g CO2/kWh)")
    p.add_argument("--pue", type=float, help="data-centre PUE to apply to wall energy for CO2 (default 1)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="calibrate", description="Calibrate software energy meters against a wall-socket wattmeter.")
    p.add_argument("--version", action="version", version=f"calibrate {__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)

    r = sub.add_parser("run", help="record meters while a workload runs")
    r.add_argument("--meter", action="append", metavar="URI", help="meter URI (repeatable); see `calibrate meters`")
    r.add_argument("--workload", metavar="NAME", help="idle, step, square, cpu-stress, vgg16, resnet50, ... or a command after --")
    r.add_argument("--duration", type=float, metavar="S", help="workload duration (s)")
    r.add_argument("--epochs", type=int)
    r.add_argument("--steps", type=int)
    r.add_argument("--batch-size", type=int)
    r.add_argument("--image-size", type=int)
    r.add_argument("--device", help="cpu, cuda, cuda:1, mps, auto")
    r.add_argument("--seed", type=int)
    r.add_argument("-p", "--param", action="append", metavar="KEY=VALUE", help="other workload option (repeatable)")
    r.add_argument("--baseline", type=float, default=3.0, metavar="S", help="idle baseline before and after (s, default 3)")
    r.add_argument("--cooldown-max", type=float, default=0.0, metavar="S",
                   help="after the workload, wait up to S s for the reference power to return near idle")
    r.add_argument("--cooldown-tolerance", type=float, default=0.05, metavar="FRACTION",
                   help="how near idle counts as cooled down (default 0.05)")
    r.add_argument("--out", metavar="DIR", help="session folder (default: a new one under sessions/)")
    r.add_argument("--no-report", action="store_true", help="record only")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    _add_analysis_opts(r)
    r.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ...: any command as the workload")
    r.set_defaults(func=cmd_run)

    rep = sub.add_parser("report", help="analyse a session: report.html and summary.json")
    rep.add_argument("session", metavar="SESSION")
    _add_analysis_opts(rep)
    rep.set_defaults(func=cmd_report)

    a = sub.add_parser("agree", help="agreement statistics on paired data in a CSV")
    a.add_argument("data", metavar="DATA.csv")
    a.add_argument("--reference", required=True, metavar="COL")
    a.add_argument("--candidate", required=True, metavar="COL")
    a.add_argument("--method", default="ols", choices=["ols", "deming", "passing-bablok"])
    a.add_argument("--ratio", type=float, default=1.0, help="Deming error-variance ratio: reference error variance / candidate error variance (default 1, as R mcr error.ratio)")
    a.add_argument("--subject", metavar="COL", help="subject/run column: repeated-measures Bland-Altman")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_agree)

    m = sub.add_parser("meters", help="what can be measured here, and why not")
    m.add_argument("--probe", metavar="PORT", help="try the known protocols on PORT")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_meters)

    s = sub.add_parser("simulate", help="run a meter simulator and print the URI to use")
    s.add_argument("kind", help="wattsup, wt310, sdm120, sdm230, sdm630, tasmota, shelly")
    s.add_argument("--signal", help="host | constant:W | steps:W1,W2@S | square:LOW,HIGH@PERIOD[/DUTY] | csv:PATH")
    s.add_argument("--faults", help="e.g. garbage:0.05,drop:10+3")
    s.add_argument("--seconds", type=float, help="stop after S seconds (default: until Ctrl-C)")
    s.set_defaults(func=cmd_simulate)

    d = sub.add_parser("demo", help="the whole flow on this machine, no hardware")
    d.add_argument("--duration", type=float, default=None, metavar="S", help="training time (s, default 90)")
    d.add_argument("--workload", default=None, help="demo load (default vgg16 if torch is installed, else square)")
    d.add_argument("--out", metavar="DIR")
    d.add_argument("--baseline", type=float, default=10.0, metavar="S")
    d.add_argument("-q", "--quiet", action="store_true")
    d.set_defaults(func=cmd_demo, no_report=False, param=None, command=None)
    _add_analysis_opts(d)

    from calibrate.cli_more import add_more_commands

    add_more_commands(sub)
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
        _say(f"calibrate: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", err=True)
        return 2
    except KeyboardInterrupt:
        _say("calibrate: interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:
        if os.environ.get("CALIBRATE_DEBUG"):
            raise
        _say(f"calibrate: error: {type(exc).__name__}: {exc} (set CALIBRATE_DEBUG=1 for a traceback)", err=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
