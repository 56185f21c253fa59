"""Import an MLPerf power-dev result folder (PTDaemon sample logs) as a session.

The power-dev flow leaves, per run, ``ranging/spl.txt`` and ``run_1/spl.txt`` (and the
director's ``power/ptd_logs.txt``): PTDaemon sample lines
``Time,MM-DD-YYYY HH:MM:SS.fff,Watts,w,Volts,v,Amps,a,PF,pf,Mark,{mark}`` in UTC, and
LoadGen's ``mlperf_log_detail.txt`` whose ``power_begin``/``power_end`` bound the measured
window.  The import makes one wall channel ``ptd`` (power_w, voltage_v, current_a, pf) from
the sample files (the director's combined log only if there is no per-run file), a phase
per mark (``ranging``, ``testing``), and a phase ``power_window`` per LoadGen window.  A
``-1`` W sample (an unplugged analyzer) becomes a ``disconnected`` fault row.  Every file
is bounded and every line validated; lines that are not samples are counted and reported.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

from analysis.session_format import (
    EVENTS_FILE,
    FORMAT,
    TRACE_DIR,
    EventWriter,
    TraceWriter,
    claim_folder,
    trace_path,
    write_manifest,
)

SAMPLE_FILES = ("spl.txt",)
COMBINED_LOG = "ptd_logs.txt"
DETAIL_LOG = "mlperf_log_detail.txt"
MAX_FILE_BYTES = 1 << 30  # 1 GiB per file
MAX_FILES = 1000
MAX_DEPTH = 6
QUANTITIES = ("power_w", "voltage_v", "current_a", "pf")
_SAMPLE = re.compile(
    r"^Time,(?P<t>\d\d-\d\d-\d{4} \d\d:\d\d:\d\d\.\d{1,6}),Watts,(?P<w>[-+0-9.eE]+),Volts,(?P<v>[-+0-9.eE]+),"
    r"Amps,(?P<a>[-+0-9.eE]+),(?:.*,)?PF,(?P<pf>[-+0-9.eE]+),Mark,(?P<mark>[A-Za-z0-9_.:+-]{0,200})$")
_MLLOG = re.compile(r":::MLLOG (\{.*\})\s*$")
TIME_FORMAT = "%m-%d-%Y %H:%M:%S.%f"


def _utc_ns(text: str) -> int:
    t = datetime.strptime(text, TIME_FORMAT).replace(tzinfo=timezone.utc)
    return int(t.timestamp()) * 10**9 + t.microsecond * 1000


def _files(root: Path, name: str) -> list[Path]:
    out: list[Path] = []
    stack = [(root, 0)]
    while stack and len(out) < MAX_FILES:
        d, depth = stack.pop()
        try:
            entries = sorted(d.iterdir())
        except OSError:
            continue
        for p in entries:
            if p.is_symlink():
                continue
            if p.is_dir() and depth < MAX_DEPTH:
                stack.append((p, depth + 1))
            elif p.is_file() and p.name == name:
                out.append(p)
    return sorted(out)


def _num(s: str) -> float:
    x = float(s)
    if x != x or abs(x) > 1e9:
        raise ValueError(s)
    return x


def read_samples(path: Path, warnings: list[str]) -> list[tuple[int, str, dict[str, float] | None]]:
    """(UTC ns, mark, values or None for an unplugged analyzer) of each valid sample line."""
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"{path} is larger than {MAX_FILE_BYTES} bytes")
    rows, bad = [], 0
    with path.open("r", errors="replace") as fh:
        for line in fh:
            m = _SAMPLE.match(line.rstrip("\r\n"))
            if not m:
                bad += line.strip() != ""
                continue
            try:
                t = _utc_ns(m["t"])
                vals = {q: _num(m[k]) for q, k in zip(QUANTITIES, ("w", "v", "a", "pf"))}
            except ValueError:
                bad += 1
                continue
            rows.append((t, m["mark"], None if vals["power_w"] < 0 else vals))
    if bad:
        warnings.append(f"{path.name} ({path.parent.name}): {bad} line(s) are not PTDaemon samples, skipped")
    return rows


def read_power_windows(path: Path, warnings: list[str]) -> list[tuple[int, int]]:
    """LoadGen's (power_begin, power_end) windows (UTC ns) in one detail log."""
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"{path} is larger than {MAX_FILE_BYTES} bytes")
    begins, ends = [], []
    with path.open("r", errors="replace") as fh:
        for line in fh:
            m = _MLLOG.search(line)
            if not m:
                continue
            try:
                rec = json.loads(m.group(1))
                key, value = rec.get("key"), rec.get("value")
                if key in ("power_begin", "power_end") and isinstance(value, str):
                    (begins if key == "power_begin" else ends).append(_utc_ns(value))
            except (ValueError, AttributeError):
                continue
    if len(begins) != len(ends):
        warnings.append(f"{path.parent.name}/{path.name}: {len(begins)} power_begin but {len(ends)} power_end")
    return [(b, e) for b, e in zip(begins, ends) if e > b]


