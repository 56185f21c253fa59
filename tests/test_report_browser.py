"""Each report kind as a person sees it, rendered by headless Chromium: no table or figure
wider than the page, every figure decoded, the key text there, strings escaped, links
that lead to the files."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from tests import report_sessions
from tests.report_sessions import LONG

recorded, imported = report_sessions.recorded, report_sessions.imported  # the shared session fixtures
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/test installs it where it can)")

PROBE = """<script>window.addEventListener("load",function(){var d=document.documentElement;
var o={scrollWidth:Math.max(d.scrollWidth,document.body.scrollWidth),innerWidth:window.innerWidth,
imgs:[].map.call(document.images,function(i){return [i.complete,i.naturalWidth,Math.round(i.getBoundingClientRect().right)]}),
wide:[].filter.call(document.querySelectorAll("table,figure,img,pre,h1,h3"),function(e){return e.getBoundingClientRect().right>window.innerWidth+1}).map(function(e){return e.tagName}),
links:[].map.call(document.links,function(a){return a.href}),text:document.body.innerText};
var p=document.createElement("pre");p.id="probe";p.textContent=JSON.stringify(o);document.body.appendChild(p);});</script>"""


def browse(page: Path, tmp: Path) -> dict:
    """Render ``page`` (a copy beside it, with a probe script) at 1200 px; what the probe saw."""
    probe_page = page.with_name(f".probe-{page.name}")
    probe_page.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    try:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp / 'profile'}", "--hide-scrollbars", "--window-size=1200,3000", "--dump-dom",
               probe_page.as_uri()]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False).stdout
    finally:
        probe_page.unlink()
    start = out.index('<pre id="probe">') + len('<pre id="probe">')
    import html

    return json.loads(html.unescape(out[start:out.index("</pre>", start)]))


def check_fits(seen: dict, min_images: int) -> None:
    assert seen["innerWidth"] == 1200
    assert seen["scrollWidth"] <= seen["innerWidth"], f"page {seen['scrollWidth']} px wide: {seen['wide']}"
    assert not seen["wide"], seen["wide"]
    assert len(seen["imgs"]) >= min_images
    for complete, width, right in seen["imgs"]:
        assert complete and width > 0, "a figure was not decoded"
        assert right <= 1200


def _local(href: str) -> Path:
    return Path(unquote(urlparse(href).path))


@pytest.fixture(scope="module")
def compare_page(recorded: Path, imported: Path, tmp_path_factory) -> Path:  # noqa: ANN001
    from analysis.compare_report import compare_row, render_compare_html, report_links

    out = tmp_path_factory.mktemp("cmp") / "compare.html"
    rows = [compare_row(p.name, json.loads((p / "summary.json").read_text())) for p in (recorded, imported)]
    rows[0]["workload"] = "<b>vgg16</b>"
    rows[0]["accuracy"] = 0.61
    rows[1]["accuracy"] = 0.52
    out.write_text(render_compare_html(rows, reports=report_links(out, [recorded, imported])))
    return out


@pytest.fixture(scope="module")
def campaign_folder(recorded: Path, tmp_path_factory) -> Path:  # noqa: ANN001
    from analysis.campaign_report import write_campaign_report

    camp = tmp_path_factory.mktemp("camp")
    runs = []
    for rid in ("001-idle-rep1", "002-idle-rep2"):
        shutil.copytree(recorded, camp / rid)
        summary = json.loads((camp / rid / "summary.json").read_text())
        (camp / rid / "summary.json").write_text(json.dumps({**summary, "session": str(camp / rid)}))
        runs.append(camp / rid)
    write_campaign_report(camp, runs, name="bench <check>",
                          excluded=[{"id": "003-idle-rep3", "status": "failed", "why": "recording failed: disk full"}])
    return camp


@needs_chromium
def test_session_report_in_a_browser(recorded: Path, tmp_path: Path) -> None:
    seen = browse(recorded / "report.html", tmp_path)
    summary = json.loads((recorded / "summary.json").read_text())
    check_fits(seen, min_images=3 + 3 * len(summary["agreement"]) - 1)
    text = seen["text"]
    assert "<script>alert(1)</script>" in text  # shown as text, never run
    for key in ("Agreement with the reference", "Pearson r", "ratio cand./ref. (GMR)", "Glossary",
                "limits of agreement", "Files for a paper", LONG, "benchbox (AMD EPYC, 2 CPUs)"):
        assert key in text, key
    assert "None" not in text and "NaN" not in text
    figs = [_local(h) for h in seen["links"] if "/figures/" in h]
    assert len(figs) >= 2 * (2 + 3 * len(summary["agreement"])) and all(p.is_file() for p in figs)


@needs_chromium
def test_compare_report_in_a_browser(compare_page: Path, recorded: Path, tmp_path: Path) -> None:
    seen = browse(compare_page, tmp_path)
    check_fits(seen, min_images=1)
    text = seen["text"]
    assert "different references" in text and "<b>vgg16</b>" in text
    assert "Candidates against each session's reference" in text and "None" not in text and "NaN" not in text
    reports = [_local(h) for h in seen["links"] if h.endswith("report.html")]
    assert reports and all(p.is_file() for p in reports) and recorded / "report.html" in reports


@needs_chromium
def test_campaign_report_in_a_browser(campaign_folder: Path, tmp_path: Path) -> None:
    page = (campaign_folder / "campaign_report.html").read_text()
    assert "<title>calibrate campaign: bench &lt;check&gt;</title>" in page
    assert 'href="001-idle-rep1/report.html"' in page  # relative: the campaign folder can move
    seen = browse(campaign_folder / "campaign_report.html", tmp_path)
    check_fits(seen, min_images=0)
    text = seen["text"]
    assert "calibrate campaign: bench <check>" in text
    assert "003-idle-rep3" in text and "recording failed: disk full" in text
    assert "repeated pairs" in text and "2 subjects" in text  # pooled agreement: design and subjects
    reports = [_local(h) for h in seen["links"] if h.endswith("report.html")]
    assert sorted(p.parent.name for p in reports) == ["001-idle-rep1", "002-idle-rep2"]
    assert all(p.is_file() for p in reports)
    assert "None" not in text and "NaN" not in text
