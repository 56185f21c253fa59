"""Meters on other hosts: agents as separate processes on 127.0.0.1 with known clock errors.

Each agent runs ``calibrate agent`` in its own process with a test clock offset by seconds
and skewed by up to 200 ppm (CALIBRATE_TEST_CLOCK), so the truth is known: the merge must
recover it within 1 ms and 5 ppm, and line a square wave up across hosts.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.merge import host_fit
from analysis.session_format import read_manifest
from calibrate import remote
from calibrate.session import Session
from tests.conftest import ROOT, run_cli

SQUARE = "square:50,150@3"
LOCAL = f"sim:tasmota?signal={SQUARE}&timebase=machine&interval=0.1&update=0.05"


class AgentProc:
    def __init__(self, tmp: Path, name: str, offset_s: float, drift_ppm: float, port: int = 0,
                 meter: str = LOCAL) -> None:
        self.offset_s, self.drift_ppm = offset_s, drift_ppm
        env = {**os.environ, "CALIBRATE_TEST_CLOCK": f"{offset_s},{drift_ppm}", "PYTHONPATH": str(ROOT)}
        self.out = tmp / f"agent-{name}"
        self.proc = subprocess.Popen([sys.executable, "-m", "calibrate.cli", "agent", "--meter", meter,
                                      "--port", str(port), "--out", str(self.out), "--name", name],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        line = self.proc.stdout.readline()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert m, (line, self.proc.stderr.read() if self.proc.poll() is not None else "")
        self.port = int(m.group(1))
        self.uri = f"agent://127.0.0.1:{self.port}"

    def truth_offset_ns(self, c_ns: int) -> float:
        """Agent clock minus this (coordinator) clock at monotonic ``c_ns``."""
        return self.offset_s * 1e9 + self.drift_ppm * 1e-6 * c_ns

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)


@pytest.fixture
def agents(tmp_path):
    made: list[AgentProc] = []

    def make(*args, **kw) -> AgentProc:
        a = AgentProc(tmp_path, *args, **kw)
        made.append(a)
        return a

    yield make
    for a in made:
        a.kill()


@pytest.fixture(autouse=True)
def fast_probes(monkeypatch):
    monkeypatch.setattr(remote, "PROBE_EVERY_S", 0.3)
    monkeypatch.setattr(remote, "RECONNECT_EVERY_S", 0.5)


def edges(df: pd.DataFrame, with_width: bool = False):
    """Rising edges (ns) of a 50/150 W square wave: the middle of the two polls it fell
    between (the last one below 100 W and the first at or above), and that gap (ns)."""
    p = df["power_w"].to_numpy()
    t = df["t_ns"].to_numpy()
    ok = ~np.isnan(p)
    p, t = p[ok], t[ok]
    up = np.flatnonzero((p[1:] >= 100) & (p[:-1] < 100)) + 1
    mid, gap = (t[up] + t[up - 1]) // 2, t[up] - t[up - 1]
    return (mid, gap) if with_width else mid


def read(folder: Path, channel: str) -> pd.DataFrame:
    return pd.read_csv(folder / "traces" / f"{channel}.csv")


def test_two_agents_recovered_and_square_wave_aligned(tmp_path, agents) -> None:
    a = agents("node-a", 2.5, 150.0)
    b = agents("node-b", -7.25, -200.0)
    out = tmp_path / "coord"
    with Session([LOCAL, a.uri, b.uri], out=out) as s:
        with s.window("load"):
            time.sleep(10)
    m = read_manifest(out)
    assert m["status"] == "complete"
    hosts = {h["name"]: h for h in m["hosts"]}
    assert set(hosts) == {"node-a", "node-b"} and all(h["status"] == "merged" for h in hosts.values())
    names = [x["name"] for x in m["meters"]]
    assert names == ["tasmota", "node-a.tasmota", "node-b.tasmota"]
    local_edges, local_gap = edges(read(out, "tasmota"), with_width=True)
    assert len(local_edges) >= 3
    for agent in (a, b):
        fit, counts = host_fit(out, agent.proc.args[-1])
        c = fit.ref_ns
        assert abs(fit.offset_at(c) - agent.truth_offset_ns(c)) < 1e6  # within 1 ms
        assert abs(fit.drift_ppm - agent.drift_ppm) < 5  # within 5 ppm
        u = hosts[agent.proc.args[-1]]["clock_fit"]["uncertainty_ns"]
        assert u is not None and 0 < u < 1e6  # reported, and sub-millisecond on loopback
        ch = m["meters"][names.index(f"{agent.proc.args[-1]}.tasmota")]["channels"][0]
        assert ch["info"]["host"] == agent.proc.args[-1] and ch["info"]["clock_uncertainty_ns"] > 0
        merged, gap = edges(read(out, f"{agent.proc.args[-1]}.tasmota"), with_width=True)
        raw = pd.read_csv(out / "hosts" / agent.proc.args[-1] / "traces" / "tasmota.csv")["t_ns"].to_numpy()
        mapped = read(out, f"{agent.proc.args[-1]}.tasmota")["t_ns"].to_numpy()
        truth = np.array([agent.truth_offset_ns(int(t)) for t in mapped])
        assert np.all(np.abs((raw - mapped) - truth) < 1e6)  # every stamp moved by seconds, right to 1 ms
        assert len(merged) >= 3
        for e, g in zip(local_edges, local_gap):  # every edge here is there within one sample period
            j = np.argmin(np.abs(merged - e))
            assert abs(merged[j] - e) <= (g + gap[j]) / 2 + 1e6, (merged[j] - e, g, gap[j])
    ev = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    kinds = [e["kind"] for e in ev]
    assert kinds.count("phase_start") == 1  # forwarded marks are not a second phase
    assert {e["host"] for e in ev if e["kind"] == "host_merged"} == {"node-a", "node-b"}
    assert all(e["kind"] != "host_lost" for e in ev)
    # the merged folder is a session the analysis reads, host channels included
    from analysis.load import load_session

    data = load_session(out)
    assert {"tasmota", "node-a.tasmota", "node-b.tasmota"} <= set(data.channels)
    # and calibrate merge redoes it into a new folder, to the same stamps
    r = run_cli("merge", str(out), "--out", str(tmp_path / "again"))
    assert r.returncode == 0, r.stderr
    assert "node-a: merged 1 channel(s)" in r.stdout
    drift = float(re.search(r"node-a: .*drift (-?[\d.]+) ppm", r.stdout).group(1))
    assert abs(drift - 150) < 5
    again = read(tmp_path / "again", "node-a.tasmota")
    assert again["t_ns"].tolist() == read(out, "node-a.tasmota")["t_ns"].tolist()
    r = run_cli("merge", str(out), "--out", str(tmp_path / "again"))
    assert r.returncode == 2 and "choose another --out" in r.stderr


def test_agent_killed_mid_run_local_session_survives(tmp_path, agents) -> None:
    a = agents("node-a", 1.0, 50.0)
    b = agents("node-b", -1.0, -50.0)
    out = tmp_path / "coord"
    with Session([LOCAL, a.uri, b.uri], out=out):
        time.sleep(2)
        a.kill()
        time.sleep(3)
    m = read_manifest(out)
    assert m["status"] == "complete"
    hosts = {h["name"]: h for h in m["hosts"]}
    assert hosts["node-a"]["status"] == "missing" and "not fetched" in hosts["node-a"]["reason"]
    assert hosts["node-b"]["status"] == "merged"
    ev = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    lost = [e for e in ev if e["kind"] == "host_lost"]
    assert [e["host"] for e in lost] == ["node-a"]  # marked once, not once per probe
    assert len(read(out, "tasmota")) > 30 and len(read(out, "node-b.tasmota")) > 30
    # the killed agent's own folder is on its host: merge it by hand, later
    (folder,) = list(a.out.iterdir())
    r = run_cli("merge", str(out), "--host", f"node-a={folder}", "--out", str(tmp_path / "m2"))
    assert r.returncode == 0, r.stderr
    m2 = read_manifest(tmp_path / "m2")
    assert {h["name"]: h["status"] for h in m2["hosts"]} == {"node-a": "merged", "node-b": "merged"}
    assert m2["merge"]["incomplete"] == []
    r = run_cli("merge", str(out), "--out", str(tmp_path / "m3"))
    assert r.returncode == 0 and "node-a: NOT merged" in r.stdout and "incomplete: node-a" in r.stdout


class Proxy:
    """A TCP relay that can black-hole traffic (a network partition)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.partitioned = threading.Event()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            for x, y in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(x, y), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not self.partitioned.is_set():
                    dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def test_partition_probes_resume_and_gap_widens_uncertainty(tmp_path, agents) -> None:
    a = agents("node-a", 4.0, 120.0)
    proxy = Proxy(a.port)
    out = tmp_path / "coord"
    with Session([LOCAL, f"agent://127.0.0.1:{proxy.port}"], out=out):
        time.sleep(3)
        proxy.partitioned.set()
        time.sleep(6)
        proxy.partitioned.clear()
        time.sleep(4)
    m = read_manifest(out)
    (host,) = m["hosts"]
    assert host["status"] == "merged"
    kinds = [json.loads(x)["kind"] for x in (out / "events.jsonl").read_text().splitlines()]
    assert kinds.count("host_lost") == 1 and kinds.count("host_back") == 1
    assert kinds.index("host_lost") < kinds.index("host_back")
    fit, counts = host_fit(out, "node-a")
    assert counts.get("ok", 0) > 10 and sum(v for k, v in counts.items() if k != "ok") >= 1  # failures kept
    assert fit.max_gap_s > 4
    mids = np.array(fit._mids)
    gap = int(np.argmax(np.diff(mids)))
    in_gap = (mids[gap] + mids[gap + 1]) // 2
    # in the gap the uncertainty holds the frequency wander over the time to the nearest probe
    base = math.hypot(fit.prediction_ci95_ns(in_gap), fit.asymmetry_bound_at(in_gap))
    wander = fit.wander_ppm * 1e-6 * (mids[gap + 1] - mids[gap]) / 2
    assert wander > 100  # ns
    assert fit.uncertainty_at(in_gap) == pytest.approx(math.hypot(base, wander), rel=1e-6)
    assert fit.uncertainty_ns() >= fit.uncertainty_at(in_gap)
    assert abs(fit.offset_at(fit.ref_ns) - a.truth_offset_ns(fit.ref_ns)) < 1e6
    assert abs(fit.drift_ppm - 120.0) < 5
    # the agent recorded through the partition: its trace has no hole
    t = read(out, "node-a.tasmota")["t_ns"].to_numpy()
    assert np.max(np.diff(t)) < 1e9


