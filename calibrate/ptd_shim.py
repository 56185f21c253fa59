"""`calibrate ptd-shim`: a PTDaemon-compatible analyzer for MLPerf's open power-dev flow (in progress)."""

from __future__ import annotations

import argparse


def add_ptd_shim_command(sub: argparse._SubParsersAction) -> None:
    """Register ``calibrate ptd-shim`` (not yet)."""
