"""C1–C3 (test accuracy AMGT vs Adam, Table 4.2) and C4 (convergence stability ±σ)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import evidence as ev
from .. import measures, stats
from ..verdicts import NOT_MEASURED, combine, decide
from .common import (ADAM, AMGT, ClaimResult, Context, effect_text, failure_blocks, final_phase, interval_text,
                     judge_paired, name, planning_sd, replay_note, scored_accuracy, absent)

__all__ = ["c1", "c2", "c3", "c4", "paired_accuracy"]


def _means_text(runs: pd.DataFrame, bench: str, first=(AMGT, ADAM)) -> str:
    a, b = first
    opts = sorted(runs["optimizer"].dropna().unique(), key=lambda o: (o != a, o != b, o))
    parts = []
    for o in opts:
        s, _ = scored_accuracy(runs, o, bench)
        iv = stats.t_interval(s)
        parts.append(f"{name(o)} {iv.fmt(2, ' %', bounds=(0.0, 100.0))}"
                     + ("" if iv.defined and iv.n < 3 else f" (n={iv.n})"))
    return "; ".join(parts)


def _failures_text(runs: pd.DataFrame, bench: str) -> str:
    div = runs[runs["outcome"] == "diverged"]
    if not len(div):
        return ""
    score = measures.failure_score(bench, runs)
    return "; diverged runs: " + ", ".join(
        f"{name(o)} {len(g)} ({int(g['test_accuracy'].isna().sum())} without an accuracy, scored {score:g} %)"
        for o, g in div.groupby("optimizer"))


def paired_accuracy(ctx: Context, bench: str, a: str, b: str, cid: str = "C1", key: str = "C1",
                    claimed: str = "the paper's direction") -> tuple[str, object, object, dict]:
    """C1's statistic for any pair: per-seed final test accuracy of ``a`` − ``b`` (points, failure rule, paired
    by seed), judged with claim ``key``'s settings (``judge_paired``: paired t interval, TOST, power/MDE, the
    failure-count blocks, the accuracy step as quantum). Returns (measured text, Decision, evidence.Result,
    ClaimResult power fields). ``claimed``: the direction a verdict's reason names."""
    data = ctx.data
    runs = data.usable("final", bench)
    sa, _ = scored_accuracy(runs, a, bench)
    sb, _ = scored_accuracy(runs, b, bench)
    both = sorted(set(sa.index) & set(sb.index))
    d = (sa[both] - sb[both]) if both else pd.Series(dtype=float)
    step, step_src = measures.accuracy_step(bench, data.runs[data.runs["benchmark"] == bench])
    sup, con, fail = failure_blocks(data, "final", bench, a, b)
    what = f"{name(a)} − {name(b)}"
    dec, res, fields = judge_paired(ctx, cid, key, d, direction=+1, digits=2, unit=" points", quantum=step,
                                    planning_sd=planning_sd(sa[both], sb[both]) if both else math.nan,
                                    blocks=(sup, con), what=what, claimed=claimed)
    measured = (_means_text(runs, bench, (a, b)) + f"; {what} = {interval_text(res, 2, ' points')}"
                + (f"; accuracy step {step:g} points ({step_src})" if step else "") + _failures_text(runs, bench))
    for extra in (fail, replay_note(data, bench, (a, b))):
        if extra:
            measured += f"; {extra}"
    return measured, dec, res, fields


def accuracy_claim(ctx: Context, cid: str, bench: str, hint: str) -> ClaimResult:
    data = ctx.data
    runs = data.usable("final", bench)
    if not len(runs) or not {AMGT, ADAM} <= set(runs["optimizer"]):
        return ctx.result(cid, "", NOT_MEASURED,
                          absent(data, "final", f"no final-phase runs of both AMGT and Adam on {bench}{hint}"), bench)
    measured, dec, res, fields = paired_accuracy(ctx, bench, AMGT, ADAM, cid, cid)
    if res.n < 2:
        return ctx.result(cid, measured, NOT_MEASURED, f"only {res.n} matched seed(s) of AMGT and Adam on {bench}",
                          bench, **fields)
    return ctx.result(cid, measured, dec.verdict, dec.reason, bench, **fields)


def c1(ctx):
    return accuracy_claim(ctx, "C1", "mnist-lenet5", "")


def c2(ctx):
    return accuracy_claim(ctx, "C2", "cifar10-resnet18", " (needs a GPU and the CIFAR-10 data set)")


def c3(ctx):
    return accuracy_claim(ctx, "C3", "imagenet-resnet50", " (needs GPUs and the ImageNet data set)")


def _ratio_show(lo: float, hi: float) -> str:
    a, b = sorted((math.exp(-lo), math.exp(-hi)))
    return f"[{a:.2f}, {b:.2f}]"


