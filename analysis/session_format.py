"""The on-disk session format (``calibrate-session/1``): its one owner.

A session folder holds::

    session.json        manifest: format, status, clock anchor, host, meters and channels, workload
    traces/<file>.csv   one file per channel: t_ns,rtt_ns,flag,<quantities...>
    events.jsonl        phase markers, metrics, meter faults: {"t_ns": ..., "kind": ..., ...}
    clock/<host>.csv    multi-host sessions: every clock probe with one agent, t1_ns..t4_ns,status
    hosts/<host>/       multi-host sessions: the agent's own complete session, as fetched

This module holds every rule of that format -- file names, columns, what a ``flag``
means, the manifest's schema, the writers and the readers -- and imports nothing of
ours beyond the meter interface's data types.  The recorder (``calibrate``) writes
through it and the analysis reads through it.

**Rows.**  ``t_ns`` is CLOCK_MONOTONIC (ns), ``rtt_ns`` the poll's round trip (ns), then
one column per quantity in SI units named in the header (``power_w`` W, ``energy_j`` J,
...).  A row is one of two kinds:

* a **fault row**: every quantity cell is empty and ``flag`` names the fault (one of
  :data:`FAULT_CODES`, e.g. ``timeout``, ``garbage``, ``disconnected``).  Energy counters
  restart after ``disconnected``/``reconnected`` rows (:data:`SEGMENT_BREAKS`), so the
  analysis never differences across them.
* a **value row**: at least one quantity is present.  ``flag`` is empty, or holds
  *notes* on values that are present but suspect: ``;``-separated items, either
  ``quantity:code`` (``freq_hz:nan;pf:nan``) or a bare code for the whole row
  (``wrap-risk``).  A note never drops the row's valid values.

A flag is written through :func:`encode_flag`, which keeps only ``[A-Za-z0-9_.:+-]`` and
``;``, so no flag can ever add a column, quote or line to the CSV.

Trace rows are appended and flushed by the polling threads at least twice a second, so a
recorder killed with SIGKILL leaves every flushed row readable (a torn last line is
dropped on read).  ``session.json`` is written atomically (temp file, fsync, rename).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

if TYPE_CHECKING:  # pandas is imported by the readers only: the recorder never needs it
    import pandas as pd

FORMAT = "calibrate-session/1"
MANIFEST_FILE = "session.json"
EVENTS_FILE = "events.jsonl"
TRACE_DIR = "traces"
#: ``clock/<host>.csv``: every clock probe exchanged with one agent host (see ProbeWriter)
CLOCK_DIR = "clock"
#: ``hosts/<host>/``: the complete session an agent host recorded, fetched at the stop
HOSTS_DIR = "hosts"
PROBE_COLUMNS = ("t1_ns", "t2_ns", "t3_ns", "t4_ns", "status")
#: Probe statuses: ``ok`` (all four stamps), or why the exchange failed (stamps left empty).
PROBE_STATUSES = ("ok", "timeout", "refused", "disconnected", "garbage", "error")
MAX_PROBES = 10_000_000
BASE_COLUMNS = ("t_ns", "rtt_ns", "flag")

#: Codes of fault rows (no values).  A driver's MeterReadError code is one of the first six.
FAULT_CODES = ("timeout", "garbage", "crc", "exception", "nan", "range", "disconnected",
               "reconnected", "error")
#: Fault rows after which a meter's energy counter restarts at an arbitrary origin.
SEGMENT_BREAKS = ("disconnected", "reconnected")
#: Separator of the notes in a value row's flag.
NOTE_SEP = ";"
MAX_FLAG_CHARS = 200

#: Session statuses the recorder writes; ``recording`` on disk means it never finished.
STATUSES = ("recording", "complete", "failed", "interrupted", "workload_failed", "imported")

_FLAG_DROP = re.compile(r"[^A-Za-z0-9_.:+;-]+")


class SessionError(ValueError):
    """The folder is not a readable session (one-line message)."""


# --------------------------------------------------------------------------- names
def safe_name(channel_id: str) -> str:
    """A file name for a channel id: characters outside [A-Za-z0-9._-] become ``_``."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in channel_id)


_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,79}")


