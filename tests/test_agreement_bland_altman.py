"""Bland-Altman statistics checked against the published worked examples.

Each test recomputes the published figures from the published data and compares
within the rounding of the publication:
- Bland & Altman (1986) Lancet i:307-310 (PEFR, large vs mini Wright, first readings);
- Bland & Altman (1999) Stat Methods Med Res 8:135-160 (systolic BP J vs S, sec. 2 and
  2.2; plasma volume Nadler vs Hurley on the log scale, sec. 3.1);
- Giavarina (2015) Biochem Med 25:141-151 (Table 1 example);
- Bland & Altman (2007) J Biopharm Stat 17:571-582 (cardiac output RV vs IC, several
  pairs per subject, true value varies, sec. 3);
- Carkeet (2015) Optom Vis Sci 92:e71-e80, table of exact two-sided tolerance factors
  (as transcribed in pyCompare's tests/referenceCIs.csv).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from analysis.bland_altman import (
    bland_altman,
    bland_altman_ratio,
    bland_altman_repeated,
    carkeet_factor,
    loa_confidence_intervals,
    proportional_bias,
)
from tests.conftest import load_published  # noqa: E402

load = load_published


def test_pefr_bland_altman_1986() -> None:
    """1986: d = -2.1, s = 38.8, limits d +/- 2s = -79.7 to 75.5 l/min; SE(d) = 9.4,
    CI -22.0 to 17.8; SE(limit) = sqrt(3 s^2/n) = 16.3, CIs -114.3 to -45.1 and
    40.9 to 110.1 (t = 2.12). The paper works from d and s rounded to 0.1, hence the
    tolerances (0.15 on limits, 0.25 on their CIs)."""
    p = load("pefr_bland_altman_1986.csv")
    r = bland_altman(p["mini_1"], p["wright_1"], k=2.0, loa_ci="bland-altman-1986")
    assert r.n == 17
    assert r.bias == pytest.approx(-2.1, abs=0.05)
    assert r.sd == pytest.approx(38.8, abs=0.05)
    assert r.loa_low == pytest.approx(-79.7, abs=0.15)
    assert r.loa_high == pytest.approx(75.5, abs=0.15)
    assert r.extra["se_bias"] == pytest.approx(9.4, abs=0.05)
    assert r.bias_ci == pytest.approx((-22.0, 17.8), abs=0.1)
    se_loa = np.sqrt(3 * r.sd**2 / r.n)
    assert se_loa == pytest.approx(16.3, abs=0.05)
    assert r.loa_low_ci == pytest.approx((-114.3, -45.1), abs=0.25)
    assert r.loa_high_ci == pytest.approx((40.9, 110.1), abs=0.25)
    assert r.loa_ci_method == "bland-altman-1986"


def test_giavarina_2015() -> None:
    """Giavarina 2015 (difference A - B): mean -27.17, SD 34.81, limits -95.39 and 41.05,
    SE 6.35, CI -40.16 to -14.17, SE(limits) 11.01, CIs -117.90 to -72.88 and 18.54 to
    63.56 (the paper prints 65.36 for the last bound: transposed digits, since the
    interval must be symmetric about 41.05)."""
    g = load("giavarina_2015.csv")
    r = bland_altman(g["method_b"], g["method_a"], loa_ci="bland-altman-1986")
    tol = 0.006
    assert r.bias == pytest.approx(-27.17, abs=tol)
    assert r.sd == pytest.approx(34.81, abs=tol)
    assert (r.loa_low, r.loa_high) == pytest.approx((-95.39, 41.05), abs=tol)
    assert r.extra["se_bias"] == pytest.approx(6.35, abs=tol)
    assert r.bias_ci == pytest.approx((-40.16, -14.17), abs=tol)
    assert np.sqrt(3 * r.sd**2 / r.n) == pytest.approx(11.01, abs=tol)
    assert r.loa_low_ci == pytest.approx((-117.90, -72.88), abs=tol)
    assert r.loa_high_ci == pytest.approx((18.54, 63.56), abs=tol)
    assert r.loa_high - r.loa_high_ci[0] == pytest.approx(r.loa_high_ci[1] - r.loa_high)


def test_sbp_bland_altman_1999_sec2() -> None:
    """1999 sec. 2/2.2 (J minus S, first readings, n = 85): mean -16.29, SD 19.61,
    limits -54.7 and 22.1; CI of the bias -20.5 to -12.1; CIs of the limits
    -61.9 to -47.5 and 14.9 to 29.3 with SE = s sqrt(1/n + 1.96^2/(2(n-1))) (the paper
    rounds that SE to 3.6, hence 0.15). Without subjects 78 and 80: -43.6 to 15.0."""
    s = load("sbp_bland_altman_1999.csv")
    r = bland_altman(s["S1"], s["J1"], loa_ci="bland-altman-1999")
    assert r.n == 85
    assert r.bias == pytest.approx(-16.29, abs=0.005)
    assert r.sd == pytest.approx(19.61, abs=0.005)
    assert (r.loa_low, r.loa_high) == pytest.approx((-54.7, 22.1), abs=0.05)
    assert r.bias_ci == pytest.approx((-20.5, -12.1), abs=0.05)
    assert r.loa_low_ci == pytest.approx((-61.9, -47.5), abs=0.15)
    assert r.loa_high_ci == pytest.approx((14.9, 29.3), abs=0.15)
    keep = ~s["subject"].isin([78, 80])
    r2 = bland_altman(s.loc[keep, "S1"], s.loc[keep, "J1"])
    assert (r2.loa_low, r2.loa_high) == pytest.approx((-43.6, 15.0), abs=0.06)


def test_plasma_volume_log_method_1999() -> None:
    """1999 sec. 3.1 (log Nadler - log Hurley): mean 0.099, limits 0.056 to 0.141,
    CI of the lower limit 0.049 to 0.064; as ratios the limits are 1.06 to 1.15."""
    pv = load("plasma_volume_bland_altman_1999.csv")
    r = bland_altman_ratio(pv["hurley"], pv["nadler"], loa_ci="bland-altman-1999")
    assert r["log_bias"] == pytest.approx(0.099, abs=0.0005)
    assert (r["log_loa_low"], r["log_loa_high"]) == pytest.approx((0.056, 0.141), abs=0.0005)
    assert r["log_loa_low_ci"] == pytest.approx([0.049, 0.064], abs=0.0005)
    assert (r["ratio_loa_low"], r["ratio_loa_high"]) == pytest.approx((1.06, 1.15), abs=0.005)
    assert r["gmr"] == pytest.approx(np.exp(r["log_bias"]))
    with pytest.raises(ValueError, match="> 0"):
        bland_altman_ratio([1.0, 2.0, 0.0], [1.0, 2.0, 3.0])


def test_cardiac_output_bland_altman_2007() -> None:
    """2007 sec. 3 (RV minus IC, 12 subjects, 60 pairs): mean 0.6021667, SD of a
    difference 0.99062408, limits -1.3394565 to 2.5437899."""
    c = load("cardiac_output_bland_altman_1999.csv")
    r = bland_altman_repeated(c["ic"], c["rv"], c["subject"])
    assert r.n == 60 and r.extra["n_subjects"] == 12
    assert r.bias == pytest.approx(0.6021667, abs=5e-8)
    assert r.sd == pytest.approx(0.99062408, rel=1e-7)
    assert r.loa_low == pytest.approx(-1.3394565, abs=1e-7)  # published digits truncated
    assert r.loa_high == pytest.approx(2.5437899, abs=1e-7)
    assert r.loa_low_ci[0] < r.loa_low < r.loa_low_ci[1]
    assert r.loa_high_ci[0] < r.loa_high < r.loa_high_ci[1]
    assert "Zou" in r.loa_ci_method


# Carkeet 2015 exact two-sided tolerance factors: df, K(0.025), K(0.05), K(0.95), K(0.975)
# (the transcription labels the second column "0.5"; its values are the 0.05 factors)
CARKEET = [
    (1, 0.9744, 1.1237, 36.5192, 73.0772),
    (2, 1.1051, 1.2333, 9.7888, 13.9396),
    (5, 1.2825, 1.3847, 4.4222, 5.1983),
    (16, 1.4900, 1.5619, 2.8683, 3.0824),
    (29, 1.5808, 1.6393, 2.5549, 2.6854),
    (50, 1.6530, 1.7006, 2.3762, 2.4637),
    (74, 1.6982, 1.7390, 2.2862, 2.3534),
]


@pytest.mark.parametrize("row", CARKEET)
def test_carkeet_2015_factors(row: tuple[float, ...]) -> None:
    df = int(row[0])
    for gamma, expected in zip((0.025, 0.05, 0.95, 0.975), row[1:], strict=True):
        got = carkeet_factor(df + 1, gamma, 1.96)
        # table printed to 4 decimals; its small-df entries carry ~2e-5 relative
        # integration error (see the quadrature check below)
        assert got == pytest.approx(expected, abs=2e-4, rel=3e-5), (df, gamma)


def test_carkeet_factor_against_adaptive_quadrature() -> None:
    """Independent evaluation of the tolerance-factor integral (scipy quad + brentq)."""
    from scipy import integrate, optimize

    p = stats.norm.cdf(1.96) - stats.norm.cdf(-1.96)

    def confidence(kf: float, n: int) -> float:
        def f(z: float) -> float:
            r = optimize.brentq(lambda r: stats.norm.cdf(z + r) - stats.norm.cdf(z - r) - p, 0, 60)
            dens = 2 * np.sqrt(n) * stats.norm.pdf(np.sqrt(n) * z)
            return dens * stats.chi2.sf((n - 1) * r**2 / kf**2, n - 1)

        return integrate.quad(f, 0, 12 / np.sqrt(n), epsabs=1e-13, epsrel=1e-12, limit=200)[0]

    for n, gamma in ((3, 0.975), (17, 0.025)):
        kf = carkeet_factor(n, gamma, 1.96)
        assert confidence(kf, n) == pytest.approx(gamma, abs=1e-9)


def test_carkeet_interval_coverage_by_simulation() -> None:
    """K(0.975): mean +/- K*SD covers >= 95% of the population in 97.5% of samples."""
    rng = np.random.default_rng(2015)
    n, reps = 12, 20000
    d = rng.normal(0.0, 1.0, (reps, n))
    m, s = d.mean(axis=1), d.std(axis=1, ddof=1)
    kf = carkeet_factor(n, 0.975, 1.96)
    cover = stats.norm.cdf(m + kf * s) - stats.norm.cdf(m - kf * s)
    p = stats.norm.cdf(1.96) - stats.norm.cdf(-1.96)
    assert np.mean(cover >= p) == pytest.approx(0.975, abs=0.005)


def test_noncentral_t_limit_coverage_by_simulation() -> None:
    """Each limit's exact CI (non-central t) covers mu + 1.96 sigma in 95% of samples."""
    rng = np.random.default_rng(1)
    n, reps = 10, 20000
    d = rng.normal(5.0, 2.0, (reps, n))
    m, s = d.mean(axis=1), d.std(axis=1, ddof=1)
    (_, _), (hi_lo, hi_hi) = loa_confidence_intervals(0.0, 1.0, n, method="noncentral-t")
    true_hi = 5.0 + 1.96 * 2.0
    covered = (m + hi_lo * s <= true_hi) & (true_hi <= m + hi_hi * s)
    assert covered.mean() == pytest.approx(0.95, abs=0.006)


