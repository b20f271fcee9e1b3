"""The statistics behind the report: intervals, paired tests, multiple-comparison correction, bootstrap.

Every function says what it computes and which library routine does the work (``scipy.stats``); the
report states the same definitions beside its tables. Accuracies are whatever unit is passed in (the
report passes percentage points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "Interval",
    "Paired",
    "t_interval",
    "paired_difference",
    "holm",
    "sd_ratio_interval",
    "ratio_of_medians",
    "expected_best_of_k",
    "lr_range_width",
    "lr_width_difference",
]

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20250101


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval (``low``/``high`` NaN when undefined)."""

    estimate: float
    low: float
    high: float
    n: int
    sd: float = math.nan

    @property
    def defined(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def excludes(self, value: float) -> str | None:
        """``"above"`` if the whole interval is above ``value``, ``"below"`` if below, else None."""
        if not self.defined:
            return None
        if self.low > value:
            return "above"
        if self.high < value:
            return "below"
        return None

    def clipped(self, bounds: tuple[float, float]) -> tuple[float, float, bool]:
        """(low, high, clipped): the interval's ends limited to the metric's range ``bounds`` (e.g. 0–100
        for an accuracy in percent); ``clipped`` says whether an end lay outside it. The interval itself
        (``low``/``high``) is left as computed."""
        lo, hi = max(self.low, bounds[0]), min(self.high, bounds[1])
        return lo, hi, bool(self.defined and (lo != self.low or hi != self.high))

    def fmt(self, digits: int = 2, unit: str = "", bounds: tuple[float, float] | None = None) -> str:
        """"est [low, high]"; with ``bounds`` the displayed ends are clipped to the metric's range and a
        clipped end is marked "*" with the interval as computed after it; n < 3 is flagged (a t-interval
        from 2 values uses t = 12.7: nearly meaningless)."""
        if not math.isfinite(self.estimate):
            return "n/a"
        if not self.defined:
            return f"{self.estimate:.{digits}f}{unit} (no CI)"
        lo, hi, clipped = self.clipped(bounds) if bounds else (self.low, self.high, False)
        ci = (f" [{lo:.{digits}f}{'*' if lo != self.low else ''}, {hi:.{digits}f}{'*' if hi != self.high else ''}]")
        if clipped:
            ci += (f" (*clipped to {bounds[0]:g}–{bounds[1]:g}; t-interval [{self.low:.{digits}f}, "
                   f"{self.high:.{digits}f}])")
        if bounds and self.n < 3:
            ci += f" (n = {self.n} < 3: interval nearly meaningless)"
        return f"{self.estimate:.{digits}f}{unit}{ci}"


def _finite(x: Sequence[float]) -> np.ndarray:
    a = np.asarray(pd.to_numeric(pd.Series(list(x), dtype="object"), errors="coerce"), dtype=float)
    return a[np.isfinite(a)]


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean of the finite ``values`` with Student's t interval (``scipy.stats.t.interval``, df = n − 1,
    scale = s/√n with the sample standard deviation s, ddof = 1). n < 2: no interval; s = 0: [mean, mean]."""
    x = _finite(values)
    n = x.size
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, 1)
    sd = float(x.std(ddof=1))
    if sd == 0.0:
        return Interval(mean, mean, mean, n, 0.0)
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=sd / math.sqrt(n))
    return Interval(mean, float(low), float(high), n, sd)


@dataclass(frozen=True)
class Paired:
    """Paired difference a − b over matched units (seeds): t interval of the mean difference and the
    two-sided Wilcoxon signed-rank p-value."""

    difference: Interval
    p_wilcoxon: float
    n: int


def paired_difference(a: Mapping | pd.Series, b: Mapping | pd.Series,
                      confidence: float = CONFIDENCE) -> Paired:
    """Pair ``a`` and ``b`` by key (seed), drop pairs with a non-finite member, and return the t interval
    of the mean of d = a − b and ``scipy.stats.wilcoxon(d)``'s two-sided p-value (exact for small n;
    NaN when n < 1 or every d is 0)."""
    sa, sb = pd.Series(a, dtype=float), pd.Series(b, dtype=float)
    joined = pd.concat([sa.rename("a"), sb.rename("b")], axis=1, join="inner").dropna()
    d = (joined["a"] - joined["b"]).to_numpy()
    interval = t_interval(d, confidence)
    p = math.nan
    if d.size >= 1 and np.any(d != 0):
        p = float(stats.wilcoxon(d).pvalue)
    return Paired(interval, p, int(d.size))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (step-down; the same as statsmodels'
    ``multipletests(method="holm")``): sort the m finite p ascending, p̃_(i) = max_{j≤i} min(1, (m−j+1)·p_(j)).
    NaN inputs stay NaN and do not count in m."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = idx.size
    if m == 0:
        return out.tolist()
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def sd_ratio_interval(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """σ_a/σ_b (sample standard deviations, ddof = 1) with the F-distribution interval for a ratio of
    normal variances (``scipy.stats.f.ppf``), square-rooted. Needs ≥ 2 values each and σ_b > 0."""
    x, y = _finite(a), _finite(b)
    if x.size < 2 or y.size < 2:
        return Interval(math.nan, math.nan, math.nan, int(min(x.size, y.size)))
    sx, sy = float(x.std(ddof=1)), float(y.std(ddof=1))
    if sy == 0.0:
        return Interval(math.inf if sx > 0 else math.nan, math.nan, math.nan, int(min(x.size, y.size)))
    r2 = (sx / sy) ** 2
    alpha = 1.0 - confidence
    d1, d2 = x.size - 1, y.size - 1
    low = r2 / stats.f.ppf(1 - alpha / 2, d1, d2)
    high = r2 / stats.f.ppf(alpha / 2, d1, d2)
    return Interval(math.sqrt(r2), math.sqrt(low), math.sqrt(high), int(min(x.size, y.size)))


def ratio_of_medians(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """median(a)/median(b) with a percentile bootstrap interval (``scipy.stats.bootstrap``, independent
    resampling of a and b, fixed seed). With fewer than 2 values in either: the point estimate only."""
    x, y = _finite(a), _finite(b)
    if x.size == 0 or y.size == 0 or np.median(y) == 0:
        return Interval(math.nan, math.nan, math.nan, int(min(x.size, y.size)))
    est = float(np.median(x) / np.median(y))
    if x.size < 2 or y.size < 2:
        return Interval(est, math.nan, math.nan, int(min(x.size, y.size)))
    if np.all(x == x[0]) and np.all(y == y[0]):
        return Interval(est, est, est, int(min(x.size, y.size)))
    res = stats.bootstrap((x, y), lambda u, v, axis=-1: np.median(u, axis=axis) / np.median(v, axis=axis),
                          confidence_level=confidence, n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
                          vectorized=True, rng=np.random.default_rng(BOOTSTRAP_SEED))
    return Interval(est, float(res.confidence_interval.low), float(res.confidence_interval.high),
                    int(min(x.size, y.size)))


def expected_best_of_k(values: Sequence[float], ks: Sequence[int], *, resamples: int = 500,
                       confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Expected best score after k trials drawn at random (with replacement) from the trials run
    (Dodge et al. 2019, "Show your work"): E[max_k] = Σ_i v_(i)·((i/n)^k − ((i−1)/n)^k) over the sorted
    values v_(1) ≤ … ≤ v_(n). The band resamples the trials (bootstrap, fixed seed) and takes the
    percentile interval of E[max_k]. Returns columns ``k, expected, low, high`` (NaN when no values)."""
    v = np.sort(_finite(values))
    ks = [int(k) for k in ks]
    if v.size == 0:
        return pd.DataFrame({"k": ks, "expected": np.nan, "low": np.nan, "high": np.nan})

    def emax(sorted_v: np.ndarray) -> np.ndarray:
        n = sorted_v.shape[-1]
        i = np.arange(1, n + 1)
        w = np.stack([(i / n) ** k - ((i - 1) / n) ** k for k in ks])  # (K, n)
        return sorted_v @ w.T  # (..., K)

    rng = np.random.default_rng(BOOTSTRAP_SEED)
    boot = np.sort(rng.choice(v, size=(resamples, v.size), replace=True), axis=1)
    dist = emax(boot)
    alpha = 1.0 - confidence
    return pd.DataFrame({"k": ks, "expected": emax(v), "low": np.quantile(dist, alpha / 2, axis=0),
                         "high": np.quantile(dist, 1 - alpha / 2, axis=0)})


