"""Further commands (fit, correct, characterize, compare, campaign) hooked into the parser."""

from __future__ import annotations

import argparse


def add_more_commands(sub: argparse._SubParsersAction) -> None:
    """Register the analysis and campaign commands on ``sub``."""