def check_path_component(name: Any, what: str = "name") -> str:
    """``name`` if it can be one path component as it is: 1-80 of ``[A-Za-z0-9._+-]``, not
    starting with a dot or dash (so no separator, no ``..``, no control character, no hidden
    file); ValueError (one line) otherwise."""
    if not isinstance(name, str) or not _COMPONENT.fullmatch(name):
        shown = repr(name)[:60].encode("ascii", "backslashreplace").decode()
        raise ValueError(f"{what} {shown} cannot name a file: use 1-80 letters, digits, '.', '_', '+' "
                         "or '-', not starting with '.' or '-'")
    return name


def trace_path(folder: Path | str, channel_id: str) -> Path:
    """Where a channel's trace lives in a session folder."""
    return Path(folder) / TRACE_DIR / f"{safe_name(channel_id)}.csv"


def encode_flag(text: str) -> str:
    """A flag cell from a fault code or notes: separators become ``;``, other bytes dropped."""
    if not text:
        return ""
    items = [_FLAG_DROP.sub("", part) for part in re.split(r"[,;\s]+", str(text))]
    return NOTE_SEP.join(i for i in items if i)[:MAX_FLAG_CHARS]


def split_notes(flag: str) -> list[str]:
    """The notes of a value row's flag (``"freq_hz:nan;pf:nan"`` -> two items)."""
    return [n for n in flag.split(NOTE_SEP) if n] if flag else []


