"""A meter under test read through a Prometheus server's HTTP API (fleet exporters).

``prometheus://HOST[:PORT]?query=PROMQL&kind=power|energy&unit=W`` (PORT 9090) or
``prometheus://HOST[:PORT]?preset=NAME`` with one of :data:`PRESETS`:

==============  ===========================================================================
``dcgm``        ``DCGM_FI_DEV_POWER_USAGE`` (gauge, W) and
                ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` (counter, mJ since boot), per GPU
``kepler``      ``kepler_node_cpu_joules_total`` (counter, J, Kepler >= 0.10; one series per
                RAPL ``zone``), recorded as raw J (analysis differentiates it)
``kepler-0.7``  ``kepler_node_package_joules_total`` (counter, J, Kepler 0.7)
``scaphandre``  ``scaph_host_power_microwatts`` (gauge, uW) and
                ``scaph_host_energy_microjoules`` (counter, uJ)
``node-hwmon``  ``node_hwmon_power_average_watt`` (gauge, W; node_exporter's hwmon collector)
==============  ===========================================================================

Other options: ``timeout`` (s, 5), ``window`` (s: the exporter's averaging window, when known),
``update`` (s: the exporter's refresh/scrape interval; default: the target's
``scrapeInterval`` from ``/api/v1/targets``), ``lookback`` (s: range of the raw-sample
selector), ``stale`` (s: no new sample for this long flags the channel ``stale``; default
three update periods), ``scope`` and ``source`` of the channels, and ``token_file=PATH``: a
bearer token read from a file that group and others cannot read (never a ``token=`` option:
URIs are recorded in the session; the token is kept in memory only).  A ``+`` in a PromQL
query must be written ``%2B`` in the URI (a bare ``+`` is a space in a query string).

**Which time a sample has.**  An instant query's value timestamp is the *evaluation* time
(now, on the server), not when the exporter was scraped.  When the query is a plain selector
(``NAME`` or ``NAME{labels}``) the driver asks for the range vector ``QUERY[<lookback>]``
instead, whose matrix result holds the raw samples with their *scrape* timestamps, and keeps
the newest sample of each series (``info["time"] == "scrape"``).  Any other expression is
read with an instant query and recorded at poll time (``info["time"] == "evaluation"``).

**Stamping.**  The server's clock is unix time, the session's is ``time.monotonic_ns``.  At
open (and every :data:`RESYNC_S`) the driver asks the server for ``time()`` and pairs it
with the monotonic midpoint of that request, which maps a scrape timestamp onto the session
clock (to within half that round trip plus the server's clock drift since).  ``drivers.base.
Reading`` has one time for a whole poll, so: when every new sample of a poll comes from one
scrape (one exporter target: the usual case), the Reading's ``t_ns`` is that scrape time on
the session clock; otherwise the recorder stamps the poll as usual.  Either way every
channel carries the quantity ``age_s``: how long before the row's time stamp the sample was
scraped (0 for rows stamped at the scrape), so ``t - age_s`` is the sample's own time.

**Repeats.**  A sample whose scrape timestamp was already returned is a stale repeat and is
not recorded again: a poll returns only the channels with a new sample (possibly none).  A
channel without a new sample for ``stale`` seconds gets an empty row flagged ``stale``.

Faults are MeterErrors: no reply in time ("timeout"), HTTP errors and ``"status":
"error"`` replies ("exception"; at open a :class:`MeterConfigError` quoting Prometheus'
one-line error, e.g. a query that does not parse), replies over :data:`MAX_REPLY_BYTES`,
not JSON or not of the documented shape ("garbage"), ``"NaN"`` ("nan"), ``"+Inf"``
("range").  A query that selects nothing is a MeterConfigError at open naming the query.
An energy counter that goes down (the exporter or driver restarted) continues from the last
total with the new count (Prometheus' own ``increase()`` rule) and is flagged
``energy_j:reset``.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from drivers.base import (
    Channel,
    Meter,
    MeterConfigError,
    MeterDisconnected,
    MeterError,
    MeterReadError,
    Reading,
)
from drivers.http_transport import (
    Unreachable,
    build_request,
    fetch,
    resolve,
)
from drivers.secret_files import read_secret_file

#: the most bytes one reply may have (a matrix of 64 series with a few samples each is well under)
MAX_REPLY_BYTES = 2 * 2**20
#: the most series (channels) one meter keeps; more are dropped at open and said so
MAX_SERIES = 64
#: the most series a reply may hold before it is refused as garbage
MAX_RESULT_SERIES = 4096
#: the longest channel id suffix built from labels (characters)
MAX_ID_CHARS = 64
#: re-pair the server's clock with the session clock this often (s)
RESYNC_S = 300.0
#: the most power a series may report (W); beyond it the value is a "range" fault
MAX_POWER_W = 1e6
NEGATIVE_TOLERANCE_W = 2.0
OPEN_ATTEMPTS = 3
OPEN_RETRY_PAUSE_S = 0.3
MAX_TOKEN_BYTES = 4096

UNITS: dict[str, tuple[str, float]] = {
    "W": ("power", 1.0), "mW": ("power", 1e-3), "uW": ("power", 1e-6), "µW": ("power", 1e-6),
    "kW": ("power", 1e3), "J": ("energy", 1.0), "mJ": ("energy", 1e-3), "uJ": ("energy", 1e-6),
    "µJ": ("energy", 1e-6), "kJ": ("energy", 1e3), "Wh": ("energy", 3600.0), "kWh": ("energy", 3.6e6),
}


@dataclass(frozen=True)
class Query:
    """One PromQL query feeding one quantity of every channel."""

    quantity: str  # power_w | energy_j
    promql: str
    unit: str

    @property
    def scale(self) -> float:
        return UNITS[self.unit][1]


#: preset -> (queries, scope, energy resolution J, what is known of the window)
PRESETS: dict[str, tuple[tuple[Query, ...], str, float | None, str]] = {
    "dcgm": ((Query("power_w", "DCGM_FI_DEV_POWER_USAGE", "W"),
              Query("energy_j", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "mJ")), "gpu", 1e-3,
             "DCGM_FI_DEV_POWER_USAGE is NVML's power reading (averaged over about 1 s on recent GPUs, "
             "GPU-dependent); the exporter refreshes every collect interval (dcgm-exporter -c, 30 s by default)"),
    "kepler": ((Query("energy_j", "kepler_node_cpu_joules_total", "J"),), "package", None,
               "Kepler reads RAPL every interval (its --monitor.interval); energy is a counter"),
    "kepler-0.7": ((Query("energy_j", "kepler_node_package_joules_total", "J"),), "package", None,
                   "Kepler 0.7 node package energy counter"),
    "scaphandre": ((Query("power_w", "scaph_host_power_microwatts", "uW"),
                    Query("energy_j", "scaph_host_energy_microjoules", "uJ")), "system", 1e-6,
                   "scaph_host_power_microwatts is computed from the last two energy readings"),
    "node-hwmon": ((Query("power_w", "node_hwmon_power_average_watt", "W"),), "system", None,
                   "the sensor's own averaging interval is node_hwmon_power_average_interval_seconds"),
}

SELECTOR_RE = re.compile(r'^\s*[A-Za-z_:][A-Za-z0-9_:]*\s*(\{(?:[^{}"]|"(?:[^"\\]|\\.)*")*\})?\s*$')
#: labels that name a series, best first (a channel id uses those that tell series apart)
ID_LABELS = ("Hostname", "hostname", "node_name", "node", "instance", "gpu", "device", "zone", "chip",
             "sensor", "socket", "UUID", "uuid", "job")
_ID_BAD = re.compile(r"[^A-Za-z0-9_.-]+")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_DURATION_S = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}


def is_selector(promql: str) -> bool:
    """True for a plain instant-vector selector (``NAME`` or ``NAME{...}``), which can be read
    as a range vector of raw samples with their scrape times."""
    return bool(SELECTOR_RE.match(promql)) and not promql.strip().startswith(("time", "vector"))


def prom_duration_s(text: Any) -> float | None:
    """A Prometheus duration (``15s``, ``1m30s``, ``500ms``) in seconds; None if it is not one."""
    if not isinstance(text, str) or not 0 < len(text) <= 32:
        return None
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _DURATION_S[m.group(2)]
        pos = m.end()
    return total if pos == len(text) and total > 0 else None


def one_line(text: Any, limit: int = 200) -> str:
    s = " ".join(str(text).split())
    s = "".join(c for c in s if c.isprintable())
    return s[:limit] + ("..." if len(s) > limit else "")


def sample_value(raw: Any, what: str) -> float:
    """A sample's value as Prometheus' API encodes it: a string (``"12.5"``, ``"NaN"``,
    ``"+Inf"``).  Anything else is "garbage", NaN "nan", infinities "range"."""
    if not isinstance(raw, str):
        raise MeterReadError(f"{what}: sample value {str(raw)[:30]!r} is a {type(raw).__name__}, "
                             "not a string", code="garbage")
    s = raw.strip()
    if not s or len(s) > 64 or "_" in s:
        raise MeterReadError(f"{what}: sample value {s[:30]!r} is not a number", code="garbage")
    try:
        x = float(s)
    except ValueError:
        raise MeterReadError(f"{what}: sample value {s[:30]!r} is not a number", code="garbage") from None
    if math.isnan(x):
        raise MeterReadError(f"{what}: sample value is NaN", code="nan")
    if math.isinf(x):
        raise MeterReadError(f"{what}: sample value is {s[:10]}", code="range")
    return x


def sample_time(raw: Any, what: str) -> float:
    """A sample's unix time (s): a finite JSON number after 1970 and before 5138."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0 < raw < 1e11:
        raise MeterReadError(f"{what}: sample time {str(raw)[:30]!r} is not a unix time", code="garbage")
    return float(raw)


