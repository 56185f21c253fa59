"""Every command and option of `calibrate` says what it is for (and in which unit)."""

from __future__ import annotations

import argparse
import re

from calibrate.cli import build_parser


def _undocumented(parser: argparse.ArgumentParser, path: str) -> list[str]:
    out = []
    for action in parser._actions:  # argparse has no public walk of its actions
        if isinstance(action, argparse._SubParsersAction):
            names = {c.dest for c in action._choices_actions}
            for name, sub in action.choices.items():
                if name not in names:
                    out.append(f"{path} {name} (command)")
                out += _undocumented(sub, f"{path} {name}")
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)) and not (action.help or "").strip():
            out.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return out


def test_every_option_has_help_text() -> None:
    assert _undocumented(build_parser(), "calibrate") == []


def test_options_with_a_unit_name_it() -> None:
    p = build_parser()
    run = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices["run"]
    helps = {o: a.help for a in run._actions for o in a.option_strings}
    for opt in ("--duration", "--baseline", "--cooldown-max", "--window"):
        assert re.search(r"\(s[,;)]|\bS s\b", helps[opt]), (opt, helps[opt])  # "(s, ...)" or "S s"