# --------------------------------------------------------------------------- JSON
def json_safe(obj: Any) -> Any:
    """A value strict JSON can hold, recursively: NaN/inf -> None, numpy -> Python,
    tuples and sets -> lists, paths -> str, objects with ``to_dict()`` -> that dict."""
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return json_safe(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return json_safe(dataclasses.asdict(obj))
    kind = type(obj).__module__.split(".")[0]
    if kind == "numpy":
        if getattr(obj, "ndim", 0):
            return json_safe(obj.tolist())
        return json_safe(obj.item())
    return str(obj)


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def create_exclusive(path: Path | str, buffering: int = -1, binary: bool = False):  # noqa: ANN201 - a file object
    """Open a new file for appending text (or bytes); FileExistsError if anything (a file, a
    symlink) is already there, so a writer never appends to or follows what it did not create."""
    fd = os.open(path, _NEW_FILE | os.O_APPEND, 0o644)
    return os.fdopen(fd, "ab" if binary else "a", buffering=buffering)


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a new temporary file, fsync and a rename: a reader (or a
    full disk) never sees half a file, and a symlink at ``path`` is replaced, not followed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with os.fdopen(os.open(tmp, _NEW_FILE, 0o644), "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path | str, text: str) -> None:
    """:func:`write_bytes_atomic` of ``text`` in UTF-8."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path | str, data: Any) -> None:
    """Write ``data`` as strict JSON (NaN/inf -> null) to ``path`` atomically."""
    write_text_atomic(path, json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")


def claim_folder(path: Path | str) -> bool:
    """Make ``path`` the folder of a new session: created if missing (True), or an existing
    *empty* folder (False).  FileExistsError if it holds anything: a command never writes
    into, appends to or deletes what it did not create."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise FileExistsError(f"{path} exists and is not a folder; choose another --out")
    if path.is_dir():
        if any(path.iterdir()):
            what = "already holds a session" if (path / MANIFEST_FILE).exists() else "is not empty"
            raise FileExistsError(f"{path} {what}; choose another --out")
        return False
    path.mkdir(parents=True)
    return True


# --------------------------------------------------------------------------- writers
def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ""  # repr round-trips every float exactly
    if isinstance(v, bool):
        return str(int(v))
    return str(v)


class AppendFile:
    """A new file appended to by several threads; a write error (a full disk, EIO) closes
    it, keeps what is on disk, and is reported once to ``on_error`` -- the writer's caller
    (a polling thread, the bench) is never interrupted by it."""

    def __init__(self, path: Path, buffering: int, on_error: Callable[[OSError], None] | None = None) -> None:
        self.path = path
        self.on_error = on_error
        self.error: OSError | None = None  # the write error that ended this file
        self._fh = create_exclusive(path, buffering=buffering)
        self._lock = threading.Lock()

    def _write(self, text: str) -> bool:
        """Append ``text`` (caller holds the lock); False if the file is closed or failed."""
        if self._fh.closed:  # a straggling thread after stop, or a failed disk: nothing more
            return False
        try:
            self._fh.write(text)
        except OSError as exc:
            self._fail(exc)
            return False
        return True

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                try:
                    self._fh.close()  # flushes first
                except OSError as exc:
                    self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        first = self.error is None
        self.error = self.error or exc
        try:
            self._fh.close()  # closes the descriptor even when its flush fails again
        except OSError:
            pass
        if first and self.on_error is not None:
            self.on_error(exc)


class TraceWriter(AppendFile):
    """Appends rows to one channel's CSV (see the module doc); thread-safe.

    ``write`` is the recorder's hot path (one call per channel and poll); ``flush()`` may
    be called from any thread.  The file must not exist yet (FileExistsError): a trace is
    never appended to a file this writer did not create.
    """

    def __init__(self, path: Path, quantities: tuple[str, ...],
                 on_error: Callable[[OSError], None] | None = None) -> None:
        super().__init__(path, 1 << 16, on_error)
        self.quantities = tuple(quantities)
        self._empty = "," * (len(self.quantities) - 1) if self.quantities else ""
        self._fh.write(",".join((*BASE_COLUMNS, *self.quantities)) + "\n")
        self._dirty = True
        self.rows = 0

    def write(self, t_ns: int, rtt_ns: int, values: dict[str, float], note: str = "") -> None:
        """A value row: ``values`` by quantity (missing or non-finite ones left empty)."""
        try:  # fast path: every quantity present and plainly printable
            cells = ",".join([repr(values[q]) for q in self.quantities])
            plain = "n" not in cells and "T" not in cells and "F" not in cells  # no nan/inf/None/bool
        except KeyError:
            plain = False
        if not plain:
            cells = ",".join([_cell(values.get(q)) for q in self.quantities])
        self._append(f"{t_ns},{rtt_ns},{encode_flag(note) if note else ''},{cells}\n")

    def write_fault(self, t_ns: int, rtt_ns: int, code: str) -> None:
        """A fault row: no values, ``code`` says why (one of FAULT_CODES)."""
        self._append(f"{t_ns},{rtt_ns},{encode_flag(code) or 'error'},{self._empty}\n")

    def _append(self, line: str) -> None:
        with self._lock:
            if self._write(line):
                self._dirty = True
                self.rows += 1

    def flush(self) -> None:
        with self._lock:
            if self._dirty and not self._fh.closed:
                try:
                    self._fh.flush()
                except OSError as exc:
                    self._fail(exc)
                self._dirty = False


class EventWriter(AppendFile):
    """Appends JSON lines to ``events.jsonl``; thread-safe; each line flushed at once."""

    def __init__(self, path: Path, on_error: Callable[[OSError], None] | None = None) -> None:
        super().__init__(path, 1, on_error)

    def write(self, event: dict[str, Any]) -> None:
        line = json.dumps(json_safe(event), allow_nan=False) + "\n"
        with self._lock:
            self._write(line)


class ProbeWriter(AppendFile):
    """Appends clock probes to ``clock/<host>.csv``, each line flushed at once: a probe is
    evidence, and a failed one (status not ``ok``, stamps empty) is kept as well."""

    def __init__(self, path: Path, on_error: Callable[[OSError], None] | None = None) -> None:
        super().__init__(path, 1, on_error)
        self._fh.write(",".join(PROBE_COLUMNS) + "\n")
        self.rows = 0

    def write(self, t1_ns: int | None, t2_ns: int | None = None, t3_ns: int | None = None,
              t4_ns: int | None = None, status: str = "ok") -> None:
        status = status if status in PROBE_STATUSES else "error"
        stamps = (t1_ns, t2_ns, t3_ns, t4_ns) if status == "ok" else (t1_ns, None, None, None)
        line = ",".join("" if v is None else str(int(v)) for v in stamps) + f",{status}\n"
        with self._lock:
            if self._write(line):
                self.rows += 1


def probe_path(folder: Path | str, host: str) -> Path:
    """Where the probes with agent ``host`` live in a session folder."""
    return Path(folder) / CLOCK_DIR / f"{check_path_component(host, 'host name')}.csv"


def read_probes(path: Path | str) -> tuple[list[tuple[int, int, int, int]], dict[str, int]]:
    """The ``ok`` probes of a probe file as (t1, t2, t3, t4) ns tuples, and the count of
    rows by status (a torn last line and malformed rows are counted as ``garbage``).
    SessionError if the file is not a probe file."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        raise SessionError(f"{path}: not a regular file")
    lines = _read_lines(path).splitlines()
    if not lines or tuple(lines[0].split(",")) != PROBE_COLUMNS:
        raise SessionError(f"{path}: header must be {','.join(PROBE_COLUMNS)}")
    if len(lines) > MAX_PROBES + 1:
        raise SessionError(f"{path}: more than {MAX_PROBES} probes")
    ok: list[tuple[int, int, int, int]] = []
    counts: dict[str, int] = {}
    for line in lines[1:]:
        cells = line.split(",")
        status = cells[-1] if len(cells) == 5 and cells[-1] in PROBE_STATUSES else "garbage"
        if status == "ok":
            try:
                stamps = tuple(int(c) for c in cells[:4])
            except ValueError:
                status = "garbage"
            else:
                if all(abs(v) <= MAX_ABS_NS for v in stamps):
                    ok.append(stamps)  # type: ignore[arg-type]
                else:
                    status = "garbage"
        counts[status] = counts.get(status, 0) + 1
    return ok, counts


# --------------------------------------------------------------------------- manifest
MAX_ABS_NS = 2**63 - 1


def _int_ns(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or abs(value) > MAX_ABS_NS:
        raise SessionError(f"{where} must be an integer number of ns, got {str(value)[:40]!r}")
    return int(value)


Seconds = Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)]
Ns = Annotated[int, Field(ge=-MAX_ABS_NS, le=MAX_ABS_NS)]
Text = Annotated[str, Field(max_length=10_000)]


def _none_is_empty(v: Any) -> Any:
    return {} if v is None else v


class _Part(BaseModel):
    # strict types; keys this version does not know are kept (the format grows by adding keys)
    model_config = ConfigDict(extra="allow", strict=True)


class ChannelEntry(_Part):
    id: Annotated[str, Field(min_length=1, max_length=200)]
    scope: Text = "wall"
    source: Literal["measured", "modelled"] = "measured"
    quantities: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=64)] = ["power_w"]
    window_s: Seconds | None = None
    update_interval_s: Seconds | None = None
    energy_resolution_j: Seconds | None = None
    primary: Text = "power_w"
    info: Annotated[dict[str, Any], BeforeValidator(_none_is_empty)] = {}


class MeterEntry(_Part):
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    kind: Text | None = None
    simulated: bool = False
    channels: Annotated[list[ChannelEntry], Field(max_length=1024)] = []


class ClockEntry(_Part):
    start_ns: Ns = 0
    end_ns: Ns | None = None


class WorkloadEntry(_Part):
    name: Text | None = None
    parameters: Annotated[dict[str, Any], BeforeValidator(_none_is_empty)] = {}
    result: Annotated[dict[str, Any], BeforeValidator(_none_is_empty)] = {}


class HostEntry(_Part):
    """One agent host of a multi-host session: its clock fit maps its stamps onto ours."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9._+-]{0,79}$")]
    address: Text | None = None
    status: Annotated[str, Field(max_length=64)] = "unknown"
    clock_fit: dict[str, Any] | None = None


