"""The coordinator side of a multi-host session: meters on other hosts, ``agent://``.

``agent://HOST:PORT`` names every meter of the agent there, ``agent://HOST:PORT/METER``
one of them.  A session with such meters:

1. connects to and greets every agent *before* its folder is made: an agent that cannot be
   reached, is not an agent, or speaks another protocol version is one line, nothing
   recorded;
2. after its own recorder starts, starts a session on every agent, then probes each
   agent's clock every PROBE_EVERY_S and in a burst at every phase boundary, keeping every
   probe (``clock/<host>.csv``; a failed one keeps its status) and forwarding marks;
3. when an agent stops answering, marks ``host_lost`` once, goes on with the others, retries
   every RECONNECT_EVERY_S and marks ``host_back`` when it answers again (the agent went on
   recording in the meantime: the gap only widens the clock uncertainty);
   between probes it asks every LATEST_EVERY_S for the agent's latest readings, for the
   live view and a remote reference (display only: they are stamped on arrival here; the
   recorded samples are the agent's, mapped by the fitted clock at the merge);
4. at the stop, stops every agent, fetches its session into ``hosts/<host>/``, fits its clock
   and merges its channels as ``<host>.<channel>`` (:mod:`analysis.merge`).  A host that
   cannot be fetched is listed as not merged (``calibrate merge`` can redo it later).
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.merge import HostMerge, MergeError, host_fit, merge_fetched
from analysis.session_format import (
    CLOCK_DIR,
    HOSTS_DIR,
    ProbeWriter,
    SessionError,
    probe_path,
    safe_name,
)
from calibrate.agent_protocol import AgentClient, AgentError, parse_address
from calibrate.errors import UsageError

SCHEME = "agent://"
PROBE_EVERY_S = 2.0
PROBE_TIMEOUT_S = 2.0
BURST = 4  # probes at each phase boundary
FINAL_BURST = 8
RECONNECT_EVERY_S = 2.0
LATEST_EVERY_S = 1.0  # live readings for the live view and a remote cool-down reference
MAX_LIVE_CHANNELS = 256  # per agent; a reply naming more is cut there
FETCH_TIMEOUT_S = 60.0
TOKEN_ENV = "CALIBRATE_AGENT_TOKEN"
BURST_KINDS = ("phase_start", "phase_end", "session_start", "session_end")


def is_agent_uri(uri: Any) -> bool:
    return isinstance(uri, str) and uri.startswith(SCHEME)


@dataclass(frozen=True)
class AgentTarget:
    host: str
    port: int
    meters: tuple[str, ...] | None  # None: all the agent's meters


def parse_agent_uris(uris: Sequence[str]) -> list[AgentTarget]:
    """Group ``agent://HOST:PORT[/METER]`` URIs by agent; UsageError if one is malformed."""
    grouped: dict[tuple[str, int], list[str] | None] = {}
    for uri in uris:
        rest = uri[len(SCHEME):]
        addr, _, meter = rest.partition("/")
        try:
            host, port = parse_address(addr)
        except ValueError as exc:
            raise UsageError(f"{uri[:100]}: {exc}") from None
        if meter and (len(meter) > 200 or any(c in meter for c in "/?#") or not meter.isprintable()):
            raise UsageError(f"{uri[:100]}: bad meter name")
        key = (host, port)
        if key in grouped and (grouped[key] is None or not meter):
            grouped[key] = None
        elif meter:
            grouped.setdefault(key, [])
            lst = grouped[key]
            if lst is not None and meter not in lst:
                lst.append(meter)
        else:
            grouped[key] = None
    return [AgentTarget(h, p, tuple(m) if m is not None else None) for (h, p), m in grouped.items()]


@dataclass
class HostLink:
    """One agent: its connection, probe file and prober thread."""

    target: AgentTarget
    client: AgentClient
    name: str = ""
    writer: ProbeWriter | None = None
    started: bool = False
    lost: bool = False
    error: str | None = None
    folder: str | None = None
    meter_names: list[str] = field(default_factory=list)
    queue: queue.Queue = field(default_factory=queue.Queue)
    thread: threading.Thread | None = None
    latest: dict[str, tuple[str, dict[str, float]]] = field(default_factory=dict)  # channel -> (meter, values)


