"""``calibrate ptd-shim``: any calibrate meter behind PTDaemon's TCP interface.

MLPerf's open power-dev director (``ptd_client_server/server.py``) starts PTDaemon from
its ``ptdCommand`` and speaks a small line protocol to it on localhost.  This shim speaks
the part of that protocol the director uses, in front of any calibrate meter, so a bench
meter (or a simulator) can drive the open flow end to end::

    ptdCommand: calibrate ptd-shim --meter sim:wt310 -l /tmp/ptd.log -p 8888

Commands (lines ending CR LF; LF alone accepted) and replies:

* ``Hello`` -> ``Hello, PTDaemon here!`` (the director checks this exact text)
* ``Identify`` -> says honestly what this is: *not* PTDaemon, so a run through it is not
  compliant (the compliance checker accepts only PTDaemon 1.11.1)
* ``RR`` -> ``Ranges,{AmpAuto},{AmpRange},{VoltAuto},{VoltRange}`` (-1 = unknown), as set
* ``SR,V,{Auto|volts}``, ``SR,A,{Auto|amps}`` -> ``OK`` (remembered; the meter is not ranged)
* ``Go,{interval_ms},{rampup},{mark}`` -> ``OK``: log one sample per interval, marked
* ``Stop`` -> ``OK``; ``RL`` -> ``Last N samples`` then the N sample lines since the last RL;
  ``RL,*,*`` (multi-channel) -> ``Error: Invalid number of parameters``, so the director
  falls back to ``RL`` as it does for a single-channel analyzer
* ``Watts`` -> ``Watts,{w}``; ``Uncertainty`` -> ``Uncertainty,-1`` (not estimated)

A sample line is ``Time,MM-DD-YYYY HH:MM:SS.fff,Watts,w,Volts,v,Amps,a,PF,pf,Mark,{mark}``
in UTC (the director runs PTDaemon with TZ=UTC); a meter with no current reading (unplugged,
a fault) logs ``-1`` for every quantity, as PTDaemon does for an unplugged analyzer.  The
log (``-l``) is created, or appended to only if every line already in it is such a sample
line: the director reads one log across its ranging and testing runs.
"""

from __future__ import annotations

import argparse
import math
import re
import socket
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from calibrate.errors import UsageError

HELLO_REPLY = "Hello, PTDaemon here!"
DEFAULT_PORT = 8888
MAX_LINE = 4096  # bytes of one command line
MAX_RL = 100_000  # samples kept for RL between reads
MIN_INTERVAL_MS, MAX_INTERVAL_MS = 10, 3_600_000
MAX_LOG_CHECK = 256 * 1024 * 1024  # bytes of an existing log checked before appending to it
_MARK = re.compile(r"[A-Za-z0-9_.:+-]{0,200}")
SAMPLE_LINE = re.compile(r"^Time,\d\d-\d\d-\d{4} \d\d:\d\d:\d\d\.\d{3},Watts,[^,]*,Volts,[^,]*,Amps,[^,]*,"
                         r"PF,[^,]*,Mark,[^,]*$")


def sample_line(utc_s: float, watts: float | None, volts: float | None, amps: float | None,
                pf: float | None, mark: str) -> str:
    """One PTDaemon sample log line (UTC, ms); missing quantities are -1."""
    t = datetime.fromtimestamp(utc_s, timezone.utc)
    stamp = t.strftime("%m-%d-%Y %H:%M:%S.") + f"{t.microsecond // 1000:03d}"

    def num(x: float | None) -> str:
        return f"{x:.6g}" if x is not None and math.isfinite(x) else "-1"

    return f"Time,{stamp},Watts,{num(watts)},Volts,{num(volts)},Amps,{num(amps)},PF,{num(pf)},Mark,{mark}"