class Manifest(_Part):
    """The schema of ``session.json`` (the keys the analysis reads; others are kept)."""

    format: Annotated[str, Field(pattern=r"^calibrate-session/\d+$")] = FORMAT
    status: Annotated[str, Field(max_length=64)] = "unknown"
    clock: ClockEntry = ClockEntry()  # null is refused: a session without a clock cannot be placed
    host: Annotated[dict[str, Any], BeforeValidator(_none_is_empty)] = {}
    reference: Text | None = None
    meters: Annotated[list[MeterEntry], Field(max_length=256)] = []
    workload: Annotated[WorkloadEntry, BeforeValidator(_none_is_empty)] = WorkloadEntry()
    recorder: dict[str, Any] | None = None
    notes: Text | None = None
    hosts: Annotated[list[HostEntry], Field(max_length=256), BeforeValidator(lambda v: [] if v is None else v)] = []


def validate_manifest(manifest: Any, where: str = MANIFEST_FILE) -> dict[str, Any]:
    """Check a manifest against :class:`Manifest`; returns it normalised (a null object
    becomes ``{}``), or raises SessionError naming the key."""
    if not isinstance(manifest, dict):
        raise SessionError(f"{where}: expected a JSON object, got {type(manifest).__name__}")
    try:
        model = Manifest.model_validate(manifest)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "manifest"
        raise SessionError(f"{where}: {key}: {err['msg']}".encode("ascii", "backslashreplace").decode()) from None
    for m in model.meters:
        if m.name is None and m.channels:
            m.name = m.channels[0].id
    return model.model_dump()


