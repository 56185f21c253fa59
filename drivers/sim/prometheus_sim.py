"""A Prometheus server scraping DCGM exporters: ``http.server`` on 127.0.0.1, a random port.

It serves what the prometheus:// driver asks of a real server, with the same JSON:

* ``GET /api/v1/query?query=Q[&time=T]`` -- instant queries: ``Q`` a selector of
  ``DCGM_FI_DEV_POWER_USAGE`` (W) or ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` (mJ since the
  simulated boot), optionally with ``{label="v", label!="v"}`` matchers, gives a vector
  (value timestamp: the evaluation time; the value: the newest sample within 5 min);
  ``Q[Ns]`` (``ms``/``s``/``m``) a matrix of the raw samples with their scrape timestamps;
  ``timestamp(Q)`` the scrape times; ``time()`` the server's time.  Anything else is a
  ``bad_data`` error (HTTP 400) as Prometheus words it; unknown metrics select nothing.
* ``GET /api/v1/targets`` -- one active target per host with its ``scrapeInterval``.
* ``GET /-/ready``.

Series: ``gpus`` GPUs on each of ``hosts`` hosts, labels ``gpu``, ``UUID``, ``device``,
``modelName``, ``Hostname``, ``instance``, ``job``; GPU number ``i`` reports the signal plus
``10*i`` W.  Timing is an exporter's and a server's: the exporter refreshes its values every
``collect`` s (each the mean of the signal over the last ``window`` s; 0: the instantaneous
value) and the server scrapes every ``scrape`` s (default 15), so a sample changes only at
a scrape and is stamped with the scrape time (unix time, the simulator's clock offset to
``time.time()`` at start).  ``double`` (W, 0 = off): a reading below this power is reported
doubled (the doubled idle reading seen on some exporter/driver combinations); ``noise``
(W, 1 sigma, 0 = off) is added to each power sample (seeded by ``seed``).  ``auth=1``
wants ``Authorization: Bearer <token>``; the token is written to a chmod 600 file whose path
the driver URI carries as ``token_file=``.

Faults (``faults=``): the common ``exception`` (HTTP 503 with an ``unavailable`` error
document), ``silent`` (the reply is held ``silent_s`` s), ``garbage``, ``partial``, ``nan``
(a sample value ``"NaN"``), plus ``inf:P`` (``"+Inf"``), ``error:P`` (HTTP 422
``execution`` error), ``stale:T+D`` (no scrape succeeds from T s for D s: the same samples
are served again) and ``reset:T;T2`` (the energy counter restarts from 0 at each T s).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

from drivers.base import MeterConfigError
from drivers.sim.faults import FaultPlan
from drivers.sim.modbus_sim import free_port
from drivers.sim.simulator import Simulator

POWER = "DCGM_FI_DEV_POWER_USAGE"
ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
METRICS = (POWER, ENERGY)
MODEL = "NVIDIA H100 80GB HBM3"
#: how long back an instant query looks for a sample (Prometheus' default lookback delta)
LOOKBACK_S = 300.0
#: raw samples kept per series
KEEP_SAMPLES = 4096
_RANGE = re.compile(r"^(.*)\[(\d+)(ms|s|m)\]\s*$", re.S)
_SELECTOR = re.compile(r'^\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*(?:\{(.*)\})?\s*$', re.S)
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=|!=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


@dataclass
class PromFaultPlan(FaultPlan):
    """The common fault plan plus the Prometheus-only faults."""

    inf: float = 0.0
    error: float = 0.0
    stale: list[tuple[float, float]] = field(default_factory=list)
    resets: list[float] = field(default_factory=list)

    EXTRA_PROBS = ("inf", "error")
    EXTRA_SPANS = {"stale": ("stale", 5.0)}
    EXTRA_TIMES = {"reset": "resets"}

    def staled(self, t_s: float) -> bool:
        return self.within(self.stale, t_s)


def _duration(n: int, unit: str) -> float:
    return n * {"ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def _fmt_duration(s: float) -> str:
    ms = int(round(s * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _fmt_value(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x)) if x != int(x) or abs(x) >= 1e15 else str(int(x))


class PromError(Exception):
    def __init__(self, status: int, etype: str, message: str) -> None:
        super().__init__(message)
        self.status, self.etype = status, etype


class PrometheusSimulator(Simulator):
    kind = "prometheus"
    options: dict[str, Any] = {"scrape": 15.0, "collect": 1.0, "window": 0.0, "gpus": 1, "hosts": 1,
                               "double": 0.0, "noise": 0.0, "auth": 0, "silent_s": 3.0}
    fault_plan = PromFaultPlan
    faults: PromFaultPlan

    def __init__(self, signal: Any = None, faults: str | FaultPlan | None = None,
                 seed: int | None = None, **opts: Any) -> None:
        super().__init__(signal=signal, faults=faults, seed=seed, **opts)
        self.scrape_s, self.collect_s = float(self.opts["scrape"]), float(self.opts["collect"])
        self.window_s = float(self.opts["window"])
        if not (0.01 <= self.scrape_s <= 3600 and 0.01 <= self.collect_s <= 3600 and 0 <= self.window_s <= 3600):
            raise MeterConfigError("sim:prometheus: scrape and collect must be 0.01 to 3600 s, window 0 to 3600 s")
        self.gpus, self.hosts = int(self.opts["gpus"]), int(self.opts["hosts"])
        if not (1 <= self.gpus <= 16 and 1 <= self.hosts <= 16):
            raise MeterConfigError("sim:prometheus: gpus and hosts must be 1 to 16")
        self.unix0 = time.time() - self.now()  # the server's unix time at the simulator's t=0
        self.token = secrets.token_urlsafe(24) if int(self.opts["auth"]) else None
        self.series = [self._labels(h, g) for h in range(self.hosts) for g in range(self.gpus)]
        self._model_lock = threading.Lock()
        # per series: [(scrape time s on the simulator clock, power W, energy mJ)]
        self.samples: list[list[tuple[float, float, float]]] = [[] for _ in self.series]
        self._next_scrape = math.floor(self.now() / self.scrape_s) * self.scrape_s  # a sample at start
        self._e_t = self.now()
        self._e_j = 0.0  # the signal's energy (J) integrated up to _e_t
        # the counters restart at a reset: (value at the origin mJ, signal energy J and time s there)
        self._origin: tuple[float, float, float] = (1.0e9, 0.0, 0.0)
        self._resets_done = 0
        self.requests = 0
        self._noise_rng = random.Random(seed)
        self.httpd: ThreadingHTTPServer | None = None
        self.folder: Path | None = None

    @staticmethod
    def _labels(h: int, g: int) -> dict[str, str]:
        return {"gpu": str(g), "UUID": f"GPU-{h:04x}{g:04x}-5d1c-2b7a-9e3f-0c4b8a7d6e51", "device": f"nvidia{g}",
                "modelName": MODEL, "Hostname": f"node{h}", "DCGM_FI_DRIVER_VERSION": "550.54.15",
                "instance": f"node{h}:9400", "job": "dcgm-exporter"}

    # -- the exporter's and the server's view of the signal -------------------------------------
    def _mean(self, a: float, b: float) -> float:
        if b <= a:
            return self.signal(b)
        n = max(8, min(400, int((b - a) / 0.005)))
        h = (b - a) / n
        return sum(self.signal(a + (i + 0.5) * h) for i in range(n)) / n

    def _energy_to(self, t: float) -> float:
        """The signal's energy (J) from start to ``t`` (midpoint rule, 5 ms steps)."""
        if t > self._e_t:
            self._e_j += self._mean(self._e_t, t) * (t - self._e_t)
            self._e_t = t
        return self._e_j

    def collected(self, t: float) -> tuple[float, float]:
        """What the exporter shows at ``t``: its last collection (power W over the window,
        energy J), made at the last multiple of ``collect`` before ``t``."""
        tc = math.floor(t / self.collect_s + 1e-9) * self.collect_s
        p = self._mean(tc - self.window_s, tc) if self.window_s > 0 else self.signal(tc)
        return p, self._energy_to(max(tc, self._e_t))

    def advance(self) -> None:
        """Run every scrape due by now (each stores one sample per series)."""
        with self._model_lock:
            now = self.now()
            while self._next_scrape <= now:
                ts = self._next_scrape
                self._next_scrape += self.scrape_s
                while self._resets_done < len(self.faults.resets) and self.faults.resets[self._resets_done] <= ts:
                    self._resets_done += 1
                    self._origin = (0.0, self._energy_to(ts), ts)  # the counters restart at 0
                if self.faults.staled(ts):
                    continue
                p, e = self.collected(ts)
                double, noise = float(self.opts["double"]), float(self.opts["noise"])
                for series, labels in zip(self.samples, self.series):
                    g = int(labels["gpu"])
                    pw = p + 10.0 * g
                    if double > 0 and pw < double:
                        pw *= 2.0
                    if noise > 0:
                        pw += self._noise_rng.gauss(0.0, noise)
                    boot, e0, t0 = self._origin
                    emj = boot + (e - e0 + 10.0 * g * (ts - t0)) * 1e3
                    series.append((ts, pw, max(emj, 0.0)))
                    if len(series) > KEEP_SAMPLES:
                        del series[: len(series) - KEEP_SAMPLES]

    def unix(self, t: float) -> float:
        return round(self.unix0 + t, 3)  # Prometheus keeps milliseconds

    # -- PromQL, the small part a meter driver uses ------------------------------------------
    def select(self, selector: str) -> list[tuple[dict[str, str], int, int]]:
        """(labels with __name__, series index, which: 1 power / 2 energy) matching ``selector``."""
        m = _SELECTOR.match(selector)
        if not m:
            raise PromError(400, "bad_data", f'invalid parameter "query": 1:1: parse error: unexpected '
                                             f'character in {selector.strip()[:40]!r}')
        name, body = m.group(1), m.group(2) or ""
        matchers = []
        pos = 0
        while pos < len(body.strip()):
            mm = _MATCHER.match(body, pos)
            if not mm:
                raise PromError(400, "bad_data", 'invalid parameter "query": 1:1: parse error: unexpected '
                                                 "character inside braces")
            matchers.append((mm.group(1), mm.group(2), mm.group(3)))
            pos = mm.end()
        if name not in METRICS:
            return []
        out = []
        for i, labels in enumerate(self.series):
            full = {"__name__": name, **labels}
            if all((full.get(k, "") == v) == (op == "=") for k, op, v in matchers):
                out.append((full, i, 1 + METRICS.index(name)))
        return out

    def _value(self, which: int, sample: tuple[float, float, float]) -> str:
        x = sample[which]
        if self.faults.hit("nan"):
            return "NaN"
        if self.faults.hit("inf"):
            return "+Inf"
        return _fmt_value(round(x, 3) if which == 1 else math.floor(x))

    def query(self, q: str, at: float | None) -> dict[str, Any]:
        self.advance()
        t_eval = self.now() if at is None else at - self.unix0
        q = q.strip()
        if q == "time()":
            return {"resultType": "scalar", "result": [self.unix(t_eval), _fmt_value(round(self.unix(t_eval), 3))]}
        rng = _RANGE.match(q)
        if rng:
            span = _duration(int(rng.group(2)), rng.group(3))
            result = []
            for labels, i, which in self.select(rng.group(1)):
                vals = [[self.unix(s[0]), self._value(which, s)] for s in self.samples[i]
                        if t_eval - span < s[0] <= t_eval]
                if vals:
                    result.append({"metric": labels, "values": vals})
            return {"resultType": "matrix", "result": result}
        ts_fn = q.startswith("timestamp(") and q.endswith(")")
        inner = q[len("timestamp("):-1] if ts_fn else q
        result = []
        for labels, i, which in self.select(inner):
            recent = [s for s in self.samples[i] if t_eval - LOOKBACK_S < s[0] <= t_eval]
            if not recent:
                continue
            s = recent[-1]
            value = _fmt_value(self.unix(s[0])) if ts_fn else self._value(which, s)
            if ts_fn:
                labels = {k: v for k, v in labels.items() if k != "__name__"}
            result.append({"metric": labels, "value": [self.unix(t_eval), value]})
        return {"resultType": "vector", "result": result}

    def targets(self) -> dict[str, Any]:
        active = []
        for h in range(self.hosts):
            inst = f"node{h}:9400"
            active.append({"discoveredLabels": {"__address__": inst}, "labels": {"instance": inst, "job": "dcgm-exporter"},
                           "scrapePool": "dcgm-exporter", "scrapeUrl": f"http://{inst}/metrics", "globalUrl": f"http://{inst}/metrics",
                           "lastError": "", "lastScrape": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "lastScrapeDuration": 0.004, "health": "down" if self.faults.staled(self.now()) else "up",
                           "scrapeInterval": _fmt_duration(self.scrape_s), "scrapeTimeout": _fmt_duration(min(self.scrape_s, 10.0))})
        return {"activeTargets": active, "droppedTargets": []}

    # -- serving ---------------------------------------------------------------------------------
    def start(self) -> str:
        self._stop = threading.Event()
        self.port_no = free_port()
        if self.token:
            self.folder = Path(tempfile.mkdtemp(prefix="sim-prometheus-"))
            fd = os.open(self.folder / "token", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(self.token + "\n")
        sim = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

            def _error(self, status: int, etype: str, msg: str) -> None:
                self._send(status, json.dumps({"status": "error", "errorType": etype, "error": msg}).encode())

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                sim.requests += 1
                url = urlparse(self.path)
                if sim.token and not secrets.compare_digest(self.headers.get("Authorization", ""),
                                                            f"Bearer {sim.token}"):
                    self._send(401, b"Unauthorized\n", "text/plain")
                    return
                if url.path == "/-/ready":
                    self._send(200, b"Prometheus Server is Ready.\n", "text/plain")
                    return
                if sim.faults.hit("silent"):
                    sim._stop.wait(float(sim.opts["silent_s"]))
                if sim.faults.hit("exception"):
                    self._error(503, "unavailable", "the server is shutting down")
                    return
                try:
                    if url.path == "/api/v1/query":
                        qs = parse_qs(url.query)
                        if "query" not in qs:
                            raise PromError(400, "bad_data", 'invalid parameter "query": unknown position: '
                                                             "parse error: no expression found in input")
                        at = float(qs["time"][0]) if "time" in qs else None
                        if sim.faults.hit("error"):
                            raise PromError(422, "execution", "query processing would load too many samples into memory")
                        data = sim.query(qs["query"][0], at)
                    elif url.path == "/api/v1/targets":
                        data = sim.targets()
                    else:
                        self._send(404, b"404 page not found\n", "text/plain")
                        return
                except PromError as exc:
                    self._error(exc.status, exc.etype, str(exc))
                    return
                except ValueError:
                    self._error(400, "bad_data", 'invalid parameter "time": cannot parse')
                    return
                body = json.dumps({"status": "success", "data": data}).encode()
                if sim.faults.hit("garbage"):
                    body = sim.faults.garbage_bytes(len(body))
                elif sim.faults.hit("partial"):
                    body = body[: len(body) // 2]
                self._send(200, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port_no), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="sim-prometheus", daemon=True)
        self._thread.start()
        return self.uri()

    def uri(self, preset: str = "dcgm") -> str:
        opts = {"preset": preset}
        if self.folder is not None:
            opts["token_file"] = str(self.folder / "token")
        return f"prometheus://127.0.0.1:{self.port_no}?{urlencode(opts)}"

    def stop(self) -> None:
        if hasattr(self, "_stop"):
            self._stop.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self._thread.join(timeout=2)
            self.httpd = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
