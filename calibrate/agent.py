"""The agent: records this host's meters as a complete session, driven over TCP.

``calibrate agent --meter URI ... --port 7710`` builds its meters at launch (a bad URI is
one line and exit 2), binds, prints ``listening on HOST:PORT`` and serves the protocol of
:mod:`calibrate.agent_protocol`.  Each ``start`` records a new session folder under
``--out`` with this host's own clock; it is complete on its own (the coordinator that
started it may vanish: the agent goes on recording until told to stop, or until SIGTERM,
which stops it as ``interrupted``).  At most MAX_CLIENTS connections are served at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from analysis.session_format import STATUSES, check_path_component, safe_name
from calibrate.agent_protocol import (
    MAX_CHUNK,
    MAX_FILES,
    MAX_REQUEST,
    PROTOCOL,
    AgentError,
    encode,
    read_message,
)
from calibrate.session import Session

MAX_CLIENTS = 8
IDLE_TIMEOUT_S = 600.0  # a connection silent this long is dropped (s)
MAX_EVENT_FIELDS = 64
STOP_STATUSES = tuple(s for s in STATUSES if s not in ("recording", "imported"))


def default_agent_name() -> str:
    """This host's name as an agent name (a path component)."""
    name = safe_name(socket.gethostname().split(".")[0])[:80].lstrip(".-") or "agent"
    return name