def _width_sorted(lrs: np.ndarray, s: np.ndarray, within: float) -> tuple[float, int, int, int]:
    """(width in decades, lo index, hi index, best index) for ascending ``lrs``; -inf marks a missing score."""
    ib = int(np.argmax(s))
    best = s[ib]
    lo = hi = ib
    while lo - 1 >= 0 and s[lo - 1] >= best - within:
        lo -= 1
    while hi + 1 < len(s) and s[hi + 1] >= best - within:
        hi += 1
    return float(math.log10(lrs[hi] / lrs[lo])), lo, hi, ib


def lr_range_width(lrs: Sequence[float], scores: Sequence[float], within: float = 1.0) -> dict:
    """Width, in decades, of the contiguous learning-rate range around the best grid point whose score is
    within ``within`` (points) of the best: log10(lr_hi/lr_lo). A lone best point has width 0.
    Returns ``{"width": decades, "lr_lo", "lr_hi", "lr_best", "best"}`` (NaN when no finite score)."""
    lr = np.asarray(lrs, float)
    sc = np.asarray(scores, float)
    keep = np.isfinite(lr) & (lr > 0)
    lr, sc = lr[keep], sc[keep]
    order = np.argsort(lr, kind="stable")
    lr, sc = lr[order], sc[order]
    if not np.isfinite(sc).any():
        return {"width": math.nan, "lr_lo": math.nan, "lr_hi": math.nan, "lr_best": math.nan, "best": math.nan}
    s = np.where(np.isfinite(sc), sc, -np.inf)
    width, lo, hi, ib = _width_sorted(lr, s, within)
    return {"width": width, "lr_lo": float(lr[lo]), "lr_hi": float(lr[hi]), "lr_best": float(lr[ib]),
            "best": float(s[ib])}


