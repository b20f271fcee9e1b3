"""C5 (time per epoch), C6 (optimizer state 4n vs 3n), C7 and C8 (time to target, with censoring)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .. import evidence as ev
from .. import measures
from ..verdicts import CONTRADICTED, INCONCLUSIVE, NOT_MEASURED, NOT_SUPPORTED, SUPPORTED
from .common import (ADAM, AMGT, PAPER_BENCHMARKS, ClaimResult, Context, absent, failure_blocks, final_phase,
                     interval_text, judge_paired, name, no_power_fields, pick, replay_note)

__all__ = ["c5", "c6", "c7", "c8", "implementations", "epoch_time_ratio"]


def implementations(runs: pd.DataFrame, opt: str) -> str:
    """The ``optimizer_impl`` tag(s) of ``opt``'s runs, or "not recorded"."""
    if "optimizer_impl" not in runs:
        return "not recorded"
    v = sorted(set(runs.loc[runs["optimizer"] == opt, "optimizer_impl"].dropna().astype(str)))
    return ", ".join(v) if v else "not recorded"


def epoch_time_ratio(ctx: Context, runs: pd.DataFrame, bench: str, a: str, b: str,
                     key: str = "C5") -> tuple[str, str, str, dict] | None:
    """C5's statistic for any pair: the ratio of per-run median epoch times ``a``/``b`` (geometric means, Welch
    t on log time, ``evidence.log_ratio``) against claim ``key``'s bound (``sesoi``, 1.10: overhead ≤ 10 %):
    supported iff the 95 % CI stays ≤ the bound, contradicted iff it lies above it. Returns (measured,
    verdict, reason, ClaimResult power fields); None when either has no epoch time recorded."""
    cs, s = ctx.cs(key), ctx.settings
    x = runs.loc[runs.optimizer == a, "epoch_time_median"].dropna()
    y = runs.loc[runs.optimizer == b, "epoch_time_median"].dropna()
    if not len(x) or not len(y):
        return None
    res = ev.log_ratio(x, y, min_n=cs.min_n, alpha=s.alpha, power=s.power, bound=cs.sesoi,
                       paper_ratio=cs.paper_effect)
    devices = ", ".join(sorted(set(runs["device"].dropna().astype(str)))) or "unknown device"
    est = res.estimate
    lo, hi = res.ci
    ci = f" [{lo:.3f}, {hi:.3f}]" if math.isfinite(lo) else " (no CI)"
    note = replay_note(ctx.data, bench, (a, b))
    where = ""
    if cs.paper_effect is not None:  # the paper's own ranges (Table 4.3)
        where = ", " + ("within 1.8–3.2 %" if 1.018 <= est <= 1.032 else
                        "within 5–10 %" if 1.05 <= est <= 1.10 else "outside both of the paper's ranges")
    na, nb = name(a), name(b)
    measured = (f"median epoch time {na} {np.median(x):.3g} s, {nb} {np.median(y):.3g} s; ratio {est:.3f}{ci} "
                f"({res.test}, n = {len(x)}/{len(y)} runs" + (f", p = {res.p:.3g}" if math.isfinite(res.p) else "")
                + f"; overhead {100 * (est - 1):+.1f} %{where}); on {devices}; implementation timed: {na} "
                f"{implementations(runs, a)}, {nb} {implementations(runs, b)}" + (f"; {note}" if note else ""))
    effect = (f"the paper's ratio {cs.paper_effect:.3f} vs the bound {cs.sesoi:g}" if cs.paper_effect is not None
              else "")
    power = res.power.text(lambda v: f"{(math.exp(v) - 1) * 100:.1f} % of epoch time", unit="runs", effect=effect)
    fields = dict(power=power, n=res.n, min_n=cs.min_n, p=res.p, p_test=res.test, mde=res.power.mde,
                  seeds_needed=f"{'n/a' if res.power.needed is None else res.power.needed} / n/a",
                  effect=f"ratio {est:.3f}{ci}",
                  mde_text=(f"{(math.exp(res.power.mde) - 1) * 100:.1f} %" if math.isfinite(res.power.mde) else ""))
    bound = cs.sesoi
    if not math.isfinite(hi):
        return measured, INCONCLUSIVE, "; ".join(res.guards + ["no interval (fewer than 2 runs per optimizer)"]), fields
    alone = (SUPPORTED if hi <= bound else CONTRADICTED if lo > bound else INCONCLUSIVE)
    texts = {SUPPORTED: f"the ratio's 95 % CI stays ≤ {bound:g}",
             CONTRADICTED: f"the ratio's 95 % CI lies above {bound:g}: more overhead than "
                           + ("the paper states" if cs.paper_effect is not None else "the bound allows"),
             INCONCLUSIVE: f"the ratio's 95 % CI straddles {bound:g}"}
    fields["interval_alone"] = alone
    if res.guards:
        return (measured, INCONCLUSIVE, "; ".join(res.guards) + f" (the interval alone: {alone}: {texts[alone]})",
                fields)
    return measured, alone, texts[alone], fields


