"""``python -m workloads NAME [--params JSON] [-- COMMAND ...]``: run one workload here.

Events go to the pipe named by ``CALIBRATE_EVENTS_FD`` (see :mod:`workloads.events`),
progress lines to stderr.  Exit codes: 0 done (also when stopped by SIGTERM/SIGINT, after
ending the running phase and emitting a result), 2 bad name / parameters / missing data
(one line on stderr), 1 anything else.  The ``command`` workload exits with its command's
code (128 + N when a signal N ended it, 0 when we stopped it at duration_s or on request).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import NoReturn

from . import _stop, events, registry


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def _list() -> str:
    lines = []
    for name in registry.names():
        spec = registry.get(name)
        lines.append(f"  {name:16s} {spec.category:12s} {spec.description}")
    lines.append("  any torchvision classification model name (cnn), e.g. vgg11_bn, convnext_tiny")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in args:
        i = args.index("--")
        args, command = args[:i], args[i + 1 :]
    parser = _Parser(
        prog="python -m workloads",
        description="Run one workload in this process, emitting events for the recorder.",
        epilog="parameters: `python -m workloads --list`, or workloads.registry.get(NAME).params",
    )
    parser.add_argument("name", nargs="?", help="workload name (see --list)")
    parser.add_argument("--params", default="{}", help="parameters as a JSON object, e.g. '{\"epochs\": 2}'")
    parser.add_argument("--list", action="store_true", help="list the named workloads and exit")
    ns = parser.parse_args(args)
    if ns.list:
        print(_list())
        return 0
    if not ns.name:
        parser.error("a workload name is required")
    name = ns.name
    try:
        try:
            params = json.loads(ns.params)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--params is not valid JSON ({exc.msg} at char {exc.pos})") from None
        if not isinstance(params, dict):
            raise ValueError("--params must be a JSON object")
        workload = registry.prepare(name, params, command)
        _stop.install()
        if os.environ.get(events.ENV_FD):  # started by the recorder: do not outlive it
            _stop.watch_parent()
        if workload.category == "cnn":
            from . import cnn

            cnn.run(name, params)
        elif workload.category == "calibration":
            from . import load_shapes

            load_shapes.run(name, params)
        else:
            from .command import run_command_outcome

            rc, stopped = run_command_outcome(command, workload.params["duration_s"])
            return 0 if stopped else (rc if rc >= 0 else 128 - rc)
    except ValueError as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"workloads {name}: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