def lr_width_difference(grid_a: pd.DataFrame, grid_b: pd.DataFrame, *, within: float = 1.0,
                        resamples: int = 1000, confidence: float = CONFIDENCE) -> Interval:
    """Width(a) − width(b) (decades, :func:`lr_range_width` of the per-lr mean score) with a bootstrap
    interval that resamples the seeds within each (optimizer, lr) cell (fixed seed).
    ``grid_*``: columns ``lr, score`` (one row per run)."""
    def cells(g: pd.DataFrame) -> tuple[np.ndarray, list[np.ndarray]]:
        g = g[np.isfinite(g["score"].astype(float))]
        groups = sorted(g.groupby("lr"), key=lambda kv: kv[0])
        return np.array([lr for lr, _ in groups], float), [c["score"].to_numpy(float) for _, c in groups]

    lrs_a, ca = cells(grid_a)
    lrs_b, cb = cells(grid_b)
    if not ca or not cb:
        return Interval(math.nan, math.nan, math.nan, 0)
    est = (_width_sorted(lrs_a, np.array([c.mean() for c in ca]), within)[0]
           - _width_sorted(lrs_b, np.array([c.mean() for c in cb]), within)[0])
    n = int(min(min(c.size for c in ca), min(c.size for c in cb)))
    if n < 2:
        return Interval(est, math.nan, math.nan, n)
    rng = np.random.default_rng(BOOTSTRAP_SEED)

    def boot_means(cs: list[np.ndarray]) -> np.ndarray:  # (resamples, n_lr)
        return np.stack([rng.choice(c, (resamples, c.size), replace=True).mean(axis=1) for c in cs], axis=1)

    ma, mb = boot_means(ca), boot_means(cb)
    diffs = np.array([_width_sorted(lrs_a, ma[i], within)[0] - _width_sorted(lrs_b, mb[i], within)[0]
                      for i in range(resamples)])
    alpha = 1.0 - confidence
    return Interval(est, float(np.quantile(diffs, alpha / 2)), float(np.quantile(diffs, 1 - alpha / 2)), n)