def _pair(p: Any, what: str) -> tuple[float, Any]:
    if not isinstance(p, list) or len(p) != 2:
        raise MeterReadError(f"{what}: a sample is not a [time, value] pair", code="garbage")
    return sample_time(p[0], what), p[1]


def _labels(m: Any, what: str) -> dict[str, str]:
    if not isinstance(m, dict) or len(m) > 128:
        raise MeterReadError(f"{what}: a series has no label object", code="garbage")
    for k, v in m.items():
        if not isinstance(v, str) or len(k) > 256 or len(v) > 4096:
            raise MeterReadError(f"{what}: label {str(k)[:30]!r} is not a string", code="garbage")
    return dict(m)


def api_error(doc: Any, what: str) -> MeterReadError | None:
    """The error a ``"status": "error"`` document reports (code "exception"), else None."""
    if isinstance(doc, dict) and doc.get("status") == "error":
        etype = one_line(doc.get("errorType", "error"), 40)
        return MeterReadError(f"{what}: Prometheus {etype}: {one_line(doc.get('error', ''))}", code="exception")
    return None


def parse_reply(doc: Any, what: str) -> tuple[str, Any]:
    """A query reply's ``(resultType, result)``: for ``vector`` and ``matrix`` a list of
    ``(labels, [(t, raw value), ...])`` (samples sorted by time; a vector has one each);
    for ``scalar`` ``(t, raw value)``.  Raises MeterReadError (never anything else)."""
    err = api_error(doc, what)
    if err is not None:
        raise err
    if not isinstance(doc, dict) or doc.get("status") != "success":
        raise MeterReadError(f"{what}: not a Prometheus query reply", code="garbage")
    data = doc.get("data")
    if not isinstance(data, dict):
        raise MeterReadError(f"{what}: reply without data", code="garbage")
    rtype, result = data.get("resultType"), data.get("result")
    if rtype == "scalar":
        return "scalar", _pair(result, what)
    if rtype not in ("vector", "matrix") or not isinstance(result, list):
        raise MeterReadError(f"{what}: result type {str(rtype)[:20]!r} is not a vector or matrix "
                             "(the query must give one number per series)", code="garbage")
    if len(result) > MAX_RESULT_SERIES:
        raise MeterReadError(f"{what}: {len(result)} series in one reply", code="garbage")
    out = []
    for item in result:
        if not isinstance(item, dict):
            raise MeterReadError(f"{what}: a series is not an object", code="garbage")
        labels = _labels(item.get("metric", {}), what)
        if rtype == "vector":
            samples = [_pair(item.get("value"), what)]
        else:
            vals = item.get("values")
            if not isinstance(vals, list):
                raise MeterReadError(f"{what}: a matrix series without values", code="garbage")
            samples = sorted((_pair(p, what) for p in vals), key=lambda s: s[0])
        out.append((labels, samples))
    return rtype, out


