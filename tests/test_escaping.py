"""Hostile names (meter, phase, workload, candidate) reach terminals, plots, Markdown and CSV
as literal text: analysis.escape and its use in analysis.plots and analysis.report."""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import plots
from analysis.escape import (
    csv_cell,
    csv_row,
    markdown_text,
    plot_text,
    strip_controls,
    terminal_text,
)
from analysis.text_report import agreement_markdown, summary_markdown, summary_text
from tests.conftest import run_cli

# --------------------------------------------------------------------------- terminal


@pytest.mark.parametrize("raw, shown", [
    ("\x1b[2Jmeter", "meter"),
    ("\x1b[31;1mred\x1b[0m", "red"),
    ("a\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\b", "aclickb"),
    ("o\x1b]0;new title\x07k", "ok"),
    ("x\ry", "x y"),
    ("tab\there\nnext", "tab here next"),
    ("abc\b\b\bxyz", "abcxyz"),
    ("p\x9b31mq", "pq"),
    ("c1\x85\x9dstuff\x9cz", "c1 z"),
    ("\x90q1\x1b\\dcs", "dcs"),
    ("e\x1bcx", "ex"),
    ("safe\u202egnp.exe", "safegnp.exe"),
    ("iso\u2066late\u2069d\u200f", "isolated"),
    ("del\x7f\x00nul", "delnul"),
    ("lone\udc80surrogate", "lonesurrogate"),
    ("Zürich – 東京 😀 naïve", "Zürich – 東京 😀 naïve"),
    ("rapl.package-0", "rapl.package-0"),
    ("sim:wattsup/usb 1+nvml.0", "sim:wattsup/usb 1+nvml.0"),
])
def test_terminal_text(raw, shown):
    assert terminal_text(raw) == shown


def test_terminal_text_length_and_types():
    long = terminal_text("x" * 500)
    assert len(long) == 200 and long.endswith("\u2026")
    assert terminal_text("x" * 500, max_len=None) == "x" * 500
    assert terminal_text("abcdef", max_len=4) == "abc\u2026"
    assert terminal_text(42) == "42" and terminal_text(None) == "None"
    assert terminal_text(Path("/tmp/a\x1b[2J")) == "/tmp/a"
    assert plot_text("y" * 100) == "y" * 79 + "\u2026"


_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60) | st.text(alphabet="\x1b[]\\;0123456789mPX^_\x07\x9b\x9c\x9d\x90abc\r\n\b", max_size=60))
def test_terminal_text_never_carries_controls(raw):
    out = terminal_text(raw, max_len=None)
    assert not any(unicodedata.category(c) in ("Cc", "Cs") for c in out)
    assert not (_BIDI & set(out))
    printable = "".join(c for c in raw if c.isprintable() and c not in "\x1b")
    if printable == raw:
        assert out == raw  # nothing to remove: unchanged
    assert strip_controls(out) == out  # idempotent


# --------------------------------------------------------------------------- Markdown


@pytest.mark.parametrize("raw, md", [
    ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
    ("a|b", "a\\|b"),
    ("*x* _y_ [l](u) `c` #h ~~s~~", "\\*x\\* \\_y\\_ \\[l\\](u) \\`c\\` \\#h \\~\\~s\\~\\~"),
    ("back\\slash", "back\\\\slash"),
    ("a&b", "a&amp;b"),
    ("- item", "\\- item"),
    ("1. item", "1\\. item"),
    ("line\nbreak|", "line break\\|"),
    # ordinary names, unchanged
    ("mobilenet_v2", "mobilenet_v2"),
    ("rapl.package-0+nvml.0", "rapl.package-0+nvml.0"),
    ("sessions/2024-05-01T10-00-00_vgg16", "sessions/2024-05-01T10-00-00_vgg16"),
    ("measured", "measured"),
])
def test_markdown_text(raw, md):
    assert markdown_text(raw) == md


def _cells(row: str) -> int:
    """Table cells in a Markdown row: pipes not escaped by a backslash."""
    return len(re.findall(r"(?<!\\)\|", row)) - 1


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_markdown_text_adds_no_markup(raw):
    md = markdown_text(raw)
    assert "<" not in md and ">" not in md and "\n" not in md
    assert _cells(f"| {md} | x |") == 2
    assert not re.search(r"(?<!\\)[*`\[\]#]", md.replace("\\\\", ""))


