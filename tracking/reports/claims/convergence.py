"""C14: non-convex convergence, min_k E‖∇f(x_k)‖² → 0, from AMGT's gradient-norm trajectory."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..power import wilcoxon_floor
from ..verdicts import CONTRADICTED, NOT_MEASURED, NOT_SUPPORTED, SUPPORTED
from .common import AMGT, PAPER_BENCHMARKS, ClaimResult, Context, no_power_fields

__all__ = ["c14"]


#: Where C14's runs come from, first present wins: runs that trained with a chosen configuration.
_PHASES = ("final", "ablation", "quadratic", "grid")


def _runs_judged(r: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The AMGT runs C14 judges, and which they are: those of the first phase of :data:`_PHASES` present; in a
    grid only the learning rate that trained best (highest mean test accuracy, else lowest mean training loss).
    A network stuck at a bad learning rate has small gradients too: pooled, such runs passed "fell ≥ 10×"."""
    phase = next(ph for ph in _PHASES if (r["phase"] == ph).any())
    r = r[r["phase"] == phase]
    if phase != "grid" or "hp.lr" not in r or r["hp.lr"].nunique() < 2:
        return r, f"{phase} phase"
    acc = "test_accuracy" in r and r["test_accuracy"].notna().any()
    by = r.groupby("hp.lr")["test_accuracy" if acc else "train_loss"].mean()
    lr = by.idxmax() if acc else by.idxmin()
    return r[r["hp.lr"] == lr], (f"grid phase, AMGT's best learning rate {lr:.3g} by "
                                 f"{'test accuracy' if acc else 'training loss'}; the other rates left out")


def c14(ctx: Context) -> ClaimResult:
    data = ctx.data
    runs = data.usable([p for p in ("final", "grid", "ablation", "quadratic")])
    runs = runs[(runs["optimizer"] == AMGT) & runs["grad_sq_first"].notna() & runs["grad_sq_min"].notna()]
    benches = [b for b in runs["benchmark"].dropna().unique() if not str(b).startswith("quadratic")]  # convex
    bench = next((b for b in ("rosenbrock",) + PAPER_BENCHMARKS if b in benches),
                 sorted(benches)[0] if benches else None)
    if bench is None:
        why = "" if len(data.histories) else " (no per-epoch histories loaded)"
        return ctx.result("C14", "", NOT_MEASURED, "no AMGT run with a grad_norm or grad_norm_mean history (phases "
                          f"final, grid, ablation, quadratic){why}")
    r = runs[runs["benchmark"] == bench]
    h = data.histories
    epochs = h[h["metric"].isin(("grad_norm_mean", "grad_norm")) & h["run_id"].isin(r["run_id"])].groupby(
        "run_id")["step"].nunique()
    r = r[r["run_id"].map(epochs).fillna(0) >= 3]
    if not len(r):
        return ctx.result("C14", "", NOT_MEASURED, f"AMGT runs on {bench} have fewer than 3 epochs of "
                          "grad_norm_mean: no trajectory to judge", bench)
    r, which = _runs_judged(r)
    q = (r["grad_sq_min"] / r["grad_sq_first"]).replace([np.inf], np.nan).dropna()
    if not len(q):
        return ctx.result("C14", "", NOT_MEASURED, f"grad_norm_mean is zero or missing in the first epoch on "
                          f"{bench}", bench)
    source = ", ".join(sorted(set(r["grad_source"].dropna()))) if "grad_source" in r else "grad_norm_mean"
    measured = (f"q = min_k g_k²/g_1² ({source}) over {len(q)} AMGT run(s) ({which}): median {q.median():.3g}, "
                f"max {q.max():.3g}, "
                f"epochs {int(r['epochs_completed'].max()) if r['epochs_completed'].notna().any() else '?'}")
    min_n = ctx.cs("C14").min_n
    n = len(q)
    floor = wilcoxon_floor(n) / 2  # one-sided sign test: 0.5^n
    fields = no_power_fields(n, min_n, f"n = {n} runs (pre-registered minimum {min_n}); a per-run rule, no test: a "
                                       f"one-sided sign test of q < 1 over these runs could reach p = {floor:.3g} at "
                                       "best")
    if (q <= 0.1).all():
        verdict, reason = SUPPORTED, "the squared gradient norm fell ≥ 10× in every run"
    elif (q >= 1.0).mean() > 0.5:
        verdict, reason = CONTRADICTED, "in most runs the gradient norm never fell below its start"
    else:
        verdict, reason = NOT_SUPPORTED, "the gradient norm fell, but not ≥ 10× in every run"
    return ctx.result("C14", measured, verdict, reason, bench, interval_alone=verdict, **fields)