def series_key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """What identifies one series across queries (the metric name aside)."""
    return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))


def channel_ids(name: str, label_sets: list[dict[str, str]]) -> list[str]:
    """One id per series: the meter's name alone for one series, else ``NAME.<labels>``
    built from the fewest labels (best first, :data:`ID_LABELS`) that tell the series
    apart, sanitised to ``[A-Za-z0-9_.-]`` and bounded; duplicates get ``-N``."""
    if len(label_sets) <= 1:
        return [name] * len(label_sets)
    keys = sorted({k for ls in label_sets for k in ls} - {"__name__"},
                  key=lambda k: (ID_LABELS.index(k) if k in ID_LABELS else len(ID_LABELS), k))
    chosen: list[str] = []
    distinct = 1
    for k in keys:
        n = len({tuple(ls.get(c, "") for c in [*chosen, k]) for ls in label_sets})
        if n > distinct:
            chosen.append(k)
            distinct = n
        if distinct == len(label_sets):
            break
    ids, seen = [], set()
    for i, ls in enumerate(label_sets):
        parts = [_ID_BAD.sub("-", ls.get(k, "")).strip("-.")[:32] or "x" for k in chosen] or [str(i)]
        cid = f"{name}.{'.'.join(parts)[:MAX_ID_CHARS]}"
        base, n = cid, 2
        while cid in seen:
            cid, n = f"{base}-{n}", n + 1
        seen.add(cid)
        ids.append(cid)
    return ids


