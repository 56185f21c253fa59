"""Nothing a workload starts outlives it: double forks, setsid, orphans, ignored SIGTERM.

run_workload makes the recorder a child subreaper, remembers the workload's descendants
while it runs, and ends whatever is left when it exits (``workload_survivors``); processes
of the recorder that are not the workload's (simulators, helpers) are left alone.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from calibrate.session import Session
from calibrate.workload_process import run_workload
from tests.conftest import ScriptedMeter
from workloads.process_group import read_stat

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and subreapers are Linux")


def _tag() -> str:
    """A sleep duration no other test uses, to find that very process in /proc."""
    return f"{600 + random.randrange(1, 10**6) / 1e4:.4f}"


def _sleepers(tag: str) -> list[tuple[int, str]]:
    """(pid, state) of every ``sleep TAG`` process still in /proc."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if len(argv) >= 2 and argv[0].endswith(b"sleep") and argv[1] == tag.encode():
            info = read_stat(int(name))
            out.append((int(name), info.state if info else "?"))
    return out


def _run(tmp_path: Path, argv: list[str], **kw):
    session = Session([ScriptedMeter([1.0])], out=tmp_path / "s").start()
    try:
        run = run_workload(session, argv, tmp_path / "log", threading.Event(), **kw)
    finally:
        session.stop("complete")
    events = [json.loads(x) for x in (tmp_path / "s" / "events.jsonl").read_text().splitlines()]
    return run, events


def _assert_ended_and_reported(tag: str, run, events, n: int = 1) -> dict:
    assert _sleepers(tag) == []  # ended and reaped: not even a zombie is left
    assert [s["name"] for s in run.survivors].count("sleep") == n, run.survivors
    ev = [e for e in events if e["kind"] == "workload_survivors"]
    assert len(ev) == 1 and ev[0]["names"].count("sleep") == n
    assert sorted(ev[0]["pids"]) == sorted(s["pid"] for s in run.survivors)
    exited = next(e for e in events if e["kind"] == "workload_exited")
    assert exited["survivors"] == len(run.survivors)
    return ev[0]


def test_a_double_forked_child_is_ended(tmp_path: Path) -> None:
    tag = _tag()
    t = time.monotonic()
    run, events = _run(tmp_path, ["sh", "-c", f"(sleep {tag}) & exit 0"])
    assert run.returncode == 0 and not run.terminated
    assert time.monotonic() - t < 10  # the pipe it holds does not keep the pump waiting
    _assert_ended_and_reported(tag, run, events)


def test_a_child_that_leaves_the_session_is_ended(tmp_path: Path) -> None:
    """setsid in a grandchild, its parents gone at once: only the inherited token finds it."""
    tag = _tag()
    script = (
        "import os\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execvp('sleep', ['sleep', '{tag}'])\n"
        "    os._exit(0)\n"
        "os.wait()\n"
    )
    run, events = _run(tmp_path, [sys.executable, "-c", script])
    assert run.returncode == 0
    _assert_ended_and_reported(tag, run, events)


def test_an_escapee_with_a_clean_environment_is_remembered_from_its_ancestry(tmp_path: Path) -> None:
    """setsid and an empty environment: found because it was seen descending from the workload."""
    tag = _tag()
    script = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        f"    os.execve('/bin/sh', ['sh', '-c', 'sleep {tag}; exit 0'], {{'PATH': '/usr/bin:/bin'}})\n"
        "time.sleep(1.5)\n"  # long enough for the recorder to scan the tree (every 0.5 s)
    )
    run, events = _run(tmp_path, [sys.executable, "-c", script])
    _assert_ended_and_reported(tag, run, events)


def test_a_child_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    tag = _tag()
    run, events = _run(tmp_path, ["sh", "-c", f"(trap '' TERM; exec sleep {tag}) & sleep 0.3"])
    ev = _assert_ended_and_reported(tag, run, events)
    sleeper = next(s for s in run.survivors if s["name"] == "sleep")
    assert sleeper["killed"] is True and sleeper["pid"] in ev["killed"]


def test_a_setsid_child_is_ended_when_the_workload_is_stopped_at_the_duration(tmp_path: Path) -> None:
    tag = _tag()
    run, events = _run(tmp_path, ["sh", "-c", f"setsid sleep {tag} & sleep 30"], stop_after_s=0.8)
    assert run.terminated
    _assert_ended_and_reported(tag, run, events)


def test_a_clean_workload_reports_no_survivors_and_bystanders_live_on(tmp_path: Path) -> None:
    """The recorder's own children -- started before, or during the workload -- are not its."""
    before_tag, during_tag = _tag(), _tag()
    before = subprocess.Popen(["sleep", before_tag])
    during: list[subprocess.Popen] = []
    timer = threading.Timer(0.3, lambda: during.append(subprocess.Popen(["sleep", during_tag])))
    timer.start()
    try:
        run, events = _run(tmp_path, ["sh", "-c", "sleep 1"])
        timer.join()
        assert run.survivors == [] and not any(e["kind"] == "workload_survivors" for e in events)
        assert before.poll() is None and during and during[0].poll() is None
    finally:
        for p in [before, *during]:
            p.kill()
            p.wait()


def test_terminate_tree_on_its_own_ends_what_terminate_group_cannot_reach() -> None:
    """The reusable pair without a subreaper: the escapee is orphaned to init, still found."""
    from workloads.process_group import ProcessTree, terminate_group, terminate_tree

    tag = _tag()
    proc = subprocess.Popen(["sh", "-c", f"setsid sleep {tag} & wait"], start_new_session=True)
    tree = ProcessTree(proc.pid)
    deadline = time.monotonic() + 5
    while not any(p.name == "sleep" for p in tree.members.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
        tree.poll()
    terminate_group(proc, grace_s=2.0)  # the group: sh only, the sleeper left it
    assert [pid for pid, state in _sleepers(tag) if state not in "ZX"]
    found = terminate_tree(tree, grace_s=1.0)
    assert [(p.name, killed) for p, killed in found] == [("sleep", False)]
    deadline = time.monotonic() + 5
    while any(state not in "ZX" for _pid, state in _sleepers(tag)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert all(state in "ZX" for _pid, state in _sleepers(tag))  # ended (init reaps it)
    assert terminate_tree(tree) == []
