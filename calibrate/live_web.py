"""The live page of ``calibrate run --live [PORT]``: every channel plotted as it records.

A :class:`LiveServer` serves the run's :class:`~calibrate.live_feed.LiveFeed` (the data
the terminal view shows) on 127.0.0.1 only, from a daemon thread
(``http.server.ThreadingHTTPServer``), and stops when the run ends:

* ``GET /`` -- one self-contained page (inline script and style, no external resource;
  a Content-Security-Policy allows only that script, that style and requests to itself);
  it draws on a canvas and writes every name with ``textContent``, never as HTML;
* ``GET /data?since=N`` -- JSON: the points after cursor N (at most
  :data:`~calibrate.live_feed.MAX_POINTS_PER_ANSWER` per answer), the channels, the phase
  bands and the run's status; the page polls with the cursor it got.

Everything else is refused: another path (404), another method (501), a query it does not
know or a cursor that is not a number (400), a ``Host`` that is not ``127.0.0.1:PORT`` or
``localhost:PORT`` (403: a page elsewhere cannot read the feed through DNS rebinding),
more than :data:`MAX_CLIENTS` requests at once (503).  A client has :data:`TIMEOUT_S`
to send its request.  The server's CPU time is reported to the feed (``live-web``) and
counted as recorder overhead.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from calibrate.live_feed import LiveFeed

HOST = "127.0.0.1"
MAX_CLIENTS = 8  # requests served at once; more get 503
TIMEOUT_S = 5.0  # a client must send its request (and read the answer) within this long
MAX_QUERY = 200  # characters of a query string
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
         b"Content-Length: 5\r\nRetry-After: 1\r\nConnection: close\r\nCache-Control: no-store\r\n\r\nbusy\n")
_CURSOR = re.compile(r"[0-9]{1,18}")
_JSON_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})  # never markup if sniffed

_STYLE = """
body{font:14px system-ui,sans-serif;margin:1em 1.5em;color:#222;background:#fafafa}
h1{font-size:1.2em;margin:0 0 .3em}
#bar span{margin-right:1.2em}
#bar .k{color:#777;margin-right:.3em}
canvas{width:100%;height:420px;background:#fff;border:1px solid #ddd;display:block;margin:.6em 0}
table{border-collapse:collapse;margin:.4em 0}
td,th{padding:.15em .8em;text-align:left;border-bottom:1px solid #eee}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b00;font-weight:bold}
.ok{color:#070}
.sw{display:inline-block;width:.9em;height:.9em;margin-right:.4em;vertical-align:-.1em}
#notes li{color:#555}
#conn.bad{background:#fee;padding:0 .4em}
"""

_SCRIPT = r"""
"use strict";
const MAX_KEEP = 20000;
const COLORS = ["#1f77b4","#d62728","#2ca02c","#ff7f0e","#9467bd","#8c564b","#e377c2","#17becf","#bcbd22","#7f7f7f"];
const st = {cursor: 0, received: 0, channels: [], series: [], phases: [], status: null, now: 0, polls: 0};
const $ = (id) => document.getElementById(id);
function text(id, value) { $(id).textContent = value; }
function fmtS(s) {
  if (s === null || s === undefined) return "-";
  s = Math.max(0, Math.floor(s));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + String(s % 60).padStart(2, "0") + " s";
  return Math.floor(s / 3600) + " h " + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + " min";
}
function merge(d) {
  st.channels = d.channels;
  while (st.series.length < st.channels.length) st.series.push({t: [], w: []});
  for (const s of d.series) {
    const dst = st.series[s.i];
    if (!dst) continue;
    for (let k = 0; k < s.t.length; k++) { dst.t.push(s.t[k]); dst.w.push(s.w[k]); }
    st.received += s.t.length;
    if (dst.t.length > MAX_KEEP) { const cut = dst.t.length - MAX_KEEP / 2; dst.t.splice(0, cut); dst.w.splice(0, cut); }
  }
  st.cursor = d.cursor; st.phases = d.phases; st.status = d.status; st.now = d.now_s;
  st.notes = d.notes; st.state = d.state; st.title = d.title;
}
function meterOf(name) {
  if (!st.status) return null;
  for (const m of st.status.meters) if (m.name === name) return m;
  return null;
}
function markOf(m) {
  if (!m) return "";
  if (!m.connected) return "RECONNECTING";
  if (m.silent) return "SILENT " + Math.round(m.silent_s) + " s";
  if (m.last_fault) return "FAULT " + m.last_fault;
  if (m.silent_s === null) return "WAITING";
  return "";
}
function renderTable() {
  const body = $("rows");
  while (body.rows.length < st.channels.length) {
    const tr = body.insertRow();
    for (let k = 0; k < 6; k++) tr.insertCell();
    const sw = document.createElement("span"); sw.className = "sw";
    tr.cells[0].appendChild(sw); tr.cells[0].appendChild(document.createElement("span"));
    tr.cells[2].className = "num w"; tr.cells[3].className = "num"; tr.cells[4].className = "num";
  }
  st.channels.forEach((c, i) => {
    const tr = body.rows[i], s = st.series[i], m = meterOf(c.meter);
    tr.setAttribute("data-channel", c.id);
    tr.cells[0].firstChild.style.background = COLORS[i % COLORS.length];
    tr.cells[0].lastChild.textContent = c.id;
    tr.cells[1].textContent = c.meter;
    let last = null, lastT = null;
    for (let k = s.w.length - 1; k >= 0; k--) if (s.w[k] !== null) { last = s.w[k]; lastT = s.t[k]; break; }
    tr.cells[2].textContent = last === null ? "-" : last.toFixed(1) + " W";
    tr.cells[3].textContent = lastT === null ? "-" : (Math.max(0, st.now - lastT)).toFixed(1) + " s";
    tr.cells[4].textContent = m ? String(m.faults) : "-";
    const mark = markOf(m);
    tr.cells[5].textContent = mark || "ok";
    tr.cells[5].className = mark ? "bad" : "ok";
  });
}
function renderBar() {
  text("title", st.title || "calibrate live");
  text("state", st.state || "");
  text("points", String(st.received));
  text("channels-n", String(st.channels.length));
  const s = st.status;
  if (!s) return;
  text("phase", s.phase || "-");
  text("left", s.left_s === null ? "-" : (s.left_is_max ? "up to " : "") + fmtS(Math.ceil(s.left_s)));
  text("elapsed", fmtS(s.elapsed_s));
  text("cpu", s.recorder_cpu === null ? "-" : (100 * s.recorder_cpu).toFixed(1) + " % of a core");
  const w = s.workload, parts = [];
  if (w) {
    if (w.epoch !== null) parts.push("epoch " + w.epoch + (w.epochs ? "/" + w.epochs : ""));
    else if (w.phase) parts.push(w.phase);
    if (w.step !== null) parts.push("step " + w.step);
    if (w.images_per_s !== null) parts.push(w.images_per_s.toFixed(1) + " images/s");
  }
  text("workload", parts.length ? parts.join("  ") : "-");
  const ul = $("notes");
  if (st.notes && ul.childElementCount !== st.notes.length) {
    ul.replaceChildren();
    for (const n of st.notes) { const li = document.createElement("li"); li.textContent = n; ul.appendChild(li); }
  }
}
function draw() {
  const cv = $("plot"), dpr = window.devicePixelRatio || 1;
  const W = Math.max(300, cv.clientWidth || 800), H = Math.max(200, cv.clientHeight || 420);
  cv.width = W * dpr; cv.height = H * dpr;
  const g = cv.getContext("2d"); g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, W, H);
  const L = 56, R = 10, T = 10, B = 28, pw = W - L - R, ph = H - T - B;
  let t1 = st.now || 1, t0 = 0, lo = Infinity, hi = -Infinity;
  for (const s of st.series) { if (s.t.length) t0 = Math.min(t0, s.t[0]); for (const v of s.w) if (v !== null) { if (v < lo) lo = v; if (v > hi) hi = v; } }
  if (!isFinite(lo)) { lo = 0; hi = 1; }
  if (hi - lo < 1e-9) { hi += 1; lo -= 1; }
  const pad = 0.05 * (hi - lo); lo = Math.max(lo > 0 ? 0 : lo - pad, lo - pad); hi += pad;
  if (t1 <= t0) t1 = t0 + 1;
  const X = (t) => L + (t - t0) / (t1 - t0) * pw, Y = (v) => T + (1 - (v - lo) / (hi - lo)) * ph;
  g.font = "11px system-ui,sans-serif";
  st.phases.forEach((p, k) => {
    const a = X(p.start_s), b = X(p.end_s === null ? t1 : p.end_s);
    g.fillStyle = k % 2 ? "rgba(0,0,0,0.035)" : "rgba(31,119,180,0.06)"; g.fillRect(a, T, Math.max(1, b - a), ph);
    g.fillStyle = "#666"; g.fillText(p.name.slice(0, 40), a + 3, T + 12);
  });
  g.strokeStyle = "#ccc"; g.fillStyle = "#444"; g.lineWidth = 1;
  for (let k = 0; k <= 4; k++) {
    const v = lo + (hi - lo) * k / 4, y = Y(v);
    g.beginPath(); g.moveTo(L, y); g.lineTo(L + pw, y); g.stroke(); g.fillText(v.toFixed(0) + " W", 4, y + 4);
  }
  for (let k = 0; k <= 5; k++) { const t = t0 + (t1 - t0) * k / 5; g.fillText(t.toFixed(0) + " s", X(t) - 10, H - 8); }
  st.series.forEach((s, i) => {
    g.strokeStyle = COLORS[i % COLORS.length]; g.lineWidth = 1.5; g.beginPath();
    let pen = false, lastPx = -1, n = 0;
    for (let k = 0; k < s.t.length; k++) {
      const v = s.w[k];
      if (v === null) { pen = false; continue; }
      const x = X(s.t[k]), y = Y(v);
      if (pen && Math.abs(x - lastPx) < 0.5 && k + 1 < s.t.length && s.w[k + 1] !== null) continue;  // one pixel: skip
      if (pen) g.lineTo(x, y); else g.moveTo(x, y);
      pen = true; lastPx = x; n++;
    }
    g.stroke();
  });
}
function render() { renderBar(); renderTable(); draw(); }
async function poll() {
  let delay = 1000;
  try {
    const r = await fetch("/data?since=" + st.cursor, {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    const d = await r.json();
    merge(d); st.polls++;
    text("conn", "live"); $("conn").className = "";
    if (d.more) delay = 0;
    render();
  } catch (e) {
    text("conn", "no connection: the run may have ended (" + e.message + ")"); $("conn").className = "bad";
    delay = 2000;
  }
  text("polls", String(st.polls));
  setTimeout(poll, delay);
}
window.addEventListener("resize", draw);
poll();
"""

_BODY = """<h1 id="title">calibrate live</h1>
<div id="bar">
<span><span class="k">phase</span><span id="phase">-</span></span>
<span><span class="k">left</span><span id="left">-</span></span>
<span><span class="k">elapsed</span><span id="elapsed">-</span></span>
<span><span class="k">workload</span><span id="workload">-</span></span>
<span><span class="k">recorder CPU</span><span id="cpu">-</span></span>
<span><span class="k">points</span><span id="points">0</span></span>
<span><span class="k">channels</span><span id="channels-n">0</span></span>
<span><span class="k">polls</span><span id="polls">0</span></span>
<span id="state"></span> <span id="conn">connecting</span>
</div>
<canvas id="plot" width="900" height="420"></canvas>
<table><thead><tr><th>channel</th><th>meter</th><th>power</th><th>age</th><th>faults</th><th>state</th></tr></thead>
<tbody id="rows"></tbody></table>
<ul id="notes"></ul>
"""


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


PAGE = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<title>calibrate live</title><style>{_STYLE}</style></head>\n<body>\n{_BODY}"
        f"<script>{_SCRIPT}</script>\n</body></html>\n").encode()
CSP = (f"default-src 'none'; script-src '{_sha256(_SCRIPT)}'; style-src '{_sha256(_STYLE)}'; "
       "connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False  # a port in use is refused, not shared

    def __init__(self, feed: LiveFeed, port: int) -> None:
        self.feed = feed
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self.cpu_lock = threading.Lock()
        self.cpu_s = 0.0
        self.requests = 0
        self.errors = 0
        self._loop_cpu0: float | None = None
        super().__init__((HOST, port), _Handler)
        self.port = self.server_address[1]
        self.hosts = {f"127.0.0.1:{self.port}", f"localhost:{self.port}"}

    def add_cpu(self, cpu_s: float) -> None:
        with self.cpu_lock:
            self.cpu_s += cpu_s
            total = self.cpu_s
        self.feed.account_cpu("live-web", total)

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.errors += 1  # never a traceback on the terminal (the live view is there)

    def service_actions(self) -> None:  # once per serve_forever loop: the loop's own CPU
        now = time.thread_time()
        if self._loop_cpu0 is not None:
            self.add_cpu(now - self._loop_cpu0)
        self._loop_cpu0 = now


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "calibrate-live"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass  # never on the terminal: it would tear the live view

    def handle(self) -> None:
        c0 = time.thread_time()
        slots = self.server.slots
        if not slots.acquire(blocking=False):
            self.close_connection = True
            try:
                self.rfile.readline(65537)
                self.wfile.write(_BUSY)
            except OSError:
                pass
            return
        try:
            super().handle()
        except OSError:
            pass
        finally:
            slots.release()
            self.server.add_cpu(time.thread_time() - c0)

    def _send(self, status: HTTPStatus, body: bytes, ctype: str, csp: str | None = None,
              head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Content-Security-Policy", csp or "default-src 'none'; frame-ancestors 'none'")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _refuse(self, status: HTTPStatus, why: str, head: bool = False) -> None:
        self._send(status, why.encode() + b"\n", "text/plain; charset=utf-8", head=head)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        self.server.requests += 1
        try:
            self._answer(head)
        except OSError:
            raise
        except Exception:  # a bug here is one 500, never a dead server or a traceback
            self.server.errors += 1
            self.close_connection = True
            self._refuse(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error", head)

    def _answer(self, head: bool) -> None:
        host = (self.headers.get("Host") or "").strip().lower()
        if host not in self.server.hosts:
            self._refuse(HTTPStatus.FORBIDDEN, "this page answers only to 127.0.0.1 or localhost", head)
            return
        parts = urlsplit(self.path)
        if parts.path == "/" and not parts.query:
            self._send(HTTPStatus.OK, PAGE, "text/html; charset=utf-8", CSP, head)
        elif parts.path == "/data":
            cursor = self._cursor(parts.query)
            if cursor is None:
                self._refuse(HTTPStatus.BAD_REQUEST, "query: since=N (a cursor from the last answer) only", head)
                return
            text = json.dumps(self.server.feed.since(cursor), ensure_ascii=True, allow_nan=False,
                              separators=(",", ":"))
            body = text.translate(_JSON_SAFE).encode()  # < > & only occur inside strings: still JSON
            self._send(HTTPStatus.OK, body, "application/json", head=head)
        else:
            self._refuse(HTTPStatus.NOT_FOUND, "not found: / and /data?since=N only", head)

    @staticmethod
    def _cursor(query: str) -> int | None:
        """The ``since`` cursor of a /data query (0 when absent); None for a bad query."""
        if len(query) > MAX_QUERY:
            return None
        try:
            q = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query), max_num_fields=2)
        except ValueError:
            return None
        if set(q) - {"since"} or len(q.get("since", [])) > 1:
            return None
        value = q.get("since", ["0"])[0]
        return int(value) if _CURSOR.fullmatch(value) else None


class LiveServer:
    """The live page's server for ``feed`` on 127.0.0.1:``port`` (0: a free port).

    :meth:`start` binds (OSError if the port is taken) and serves from a daemon thread;
    :meth:`stop` ends it.  Usable as a context manager.
    """

    def __init__(self, feed: LiveFeed, port: int = 0) -> None:
        if not 0 <= int(port) <= 65535:
            raise ValueError(f"port must be 0..65535, got {port}")
        self.feed = feed
        self.requested_port = int(port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port it listens on (after :meth:`start`)."""
        return self._server.port if self._server else self.requested_port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    @property
    def requests(self) -> int:
        """Requests answered so far (any status)."""
        return self._server.requests if self._server else 0

    def start(self) -> LiveServer:
        self._server = _Server(self.feed, self.requested_port)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.25},
                                        name="live-web", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.feed.account_cpu("live-web", server.cpu_s)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
