"""The HTTP transport of every HTTP meter (plugs, Redfish BMCs, Prometheus): one bounded
request at a time, over TCP or TLS, translated by the driver into MeterErrors once.

Each request has one overall deadline (connect, TLS handshake, send, status line, headers
and body together) and a size cap, so anything answering on the port that drips, floods
or never ends its reply costs one flagged poll, never a stalled session.  JSON values are
read through :func:`json_number`: ``true``, ``"200"``, ``null``, NaN and infinities are
faults with a code, never watts.
"""

from __future__ import annotations

import http.client
import io
import math
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

from drivers.base import MeterDisconnected, MeterReadError

#: the default cap on one reply (bytes, status line and headers included)
MAX_REPLY_BYTES = 64 * 1024


class ReplyTooLarge(Exception):
    """A reply exceeded :data:`MAX_REPLY_BYTES` (raised by :func:`http_request`)."""


class ConnectFailed(OSError):
    """The TCP connection could not be made (refused, no route, timed out connecting)."""


class BoundedSocketReader(io.RawIOBase):
    """The socket as http.client reads it: each recv waits no longer than what is left of
    the request's deadline (checked before every read, so a reply dripping a byte at a
    time cannot outlast it), and no more than ``max_bytes`` are read in all."""

    def __init__(self, sock: socket.socket, deadline: float, max_bytes: int) -> None:
        self.sock, self.deadline, self.max_bytes, self.total = sock, deadline, max_bytes, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if self.total > self.max_bytes:
            raise ReplyTooLarge(f"reply exceeds {self.max_bytes} bytes")
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request deadline passed")
        self.sock.settimeout(remaining)
        # one byte past the cap is enough to know the reply is too large
        n = self.sock.recv_into(memoryview(buf)[: self.max_bytes + 1 - self.total])
        self.total += n
        if self.total > self.max_bytes:
            raise ReplyTooLarge(f"reply exceeds {self.max_bytes} bytes")
        return n


class _SocketView:
    """What ``http.client.HTTPResponse`` wants of a socket: ``makefile("rb")``."""

    def __init__(self, raw: io.RawIOBase) -> None:
        self._raw = raw

    def makefile(self, mode: str = "rb", *args: Any, **kw: Any) -> io.BufferedReader:
        return io.BufferedReader(self._raw)


def _connect(addrs: list[tuple[int, Any]], deadline: float) -> socket.socket:
    last: OSError = ConnectFailed("no address")
    for family, sockaddr in addrs:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ConnectFailed(f"no connection within the deadline ({last})")
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(remaining)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise ConnectFailed(last.strerror or str(last) or type(last).__name__) from last


class Unreachable(MeterDisconnected):
    """No connection could be made (no such name, refused, no route): ``why``.  A driver
    turns it into a MeterConfigError naming the fix at its first open."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}")
        self.why = why


class TlsRejected(MeterDisconnected):
    """The TLS handshake failed; ``untrusted``: the peer's certificate did not verify."""

    def __init__(self, where: str, reason: str, untrusted: bool) -> None:
        super().__init__(f"{where}: TLS {'certificate not trusted' if untrusted else 'handshake failed'} ({reason})")
        self.reason, self.untrusted = reason, untrusted


