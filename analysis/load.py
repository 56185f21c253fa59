"""Load a recorded session into pandas.

``load_session(path)`` reads ``session.json``, every trace and ``events.jsonl`` through
:mod:`analysis.session_format` (which owns the files, columns and flag rules).  Times
become seconds since the session start (``t_s``, float) next to the original ``t_ns``.
A session whose manifest still says ``recording`` is marked incomplete.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.session_format import (
    EVENTS_FILE,
    SEGMENT_BREAKS,
    SessionError,
    manifest_channels,
    read_events,
    read_manifest,
    read_trace,
    safe_name,
    split_notes,
    trace_files,
)

__all__ = ["ChannelTrace", "SessionData", "SessionError", "load_session"]


@dataclass
class ChannelTrace:
    """One channel's samples and metadata.

    ``data`` has t_s (s since the session start), t_ns, rtt_ns, flag, fault (bool) and the
    quantities (W, J, V, A, ... as named).
    """

    id: str
    meter: str
    info: dict[str, Any]
    data: pd.DataFrame

    @property
    def ok(self) -> pd.DataFrame:
        """Rows with values: fault rows dropped, suspect-but-valid rows (a note in ``flag``) kept."""
        return self.data[~self.data["fault"]]

    @property
    def faults(self) -> dict[str, int]:
        """Fault rows (no values) counted by code."""
        counts = self.data.loc[self.data["fault"], "flag"].value_counts()
        return {str(k): int(v) for k, v in counts.items()}

    @property
    def notes(self) -> dict[str, int]:
        """Notes on suspect-but-valid values, counted by note (``freq_hz:nan``: 3)."""
        out: dict[str, int] = {}
        for flag in self.data.loc[~self.data["fault"] & (self.data["flag"] != ""), "flag"]:
            for note in split_notes(flag):
                out[note] = out.get(note, 0) + 1
        return out

    def segments(self) -> np.ndarray:
        """Segment number of each OK row: counters restart after disconnect/reconnect rows."""
        brk = (self.data["fault"] & self.data["flag"].isin(SEGMENT_BREAKS)).cumsum().to_numpy()
        return brk[(~self.data["fault"]).to_numpy()]

    @property
    def source(self) -> str:
        return str(self.info.get("source", "measured"))

    @property
    def scope(self) -> str:
        return str(self.info.get("scope", ""))


@dataclass
class SessionData:
    path: Path
    manifest: dict[str, Any]
    channels: dict[str, ChannelTrace]
    events: pd.DataFrame
    start_ns: int
    warnings: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        s = str(self.manifest.get("status", "unknown"))
        return "incomplete" if s == "recording" else s

    @property
    def duration_s(self) -> float:
        ends = [c.data["t_s"].iloc[-1] for c in self.channels.values() if len(c.data)]
        if len(self.events):
            ends.append(float(self.events["t_s"].max()))
        return float(max(ends)) if ends else 0.0

    def phases(self) -> list[tuple[str, float, float]]:
        """(phase, start s, end s) from phase_start/phase_end pairs; an open phase ends at the last stamp."""
        out: list[tuple[str, float, float]] = []
        if not len(self.events) or "phase" not in self.events:
            return out
        open_: dict[str, float] = {}
        for _, ev in self.events.iterrows():
            if ev["kind"] == "phase_start":
                open_[str(ev["phase"])] = float(ev["t_s"])
            elif ev["kind"] == "phase_end" and str(ev["phase"]) in open_:
                name = str(ev["phase"])
                out.append((name, open_.pop(name), float(ev["t_s"])))
        end = self.duration_s
        out.extend((name, t0, end) for name, t0 in open_.items())
        return sorted(out, key=lambda p: p[1])

    def result(self) -> dict[str, Any]:
        """The workload's final ``result`` event (accuracy, images_per_s, ...), merged."""
        out: dict[str, Any] = {}
        if len(self.events):
            for _, ev in self.events[self.events["kind"] == "result"].iterrows():
                out.update({k: v for k, v in ev.items() if k not in ("t_ns", "t_s", "kind", "source")
                            and not (isinstance(v, float) and np.isnan(v))})
        return out


def load_session(path: str | Path) -> SessionData:
    """Read a session folder.  Raises SessionError with a one-line message."""
    folder = Path(path)
    manifest = read_manifest(folder)
    start_ns = int(manifest.get("clock", {}).get("start_ns", 0))
    info = manifest_channels(manifest)
    by_file = {safe_name(cid): cid for cid in info}
    channels: dict[str, ChannelTrace] = {}
    files, warnings = trace_files(folder)
    for csv_path in files:
        cid = by_file.get(csv_path.stem, csv_path.stem)
        try:
            data = read_trace(csv_path, start_ns)
        except (SessionError, pd.errors.ParserError, KeyError, ValueError) as exc:
            warnings.append(f"{csv_path.name}: unreadable ({exc})")
            continue
        meter, chinfo = info.get(cid, (cid, {"id": cid}))
        channels[cid] = ChannelTrace(cid, meter, chinfo, data)
    if not channels:
        raise SessionError(f"{folder} holds no readable traces")
    if manifest.get("status") == "recording":
        warnings.append("session is incomplete: the recorder did not finish (killed or still running)")
    return SessionData(folder, manifest, channels, read_events(folder / EVENTS_FILE, start_ns),
                       start_ns, warnings)
