"""Power, TOST and the decision rule, checked against direct computation (scipy's noncentral t and F,
statsmodels' power classes and ttost_paired, Monte Carlo where no closed form is standard)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sst
from statsmodels.stats.power import TTestIndPower, TTestPower
from statsmodels.stats.weightstats import ttost_paired

from tracking.reports import evidence, power
from tracking.reports.verdicts import (CONTRADICTED, EQUIVALENT, INCONCLUSIVE, NOT_MEASURED, NOT_SUPPORTED,
                                       RULED_OUT, SUPPORTED, ClaimSettings, Evidence, VerdictSettings, combine,
                                       decide)


def _nct_power(effect_size: float, n: int, alpha: float, two_sided: bool = True) -> float:
    """Power of the one-sample t test, straight from the noncentral t distribution."""
    df, nc = n - 1, effect_size * math.sqrt(n)
    if two_sided:
        c = sst.t.ppf(1 - alpha / 2, df)
        return float(sst.nct.sf(c, df, nc) + sst.nct.cdf(-c, df, nc))
    return float(sst.nct.sf(sst.t.ppf(1 - alpha, df), df, nc))


@pytest.mark.parametrize("n, sd", [(3, 0.07), (5, 0.2), (20, 1.3)])
def test_paired_mde_is_the_effect_with_80_percent_power(n, sd):
    mde = power.paired_t_mde(n, sd)
    assert mde == pytest.approx(sd * TTestPower().solve_power(nobs=n, alpha=0.05, power=0.8), rel=1e-9)
    assert _nct_power(mde / sd, n, 0.05) == pytest.approx(0.8, abs=1e-4)  # by definition, from scipy directly


@pytest.mark.parametrize("effect, sd, margin", [(0.2, 0.15, 0.0), (0.2, 0.15, 0.1), (18.0, 20.0, 5.0), (0.05, 0.3, 0)])
def test_seeds_needed_is_the_smallest_n_with_enough_power(effect, sd, margin):
    n = power.paired_t_units(effect, sd, margin=margin)
    es = (effect - margin) / sd
    pw = (lambda k: _nct_power(es, k, 0.025, two_sided=False)) if margin else (lambda k: _nct_power(es, k, 0.05))
    assert pw(n) >= 0.8 > pw(n - 1) if n > 2 else pw(n) >= 0.8
    ref = TTestPower().solve_power(effect_size=es, alpha=0.025 if margin else 0.05, power=0.8,
                                   alternative="larger" if margin else "two-sided")
    assert n == math.ceil(ref - 1e-9)


def test_seeds_needed_undefined_without_an_effect_beyond_the_margin():
    assert power.paired_t_units(0.1, 0.2, margin=0.1) is None and power.paired_t_units(0.2, 0.0) is None


def test_sd_ratio_power_matches_scipy_f_and_a_simulation():
    # the number: at n = 3 the F interval sees the paper's 0.67 ratio with ~5 % power
    assert power.sd_ratio_power(0.006 / 0.009, 3, 3) == pytest.approx(0.0545, abs=0.002)
    rng = np.random.default_rng(0)
    rho, n = 0.4, 8
    a = rng.standard_normal((20000, n)) * rho
    b = rng.standard_normal((20000, n))
    f_obs = a.var(axis=1, ddof=1) / b.var(axis=1, ddof=1)
    upper = np.sqrt(f_obs / sst.f.ppf(0.025, n - 1, n - 1))  # the 95 % F interval's upper end of σ_a/σ_b
    assert (upper < 1).mean() == pytest.approx(power.sd_ratio_power(rho, n, n), abs=0.01)
    mde = power.sd_ratio_mde(n, n)
    assert power.sd_ratio_power(mde, n, n) == pytest.approx(0.8, abs=1e-9)
    k = power.sd_ratio_units(0.667)
    assert power.sd_ratio_power(0.667, k, k) >= 0.8 > power.sd_ratio_power(0.667, k - 1, k - 1)


def test_welch_power_against_statsmodels():
    mde = power.welch_mde(4, 6, 0.1)
    assert mde == pytest.approx(0.1 * TTestIndPower().solve_power(nobs1=4, ratio=1.5, alpha=0.05, power=0.8))
    k = power.welch_units(0.05, 0.1)
    p = TTestIndPower().power(effect_size=0.5, nobs1=k, ratio=1.0, alpha=0.05)
    assert p >= 0.8 > TTestIndPower().power(effect_size=0.5, nobs1=k - 1, ratio=1.0, alpha=0.05)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_wilcoxon_floor_is_scipys_smallest_exact_p(n):
    d = np.arange(1, n + 1, dtype=float)  # all of one sign: the most extreme configuration
    assert power.wilcoxon_floor(n) == pytest.approx(sst.wilcoxon(d).pvalue)
    assert min(sst.wilcoxon(np.array(s) * d).pvalue for s in itertools.product((1, -1), repeat=n)) == pytest.approx(
        power.wilcoxon_floor(n))


def test_paired_evidence_tost_and_ruled_out_match_statsmodels_and_scipy():
    x = np.array([0.12, 0.05, 0.09, 0.03, 0.11, 0.07])
    res = evidence.paired(x, direction=+1, delta=0.1, paper=0.2, min_n=5)
    assert res.p == pytest.approx(sst.ttest_1samp(x, 0).pvalue)
    assert res.evidence.p_tost == pytest.approx(ttost_paired(x, np.zeros(6), -0.1, 0.1)[0])
    assert res.evidence.p_ruled == pytest.approx(sst.ttest_1samp(x, 0.2, alternative="less").pvalue)
    lo, hi = sst.t.interval(0.95, 5, loc=x.mean(), scale=sst.sem(x))
    assert res.ci == pytest.approx((lo, hi)) and res.guards == []
    lo90, hi90 = sst.t.interval(0.90, 5, loc=x.mean(), scale=sst.sem(x))
    assert res.evidence.ci_tost == pytest.approx((lo90, hi90))
    # TOST rejects at α iff the 90 % interval lies within ±δ (Schuirmann)
    assert (res.evidence.p_tost < 0.05) == (-0.1 < lo90 and hi90 < 0.1)
    # the claim-oriented evidence of a "lower is better" claim is the mirror image
    neg = evidence.paired(-x, direction=-1, delta=0.1, paper=0.2, min_n=5)
    assert neg.evidence.ci == pytest.approx(res.evidence.ci) and neg.ci == pytest.approx((-hi, -lo))


def test_paired_guards_min_n_and_degenerate_spread():
    res = evidence.paired([0.01, 0.01, 0.01], direction=+1, delta=0.1, paper=0.2, min_n=5, quantum=0.01,
                          planning_sd=0.2)
    assert len(res.guards) == 2 and "n = 3 seeds < the pre-registered minimum 5" in res.guards[0]
    assert "zero spread" in res.guards[1] and not res.evidence.defined
    assert res.power.sd_source.startswith("planning") and res.power.mde == pytest.approx(power.paired_t_mde(3, 0.2))
    below = evidence.paired([0.0, 0.01, 0.0, 0.0, 0.0, 0.0], direction=+1, delta=0.1, paper=0.2, min_n=5,
                            quantum=0.01)
    assert "below one step of the metric" in below.guards[0]


def _ev(lo, hi, lo90, hi90):
    return Evidence((lo + hi) / 2, (lo, hi), (lo90, hi90), 6, 0.01, 0.01, 0.01)


def _decide(e, **kw):
    return decide(e, 0.1, 0.2, show=lambda a, b: f"[{a:.2f}, {b:.2f}]", point=lambda x: f"{x:+.2f}", **kw)


@pytest.mark.parametrize("ci, expected", [
    ((0.15, 0.4, 0.18, 0.37), SUPPORTED),          # clears δ, not merely 0
    ((0.02, 0.4, 0.05, 0.35), INCONCLUSIVE),       # above 0 but not above δ, and the paper's 0.2 is inside
    ((-0.5, -0.15, -0.45, -0.2), CONTRADICTED),
    ((-0.06, 0.08, -0.05, 0.07), EQUIVALENT),
    ((0.0, 0.18, 0.03, 0.15), RULED_OUT),          # not within ±δ, but short of the paper's 0.2
    ((-0.3, 0.5, -0.2, 0.4), INCONCLUSIVE),
])
def test_decide_every_verdict(ci, expected):
    assert _decide(_ev(*ci)).verdict == expected


def test_decide_guards_and_failure_blocks_say_what_the_interval_alone_says():
    sup = _ev(0.15, 0.4, 0.18, 0.37)
    d = _decide(sup, guards=["n = 3 seeds < the pre-registered minimum 5"])
    assert d.verdict == INCONCLUSIVE and d.interval_alone == SUPPORTED and "the interval alone: supported" in d.reason
    d = _decide(sup, blocks_support="AMGT diverged on 1 seed")
    assert d.verdict == INCONCLUSIVE and "AMGT diverged" in d.reason
    assert _decide(_ev(-0.5, -0.15, -0.45, -0.2), blocks_contradiction="x").verdict == INCONCLUSIVE
    assert _decide(Evidence(0.1, (math.nan,) * 2, (math.nan,) * 2, 1)).verdict == INCONCLUSIVE


def test_combine_parts():
    assert combine({"a": SUPPORTED, "b": SUPPORTED}) == SUPPORTED
    assert combine({"a": SUPPORTED, "b": NOT_MEASURED}) == INCONCLUSIVE  # a part is missing
    assert combine({"a": INCONCLUSIVE, "b": CONTRADICTED}) == CONTRADICTED
    assert combine({"a": EQUIVALENT, "b": INCONCLUSIVE}) == RULED_OUT
    assert combine({"a": EQUIVALENT, "b": EQUIVALENT}) == EQUIVALENT
    assert combine({"a": NOT_MEASURED, "b": NOT_MEASURED}) == NOT_MEASURED
    assert combine({"a": NOT_SUPPORTED, "b": INCONCLUSIVE}) == NOT_SUPPORTED


def test_settings_validate_and_override():
    s = VerdictSettings().with_claim("C1", sesoi=0.2, min_n=3)
    assert s.claim("C1").sesoi == 0.2 and s.claim("C1").min_n == 3 and s.claim("C2").sesoi == 0.1
    for bad, msg in (({"alpha": 0.7}, "alpha=0.7 not allowed"), ({"power": 1.0}, "power=1.0 not allowed"),
                     ({"overlap_rule": "drop"}, "overlap_rule='drop' not allowed; choose from exclude, flag"),
                     ({"claims": {"C99": ClaimSettings(0.1, None, 3, "x")}}, "claim settings for C99 not allowed")):
        with pytest.raises(ValueError, match=msg):
            VerdictSettings(**bad)
    with pytest.raises(ValueError, match="sesoi=-1 not allowed"):
        ClaimSettings(-1, None, 3, "x")
    with pytest.raises(ValueError, match="min_n=0 not allowed"):
        VerdictSettings().with_claim("C1", min_n=0)
