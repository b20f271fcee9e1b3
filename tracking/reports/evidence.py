"""From measured values to the evidence a verdict rests on: the test's interval, its p-values (the same test
as the interval, TOST against ±δ, one-sided against the paper's effect), the guards, and its power.

Three tests, one per kind of claim:

- :func:`paired` — per-seed differences, paired t (``scipy.stats.t``, ``scipy.stats.ttest_1samp``), TOST with
  ``statsmodels.stats.weightstats.ttost_paired``; the exact Wilcoxon signed-rank p (``scipy.stats.wilcoxon``)
  is shown beside it, never decides;
- :func:`sd_ratio` — σ_a/σ_b across seeds, F test (``scipy.stats.f``), on the log scale so that TOST bounds
  are symmetric (ratio δ and 1/δ);
- :func:`log_ratio` — ratio of two independent groups' geometric means (epoch times), Welch t on log values
  (``scipy.stats.ttest_ind(equal_var=False)``).

Each returns a :class:`Result`: ``evidence`` (claim-oriented, for :func:`verdicts.decide`), ``guards``
(reasons that force "inconclusive"), ``power`` (:class:`power.Power`), and the natural-unit numbers.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.weightstats import ttost_paired

from . import power as pw
from .verdicts import Evidence

__all__ = ["Result", "paired", "sd_ratio", "log_ratio", "degenerate_spread", "NEAR_ZERO"]

#: A spread at or below this fraction of the values' scale counts as zero (continuous metrics).
NEAR_ZERO = 1e-9


@dataclass(frozen=True)
class Result:
    """evidence: claim-oriented (:class:`verdicts.Evidence`). estimate, ci: the natural-unit effect and its
    95 % interval (e.g. AMGT − Adam in points). n: units. sd: the spread of the units (natural units).
    p: two-sided p of the test behind the interval; p_wilcoxon: beside it (paired only). guards: reasons
    for "inconclusive". power: what the data could detect."""

    evidence: Evidence
    estimate: float
    ci: tuple[float, float]
    n: int
    sd: float
    p: float
    power: pw.Power
    guards: list[str] = field(default_factory=list)
    p_wilcoxon: float = math.nan
    test: str = ""


def degenerate_spread(sd: float, scale: float, quantum: float | None, what: str, differences: bool = False) -> str:
    """A guard text when ``sd`` is zero or near zero: below one step ``quantum`` of a quantised metric
    (accuracy moves in steps of one test example), or ≤ NEAR_ZERO × the values' scale. Empty otherwise.
    ``differences``: the values are paired differences (all exactly 0: the two sides gave identical results)."""
    if not math.isfinite(sd):
        return ""
    if sd == 0 and scale == 0 and differences:
        return (f"{what}: every unit gave exactly 0 (identical results on both sides: the same configuration "
                "and seeds?): no interval")
    if sd == 0:
        return (f"{what}: zero spread (every unit gave the same value"
                + (f", on a metric that moves in steps of {quantum:.3g}" if quantum else "") + "): no interval")
    if quantum and sd < quantum:
        return (f"{what}: spread {sd:.2g} below one step of the metric ({quantum:.3g}, one test example): the "
                "interval reflects the metric's resolution, not the seeds' variation")
    if sd <= NEAR_ZERO * max(abs(scale), 1e-300):
        return f"{what}: zero spread (every unit gave the same value): no interval says anything"
    return ""


def _min_n_guard(n: int, min_n: int, unit: str) -> str:
    return f"n = {n} {unit} < the pre-registered minimum {min_n}" if n < min_n else ""


def paired(d: Sequence[float], *, direction: int, delta: float, paper: float | None, min_n: int,
           alpha: float = 0.05, power: float = 0.8, quantum: float | None = None,
           planning_sd: float = math.nan, unit: str = "seeds", what: str = "the differences") -> Result:
    """Paired evidence from per-unit differences ``d`` (natural units, e.g. AMGT − Adam in points).

    direction: +1 when the paper claims d > 0, −1 when it claims d < 0. delta, paper: δ and the paper's
    effect as positive magnitudes in d's unit (paper None: δ stands in). quantum: the step of a quantised d
    (None: continuous). planning_sd: the spread to size power with when the observed one is degenerate
    (e.g. √(s_a² + s_b²), the unpaired bound). Non-finite d are dropped.
    """
    x = np.asarray([v for v in pd.to_numeric(pd.Series(list(d), dtype="object"), errors="coerce")
                    if np.isfinite(v)], float)
    n = int(x.size)
    mean = float(x.mean()) if n else math.nan
    sd = float(x.std(ddof=1)) if n >= 2 else math.nan
    if n >= 2 and sd <= NEAR_ZERO * max(float(np.abs(x).max()), 1.0):
        sd = 0.0  # floating-point noise of identical values
    guards = [g for g in (_min_n_guard(n, min_n, unit),
                          degenerate_spread(sd, mean, quantum, what, differences=True) if n >= 2 else "") if g]
    xc = direction * x  # claim-oriented
    target = delta if paper is None else paper
    nan2 = (math.nan, math.nan)
    ci = ci90 = nan2
    p = p_tost = p_ruled = p_w = math.nan
    if n >= 2 and sd > 0:
        se = sd / math.sqrt(n)
        mc = float(xc.mean())
        ci = tuple(float(v) for v in stats.t.interval(1 - alpha, n - 1, loc=mc, scale=se))
        ci90 = tuple(float(v) for v in stats.t.interval(1 - 2 * alpha, n - 1, loc=mc, scale=se))
        p = float(stats.ttest_1samp(xc, 0.0).pvalue)
        p_tost = float(ttost_paired(xc, np.zeros(n), -delta, delta)[0])
        p_ruled = float(stats.ttest_1samp(xc, target, alternative="less").pvalue)
    # zero spread: no interval (a t-interval of identical values is a point, and says nothing; guarded above)
    if n >= 1 and np.any(x != 0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p_w = float(stats.wilcoxon(x).pvalue)
    degenerate = n >= 2 and bool(degenerate_spread(sd, mean, quantum, what, differences=True))
    sd_used, source = (planning_sd, "planning (unpaired bound √(s_a² + s_b²); the paired spread is degenerate)") \
        if degenerate else (sd, "observed")
    pwr = pw.Power(n=n, min_n=min_n, test="paired t", sd=sd_used, sd_source=source,
                   mde=pw.paired_t_mde(n, sd_used, alpha, power) if n >= 2 else math.nan,
                   needed=pw.paired_t_units(target, sd_used, alpha, power),
                   needed_supported=pw.paired_t_units(target, sd_used, alpha, power, margin=delta),
                   p_floor=f"paired t none; Wilcoxon {pw.wilcoxon_floor(n):.3g} at n = {n}",
                   note="" if n >= 2 else "fewer than 2 units")
    ev = Evidence(float(xc.mean()) if n else math.nan, ci, ci90, n, p, p_tost, p_ruled)
    natural = tuple(sorted(direction * v for v in ci)) if all(map(math.isfinite, ci)) else nan2
    return Result(ev, mean, natural, n, sd, p, pwr, guards, p_w, "paired t")


def _finite(values) -> np.ndarray:
    a = np.asarray(pd.to_numeric(pd.Series(list(values), dtype="object"), errors="coerce"), dtype=float)
    return a[np.isfinite(a)]


def sd_ratio(a: Sequence[float], b: Sequence[float], *, delta_ratio: float, paper_ratio: float | None,
             min_n: int, alpha: float = 0.05, power: float = 0.8, quantum: float | None = None,
             unit: str = "seeds") -> Result:
    """σ_a/σ_b (ddof 1) with the F test; the paper claims σ_a < σ_b. Claim-oriented effect
    θ = −ln(σ_a/σ_b), δ = −ln(delta_ratio), paper −ln(paper_ratio) (ratios < 1). Intervals from
    ``scipy.stats.f`` (normal data); p: two-sided F test of equal variances."""
    x, y = _finite(a), _finite(b)
    n1, n2 = int(x.size), int(y.size)
    n = min(n1, n2)
    nan2 = (math.nan, math.nan)
    guards = [g for g in (_min_n_guard(n, min_n, unit),) if g]
    sx = float(x.std(ddof=1)) if n1 >= 2 else math.nan
    sy = float(y.std(ddof=1)) if n2 >= 2 else math.nan
    for s, who, v in ((sx, "σ_AMGT", x), (sy, "σ_Adam", y)):
        g = degenerate_spread(s, float(np.mean(v)) if v.size else 0.0, quantum, who) if v.size >= 2 else ""
        if g:
            guards.append(g)
    ci = ci90 = nan2
    p = p_tost = p_ruled = math.nan
    est = math.nan
    if n >= 2 and sx > 0 and sy > 0:
        d1, d2 = n1 - 1, n2 - 1
        f_obs = sx ** 2 / sy ** 2
        est = math.sqrt(f_obs)

        def theta_interval(conf):  # −ln of the σ-ratio interval
            lo = math.sqrt(f_obs / stats.f.ppf(1 - (1 - conf) / 2, d1, d2))
            hi = math.sqrt(f_obs / stats.f.ppf((1 - conf) / 2, d1, d2))
            return (-math.log(hi), -math.log(lo))

        ci, ci90 = theta_interval(1 - alpha), theta_interval(1 - 2 * alpha)
        p = float(min(1.0, 2 * min(stats.f.cdf(f_obs, d1, d2), stats.f.sf(f_obs, d1, d2))))
        # TOST on the ratio: H0 ratio ≥ 1/δ_r and H0 ratio ≤ δ_r; p = the larger one-sided p
        p_tost = float(max(stats.f.cdf(f_obs * delta_ratio ** 2, d1, d2),
                           stats.f.sf(f_obs / delta_ratio ** 2, d1, d2)))
        ruled = paper_ratio if paper_ratio is not None else delta_ratio
        p_ruled = float(stats.f.sf(f_obs / ruled ** 2, d1, d2))  # H0: ratio ≤ the paper's
    elif n >= 2:
        est = (sx / sy) if sy > 0 else math.nan
    mde = pw.sd_ratio_mde(n1, n2, alpha, power) if n >= 2 else math.nan
    pr = paper_ratio
    pwr = pw.Power(n=n, min_n=min_n, test="F test of σ ratio", sd=math.nan, sd_source="exact F power (normal data)",
                   mde=mde, needed=pw.sd_ratio_units(pr, alpha, power) if pr else None,
                   needed_supported=pw.sd_ratio_units(pr, alpha, power, bound=delta_ratio) if pr else None,
                   p_floor="F test none (continuous)", note="" if n >= 2 else "fewer than 2 seeds each")
    ev = Evidence(-math.log(est) if est and math.isfinite(est) and est > 0 else math.nan, ci, ci90, n, p,
                  p_tost, p_ruled)
    natural = (math.exp(-ci[1]), math.exp(-ci[0])) if all(map(math.isfinite, ci)) else nan2
    return Result(ev, est, natural, n, math.nan, p, pwr, guards, math.nan, "F test")


def log_ratio(a: Sequence[float], b: Sequence[float], *, min_n: int, alpha: float = 0.05,
              power: float = 0.8, bound: float, paper_ratio: float | None = None, unit: str = "runs") -> Result:
    """Geometric-mean ratio a/b of two independent groups (e.g. per-run median epoch times) with the Welch t
    interval on log values. Evidence is oriented for a bound claim "ratio ≤ bound": θ = ln(bound) − ln(ratio)
    (positive = within the bound), δ ≈ 0 is applied by the caller (:func:`verdicts.decide` with delta 0 is not
    used: C5 decides on the interval's ends against the bound). Power: ``TTestIndPower`` on log values."""
    x, y = _finite(a), _finite(b)
    x, y = np.log(x[x > 0]), np.log(y[y > 0])
    n1, n2 = int(x.size), int(y.size)
    n = min(n1, n2)
    guards = [g for g in (_min_n_guard(n, min_n, unit),) if g]
    nan2 = (math.nan, math.nan)
    ci = ci90 = nan2
    p = math.nan
    est = float(math.exp(x.mean() - y.mean())) if n1 and n2 else math.nan
    sp = math.nan
    if n1 >= 2 and n2 >= 2:
        va, vb = x.var(ddof=1) / n1, y.var(ddof=1) / n2
        sp = float(math.sqrt((x.var(ddof=1) + y.var(ddof=1)) / 2))
        if va + vb > 0:
            se = math.sqrt(va + vb)
            df = (va + vb) ** 2 / (va ** 2 / (n1 - 1) + vb ** 2 / (n2 - 1)) if va > 0 and vb > 0 else n1 + n2 - 2
            m = float(x.mean() - y.mean())
            ci = tuple(float(v) for v in stats.t.interval(1 - alpha, df, loc=m, scale=se))
            ci90 = tuple(float(v) for v in stats.t.interval(1 - 2 * alpha, df, loc=m, scale=se))
            p = float(stats.ttest_ind(x, y, equal_var=False).pvalue)
        else:
            guards.append(degenerate_spread(0.0, 1.0, None, "epoch times"))
    lb = math.log(bound)
    mde = pw.welch_mde(n1, n2, sp, alpha, power)
    gap = (lb - math.log(paper_ratio)) if paper_ratio else math.nan
    pwr = pw.Power(n=n, min_n=min_n, test="Welch t on log time", sd=sp, sd_source="observed (log time)",
                   mde=mde, needed=pw.welch_units(gap, sp, alpha, power) if paper_ratio else None,
                   p_floor="Welch t none (continuous)", note="" if n >= 2 else "fewer than 2 runs each")
    ev = Evidence(lb - math.log(est) if math.isfinite(est) and est > 0 else math.nan,
                  (lb - ci[1], lb - ci[0]) if all(map(math.isfinite, ci)) else nan2,
                  (lb - ci90[1], lb - ci90[0]) if all(map(math.isfinite, ci90)) else nan2, n, p)
    natural = (math.exp(ci[0]), math.exp(ci[1])) if all(map(math.isfinite, ci)) else nan2
    return Result(ev, est, natural, n, sp, p, pwr, [g for g in guards if g], math.nan, "Welch t on log time")
