"""The live page (`calibrate run --live`): what its server answers, and a headless browser
showing it update while a simulated session records."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import shutil
import subprocess
import threading
import time

import pytest

from calibrate.bench import BenchPlan, run_bench
from calibrate.live_feed import MAX_POINTS_PER_ANSWER, LiveFeed
from calibrate.live_web import _SCRIPT, _STYLE, CSP, PAGE, LiveServer


def _get(port: int, path: str, host: str | None = None, method: str = "GET") -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True)
        conn.putheader("Host", host if host is not None else f"127.0.0.1:{port}")
        conn.endheaders()
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def served():
    feed = LiveFeed(t0_ns=0)
    server = LiveServer(feed, 0).start()
    try:
        yield feed, server
    finally:
        server.stop()


def test_the_page_is_self_contained_and_names_are_never_html(served):
    feed, server = served
    status, headers, body = _get(server.port, "/")
    assert status == 200 and body == PAGE and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # no CDN, nothing external
    assert "innerHTML" not in page and "outerHTML" not in page and "insertAdjacentHTML" not in page
    assert "document.write" not in page and "eval(" not in page
    csp = headers["Content-Security-Policy"]
    assert csp == CSP and "default-src 'none'" in csp and "connect-src 'self'" in csp
    for part in (_SCRIPT, _STYLE):  # the inline script and style are allowed by hash, nothing else
        digest = base64.b64encode(hashlib.sha256(part.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp and part in page
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Cache-Control"] == "no-store"


def test_data_by_cursor_is_bounded_and_escaped(served):
    feed, server = served
    for k in range(MAX_POINTS_PER_ANSWER + 100):
        feed.on_reading('<img src=x onerror=alert(1)>', k * 10**6, {'</script><b>"x"': {"power_w": 1.5}})
    status, headers, body = _get(server.port, "/data?since=0")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert b"<" not in body and b">" not in body  # JSON escaped to \\u003c: never markup, even if sniffed
    data = json.loads(body)
    assert data["channels"] == [{"id": '</script><b>"x"', "meter": "<img src=x onerror=alert(1)>"}]
    assert sum(len(s["t"]) for s in data["series"]) == MAX_POINTS_PER_ANSWER and data["more"]
    status, _, body = _get(server.port, f"/data?since={data['cursor']}")
    rest = json.loads(body)
    assert len(rest["series"][0]["t"]) == 100 and not rest["more"]


@pytest.mark.parametrize("path, host, code", [
    ("/data?since=0", "evil.example:{port}", 403),  # DNS rebinding: another name for 127.0.0.1
    ("/", "127.0.0.1:1", 403),
    ("/", "", 403),
    ("/", "localhost:{port}", 200),
    ("/data?since=-1", None, 400),
    ("/data?since=1e3", None, 400),
    ("/data?since=0&since=1", None, 400),
    ("/data?since=0&x=1", None, 400),
    ("/data?since=" + "9" * 30, None, 400),
    ("/data?" + "a" * 5000, None, 400),
    ("/data/", None, 404),
    ("/etc/passwd", None, 404),
    ("/../session.json", None, 404),
    ("/?x=1", None, 404),
])
def test_other_requests_are_refused(served, path, host, code):
    _, server = served
    status, _, body = _get(server.port, path, host.format(port=server.port) if host is not None else None)
    assert status == code, body


def test_other_methods_are_refused_and_the_server_binds_locally_only(served):
    _, server = served
    assert _get(server.port, "/", method="POST")[0] == 501
    assert _get(server.port, "/", method="HEAD")[2] == b""
    assert server._server.server_address[0] == "127.0.0.1"
    assert server.url == f"http://127.0.0.1:{server.port}/"


def test_too_many_clients_at_once_get_503(served):
    _, server = served
    saved = server._server.slots
    server._server.slots = threading.BoundedSemaphore(1)
    server._server.slots.acquire()  # as if MAX_CLIENTS requests were being served
    try:
        status, headers, body = _get(server.port, "/")
    finally:
        server._server.slots = saved
    assert status == 503 and body == b"busy\n" and headers["Retry-After"] == "1"
    assert _get(server.port, "/")[0] == 200


def test_a_port_in_use_is_refused(served):
    _, server = served
    with pytest.raises(OSError):
        LiveServer(LiveFeed(), server.port).start()


def _dump(url: str, profile) -> str:
    cp = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                         "--disable-extensions", f"--user-data-dir={profile}", "--virtual-time-budget=4000",
                         "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr[-2000:]
    return cp.stdout


def _shown(dom: str, element_id: str) -> str:
    m = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', dom)
    assert m, dom[:3000]
    return m.group(1)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_the_live_page_updates_in_a_browser_while_a_session_records(tmp_path):
    feed = LiveFeed()
    server = LiveServer(feed, 0).start()
    stop = threading.Event()
    plan = BenchPlan(meters=["sim:sdm120?interval=0.2", "cpu-model?name=<b>cpu</b>&interval=0.2"],
                     command=["sleep", "120"], out=tmp_path / "s", baseline_s=1, analyse=False)
    done: dict = {}
    bench = threading.Thread(target=lambda: done.update(result=run_bench(plan, stop=stop, feed=feed)))
    bench.start()
    try:
        deadline = time.monotonic() + 60
        while len(feed.channel_states()) < 2 and time.monotonic() < deadline and bench.is_alive():
            time.sleep(0.1)
        assert len(feed.channel_states()) == 2, "the meters gave no readings"
        first = _dump(server.url, tmp_path / "p1")
        time.sleep(2.0)
        second = _dump(server.url, tmp_path / "p2")
    finally:
        stop.set()
        bench.join(timeout=60)
        server.stop()
    n1, n2 = int(_shown(first, "points")), int(_shown(second, "points"))
    assert 0 < n1 < n2  # the page kept polling: more points the second time
    for dom in (first, second):
        rows = re.findall(r'data-channel="([^"]*)"', dom)
        assert sorted(rows) == ["&lt;b&gt;cpu&lt;/b&gt;", "sdm120"]  # every channel named
        assert "<b>cpu</b>" not in dom  # the name is text, not an element
        assert "&lt;b&gt;cpu&lt;/b&gt;" in dom
        assert re.search(r"\d+\.\d W", dom)  # a latest value per channel
        assert _shown(dom, "phase") in ("pre-flight", "baseline-before", "workload")
    assert done["result"].status == "interrupted"
