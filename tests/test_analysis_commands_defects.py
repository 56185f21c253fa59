"""Defects found by trying the analysis commands as a new user and as an attacker:
characterize on recorded square sessions, fit/correct semantics and warnings, the
calibration-model loader, denormal data, import trace specs, CSV formula cells."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from calibrate.cli import main


def cli(*args: str) -> tuple[int, str, str]:
    """``calibrate ARGS`` in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in args])
    return rc, out.getvalue(), err.getvalue()


def one_line_error(rc: int, err: str) -> None:
    assert rc == 2, err
    lines = [x for x in err.splitlines() if x.strip() and "Warning" not in x and not x.startswith("  ")]
    assert len(lines) == 1 and lines[0].startswith("calibrate: error:"), err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def square(tmp_path_factory) -> Path:
    """A session recorded by `calibrate run --workload square` (sim wall meter + cpu-model)."""
    from tests.conftest import run_cli

    out = tmp_path_factory.mktemp("sq") / "s"
    cp = run_cli("run", "--meter", "sim:wattsup?signal=square:80,160@4", "--meter", "cpu-model",
                 "--workload", "square", "-p", "period_s=4", "--duration", "16", "--baseline", "3",
                 "--out", str(out), "-q", timeout=180)
    assert cp.returncode == 0, cp.stderr
    return out


# --------------------------------------------------------------------------- 1. characterize
def test_characterize_a_recorded_square_session(square: Path) -> None:
    rc, out, err = cli("characterize", square, "--json")
    assert rc == 0, err
    rows = {r["channel"]: r for r in json.loads(out)}
    cpu = rows["cpu-model"]
    assert "error" not in cpu, cpu
    assert cpu["n_edges"] >= 3
    assert cpu["update_period_s"] == pytest.approx(0.5, abs=0.1)
    # the wall simulator updates every second: 2 s between edges is too close, and the hint
    # names the half-period, not the period
    assert "half-period" in rows["wattsup"]["error"]


def test_edges_a_fraction_of_a_millisecond_apart_are_one_edge() -> None:
    from analysis.characterize import characterize, merge_edges

    assert merge_edges(np.array([2.0, 1.0, 1.0003, 3.0, 2.0001])).tolist() == pytest.approx([1.00015, 2.00005, 3.0])
    t = np.arange(0.0, 40.0, 0.1)
    p = np.where((t % 8.0) < 4.0, 50.0, 150.0) + np.random.default_rng(1).normal(0, 0.5, t.size)
    edges = np.array([e + d for e in np.arange(4.0, 40.0, 4.0) for d in (0.0, 0.0003)])  # end + next start
    c = characterize(t, p, edges_s=edges)
    assert c.n_edges >= 8


# --------------------------------------------------------------------------- 5. denormals
@pytest.mark.parametrize("scale", [1e-320, 1e-160, 1e-140])
def test_denormal_or_tiny_values_do_not_crash_agree(tmp_path: Path, scale: float) -> None:
    rng = np.random.default_rng(3)
    ref = rng.uniform(1, 5, 20) * scale
    cand = ref * 1.1 + rng.uniform(0, 1, 20) * scale
    f = tmp_path / "d.csv"
    f.write_text("ref,cand\n" + "".join(f"{float(a)!r},{float(b)!r}\n" for a, b in zip(ref, cand)))
    for method in ("ols", "deming", "passing-bablok"):
        rc, out, err = cli("agree", f, "--reference", "ref", "--candidate", "cand", "--method", method, "--json")
        if rc == 2:
            one_line_error(rc, err)
            assert "spread" in err or "undefined" in err
        else:
            assert rc == 0, err
            json.loads(out)


def test_lin_ccc_of_tiny_spreads_is_not_a_zero_division() -> None:
    from analysis.agreement import agreement, lin_ccc

    x = np.array([1.0, 2.0, 3.0, 4.0, 5.5]) * 1e-140
    y = np.array([1.1, 2.3, 2.9, 4.2, 5.0]) * 1e-134
    c = lin_ccc(x, y)
    assert math.isfinite(c["value"])
    with pytest.raises(ValueError, match="spread"):
        agreement(np.array([1.0, 2.0, 3.0]) * 1e-320, np.array([1.0, 2.5, 3.0]) * 1e-320)


def test_ratio_bland_altman_out_of_range_is_unavailable_not_overflow() -> None:
    from analysis.agreement import agreement

    ref = np.array([1.0, 2.0, 3.0, 4.0]) * 1e-153
    cand = np.array([1.0, 3.0, 2.0, 5.0]) * 1e153  # log ratios ~705: exp() overflows
    res = agreement(ref, cand)
    assert res["bland_altman"]["ratio"] is None