def load_token(path: str) -> str:
    """A bearer token from ``path``: a regular file of at most 4 KiB that group and others
    cannot read, holding one token of printable ASCII.  Errors never quote the file."""
    token = read_secret_file(path, "prometheus: token file", MAX_TOKEN_BYTES, "ascii").strip()
    if not token or any(ord(c) < 33 or ord(c) > 126 for c in token):
        raise MeterConfigError(f"prometheus: token file {path} must hold one token of printable ASCII "
                               "without spaces")
    return token


class PrometheusMeter(Meter):
    """Series of a PromQL query (or a preset's queries), one channel per series."""

    kind = "prometheus"
    default_interval_s = 1.0
    min_interval_s = 0.05

    def __init__(self, host: str, port: int | None = None, *, queries: tuple[Query, ...],
                 preset: str | None = None, name: str | None = None, interval_s: float | None = None,
                 timeout_s: float = 5.0, window_s: float | None = None, update_s: float | None = None,
                 lookback_s: float | None = None, stale_s: float | None = None, scope: str | None = None,
                 source: str = "measured", token_file: str | None = None) -> None:
        super().__init__(name, interval_s)
        if not host or any(c.isspace() or ord(c) < 32 or c in "/?#@" for c in host):
            raise MeterConfigError(f"prometheus://{host}: not a host name or IP address")
        self.host, self.port = host, port or 9090
        if not 0 < self.port < 65536:
            raise MeterConfigError(f"prometheus://{host}: port {self.port} is not 1..65535")
        for label, v, hi in (("timeout", timeout_s, 60.0), ("window", window_s, 86400.0),
                             ("update", update_s, 86400.0), ("lookback", lookback_s, 86400.0),
                             ("stale", stale_s, 86400.0)):
            if v is not None and not (math.isfinite(v) and 0 < v <= hi):
                raise MeterConfigError(f"prometheus://{host}: {label}={v:g} s; use more than 0 and at most {hi:g} s")
        if source not in ("measured", "modelled"):
            raise MeterConfigError(f"prometheus://{host}: source must be measured or modelled")
        if not queries:
            raise MeterConfigError(f"prometheus://{host}: give query=PROMQL (and kind=, unit=) or preset=NAME "
                                   f"({', '.join(PRESETS)})")
        self.queries, self.preset = queries, preset
        self.timeout_s, self.window_opt, self.update_opt = float(timeout_s), window_s, update_s
        self.lookback_opt, self.stale_opt, self.source = lookback_s, stale_s, source
        self.scope = scope or (PRESETS[preset][1] if preset else "system")
        self.token_file = token_file
        self._token = load_token(token_file) if token_file else None
        self.url = f"http://{host}:{self.port}"
        self.scrape_time = all(is_selector(q.promql) for q in queries)
        self._addrs: list[tuple[int, Any]] = []
        self._opened = self._ever_opened = False
        self._k_s = 0.0  # server unix time minus monotonic time (s)
        self._synced_at = -math.inf
        self._lookback_s = 60.0
        self._by_key: dict[tuple[tuple[str, str], ...], str] = {}
        self._last_sample: dict[tuple[str, str], float] = {}  # (channel, quantity) -> scrape time
        self._last_new: dict[str, float] = {}
        self._energy: dict[str, tuple[float, float]] = {}  # channel -> (last raw, offset)
        self._last_stamp_ns = 0
        self._stale_after = 3.0
        self.resets = 0
        self.repeats = 0  # samples seen again and not recorded
        self.unannounced = 0  # series that appeared after open (not recorded)

    # -- transport -------------------------------------------------------------------------
    def _unreachable(self, why: str) -> MeterError:
        if not self._ever_opened:
            return MeterConfigError(f"prometheus://{self.host}:{self.port}: cannot reach the Prometheus server "
                                    f"({why}); check the host, port and that it is running")
        return MeterDisconnected(f"{self.url}: {why}")

    def _get(self, path: str) -> Any:
        """One GET; the decoded JSON document (also of an HTTP error reply whose body is a
        Prometheus error document).  Every failure is a MeterError."""
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        where = f"{self.url}{path.split('?')[0]}"
        try:
            if not self._addrs:
                self._addrs = resolve(self.host, self.port)
            reply = fetch(self._addrs, build_request("GET", self.host, self.port, path, headers),
                          self.timeout_s, where, MAX_REPLY_BYTES)
        except Unreachable as exc:
            raise self._unreachable(exc.why) from None
        if reply.status in (401, 403):
            msg = (f"{where}: HTTP {reply.status}, the server refused the request; "
                   + ("check the token in token_file" if self._token else "it wants a bearer token (token_file=PATH)"))
            if not self._ever_opened:
                raise MeterConfigError(msg)
            raise MeterReadError(msg, code="exception")
        try:
            doc = json.loads(reply.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            if reply.status != 200:
                raise MeterReadError(f"{where}: HTTP {reply.status}", code="exception") from None
            raise MeterReadError(f"{where}: reply is not JSON ({reply.body[:40]!r})", code="garbage") from None
        if reply.status != 200:
            raise api_error(doc, where) or MeterReadError(f"{where}: HTTP {reply.status}", code="exception")
        return doc

    def _query(self, promql: str) -> tuple[str, Any]:
        return parse_reply(self._get("/api/v1/query?" + urlencode({"query": promql})), f"{self.url} {promql[:80]!r}")

    def _poll_query(self, q: Query) -> str:
        if not self.scrape_time:
            return q.promql
        return f"{q.promql.strip()}[{max(int(round(self._lookback_s * 1000)), 1000)}ms]"

    def _sync(self) -> None:
        """Pair the server's unix time with the monotonic clock (``time()`` at the midpoint)."""
        t0 = time.monotonic()
        rtype, res = self._query("time()")
        t1 = time.monotonic()
        if rtype != "scalar":
            raise MeterReadError(f"{self.url}: time() did not give a scalar", code="garbage")
        server_t = sample_value(res[1], f"{self.url} time()")
        self._k_s, self._synced_at, self.sync_rtt_s = server_t - 0.5 * (t0 + t1), t1, t1 - t0

    def _scrape_intervals(self) -> dict[tuple[str, str], float]:
        """(job, instance) -> scrape interval (s) from ``/api/v1/targets``; {} when unavailable."""
        try:
            doc = self._get("/api/v1/targets?state=active")
        except MeterConfigError:
            raise
        except MeterError:
            return {}
        data = doc.get("data") if isinstance(doc, dict) else None
        targets = data.get("activeTargets") if isinstance(data, dict) else None
        out: dict[tuple[str, str], float] = {}
        for t in targets if isinstance(targets, list) else []:
            if not isinstance(t, dict) or not isinstance(t.get("labels"), dict):
                continue
            iv = prom_duration_s(t.get("scrapeInterval"))
            labels = t["labels"]
            if iv is not None:
                out[(str(labels.get("job", "")), str(labels.get("instance", "")))] = iv
        return out

    # -- meter -------------------------------------------------------------------------------
    def open(self) -> list[Channel]:
        self._opened = False
        self._addrs = []
        attempts = 1 if self._ever_opened else OPEN_ATTEMPTS
        for attempt in range(1, attempts + 1):
            try:
                self._sync()
                break
            except MeterConfigError:
                raise
            except MeterError as exc:
                if self._ever_opened:
                    raise
                if attempt == attempts:
                    raise MeterConfigError(f"prometheus://{self.host}:{self.port}: no usable reply in {attempts} "
                                           f"tries (last: {one_line(exc, 160)}); is it a Prometheus server "
                                           "and is timeout= long enough?") from None
            if self._stop.wait(OPEN_RETRY_PAUSE_S):
                raise MeterReadError(f"{self.url}: stopped while opening", code="timeout")
        intervals = self._scrape_intervals()
        known = [v for v in intervals.values()]
        update_guess = self.update_opt or (max(known) if known else None)
        self._lookback_s = self.lookback_opt or (max(3.0 * update_guess, 3.0 * self.interval_s, 1.0)
                                                 if update_guess else 300.0)
        series: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        for q in self.queries:
            try:
                _, result = self._query(self._poll_query(q))
            except MeterReadError as exc:
                if self._ever_opened and exc.code != "exception":
                    raise
                raise MeterConfigError(f"prometheus://{self.host}:{self.port}: query {q.promql[:120]!r} failed: "
                                       f"{one_line(exc, 240)}") from None
            if not result:
                raise MeterConfigError(f"prometheus://{self.host}:{self.port}: query {q.promql[:120]!r} selects no "
                                       "series (check the metric name and labels, and that the exporter is scraped)")
            for labels, _samples in result:
                series.setdefault(series_key(labels), labels)
        keys = sorted(series)
        if len(keys) > MAX_SERIES:
            dropped = len(keys) - MAX_SERIES
            self.skipped = [f"{dropped} series beyond the first {MAX_SERIES} (narrow the query with labels)"]
            self.notes.append(f"{self.name}: the query gives {len(keys)} series; keeping the first {MAX_SERIES}")
            keys = keys[:MAX_SERIES]
        ids = channel_ids(self.name, [series[k] for k in keys])
        self._by_key = dict(zip(keys, ids))
        quantities = tuple(q.quantity for q in self.queries) + (("age_s",) if self.scrape_time else ())
        res = PRESETS[self.preset][2] if self.preset else None
        window_note = PRESETS[self.preset][3] if self.preset else None
        self.channels = []
        updates = []
        for k, cid in zip(keys, ids):
            labels = series[k]
            scrape = intervals.get((labels.get("job", ""), labels.get("instance", "")))
            update = self.update_opt or scrape
            updates.append(update or 0.0)
            info: dict[str, Any] = {
                "model": f"Prometheus series ({self.preset or 'query'})", "url": self.url,
                "queries": {q.quantity: q.promql for q in self.queries},
                "units": {q.quantity: q.unit for q in self.queries},
                "time": "scrape" if self.scrape_time else "evaluation",
                "labels": {lk: lv[:120] for lk, lv in sorted(labels.items())[:24] if lk != "__name__"},
                "scrape_interval_s": scrape, "clock_pairing_rtt_s": round(self.sync_rtt_s, 6),
            }
            if window_note and self.window_opt is None:
                info["window_note"] = window_note
            self.channels.append(Channel(
                id=cid, scope=self.scope, source=self.source, quantities=quantities,
                window_s=self.window_opt, update_interval_s=update, energy_resolution_j=res,
                primary="energy_j" if "energy_j" in quantities else "power_w", info=info))
        upd = max(updates) if updates and max(updates) > 0 else 0.0
        self._stale_after = self.stale_opt or max(3.0 * (upd or 1.0), 2.5 * self.interval_s)
        now = time.monotonic()
        self._last_new = {cid: now for cid in ids}
        self._opened = self._ever_opened = True
        return self.channels

    def read(self) -> Reading:
        if not self._opened:
            raise MeterDisconnected(f"{self.url}: not open")
        if time.monotonic() - self._synced_at > RESYNC_S:
            self._sync()
        t0 = time.monotonic()
        results = [(q, self._query(self._poll_query(q))[1]) for q in self.queries]
        t1 = time.monotonic()
        mid = 0.5 * (t0 + t1)
        values: dict[str, dict[str, float]] = {}
        notes: dict[str, list[str]] = {}
        stamps: dict[str, float] = {}
        errors: list[MeterReadError] = []
        for q, result in results:
            for labels, samples in result:
                cid = self._by_key.get(series_key(labels))
                if cid is None:
                    self.unannounced += 1
                    continue
                if not samples:
                    continue
                t, raw = samples[-1]
                slot = (cid, q.quantity)
                if self.scrape_time:
                    if t <= self._last_sample.get(slot, -math.inf):
                        self.repeats += 1
                        continue
                    self._last_sample[slot] = t
                try:
                    x = self._checked(q, cid, sample_value(raw, f"{cid} {q.quantity}") * q.scale, notes)
                except MeterReadError as exc:
                    errors.append(exc)
                    notes.setdefault(cid, []).append(f"{q.quantity}:{exc.code}")
                    values.setdefault(cid, {})
                    continue
                values.setdefault(cid, {})[q.quantity] = x
                stamps[cid] = max(stamps.get(cid, -math.inf), t)
                self._last_new[cid] = t1
        if errors and not any(values.values()):
            raise errors[0]
        reading = Reading(values)
        if self.scrape_time and stamps:
            mono = {cid: t - self._k_s for cid, t in stamps.items()}
            lo, hi = min(mono.values()), max(mono.values())
            t_ns = int(round(lo * 1e9))
            if hi - lo <= 1e-3 and t_ns > self._last_stamp_ns:
                reading.t_ns, reading.rtt_ns = t_ns, int((t1 - t0) * 1e9)
                for cid in stamps:
                    values[cid]["age_s"] = 0.0
            else:
                for cid, m in mono.items():
                    values[cid]["age_s"] = round(max(mid - m, 0.0), 6)
        self._last_stamp_ns = max(self._last_stamp_ns, reading.t_ns or int(mid * 1e9))
        for ch in self.channels:
            if ch.id not in values and t1 - self._last_new.get(ch.id, t1) > self._stale_after:
                values[ch.id] = {}
                notes.setdefault(ch.id, []).insert(0, "stale")
        for cid, ns in notes.items():
            reading.flags[cid] = ns[0] if ns == ["stale"] else ";".join(ns)
        return reading

    def _checked(self, q: Query, cid: str, x: float, notes: dict[str, list[str]]) -> float:
        if q.quantity == "power_w":
            if not -NEGATIVE_TOLERANCE_W <= x <= MAX_POWER_W:
                raise MeterReadError(f"{cid}: {x:g} W is not plausible", code="range")
            return x
        if x < 0:
            raise MeterReadError(f"{cid}: energy counter {x:g} J is negative", code="range")
        last, offset = self._energy.get(cid, (None, 0.0))
        if last is not None and x < last:  # the counter restarted: it counts from 0 again
            offset += last
            self.resets += 1
            notes.setdefault(cid, []).append("energy_j:reset")
        self._energy[cid] = (x, offset)
        return x + offset

    def close(self) -> None:
        self._opened = False

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "url": self.url, "preset": self.preset,
                "queries": [{"quantity": q.quantity, "query": q.promql, "unit": q.unit} for q in self.queries],
                "time": "scrape" if self.scrape_time else "evaluation", "token_file": self.token_file,
                "timeout_s": self.timeout_s, "max_reply_bytes": MAX_REPLY_BYTES, "lookback_s": self._lookback_s}


