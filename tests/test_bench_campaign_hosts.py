"""Campaign plans that place agents on other hosts: local, ssh, slurm."""

from __future__ import annotations

import json
import os
import shlex
import socket
import stat
import sys
from pathlib import Path

import pytest

from analysis.session_format import read_manifest
from calibrate.campaign import load_plan
from calibrate.campaign_hosts import CampaignHosts, HostSpec, launch_argv
from calibrate.errors import UsageError
from tests.conftest import ROOT, run_cli

METER = "sim:tasmota?signal=square:50,150@2&timebase=machine&interval=0.2&update=0.1"


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


def plan_text(hosts: str) -> str:
    return f"""
[campaign]
name = "hosts"
meters = ["{METER}"]
reference = "node-b.tasmota"
baseline_s = 0
out = "camp"
{hosts}

[[run]]
workload = "idle"
params = {{ duration_s = 3 }}
"""


def test_local_placement_runs_a_campaign_with_an_agent(tmp_path) -> None:
    port = free_port()
    hosts = f"""
[[campaign.hosts]]
name = "node-b"
placement = "local"
address = "127.0.0.1:{port}"
meters = ["{METER}"]
out = "{tmp_path / 'agent-out'}"
"""
    p = tmp_path / "plan.toml"
    p.write_text(plan_text(hosts))
    r = run_cli("campaign", str(p), timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    (session,) = [d for d in (tmp_path / "camp").iterdir() if d.is_dir()]
    m = read_manifest(session)
    assert m["hosts"][0]["name"] == "node-b" and m["hosts"][0]["status"] == "merged"
    assert m["reference"] == "node-b.tasmota"
    assert (session / "traces" / "node-b.tasmota.csv").is_file()
    assert len(list((tmp_path / "agent-out").iterdir())) == 1  # the agent kept its own copy
    with socket.socket() as s:  # and was stopped at the end
        assert s.connect_ex(("127.0.0.1", port)) != 0


def _fake(tmp: Path, name: str, body: str) -> None:
    path = tmp / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


FAKE_SSH = """import os, sys, json
args = sys.argv[1:]
log = os.environ["FAKE_LOG"]
with open(log, "a") as fh:
    fh.write(json.dumps(["ssh", *args]) + "\\n")
i = args.index("--")
os.execvp("sh", ["sh", "-c", args[i + 2]])  # the remote shell runs the one command line
"""
FAKE_SRUN = """import os, sys, json
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as fh:
    fh.write(json.dumps(["srun", *args]) + "\\n")
i = args.index("--")
os.execvp(args[i + 1], args[i + 1:])
"""


@pytest.mark.parametrize("placement", ["ssh", "slurm"])
def test_ssh_and_slurm_placements_start_the_agent_there(tmp_path, monkeypatch, placement) -> None:
    _fake(tmp_path, "ssh", FAKE_SSH)
    _fake(tmp_path, "srun", FAKE_SRUN)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "log"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    port = free_port()
    weird = "sim:tasmota?signal=constant:80&interval=0.5"  # '&' and '?' must survive the remote shell
    host = HostSpec.model_validate({"name": "node-c", "placement": placement, "target": "lab@node-c",
                                    "address": f"127.0.0.1:{port}", "meters": [weird],
                                    "command": [sys.executable, "-m", "calibrate.cli"],
                                    "out": str(tmp_path / "out; touch PWNED")})
    with CampaignHosts([host]) as hosts:
        assert hosts.uris() == [f"agent://127.0.0.1:{port}"]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b'{"op": "hello", "protocol": "calibrate-agent/1"}\n')
            reply = json.loads(c.makefile("rb").readline())
            assert reply["ok"] and reply["name"] == "node-c"
            assert reply["meters"][0]["kind"] == "sim"
    logged = [json.loads(x) for x in (tmp_path / "log").read_text().splitlines()]
    assert logged[0][0] == ("ssh" if placement == "ssh" else "srun")
    if placement == "ssh":
        assert logged[0][1:5] == ["-tt", "-o", "BatchMode=yes", "--"] and logged[0][5] == "lab@node-c"
        assert shlex.split(logged[0][6])[-1] == weird
    else:
        assert "--nodelist=lab@node-c" in logged[0]
    assert not (Path.cwd() / "PWNED").exists() and not (tmp_path / "PWNED").exists()


def test_host_specs_are_validated(tmp_path) -> None:
    base = {"name": "n", "placement": "ssh", "target": "lab@n", "address": "n:7710", "meters": ["rapl"]}
    HostSpec.model_validate(base)
    for bad in ({"target": "-oProxyCommand=evil"}, {"name": "../up"}, {"placement": "cloud"},
                {"address": "n:99999"}, {"meters": []}, {"extra": 1}):
        with pytest.raises(ValueError):
            HostSpec.model_validate({**base, **bad})
    with pytest.raises(UsageError, match="needs target"):
        launch_argv(HostSpec.model_validate({**base, "target": None}))
    twice = """
[[campaign.hosts]]
name = "a"
address = "127.0.0.1:1"
meters = ["rapl"]

[[campaign.hosts]]
name = "a"
address = "127.0.0.1:2"
meters = ["rapl"]
"""
    p = tmp_path / "plan.toml"
    p.write_text(plan_text(twice))
    with pytest.raises(UsageError, match="same name"):
        load_plan(p)
    r = run_cli("campaign", str(p))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    p.write_text(plan_text('[[campaign.hosts]]\nname = "a"\nplacement = "local"\naddress = "127.0.0.1:1"\n'
                           'meters = ["nonsense:meter"]\n'))
    r = run_cli("campaign", str(p), timeout=120)
    assert r.returncode == 2 and "agent did not start" in r.stderr
