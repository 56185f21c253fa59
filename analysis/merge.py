"""Merge the sessions of agent hosts onto the coordinator's clock.

A multi-host session folder holds the coordinator's own traces and events, every clock
probe exchanged with each agent (``clock/<host>.csv``) and each agent's complete session
as fetched (``hosts/<host>/``).  Merging fits each host's clock (offset and drift, with
intervals: :mod:`analysis.clock_sync`), rewrites the host's stamps onto the coordinator
clock, and adds its channels as ``<host>.<channel>`` with the host and the clock
uncertainty (ns) in their info.  Host events keep their fields, gain ``host``, and host
bookkeeping (its session start/end, marks the coordinator forwarded) is renamed so that no
phase is counted twice.  A host without a fetched session or without a usable probe is
listed as not merged, with the reason: the merge is then marked incomplete.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.clock_sync import ClockFit, fit_clock
from analysis.session_format import (
    CLOCK_DIR,
    EVENTS_FILE,
    HOSTS_DIR,
    MANIFEST_FILE,
    SessionError,
    check_path_component,
    claim_folder,
    create_exclusive,
    json_safe,
    probe_path,
    read_manifest,
    read_probes,
    trace_files,
    trace_path,
    write_manifest,
)

#: Host event kinds renamed in a merge (the coordinator has its own of each).
RENAMED_KINDS = {"session_start": "host_session_start", "session_end": "host_session_end"}


class MergeError(SessionError):
    """A multi-host merge cannot be made (one line)."""


@dataclass
class HostMerge:
    """How one host was merged (or why not)."""

    name: str
    status: str  # merged | missing | unplaced
    fit: ClockFit | None = None
    channels: list[str] = field(default_factory=list)
    rows: int = 0
    events: int = 0
    reason: str | None = None
    probe_counts: dict[str, int] = field(default_factory=dict)
    host_status: str | None = None  # the status the host's own session recorded

    def to_dict(self) -> dict[str, Any]:
        return json_safe({"name": self.name, "status": self.status, "reason": self.reason,
                          "clock_fit": self.fit.to_dict() if self.fit else None, "channels": self.channels,
                          "rows": self.rows, "events": self.events, "probes": self.probe_counts,
                          "host_status": self.host_status})


def host_fit(folder: Path, host: str) -> tuple[ClockFit, dict[str, int]]:
    """The clock fit of ``host`` from the folder's probe file; MergeError if none is usable."""
    path = probe_path(folder, host)
    if not path.is_file():
        raise MergeError(f"no clock probes for host {host} ({path.relative_to(folder)} missing)")
    probes, counts = read_probes(path)
    try:
        return fit_clock(probes), counts
    except ValueError as exc:
        raise MergeError(f"host {host}: {exc}") from None


def map_trace(src: Path, dest: Path, fit: ClockFit) -> int:
    """Copy one trace with its ``t_ns`` column mapped onto the coordinator clock; returns the
    rows written.  Rows whose stamp is not an integer (a torn line) are dropped."""
    rows = 0
    with src.open("r", errors="replace") as fin, create_exclusive(dest, buffering=1 << 16) as fout:
        header = fin.readline()
        if not header.startswith("t_ns,"):
            raise MergeError(f"{src}: not a trace")
        fout.write(header)
        for line in fin:
            if not line.endswith("\n"):
                break  # torn last line
            t, sep, rest = line.partition(",")
            try:
                t_ns = int(t)
            except ValueError:
                continue
            fout.write(f"{fit.to_coordinator_ns(t_ns)}{sep}{rest}")
            rows += 1
    return rows


def map_event(ev: dict[str, Any], host: str, fit: ClockFit) -> dict[str, Any] | None:
    """A host event on the coordinator clock, tagged with the host (None if unusable)."""
    t = ev.get("t_ns")
    if not isinstance(t, int) or isinstance(t, bool):
        return None
    out = {**ev, "t_ns": fit.to_coordinator_ns(t), "host": host, "host_t_ns": t}
    kind = str(ev.get("kind", ""))
    if "coordinator_t_ns" in ev:  # a mark the coordinator forwarded: evidence, not a second phase
        out["kind"], out["mark"] = "host_mark", kind
    elif kind in RENAMED_KINDS:
        out["kind"] = RENAMED_KINDS[kind]
    if isinstance(ev.get("meter"), str):
        out["meter"] = f"{host}.{ev['meter']}"
    return out


def merge_host(dest: Path, host: str, host_dir: Path, fit: ClockFit,
               write_event: Callable[[dict[str, Any]], None]) -> tuple[list[dict[str, Any]], HostMerge]:
    """Write host ``host``'s traces (from its session folder ``host_dir``) into ``dest``
    mapped by ``fit``, hand its events to ``write_event``; returns the manifest meter
    entries of its channels and the merge record.  MergeError if ``host_dir`` is unreadable."""
    check_path_component(host, "host name")
    manifest = read_manifest(host_dir)
    start = int(manifest["clock"]["start_ns"])
    end = manifest["clock"].get("end_ns")
    u_ns = fit.uncertainty_ns(fit.to_coordinator_ns(start), fit.to_coordinator_ns(end) if end else None)
    record = HostMerge(host, "merged", fit=fit, host_status=str(manifest.get("status")))
    by_file = {}
    meters = []
    for m in manifest["meters"]:
        chans = []
        for ch in m.get("channels", []):
            new_id = f"{host}.{ch['id']}"
            by_file[trace_path(host_dir, ch["id"]).name] = new_id
            chans.append({**ch, "id": new_id, "info": {**ch.get("info", {}), "host": host,
                                                        "clock_uncertainty_ns": u_ns}})
            record.channels.append(new_id)
        meters.append({**m, "name": f"{host}.{m.get('name')}", "host": host, "channels": chans})
    files, _ = trace_files(host_dir)
    (dest / "traces").mkdir(exist_ok=True)
    for src in files:
        new_id = by_file.get(src.name) or f"{host}.{src.stem}"
        record.rows += map_trace(src, trace_path(dest, new_id), fit)
    for _, ev in event_lines(host_dir / EVENTS_FILE):
        mapped = map_event(ev, host, fit)
        if mapped is not None:
            write_event(mapped)
            record.events += 1
    return meters, record


