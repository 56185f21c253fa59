"""The session report as a paper's supplement: a header with no raw JSON or missing values,
the whole agreement table, caveats beside their entries, a glossary, the cpu-model's
assumptions, and figures (SVG, PDF) and window pairs (CSV) exported in its own folder."""

from __future__ import annotations

import csv
import html
import json
import re
from pathlib import Path

from analysis.figure_export import MARKER, slug
from analysis.numbers import fmt_number
from analysis.report import write_report
from analysis.session_format import check_path_component
from tests import report_sessions
from tests.report_sessions import LONG

recorded, imported = report_sessions.recorded, report_sessions.imported  # the shared session fixtures

BAD = ("None", "{}", "(, CPUs)", "calibrate None", "NaN", "nan W", "null")


def _page(folder: Path) -> str:
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", (folder / "report.html").read_text())


def _header(page: str) -> str:
    return page[page.index("<h1>"):page.index("<h2>Meters")]


def test_recorded_header_is_a_table_with_nothing_missing(recorded: Path) -> None:
    page = _page(recorded)
    head = _header(page)
    for bad in BAD:
        assert bad not in head, bad
    for bad in ("None", "NaN", "calibrate None", "(, CPUs)"):
        assert bad not in page, bad
    assert "benchbox (AMD EPYC, 2 CPUs)" in head and "calibrate 0.1.0" in head and "2026-01-02T03:04:05" in head
    # the workload parameters as a small table, escaped, never as JSON
    assert '"lr"' not in head and "<td>lr</td><td>0.001</td>" in head and "<td>amp</td><td>false</td>" in head
    assert "<td>none</td><td>&ndash;</td>" in head and "<td>empty</td><td>&ndash;</td>" in head
    assert "&lt;/table&gt;&lt;b&gt;x" in head and "</table><b>x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in head and "<script>" not in page
    assert "SIMULATED" in head  # the simulated reference said up front


def test_imported_header_names_its_files_not_a_host(imported: Path) -> None:
    page = _page(imported)
    head = _header(page)
    for bad in BAD:
        assert bad not in head, bad
    assert "None" not in page and "NaN" not in page
    assert "imported from" in head and str(imported.parent / "wall.csv") in head
    assert "host" not in head and "recorded with" not in head and "CPUs" not in head


def test_a_modelled_reference_is_said_prominently(imported: Path) -> None:
    from analysis.load import load_session
    from analysis.pipeline import analyse
    from analysis.report import render_html

    summary = json.loads((imported / "summary.json").read_text())
    data = load_session(imported)
    assert summary["reference_modelled"] is False
    assert 'class="alarm"' not in _page(imported)
    page = render_html(data, {**summary, "reference_modelled": True}, analyse(data))
    alarm = page[page.index('class="alarm"'):]
    assert alarm.index("MODELLED") < 200 and page.index('class="alarm"') < page.index("<h2>Meters")


def test_agreement_table_has_every_statistic_and_caveats_beside_it(recorded: Path) -> None:
    page = _page(recorded)
    summary = json.loads((recorded / "summary.json").read_text())
    start = page.index("<h2>Agreement")
    section = page[start:page.index("<h3>", start)]
    for head in ("Pearson r", "CCC", "MAPE (%)", "proportional bias", "ratio cand./ref. (GMR)", "LoA low (W)",
                 "bias (W) [95% CI]", "calibration (W)"):
        assert f"<th>{html.escape(head)}</th>" in section, head
    for a in summary["agreement"]:
        ba = a["bland_altman"]
        assert html.escape(fmt_number(a["pearson_r"], 3)) in section
        assert fmt_number(a["mape_pct"], 1) in section
        assert fmt_number(ba["proportional_bias"]["slope"], 3) + " W/W" in section
        assert fmt_number(ba["ratio"]["gmr"], 3) in section and fmt_number(ba["ratio"]["gmr_ci"][0], 3) in section
        assert html.escape(a["label"]) in section  # the calibration equation with the real channel names
        for w in a["warnings"]:
            assert f"<li><b>{html.escape(a['candidate'])}</b>: {html.escape(w)}</li>" in section
    assert any(a["warnings"] for a in summary["agreement"])