def _summary(name: str, source: str = "measured", error: str = "no windows") -> dict:
    return {"session": f"sessions/{name}", "status": "complete", "reference": name,
            "meters": {name: {"source": source, "energy_j": 10.0, "mean_power_w": 2.5, "samples": 3, "errors": {}},
                       "rapl": {"source": "measured", "energy_j": 5.0, "mean_power_w": 1.0, "samples": 3, "errors": {}}},
            "agreement": [{"candidate": name, "error": error, "bland_altman": {}},
                          {"candidate": "rapl", "lag_s": 0.5, "n_windows": 4,
                           "bland_altman": {"bias": -1.0, "loa_low": -2.0, "loa_high": 0.0}}]}


def test_summary_markdown_escapes_names_and_free_text():
    hostile = "<script>alert(1)</script>|x|*b*"
    md = summary_markdown(_summary(hostile, source="<img src=x onerror=alert(1)>", error="bad | [link](javascript:x)"))
    assert "<script>" not in md and "<img" not in md
    assert "[link](javascript" not in md and "bad \\| \\[link\\](javascript:x)" in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\|x\\|\\*b\\*" in md
    rows = [line for line in md.splitlines() if line.startswith("|")]
    assert len(rows) == 4 and all(_cells(r) == 6 for r in rows), rows
    # ordinary names: as before
    plain = summary_markdown(_summary("wall"))
    assert plain.splitlines()[0] == "# sessions/wall"
    assert "| wall | measured | 10.0 | 2.50 | 3 | 0 |" in plain
    assert "\nrapl: lag 0.50 s, bias -1.00 W, LoA [-2.00, 0.00 W] over 4 windows\n" in plain
    assert "\nwall: not compared (no windows)" in plain


def test_agreement_markdown_escapes_names():
    result = {"candidate": "<b>c|d</b>", "reference": "# ref", "regression": {"method": "deming|x", "slope": 1.0},
              "bland_altman": {"n": 5, "bias": 0.5}, "ccc": {}}
    md = agreement_markdown(result)
    assert md.startswith("&lt;b&gt;c\\|d&lt;/b&gt; vs \\# ref (difference")
    assert "<b>" not in md
    assert all(_cells(r) == 3 for r in md.splitlines() if r.startswith("|"))
    plain = agreement_markdown({"candidate": "rapl", "reference": "wall", "regression": {"method": "ols"},
                                "bland_altman": {"n": 5}, "ccc": {}})
    assert plain.startswith("rapl vs wall (difference") and "| ols slope (candidate on reference) |" in plain


def test_summary_text_prints_no_escapes():
    text = summary_text(_summary("evil\x1b[2J\x1b]8;;http://x\x07m\u202e"), "/tmp/s\x1b[1A")
    assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text
    assert "evilm (reference)" in text and text.endswith("session: /tmp/s")
    assert "wall (reference)" in summary_text(_summary("wall"), "/tmp/s")


# --------------------------------------------------------------------------- CSV


@pytest.mark.parametrize("raw, cell", [
    ("=HYPERLINK(\"http://x\",\"y\")", "'=HYPERLINK(\"http://x\",\"y\")"),
    ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
    ("\t=1", "'\t=1"),
    ("\r=1", "'\r=1"),
    ("  =1", "'  =1"),
    ("-1.5", "-1.5"),
    ("+3e5", "+3e5"),
    ("rapl.package-0", "rapl.package-0"),
    ("wall", "wall"),
])
def test_csv_cell(raw, cell):
    assert csv_cell(raw) == cell


def test_csv_row_leaves_numbers():
    assert csv_row([-1.5, 3, None, True, "=x", "ok"]) == [-1.5, 3, None, True, "'=x", "ok"]


# --------------------------------------------------------------------------- plots


MATH = ["$x^2$", "$\\frac$", "b$\\frac{$", "$\\undefinedcommand$", "a\x1b[2J$"]


def _texts(ax) -> list:
    fig = ax.figure
    return [t for t in fig.findobj(lambda a: hasattr(a, "get_parse_math")) if t.get_text()]


