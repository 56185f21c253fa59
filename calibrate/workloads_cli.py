"""``calibrate workloads [NAME] [--json]``: each workload with its ``-p`` parameters.

Everything shown comes from :func:`workloads.registry.parameters` (type, default, unit,
allowed range, meaning); this module only lays it out.  Names and texts go through
:func:`analysis.escape.terminal_text`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from analysis.escape import terminal_text
from calibrate.errors import UsageError

COLUMNS = ("parameter", "type", "default", "unit", "range", "meaning")


def _default_text(value: Any) -> str:
    """A default as one would type it after ``-p KEY=``: none, true/false, numbers, strings."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def describe(name: str) -> dict[str, Any]:
    """One workload as a JSON-ready dict: name, category, description, parameters (list of
    dicts with name, type, default, unit, range, meaning); UsageError on an unknown name."""
    from workloads.registry import UnknownWorkload, get, parameters

    try:
        spec = get(name)
        params = parameters(name)
    except UnknownWorkload as exc:
        raise UsageError(str(exc)) from None
    return {"name": spec.name, "category": spec.category, "description": spec.description,
            "parameters": [{"name": p.name, "type": p.type, "default": p.default, "unit": p.unit,
                            "range": p.range, "meaning": p.meaning} for p in params]}


def format_workload(w: dict[str, Any]) -> str:
    """A :func:`describe` dict as a readable section: a title line, the description, then a
    table of the parameters (one row each, columns :data:`COLUMNS`)."""
    rows = [[terminal_text(p["name"]), p["type"], terminal_text(_default_text(p["default"])),
             terminal_text(p["unit"]), terminal_text(p["range"]), terminal_text(p["meaning"], max_len=None)]
            for p in w["parameters"]]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS[:-1])]
    lines = [f"{terminal_text(w['name'])} ({terminal_text(w['category'])})",
             f"  {terminal_text(w['description'], max_len=None)}"]

    def line(cells: list[str]) -> str:
        return "  " + "  ".join(c.ljust(n) for c, n in zip(cells[:-1], widths, strict=True)) + "  " + cells[-1]

    lines.append(line(list(COLUMNS)))
    lines.append(line(["-" * n for n in widths] + ["-" * len(COLUMNS[-1])]))
    lines += [line(r) for r in rows]
    return "\n".join(lines)


def cmd_workloads(args: argparse.Namespace) -> int:
    """Print every named workload (or ``args.name``) with its parameters; ``--json``: as JSON."""
    from workloads.registry import names

    listing = [describe(args.name)] if args.name else [describe(n) for n in names()]
    if args.json:
        print(json.dumps({"workloads": listing}, indent=2))
        return 0
    text = "\n\n".join(format_workload(w) for w in listing)
    if not args.name:
        text += ("\n\nany torchvision classification model name is a cnn workload too (e.g. vgg11_bn, "
                 "convnext_tiny): `calibrate workloads NAME` shows its parameters")
    text += "\n\nset them with `calibrate run --workload NAME -p KEY=VALUE` (none: not set)"
    print(text)
    return 0


def add_workloads_command(sub: argparse._SubParsersAction) -> None:
    """Register ``calibrate workloads`` on the CLI's subparsers."""
    p = sub.add_parser("workloads", help="each workload with its -p parameters: default, unit, range, meaning")
    p.add_argument("name", nargs="?", metavar="NAME", help="show this workload only (any torchvision model too)")
    p.add_argument("--json", action="store_true", help="machine-readable: {\"workloads\": [...]}")
    p.set_defaults(func=cmd_workloads)
