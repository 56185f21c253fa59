"""The report as a person sees it: rendered by headless Chromium, figures present, strings escaped."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_analysis import synthesise  # noqa: E402

from analysis.report import write_report  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def session(tmp_path) -> Path:
    folder = tmp_path / "s"
    synthesise(folder, hours=0.05, rate_hz=2.0)
    man = json.loads((folder / "session.json").read_text())
    man["workload"] = {"name": "<script>alert(1)</script>", "parameters": {"note": "</table><b>x"}}
    (folder / "session.json").write_text(json.dumps(man))
    write_report(folder)
    return folder


def test_user_strings_are_escaped(session: Path) -> None:
    page = (session / "report.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "</table><b>x" not in page


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/test installs it where it can)")
def test_report_renders_with_its_figures_in_a_real_browser(session: Path, tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    shot = tmp_path / "report.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars", "--window-size=1200,3000",
           f"--screenshot={shot}", (session / "report.html").as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert shot.exists(), "chromium wrote no screenshot"
    img = mpimg.imread(shot)[..., :3]
    assert img.shape[0] == 3000 and img.shape[1] == 1200
    px = (img * 255).astype(int).reshape(-1, 3)

    def share(rgb: tuple[int, int, int], tol: int = 20) -> float:
        return float(np.mean(np.all(np.abs(px - np.array(rgb)) <= tol, axis=1)))

    # matplotlib's first two colours (traces, scatter, bars) must be on screen: the figures decoded
    assert share((31, 119, 180)) > 0.001
    assert share((255, 127, 14)) > 0.0001
    assert share((214, 39, 40)) > 0.0005  # the reference trace and the fitted lines
    # and the page is not blank: a good part of it is text, tables and axes
    assert float(np.mean(px.sum(axis=1) < 600)) > 0.01