def check_log(path: Path) -> None:
    """Refuse a log that exists and holds anything but sample lines (ValueError, one line)."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise ValueError(f"{path} is not a regular file; choose another -l")
    if not path.exists():
        return
    if path.stat().st_size > MAX_LOG_CHECK:
        raise ValueError(f"{path} is larger than {MAX_LOG_CHECK} bytes; choose another -l")
    with path.open("r", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip() and not SAMPLE_LINE.match(line.rstrip("\r\n")):
                raise ValueError(f"{path} line {n} is not a PTDaemon sample line: not appending to it; "
                                 "choose another -l")


class PtdShim:
    """The PTDaemon-compatible server in front of one meter (see module doc)."""

    def __init__(self, meter_uri: str, log: Path, identity_extra: str = "") -> None:
        from calibrate.bench import build_meters
        from calibrate.recorder import DiscardEvents, Recorder

        check_log(log)
        self.log_path = log
        (self.meter,) = build_meters([meter_uri])
        self.recorder = Recorder([self.meter], None, DiscardEvents())
        self.identity_extra = identity_extra
        self.ranges = {"A": (-1, -1.0), "V": (-1, -1.0)}  # (auto: -1 unknown, 0 off, 1 on; range)
        self.mark: str | None = None
        self.interval_s = 1.0
        self._recent: list[str] = []
        self._lock = threading.Lock()
        self._go = threading.Event()
        self._closing = threading.Event()
        self._log = None
        self._logger: threading.Thread | None = None

    def open(self) -> None:
        self.recorder.open_all()
        self.recorder.start()
        # listen only once the meter has read (or given up): the director's first Go then
        # logs values, not -1 for a meter that is merely starting
        deadline = time.monotonic() + max(5.0, 3 * self.meter.interval_s + 2.0)
        while time.monotonic() < deadline and not self.recorder.last_reading_ns().get(self.meter.name):
            time.sleep(0.05)
        self._log = self.log_path.open("a", buffering=1)
        self._logger = threading.Thread(target=self._log_loop, daemon=True, name="ptd-log")
        self._logger.start()

    def close(self) -> None:
        self._closing.set()
        self._go.clear()
        if self._logger is not None:
            self._logger.join(timeout=5)
        self.recorder.stop()
        if self._log is not None:
            self._log.close()

    # -- values -----------------------------------------------------------------------
    def current(self) -> dict[str, float | None]:
        """The meter's current power_w, voltage_v, current_a, pf (None: no current reading)."""
        (live,) = self.recorder.live()
        fresh = (live.connected and live.last_fault is None and live.silent_s is not None
                 and live.silent_s <= max(3 * self.meter.interval_s, 2.0))
        values: dict[str, float] = {}
        if fresh:
            for v in live.values.values():
                values = v
                break
        return {q: (float(values[q]) if q in values and values[q] is not None else None)
                for q in ("power_w", "voltage_v", "current_a", "pf")}

    def _log_loop(self) -> None:
        next_t = time.monotonic()
        while not self._closing.is_set():
            if not self._go.wait(0.2):
                next_t = time.monotonic()
                continue
            now = time.monotonic()
            if now < next_t:
                self._closing.wait(min(next_t - now, 0.2))
                continue
            next_t += self.interval_s
            if next_t < now:  # fell behind (a stalled meter): no burst of catch-up samples
                next_t = now + self.interval_s
            v = self.current()
            with self._lock:
                mark = self.mark
                if mark is None or not self._go.is_set():
                    continue
                line = sample_line(time.time(), v["power_w"], v["voltage_v"], v["current_a"], v["pf"], mark)
                assert self._log is not None
                self._log.write(line + "\n")
                self._recent.append(line)
                del self._recent[:-MAX_RL]

    # -- protocol ---------------------------------------------------------------------
    def handle(self, line: str) -> str:
        """The reply to one command line (several lines joined by CR LF for RL)."""
        parts = line.strip().split(",")
        cmd = parts[0]
        if cmd == "Hello":
            return HELLO_REPLY
        if cmd == "Identify":
            from importlib import metadata

            try:
                version = metadata.version("calibrate")
            except metadata.PackageNotFoundError:
                version = "unknown"
            return (f"calibrate ptd-shim {version} for {self.meter.kind} meter {self.meter.name}; NOT PTDaemon: "
                    f"results through it are not MLPerf-compliant{self.identity_extra}")
        if cmd == "RR":
            (aa, ar), (va, vr) = self.ranges["A"], self.ranges["V"]
            return f"Ranges,{aa},{ar:g},{va},{vr:g}"
        if cmd == "SR" and len(parts) == 3 and parts[1] in ("V", "A"):
            if parts[2] == "Auto":
                self.ranges[parts[1]] = (1, -1.0)
                return "OK"
            try:
                r = float(parts[2])
            except ValueError:
                return "Error: range must be Auto or a number"
            if not (math.isfinite(r) and 0 < r < 1e6):
                return "Error: range out of bounds"
            self.ranges[parts[1]] = (0, r)
            return "OK"
        if cmd == "Go" and len(parts) == 4:
            try:
                ms, _ramp = int(parts[1]), int(parts[2])
            except ValueError:
                return "Error: Go,{interval_ms},{rampup},{mark}"
            if not MIN_INTERVAL_MS <= ms <= MAX_INTERVAL_MS:
                return f"Error: interval must be {MIN_INTERVAL_MS}-{MAX_INTERVAL_MS} ms"
            if not _MARK.fullmatch(parts[3]):
                return "Error: mark must be up to 200 of [A-Za-z0-9_.:+-]"
            with self._lock:
                self.interval_s, self.mark = ms / 1000.0, parts[3]
                self._go.set()
            return "OK"
        if cmd == "Stop":
            self._go.clear()
            return "OK"
        if cmd in ("RL", "DC-RL"):
            if len(parts) > 1:  # RL,*,* asks a multi-channel analyzer; the director then falls back to RL
                return "Error: Invalid number of parameters (one channel)"
            with self._lock:
                lines, self._recent = self._recent, []
            return "\r\n".join([f"Last {len(lines)} samples", *lines])
        if cmd == "Watts":
            w = self.current()["power_w"]
            return f"Watts,{w:.6g}" if w is not None else "Watts,-1"
        if cmd == "Uncertainty":
            return "Uncertainty,-1"
        return "Error: unknown command"

    def serve(self, bind: str, port: int, out: Any = sys.stdout) -> None:
        srv = socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            srv.bind((bind, port))
            srv.listen(1)
        except OSError:
            srv.close()
            raise
        host, real = srv.getsockname()[:2]
        print(f"calibrate ptd-shim listening on {host}:{real} (meter {self.meter.name}; log {self.log_path})",
              file=out, flush=True)
        srv.settimeout(0.5)
        try:
            while not self._closing.is_set():
                try:
                    conn, _ = srv.accept()
                except TimeoutError:
                    continue
                with conn:
                    self._serve_one(conn)
        finally:
            srv.close()

    def _serve_one(self, conn: socket.socket) -> None:
        conn.settimeout(None)
        rfile = conn.makefile("rb")
        while not self._closing.is_set():
            raw = rfile.readline(MAX_LINE + 1)
            if not raw:
                return
            if len(raw) > MAX_LINE or not raw.endswith(b"\n"):
                conn.sendall(b"Error: line too long\r\n")
                return
            try:
                line = raw.decode("ascii")
            except UnicodeDecodeError:
                conn.sendall(b"Error: not ASCII\r\n")
                continue
            conn.sendall((self.handle(line) + "\r\n").encode("ascii", "replace"))