def c5(ctx: Context) -> ClaimResult:
    data = ctx.data
    bench = pick(data, "final", ("cifar10-resnet18",) + PAPER_BENCHMARKS)
    if bench is None:
        return ctx.result("C5", "", NOT_MEASURED, absent(data, "final", "no benchmark with final-phase runs of both "
                                                                        "AMGT and Adam"))
    out = epoch_time_ratio(ctx, data.usable("final", bench), bench, AMGT, ADAM)
    if out is None:
        return ctx.result("C5", "", NOT_MEASURED, f"no epoch_time_s recorded on {bench}", bench)
    measured, verdict, reason, fields = out
    return ctx.result("C5", measured, verdict, reason, bench, **fields)


def c6(ctx: Context) -> ClaimResult:
    bench, runs, missing = final_phase(ctx, "C6")
    if missing is not None:
        return missing
    tol = ctx.cs("C6").sesoi
    s_amgt = runs[runs.optimizer == AMGT]["optimizer_state_bytes"].median()
    s_adam = runs[runs.optimizer == ADAM]["optimizer_state_bytes"].median()
    if not (np.isfinite(s_amgt) and np.isfinite(s_adam)) or s_adam <= 0:
        return ctx.result("C6", "", NOT_MEASURED, f"optimizer_state_bytes not recorded for AMGT and Adam on {bench}",
                          bench)
    n = s_adam / 2.0
    extra = (s_amgt - s_adam) / n
    paper_ratio = (n + s_amgt) / (n + s_adam)
    peak = (runs[runs.optimizer == AMGT]["peak_memory_bytes"].median()
            / runs[runs.optimizer == ADAM]["peak_memory_bytes"].median())
    measured = (f"state bytes AMGT {s_amgt:,.0f}, Adam {s_adam:,.0f}: AMGT adds {extra:.3f} n-sized buffers; "
                f"(params + state) ratio {paper_ratio:.3f} vs 4/3 = 1.333; peak memory ratio {peak:.3f} "
                f"(paper 1560/1470 = 1.061)")
    k = int(runs["optimizer"].isin((AMGT, ADAM)).sum())
    fields = no_power_fields(k, 1, f"exact: state bytes are deterministic, so one run decides (n = {k} runs); "
                                   "no test, no power calculation needed")
    fields["effect"] = f"{extra:.3f} extra n-sized buffers (exact)"
    if abs(extra - 1.0) <= tol:
        return ctx.result("C6", measured, SUPPORTED, "AMGT holds exactly one extra n-sized buffer (4n vs 3n)", bench,
                          **fields)
    if extra < 0.5 or extra > 1.5:
        return ctx.result("C6", measured, CONTRADICTED, f"AMGT holds {extra:.2f} extra n-sized buffers, not 1", bench,
                          **fields)
    return ctx.result("C6", measured, NOT_SUPPORTED, f"{extra:.2f} extra buffers: between the rule's bounds", bench,
                      **fields)


def _budget(runs: pd.DataFrame, column: str) -> float:
    if column in runs and runs[column].notna().any():
        return float(pd.to_numeric(runs[column], errors="coerce").max())
    return math.nan


