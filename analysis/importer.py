"""Turn external power traces (CSV) into a session folder, so every analysis applies.

Published replication data, another tool's log or a wattmeter's own export usually come
as ``timestamp`` (Unix s) and ``power_w`` columns, each on its own clock.  ``import_traces``
writes them in the session format (``calibrate-session/1``, status ``imported``): the
stamps are kept as given (Unix ns), so a clock offset between the sources shows up as a
lag and is estimated, not assumed away.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.session_format import (
    EVENTS_FILE,
    FORMAT,
    TRACE_DIR,
    EventWriter,
    TraceWriter,
    claim_folder,
    safe_name,
    trace_path,
    write_manifest,
)

#: the scopes a trace may declare (what a meter can see)
SCOPES = ("wall", "system", "package", "core", "uncore", "dram", "psys", "gpu", "cpu")
SOURCES = ("measured", "modelled")


@dataclass(frozen=True)
class TraceSpec:
    """One trace to import: channel id, CSV path, scope (wall, package, gpu, ...), source
    (``measured`` or ``modelled``: a utilisation model, CodeCarbon's estimate) and its own
    power column (None: the command's ``--power-col``)."""

    name: str
    path: Path
    scope: str = "system"
    source: str = "measured"
    power_col: str | None = None

    @classmethod
    def parse(cls, text: str) -> TraceSpec:
        """``NAME=FILE.csv[@SCOPE[/SOURCE][:POWERCOL]]``; raises ValueError (one line).

        e.g. ``wall=wall.csv@wall:watts``, ``tool=tool.csv@package/modelled:power``."""
        form = "expected NAME=FILE.csv[@SCOPE[/measured|/modelled][:POWERCOL]]"
        name, sep, rest = text.partition("=")
        if not sep or not name or not rest:
            raise ValueError(f"--trace {text!r}: {form}")
        if safe_name(name) != name:
            raise ValueError(f"--trace {text!r}: use letters, digits, '.', '_' or '-' in the name")
        path, at, tail = rest.rpartition("@") if "@" in rest else (rest, "", "")
        if at and not path:
            raise ValueError(f"--trace {text!r}: {form}")
        scope_src, colon, col = tail.partition(":")
        scope, slash, source = scope_src.partition("/")
        scope = scope or "system"
        if scope not in SCOPES:
            raise ValueError(f"--trace {text!r}: unknown scope {scope!r}; one of {', '.join(SCOPES)}")
        source = source or "measured"
        if source not in SOURCES:
            raise ValueError(f"--trace {text!r}: unknown source {source!r}; measured or modelled")
        if colon and not col:
            raise ValueError(f"--trace {text!r}: empty power column after ':'")
        return cls(name, Path(path), scope, source, col or None)


def _read(spec: TraceSpec, time_col: str, power_col: str, energy_col: str | None) -> pd.DataFrame:
    if not spec.path.is_file():
        raise ValueError(f"{spec.path} not found")
    try:
        df = pd.read_csv(spec.path, comment="#")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{spec.path} is not a readable CSV ({str(exc).splitlines()[0]})") from None
    need = [time_col] + ([power_col] if power_col in df else []) + ([energy_col] if energy_col and energy_col in df else [])
    if time_col not in df or len(need) < 2:
        raise ValueError(f"{spec.path}: needs columns {time_col} and {power_col} (or {energy_col or 'an energy column'}); "
                         f"has {', '.join(map(str, df.columns))}")
    t = pd.to_numeric(df[time_col], errors="coerce")
    out = pd.DataFrame({"t_ns": (t * 1e9).round()})
    if power_col in df:
        out["power_w"] = pd.to_numeric(df[power_col], errors="coerce")
    if energy_col and energy_col in df:
        out["energy_j"] = pd.to_numeric(df[energy_col], errors="coerce")
    out = out.dropna(subset=["t_ns"]).sort_values("t_ns", kind="stable")
    out["t_ns"] = out["t_ns"].astype(np.int64)
    values = out[[c for c in ("power_w", "energy_j") if c in out]]
    if len(out) < 2 or int(np.isfinite(values.to_numpy(float)).any(axis=1).sum()) < 2:
        raise ValueError(f"{spec.path}: fewer than 2 samples with a number of W or J")
    return out


def import_traces(out: Path, traces: list[TraceSpec], reference: str | None = None,
                  time_col: str = "timestamp", power_col: str = "power_w",
                  energy_col: str | None = "energy_j", source_note: str | None = None,
                  warnings: list[str] | None = None) -> Path:
    """Write ``out`` as a session holding ``traces``; returns the folder.  Each trace's
    own ``power_col`` overrides ``power_col``.  What should not be trusted (two traces
    with identical readings) is appended to ``warnings``."""
    if not traces:
        raise ValueError("give at least one --trace NAME=FILE.csv")
    names = [t.name for t in traces]
    if len(set(names)) != len(names):
        raise ValueError("two traces have the same name")
    if reference and reference not in names:
        raise ValueError(f"reference {reference!r} is not one of the traces ({', '.join(names)})")
    out = Path(out)
    frames = {t.name: _read(t, time_col, t.power_col or power_col, energy_col) for t in traces}
    for i, a in enumerate(traces):
        for b in traces[i + 1:]:
            fa, fb = frames[a.name], frames[b.name]
            if len(fa) == len(fb) and fa.drop(columns="t_ns").reset_index(drop=True).equals(
                    fb.drop(columns="t_ns").reset_index(drop=True)):
                msg = (f"traces {a.name} and {b.name} have identical readings (same file or column?); "
                       "their agreement means nothing")
                if warnings is not None:
                    warnings.append(msg)
    try:
        claim_folder(out)  # a new or empty folder only: nothing of someone else's is touched
    except FileExistsError as exc:
        raise ValueError(str(exc)) from None
    (out / TRACE_DIR).mkdir()
    start_ns = min(int(f["t_ns"].iloc[0]) for f in frames.values())
    meters = []
    for spec in traces:
        df = frames[spec.name]
        quantities = tuple(c for c in ("power_w", "energy_j") if c in df)
        writer = TraceWriter(trace_path(out, spec.name), quantities)
        try:
            for t_ns, *values in df[["t_ns", *quantities]].itertuples(index=False):
                writer.write(int(t_ns), 0, dict(zip(quantities, map(float, values))))
        finally:
            writer.close()
        interval = float(np.median(np.diff(df["t_ns"].to_numpy()))) / 1e9
        meters.append({"uri": f"import:{spec.path}", "kind": "import", "name": spec.name, "source_file": str(spec.path),
                       "channels": [{"id": spec.name, "scope": spec.scope, "source": spec.source,
                                     "quantities": list(quantities), "window_s": None, "update_interval_s": interval,
                                     "energy_resolution_j": None,
                                     "primary": "energy_j" if "energy_j" in quantities else "power_w",
                                     "info": {"imported_from": str(spec.path),
                                              "power_col": spec.power_col or power_col}}]})
    manifest = {"format": FORMAT, "status": "imported",
                "clock": {"source": "imported (Unix time of each file; offsets between files are estimated as lags)",
                          "unit": "ns", "start_ns": start_ns, "end_ns": None,
                          "anchor": {"monotonic_ns": start_ns, "utc_ns": start_ns, "uncertainty_ns": 0}},
                "reference": reference, "meters": meters,
                "workload": {"name": "imported", "parameters": {}}, "notes": source_note}
    write_manifest(out, manifest)
    EventWriter(out / EVENTS_FILE).close()
    return out