def test_loa_ci_methods_named_and_ordered() -> None:
    """For large n the approximate and exact per-limit CIs converge; the Carkeet
    (tolerance-factor) CIs are symmetric about the bias and bracket each limit."""
    low_1999, high_1999 = loa_confidence_intervals(0.0, 1.0, 2000, method="bland-altman-1999")
    low_nct, high_nct = loa_confidence_intervals(0.0, 1.0, 2000, method="noncentral-t")
    assert high_1999 == pytest.approx(high_nct, abs=2e-3)
    assert low_1999 == pytest.approx(low_nct, abs=2e-3)
    (c_llo, c_lhi), (c_lo, c_hi) = loa_confidence_intervals(0.5, 1.0, 20, method="carkeet-2015")
    assert c_lo < 0.5 + 1.96 < c_hi and c_llo < 0.5 - 1.96 < c_lhi
    assert (c_lo - 0.5, c_hi - 0.5) == pytest.approx((0.5 - c_lhi, 0.5 - c_llo))
    assert c_hi - 0.5 == pytest.approx(2.9445, abs=2e-4)  # Carkeet table, 19 df, 0.975
    with pytest.raises(ValueError, match="loa_ci"):
        bland_altman([1, 2, 3], [1, 2, 4], loa_ci="nonsense")