def test_glossary_assumptions_and_units(recorded: Path) -> None:
    page = _page(recorded)
    gl = page[page.index("<h2>Glossary"):]
    for term in ("limits of agreement", "CCC", "window", "dynamic energy", "energy from counter / power", "delay"):
        assert f"<dt>{term}" in gl, term
    meters = page[page.index("<h2>Meters"):page.index("<h2>Power traces")]
    assert "idle 8.5 W (assumed: 10% of max" in meters and "max 85.0 W (assumed: CPU" in meters
    assert "<b>wattsup</b> is SIMULATED" in meters
    heads = re.findall(r"<th>([^<]*)</th>", page)
    phase_heads = heads[heads.index("phase"):heads.index("phase") + 6]
    assert phase_heads == ["phase", "start (s)", "duration (s)", "cpu-model (J)", f"{LONG} (J)", "wattsup (J)"]
    phases = page[page.index("<h2>Energy per phase"):]
    rows = re.findall(r'<tr><td(?: class="(sub\d)")?>([^<]+)</td>', phases[:phases.index("</table>")])
    assert rows[:3] == [("", "baseline-before"), ("", "workload"), ("sub1", "epoch-1")]  # parent first, parts indented


def test_figures_and_pairs_exported_and_linked(recorded: Path) -> None:
    summary = json.loads((recorded / "summary.json").read_text())
    page = _page(recorded)
    figs = recorded / "figures"
    owned = json.loads((figs / MARKER).read_text())["files"]
    assert sorted(p.name for p in figs.iterdir() if p.name != MARKER) == sorted(owned)
    for name in ("power-traces", "phase-energy"):
        assert (figs / f"{name}.svg").read_bytes().lstrip().startswith(b"<?xml")
        assert (figs / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    for a in summary["agreement"]:
        key = slug(a["candidate"])
        check_path_component(f"bland-altman-{key}.pdf")
        for stem in ("scatter", "bland-altman", "residuals"):
            for ext in ("svg", "pdf"):
                assert (figs / f"{stem}-{key}.{ext}").is_file()
                assert f'href="figures/{stem}-{key}.{ext}"' in page
        rows = list(csv.reader((figs / f"pairs-{key}.csv").open()))
        assert rows[0] == ["window_start_s", "window_end_s", "reference_w", "candidate_w"]
        assert len(rows) - 1 == a["n_windows"]
        assert [float(x) for x in rows[1]] == [*a["windows_s"][0], a["pairs"]["reference_w"][0], a["pairs"]["candidate_w"][0]]
        assert f'href="figures/pairs-{key}.csv"' in page
    assert slug(LONG) != LONG and len(slug(LONG)) <= 47


def test_figures_folder_not_ours_is_left_alone(imported: Path, tmp_path: Path) -> None:
    import shutil

    s = tmp_path / "s"
    shutil.copytree(imported, s)
    shutil.rmtree(s / "figures")
    (s / "figures").mkdir()
    (s / "figures" / "power-traces.svg").write_text("mine")
    write_report(s, export_figures=True)
    assert (s / "figures" / "power-traces.svg").read_text() == "mine"
    assert sorted(p.name for p in (s / "figures").iterdir()) == ["power-traces.svg"]
    assert "was not made by calibrate" in _page(s) and 'href="figures/' not in _page(s)


def test_figure_folder_replaces_and_removes_only_its_own_files(tmp_path: Path) -> None:
    from analysis.figure_export import FigureFolder

    f = FigureFolder(tmp_path)
    assert f.usable and f.write("a.svg", b"1") == "figures/a.svg" and f.write("old.svg", "2")
    f.finish()
    (tmp_path / "figures" / "notes.txt").write_text("someone's")
    g = FigureFolder(tmp_path)
    assert g.write("a.svg", b"3") and g.write("notes.txt", "x") is None  # not the report's: never overwritten
    g.finish()
    assert (tmp_path / "figures" / "a.svg").read_bytes() == b"3" and not (tmp_path / "figures" / "old.svg").exists()
    assert (tmp_path / "figures" / "notes.txt").read_text() == "someone's"
    assert json.loads((tmp_path / "figures" / MARKER).read_text())["files"] == ["a.svg"]
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "figures").symlink_to(tmp_path / "figures")
    assert not FigureFolder(tmp_path / "x").usable


def test_figures_are_exported_only_on_request(imported: Path, tmp_path: Path) -> None:
    import shutil

    s = tmp_path / "s"
    shutil.copytree(imported, s)
    shutil.rmtree(s / "figures")
    write_report(s)  # the default: embedded figures only (export takes seconds), and how to get them
    assert not (s / "figures").exists() and "--figures</code>" in _page(s)