def event_lines(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(line, event) of every complete line of an events file that is a JSON object; none
    if the file is missing or a symlink."""
    if not path.is_file() or path.is_symlink():
        return
    with path.open(errors="replace") as fh:
        for line in fh:
            if not line.endswith("\n"):
                return  # a torn last line
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict):
                yield line, ev


def merge_fetched(dest: Path, coord: Path, host: str, host_dir: Path,
                  write_event: Callable[[dict[str, Any]], None]) -> tuple[list[dict[str, Any]], HostMerge]:
    """Fit ``host``'s clock from ``coord``'s probes and merge its session ``host_dir`` into
    ``dest``: its meter entries and the record, or no meters and a record saying why not."""
    try:
        fit, counts = host_fit(coord, host)
    except (MergeError, SessionError) as exc:
        return [], HostMerge(host, "unplaced", reason=str(exc))
    if not (host_dir / MANIFEST_FILE).is_file():
        return [], HostMerge(host, "missing", fit=fit, probe_counts=counts,
                             reason=f"no session fetched from {host} ({host_dir} has none)")
    try:
        meters, rec = merge_host(dest, host, host_dir, fit, write_event)
    except (SessionError, OSError) as exc:
        return [], HostMerge(host, "missing", fit=fit, probe_counts=counts, reason=str(exc))
    rec.probe_counts = counts
    return meters, rec


def host_names(folder: Path) -> list[str]:
    """The hosts a multi-host folder has probes or a fetched session for."""
    names = {p.stem for p in (folder / CLOCK_DIR).glob("*.csv")} | {
        p.name for p in (folder / HOSTS_DIR).glob("*") if p.is_dir()}
    out = []
    for n in sorted(names):
        try:
            out.append(check_path_component(n, "host name"))
        except ValueError:
            continue
    return out


@dataclass
class MergeResult:
    path: Path
    hosts: list[HostMerge]

    @property
    def incomplete(self) -> list[str]:
        return [h.name for h in self.hosts if h.status != "merged"]

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "hosts": [h.to_dict() for h in self.hosts], "incomplete": self.incomplete}


def merge_sessions(coord: Path | str, out: Path | str, hosts: dict[str, Path] | None = None) -> MergeResult:
    """Write a new session folder ``out``: the coordinator's own channels and events, its
    clock probes, and every host merged onto its clock.  ``hosts`` maps host names to
    session folders to use instead of (or besides) ``coord/hosts/<name>``."""
    coord, out = Path(coord), Path(out)
    manifest = read_manifest(coord)
    names = host_names(coord)
    hosts = dict(hosts or {})
    for n in hosts:
        check_path_component(n, "host name")
        if n not in names:
            names.append(n)
    if not names:
        raise MergeError(f"{coord} has no agent hosts (no {CLOCK_DIR}/ or {HOSTS_DIR}/): nothing to merge")
    if out.resolve() == coord.resolve():
        raise MergeError("--out must be a new folder, not the session itself")
    claim_folder(out)
    local = [m for m in manifest["meters"] if "host" not in m]
    (out / "traces").mkdir()
    for m in local:
        for ch in m.get("channels", []):
            src = trace_path(coord, ch["id"])
            if src.is_file() and not src.is_symlink():
                shutil.copyfile(src, trace_path(out, ch["id"]))
    if (coord / CLOCK_DIR).is_dir():
        (out / CLOCK_DIR).mkdir()
        for n in names:
            src = probe_path(coord, n)
            if src.is_file() and not src.is_symlink():
                shutil.copyfile(src, probe_path(out, n))
    merged_meters: list[dict[str, Any]] = []
    records: list[HostMerge] = []
    with create_exclusive(out / EVENTS_FILE, buffering=1 << 16) as ev_out:
        for line, ev in event_lines(coord / EVENTS_FILE):
            if "host" not in ev:  # the coordinator's own; host events are mapped afresh below
                ev_out.write(line)

        def write_event(ev: dict[str, Any]) -> None:
            ev_out.write(json.dumps(json_safe(ev), allow_nan=False) + "\n")

        for n in names:
            meters, rec = merge_fetched(out, coord, n, hosts.get(n, coord / HOSTS_DIR / n), write_event)
            merged_meters += meters
            records.append(rec)
    result = MergeResult(out, records)
    new = {**manifest, "meters": local + merged_meters,
           "hosts": [r.to_dict() for r in records],
           "merge": {"from": str(coord), "incomplete": result.incomplete}}
    write_manifest(out, new)
    return result