def test_repeated_mover_coverage_by_simulation() -> None:
    """MOVER CIs of the repeated-measures limits cover the true limits about 95% of the
    time (12 subjects, 3-6 pairs each, true value varying within subject)."""
    rng = np.random.default_rng(2007)
    m_i = np.array([3, 4, 5, 6, 3, 4, 5, 6, 3, 4, 5, 6])
    subj = np.repeat(np.arange(m_i.size), m_i)
    sb, sw, mu = 0.8, 0.5, 0.3
    true_hi = mu + 1.96 * np.sqrt(sb**2 + sw**2)
    hits, reps = 0, 400
    for _ in range(reps):
        d = mu + rng.normal(0, sb, m_i.size)[subj] + rng.normal(0, sw, subj.size)
        ref = rng.normal(5, 1, subj.size)
        r = bland_altman_repeated(ref, ref + d, subj)
        hits += r.loa_high_ci[0] <= true_hi <= r.loa_high_ci[1]
    assert 0.90 <= hits / reps <= 0.99


def test_sign_is_candidate_minus_reference() -> None:
    ref = np.array([10.0, 20.0, 30.0, 40.0])
    cand = ref + np.array([1.0, 2.0, 1.5, 2.5])
    r = bland_altman(ref, cand)
    assert r.bias == pytest.approx(1.75)
    assert r.loa_low < r.bias < r.loa_high
    assert r.to_dict()["bias_ci"][0] < r.bias


def test_proportional_bias() -> None:
    rng = np.random.default_rng(3)
    ref = np.linspace(10, 200, 60)
    prop = proportional_bias(ref, 1.10 * ref + rng.normal(0, 1, ref.size))
    flat = proportional_bias(ref, ref + 3.0 + rng.normal(0, 1, ref.size))
    assert prop["p_value"] < 1e-6 and prop["slope"] == pytest.approx(0.0952, abs=0.01)
    assert flat["p_value"] > 0.01 and abs(flat["slope"]) < 0.01


def test_repeated_input_errors() -> None:
    with pytest.raises(ValueError, match="same length"):
        bland_altman_repeated([1, 2, 3], [1, 2, 3], [1, 1])
    with pytest.raises(ValueError, match="one pair"):
        bland_altman_repeated([1, 2, 3], [1, 2, 4], [1, 2, 3])
