"""Method-comparison regression checked against published reference results.

Sources
- mcr test-case collection (R package mcr, inst/unitTests/TestCaseCollection,
  MC_TestCase_AnaIT_TD15.xml / _TD41.xml): OLS, Deming (jackknife CIs) reference
  values from Analyse-it, Passing-Bablok from Calanas; equivalence precision 1e-6
  (TD15) and 1e-5 (TD41) as in those files.
- mcr unit tests (runit.mcDeming.R, runit.mcPaBa.R): creatinine data set, Deming
  estimates and Calanas Passing-Bablok results.
- Jay et al. (2023) replication package: published OLS fits of wall power on tool power.
"""

from __future__ import annotations

import numpy as np
import pytest

from analysis.regression import (
    _pb_slopes,
    deming,
    ols,
    passing_bablok,
    pb_cusum_linearity,
)
from tests.conftest import load_published  # noqa: E402

load = load_published


# (intercept, intercept_lo, intercept_hi, slope, slope_lo, slope_hi)
REF = {
    ("td15", "ols"): (1.52907247609414, -3.23879503525852, 6.29693998744679,
                      0.955092812261344, 0.870115981048239, 1.04006964347445),
    ("td15", "deming1"): (-0.505729735057073, -3.06557290114323, 2.05411343102908,
                          0.998922574014433, 0.904225546852836, 1.09361960117603),
    ("td15", "deming121"): (-0.708594035342613, -3.2419770759952, 1.82478900530997,
                            1.00329228321811, 0.909809514645456, 1.09677505179076),
    ("td15", "paba"): (-0.639752984809869, -2.3330808182894, 0.840973102642057,
                       1.02058852149448, 0.95848878631593, 1.09232009780764),
    ("td41", "ols"): (0.789929488909156, -7.0905682492326, 8.67042722705091,
                      0.953322292873791, 0.818569943653376, 1.08807464209421),
    ("td41", "deming1"): (-5.04645256155241, -12.4604580034375, 2.36755288033263,
                          1.06738449814271, 0.8601602492072, 1.27460874707822),
    ("td41", "deming121"): (-5.62594848494648, -13.3819872218693, 2.13009025197638,
                            1.07870976478824, 0.86553760575191, 1.29188192382458),
    ("td41", "paba"): (-1.74861851923587, -8.32583620193478, 0.773029866408987,
                       0.996354386947289, 0.92273624446357, 1.12979173135459),
}  # fmt: skip
PREC = {"td15": 1e-6, "td41": 1e-5}


def _as_tuple(r):
    return (r.intercept, *r.intercept_ci, r.slope, *r.slope_ci)


def _fit(case: str, kind: str):
    d = load(f"mcr_analyseit_{case}.csv")
    x, y = d["x"].to_numpy(), d["y"].to_numpy()
    if kind == "ols":
        return ols(x, y)
    if kind == "deming1":
        return deming(x, y, error_ratio=1.0)
    if kind == "deming121":
        return deming(x, y, error_ratio=1.21)
    return passing_bablok(x, y, variant="mcr")


@pytest.mark.parametrize("case,kind", sorted(REF))
def test_mcr_testcase_collection(case: str, kind: str) -> None:
    """Analyse-it (OLS, Deming/jackknife) and Calanas (PaBa) references of the mcr collection."""
    got = _as_tuple(_fit(case, kind))
    np.testing.assert_allclose(got, REF[(case, kind)], rtol=PREC[case], atol=PREC[case])


def test_deming_names_ci_method_and_se() -> None:
    r = _fit("td15", "deming1")
    assert "jackknife" in r.ci_method
    assert r.extra["error_ratio"] == 1.0
    assert r.extra["se_slope"] > 0


def test_deming_creatinine_mcr_unit_test() -> None:
    """runit.mcDeming.R: b0=-0.05891341, b1=1.054539 on complete cases of `creatinine`."""
    c = load("creatinine_mcr.csv")
    r = deming(c["serum_crea"], c["plasma_crea"])  # NaN rows are dropped
    assert r.n == 108 and r.extra["dropped"] == 2
    assert r.intercept == pytest.approx(-0.05891341, abs=1e-7)
    assert r.slope == pytest.approx(1.054539, abs=1e-6)