def test_agent_protocol_refuses_strangers_and_other_versions(tmp_path, agents) -> None:
    a = agents("node-a", 0.0, 0.0)
    with socket.create_connection(("127.0.0.1", a.port), timeout=5) as c:
        c.sendall(b"GET / HTTP/1.0\r\n\r\n")
        reply = json.loads(c.makefile("rb").readline())
        assert reply["ok"] is False and "does not speak calibrate-agent/1" in reply["error"]
    with socket.create_connection(("127.0.0.1", a.port), timeout=5) as c:
        c.sendall(b'{"op": "hello", "protocol": "calibrate-agent/9"}\n')
        reply = json.loads(c.makefile("rb").readline())
        assert reply["ok"] is False and "calibrate-agent/9" in reply["error"] and reply["protocol"] == "calibrate-agent/1"
    with socket.create_connection(("127.0.0.1", a.port), timeout=5) as c:
        c.sendall(b'{"op": "start", "name": "x"}\n')  # no hello first
        assert "hello first" in json.loads(c.makefile("rb").readline())["error"]
    with socket.create_connection(("127.0.0.1", a.port), timeout=5) as c:
        c.sendall(b"x" * (70 * 1024) + b"\n")
        assert "longer than" in json.loads(c.makefile("rb").readline())["error"]
    with socket.create_connection(("127.0.0.1", a.port), timeout=5) as c:
        f = c.makefile("rb")
        c.sendall(b'{"op": "hello", "protocol": "calibrate-agent/1"}\n')
        assert json.loads(f.readline())["ok"]
        c.sendall(b'{"op": "start", "name": "../escape"}\n')
        assert "cannot name a file" in json.loads(f.readline())["error"]
        c.sendall(b'{"op": "read", "path": "/etc/passwd", "offset": 0, "length": 10}\n')
        assert "not a listed file" in json.loads(f.readline())["error"]
    assert not (tmp_path / "escape").exists()
    # a stranger on the port a coordinator is given: one line, exit 2, nothing recorded
    stranger = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        c, _ = stranger.accept()
        c.recv(1000)
        c.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
        c.close()

    threading.Thread(target=answer, daemon=True).start()
    out = tmp_path / "never"
    r = run_cli("run", "--meter", "sim:wattsup", "--meter", f"agent://127.0.0.1:{stranger.getsockname()[1]}",
                "--workload", "idle", "--duration", "1", "--out", str(out), timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "does not speak calibrate-agent/1" in r.stderr and not out.exists()
    stranger.close()


def test_unreachable_agent_and_bind_failure_are_one_line(tmp_path, agents) -> None:
    free = socket.create_server(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    out = tmp_path / "never"
    r = run_cli("run", "--meter", "sim:wattsup", "--meter", f"agent://127.0.0.1:{port}/wattsup",
                "--workload", "idle", "--duration", "1", "--out", str(out), timeout=60)
    assert r.returncode == 2 and "cannot reach agent 127.0.0.1" in r.stderr and "nothing was recorded" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()
    a = agents("node-a", 0.0, 0.0)
    r = run_cli("agent", "--meter", "sim:wattsup", "--port", str(a.port), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "cannot listen on 127.0.0.1" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run_cli("agent", "--meter", "nonsense:meter", "--port", "0", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    r = run_cli("run", "--meter", "sim:wattsup", "--meter", f"{a.uri}/nosuch", "--workload", "idle",
                "--duration", "1", "--out", str(out), timeout=60)
    assert r.returncode == 2 and "has no meter 'nosuch'" in r.stderr and not out.exists()
    r = run_cli("run", "--meter", "sim:wattsup", "--meter", a.uri, "--workload", "idle", "--duration", "1",
                "--out", str(out), env={"CALIBRATE_AGENT_TOKEN": "secret"}, timeout=60)
    assert r.returncode == 0  # an agent without a token accepts any coordinator ...


def test_token_is_required_when_set(tmp_path, monkeypatch) -> None:
    env = {**os.environ, "CALIBRATE_AGENT_TOKEN": "s3cret", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "calibrate.cli", "agent", "--meter", LOCAL, "--port", "0",
                             "--out", str(tmp_path / "ag")], stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        port = int(re.search(r":(\d+) ", proc.stdout.readline()).group(1))
        monkeypatch.setenv("CALIBRATE_AGENT_TOKEN", "wrong")
        with pytest.raises(Exception, match="wrong or missing token"):
            Session([LOCAL, f"agent://127.0.0.1:{port}"], out=tmp_path / "c").start()
        assert not (tmp_path / "c").exists()
        monkeypatch.setenv("CALIBRATE_AGENT_TOKEN", "s3cret")
        with Session([LOCAL, f"agent://127.0.0.1:{port}"], out=tmp_path / "c2"):
            time.sleep(1)
        assert read_manifest(tmp_path / "c2")["hosts"][0]["status"] == "merged"
    finally:
        proc.kill()
        proc.wait()


def test_run_bench_with_agent_reference(tmp_path, agents) -> None:
    a = agents("node-a", 3.0, -80.0)
    out = tmp_path / "bench"
    r = run_cli("run", "--meter", LOCAL, "--meter", f"{a.uri}/tasmota", "--workload", "idle", "--duration", "3",
                "--baseline", "0", "--reference", "node-a.tasmota", "--out", str(out), timeout=120)
    assert r.returncode == 0, r.stderr
    m = read_manifest(out)
    assert m["hosts"][0]["status"] == "merged" and m["reference"] == "node-a.tasmota"
    assert (out / "traces" / "node-a.tasmota.csv").is_file()
    r = run_cli("run", "--meter", LOCAL, "--meter", a.uri, "--workload", "idle", "--duration", "1",
                "--reference", "node-z.tasmota", "--out", str(tmp_path / "n"), timeout=60)
    assert r.returncode == 2 and "is none of the meters" in r.stderr and not (tmp_path / "n").exists()


def test_remote_reference_drives_cooldown_and_live_view(tmp_path, agents) -> None:
    """A wall meter on another host is a reference like a local one: the idle baseline and
    the cool-down read its live values, and the live view follows its channel."""
    from calibrate.bench import BenchPlan, run_bench
    from calibrate.live_feed import LiveFeed

    a = agents("node-a", 2.0, 50.0, meter="sim:tasmota?signal=constant:80&interval=0.1&update=0.05")
    feed = LiveFeed()
    plan = BenchPlan(meters=[LOCAL, f"{a.uri}/tasmota"], workload="idle", params={"duration_s": 1}, out=tmp_path / "b",
                     reference="node-a.tasmota", baseline_s=2.0, cooldown_max_s=5.0)
    run_bench(plan, feed=feed)
    events = [json.loads(x) for x in (tmp_path / "b" / "events.jsonl").read_text().splitlines()]
    ends = [e for e in events if e.get("kind") == "phase_end" and e.get("phase") == "cooldown"]
    assert len(ends) == 1 and ends[0]["reached"] is True
    starts = [e for e in events if e.get("kind") == "phase_start" and e.get("phase") == "cooldown"]
    assert starts and starts[0]["idle_w"] == pytest.approx(80.0, abs=1.0)
    remote_states = [c for c in feed.channel_states() if c.channel.startswith("node-a.")]
    assert remote_states and remote_states[0].meter == "node-a.tasmota"
    assert remote_states[0].last_good_w == pytest.approx(80.0, abs=1.0) and remote_states[0].points >= 2


def test_live_values_drop_hostile_replies() -> None:
    reply = {"latest": {"ok": {"power_w": 5, "energy_j": float("nan"), "x" * 40: 1.0},
                        "bad": "nope", "b" * 200: {"power_w": 1.0}, "t": {"power_w": True}, 3: {"power_w": 1}},
             "meters": {"ok": "m", "t": ["x"]}}
    assert remote.live_values(reply) == {"ok": ("m", {"power_w": 5.0}), "t": ("t", {})}
    assert remote.live_values({"latest": [1, 2]}) == {}
    many = {"latest": {f"c{i}": {"power_w": i} for i in range(1000)}}
    assert len(remote.live_values(many)) == remote.MAX_LIVE_CHANNELS
