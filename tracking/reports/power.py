"""Power of the report's tests: minimum detectable effect (MDE), units needed, p-value floors.

Every empirical verdict states what its data could have detected (docs/reports.md, "Power"):

- paired t (C1–C3, C4b, C7–C10, C15): ``statsmodels.stats.power.TTestPower`` (noncentral t). The MDE is
  the smallest true mean difference the two-sided test at α detects with the stated power, from the spread
  the data showed: MDE = d·s with d = ``TTestPower().solve_power(nobs=n, alpha=α, power=π)``. "Seeds needed"
  is the smallest n at which the paper's effect P is detected (effect size P/s), and the smallest n at which
  it would be called *supported* (the 95 % interval above the smallest effect of interest δ: a one-sided test
  at α/2 of effect (P − δ)/s).
- ratio of two standard deviations (C4): the F test's exact power (``scipy.stats.f``): with true ratio ρ the
  interval's upper end falls below a bound b with probability F_cdf(b²·F_{α/2}(d1, d2)/ρ²; d1, d2).
- ratio of epoch times (C5): the two-sample t on log time (``statsmodels.stats.power.TTestIndPower``).
- p-value floors: the exact two-sided Wilcoxon signed-rank p cannot go below 2/2ⁿ (0.25 at n = 3); Holm over m
  comparisons multiplies that floor by m. The t and F tests have no floor (continuous).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from scipy import stats
from statsmodels.stats.power import TTestIndPower, TTestPower

__all__ = ["Power", "MAX_UNITS", "paired_t_mde", "paired_t_units", "sd_ratio_power", "sd_ratio_mde",
           "sd_ratio_units", "welch_mde", "welch_units", "wilcoxon_floor", "smallest_n"]

#: Units-needed searches stop here and report "> MAX_UNITS".
MAX_UNITS = 100_000


@dataclass(frozen=True)
class Power:
    """What one verdict's data could detect.

    n: units achieved (seeds, runs). min_n: the pre-registered minimum. sd: the spread used (claim units;
    NaN when none), sd_source: "observed", or "planning (…)" when the observed spread was degenerate.
    mde: minimum detectable effect at n (claim units; NaN when not computable). needed: units needed to
    detect the paper's effect; needed_supported: units needed for "supported" at the paper's effect (None:
    not applicable, e.g. no paper number). p_floor: the tests' p-value floors, in words. test: the test.
    """

    n: int
    min_n: int
    test: str
    sd: float = math.nan
    sd_source: str = ""
    mde: float = math.nan
    needed: int | None = None
    needed_supported: int | None = None
    p_floor: str = ""
    note: str = ""

    def text(self, fmt: Callable[[float], str], unit: str = "seeds", effect: str = "") -> str:
        """One line: "n = 3 seeds (minimum 5); MDE … ; seeds needed for ``effect`` …; p floor …" (``effect`` says
        whose effect it is: "the paper's +0.20 points", "the smallest effect of interest +0.10 points")."""
        parts = [f"n = {self.n} {unit} (pre-registered minimum {self.min_n})"]
        if math.isfinite(self.mde):
            src = f"{self.sd_source} sd {fmt(self.sd)}" if math.isfinite(self.sd) else self.sd_source
            parts.append(f"MDE {fmt(self.mde)} ({self.test}, α = 0.05 two-sided, power 0.8, {src})")
        elif self.test:
            parts.append(f"MDE not computable ({self.note or 'no spread'})")
        if effect:
            need = _units(self.needed)
            sup = "" if self.needed_supported is None else f", {_units(self.needed_supported)} for 'supported'"
            parts.append(f"{unit} needed for {effect}: {need} to detect{sup}")
        if self.p_floor:
            parts.append(f"p floor: {self.p_floor}")
        if self.note and math.isfinite(self.mde):
            parts.append(self.note)
        return "; ".join(parts)


def _units(n: int | None) -> str:
    if n is None:
        return "n/a"
    return f"> {MAX_UNITS:,}" if n > MAX_UNITS else str(n)


def smallest_n(power_at: Callable[[int], float], target: float, n_min: int = 2) -> int:
    """The smallest integer n ≥ ``n_min`` with ``power_at(n) ≥ target`` (power increases with n):
    doubling, then bisection. Returns MAX_UNITS + 1 when even MAX_UNITS is not enough."""
    if power_at(n_min) >= target:
        return n_min
    lo, hi = n_min, n_min * 2
    while power_at(hi) < target:
        lo, hi = hi, hi * 2
        if hi > MAX_UNITS:
            if power_at(MAX_UNITS) < target:
                return MAX_UNITS + 1
            hi = MAX_UNITS
            break
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if power_at(mid) >= target:
            hi = mid
        else:
            lo = mid
    return hi


def paired_t_mde(n: int, sd: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable mean difference of a two-sided paired (one-sample) t test with n pairs and
    difference sd ``sd``: d·sd, d = ``TTestPower().solve_power(nobs=n, alpha, power)``. NaN for n < 2 or
    sd not > 0."""
    if n < 2 or not (math.isfinite(sd) and sd > 0):
        return math.nan
    d = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power, alternative="two-sided")
    return float(d) * sd


