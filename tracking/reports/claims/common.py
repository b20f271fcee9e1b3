"""What every claim rule shares: the paper's numbers, the claim-result record, run selection, the failure
rule (a diverged or failed run is a failure, never dropped) and the power/decision helpers."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .. import evidence as ev
from .. import measures
from ..data import ReportData
from ..verdicts import (BENCHMARK_DIFFERS, CONTRADICTED, EQUIVALENT, INCONCLUSIVE, NOT_MEASURED, NOT_SUPPORTED,
                        RULED_OUT, SUPPORTED, ClaimSettings, Decision, VerdictSettings, decide)

#: Verdicts that decide a claim (the guard of ``Context.result`` turns them inconclusive below ``min_n``).
DECISIVE = (SUPPORTED, NOT_SUPPORTED, CONTRADICTED, EQUIVALENT, RULED_OUT)
from .rules import CLAIMS, rules

__all__ = ["AMGT", "ADAM", "PAPER_BENCHMARKS", "PAPER_EPOCHS", "PAPER_ACCURACY", "NAMES", "ClaimResult", "Context",
           "name", "per_seed", "effect_text", "pick", "absent", "final_phase", "scored_accuracy", "failure_blocks",
           "judge_paired",
           "PAPER_SETUP_CLAIMS", "benchmark_guard"]

AMGT, ADAM = "amgt", "adam"
PAPER_BENCHMARKS = ("mnist-lenet5", "cifar10-resnet18", "imagenet-resnet50")
NAMES = {"amgt": "AMGT", "adam": "Adam", "rmsprop": "RMSProp", "sgd": "SGD+momentum", "amsgrad": "AMSGrad",
         "adabelief": "AdaBelief", "adamw": "AdamW"}
#: Table 4.2 of the paper: final test accuracy (%) per benchmark and optimizer.
PAPER_ACCURACY = {
    "mnist-lenet5": {"amgt": 99.2, "adam": 99.0, "rmsprop": 98.9, "sgd": 98.7},
    "cifar10-resnet18": {"amgt": 87.3, "adam": 86.2, "rmsprop": 85.0, "sgd": 83.1},
    "imagenet-resnet50": {"amgt": 77.0, "adam": 75.6, "rmsprop": 74.1, "sgd": 73.4},
}
#: The paper's training length per benchmark (section 4: MNIST 30 epochs, CIFAR-10 100, ImageNet 90).
PAPER_EPOCHS = {"mnist-lenet5": 30, "cifar10-resnet18": 100, "imagenet-resnet50": 90}
#: Claims about the paper's experiments: judged only on its benchmarks (C14 also on the non-convex test
#: function rosenbrock, as docs/paper-claims.md plans). C6 (buffers per parameter) is a property of the
#: algorithm, judged on any benchmark; C1–C3 name their benchmark; C11–C13 are exact computations.
PAPER_SETUP_CLAIMS = {**{c: PAPER_BENCHMARKS for c in ("C4", "C5", "C7", "C8", "C9", "C10", "C15")},
                      "C14": ("rosenbrock",) + PAPER_BENCHMARKS}


@dataclass
class ClaimResult:
    """One row of the claims table. ``power``: what the data could detect, in words (every empirical
    verdict has one); ``n``: units behind the verdict; ``p``/``p_test``: the p-value of the test behind the
    interval and its name; ``p_wilcoxon``: shown beside (paired claims); ``mde``: minimum detectable effect
    (claim units); ``seeds_needed``: units needed for the paper's effect (detect / 'supported');
    ``interval_alone``: the verdict the interval would give without the guards. ``effect``: the measured
    effect and its 95 % interval, short, in the claim's unit (e.g. "0.07 [-0.02, 0.16] points"; empty for exact
    rules); ``mde_text``: the MDE in the same unit. Both are for display (the report's first table); no verdict
    reads them."""

    id: str
    claim: str
    paper: str
    measured: str
    verdict: str
    reason: str
    rule: str
    benchmark: str = ""
    caveat: str = ""
    power: str = ""
    n: float = math.nan
    min_n: float = math.nan
    p: float = math.nan
    p_test: str = ""
    p_wilcoxon: float = math.nan
    mde: float = math.nan
    seeds_needed: str = ""
    interval_alone: str = ""
    effect: str = ""
    mde_text: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Context:
    """The data a claim is judged on and the report's decision settings."""

    data: ReportData
    settings: VerdictSettings

    def cs(self, key: str) -> ClaimSettings:
        return self.settings.claim(key)

    def result(self, cid: str, measured: str, verdict: str, reason: str, benchmark: str = "", **extra) -> ClaimResult:
        """The claim's result. One guard for every claim: a decisive verdict from fewer than the pre-registered
        minimum (``n`` < ``min_n``, both given) is ``inconclusive``, the rule's own verdict kept in the reason and
        in ``interval_alone`` (so "not supported" is never read off data that could not decide)."""
        claim, paper = CLAIMS[cid]
        n, min_n = extra.get("n", math.nan), extra.get("min_n", math.nan)
        if verdict in DECISIVE and math.isfinite(n) and math.isfinite(min_n) and n < min_n:
            extra.setdefault("interval_alone", verdict)
            reason = (f"n = {n:g} < the pre-registered minimum {min_n:g} (the rule alone: {verdict}: {reason})")
            verdict = INCONCLUSIVE
        return ClaimResult(cid, claim, paper, measured, verdict, reason, rules(self.settings)[cid], benchmark, **extra)


def name(opt: str) -> str:
    return NAMES.get(opt, opt)


def per_seed(runs: pd.DataFrame, optimizer: str, column: str, scale: float = 1.0) -> pd.Series:
    r = runs[runs["optimizer"] == optimizer]
    return (r.groupby("seed")[column].mean() * scale).dropna()


def pick(data: ReportData, phase, preferred: Sequence[str], optimizers=(AMGT, ADAM)) -> str | None:
    runs = data.usable(phase)
    have = [b for b in runs["benchmark"].dropna().unique()
            if all((runs[(runs["benchmark"] == b)]["optimizer"] == o).any() for o in optimizers)]
    for b in preferred:
        if b in have:
            return b
    return sorted(have)[0] if have else None


def absent(data: ReportData, phase: str, what: str) -> str:
    runs = data.usable(phase)
    if not len(runs):
        return f"no {phase}-phase runs in studies {', '.join(data.studies)}"
    present = ", ".join(f"{b}: {', '.join(sorted(g['optimizer'].dropna().unique()))}"
                        for b, g in runs.groupby("benchmark"))
    return f"{what} (measured in the {phase} phase: {present})"


def final_phase(ctx: Context, cid: str) -> tuple[str | None, pd.DataFrame | None, ClaimResult | None]:
    """The benchmark judged on (a paper benchmark first) and its usable final-phase runs; or, when no
    benchmark has final-phase runs of both AMGT and Adam, ``(None, None, <cid not measured, with why>)``."""
    bench = pick(ctx.data, "final", PAPER_BENCHMARKS)
    if bench is None:
        return None, None, ctx.result(cid, "", NOT_MEASURED, absent(ctx.data, "final", "no benchmark with "
                                                                    "final-phase runs of both AMGT and Adam"))
    return bench, ctx.data.usable("final", bench), None


def scored_accuracy(runs: pd.DataFrame, optimizer: str, benchmark: str) -> tuple[pd.Series, int]:
    """Per-seed test accuracy (points) with the failure rule: a diverged run without an accuracy scores
    ``measures.failure_score`` (chance). Returns (series by seed, number of runs scored so)."""
    r = runs[runs["optimizer"] == optimizer]
    score = r["test_accuracy"] * 100
    failed = score.isna() & (r["outcome"] == "diverged")
    score = score.mask(failed, measures.failure_score(benchmark, runs))
    return score.groupby(r["seed"]).mean().dropna(), int(failed.sum())


def failure_blocks(data: ReportData, phase: str, bench: str, a: str, b: str) -> tuple[str, str, str]:
    """(blocks "supported", blocks "contradicted", summary) from the failure count rule: a diverged or failed
    seed of ``a`` more than ``b`` has forbids "supported"; the mirror forbids "contradicted". Runs replaying
    their selection are not counted (they are not in the statistics)."""
    runs = data.runs[(data.runs["phase"] == phase) & (data.runs["benchmark"] == bench)]
    if data.overlap_rule == "exclude" and "selection_overlap" in runs:
        runs = runs[runs["selection_overlap"].fillna("") == ""]

    def count(opt):
        r = runs[runs["optimizer"] == opt]
        return int(r[r["outcome"].isin(("diverged", "failed"))]["seed"].nunique())

    fa, fb = count(a), count(b)
    summary = f"failed or diverged seeds: {name(a)} {fa}, {name(b)} {fb}" if fa or fb else ""
    sup = (f"{name(a)} failed or diverged on {fa} seed(s), {name(b)} on {fb}: the failure count forbids "
           "'supported'") if fa > fb else ""
    con = (f"{name(b)} failed or diverged on {fb} seed(s), {name(a)} on {fa}: the failure count forbids "
           "'contradicted'") if fb > fa else ""
    return sup, con, summary


def _fmt_num(x: float, digits: int) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:+.{digits}f}"


