"""`calibrate agent` and `calibrate merge` (in progress)."""

from __future__ import annotations

import argparse


def add_multihost_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``calibrate agent`` and ``calibrate merge`` (not yet)."""
