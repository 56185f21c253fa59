"""``calibrate ptd-shim`` (PTDaemon's interface for MLPerf power-dev) and ``import --power-dev``."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analysis.session_format import read_manifest
from calibrate.ptd_shim import PtdShim, check_log, sample_line
from tests.conftest import ROOT, run_cli

# The director's own pattern for a sample line (power-dev ptd_client_server/lib/server.py,
# RE_PTD_LOG), restated: the shim's log must match it.
DIRECTOR_RE = re.compile(r"^Time,[^,]*,Watts,[^,]*,Volts,(?P<v>[^,]*),Amps,(?P<a>[^,]*),.*,Mark,(?P<mark>[^,]*)$")


class Shim:
    def __init__(self, tmp: Path, meter: str = "sim:wt310", log: Path | None = None) -> None:
        self.log = log or tmp / "ptd.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "calibrate.cli", "ptd-shim", "--meter", meter,
                                      "-l", str(self.log), "-p", "0", "-y", "wt310", "/dev/ttyUSB0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        line = self.proc.stdout.readline()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert m, (line, self.proc.stderr.read())
        self.sock = socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=10)
        self.rfile = self.sock.makefile("rb")

    def cmd(self, text: str) -> str:
        self.sock.sendall(text.encode() + b"\r\n")
        raw = self.rfile.readline()
        assert raw.endswith(b"\r\n")
        return raw.decode().rstrip("\r\n")

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def shim(tmp_path):
    s = Shim(tmp_path)
    yield s
    s.close()


def test_director_handshake_and_logging(shim) -> None:
    assert shim.cmd("Hello") == "Hello, PTDaemon here!"  # the exact text the director checks
    ident = shim.cmd("Identify")
    assert "NOT PTDaemon" in ident and "not MLPerf-compliant" in ident and "ignored PTDaemon options: y" in ident
    assert shim.cmd("RR") == "Ranges,-1,-1,-1,-1"  # unknown until set
    assert shim.cmd("SR,V,Auto") == "OK" and shim.cmd("SR,A,Auto") == "OK"
    assert shim.cmd("RR") == "Ranges,1,-1,1,-1"
    assert shim.cmd("Go,200,0,2026-12-03_run_ranging") == "OK"
    time.sleep(1.5)
    assert shim.cmd("Stop") == "OK"
    assert shim.cmd("SR,V,230") == "OK" and shim.cmd("SR,A,0.5") == "OK"
    assert shim.cmd("RR") == "Ranges,0,0.5,0,230"
    assert shim.cmd("Go,200,0,2026-12-03_run_testing") == "OK"
    time.sleep(1.5)
    watts = shim.cmd("Watts")
    assert re.fullmatch(r"Watts,\d+(\.\d+)?", watts) and float(watts.split(",")[1]) > 0
    assert "Invalid number of parameters" in shim.cmd("RL,*,*")  # the director then falls back to RL
    head = shim.cmd("RL")
    n = int(re.fullmatch(r"Last (\d+) samples", head).group(1))
    lines = [shim.rfile.readline().decode().rstrip("\r\n") for _ in range(n)]
    assert n >= 10 and all(DIRECTOR_RE.match(x) for x in lines)
    assert shim.cmd("RL") == "Last 0 samples"  # RL gives what came since the last RL
    assert shim.cmd("Stop") == "OK"
    assert shim.cmd("Uncertainty") == "Uncertainty,-1"
    for bad in ("Go,5,0,x", "Go,1000,0,bad mark", "SR,V,-3", "SR,A,lots", "Frobnicate"):
        assert shim.cmd(bad).startswith("Error")
    log = shim.log.read_text().splitlines()
    ranging = [DIRECTOR_RE.match(x) for x in log if x.endswith("_ranging")]
    testing = [DIRECTOR_RE.match(x) for x in log if x.endswith("_testing")]
    assert len(ranging) >= 5 and len(testing) >= 5 and len(ranging) + len(testing) == len(log)
    # what the director's max_volts_amps takes from the ranging samples: positive volts and amps
    assert max(float(m["v"]) for m in ranging) > 0 and max(float(m["a"]) for m in ranging) > 0
    stamps = [re.match(r"Time,([^,]+),", x).group(1) for x in log]
    assert all(re.fullmatch(r"\d\d-\d\d-\d{4} \d\d:\d\d:\d\d\.\d{3}", s) for s in stamps)


def test_long_line_drops_the_client(shim) -> None:
    shim.sock.sendall(b"H" * 5000 + b"\r\n")
    assert shim.rfile.readline().startswith(b"Error: line too long")
    assert shim.rfile.readline() == b""


def test_unplugged_meter_logs_minus_one(tmp_path) -> None:
    # present at open (a drop from t=0 raced the shim's first open), gone 1 s later
    s = Shim(tmp_path, meter="sim:tasmota?faults=drop:1+60&interval=0.2")
    try:
        assert s.cmd("Go,200,0,x_testing") == "OK"
        time.sleep(2.5)
        assert s.cmd("Watts") == "Watts,-1"
        s.cmd("Stop")
    finally:
        s.close()
    lines = s.log.read_text().splitlines()
    unplugged = [",Watts,-1,Volts,-1,Amps,-1,PF,-1," in x for x in lines]
    assert sum(unplugged) >= 3 and unplugged[-1]  # once the meter is gone, every sample says -1


def test_sample_line_format_and_log_refusal(tmp_path) -> None:
    line = sample_line(1_700_000_000.1234, 101.5, 230.1, 0.44, None, "m_testing")
    assert line == "Time,11-14-2023 22:13:20.123,Watts,101.5,Volts,230.1,Amps,0.44,PF,-1,Mark,m_testing"
    other = tmp_path / "notes.txt"
    other.write_text("my precious notes\n")
    with pytest.raises(ValueError, match="not a PTDaemon sample line"):
        check_log(other)
    r = run_cli("ptd-shim", "--meter", "sim:wt310", "-l", str(other), "-p", "0")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert other.read_text() == "my precious notes\n"  # not appended to
    ok = tmp_path / "ptd.log"
    ok.write_text(line + "\n")
    check_log(ok)  # a PTDaemon log is appended to, as the director expects across runs
    r = run_cli("ptd-shim", "--meter", "nonsense:x", "-l", str(tmp_path / "new.log"), "-p", "0")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    from drivers.base import MeterConfigError

    with pytest.raises(MeterConfigError):
        PtdShim("nonsense:x", tmp_path / "n.log")


def _power_dev_tree(root: Path, log: list[str]) -> None:
    (root / "ranging").mkdir(parents=True)
    (root / "run_1").mkdir()
    (root / "ranging" / "spl.txt").write_text("\n".join(x for x in log if x.endswith("_ranging")) + "\n")
    testing = [x for x in log if x.endswith("_testing")]
    (root / "run_1" / "spl.txt").write_text("\n".join(testing) + "\ngarbage line\n")
    t = [re.match(r"Time,([^,]+),", x).group(1) for x in testing]
    detail = [f':::MLLOG {{"key": "power_begin", "value": "{t[1]}", "time_ms": 1}}',
              f':::MLLOG {{"key": "power_end", "value": "{t[-2]}", "time_ms": 2}}']
    (root / "run_1" / "mlperf_log_detail.txt").write_text("\n".join(detail) + "\n")


def test_import_power_dev_round_trip(tmp_path) -> None:
    base = 1_800_000_000.0
    log = [sample_line(base + i, 100 + (i % 3), 230, 0.45, 0.9, "s_ranging") for i in range(10)]
    log += [sample_line(base + 20 + i, -1 if i == 4 else 150.0, 230, 0.65, 0.95, "s_testing") for i in range(30)]
    _power_dev_tree(tmp_path / "results", log)
    out = tmp_path / "imported"
    r = run_cli("import", "--power-dev", str(tmp_path / "results"), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "1 line(s) are not PTDaemon samples" in r.stdout and "1 sample(s) read -1 W" in r.stdout
    m = read_manifest(out)
    assert m["status"] == "imported" and m["reference"] == "ptd"
    (ch,) = m["meters"][0]["channels"]
    assert ch["scope"] == "wall" and ch["quantities"] == ["power_w", "voltage_v", "current_a", "pf"]
    trace = (out / "traces" / "ptd.csv").read_text().splitlines()
    assert len(trace) == 1 + 40 and sum(",disconnected," in x for x in trace) == 1
    assert trace[1].startswith(f"{int(base) * 10**9},0,,100.0,230.0,0.45,0.9")
    ev = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    phases = [(e["kind"], e["phase"]) for e in ev]
    assert phases == [("phase_start", "ranging"), ("phase_end", "ranging"), ("phase_start", "testing"),
                      ("phase_end", "testing"), ("phase_start", "power_window"), ("phase_end", "power_window")]
    pw = [e["t_ns"] for e in ev if e["phase"] == "power_window"]
    assert pw == [int(base + 21) * 10**9, int(base + 48) * 10**9]
    from analysis.load import load_session

    data = load_session(out)
    assert [p[0] for p in data.phases()] == ["ranging", "testing", "power_window"]
    # bad input: one line, exit 2, nothing made
    r = run_cli("import", "--power-dev", str(tmp_path / "nothing-here"), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
    (tmp_path / "empty").mkdir()
    r = run_cli("import", "--power-dev", str(tmp_path / "empty"), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "no PTDaemon sample log" in r.stderr
    r = run_cli("import", "--power-dev", str(tmp_path / "results"), "--trace", "a=b.csv", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "either --trace" in r.stderr
    r = run_cli("import", "--power-dev", str(tmp_path / "results"), "--out", str(out))
    assert r.returncode == 2 and "already holds a session" in r.stderr


def test_shim_log_imports(tmp_path, shim) -> None:
    """The end to end path: the shim's own log, laid out as power-dev leaves it, imports."""
    assert shim.cmd("Go,100,0,e2e_ranging") == "OK"
    time.sleep(1.0)
    assert shim.cmd("Go,100,0,e2e_testing") == "OK"
    time.sleep(1.0)
    shim.cmd("Stop")
    log = shim.log.read_text().splitlines()
    _power_dev_tree(tmp_path / "res", log)
    r = run_cli("import", "--power-dev", str(tmp_path / "res"), "--out", str(tmp_path / "imp"))
    assert r.returncode == 0, r.stderr
    trace = (tmp_path / "imp" / "traces" / "ptd.csv").read_text().splitlines()
    assert len(trace) == 1 + len(log)