def censoring_note(only_a: int, only_b: int, unrecorded_budget: str | None = None) -> str:
    """What one-sided censoring does to the mean reduction (PAR1 scores a censored run at the budget, a lower bound
    of its true time): pairs where only Adam reached the target overstate AMGT's reduction, pairs where only AMGT
    did understate it; both kinds together leave the mean's direction of bias unknown.  Without the budget
    (``unrecorded_budget``: the column not recorded) such pairs cannot be scored and are left out.  Empty without
    such pairs."""
    if unrecorded_budget and only_a + only_b:
        return (f"{only_a + only_b} pair(s) where only one reached the target left out: without the budget "
                f"({unrecorded_budget}) a run that never reached it cannot be scored")
    if unrecorded_budget:
        return ""
    if only_a and only_b:
        return (f"{only_a + only_b} pair(s) censored on one side, both ways: the mean is not a bound either way")
    if only_b:
        return (f"the mean overstates AMGT's reduction: in {only_b} seed(s) AMGT's time counts as the budget, "
                "a lower bound of a time it never reached")
    if only_a:
        return (f"the mean understates AMGT's reduction: in {only_a} seed(s) Adam's time counts as the budget, "
                "a lower bound of a time it never reached")
    return ""


def reduction_claim(ctx: Context, cid: str, columns: Sequence[str], budgets: Sequence[str], what: str) -> ClaimResult:
    bench, runs, missing = final_phase(ctx, cid)
    if missing is not None:
        return missing
    data = ctx.data
    i = next((k for k, c in enumerate(columns) if runs[c].notna().any()), 0)
    col, budget = columns[i], _budget(runs, budgets[i])
    x = {o: runs[runs.optimizer == o].groupby("seed")[col].mean() for o in (AMGT, ADAM)}
    seeds = sorted(set(x[AMGT].index) & set(x[ADAM].index))
    d, none, only_a, only_b = {}, 0, 0, 0
    for sd in seeds:
        ra, rb = x[AMGT][sd], x[ADAM][sd]
        if not (np.isfinite(ra) or np.isfinite(rb)):
            none += 1
            continue
        ta, ca = measures.penalised_time(ra, budget)
        tb, cb = measures.penalised_time(rb, budget)
        only_a += int(cb and not ca)
        only_b += int(ca and not cb)
        if np.isfinite(ta) and np.isfinite(tb) and tb > 0:
            d[sd] = 100.0 * (1.0 - ta / tb)
    sup, con, fail = failure_blocks(data, "final", bench, AMGT, ADAM)
    if only_b:
        sup = "; ".join(filter(None, [sup, f"Adam reached the target in {only_b} seed(s) where AMGT did not: "
                                           "'supported' is forbidden"]))
    if only_a:
        con = "; ".join(filter(None, [con, f"AMGT reached the target in {only_a} seed(s) where Adam did not: "
                                           "'contradicted' is forbidden"]))
    paper = ctx.cs(cid).paper_effect
    dec, res, fields = judge_paired(ctx, cid, cid, pd.Series(d, dtype=float), direction=+1, digits=1, unit=" %",
                                    blocks=(sup, con), what="the reductions")
    btext = f"{budget:g}" if math.isfinite(budget) else f"({budgets[i]} not recorded)"
    measured = (f"{what} ({col}; a run that never reached it scores the budget {btext}): mean reduction AMGT vs "
                f"Adam {interval_text(res, 1, ' %')} over the seeds where at least one reached the target (paper "
                f"~{paper:g} %); reached by AMGT only: {only_a}, by Adam only: {only_b}, by neither: {none}")
    bound = censoring_note(only_a, only_b, None if math.isfinite(budget) else budgets[i])
    if bound:
        measured += f"; {bound}"
    for extra in (fail, replay_note(data, bench, (AMGT, ADAM))):
        if extra:
            measured += f"; {extra}"
    if not d:
        why = (f"no pair can be scored on {bench}: where only one reached the target, the budget ({budgets[i]}) "
               "was not recorded" if only_a + only_b else
               f"neither AMGT nor Adam reached the target in any seed on {bench} (or {col} was not recorded): the "
               "time to target is censored in every pair")
        return ctx.result(cid, measured, NOT_MEASURED, why, bench)
    return ctx.result(cid, measured, dec.verdict, dec.reason, bench, **fields)


def c7(ctx):
    return reduction_claim(ctx, "C7", ("target_train_loss_step", "target_train_loss_epoch"),
                           ("steps", "epochs_completed"), "steps to the target training loss")


def c8(ctx):
    return reduction_claim(ctx, "C8", ("target_val_accuracy_time_s",), ("wall_time_s",),
                           "time to the target validation accuracy")