def resolve(host: str, port: int) -> list[tuple[int, Any]]:
    """The (family, sockaddr) pairs of ``host``:``port`` (name lookups have no timeout of
    their own: look up once per open, then connect to these).  Raises :class:`Unreachable`."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except (UnicodeError, OSError) as exc:
        raise Unreachable(f"{host}:{port}", f"cannot resolve {host}: {exc}") from None
    return [(family, sockaddr) for family, _, _, _, sockaddr in infos]


def build_request(method: str, host: str, port: int, path: str, headers: dict[str, str] | None = None,
                  body: bytes = b"") -> bytes:
    """One HTTP/1.1 request (``Connection: close``) as bytes.  ``headers`` must not hold
    CR or LF (raises ValueError): a value from a file cannot smuggle a second header."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Accept: application/json",
             "User-Agent: calibrate", "Connection: close"]
    for k, v in (headers or {}).items():
        if any(c in "\r\n" for c in k + v):
            raise ValueError(f"header {k!r} holds a line break")
        lines.append(f"{k}: {v}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + body


@dataclass(frozen=True)
class HttpReply:
    """One reply: status code, headers (lower-case names; repeated ones joined by ", "), body."""

    status: int
    headers: dict[str, str]
    body: bytes


def http_request(addrs: list[tuple[int, Any]], request: bytes, timeout_s: float,
                 max_bytes: int = MAX_REPLY_BYTES, tls: ssl.SSLContext | None = None,
                 server_hostname: str | None = None) -> HttpReply:
    """Send one prepared ``request`` (:func:`build_request`) and return its reply.

    stdlib ``http.client`` parses the reply (status line, at most 100 headers of at most
    64 KiB each, chunked or Content-Length or close-delimited bodies) but reads through
    :class:`BoundedSocketReader`, so the whole request -- connect, TLS handshake, send and
    every read -- ends by ``timeout_s`` and reads at most ``max_bytes``.  (urllib and urllib3
    time out per socket operation only: a reply dripping a byte at a time never ends;
    urllib3 is not one of our dependencies either.)  With ``tls`` the connection is
    wrapped in that context (certificate and host name checked as the context says).

    Raises :class:`ConnectFailed` when no connection could be made, ``TimeoutError`` past
    the deadline, :class:`ReplyTooLarge`, ``ssl.SSLError`` (an ``OSError``; e.g.
    ``ssl.SSLCertVerificationError``) for a TLS failure, ``http.client.HTTPException``
    for a malformed reply and ``OSError`` when the connection breaks.
    """
    deadline = time.monotonic() + timeout_s
    sock = _connect(addrs, deadline)
    try:
        if tls is not None:
            sock.settimeout(max(deadline - time.monotonic(), 1e-3))
            sock = tls.wrap_socket(sock, server_hostname=server_hostname)
        sock.settimeout(max(deadline - time.monotonic(), 1e-3))
        sock.sendall(request)
        method = request.split(b" ", 1)[0].decode("ascii", "replace")
        resp = http.client.HTTPResponse(_SocketView(BoundedSocketReader(sock, deadline, max_bytes)),  # type: ignore[arg-type]
                                        method=method)
        resp.begin()
        if resp.length is not None and resp.length > max_bytes:
            raise ReplyTooLarge(f"reply announces {resp.length} bytes (the cap is {max_bytes})")
        body = bytearray()
        while len(body) <= max_bytes:
            piece = resp.read(16384)
            if not piece:
                break
            body += piece
        if len(body) > max_bytes:
            raise ReplyTooLarge(f"reply exceeds {max_bytes} bytes")
        headers: dict[str, str] = {}
        for k, v in resp.getheaders():
            k = k.lower()
            headers[k] = f"{headers[k]}, {v}" if k in headers else v
        return HttpReply(resp.status, headers, bytes(body))
    finally:
        sock.close()


def fetch(addrs: list[tuple[int, Any]], request: bytes, timeout_s: float, where: str,
          max_bytes: int = MAX_REPLY_BYTES, tls: ssl.SSLContext | None = None,
          server_hostname: str | None = None) -> HttpReply:
    """:func:`http_request` with every transport failure translated, once, into a
    MeterError naming ``where`` (the URL): :class:`Unreachable`; no complete reply within
    ``timeout_s`` -> code ``timeout``; too large or malformed -> ``garbage``;
    :class:`TlsRejected`; a connection that broke -> MeterDisconnected."""
    try:
        return http_request(addrs, request, timeout_s, max_bytes, tls, server_hostname)
    except ConnectFailed as exc:
        raise Unreachable(where, str(exc)) from None
    except TimeoutError:
        raise MeterReadError(f"{where}: no complete reply within {timeout_s:g} s", code="timeout") from None
    except ReplyTooLarge as exc:
        raise MeterReadError(f"{where}: {exc}", code="garbage") from None
    except ssl.SSLCertVerificationError as exc:
        raise TlsRejected(where, exc.verify_message or "verification failed", True) from None
    except ssl.SSLError as exc:
        raise TlsRejected(where, exc.reason or type(exc).__name__, False) from None
    except http.client.HTTPException as exc:
        raise MeterReadError(f"{where}: malformed HTTP reply ({type(exc).__name__}: {str(exc)[:60]})",
                             code="garbage") from None
    except OSError as exc:  # the connection broke after it was made
        raise MeterDisconnected(f"{where}: {exc.strerror or str(exc) or type(exc).__name__}") from None


def json_number(obj: Any, key: str, what: str) -> float:
    """``obj[key]`` as a float: a JSON number (or a list of them: the first); ``null`` is
    "nan", true/false, strings and other types are "garbage", NaN "nan", inf "range"."""
    if not isinstance(obj, dict):
        raise MeterReadError(f"{what}: expected an object holding {key!r}, got {type(obj).__name__}",
                             code="garbage")
    if key not in obj:
        raise MeterReadError(f"{what}: field {key!r} missing", code="garbage")
    v = obj[key]
    if isinstance(v, list):  # multi-channel Tasmota devices report lists
        v = v[0] if v else None
    if v is None:
        raise MeterReadError(f"{what}: {key} is null (no data)", code="nan")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise MeterReadError(f"{what}: field {key}={str(v)[:40]!r} is a {type(v).__name__}, not a number",
                             code="garbage")
    try:
        x = float(v)
    except OverflowError:
        raise MeterReadError(f"{what}: {key} is out of range", code="range") from None
    if math.isnan(x):
        raise MeterReadError(f"{what}: {key} is NaN", code="nan")
    if math.isinf(x):
        raise MeterReadError(f"{what}: {key} is {x}", code="range")
    return x
