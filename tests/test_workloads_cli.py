"""``python -m workloads``: events through a real pipe, SIGTERM, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from workloads.registry import command_for

ROOT = Path(__file__).resolve().parents[1]


def run_workload(
    name: str,
    params: dict,
    tmp_path: Path,
    command: list[str] | None = None,
    terminate_when: Callable[[dict], bool] | None = None,
    timeout: float = 120,
) -> tuple[int, list[dict], str]:
    """Start the workload as the recorder does; returns (exit code, events, stderr).

    With ``terminate_when``, SIGTERM is sent as soon as an event satisfies it.
    """
    read_fd, write_fd = os.pipe()
    err_path = tmp_path / f"stderr-{name}.txt"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(
            command_for(name, params, command), pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=err,
            env={**os.environ, "CALIBRATE_EVENTS_FD": str(write_fd)}, cwd=ROOT,
        )
    os.close(write_fd)
    events, sent = [], False
    try:
        with os.fdopen(read_fd, "rb") as pipe:
            for line in pipe:
                events.append(json.loads(line))
                if terminate_when and not sent and terminate_when(events[-1]):
                    proc.send_signal(signal.SIGTERM)
                    sent = True
        rc = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if terminate_when:
        assert sent, "the trigger event never came"
    return rc, events, err_path.read_text()


def assert_well_formed(events: list[dict]) -> None:
    """Monotonic stamps, phases properly opened/closed (no overlap), one result, last."""
    stamps = [e["t_ns"] for e in events]
    assert stamps == sorted(stamps)
    open_phase = None
    for e in events:
        if e["kind"] == "phase_start":
            assert open_phase is None, f"{e['phase']} starts inside {open_phase}"
            open_phase = e["phase"]
        elif e["kind"] == "phase_end":
            assert e["phase"] == open_phase
            open_phase = None
    assert open_phase is None
    assert [e["kind"] for e in events].count("result") == 1 and events[-1]["kind"] == "result"


def test_cnn_events_through_a_pipe(tmp_path):
    rc, events, err = run_workload("tinyvgg", {"epochs": 2, "image_size": 16, "train_size": 64, "val_size": 32,
                                               "warmup_steps": 1}, tmp_path)
    assert rc == 0, err
    assert_well_formed(events)
    phases = [e["phase"] for e in events if e["kind"] == "phase_start"]
    assert phases == ["setup", "warmup", "epoch-1", "eval-1", "epoch-2", "eval-2"]
    names = [(e["name"], e["phase"]) for e in events if e["kind"] == "metric"]
    assert names == [("loss", "epoch-1"), ("accuracy", "epoch-1"), ("images_per_s", "epoch-1"),
                     ("val_loss", "eval-1"), ("val_accuracy", "eval-1"),
                     ("loss", "epoch-2"), ("accuracy", "epoch-2"), ("images_per_s", "epoch-2"),
                     ("val_loss", "eval-2"), ("val_accuracy", "eval-2")]
    result = events[-1]
    assert 0.0 <= result["accuracy"] <= 1.0 and result["images_per_s"] > 0
    assert result["samples_seen"] == 64 * 2 + 16 and result["duration_s"] > 0
    assert "epoch-2:" in err and "done (epochs)" in err


def test_cnn_sigterm_stops_cleanly(tmp_path):
    rc, events, err = run_workload(
        "tinyvgg", {"epochs": 10000, "image_size": 16, "train_size": 256, "val_size": 16}, tmp_path,
        terminate_when=lambda e: e["kind"] == "phase_start" and e["phase"] == "epoch-2",
    )
    assert rc == 0, err
    assert_well_formed(events)
    result = events[-1]
    assert result["interrupted"] is True and result["stop_reason"] == "signal"
    assert result["epochs_completed"] < 10000 and result["accuracy"] is not None
    assert "Traceback" not in err


def test_calibration_sigterm_stops_cleanly(tmp_path):
    rc, events, err = run_workload(
        "step", {"levels": "1,0", "hold_s": 60, "threads": 1}, tmp_path,
        terminate_when=lambda e: e["kind"] == "phase_start" and e["phase"] == "level-1.00",
    )
    assert rc == 0, err
    assert_well_formed(events)
    assert [e["phase"] for e in events if e["kind"] == "phase_start"] == ["level-1.00"]
    assert events[-1]["interrupted"] is True and events[-1]["duration_s"] < 60


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["resnet18", "--params", '{"batch_size": 0}'], "batch_size=0: must be >= 1"),
        (["resnet18", "--params", '{"nope": 1}'], "unknown parameter nope"),
        (["resnet18", "--params", "{bad json"], "not valid JSON"),
        (["resnet18", "--params", "[1]"], "must be a JSON object"),
        (["vgg17"], "unknown workload 'vgg17'"),
        (["command"], "needs a command after `--`"),
        (["idle", "--", "true"], "takes no command"),
        (["command", "--", "/nonexistent/binary"], "cannot start"),
        (["tinyvgg", "--params", '{"dataset": "cifar10:/nonexistent"}'], "does not exist"),
        ([], "a workload name is required"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, fragment):
    out = subprocess.run([sys.executable, "-m", "workloads", *args], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], out.stderr


def test_missing_data_files_exit_2(tmp_path):
    empty = tmp_path / "cifar"
    empty.mkdir()
    rc, events, err = run_workload("tinyvgg", {"dataset": f"cifar10:{empty}"}, tmp_path)
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and "data_batch_1..5" in err
    assert [e["kind"] for e in events] == ["phase_start", "phase_end"]  # setup, then the error


def test_list():
    out = subprocess.run([sys.executable, "-m", "workloads", "--list"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 0 and "vgg16" in out.stdout and "square" in out.stdout
