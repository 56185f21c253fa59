"""The agent protocol (``calibrate-agent/1``): its one owner.

An agent (``calibrate agent``) records a complete session of its own host's meters; a
coordinator (``calibrate run`` with ``agent://`` meters) drives it over one TCP
connection of JSON lines, one request and one reply each, in order::

    -> {"op": "hello", "protocol": "calibrate-agent/1", "token": "..."}
    <- {"ok": true, "protocol": "calibrate-agent/1", "name": "node-b", "meters": [...], ...}
    -> {"op": "probe"}                       <- {"ok": true, "t2_ns": ..., "t3_ns": ...}
    -> {"op": "start", "name": "SESSION"}    <- {"ok": true, "folder": "SESSION", "start_ns": ...}
    -> {"op": "mark", "event": {...}}        <- {"ok": true}
    -> {"op": "latest"}                      <- {"ok": true, "latest": {channel: {q: v}},
                                                 "meters": {channel: meter}, "status": ...}
    -> {"op": "stop", "status": "complete"}  <- {"ok": true, "status": ...}
    -> {"op": "fetch"}                       <- {"ok": true, "files": [{"path", "size", "sha256"}]}
    -> {"op": "read", "path": P, "offset": 0, "length": N}  <- {"ok": true, "data": BASE64}
    -> {"op": "bye"}                         <- {"ok": true}

A failed request gets ``{"ok": false, "error": "one line"}``.  ``t2_ns`` is stamped as
soon as the request line is read and ``t3_ns`` just before the reply is written, both on
the agent's session clock; the coordinator stamps t1/t4 around the exchange
(:mod:`analysis.clock_sync`).  Lines are bounded (MAX_REQUEST, MAX_REPLY): a peer that
sends more, or anything that is not this protocol, gets one error and is dropped.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from analysis.session_format import check_path_component, create_exclusive, json_safe

PROTOCOL = "calibrate-agent/1"
MAX_REQUEST = 64 * 1024  # bytes of one request line
MAX_REPLY = 2 * 1024 * 1024  # bytes of one reply line
MAX_CHUNK = 1024 * 1024  # bytes of file data in one read reply (base64 makes it 1.33 MiB)
MAX_FILES = 10_000  # files one fetch may list
MAX_FETCH_BYTES = 16 * 1024**3  # bytes one fetch may bring (16 GiB)
DEFAULT_PORT = 7710
OPS = ("hello", "probe", "start", "mark", "latest", "stop", "fetch", "read", "bye")


class AgentError(Exception):
    """An agent cannot be reached, is not an agent, or refused a request (one line)."""


def encode(message: dict[str, Any]) -> bytes:
    """One protocol line (strict JSON, no NaN)."""
    return (json.dumps(json_safe(message), allow_nan=False, separators=(",", ":")) + "\n").encode()


def read_message(rfile: Any, limit: int, who: str) -> dict[str, Any]:
    """Read one line of at most ``limit`` bytes from a binary file and decode it as a JSON
    object; AgentError (one line) on end of stream, an over-long line or garbage."""
    line = rfile.readline(limit + 1)
    if not line:
        raise AgentError(f"{who} closed the connection")
    if len(line) > limit or not line.endswith(b"\n"):
        raise AgentError(f"{who} sent a line longer than {limit} bytes")
    try:
        msg = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        shown = line[:40].decode("ascii", "backslashreplace").strip()
        raise AgentError(f"{who} does not speak {PROTOCOL} (it sent {shown!r})") from None
    if not isinstance(msg, dict):
        raise AgentError(f"{who} sent a JSON {type(msg).__name__}, not an object")
    return msg


def parse_address(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``HOST:PORT`` (or ``[V6]:PORT``, or ``HOST``) -> (host, port); ValueError otherwise."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_s = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_s = text.rpartition(":") if ":" in text else (text, "", "")
    if not host or len(host) > 253 or any(c.isspace() or ord(c) < 33 for c in host):
        raise ValueError(f"bad agent host in {text[:80]!r}")
    try:
        port = int(port_s) if port_s else default_port
    except ValueError:
        raise ValueError(f"bad agent port in {text[:80]!r}") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"agent port must be 1-65535, got {port}")
    return host, port


class AgentClient:
    """One connection to an agent; every method raises AgentError (one line) on failure."""

    def __init__(self, host: str, port: int, timeout_s: float = 5.0, token: str | None = None,
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.host, self.port = host, port
        self.address = f"{host}:{port}"
        self.timeout_s = timeout_s
        self.token = token
        self.clock = clock
        self.sock: socket.socket | None = None
        self.rfile: Any = None
        self.info: dict[str, Any] = {}

    # -- connection ----------------------------------------------------------------------
    def connect(self) -> dict[str, Any]:
        """Connect and say hello; returns the agent's hello reply (name, meters, clock)."""
        self.close()
        try:
            self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        except OSError as exc:
            raise AgentError(f"cannot reach agent {self.address}: {exc.strerror or exc}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb")
        hello: dict[str, Any] = {"op": "hello", "protocol": PROTOCOL}
        if self.token:
            hello["token"] = self.token
        reply = self.request(hello)
        theirs = reply.get("protocol")
        if theirs != PROTOCOL:
            self.close()
            raise AgentError(f"agent {self.address} speaks {str(theirs)[:40]!r}, this calibrate speaks {PROTOCOL}: "
                             "install the same calibrate version on both hosts")
        try:
            check_path_component(reply.get("name"), "agent name")
        except ValueError as exc:
            self.close()
            raise AgentError(f"agent {self.address}: {exc}") from None
        self.info = reply
        return reply

    def close(self) -> None:
        for obj in (self.rfile, self.sock):
            if obj is not None:
                try:
                    obj.close()
                except OSError:
                    pass
        self.sock = self.rfile = None

    @property
    def connected(self) -> bool:
        return self.sock is not None

    def _send(self, message: dict[str, Any]) -> None:
        if self.sock is None:
            raise AgentError(f"agent {self.address} is not connected")
        try:
            self.sock.sendall(encode(message))
        except OSError as exc:
            self.close()
            raise AgentError(f"agent {self.address}: send failed: {exc.strerror or exc}") from None

    def _receive(self) -> dict[str, Any]:
        try:
            reply = read_message(self.rfile, MAX_REPLY, f"agent {self.address}")
        except AgentError:
            self.close()
            raise
        except (OSError, ValueError) as exc:  # a timeout, a reset, a closed file
            self.close()
            what = "timed out" if isinstance(exc, TimeoutError) else (getattr(exc, "strerror", None) or str(exc))
            raise AgentError(f"agent {self.address}: {what}") from None
        if reply.get("ok") is not True:
            err = str(reply.get("error", "refused"))[:200].encode("ascii", "backslashreplace").decode()
            raise AgentError(f"agent {self.address}: {err}")
        return reply

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        self._send(message)
        return self._receive()

    # -- operations ----------------------------------------------------------------------
    def probe(self) -> tuple[int, int, int, int]:
        """One clock exchange: (t1, t2, t3, t4) ns, t1/t4 on our clock, t2/t3 on the agent's."""
        if self.sock is None:
            raise AgentError(f"agent {self.address} is not connected")
        msg = encode({"op": "probe"})
        t1 = self.clock()
        try:
            self.sock.sendall(msg)
        except OSError as exc:
            self.close()
            raise AgentError(f"agent {self.address}: send failed: {exc.strerror or exc}") from None
        reply = self._receive()
        t4 = self.clock()
        t2, t3 = reply.get("t2_ns"), reply.get("t3_ns")
        if not (isinstance(t2, int) and isinstance(t3, int)) or isinstance(t2, bool) or isinstance(t3, bool):
            raise AgentError(f"agent {self.address}: probe reply without integer t2_ns/t3_ns")
        return t1, t2, t3, t4

    def start(self, name: str, workload: dict[str, Any] | None = None,
              meters: Sequence[str] | None = None) -> dict[str, Any]:
        """Start recording session ``name`` (all the agent's meters, or those named)."""
        msg: dict[str, Any] = {"op": "start", "name": name, "workload": workload or {}}
        if meters is not None:
            msg["meters"] = list(meters)
        return self.request(msg)

    def mark(self, event: dict[str, Any]) -> None:
        self.request({"op": "mark", "event": event})

    def latest(self) -> dict[str, Any]:
        return self.request({"op": "latest"})

    def stop(self, status: str = "complete") -> dict[str, Any]:
        return self.request({"op": "stop", "status": status})

    def fetch(self, dest: Path, max_bytes: int = MAX_FETCH_BYTES) -> list[str]:
        """Copy the agent's session folder into ``dest`` (created; must not exist), checking
        every file's size and SHA-256; returns the relative paths copied."""
        listing = self.request({"op": "fetch"}).get("files")
        if not isinstance(listing, list) or len(listing) > MAX_FILES:
            raise AgentError(f"agent {self.address}: bad file listing")
        total = 0
        entries = []
        for item in listing:
            if not isinstance(item, dict):
                raise AgentError(f"agent {self.address}: bad file listing entry")
            rel, size, digest = item.get("path"), item.get("size"), item.get("sha256")
            if not isinstance(rel, str) or not isinstance(size, int) or size < 0 or not isinstance(digest, str):
                raise AgentError(f"agent {self.address}: bad file listing entry")
            parts = rel.split("/")
            try:
                for p in parts:
                    check_path_component(p, "fetched file")
            except ValueError as exc:
                raise AgentError(f"agent {self.address}: {exc}") from None
            if len(parts) > 4:
                raise AgentError(f"agent {self.address}: fetched path too deep")
            total += size
            entries.append((rel, parts, size, digest))
        if total > max_bytes:
            raise AgentError(f"agent {self.address}: session is {total} bytes, more than the {max_bytes} allowed")
        dest.mkdir(parents=True)
        copied = []
        for rel, parts, size, digest in entries:
            target = dest.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            h = hashlib.sha256()
            with create_exclusive(target, buffering=1 << 16, binary=True) as fh:
                offset = 0
                while offset < size:
                    n = min(MAX_CHUNK, size - offset)
                    reply = self.request({"op": "read", "path": rel, "offset": offset, "length": n})
                    try:
                        data = base64.b64decode(str(reply.get("data", "")), validate=True)
                    except ValueError:
                        raise AgentError(f"agent {self.address}: {rel}: data is not base64") from None
                    if not data or len(data) > n:
                        raise AgentError(f"agent {self.address}: {rel}: short or long read at {offset}")
                    fh.write(data)
                    h.update(data)
                    offset += len(data)
            if h.hexdigest() != digest:
                raise AgentError(f"agent {self.address}: {rel}: SHA-256 mismatch after copy")
            copied.append(rel)
        return copied

    def bye(self) -> None:
        try:
            self.request({"op": "bye"})
        except AgentError:
            pass
        self.close()