def test_plots_draw_names_literally():
    t = np.linspace(0, 10, 50)
    traces = {n: (t, np.full_like(t, 10.0 + i)) for i, n in enumerate(MATH)}
    ax = plots.power_traces(traces, [("$\\frac$", 0, 5), ("$x^2$", 5, 10)], reference="$x^2$")
    literal = {x.get_text() for x in _texts(ax) if not x.get_parse_math()}
    assert {"$x^2$ (reference)", "$\\frac$", "b$\\frac{$", "$\\undefinedcommand$", "a$"} <= literal
    plots.png(ax.figure)  # renders: no mathtext error
    rw, cw = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.1, 2.1, 2.9, 4.2])
    for name in MATH:
        plots.figure_png(plots.scatter_fit, rw, cw, {"intercept": 0.1, "slope": 1.0}, name, name)
        plots.figure_png(plots.bland_altman_plot, rw, cw, {"bias": 0.1, "loa_low": -0.2, "loa_high": 0.3}, name)
    phases = [{"phase": n, "duration_s": 1.0, n: 3.0, "$y$": 2.0} for n in MATH]
    plots.figure_png(plots.phase_energy_plot, phases, [MATH[0], "$y$", MATH[1]], figsize=(6, 3))
    plots.figure_png(plots.pareto_plot, [(1.0, 0.5, "$\\frac"), (2.0, 0.7, "$x^2$")])
    ax = plots.new_axes((4, 3))
    plots.scatter_fit(rw, cw, None, "$\\frac$", "$x^2$", ax=ax)
    assert ax.get_xlabel() == "$x^2$ (W)" and not ax.xaxis.label.get_parse_math()


def _emitter(tmp_path: Path) -> Path:
    script = tmp_path / "emit.py"
    script.write_text("import time\nfrom workloads import events\n"
                      "with events.phase('$\\\\frac$'):\n    time.sleep(1.2)\n"
                      "with events.phase('load $x^2$ <script>|a|'):\n    time.sleep(1.2)\n")
    return script


def test_session_with_mathtext_names_reports(tmp_path):
    out = tmp_path / "s"
    # both meters are modelled: one is the reference only when named
    r = run_cli("run", "--meter", "cpu-model?name=$x^2$", "--meter", "cpu-model?name=b$\\frac$", "--baseline", "1",
                "--reference", "$x^2$", "--out", str(out), "--", sys.executable, str(_emitter(tmp_path)), timeout=120)
    assert r.returncode == 0, r.stderr
    assert (out / "report.html").exists(), r.stderr
    page = (out / "report.html").read_text()
    assert "$x^2$" in page and "b$\\frac$" in page and "load $x^2$ &lt;script&gt;|a|" in page
    assert "<script>" not in page
    md = (out / "summary.md").read_text()
    assert "| $x^2$ |" in md and "| b$\\\\frac$ |" in md and "<script>" not in md
    summary = json.loads((out / "summary.json").read_text())
    assert {p["phase"] for p in summary["phases"]} >= {"$\\frac$", "load $x^2$ <script>|a|"}
    r = run_cli("report", str(out))
    assert r.returncode == 0, r.stderr


def test_compare_and_campaign_pages_escape_names(tmp_path):
    from analysis.campaign_report import aggregate, render_campaign_html
    from analysis.compare_report import render_compare_html

    evil = ["<script>alert(1)</script>", "$\\frac$", "=cmd|x", "a\x1b[2Jb"]
    rows = [{"session": f"s{i}", "workload": w, "energy_j": 10.0 + i, "accuracy": 0.5 + i / 10}
            for i, w in enumerate(evil)]
    page = render_compare_html(rows)
    assert "<script>" not in page and "&lt;script&gt;" in page and "$\\frac$" in page
    summaries = [{"session": f"/x/{r['session']}", "workload": {"name": r["workload"], "energy_j": r["energy_j"],
                                                               "accuracy": r["accuracy"], "duration_s": 1.0},
                  "emissions": {"co2_g": 0.1}, "agreement": []} for r in rows]
    page = render_campaign_html(tmp_path / "<b>camp", aggregate(summaries))
    assert "<script>" not in page and "<b>camp" not in page and "&lt;script&gt;" in page