def paired_t_units(effect: float, sd: float, alpha: float = 0.05, power: float = 0.8, *,
                   margin: float = 0.0) -> int | None:
    """Pairs needed so that a true mean difference ``effect`` (> margin ≥ 0) is detected with ``power``:
    margin 0: the two-sided test at α (effect size effect/sd); margin δ > 0: the 95 % interval lies above δ,
    i.e. the one-sided test at α/2 of effect size (effect − δ)/sd. None when effect ≤ margin or sd not > 0."""
    if not (math.isfinite(sd) and sd > 0 and math.isfinite(effect)) or effect <= margin:
        return None
    es = (effect - margin) / sd
    tp = TTestPower()
    if margin > 0:
        return smallest_n(lambda n: tp.power(effect_size=es, nobs=n, alpha=alpha / 2, alternative="larger"), power)
    return smallest_n(lambda n: tp.power(effect_size=es, nobs=n, alpha=alpha, alternative="two-sided"), power)


def sd_ratio_power(rho: float, n1: int, n2: int, alpha: float = 0.05, bound: float = 1.0) -> float:
    """Probability that the (1 − α) F-interval of σ1/σ2 (``stats.sd_ratio_interval``) lies wholly below
    ``bound`` when the true ratio is ``rho``, with n1, n2 values: F_cdf(bound²·F_{α/2}(d1, d2)/ρ²; d1, d2),
    d = n − 1 (normal data)."""
    d1, d2 = n1 - 1, n2 - 1
    if d1 < 1 or d2 < 1 or not rho > 0:
        return math.nan
    return float(stats.f.cdf(bound ** 2 * stats.f.ppf(alpha / 2, d1, d2) / rho ** 2, d1, d2))


def sd_ratio_mde(n1: int, n2: int, alpha: float = 0.05, power: float = 0.8, bound: float = 1.0) -> float:
    """The largest true σ ratio (< bound) that the F-interval shows below ``bound`` with ``power``:
    bound·sqrt(F_{α/2}(d1, d2) / F_power(d1, d2)). NaN for n < 2."""
    d1, d2 = n1 - 1, n2 - 1
    if d1 < 1 or d2 < 1:
        return math.nan
    return float(bound * math.sqrt(stats.f.ppf(alpha / 2, d1, d2) / stats.f.ppf(power, d1, d2)))


def sd_ratio_units(rho: float, alpha: float = 0.05, power: float = 0.8, bound: float = 1.0) -> int | None:
    """Seeds per optimizer (equal n) needed to show a true σ ratio ``rho`` < bound below ``bound``."""
    if not (0 < rho < bound):
        return None
    return smallest_n(lambda n: sd_ratio_power(rho, n, n, alpha, bound), power)


def welch_mde(n1: int, n2: int, sd: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable difference of means of a two-sided two-sample t test (``TTestIndPower``) with
    n1, n2 values and common sd ``sd``. NaN for n < 2 or sd not > 0."""
    if n1 < 2 or n2 < 2 or not (math.isfinite(sd) and sd > 0):
        return math.nan
    d = TTestIndPower().solve_power(effect_size=None, nobs1=n1, ratio=n2 / n1, alpha=alpha, power=power,
                                    alternative="two-sided")
    return float(d) * sd


def welch_units(effect: float, sd: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Values per group (equal n) for a two-sided two-sample t test to detect ``effect`` with ``power``."""
    if not (math.isfinite(sd) and sd > 0 and math.isfinite(effect)) or effect == 0:
        return None
    es = abs(effect) / sd
    tp = TTestIndPower()
    return smallest_n(lambda n: tp.power(effect_size=es, nobs1=n, ratio=1.0, alpha=alpha,
                                         alternative="two-sided"), power)


def wilcoxon_floor(n: int) -> float:
    """The smallest two-sided p the exact Wilcoxon signed-rank test can give with n non-zero differences:
    2/2ⁿ (all differences of one sign), capped at 1; NaN for n < 1."""
    return math.nan if n < 1 else min(1.0, 2.0 / 2 ** n)
