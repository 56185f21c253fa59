"""Shared test doubles and helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from drivers.base import Channel, Meter, MeterDisconnected, MeterError, MeterReadError, Reading

ROOT = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    """The published data sets: $CALIBRATE_DATA_DIR, else shared/data beside the repository."""
    for base in (os.environ.get("CALIBRATE_DATA_DIR"), ROOT.parent / "shared" / "data", "/work/shared/data"):
        if base and Path(base).is_dir():
            return Path(base)
    return ROOT.parent / "shared" / "data"


SHARED = _shared_data()


def load_published(name: str):
    """A published data set (method-comparison/ or realdata/) as a DataFrame; skips if absent."""
    import pandas as pd

    for sub in ("method-comparison", "realdata"):
        p = SHARED / sub / name
        if p.is_file():
            return pd.read_csv(p, comment="#")
    pytest.skip(f"published data set {name} not found under {SHARED} (set CALIBRATE_DATA_DIR)")


class ScriptedMeter(Meter):
    """A meter whose polls follow a script: a number is watts, a string raises that fault.

    ``"disconnected"`` raises MeterDisconnected and makes the next ``reopen_fails`` opens fail.
    """

    kind = "scripted"

    def __init__(self, script: list, name: str = "scripted", interval_s: float = 0.01,
                 reopen_fails: int = 2) -> None:
        super().__init__(name, interval_s)
        self.script = list(script)
        self.i = 0
        self.opens = 0
        self.reopen_fails = reopen_fails
        self._fail_opens = 0
        self.energy = 0.0

    def open(self) -> list[Channel]:
        self.opens += 1
        if self._fail_opens > 0:
            self._fail_opens -= 1
            raise OSError("device not there yet")
        self.channels = [Channel(id=self.name, scope="wall", quantities=("power_w", "energy_j"),
                                 window_s=self.interval_s, update_interval_s=self.interval_s)]
        return self.channels

    def read(self) -> Reading:
        step = self.script[self.i] if self.i < len(self.script) else self.script[-1]
        self.i += 1
        if step == "disconnected":
            self._fail_opens = self.reopen_fails
            raise MeterDisconnected("cable pulled")
        if isinstance(step, str):
            raise MeterReadError(f"scripted {step}", code=step)
        self.energy += step * self.interval_s
        return Reading({self.name: {"power_w": float(step), "energy_j": self.energy}})


def run_cli(*args: str, timeout: float = 120, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m calibrate.cli ARGS`` and capture its output."""
    return subprocess.run([sys.executable, "-m", "calibrate.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or ROOT, env={**os.environ, **(env or {})})


@pytest.fixture
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip("shared/data not present beside the repository")
    return SHARED


def unplug_and_replug(meter: Meter, sim, gone_s: float, expect: type = MeterReadError,
                      read_pause_s: float = 0.0) -> float:
    """Unplug a simulated device for ``gone_s``; reads must fail with ``expect``; then reopen
    the meter every 0.1 s as the recorder does.  Returns s from the device's return to the
    first successful open (the contract: under 2 s); the meter is left open."""
    import time

    sim.faults.drops.append((sim.now() + 0.05, gone_s))
    gone_until = sim.now() + 0.05 + gone_s
    with pytest.raises(expect):
        for _ in range(40):
            meter.read()
            time.sleep(read_pause_s)
    meter.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            meter.open()
            return sim.now() - gone_until
        except MeterError:
            time.sleep(0.1)
    raise AssertionError("the meter did not come back within 5 s")
