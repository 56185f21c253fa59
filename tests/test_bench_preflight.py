"""Pre-flight: a run starts only when every meter answers and the workload can start."""

from __future__ import annotations

import json
import os
import pty
import time

from calibrate.recorder import LiveMeter
from tests.conftest import run_cli


def _one_line_2(cp, needle):
    """Exit 2 and one error line (notes and progress, also on stderr, are not errors)."""
    assert cp.returncode == 2, (cp.returncode, cp.stdout, cp.stderr)
    errors = [x for x in cp.stderr.splitlines() if x.startswith("calibrate:")]
    assert "Traceback" not in cp.stderr and len(errors) == 1, cp.stderr
    assert needle in errors[0], cp.stderr


def test_a_meter_that_never_answers_stops_the_run_before_the_baseline(tmp_path):
    master, slave = pty.openpty()  # a port with nothing behind it (a VM's idle UART)
    try:
        t0 = time.monotonic()
        cp = run_cli("run", "--meter", f"serial:{os.ttyname(slave)}?protocol=wattsup", "--meter", "cpu-model",
                     "--workload", "idle", "--duration", "60", "--out", str(tmp_path / "s"), timeout=60)
        took = time.monotonic() - t0
    finally:
        os.close(master)
        os.close(slave)
    _one_line_2(cp, "gave no reading within")
    assert "wattsup" in cp.stderr and took < 30
    manifest = json.loads((tmp_path / "s" / "session.json").read_text())
    assert manifest["status"] == "failed" and manifest["failure"].startswith("pre-flight")
    kinds = [json.loads(x)["kind"] for x in (tmp_path / "s" / "events.jsonl").read_text().splitlines()]
    assert "preflight_failed" in kinds and "workload_started" not in kinds and "phase_start" not in kinds


def test_a_command_not_on_path_is_refused_before_recording(tmp_path):
    cp = run_cli("run", "--meter", "cpu-model", "--out", str(tmp_path / "s"), "--", "no-such-command-xyz", "1")
    _one_line_2(cp, "no-such-command-xyz")
    assert not (tmp_path / "s").exists()


def test_a_cuda_device_torch_cannot_see_is_refused(tmp_path):
    cp = run_cli("run", "--meter", "cpu-model", "--workload", "tinyvgg", "--device", "cuda:7",
                 "--out", str(tmp_path / "s"), timeout=120)
    _one_line_2(cp, "cuda:7")
    assert not (tmp_path / "s").exists()


def test_a_silent_meter_is_shown_live():
    m = LiveMeter("wall", True, {}, 10, 0, silent_s=12.0, interval_s=1.0)
    assert m.silent
    assert not LiveMeter("wall", True, {}, 10, 0, silent_s=1.5, interval_s=1.0).silent
    import contextlib
    import io

    from calibrate.bench import BenchProgress
    from calibrate.console import ConsoleReporter

    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        ConsoleReporter().progress(BenchProgress(20.0, "workload", [m]))
    assert "wall SILENT 12 s" in buf.getvalue()


def test_meters_does_not_call_an_unprobed_port_ok(monkeypatch, capsys):
    import drivers.probe
    from calibrate.cli import main

    monkeypatch.setattr(drivers.probe, "list_serial_ports", lambda: [{"device": "/dev/ttyS0", "description": ""}])
    assert main(["meters"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "serial:/dev/ttyS0" in x)
    assert not line.startswith("ok") and "not probed" in line and "--probe /dev/ttyS0" in out