ReadingListener = Callable[[str, int, dict[str, dict[str, float]]], None]


def live_values(reply: dict[str, Any]) -> dict[str, tuple[str, dict[str, float]]]:
    """An agent's ``latest`` reply, validated: channel -> (meter, {quantity: finite value}).
    Hostile input: names must be short strings, values finite numbers; at most
    MAX_LIVE_CHANNELS channels; anything else is dropped, never raised."""
    latest, meters = reply.get("latest"), reply.get("meters")
    if not isinstance(latest, dict):
        return {}
    meters = meters if isinstance(meters, dict) else {}
    out: dict[str, tuple[str, dict[str, float]]] = {}
    for ch, values in list(latest.items())[:MAX_LIVE_CHANNELS]:
        if not isinstance(ch, str) or not 0 < len(ch) <= 128 or not isinstance(values, dict):
            continue
        q = {k: float(v) for k, v in list(values.items())[:16] if isinstance(k, str) and len(k) <= 32
             and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        meter = meters.get(ch)
        out[ch] = (meter if isinstance(meter, str) and 0 < len(meter) <= 128 else ch, q)
    return out


class RemoteHosts:
    """The agents of one session (see module doc)."""

    def __init__(self, uris: Sequence[str], clock: Callable[[], int] = time.monotonic_ns,
                 token: str | None = None, probe_every_s: float | None = None) -> None:
        self.targets = parse_agent_uris(uris)
        self.clock = clock
        self.token = token if token is not None else os.environ.get(TOKEN_ENV)
        self.probe_every_s = probe_every_s if probe_every_s is not None else PROBE_EVERY_S
        self.links: list[HostLink] = []
        self.records: list[HostMerge] = []
        self.meters: list[dict[str, Any]] = []  # merged meter entries (after finish)
        self._stop = threading.Event()
        self._write_event: Callable[[dict[str, Any]], None] | None = None
        self.folder: Path | None = None
        self.listeners: list[ReadingListener] = []
        self._latest_lock = threading.Lock()

    def add_listener(self, on_reading: ReadingListener) -> None:
        """``on_reading(meter, t_ns, {channel: {quantity: value}})`` hears every agent's live
        readings as ``<host>.<meter>`` / ``<host>.<channel>``, stamped on arrival (ns, this
        host's clock): the live view's feed."""
        self.listeners.append(on_reading)

    def latest(self, name: str) -> dict[str, float] | None:
        """The latest live values (W, J, ...) of remote channel ``<host>.<channel>``, or of the
        first channel of remote meter ``<host>.<meter>``; None when it has none."""
        with self._latest_lock:
            for ln in self.links:
                if not name.startswith(ln.name + "."):
                    continue
                rest = name[len(ln.name) + 1:]
                if rest in ln.latest:
                    return dict(ln.latest[rest][1])
                for meter, values in ln.latest.values():
                    if meter == rest:
                        return dict(values)
        return None

    # -- before anything is recorded -------------------------------------------------------
    def connect(self) -> None:
        """Connect and greet every agent; UsageError (one line) if any cannot be used."""
        if self.links:
            return
        links = []
        try:
            for t in self.targets:
                client = AgentClient(t.host, t.port, timeout_s=PROBE_TIMEOUT_S, token=self.token, clock=self.clock)
                try:
                    hello = client.connect()
                except AgentError as exc:
                    raise UsageError(f"{exc}; nothing was recorded") from None
                link = HostLink(t, client, name=str(hello["name"]))
                links.append(link)
                known = [str(m.get("name")) for m in hello.get("meters", []) if isinstance(m, dict)]
                if t.meters is not None:
                    missing = [m for m in t.meters if m not in known]
                    if missing:
                        raise UsageError(f"agent {client.address} ({link.name}) has no meter {missing[0]!r}; "
                                         f"it has {', '.join(known) or 'none'}")
                link.meter_names = list(t.meters) if t.meters is not None else known
                if hello.get("recording"):
                    raise UsageError(f"agent {client.address} ({link.name}) is already recording a session")
            names = [ln.name for ln in links]
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise UsageError(f"two agents are named {sorted(dup)[0]!r}: start them with distinct --name")
        except BaseException:
            for ln in links:
                ln.client.close()
            raise
        self.links = links

    def meter_names(self) -> list[str]:
        """``<host>.<meter>`` of every remote meter (known after :meth:`connect`)."""
        return [f"{ln.name}.{m}" for ln in self.links for m in ln.meter_names]

    def describe(self) -> list[dict[str, Any]]:
        """The manifest's ``hosts`` entries while recording (the merge replaces them)."""
        if self.records:
            return [r.to_dict() | {"address": self._address(r.name)} for r in self.records]
        return [{"name": ln.name, "address": ln.client.address, "status": "lost" if ln.lost else
                 ("recording" if ln.started else "connected"), "meters": ln.meter_names,
                 "folder": ln.folder, "error": ln.error} for ln in self.links]

    def _address(self, name: str) -> str | None:
        for ln in self.links:
            if ln.name == name:
                return ln.client.address
        return None

    # -- recording ---------------------------------------------------------------------
    def start(self, folder: Path, session_name: str, workload: dict[str, Any],
              write_event: Callable[[dict[str, Any]], None]) -> None:
        """Start every agent's session and its prober (the coordinator is recording)."""
        self.folder = folder
        self._write_event = write_event
        (folder / CLOCK_DIR).mkdir(exist_ok=True)
        name = f"{safe_name(session_name)[:60].lstrip('.-') or 'session'}-{uuid.uuid4().hex[:6]}"
        for ln in self.links:
            ln.writer = ProbeWriter(probe_path(folder, ln.name))
            self._probe(ln, BURST)
            try:
                reply = ln.client.start(name, {"name": workload.get("name"), "coordinator_folder": folder.name},
                                        meters=ln.target.meters)
                ln.started, ln.folder = True, str(reply.get("folder"))
            except AgentError as exc:
                self._lose(ln, str(exc), start_failed=True)
            ln.thread = threading.Thread(target=self._loop, args=(ln,), daemon=True, name=f"agent-{ln.name}")
            ln.thread.start()

    def on_mark(self, event: dict[str, Any]) -> None:
        """Forward a coordinator event to every agent (and probe at phase boundaries)."""
        for ln in self.links:
            ln.queue.put(("mark", event))

    def _event(self, ev: dict[str, Any]) -> None:
        if self._write_event is not None:
            self._write_event({"t_ns": self.clock(), **ev})

    def _lose(self, ln: HostLink, error: str, start_failed: bool = False) -> None:
        ln.client.close()
        ln.error = error
        if not ln.lost:
            ln.lost = True
            self._event({"kind": "host_start_failed" if start_failed else "host_lost", "host": ln.name,
                         "address": ln.client.address, "error": error})

    def _probe(self, ln: HostLink, n: int = 1) -> None:
        assert ln.writer is not None
        for _ in range(n):
            if not ln.client.connected:
                ln.writer.write(self.clock(), status="disconnected")
                return
            t1 = self.clock()
            try:
                ln.writer.write(*ln.client.probe())
            except AgentError as exc:
                ln.writer.write(t1, status="timeout" if "timed out" in str(exc) else "disconnected")
                self._lose(ln, str(exc))
                return

    def _reconnect(self, ln: HostLink) -> None:
        try:
            hello = ln.client.connect()
        except AgentError as exc:
            if ln.writer is not None:
                ln.writer.write(self.clock(), status="refused")
            ln.error = str(exc)
            return
        if hello.get("name") != ln.name:
            ln.client.close()
            ln.error = f"{ln.client.address} is now agent {hello.get('name')!r}, not {ln.name!r}"
            return
        ln.lost = False
        self._event({"kind": "host_back", "host": ln.name, "address": ln.client.address,
                     "recording": bool(hello.get("recording"))})
        self._probe(ln, BURST)

    def _poll_latest(self, ln: HostLink) -> None:
        if not (ln.started and ln.client.connected):
            return
        try:
            reply = ln.client.latest()
        except AgentError as exc:
            if not ln.client.connected:
                self._lose(ln, str(exc))
            return
        t_ns = self.clock()
        live = live_values(reply)
        with self._latest_lock:
            ln.latest = {ch: (meter, q) for ch, (meter, q) in live.items() if q}
        by_meter: dict[str, dict[str, dict[str, float]]] = {}
        for ch, (meter, q) in live.items():
            if q:
                by_meter.setdefault(f"{ln.name}.{meter}", {})[f"{ln.name}.{ch}"] = q
        for listener in self.listeners:
            for meter, values in by_meter.items():
                try:
                    listener(meter, t_ns, values)
                except Exception:  # a view's fault never stops the probes
                    pass

    def _loop(self, ln: HostLink) -> None:
        next_probe = time.monotonic() + self.probe_every_s
        next_latest = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_latest and not ln.lost:
                self._poll_latest(ln)
                next_latest = now + LATEST_EVERY_S
            wake = min(next_probe, next_latest) if not ln.lost else next_probe
            try:
                kind, ev = ln.queue.get(timeout=max(0.0, wake - time.monotonic()))
            except queue.Empty:
                kind, ev = ("probe", None) if time.monotonic() >= next_probe else ("latest", None)
            if self._stop.is_set():
                break
            if kind == "latest":
                continue
            if kind == "mark":
                if ln.client.connected and ln.started:
                    try:
                        ln.client.mark(ev)
                    except AgentError as exc:
                        if not ln.client.connected:
                            self._lose(ln, str(exc))
                if ev.get("kind") in BURST_KINDS and ln.client.connected:
                    self._probe(ln, BURST)
                continue
            next_probe = time.monotonic() + (RECONNECT_EVERY_S if ln.lost else self.probe_every_s)
            if ln.lost:
                self._reconnect(ln)
            else:
                self._probe(ln)

    # -- the stop ----------------------------------------------------------------------
    def finish(self, status: str) -> None:
        """Stop probing, stop every agent, fetch and merge its session into the folder."""
        self._stop.set()
        for ln in self.links:
            if ln.thread is not None:
                ln.queue.put(("stop", None))
                ln.thread.join(timeout=PROBE_TIMEOUT_S * (BURST + 2) + 5)
        assert self.folder is not None
        for ln in self.links:
            self.records.append(self._finish_one(ln, status))
        for ln in self.links:
            if ln.writer is not None:
                ln.writer.close()
            ln.client.bye()

    def _finish_one(self, ln: HostLink, status: str) -> HostMerge:
        assert self.folder is not None
        if not ln.client.connected:
            self._reconnect(ln)
        if ln.client.connected:
            self._probe(ln, FINAL_BURST)
        if ln.writer is not None:
            ln.writer.close()
        if not ln.started:
            return HostMerge(ln.name, "missing", reason=ln.error or "its session never started")
        dest = self.folder / HOSTS_DIR / ln.name
        try:
            if not ln.client.connected:
                raise AgentError(ln.error or f"agent {ln.client.address} is not connected")
            ln.client.stop("complete" if status == "complete" else "interrupted")
            if ln.client.sock is not None:
                ln.client.sock.settimeout(FETCH_TIMEOUT_S)
            (self.folder / HOSTS_DIR).mkdir(exist_ok=True)
            ln.client.fetch(dest)
        except (AgentError, OSError) as exc:
            reason = f"not fetched: {exc}"
            self._event({"kind": "host_merge_failed", "host": ln.name, "error": reason})
            try:
                fit = host_fit(self.folder, ln.name)[0]
            except (MergeError, SessionError):
                fit = None
            return HostMerge(ln.name, "missing", fit=fit, reason=reason)
        assert self._write_event is not None
        meters, rec = merge_fetched(self.folder, self.folder, ln.name, dest, self._write_event)
        if rec.status != "merged" or rec.fit is None:
            self._event({"kind": "host_merge_failed", "host": ln.name, "error": rec.reason})
            return rec
        fit = rec.fit
        self.meters += meters
        self._event({"kind": "host_merged", "host": ln.name, "channels": rec.channels, "rows": rec.rows,
                     "clock_uncertainty_ns": fit.uncertainty_ns(), "offset_ns": fit.offset_ns,
                     "drift_ppm": fit.drift_ppm})
        return rec