def judge_paired(ctx: Context, cid: str, key: str, d: pd.Series, *, direction: int, digits: int, unit: str,
                 quantum: float | None = None, planning_sd: float = math.nan, blocks: tuple[str, str] = ("", ""),
                 scale: str = "additive", what: str = "the differences",
                 units: str = "seeds", claimed: str = "the paper's direction") -> tuple[Decision, ev.Result, dict]:
    """The shared path of every paired claim: evidence (``evidence.paired``), the decision
    (``verdicts.decide``) and the ClaimResult power fields. ``d``: per-unit differences in the claim's
    measured unit (natural direction); ``unit``: its name in texts. scale: how the claim's settings map onto
    d: "additive" (δ = sesoi, d in the settings' unit), "log1p" (d a log ratio, sesoi a relative change:
    δ = ln(1 + sesoi)), "log" (d a log ratio, sesoi a ratio < 1: δ = −ln(sesoi)); log scales show ratios.
    claimed: the direction the verdict's reason names (``verdicts.decide``)."""
    cs = ctx.cs(key)
    s = ctx.settings
    quantum = max(quantum or 0.0, 0.0) or None
    paper = cs.paper_effect
    transform = None
    if scale == "additive":
        delta = max(cs.sesoi, quantum or 0.0)
    else:
        transform = math.exp
        f = (lambda v: math.log(1 + v)) if scale == "log1p" else (lambda v: -math.log(v))
        delta, paper, quantum = f(cs.sesoi), (None if paper is None else f(paper)), None
    t = transform or (lambda x: x)
    res = ev.paired(d, direction=direction, delta=delta, paper=paper, min_n=cs.min_n, alpha=s.alpha, power=s.power,
                    quantum=quantum, planning_sd=planning_sd, unit=units, what=what)

    def show(lo, hi):
        a, b = sorted((t(direction * lo), t(direction * hi)))
        return f"[{a:.{digits}f}, {b:.{digits}f}]{unit}"

    def point(x):
        return f"{t(direction * x):.{digits}f}{unit}" if transform else f"{direction * x:+.{digits}f}{unit}"

    dec = decide(res.evidence, delta, paper, show=show, point=point, guards=res.guards, blocks_support=blocks[0],
                 blocks_contradiction=blocks[1], alpha=s.alpha, claimed=claimed)
    target = delta if paper is None else paper
    effect = (f"the paper's {point(target)}" if cs.paper_effect is not None
              else f"the smallest effect of interest {point(target)} (no paper effect)")
    mde_fmt = (lambda x: f"{(math.exp(x) - 1) * 100:.1f} %") if transform else (lambda x: f"{x:.{digits}f}{unit}")
    fields = dict(power=res.power.text(mde_fmt, unit=units, effect=effect), n=res.n, min_n=cs.min_n, p=res.p,
                  p_test=res.test, p_wilcoxon=res.p_wilcoxon, mde=res.power.mde,
                  seeds_needed=f"{_n(res.power.needed)} / {_n(res.power.needed_supported)}",
                  interval_alone=dec.interval_alone,
                  effect=("ratio " if transform else "") + effect_text(res, digits, unit, transform),
                  mde_text=mde_fmt(res.power.mde) if math.isfinite(res.power.mde) else "")
    return dec, res, fields