def add_ptd_shim_command(sub: argparse._SubParsersAction) -> None:
    """Register ``calibrate ptd-shim``."""
    p = sub.add_parser(
        "ptd-shim", help="serve a meter through PTDaemon's TCP interface, for MLPerf's open power-dev flow",
        description="Speak the PTDaemon commands the MLPerf power-dev director uses (Hello, Identify, RR, SR, "
                    "Go, Stop, RL, Watts, Uncertainty) in front of any calibrate meter, and write PTDaemon "
                    "sample lines to -l.  Put it in server.conf's ptdCommand.  It identifies itself honestly: "
                    "runs through it are not MLPerf-compliant.  PTDaemon's device options (-b, -c, -D, -n, "
                    "-g, -y, -U, DEVICE_TYPE DEVICE_PORT) are accepted and ignored: --meter names the meter.")
    p.add_argument("--meter", required=True, metavar="URI", help="the meter to serve, as for `calibrate run`")
    p.add_argument("-l", "--log", required=True, metavar="LOGFILE", help="the sample log the director reads")
    p.add_argument("-p", "--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    for flag in ("-D", "-n", "-g", "-y", "-U"):
        p.add_argument(flag, action="store_true", help=argparse.SUPPRESS)
    p.add_argument("-b", help=argparse.SUPPRESS)
    p.add_argument("-c", help=argparse.SUPPRESS)
    p.add_argument("device", nargs="*", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_ptd_shim)


def cmd_ptd_shim(args: argparse.Namespace) -> int:
    import signal

    if not 0 <= args.port <= 65535:
        raise UsageError(f"-p must be 0-65535, got {args.port}")
    ignored = [f for f in ("D", "n", "g", "y", "U") if getattr(args, f)] + (["b"] if args.b else []) + (
        ["c"] if args.c else [])
    try:
        shim = PtdShim(args.meter, Path(args.log),
                       identity_extra=f" (ignored PTDaemon options: {', '.join(ignored)})" if ignored else "")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    def on_term(*_: object) -> None:  # interrupts a blocking read of the director's connection
        shim._closing.set()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    try:
        shim.open()
        shim.serve(args.bind, args.port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.bind}:{args.port}: {exc.strerror or exc}") from None
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        shim.close()
    return 0