def mark_phase(mark: str) -> str:
    """``2026-01-01_12-00-00_label_testing`` -> ``testing``; other marks as they are."""
    tail = mark.rsplit("_", 1)[-1]
    return tail if tail in ("ranging", "testing") else (mark or "unmarked")


def import_power_dev(src: Path | str, out: Path | str, warnings: list[str] | None = None) -> Path:
    """Write ``out`` as a session holding the power-dev results under ``src``; ValueError
    (one line) if there is no PTDaemon sample in it."""
    src, out = Path(src), Path(out)
    warnings = warnings if warnings is not None else []
    if not src.is_dir():
        raise ValueError(f"{src} is not a folder")
    files = [p for name in SAMPLE_FILES for p in _files(src, name)] or _files(src, COMBINED_LOG)
    if not files:
        raise ValueError(f"{src} holds no PTDaemon sample log (spl.txt or {COMBINED_LOG})")
    rows = []
    for f in files:
        rows += read_samples(f, warnings)
    if not rows:
        raise ValueError(f"no PTDaemon sample line in {', '.join(str(f) for f in files[:3])}")
    rows.sort(key=lambda r: r[0])
    unplugged = sum(1 for r in rows if r[2] is None)
    if unplugged:
        warnings.append(f"{unplugged} sample(s) read -1 W (analyzer unplugged): kept as disconnected faults")
    windows = [w for p in _files(src, DETAIL_LOG) for w in read_power_windows(p, warnings)]
    try:
        claim_folder(out)
    except FileExistsError as exc:
        raise ValueError(str(exc)) from None
    (out / TRACE_DIR).mkdir()
    writer = TraceWriter(trace_path(out, "ptd"), QUANTITIES)
    try:
        for t, _, vals in rows:
            if vals is None:
                writer.write_fault(t, 0, "disconnected")
            else:
                writer.write(t, 0, vals)
    finally:
        writer.close()
    events = EventWriter(out / EVENTS_FILE)
    try:
        current, last = None, 0
        for t, mark, _ in rows + [(rows[-1][0] + 1, None, None)]:
            if mark != current:
                if current is not None:
                    events.write({"t_ns": last, "kind": "phase_end", "phase": mark_phase(current), "mark": current})
                if mark is not None:
                    events.write({"t_ns": t, "kind": "phase_start", "phase": mark_phase(mark), "mark": mark})
                current = mark
            last = t
        for b, e in windows:
            events.write({"t_ns": b, "kind": "phase_start", "phase": "power_window", "source": DETAIL_LOG})
            events.write({"t_ns": e, "kind": "phase_end", "phase": "power_window", "source": DETAIL_LOG})
    finally:
        events.close()
    start = rows[0][0]
    interval = (rows[-1][0] - start) / max(len(rows) - 1, 1) / 1e9
    manifest = {
        "format": FORMAT, "status": "imported",
        "clock": {"source": "imported: PTDaemon UTC stamps (the power-dev flow keeps them within 400 ms of NTP)",
                  "unit": "ns", "start_ns": start, "end_ns": rows[-1][0],
                  "anchor": {"monotonic_ns": start, "utc_ns": start, "uncertainty_ns": 400_000_000}},
        "reference": "ptd",
        "meters": [{"uri": f"import:power-dev:{src}", "kind": "power-dev", "name": "ptd",
                    "channels": [{"id": "ptd", "scope": "wall", "source": "measured", "quantities": list(QUANTITIES),
                                  "window_s": None, "update_interval_s": interval, "energy_resolution_j": None,
                                  "primary": "power_w",
                                  "info": {"imported_from": [str(f.relative_to(src)) for f in files],
                                           "power_windows": len(windows)}}]}],
        "workload": {"name": "power-dev", "parameters": {}},
        "notes": f"imported from MLPerf power-dev results in {src}",
        "import_warnings": warnings,
    }
    write_manifest(out, manifest)
    return out