class Agent:
    """Serves one host's meters to coordinators (see module doc)."""

    def __init__(self, meters: Sequence[str], out: Path | str, name: str | None = None,
                 clock: Callable[[], int] = time.monotonic_ns, token: str | None = None,
                 test_clock: dict[str, float] | None = None) -> None:
        from calibrate.bench import build_meters

        self.uris = list(meters)
        self.out = Path(out)
        self.name = check_path_component(name or default_agent_name(), "agent name")
        self.clock = clock
        self.token = token
        self.test_clock = test_clock
        built = build_meters(self.uris)  # MeterConfigError before anything listens
        self.meter_info = [{"name": m.name, "kind": m.kind, "channels": [c.id for c in m.channels]} for m in built]
        for m in built:
            m.release()
        self.session: Session | None = None
        self.folder: Path | None = None
        self._listing: dict[str, int] = {}
        self._lock = threading.Lock()
        self._clients = threading.BoundedSemaphore(MAX_CLIENTS)
        self._server: socket.socket | None = None
        self._closing = threading.Event()

    # -- serving ----------------------------------------------------------------------
    def bind(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Bind and listen; OSError (e.g. address in use) for the caller to report."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        srv = socket.socket(family, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            srv.bind((host, port))
            srv.listen(MAX_CLIENTS)
        except OSError:
            srv.close()
            raise
        self._server = srv
        addr = srv.getsockname()
        return addr[0], addr[1]

    def serve_forever(self) -> None:
        assert self._server is not None
        self._server.settimeout(0.5)
        while not self._closing.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._closing.is_set():
                    break
                raise
            if not self._clients.acquire(blocking=False):
                try:
                    conn.sendall(encode({"ok": False, "error": f"agent busy: {MAX_CLIENTS} connections already"}))
                finally:
                    conn.close()
                continue
            threading.Thread(target=self._serve_client, args=(conn,), daemon=True, name="agent-client").start()

    def shutdown(self, status: str = "interrupted") -> None:
        """Stop any session (as ``status``) and stop listening."""
        self._closing.set()
        with self._lock:
            if self.session is not None and self.session.status == "recording":
                self.session.stop(status)
        if self._server is not None:
            try:
                self._server.close()
            except OSError:
                pass

    def _serve_client(self, conn: socket.socket) -> None:
        conn.settimeout(IDLE_TIMEOUT_S)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rfile = conn.makefile("rb")
        greeted = False
        try:
            while not self._closing.is_set():
                try:
                    msg = read_message(rfile, MAX_REQUEST, "coordinator")
                except AgentError as exc:
                    if "closed the connection" not in str(exc):
                        conn.sendall(encode({"ok": False, "error": str(exc)}))
                    return
                t2 = self.clock()
                op = msg.get("op")
                if op == "probe":  # the hot path: stamp, reply, nothing else
                    conn.sendall(encode({"ok": True, "t2_ns": t2, "t3_ns": self.clock()}) if greeted
                                 else encode({"ok": False, "error": "say hello first"}))
                    continue
                if not greeted and op != "hello":
                    conn.sendall(encode({"ok": False, "error": f"say hello first ({PROTOCOL})"}))
                    return
                try:
                    reply = self._handle(op, msg)
                except AgentError as exc:
                    reply = {"ok": False, "error": str(exc)}
                except Exception as exc:  # a bug must not kill the agent or its recording
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
                conn.sendall(encode(reply))
                if op == "hello":
                    if not reply.get("ok"):
                        return
                    greeted = True
                if op == "bye":
                    return
        except OSError:
            return  # the coordinator went away; the session (if any) goes on
        finally:
            for obj in (rfile, conn):
                try:
                    obj.close()
                except OSError:
                    pass
            self._clients.release()

    # -- operations -------------------------------------------------------------------
    def _handle(self, op: Any, msg: dict[str, Any]) -> dict[str, Any]:
        if op == "hello":
            return self._hello(msg)
        if op == "start":
            return self._start(msg)
        if op == "mark":
            return self._mark(msg)
        if op == "latest":
            return self._latest()
        if op == "stop":
            return self._stop(msg)
        if op == "fetch":
            return self._fetch()
        if op == "read":
            return self._read(msg)
        if op == "bye":
            return {"ok": True}
        raise AgentError(f"unknown op {str(op)[:40]!r}")

    def _hello(self, msg: dict[str, Any]) -> dict[str, Any]:
        theirs = msg.get("protocol")
        if theirs != PROTOCOL:
            return {"ok": False, "protocol": PROTOCOL,
                    "error": f"coordinator speaks {str(theirs)[:40]!r}, agent {self.name} speaks {PROTOCOL}"}
        if self.token is not None:
            given = msg.get("token")
            if not isinstance(given, str) or not hmac.compare_digest(given.encode(), self.token.encode()):
                return {"ok": False, "protocol": PROTOCOL, "error": "wrong or missing token"}
        with self._lock:
            recording = self.session is not None and self.session.status == "recording"
            folder = self.folder.name if self.folder else None
        return {"ok": True, "protocol": PROTOCOL, "name": self.name, "hostname": socket.gethostname(),
                "pid": os.getpid(), "meters": self.meter_info, "recording": recording, "folder": folder,
                "clock": {"source": "test" if self.test_clock else "CLOCK_MONOTONIC", "unit": "ns"}}

    def _start(self, msg: dict[str, Any]) -> dict[str, Any]:
        from calibrate.bench import build_meters

        try:
            name = check_path_component(msg.get("name"), "session name")
        except ValueError as exc:
            raise AgentError(str(exc)) from None
        wanted = msg.get("meters")
        uris = self.uris
        if wanted is not None:
            if not isinstance(wanted, list) or not all(isinstance(w, str) for w in wanted):
                raise AgentError("meters must be a list of meter names")
            known = [m["name"] for m in self.meter_info]
            unknown = [w for w in wanted if w not in known]
            if unknown:
                raise AgentError(f"agent {self.name} has no meter {unknown[0][:60]!r} (it has {', '.join(known)})")
            uris = [u for u, m in zip(self.uris, self.meter_info) if m["name"] in wanted]
        workload = msg.get("workload") if isinstance(msg.get("workload"), dict) else {}
        with self._lock:
            if self.session is not None and self.session.status == "recording":
                raise AgentError(f"agent {self.name} is already recording {self.folder.name if self.folder else ''}")
            folder = self.out / name
            try:
                meters = build_meters(uris)
            except Exception as exc:
                raise AgentError(f"cannot build meters: {str(exc).splitlines()[0] if str(exc) else exc}") from None
            session = Session(meters, out=folder, uris=uris, clock=self.clock,
                              workload={"name": str(workload.get("name", "agent"))[:200],
                                        "parameters": {}, "coordinator": workload})
            session.extra["agent"] = {"name": self.name, "protocol": PROTOCOL}
            if self.test_clock:
                session.extra["test_clock"] = self.test_clock
            try:
                session.start()
            except FileExistsError as exc:
                for m in meters:
                    m.release()
                raise AgentError(str(exc)) from None
            self.session, self.folder, self._listing = session, folder, {}
            return {"ok": True, "folder": name, "start_ns": session.start_ns}

    def _mark(self, msg: dict[str, Any]) -> dict[str, Any]:
        ev = msg.get("event")
        if not isinstance(ev, dict) or not isinstance(ev.get("kind"), str) or len(ev) > MAX_EVENT_FIELDS:
            raise AgentError("mark needs an event object with a kind")
        fields = {str(k)[:64]: v for k, v in ev.items() if k not in ("kind", "t_ns")}
        with self._lock:
            if self.session is None or self.session.status != "recording":
                raise AgentError("not recording")
            # stamped here, on this host's clock: the coordinator's t_ns is on another clock
            self.session.mark(ev["kind"][:64], coordinator_t_ns=ev.get("t_ns"), **fields)
        return {"ok": True}

    def _latest(self) -> dict[str, Any]:
        with self._lock:
            s = self.session
            if s is None or s.recorder is None:
                return {"ok": True, "status": None, "latest": {}}
            pairs = s.recorder.channels()
            latest = {ch.id: s.recorder.latest(ch.id) for _, ch in pairs}
            return {"ok": True, "status": s.status, "latest": latest, "meters": {ch.id: m.name for m, ch in pairs},
                    "now_ns": self.clock()}

    def _stop(self, msg: dict[str, Any]) -> dict[str, Any]:
        status = msg.get("status", "complete")
        if status not in STOP_STATUSES:
            raise AgentError(f"stop status must be one of {', '.join(STOP_STATUSES)}")
        with self._lock:
            if self.session is None:
                raise AgentError("no session to stop")
            self.session.stop(status)
            return {"ok": True, "status": self.session.status, "end_ns": self.session.end_ns}

    def _fetch(self) -> dict[str, Any]:
        with self._lock:
            if self.folder is None or self.session is None:
                raise AgentError("no session to fetch")
            if self.session.status == "recording":
                raise AgentError("still recording: stop first")
            files = []
            for p in sorted(self.folder.rglob("*")):
                rel = p.relative_to(self.folder)
                if p.is_symlink() or not p.is_file() or len(rel.parts) > 4 or any(
                        x.startswith(".") for x in rel.parts):
                    continue
                h = hashlib.sha256()
                with p.open("rb") as fh:
                    for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                        h.update(block)
                files.append({"path": rel.as_posix(), "size": p.stat().st_size, "sha256": h.hexdigest()})
                if len(files) >= MAX_FILES:
                    break
            self._listing = {f["path"]: f["size"] for f in files}
            return {"ok": True, "folder": self.folder.name, "files": files}

    def _read(self, msg: dict[str, Any]) -> dict[str, Any]:
        rel, offset, length = msg.get("path"), msg.get("offset"), msg.get("length")
        with self._lock:
            if not isinstance(rel, str) or rel not in self._listing or self.folder is None:
                raise AgentError("read: not a listed file (fetch first)")
            if not isinstance(offset, int) or not isinstance(length, int) or offset < 0 or not 0 < length <= MAX_CHUNK:
                raise AgentError(f"read: offset >= 0 and 0 < length <= {MAX_CHUNK} required")
            with (self.folder / rel).open("rb") as fh:
                fh.seek(offset)
                data = fh.read(length)
        return {"ok": True, "data": base64.b64encode(data).decode()}


def run_agent(agent: Agent, bind: str, port: int, out: Any = sys.stdout) -> int:
    """Bind, announce, serve until SIGTERM/SIGINT; returns the exit code."""
    import signal

    host, real_port = agent.bind(bind, port)
    print(f"calibrate agent {agent.name} listening on {host}:{real_port} ({PROTOCOL})", file=out, flush=True)

    def on_signal(*_: object) -> None:
        threading.Thread(target=agent.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.serve_forever()
    agent.shutdown()
    return 0
