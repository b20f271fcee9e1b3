"""Measures the claims compute from what a trial records (final metrics and per-epoch curves).

- :func:`accuracy_step`: the resolution of a test accuracy (one test example, in points).
- :func:`failure_score`: the accuracy a diverged run without one scores (chance: 100/classes points).
- :func:`oscillation_at_matched_loss`: loss oscillation compared at the same training loss (C9a, C15).
- :func:`detrended_sd`: σ over epochs about the curve's linear trend (C4 as the paper defines it).
- :func:`tunability_area`: mean accuracy over the log-lr grid (C10, beside the good-range width).
- :func:`penalised_time`: time to target with censoring (C7, C8; PAR1).

Why these: ``loss_oscillation`` (``workers.metrics``) is divided by the epoch's mean loss, so a run that is
still at a higher loss scores lower ("smoother") for the same absolute noise; across the committed ablation
runs corr(log loss, log oscillation) ≈ −0.98. Compared at a common loss level the division cancels. A σ of
a 5-epoch curve mostly measures its downward trend; the residual about a line over the last half of
training does not.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["TEST_EXAMPLES", "NUM_CLASSES", "accuracy_step", "failure_score", "oscillation_at_matched_loss",
           "detrended_sd", "DETREND_MIN_POINTS", "tunability_area", "penalised_time", "loss_confound"]

#: Test-set sizes of the registered benchmarks (workers/benchmarks.py, workers/data.py): an accuracy moves
#: in steps of 100/size points. A run that logs ``test_examples`` (schema) overrides this.
TEST_EXAMPLES = {"mnist-lenet5": 10_000, "cifar10-resnet18": 10_000, "digits-cnn": 360}
#: Classes per benchmark (chance accuracy = 100/classes points); ``num_classes`` logged by a run overrides.
NUM_CLASSES = {"mnist-lenet5": 10, "cifar10-resnet18": 10, "digits-cnn": 10}
#: C4 (paper's definition) needs at least this many epochs in the last half of training.
DETREND_MIN_POINTS = 4


def _logged(runs: pd.DataFrame, column: str) -> float | None:
    if column in runs and runs[column].notna().any():
        v = float(pd.to_numeric(runs[column], errors="coerce").dropna().median())
        return v if v > 0 else None
    return None


def accuracy_step(benchmark: str, runs: pd.DataFrame | None = None) -> tuple[float | None, str]:
    """(step in points, source): one test example, 100/test_examples, from the runs' ``test_examples``
    metric, else the benchmark table, else the smallest gap between distinct recorded test accuracies
    (an upper bound of the step; needs ≥ 10 distinct values). (None, "unknown") when none applies."""
    if runs is not None and len(runs):
        logged = _logged(runs, "test_examples")
        if logged:
            return 100.0 / logged, "test_examples logged"
    if benchmark in TEST_EXAMPLES:
        return 100.0 / TEST_EXAMPLES[benchmark], f"{TEST_EXAMPLES[benchmark]:,} test examples"
    if runs is not None and "test_accuracy" in runs:
        v = np.unique(np.round(pd.to_numeric(runs["test_accuracy"], errors="coerce").dropna().to_numpy() * 100, 9))
        if v.size >= 10:
            return float(np.diff(v).min()), "smallest gap between recorded accuracies"
    return None, "unknown"


def failure_score(benchmark: str, runs: pd.DataFrame | None = None) -> float:
    """Accuracy (points) scored by a run that diverged without recording one: chance, 100/classes (the
    runs' ``num_classes`` metric, else the benchmark table); 0 when the classes are unknown."""
    logged = _logged(runs, "num_classes") if runs is not None and len(runs) else None
    classes = logged or NUM_CLASSES.get(benchmark)
    return 100.0 / classes if classes else 0.0


def _curve(h: pd.DataFrame, run_id: str, metric: str) -> pd.Series:
    c = h[(h["run_id"] == run_id) & (h["metric"] == metric)].sort_values("step")
    return pd.Series(c["value"].to_numpy(float), index=c["step"].to_numpy())


def _loss_osc(h: pd.DataFrame, run_id: str) -> tuple[np.ndarray, np.ndarray]:
    loss, osc = _curve(h, run_id, "train_loss"), _curve(h, run_id, "loss_oscillation")
    j = pd.concat([loss.rename("l"), osc.rename("o")], axis=1, join="inner")
    j = j[np.isfinite(j["l"]) & np.isfinite(j["o"]) & (j["l"] > 0) & (j["o"] > 0)]
    return j["l"].to_numpy(), j["o"].to_numpy()


def _log_interp(loss: np.ndarray, osc: np.ndarray, level: float) -> float:
    """ln oscillation at training loss ``level``, linear in (ln loss, ln osc) between the epochs that
    bracket it; NaN outside the run's loss range."""
    if not loss.size or not (loss.min() - 1e-12 <= level <= loss.max() + 1e-12):
        return math.nan
    order = np.argsort(loss)
    return float(np.interp(math.log(level), np.log(loss[order]), np.log(osc[order])))


def oscillation_at_matched_loss(histories: pd.DataFrame, run_a: str, run_b: str) -> tuple[float, float, float]:
    """(ln osc_a, ln osc_b, L*): the two runs' loss oscillation at the same training loss L*, the lowest
    loss both reached (the larger of their minimum epoch losses), each interpolated in (ln loss, ln osc)
    between its own epochs (``train_loss`` = the epoch's mean per-step loss, the denominator of
    ``loss_oscillation``). NaN when a run has no usable epoch or the loss ranges do not overlap."""
    la, oa = _loss_osc(histories, run_a)
    lb, ob = _loss_osc(histories, run_b)
    if not la.size or not lb.size:
        return math.nan, math.nan, math.nan
    level = max(la.min(), lb.min())
    return _log_interp(la, oa, level), _log_interp(lb, ob, level), float(level)


def detrended_sd(values: Sequence[float], min_points: int = DETREND_MIN_POINTS) -> float:
    """σ over epochs of a curve about its linear trend: the residual standard deviation (ddof 2) of a
    least-squares line through the last ⌈E/2⌉ epochs (E = finite epochs). NaN with fewer than
    ``min_points`` epochs in that window (or any non-finite value in it)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    w = v[-math.ceil(v.size / 2):] if v.size else v
    if w.size < max(min_points, 3):
        return math.nan
    t = np.arange(w.size, dtype=float)
    coef = np.polyfit(t, w, 1)
    resid = w - np.polyval(coef, t)
    return float(math.sqrt((resid ** 2).sum() / (w.size - 2)))


def tunability_area(lrs: Sequence[float], scores: Sequence[float]) -> float:
    """Mean score over the log-lr grid: the trapezoidal area under score vs log10(lr), divided by the
    grid's span in decades (points of accuracy; a flat curve at a scores a). NaN with fewer than 2 finite
    grid points."""
    lr, sc = np.asarray(lrs, float), np.asarray(scores, float)
    keep = np.isfinite(lr) & (lr > 0) & np.isfinite(sc)
    lr, sc = lr[keep], sc[keep]
    if lr.size < 2:
        return math.nan
    order = np.argsort(lr)
    x, y = np.log10(lr[order]), sc[order]
    span = x[-1] - x[0]
    if span <= 0:
        return math.nan
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / span)


def penalised_time(reached: float, budget: float) -> tuple[float, bool]:
    """(time, censored): a run's time (or steps) to the target, or — when it never reached it (ran out of
    budget, diverged or failed) — the budget, flagged censored (PAR1 scoring, as in algorithm-configuration
    benchmarks: a censored run scores the cutoff, a lower bound of its true time)."""
    if math.isfinite(reached):
        return float(reached), False
    return float(budget), True


def loss_confound(runs: pd.DataFrame, loss: str = "train_loss", osc: str = "oscillation_mean") -> tuple[float, int]:
    """(Pearson r, n) of ln loss against ln oscillation across ``runs``: how strongly the relative
    oscillation measure follows the loss level (NaN with fewer than 3 runs)."""
    if loss not in runs or osc not in runs:
        return math.nan, 0
    a = pd.to_numeric(runs[loss], errors="coerce").to_numpy(float)
    b = pd.to_numeric(runs[osc], errors="coerce").to_numpy(float)
    ok = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    if ok.sum() < 3:
        return math.nan, int(ok.sum())
    return float(np.corrcoef(np.log(a[ok]), np.log(b[ok]))[0, 1]), int(ok.sum())