def from_uri(uri: Any) -> Meter:
    for secret in ("token", "password", "bearer"):
        if secret in uri.options:
            raise MeterConfigError(f"prometheus: {secret}= is not accepted in a meter URI (it would be recorded); "
                                   "put the token in a chmod 600 file and pass token_file=PATH")
    host, port = uri.host_port
    preset = uri.take("preset", None)
    query = uri.take("query", None)
    kind = uri.take("kind", None)
    unit = uri.take("unit", None)
    if preset is not None:
        if preset not in PRESETS:
            raise MeterConfigError(f"{uri.raw}: preset {preset!r} is not one of {', '.join(PRESETS)}")
        if query is not None or kind is not None or unit is not None:
            raise MeterConfigError(f"{uri.raw}: give preset= or query= (with kind=, unit=), not both")
        queries = PRESETS[preset][0]
    elif query is not None:
        if not query.strip() or len(query) > 4000:
            raise MeterConfigError(f"{uri.raw}: query= is empty or longer than 4000 characters")
        kind = kind or "power"
        if kind not in ("power", "energy"):
            raise MeterConfigError(f"{uri.raw}: kind must be power or energy")
        unit = unit or ("W" if kind == "power" else "J")
        if unit not in UNITS or UNITS[unit][0] != kind:
            known = ", ".join(u for u, (k, _) in UNITS.items() if k == kind)
            raise MeterConfigError(f"{uri.raw}: unit={unit!r} is not a unit of {kind}; use one of {known}")
        queries = (Query("power_w" if kind == "power" else "energy_j", query.strip(), unit),)
    else:
        raise MeterConfigError(f"{uri.raw}: give query=PROMQL (with kind=power|energy, unit=) or preset=NAME "
                               f"({', '.join(PRESETS)})")
    return PrometheusMeter(
        host, port, queries=queries, preset=preset, name=uri.name, interval_s=uri.interval_s,
        timeout_s=uri.take("timeout", 5.0, float), window_s=uri.take("window", None, float),
        update_s=uri.take("update", None, float), lookback_s=uri.take("lookback", None, float),
        stale_s=uri.take("stale", None, float), scope=uri.take("scope", None),
        source=uri.take("source", "measured"), token_file=uri.take("token_file", None))