def test_deming_error_ratio_limits() -> None:
    """lambda -> 0 is OLS of y on x; lambda -> inf is x on y (inverse)."""
    rng = np.random.default_rng(1)
    x = rng.normal(10, 2, 60)
    y = 1.3 * x + rng.normal(0, 1, 60)
    assert deming(x, y, error_ratio=1e-9).slope == pytest.approx(ols(x, y).slope, rel=1e-6)
    assert deming(x, y, error_ratio=1e9).slope == pytest.approx(1 / ols(y, x).slope, rel=1e-6)
    with pytest.raises(ValueError, match="error_ratio"):
        deming(x, y, error_ratio=0)


def test_passing_bablok_creatinine_calanas() -> None:
    """runit.mcPaBa.R: Calanas results on creatinine (checked there to 1e-14)."""
    c = load("creatinine_mcr.csv")
    r = passing_bablok(c["serum_crea"], c["plasma_crea"], variant="mcr")
    got = _as_tuple(r)
    exp = (-0.11717286443298, -0.20011494807756, -0.0200000000000013,
           1.08800890272179, 1.0, 1.17300462437155)  # fmt: skip
    np.testing.assert_allclose(got, exp, rtol=1e-10, atol=1e-12)


def test_passing_bablok_1983_rule_on_creatinine_ties() -> None:
    """The textbook rule drops the 20 slopes of exactly -1 (decimal data); mcr classifies
    them in floating point, which moves its median by half a position. Our pb1983 slope
    is an actual pairwise slope, and its CI equals the Calanas CI here."""
    c = load("creatinine_mcr.csv").dropna()
    x, y = c["serum_crea"].to_numpy(), c["plasma_crea"].to_numpy()
    r = passing_bablok(x, y)
    assert r.extra["slopes_excluded_minus_one"] == 20
    assert r.extra["pairs_identical"] == 1
    s, k, _, _ = _pb_slopes(x, y, True)
    assert r.slope == s[(s.size + 1) // 2 + k - 1]  # N odd: single order statistic
    assert r.slope == pytest.approx(99 / 91, rel=1e-12)
    assert r.slope_ci[0] == pytest.approx(1.0, abs=1e-12)
    assert r.slope_ci[1] == pytest.approx(1.17307692307692, rel=1e-9)


@pytest.mark.parametrize("case", ["td15", "td41"])
def test_passing_bablok_1983_matches_calanas_within_one_order_statistic(case: str) -> None:
    """pb1983 picks order statistics S_(M+K); Calanas/mcr interpolate neighbouring angles.
    Point estimates agree exactly; CI bounds differ by at most one position."""
    d = load(f"mcr_analyseit_{case}.csv")
    x, y = d["x"].to_numpy(), d["y"].to_numpy()
    r = passing_bablok(x, y)
    ref = REF[(case, "paba")]
    assert r.slope == pytest.approx(ref[3], rel=1e-12)
    assert r.intercept == pytest.approx(ref[0], rel=1e-12)
    s, k, _, _ = _pb_slopes(x, y, True)
    assert s[r.extra["M1"] + k - 1] == r.slope_ci[0]
    assert s[r.extra["M2"] + k - 1] == r.slope_ci[1]
    for ours, theirs in ((r.slope_ci[0], ref[4]), (r.slope_ci[1], ref[5])):
        i = int(np.searchsorted(s, ours))
        lo, hi = s[max(i - 1, 0)], s[min(i + 1, s.size - 1)]
        assert lo - 1e-12 * abs(lo) <= theirs <= hi + 1e-12 * abs(hi)  # 15 printed digits


def test_passing_bablok_roche_intranet01_symmetry() -> None:
    """Roche intranet test case (no published numbers in the collection): P&B is
    symmetric, fitting x on y gives the reciprocal slope and swapped CI; both variants
    agree on the estimate."""
    d = load("mcr_roche_paba_intranet01.csv")
    x, y = d["x"].to_numpy(), d["y"].to_numpy()
    a = passing_bablok(x, y)
    b = passing_bablok(y, x)
    assert a.slope * b.slope == pytest.approx(1.0, rel=1e-9)
    assert a.slope_ci[0] * b.slope_ci[1] == pytest.approx(1.0, rel=1e-12)
    assert a.slope_ci[1] * b.slope_ci[0] == pytest.approx(1.0, rel=1e-12)
    m = passing_bablok(x, y, variant="mcr")
    assert m.slope == pytest.approx(a.slope, rel=1e-9)
    assert a.slope_ci[0] < a.slope < a.slope_ci[1]
    assert a.intercept_ci[0] < a.intercept < a.intercept_ci[1]


def test_passing_bablok_negative_correlation_and_vertical_pairs() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 8.0])
    y = 20.0 - 2.0 * x + np.array([0.1, -0.2, 0.05, 0.0, 0.2, -0.1, 0.15, -0.05, 0.3])
    r = passing_bablok(x, y)
    assert r.extra["kendall_tau"] < 0
    assert r.slope == pytest.approx(-2.0, abs=0.15)
    assert r.slope_ci[0] <= r.slope <= r.slope_ci[1]


