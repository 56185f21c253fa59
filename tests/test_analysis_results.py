"""Typed results at the module boundaries: Agreement, the pipeline's Analysis, ReportOptions,
the one number formatter and the text summary."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.agreement import Agreement, agreement, agreement_table, compare
from analysis.load import load_session
from analysis.numbers import finite_or_none, fmt_number
from analysis.pipeline import analyse
from analysis.report import ReportOptions
from analysis.summary import summarize
from analysis.text_report import summary_text
from tests.test_analysis_pipeline import write_session


def test_agreement_is_typed_and_gives_the_contract_dict_and_a_tidy_frame() -> None:
    rng = np.random.default_rng(4)
    ref = rng.uniform(50, 250, 40)
    cand = 0.9 * ref + 5 + rng.normal(0, 2, 40)
    res = compare(ref, cand)
    assert isinstance(res, Agreement)
    d = res.to_dict()
    assert d == agreement(ref, cand)
    for key in ("n", "bias", "sd", "loa_low", "loa_high", "bias_ci", "loa_low_ci", "loa_high_ci"):
        assert key in d["bland_altman"]
    assert set(d["regression"]) >= {"method", "slope", "intercept", "slope_ci", "intercept_ci"}
    assert set(d["ccc"]) >= {"value", "ci"}
    frame = res.to_frame()
    pd.testing.assert_frame_equal(frame, agreement_table(ref, cand))
    assert list(frame.columns) == ["section", "statistic", "value", "ci_low", "ci_high", "method"]


def test_one_pipeline_result_feeds_the_summary(tmp_path) -> None:
    write_session(tmp_path / "s")
    data = load_session(tmp_path / "s")
    res = analyse(data)
    assert res.reference == "wall" and set(res.lags) == {"rapl.package-0", "gpu"}
    pairing = res.pairings["gpu"]
    assert pairing.windows_s.shape == (len(pairing.reference_w), 2)
    s = summarize(data, result=res)
    assert s["lags"] == {c: lag.to_dict() for c, lag in res.lags.items()}
    assert s["agreement"][0]["pairs"]["reference_w"] == pairing.reference_w.tolist()


def test_report_options_check_what_the_cli_checked() -> None:
    ReportOptions(window_s=10, intensity=0, pue=1.0).validate()
    ReportOptions(location="FR").validate()
    for bad, word in ((dict(window_s=0), "--window"), (dict(window_s=math.inf), "--window"),
                      (dict(intensity=-1), "--intensity"), (dict(pue=0.9), "--pue"),
                      (dict(pue=math.nan), "--pue"), (dict(location="NOWHERE"), "NOWHERE")):
        with pytest.raises(ValueError, match=word) as exc:
            ReportOptions(**bad).validate()
        assert "\n" not in str(exc.value)
    ReportOptions(location="NOWHERE", intensity=100).validate()  # an intensity overrides the location


def test_one_formatter() -> None:
    assert fmt_number(None) == "-" and fmt_number(math.nan, 2, " W") == "-"
    assert fmt_number(1234.567, 1, " J") == "1,234.6 J"
    assert fmt_number(1234.567, 3, grouping=False) == "1234.567"
    assert fmt_number(0.000123456, 4, style="g") == "0.0001235"
    assert fmt_number("text") == "text"
    assert finite_or_none(np.float64(2.5)) == 2.5 and finite_or_none(math.inf) is None


def test_summary_text_is_the_table_the_cli_prints() -> None:
    summary = {"reference": "wall", "meters": {
        "wall": {"source": "measured", "energy_j": 12345.6, "mean_power_w": 100.0, "samples": 10, "errors": {}},
        "rapl": {"source": "measured", "energy_j": None, "mean_power_w": None, "samples": 3,
                 "errors": {"timeout": 2}}},
        "agreement": [{"candidate": "rapl", "window_s": 10.0, "error": "too few windows",
                       "bland_altman": {"bias": None}}], "warnings": ["w1"]}
    text = summary_text(summary, "DIR")
    assert text.splitlines()[:4] == [
        "  channel           source        energy  mean power  samples  faults",
        "  ----------------  --------  ----------  ----------  -------  ------",
        "  wall (reference)  measured  12,345.6 J     100.0 W       10       0",
        "  rapl              measured           -           -        3       2"]
    assert "    rapl: not compared: too few windows (record longer, or pass a shorter --window)" in text
    assert text.endswith("  warning: w1\n\nsession: DIR")