def _part_a(ctx: Context, runs: pd.DataFrame, bench: str):
    cs, s = ctx.cs("C4"), ctx.settings
    a, _ = scored_accuracy(runs, AMGT, bench)
    b, _ = scored_accuracy(runs, ADAM, bench)
    step, _ = measures.accuracy_step(bench, ctx.data.runs[ctx.data.runs["benchmark"] == bench])
    res = ev.sd_ratio(a, b, delta_ratio=cs.sesoi, paper_ratio=cs.paper_effect, min_n=cs.min_n, alpha=s.alpha,
                      power=s.power, quantum=step)
    sup, con, _ = failure_blocks(ctx.data, "final", bench, AMGT, ADAM)
    dec = decide(res.evidence, -math.log(cs.sesoi), -math.log(cs.paper_effect), show=_ratio_show,
                 point=lambda x: f"{math.exp(-x):.2f}", guards=res.guards, blocks_support=sup,
                 blocks_contradiction=con, alpha=s.alpha)
    sds = {o: scored_accuracy(runs, o, bench)[0].std(ddof=1) for o in sorted(runs["optimizer"].dropna().unique())}
    ci = f" [{res.ci[0]:.2f}, {res.ci[1]:.2f}]" if all(map(math.isfinite, res.ci)) else " (no CI)"
    text = ("(a) σ across seeds of final test accuracy (points): "
            + ", ".join(f"{name(o)} {v:.3f}" for o, v in sds.items() if np.isfinite(v))
            + f"; σ_AMGT/σ_Adam = {res.estimate:.2f}{ci} (F test, n = {res.n}"
            + (f", p = {res.p:.3g}" if math.isfinite(res.p) else "") + ")")
    fmt = (lambda r: f"ratio {r:.2f}")
    power = res.power.text(fmt, effect=f"the paper's ratio {cs.paper_effect:.2f}")
    verdict = dec.verdict if res.n >= 2 else NOT_MEASURED
    reason = dec.reason if res.n >= 2 else "fewer than 2 seeds per optimizer"
    return verdict, reason, text, power, res, dec


def _part_b(ctx: Context, runs: pd.DataFrame):
    col = "val_acc_sd_detrended"
    a = runs[runs.optimizer == AMGT].groupby("seed")[col].mean()
    b = runs[runs.optimizer == ADAM].groupby("seed")[col].mean()
    j = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner")
    j = j[np.isfinite(j["a"]) & np.isfinite(j["b"]) & (j["a"] > 0) & (j["b"] > 0)]
    if len(j) < 2:
        why = ("needs per-epoch val_accuracy with ≥ 4 epochs in the last half of training (≥ 7 epochs)"
               if len(ctx.data.histories) else "needs per-epoch histories (none loaded)")
        return NOT_MEASURED, why, "(b) σ over epochs (detrended): n/a", "", None
    d = np.log(j["a"]) - np.log(j["b"])
    dec, res, fields = judge_paired(ctx, "C4", "C4b", d, direction=-1, digits=2, unit="", scale="log",
                                    what="ln σ ratio over epochs")
    text = (f"(b) σ over epochs of val accuracy about its trend, AMGT/Adam = "
            f"{interval_text(res, 2, '', transform=math.exp)}")
    return dec.verdict, dec.reason, text, fields["power"], fields


def c4(ctx: Context) -> ClaimResult:
    bench, runs, missing = final_phase(ctx, "C4")
    if missing is not None:
        return missing
    va, ra, ta, pa, res_a, dec_a = _part_a(ctx, runs, bench)
    vb, rb, tb, pb, fb = _part_b(ctx, runs)
    verdict = combine({"a": va, "b": vb})
    note = replay_note(ctx.data, bench, (AMGT, ADAM))
    measured = f"{ta}; {tb}" + (f"; {note}" if note else "")
    power = f"(a) {pa}" + (f"; (b) {pb}" if pb else "")
    return ctx.result("C4", measured, verdict, f"part (a): {va}: {ra}; part (b): {vb}: {rb}", bench, power=power,
                      n=res_a.n, min_n=ctx.cs("C4").min_n, p=res_a.p, p_test="F test (part a)",
                      mde=res_a.power.mde, seeds_needed=f"{res_a.power.needed} / {res_a.power.needed_supported}",
                      interval_alone=dec_a.interval_alone,
                      effect=(f"(a) σ across seeds: ratio {effect_text(res_a, 2, '')}; "
                              f"(b) σ over epochs: {(fb or {}).get('effect', 'n/a')}"),
                      mde_text=f"ratio {res_a.power.mde:.2f}" if math.isfinite(res_a.power.mde) else "")