def test_cusum_linearity_detects_curvature() -> None:
    rng = np.random.default_rng(7)
    x = np.linspace(1, 100, 80)
    lin = pb_cusum_linearity(x, 2.0 + 1.1 * x + rng.normal(0, 1.0, x.size))
    curved = pb_cusum_linearity(x, 0.02 * (x - 50) ** 2 + x + rng.normal(0, 1.0, x.size))
    assert lin.linear and lin.statistic < lin.critical
    assert not curved.linear and curved.statistic > curved.critical
    assert lin.critical == pytest.approx(1.358, abs=1e-3)


def test_jay2023_published_ols_fits() -> None:
    """Jay et al. (2023) replication package: the published fits (wall = a + b*tool)
    and r are reproduced from the published points, per tool and benchmark."""
    pts = load("jay2023_published_points.csv")
    fits = load("jay2023_published_fits.csv")
    assert len(fits) == 20
    for f in fits.itertuples():
        sel = pts
        if f.tool != "all":
            sel = sel[sel.tool == f.tool]
        if f.benchmark != "all":
            sel = sel[sel.benchmark == f.benchmark]
        r = ols(sel["tool_w"], sel["wall_w"])
        assert r.slope == pytest.approx(f.slope, rel=1e-7), (f.tool, f.benchmark)
        assert r.intercept == pytest.approx(f.intercept, rel=1e-7), (f.tool, f.benchmark)
        assert r.extra["r"] == pytest.approx(f.r, rel=1e-7), (f.tool, f.benchmark)


def test_input_errors_are_one_line_value_errors() -> None:
    with pytest.raises(ValueError, match="same length") as e:
        ols([1, 2, 3], [1, 2])
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="at least 3"):
        deming([1, 2, np.nan], [1, 2, 3])
    with pytest.raises(ValueError, match="all equal"):
        passing_bablok([2, 2, 2, 2], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="variant"):
        passing_bablok([1, 2, 3], [1, 2, 3], variant="x")


def test_nan_pairs_dropped_and_counted() -> None:
    x = [1.0, 2.0, np.nan, 4.0, 5.0, 6.0]
    y = [1.1, 2.1, 3.0, np.inf, 5.2, 5.9]
    r = ols(x, y)
    assert r.n == 4 and r.extra["dropped"] == 2
    d = r.to_dict()
    assert isinstance(d["slope_ci"], list) and isinstance(d["slope"], float)


def test_cusum_hand_example() -> None:
    """Line y = x, six points (4 above, 2 below): scores +sqrt(2/4) and -sqrt(4/2), ordered
    by the projection D_i; max |cusum| = 1.4142, H = 1.4142 / sqrt(2 + 1) = 0.8165
    (definitions of Passing & Bablok 1983, as in R mcr's calcCUSUM)."""
    from analysis.regression import RegressionResult

    x = np.array([1, 2, 3, 4, 5, 6], dtype=float)
    y = np.array([1.5, 1.8, 3.2, 3.5, 5.4, 6.3])
    fit = RegressionResult("passing-bablok", 1.0, 0.0, (0.9, 1.1), (-1.0, 1.0), 6, "given")
    c = pb_cusum_linearity(x, y, fit)
    assert (c.n_above, c.n_below) == (4, 2)
    assert c.statistic == pytest.approx(np.sqrt(2.0) / np.sqrt(3.0), rel=1e-12)
    assert c.linear
