"""C10: robustness to the learning rate — the tunability area over the lr grid (judged) and the width of the
good-lr range (shown)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import measures, stats
from ..data import ReportData
from ..verdicts import NOT_MEASURED
from .common import (ADAM, AMGT, PAPER_BENCHMARKS, ClaimResult, Context, absent, interval_text, judge_paired, name,
                     pick, planning_sd)

__all__ = ["c10", "lr_grid", "tunability_by_seed"]


def lr_grid(data: ReportData, bench: str) -> pd.DataFrame:
    """Grid-phase runs of ``bench`` as ``optimizer, lr, seed, score`` (score = test accuracy in points).

    A diverged run without an accuracy scores the chance accuracy (``measures.failure_score``): it left no
    usable model, which is exactly the failure a learning-rate robustness claim is about.
    """
    runs = data.usable("grid", bench)
    if "hp.lr" not in runs:
        return pd.DataFrame(columns=["optimizer", "lr", "seed", "score"])
    score = runs["test_accuracy"] * 100
    score = score.mask(score.isna() & (runs["outcome"] == "diverged"), measures.failure_score(bench, runs))
    return pd.DataFrame({"optimizer": runs["optimizer"], "lr": pd.to_numeric(runs["hp.lr"], errors="coerce"),
                         "seed": runs["seed"], "score": score}).dropna(subset=["lr"])


def tunability_by_seed(grid: pd.DataFrame, opt: str, lrs) -> pd.Series:
    """Per seed, ``measures.tunability_area`` of ``opt`` over the learning rates ``lrs`` (NaN for a seed
    missing one of them)."""
    g = grid[(grid.optimizer == opt) & grid["lr"].isin(lrs)]
    out = {}
    for seed, c in g.groupby("seed"):
        m = c.groupby("lr")["score"].mean()
        out[seed] = measures.tunability_area(m.index, m.to_numpy()) if len(m) == len(lrs) else np.nan
    return pd.Series(out, dtype=float)


def c10(ctx: Context) -> ClaimResult:
    data = ctx.data
    bench = pick(data, "grid", PAPER_BENCHMARKS)
    if bench is None:
        return ctx.result("C10", "", NOT_MEASURED, absent(data, "grid", "no learning-rate grid with both AMGT and "
                                                                        "Adam"))
    grid = lr_grid(data, bench)
    widths = {}
    for o, g in grid.groupby("optimizer"):
        m = g.groupby("lr")["score"].mean()
        widths[o] = stats.lr_range_width(m.index.to_numpy(), m.to_numpy())["width"]
    wdiff = stats.lr_width_difference(grid[grid.optimizer == AMGT], grid[grid.optimizer == ADAM])
    common = sorted(set(grid.loc[grid.optimizer == AMGT, "lr"]) & set(grid.loc[grid.optimizer == ADAM, "lr"]))
    a, b = tunability_by_seed(grid, AMGT, common), tunability_by_seed(grid, ADAM, common)
    both = sorted(set(a.dropna().index) & set(b.dropna().index))
    dec, res, fields = judge_paired(ctx, "C10", "C10", a[both] - b[both], direction=+1, digits=2, unit=" points",
                                    planning_sd=planning_sd(a[both], b[both]), what="the area differences")
    measured = (f"tunability area (mean accuracy over {len(common)} common lrs, points): "
                + ", ".join(f"{name(o)} {v:.2f}" for o, v in (("amgt", a.mean()), ("adam", b.mean())) if np.isfinite(v))
                + f"; AMGT − Adam = {interval_text(res, 2, ' points')}; not judged, width within 1 point of best "
                "(decades): " + ", ".join(f"{name(o)} {w:.2f}" for o, w in widths.items())
                + f"; W_AMGT − W_Adam = {wdiff.fmt(2)} decades (bootstrap over {wdiff.n} seeds per lr)")
    if len(common) < 2 or res.n < 2:
        return ctx.result("C10", measured, NOT_MEASURED, f"grid too small on {bench}: {len(common)} common learning "
                          f"rates, {res.n} seeds with every one (need ≥ 2 of each)", bench, **fields)
    return ctx.result("C10", measured, dec.verdict, dec.reason, bench, **fields)
