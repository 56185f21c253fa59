"""The agreement() entry point (DESIGN contract), CCC, Pearson r and MAPE."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from analysis.agreement import agreement, agreement_table, lin_ccc, mape_pct, pearson_r
from tests.conftest import load_published  # noqa: E402

load = load_published


def _walk_types(obj, path="") -> None:
    """Every number is a plain Python int/float (finite) or None."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert isinstance(k, str)
            _walk_types(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _walk_types(v, f"{path}[{i}]")
    elif isinstance(obj, float):
        assert type(obj) is float and math.isfinite(obj), path
    else:
        assert obj is None or type(obj) in (int, bool, str), (path, type(obj))


@pytest.fixture()
def pairs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    ref = rng.uniform(50, 250, 40)  # W
    cand = 0.8 * ref - 12.0 + rng.normal(0, 3, ref.size)
    return ref, cand


@pytest.mark.parametrize("method", ["ols", "deming", "passing-bablok"])
def test_contract_keys_and_json(pairs, method: str) -> None:
    ref, cand = pairs
    res = agreement(ref, cand, method=method)
    ba, reg, ccc = res["bland_altman"], res["regression"], res["ccc"]
    for key in ("n", "bias", "sd", "loa_low", "loa_high", "bias_ci", "loa_low_ci", "loa_high_ci"):
        assert key in ba
    for key in ("method", "slope", "intercept", "slope_ci", "intercept_ci"):
        assert key in reg
    assert set(ccc) >= {"value", "ci"}
    assert {"pearson_r", "mape_pct", "n"} <= set(res)
    assert reg["method"] == method
    assert len(ba["bias_ci"]) == 2 and len(reg["slope_ci"]) == 2 and len(ccc["ci"]) == 2
    _walk_types(res)
    json.dumps(res, allow_nan=False)
    # values
    d = cand - ref
    assert ba["bias"] == pytest.approx(d.mean())
    assert ba["sd"] == pytest.approx(d.std(ddof=1))
    assert ba["loa_low"] == pytest.approx(d.mean() - 1.96 * d.std(ddof=1))
    assert reg["slope"] == pytest.approx(0.8, abs=0.03)
    assert res["n"] == 40 and ba["n"] == 40
    assert res["mape_pct"] == pytest.approx(100 * np.mean(np.abs(d) / ref))
    assert ba["bias_ci_method"] and ba["loa_ci_method"] == "carkeet-2015"
    assert reg["ci_method"]


def test_passing_bablok_carries_cusum(pairs) -> None:
    res = agreement(*pairs, method="passing-bablok")
    cus = res["regression"]["cusum_linearity"]
    assert cus["linear"] is True and cus["statistic"] < cus["critical"]


def test_nan_pairs_dropped(pairs) -> None:
    ref, cand = pairs
    ref, cand = ref.copy(), cand.copy()
    ref[3] = np.nan
    cand[7] = np.nan
    cand[9] = np.inf
    res = agreement(ref, cand)
    assert res["n"] == 37 and res["dropped"] == 3
    assert res["bland_altman"]["n"] == 37


@pytest.mark.parametrize(
    "ref,cand,match",
    [
        ([1.0, 2.0], [1.0, 2.0], "at least 3"),
        ([1.0, 2.0, 3.0], [1.0, 2.0], "same length"),
        ([1.0, np.nan, 3.0, 4.0], [1.0, 2.0, np.nan, 4.0], "at least 3"),
        ([5.0, 5.0, 5.0, 5.0], [1.0, 2.0, 3.0, 4.0], "reference values are all equal"),
        ([1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 5.0], "candidate values are all equal"),
    ],
)
def test_value_errors_are_one_line(ref, cand, match: str) -> None:
    with pytest.raises(ValueError, match=match) as e:
        agreement(ref, cand)
    assert "\n" not in str(e.value)


def test_unknown_options_rejected(pairs) -> None:
    with pytest.raises(ValueError, match="unknown option"):
        agreement(*pairs, bogus=1)
    with pytest.raises(ValueError, match="unknown regression method"):
        agreement(*pairs, method="theil")


def test_deming_ratio_alias(pairs) -> None:
    a = agreement(*pairs, method="deming", deming_ratio=2.0)["regression"]
    b = agreement(*pairs, method="deming", error_ratio=2.0)["regression"]
    assert a["slope"] == b["slope"] and a["error_ratio"] == 2.0


def test_subjects_use_bland_altman_2007() -> None:
    """Cardiac output (Bland & Altman 2007): mean 0.6021667, limits -1.3394565 to 2.5437899."""
    c = load("cardiac_output_bland_altman_1999.csv")
    res = agreement(c["ic"], c["rv"], subjects=c["subject"])
    ba = res["bland_altman"]
    assert ba["bias"] == pytest.approx(0.6021667, abs=1e-7)
    assert (ba["loa_low"], ba["loa_high"]) == pytest.approx((-1.3394565, 2.5437899), abs=1e-7)
    assert ba["n_subjects"] == 12 and "Zou" in ba["loa_ci_method"]
    assert "Zou" in ba["ratio"]["loa_ci_method"]
    json.dumps(res, allow_nan=False)


def test_options_pass_through() -> None:
    """PEFR 1986 through the entry point: k=2 and the 1986 LoA CI method."""
    p = load("pefr_bland_altman_1986.csv")
    res = agreement(p["mini_1"], p["wright_1"], k=2.0, loa_ci="bland-altman-1986")
    ba = res["bland_altman"]
    assert ba["k"] == 2.0 and ba["loa_ci_method"] == "bland-altman-1986"
    assert ba["loa_low_ci"] == pytest.approx([-114.3, -45.1], abs=0.25)


def test_agreement_table(pairs) -> None:
    t = agreement_table(*pairs, method="deming")
    assert list(t.columns) == ["section", "statistic", "value", "ci_low", "ci_high", "method"]
    row = t.set_index("statistic").loc["slope"]
    res = agreement(*pairs, method="deming")
    assert row["value"] == pytest.approx(res["regression"]["slope"])
    assert row["ci_low"] == pytest.approx(res["regression"]["slope_ci"][0])
    assert "deming" in row["method"]
    assert {"bland_altman", "regression", "correlation", "error"} <= set(t["section"])


def test_ratio_variant_skipped_for_nonpositive() -> None:
    ref = np.array([-1.0, 2.0, 3.0, 4.0, 5.0])
    res = agreement(ref, ref * 1.1 + 0.1)
    assert res["bland_altman"]["ratio"] is None
    assert "> 0" in res["bland_altman"]["ratio_unavailable"]


# ----------------------------------------------------------------- correlations


def test_ccc_matches_definition_and_identities(pairs) -> None:
    ref, cand = pairs
    c = lin_ccc(ref, cand)
    sxy = np.mean((ref - ref.mean()) * (cand - cand.mean()))
    expected = 2 * sxy / (ref.var() + cand.var() + (ref.mean() - cand.mean()) ** 2)
    assert c["value"] == pytest.approx(expected, rel=1e-12)
    assert c["value"] == pytest.approx(c["r"] * c["c_b"], rel=1e-12)
    assert c["ci"][0] < c["value"] < c["ci"][1]
    same = lin_ccc(ref, ref + 1e-9 * np.arange(ref.size))
    assert same["value"] == pytest.approx(1.0, abs=1e-9)


def test_ccc_standard_error_matches_simulation() -> None:
    """Lin (1989) asymptotic SD of atanh(rho_c) against the spread over simulated samples."""
    rng = np.random.default_rng(1989)
    n, reps = 80, 3000
    cov = [[1.0, 0.85], [0.85, 1.2]]
    z_hat, se_pred = [], []
    for _ in range(reps):
        xy = rng.multivariate_normal([0.0, 0.4], cov, size=n)
        c = lin_ccc(xy[:, 0], xy[:, 1])
        z_hat.append(math.atanh(c["value"]))
        se_pred.append(c["se_z"])
    assert np.std(z_hat, ddof=1) == pytest.approx(np.mean(se_pred), rel=0.06)


def test_pearson_r_fisher_ci_matches_scipy(pairs) -> None:
    r = pearson_r(*pairs)
    ci = stats.pearsonr(*pairs).confidence_interval(0.95)
    assert r["ci"] == pytest.approx((ci.low, ci.high), rel=1e-10)


def test_mape_skips_zero_reference() -> None:
    m = mape_pct([0.0, 10.0, 20.0], [1.0, 11.0, 18.0])
    assert m["value"] == pytest.approx(10.0) and m["excluded_zero"] == 1