def _n(x) -> str:
    from ..power import MAX_UNITS

    return "n/a" if x is None else (f">{MAX_UNITS}" if x > MAX_UNITS else str(x))


def effect_text(res: ev.Result, digits: int, unit: str, transform: Callable[[float], float] | None = None) -> str:
    """"est [lo, hi] unit" in natural units ("n/a" without an estimate)."""
    t = transform or (lambda x: x)
    if not math.isfinite(res.estimate):
        return "n/a"
    lo, hi = res.ci
    ci = (f" [{t(lo):.{digits}f}, {t(hi):.{digits}f}]{unit}" if math.isfinite(lo) else
          f"{unit} (no CI: zero spread)" if res.sd == 0 else f"{unit} (no CI)")
    return f"{t(res.estimate):.{digits}f}{ci}"


def interval_text(res: ev.Result, digits: int, unit: str, transform: Callable[[float], float] | None = None) -> str:
    """"est [lo, hi] unit (paired t, n = 3, p = …; Wilcoxon p = …)" in natural units."""
    if not math.isfinite(res.estimate):
        return "n/a"
    p = f", p = {res.p:.3g}" if math.isfinite(res.p) else ""
    w = f"; Wilcoxon p = {res.p_wilcoxon:.3g}" if math.isfinite(res.p_wilcoxon) else ""
    return f"{effect_text(res, digits, unit, transform)} ({res.test}, n = {res.n}{p}{w})"


