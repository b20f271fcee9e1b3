"""C9 (ablation, section 4.9) and C15 (smoother trajectories): loss oscillation compared at matched training
loss, and the accuracy drop without the step-size schedule."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import measures
from ..verdicts import NOT_MEASURED, combine
from .common import (ADAM, AMGT, PAPER_BENCHMARKS, ClaimResult, Context, absent, failure_blocks, final_phase,
                     interval_text, judge_paired, name, pick, planning_sd, scored_accuracy)

__all__ = ["c9", "c15", "matched_oscillation"]


def matched_oscillation(ctx: Context, runs: pd.DataFrame, a: str, b: str) -> tuple[pd.Series, list[float]]:
    """Per seed, ln osc_a − ln osc_b at the lowest training loss both runs reached
    (``measures.oscillation_at_matched_loss``), and the matched loss levels."""
    ids = {o: runs[runs.optimizer == o].groupby("seed")["run_id"].first() for o in (a, b)}
    d, levels = {}, []
    for seed in sorted(set(ids[a].index) & set(ids[b].index)):
        la, lb, level = measures.oscillation_at_matched_loss(ctx.data.histories, ids[a][seed], ids[b][seed])
        if math.isfinite(la) and math.isfinite(lb):
            d[seed] = la - lb
            levels.append(level)
    return pd.Series(d, dtype=float), levels


def _confounded(runs: pd.DataFrame, opts) -> str:
    """The mean-over-epochs oscillation of ``opts`` and how strongly it follows the loss level across every run
    of ``runs`` (the phase's runs on the benchmark)."""
    means = {o: runs.loc[runs.optimizer == o, "oscillation_mean"].mean() for o in opts}
    r, n = measures.loss_confound(runs)
    shown = ", ".join(f"{name(o)} {v:.3f}" for o, v in means.items() if np.isfinite(v))
    if not shown:
        return ""
    corr = f"; corr(ln final train loss, ln oscillation) across these {n} runs = {r:.2f}" if np.isfinite(r) else ""
    return f"not judged, mean-over-epochs oscillation (divided by the loss level): {shown}{corr}"


def _oscillation_part(ctx: Context, key: str, cid: str, runs: pd.DataFrame, a: str, b: str, direction: int,
                      bench: str, phase: str):
    d, levels = matched_oscillation(ctx, runs, a, b)
    sup, con, fail = failure_blocks(ctx.data, phase, bench, a, b)
    if len(d) < 2:
        why = ("needs per-epoch train_loss and loss_oscillation of both (no histories loaded)"
               if not len(ctx.data.histories) else
               f"{len(d)} seed(s) where both runs have overlapping loss ranges (need ≥ 2)")
        return NOT_MEASURED, why, "n/a", {}, fail
    dec, res, fields = judge_paired(ctx, cid, key, d, direction=direction, digits=3, unit="", scale="log1p",
                                    blocks=(sup, con), what="ln oscillation ratio")
    lv = f"; matched loss {min(levels):.3g}–{max(levels):.3g}" if levels else ""
    text = f"{name(a)}/{name(b)} at matched loss = {interval_text(res, 3, '', transform=math.exp)}{lv}"
    return dec.verdict, dec.reason, text, fields, fail


def c15(ctx: Context) -> ClaimResult:
    bench, runs, missing = final_phase(ctx, "C15")
    if missing is not None:
        return missing
    verdict, reason, text, fields, fail = _oscillation_part(ctx, "C15", "C15", runs, AMGT, ADAM, -1, bench, "final")
    conf = _confounded(runs, (AMGT, ADAM))
    measured = "; ".join(x for x in (f"oscillation {text}", conf, fail) if x)
    if verdict == NOT_MEASURED:
        return ctx.result("C15", measured, NOT_MEASURED, f"oscillation at matched loss: {reason}", bench)
    return ctx.result("C15", measured, verdict, reason, bench, **fields)


def c9(ctx: Context) -> ClaimResult:
    need = ("amgt", "amgt-no-threshold", "amgt-no-decay")
    data = ctx.data
    bench = pick(data, "ablation", PAPER_BENCHMARKS, optimizers=need)
    if bench is None:
        return ctx.result("C9", "", NOT_MEASURED, absent(data, "ablation", "no benchmark with ablation runs of "
                                                                           + ", ".join(need)))
    runs = data.usable("ablation", bench)
    va, ra, ta, fa, faila = _oscillation_part(ctx, "C9a", "C9", runs, "amgt-no-threshold", "amgt", +1, bench,
                                              "ablation")
    full, _ = scored_accuracy(runs, "amgt", bench)
    nod, _ = scored_accuracy(runs, "amgt-no-decay", bench)
    both = sorted(set(full.index) & set(nod.index))
    step, _ = measures.accuracy_step(bench, data.runs[data.runs["benchmark"] == bench])
    sup, con, failb = failure_blocks(data, "ablation", bench, "amgt-no-decay", "amgt")
    decb, resb, fb = judge_paired(ctx, "C9", "C9b", full[both] - nod[both], direction=+1, digits=2, unit=" points",
                                  quantum=step, planning_sd=planning_sd(full[both], nod[both]), blocks=(sup, con),
                                  what="the accuracy drops")
    vb = decb.verdict if resb.n >= 2 else NOT_MEASURED
    rb = decb.reason if resb.n >= 2 else "fewer than 2 matched seeds"
    conf = _confounded(runs, ("amgt-no-threshold", "amgt"))
    measured = "; ".join(x for x in (f"(a) oscillation {ta}", conf,
                                     f"(b) accuracy full − no-decay = {interval_text(resb, 2, ' points')}",
                                     faila, failb) if x)
    verdict = combine({"a": va, "b": vb})
    power = "; ".join(x for x in (f"(a) {fa['power']}" if fa else "(a) not measured",
                                  f"(b) {fb['power']}") if x)
    main = fb if resb.n >= 2 else fa
    return ctx.result("C9", measured, verdict, f"part (a): {va}: {ra}; part (b): {vb}: {rb}", bench,
                      **{**main, "power": power,
                         "effect": f"(a) {fa.get('effect', 'n/a') if fa else 'n/a'}; (b) {fb['effect']}"})
