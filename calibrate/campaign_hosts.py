"""Where a campaign's agents run: ``[[campaign.hosts]]`` placed locally, over ssh or by Slurm.

::

    [[campaign.hosts]]
    name = "node-b"                       # its channels appear as node-b.<meter>
    placement = "ssh"                     # local | ssh | slurm
    target = "lab@node-b"                 # ssh destination, or the Slurm node name (-w)
    address = "node-b:7710"               # where the coordinator reaches its agent
    meters = ["serial:/dev/ttyUSB0?protocol=wattsup"]

The campaign starts every agent before its first run (``calibrate agent ... --port P``:
locally as a child process, as ``ssh -- TARGET calibrate agent ...`` or as ``srun
--nodes=1 --ntasks=1 -w TARGET calibrate agent ...``), waits for its ``listening on``
line, adds ``agent://ADDRESS`` to every run's meters, and stops the agents at the end.
Nothing in a plan reaches a shell unquoted: ssh gets each remote word through
:func:`shlex.quote`, srun an argument list.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from analysis.session_format import check_path_component
from calibrate.agent_protocol import parse_address
from calibrate.errors import UsageError

READY_TIMEOUT_S = 60.0
_TARGET = r"^[A-Za-z0-9_][A-Za-z0-9_.@:\[\]-]{0,252}$"  # no leading '-': never an ssh/srun option


class HostSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str, Field(min_length=1, max_length=80)]
    placement: Literal["local", "ssh", "slurm"] = "local"
    target: Annotated[str, Field(pattern=_TARGET)] | None = None
    address: Annotated[str, Field(min_length=1, max_length=300)]
    meters: Annotated[list[Annotated[str, Field(min_length=1, max_length=1000)]], Field(min_length=1, max_length=64)]
    command: Annotated[list[Annotated[str, Field(min_length=1, max_length=4096)]],
                       Field(min_length=1, max_length=16)] = ["calibrate"]
    out: Annotated[str, Field(min_length=1, max_length=1000)] = "agent-sessions"

    @field_validator("name")
    @classmethod
    def _name_is_a_component(cls, v: str) -> str:
        return check_path_component(v, "host name")

    @field_validator("address")
    @classmethod
    def _address_parses(cls, v: str) -> str:
        parse_address(v)
        return v


def agent_words(host: HostSpec, python: str | None = None) -> list[str]:
    """The ``calibrate agent`` command line of a host (local: this interpreter)."""
    _, port = parse_address(host.address)
    base = [python or sys.executable, "-m", "calibrate.cli"] if host.placement == "local" else list(host.command)
    bind = "127.0.0.1" if host.placement == "local" else "0.0.0.0"
    words = [*base, "agent", "--port", str(port), "--bind", bind, "--name", host.name, "--out", host.out]
    for m in host.meters:
        words += ["--meter", m]
    return words


def launch_argv(host: HostSpec) -> list[str]:
    """The local argv that starts a host's agent where the plan places it."""
    words = agent_words(host)
    if host.placement == "local":
        return words
    if not host.target:
        raise UsageError(f"host {host.name}: placement {host.placement} needs target")
    if host.placement == "ssh":  # ssh joins the remote words into one shell line: quote each
        return ["ssh", "-tt", "-o", "BatchMode=yes", "--", host.target, " ".join(shlex.quote(w) for w in words)]
    return ["srun", "--nodes=1", "--ntasks=1", f"--nodelist={host.target}", "--", *words]


@dataclass
class RunningAgent:
    host: HostSpec
    proc: subprocess.Popen

    @property
    def uri(self) -> str:
        return f"agent://{self.host.address}"


class CampaignHosts:
    """Start the plan's agents, and stop them (a context manager)."""

    def __init__(self, hosts: Sequence[HostSpec]) -> None:
        self.hosts = list(hosts)
        self.running: list[RunningAgent] = []

    def __enter__(self) -> CampaignHosts:
        try:
            for h in self.hosts:
                self.running.append(self._start(h))
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def uris(self) -> list[str]:
        return [r.uri for r in self.running]

    def _start(self, host: HostSpec) -> RunningAgent:
        argv = launch_argv(host)
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
        except OSError as exc:
            raise UsageError(f"host {host.name}: cannot start {argv[0]}: {exc.strerror or exc}") from None
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(READY_TIMEOUT_S)
        if not lines or "listening on" not in lines[0]:
            proc.kill()
            err = (proc.stderr.read() if proc.poll() is not None else "").strip().splitlines()
            why = err[-1] if err else f"no 'listening on' line within {READY_TIMEOUT_S:.0f} s"
            raise UsageError(f"host {host.name} ({host.placement}): agent did not start: {why[:200]}")
        return RunningAgent(host, proc)

    def stop(self) -> None:
        for r in self.running:
            if r.proc.poll() is None:
                r.proc.terminate()
        deadline = time.monotonic() + 15
        for r in self.running:
            try:
                r.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                r.proc.kill()
                r.proc.wait()
        self.running = []