def benchmark_guard(res: ClaimResult) -> ClaimResult:
    """A claim about the paper's experiments judged on another benchmark: "not measured (benchmark
    differs)", the measurement and what the rule would have said kept in the row."""
    allowed = PAPER_SETUP_CLAIMS.get(res.id)
    if not allowed or not res.benchmark or res.benchmark in allowed or res.verdict in (NOT_MEASURED, BENCHMARK_DIFFERS):
        return res
    res.reason = (f"benchmark differs: {res.benchmark} is not one of the paper's "
                  f"({', '.join(allowed)}); on it the rule gives: {res.verdict} ({res.reason})")
    res.verdict = BENCHMARK_DIFFERS
    return res


def planning_sd(a: pd.Series, b: pd.Series) -> float:
    """√(s_a² + s_b²): the spread of a difference of two independent runs (the unpaired bound), used to size
    power when the paired spread is degenerate."""
    sa = float(np.std(a.to_numpy(float), ddof=1)) if len(a) >= 2 else math.nan
    sb = float(np.std(b.to_numpy(float), ddof=1)) if len(b) >= 2 else math.nan
    return math.sqrt(sa ** 2 + sb ** 2) if math.isfinite(sa) and math.isfinite(sb) else math.nan


def replay_note(data: ReportData, bench: str, optimizers: Sequence[str]) -> str:
    """Which final-phase runs of ``optimizers`` replay their selected search trial, and what the overlap rule
    did with them ("" when none)."""
    r = data.replayed(bench)
    r = r[r["optimizer"].isin(list(optimizers))]
    if not len(r):
        return ""
    who = ", ".join(f"{name(o)} seed {', '.join(str(int(s)) for s in sorted(g['seed'].dropna().unique()))}"
                    for o, g in r.groupby("optimizer"))
    done = "left out" if data.overlap_rule == "exclude" else "kept (overlap rule 'flag')"
    return f"{done}: {who} (replays the selected search trial: winner's curse)"


def no_power_fields(n: int, min_n: int, text: str) -> dict:
    """ClaimResult power fields of a rule that is not a test (exact counts, per-run thresholds)."""
    return dict(power=text, n=n, min_n=min_n)