def read_manifest(folder: Path | str) -> dict[str, Any]:
    """The folder's validated manifest; SessionError (one line) if missing or malformed."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not folder.is_dir():
        raise SessionError(f"{folder} is not a folder")
    if not path.is_file():
        raise SessionError(f"{folder} has no {MANIFEST_FILE}: not a calibrate session")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SessionError(f"{path} is not valid JSON ({exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SessionError(f"{path}: cannot read ({exc})") from None
    return validate_manifest(manifest, str(path))


def read_status(folder: Path | str) -> str | None:
    """The status a session folder's manifest records, or None if it has no readable one."""
    try:
        return str(read_manifest(folder).get("status"))
    except SessionError:
        return None


def write_manifest(folder: Path | str, manifest: dict[str, Any]) -> None:
    """Write ``session.json`` atomically (after checking its shape)."""
    validate_manifest(manifest)
    write_json_atomic(Path(folder) / MANIFEST_FILE, manifest)


def manifest_channels(manifest: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """channel id -> (meter name, channel info with ``meter_kind`` and ``simulated``)."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for m in manifest.get("meters", []):
        for ch in m.get("channels", []):
            out[ch["id"]] = (str(m.get("name", ch["id"])), {**ch, "meter_kind": m.get("kind"),
                                                           "simulated": m.get("simulated", False)})
    return out


# --------------------------------------------------------------------------- readers
def _read_lines(path: Path) -> str:
    text = path.read_text(errors="replace")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # torn last line
    return text


def trace_files(folder: Path | str) -> tuple[list[Path], list[str]]:
    """The trace files of a session folder, sorted, and a warning for each entry not read:
    only regular files are (a symlink could lead outside the folder)."""
    files, warnings = [], []
    for p in sorted((Path(folder) / TRACE_DIR).glob("*.csv")):
        if p.is_symlink() or not p.is_file():
            warnings.append(f"{p.name}: not read ({'a symlink' if p.is_symlink() else 'not a regular file'})")
        else:
            files.append(p)
    return files, warnings


def read_trace(path: Path, start_ns: int) -> pd.DataFrame:
    """One trace as a frame: ``t_s`` (s since start), t_ns, rtt_ns, flag, ``fault`` (bool:
    a fault row, no values), then the quantities (float, NaN where empty)."""
    import pandas as pd

    text = _read_lines(path)
    if not text.strip():
        raise SessionError(f"{path}: empty trace")
    header = text.split("\n", 1)[0].split(",")
    if tuple(header[:3]) != BASE_COLUMNS:
        raise SessionError(f"{path}: header must start with {','.join(BASE_COLUMNS)}")
    quantities = header[3:]
    df = pd.read_csv(io.StringIO(text), dtype={"flag": str}, keep_default_na=False,
                     na_values={c: [""] for c in header if c != "flag"})
    df["flag"] = df["flag"].fillna("").astype(str)
    try:  # a uint64 past 2**63 would wrap silently in astype: refuse it first
        if df["t_ns"].dtype.kind == "u" and bool((df["t_ns"] > MAX_ABS_NS).any()):
            raise OverflowError
        df["t_ns"] = df["t_ns"].astype("int64")
    except (OverflowError, ValueError, TypeError):
        raise SessionError(f"{path}: t_ns must be whole ns within +-2**63") from None
    df.insert(0, "t_s", (df["t_ns"] - start_ns) / 1e9)
    for col in df.columns:
        if col not in ("flag", "t_ns", "t_s"):
            df[col] = pd.to_numeric(df[col], errors="coerce")
    present = df[quantities].notna().any(axis=1) if quantities else pd.Series(False, index=df.index)
    df.insert(4, "fault", (df["flag"] != "") & ~present)
    return df.sort_values("t_ns", kind="stable").reset_index(drop=True)


def read_events(path: Path, start_ns: int) -> pd.DataFrame:
    """``events.jsonl`` as a frame with ``t_s``; lines that are not events are skipped."""
    import pandas as pd

    rows = []
    if path.is_file():
        for line in _read_lines(path).splitlines():
            try:
                ev = json.loads(line)
                if not isinstance(ev, dict):
                    continue
                ev["t_ns"] = _int_ns(ev["t_ns"], "t_ns")
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
