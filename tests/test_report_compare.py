"""`calibrate compare`'s terminal table and the campaign's reasons for leaving a run out."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

from tests import report_sessions
from tests.report_sessions import LONG

recorded, imported = report_sessions.recorded, report_sessions.imported  # the shared session fixtures


def _compare(sessions: list[Path], capsys) -> tuple[str, str]:  # noqa: ANN001
    from calibrate.analysis_cli import cmd_compare

    args = argparse.Namespace(sessions=[str(s) for s in sessions], reference=None, location=None, refresh=False,
                              output=None, json=False, html=None)
    assert cmd_compare(args) == 0
    cap = capsys.readouterr()
    return cap.out, cap.err


def test_compare_prints_aligned_tables_and_warns_on_different_references(recorded: Path, imported: Path,
                                                                         capsys) -> None:  # noqa: ANN001
    out, err = _compare([recorded, imported], capsys)
    for bad in ("NaN", "None", "nan", "dtype", "Unnamed"):
        assert bad not in out, bad
    sessions, cands = out.strip().split("\n\n")
    lines = sessions.splitlines()
    assert lines[0].split()[:3] == ["session", "status", "workload"] and set(lines[1]) <= {"-", " "}
    assert len(lines) == 4 and lines[2].startswith("rec ") and lines[3].startswith("imp ")
    col = lines[0].index("energy (J)") + len("energy (J)")  # numbers right-aligned under their header
    e_rec = json.loads((recorded / "summary.json").read_text())["workload"]["energy_j"]
    assert lines[2][:col].endswith(f"{e_rec:,.1f}")
    assert "\u2013" in lines[3]  # a value the imported session lacks: an en dash
    clines = cands.splitlines()
    assert clines[0].split()[:2] == ["session", "candidate"] and len(clines) == 2 + 3
    assert any(LONG[:30] in ln for ln in clines)
    assert "different references" in err and "wattsup" in err and "wall" in err
    out, err = _compare([recorded, recorded], capsys)
    assert "different references" not in err


def test_compare_html_fits_and_links_reports(recorded: Path, imported: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    page = tmp_path / "sub" / "c.html"
    page.parent.mkdir()
    from calibrate.analysis_cli import cmd_compare

    args = argparse.Namespace(sessions=[str(recorded), str(imported)], reference=None, location=None, refresh=False,
                              output=None, json=True, html=str(page))
    assert cmd_compare(args) == 0
    rows = json.loads(capsys.readouterr().out)  # --json: the data as before, the report line on stderr
    assert [r["session"] for r in rows] == ["rec", "imp"]
    text = page.read_text()
    assert 'class="alarm"' in text and "None" not in text and "NaN" not in text
    assert "../" in text and "rec/report.html" in text


def test_campaign_names_why_a_run_was_left_out() -> None:
    from calibrate.campaign import failure_reason

    r = SimpleNamespace(failure=None, status="workload_failed", run=SimpleNamespace(returncode=3), report_error=None)
    assert failure_reason(r) == "the workload failed (exit 3)"
    r = SimpleNamespace(failure="disk full: No space left", status="failed", run=None, report_error=None)
    assert failure_reason(r) == "recording failed: disk full: No space left"
    r = SimpleNamespace(failure=None, status="complete", run=None, report_error=ValueError("no reference\nmore"))
    assert failure_reason(r) == "no report: no reference"
