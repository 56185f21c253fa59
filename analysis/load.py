"""Load a recorded session into pandas.

``load_session(path)`` reads ``session.json``, every ``traces/*.csv`` and
``events.jsonl``.  Times become seconds since the session start (``t_s``, float) next to
the original ``t_ns``.  A torn last line (recorder killed mid-write) is dropped; a
session whose manifest still says ``recording`` is marked incomplete.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from drivers.base import safe_name

TRACE_DIR = "traces"


class SessionError(ValueError):
    """The folder is not a readable session (one-line message)."""


@dataclass
class ChannelTrace:
    """One channel's samples and metadata.  ``data`` has t_s, t_ns, rtt_ns, flag and quantities."""

    id: str
    meter: str
    info: dict[str, Any]
    data: pd.DataFrame

    @property
    def ok(self) -> pd.DataFrame:
        """Rows without a fault flag (values present)."""
        return self.data[self.data["flag"] == ""]

    @property
    def faults(self) -> dict[str, int]:
        flags = self.data["flag"]
        counts = flags[flags != ""].value_counts()
        return {str(k): int(v) for k, v in counts.items()}

    def segments(self) -> np.ndarray:
        """Segment number of each OK row: counters restart after disconnect/reconnect rows."""
        brk = self.data["flag"].isin(["disconnected", "reconnected"]).cumsum().to_numpy()
        return brk[(self.data["flag"] == "").to_numpy()]

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


def _read_lines(path: Path) -> str:
    text = path.read_text(errors="replace")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # torn last line
    return text


def read_trace(path: Path, start_ns: int) -> pd.DataFrame:
    text = _read_lines(path)
    if not text.strip():
        raise SessionError(f"{path}: empty trace")
    df = pd.read_csv(io.StringIO(text), dtype={"flag": str}, keep_default_na=False,
                     na_values={c: [""] for c in text.split("\n", 1)[0].split(",") if c not in ("flag",)})
    df["flag"] = df["flag"].fillna("").astype(str)
    df["t_ns"] = df["t_ns"].astype("int64")
    df.insert(0, "t_s", (df["t_ns"] - start_ns) / 1e9)
    for col in df.columns:
        if col not in ("flag", "t_ns", "t_s"):
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df.sort_values("t_ns", kind="stable").reset_index(drop=True)


def read_events(path: Path, start_ns: int) -> pd.DataFrame:
    rows = []
    if path.exists():
        for line in _read_lines(path).splitlines():
            try:
                ev = json.loads(line)
                int(ev["t_ns"])
            except (ValueError, KeyError, TypeError):
                continue
            rows.append(ev)
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame({"t_ns": pd.Series(dtype="int64"), "t_s": pd.Series(dtype=float),
                             "kind": pd.Series(dtype=str)})
    df["t_ns"] = df["t_ns"].astype("int64")
    df.insert(0, "t_s", (df["t_ns"] - start_ns) / 1e9)
    return df.sort_values("t_ns", kind="stable").reset_index(drop=True)


def load_session(path: str | Path) -> SessionData:
    """Read a session folder.  Raises SessionError with a one-line message."""
    folder = Path(path)
    if not folder.is_dir():
        raise SessionError(f"{folder} is not a folder")
    mpath = folder / "session.json"
    if not mpath.exists():
        raise SessionError(f"{folder} has no session.json: not a calibrate session")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as exc:
        raise SessionError(f"{mpath} is not valid JSON ({exc.msg})") from None
    start_ns = int(manifest.get("clock", {}).get("start_ns", 0))
    info: dict[str, tuple[str, dict[str, Any]]] = {}
    for m in manifest.get("meters", []):
        for ch in m.get("channels", []):
            info[ch["id"]] = (m.get("name", ch["id"]), {**ch, "meter_kind": m.get("kind"),
                                                       "simulated": m.get("simulated", False)})
    by_file = {safe_name(cid): cid for cid in info}
    channels: dict[str, ChannelTrace] = {}
    warnings: list[str] = []
    for csv_path in sorted((folder / TRACE_DIR).glob("*.csv")):
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
    return SessionData(folder, manifest, channels, read_events(folder / "events.jsonl", start_ns),
                       start_ns, warnings)
