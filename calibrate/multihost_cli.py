"""``calibrate agent`` (record this host's meters for a coordinator) and ``calibrate merge``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from calibrate.errors import UsageError


def add_multihost_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``calibrate agent`` and ``calibrate merge``."""
    from calibrate.agent_protocol import DEFAULT_PORT

    p = sub.add_parser(
        "agent", help="record this host's meters for a coordinator on another host",
        description="Serve this host's meters to a coordinator (`calibrate run --meter agent://HOST:PORT`). "
                    "Each session it is asked for is recorded here, complete on its own, under --out; the "
                    "coordinator probes this host's clock, fetches the session at the stop and merges it. "
                    "Set CALIBRATE_AGENT_TOKEN on both hosts to refuse strangers; bind beyond 127.0.0.1 "
                    "only on a trusted network.")
    p.add_argument("--meter", action="append", required=True, metavar="URI",
                   help="a meter of this host (repeatable), as for `calibrate run`")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"TCP port to listen on (default {DEFAULT_PORT}; 0 picks a free one and prints it)")
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--out", default="agent-sessions", help="folder the sessions go in (default agent-sessions)")
    p.add_argument("--name", default=None, help="this host's name in merged sessions (default: hostname)")
    p.set_defaults(func=cmd_agent)

    m = sub.add_parser(
        "merge", help="merge the agent hosts of a multi-host session onto its clock, into a new folder",
        description="Fit each agent host's clock from the session's probes (offset and drift, with 95 % "
                    "intervals) and write a new session folder with every host's channels on the "
                    "coordinator clock as HOST.CHANNEL.  `calibrate run` does this itself; use merge "
                    "when a host's session had to be copied by hand (--host NAME=PATH).")
    m.add_argument("session", help="the coordinator's session folder")
    m.add_argument("--host", action="append", default=[], metavar="NAME=PATH",
                   help="use the agent session at PATH for host NAME (repeatable)")
    m.add_argument("--out", required=True, help="the new folder (must not exist or be empty)")
    m.set_defaults(func=cmd_merge)


def cmd_agent(args: argparse.Namespace) -> int:
    from calibrate.agent import Agent, run_agent
    from calibrate.clock import clock_from_env
    from calibrate.remote import TOKEN_ENV


    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0-65535, got {args.port}")
    try:
        clock, skew = clock_from_env()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        agent = Agent(args.meter, args.out, name=args.name, clock=clock, token=os.environ.get(TOKEN_ENV) or None,
                      test_clock=skew.to_json() if skew else None)
    except ValueError as exc:  # a bad --name
        raise UsageError(str(exc)) from None
    if args.bind not in ("127.0.0.1", "::1", "localhost") and not agent.token:
        print(f"calibrate agent: warning: listening on {args.bind} without {TOKEN_ENV}: anyone who can reach "
              "this port can start and fetch sessions", file=sys.stderr)
    try:
        return run_agent(agent, args.bind, args.port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.bind}:{args.port}: {exc.strerror or exc}") from None


def cmd_merge(args: argparse.Namespace) -> int:
    from analysis.merge import merge_sessions
    from analysis.numbers import fmt_number
    from analysis.session_format import SessionError

    hosts: dict[str, Path] = {}
    for spec in args.host:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--host wants NAME=PATH, got {spec[:80]!r}")
        hosts[name] = Path(path)
    try:
        result = merge_sessions(args.session, args.out, hosts)
    except (SessionError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    except FileExistsError as exc:
        raise UsageError(str(exc)) from None
    for h in result.hosts:
        if h.status == "merged" and h.fit is not None:
            f = h.fit
            print(f"{h.name}: merged {len(h.channels)} channel(s), offset {_ms(f.offset_ns)} "
                  f"+- {_ms(f.offset_ci95_ns)}, drift {fmt_number(f.drift_ppm, 2, ' ppm', grouping=False)} +- "
                  f"{fmt_number(f.drift_ci95_ppm, 2, ' ppm', missing='unknown')}, "
                  f"clock uncertainty {_ms(f.uncertainty_ns())} (n={f.n_used} of {f.n_probes} probes)")
            for w in f.warnings:
                print(f"  caveat: {w}")
        else:
            print(f"{h.name}: NOT merged: {h.reason}")
    print(f"wrote {result.path}" + (f" (incomplete: {', '.join(result.incomplete)} missing)"
                                    if result.incomplete else ""))
    return 0



def _ms(ns: float) -> str:
    """A time in ns shown in ms (``unknown`` when not finite)."""
    from analysis.numbers import fmt_number

    return fmt_number(ns / 1e6, 3, " ms", missing="unknown", grouping=False)
