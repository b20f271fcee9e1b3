"""The paper's claims C1–C15 (``docs/paper-claims.md``) judged against measured runs.

Each claim has one rule, written in ``RULES`` (the report prints it beside the verdict) and implemented in
the function named ``_c<N>``. Verdicts: ``supported``, ``not supported``, ``contradicted`` (the data says
the opposite), ``not measured`` (with the reason: which benchmark, phase or optimizer is absent).
Accuracies are compared in percentage points (the metrics are fractions in [0, 1], × 100), intervals are
95 % (``tracking.reports.stats``), and "paired" means matched by seed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from . import stats
from .data import ReportData

__all__ = ["ClaimResult", "CLAIMS", "RULES", "VERDICTS", "evaluate_claims", "PAPER_BENCHMARKS", "PAPER_EPOCHS",
           "CAVEAT_RULE", "training_caveat"]

VERDICTS = ("supported", "not supported", "contradicted", "not measured")
SUPPORTED, NOT_SUPPORTED, CONTRADICTED, NOT_MEASURED = VERDICTS
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
#: A verdict carries a caveat when its runs trained for less than this fraction of the paper's epochs.
SHORT_FRACTION = 0.5
#: The phases whose runs a claim rests on (for its caveat); C11–C13 are exact computations, no caveat.
CLAIM_PHASES = {**{c: ("final",) for c in ("C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C15")},
                "C9": ("ablation",), "C10": ("grid",), "C14": ("final", "grid", "ablation")}
CAVEAT_RULE = ("Caveat (column 'caveat'; it never changes a verdict): a verdict resting on trial runs that were "
               "capped (max_steps set: at most that many optimizer steps in the whole trial), that trained for fewer than "
               f"{SHORT_FRACTION:.0%} of the paper's epochs ("
               + ", ".join(f"{b} {e}" for b, e in PAPER_EPOCHS.items())
               + "), or that ran on a benchmark the paper does not use, says so. Such a verdict is about the "
               "short run measured, not about the paper's setup.")

#: id -> (claim, paper value)
CLAIMS = {
    "C1": ("MNIST / LeNet-5 test accuracy (Table 4.2)", "AMGT 99.2, Adam 99.0, RMSProp 98.9, SGD 98.7 %"),
    "C2": ("CIFAR-10 / ResNet-18 test accuracy (Table 4.2)", "AMGT 87.3, Adam 86.2, RMSProp 85.0, SGD 83.1 %"),
    "C3": ("ImageNet subset / ResNet-50 top-1 (Table 4.2)", "AMGT 77.0, Adam 75.6, RMSProp 74.1, SGD 73.4 %"),
    "C4": ("Convergence stability ±σ (Table 4.2)", "AMGT 0.006, Adam 0.009, RMSProp 0.012, SGD 0.014"),
    "C5": ("Time per epoch and overhead (Table 4.3; complexity section)",
           "CIFAR-10: Adam 29.8 s, AMGT 32.5 s (ratio 1.091); overhead 5–10 % and 1.8–3.2 %"),
    "C6": ("GPU memory; optimizer state 4n vs 3n (Table 4.3)",
           "Adam 1470 MB, AMGT 1560 MB (ratio 1.061); state 4n/3n = 1.333"),
    "C7": ("Faster early loss reduction", "~18 % fewer epochs to an equivalent training loss"),
    "C8": ("Less total training time to target accuracy", "~15 % less time than Adam"),
    "C9": ("Ablation (section 4.9)",
           "no thresholding: oscillatory; no step-size schedule: plateau, 1–2 % lower accuracy"),
    "C10": ("Robust to learning-rate variation", "\"resilience to learning rate perturbations\" (no number)"),
    "C11": ("Quadratic 4.10.1: eigenvalues, GD stability, fastest step (Table 4.4)",
            "eigenvalues 2, 6; GD converges iff η < 1/3; η = 0.3 fastest"),
    "C12": ("Quadratic 4.10.2: eigenvalues, optimal step", "eigenvalues 1.17, 4.83; α_opt ≈ 0.33"),
    "C13": ("Strongly convex, α_k = 1/(μk)", "‖x_k − x*‖ ≤ C·k^(−μ/2), called \"linear convergence\""),
    "C14": ("Non-convex: min_k E‖∇f(x_k)‖² → 0", "→ 0 (no number)"),
    "C15": ("AMGT's loss trajectory is smoother than Adam's (Figs. 4.1–4.4)", "smoother (no number)"),
}

_ACC = ("supported iff AMGT's mean final test accuracy ≥ Adam's and the 95 % t-interval of the paired "
        "difference AMGT − Adam (final phase, matched seeds) lies wholly above 0; contradicted iff it lies "
        "wholly below 0; not supported otherwise; not measured when {bench} has no final-phase runs of both "
        "AMGT and Adam, or fewer than 2 matched seeds.")
RULES = {
    "C1": _ACC.format(bench="mnist-lenet5"),
    "C2": _ACC.format(bench="cifar10-resnet18"),
    "C3": _ACC.format(bench="imagenet-resnet50"),
    "C4": ("σ = sample standard deviation (ddof 1) across seeds of the final test accuracy (final phase). "
           "supported iff the 95 % F-interval of σ_AMGT/σ_Adam lies wholly below 1; contradicted iff wholly "
           "above 1; not supported otherwise; not measured with < 2 seeds each. Judged on the first of "
           "mnist-lenet5, cifar10-resnet18, imagenet-resnet50 measured, else the first benchmark measured. "
           "Also shown, not judged: the mean over seeds of σ of the last 5 epochs' validation loss."),
    "C5": ("ratio r = median time per epoch AMGT / Adam in the same study (unit: each final-phase run's median "
           "epoch time; the individual epochs when an optimizer has < 2 runs), 95 % percentile-bootstrap "
           "interval. supported iff the interval's upper end ≤ 1.10 (overhead within the paper's 10 %); "
           "contradicted iff its lower end > 1.10; not supported otherwise (or when no interval is possible). "
           "Judged on cifar10-resnet18 when measured (the paper's table), else the first benchmark measured."),
    "C6": ("S = median optimizer_state_bytes per optimizer (final phase). Adam holds 2 n-sized buffers "
           "(exp_avg, exp_avg_sq), so n = S_Adam/2 and AMGT's extra buffers e = (S_AMGT − S_Adam)/n; the paper's "
           "4n/3n counts the parameters too: (n + S_AMGT)/(n + S_Adam). supported iff |e − 1| ≤ 0.02; "
           "contradicted iff e < 0.5 or e > 1.5; not supported otherwise. Peak memory ratio shown, not judged."),
    "C7": ("per seed, reduction d = 100·(1 − x_AMGT/x_Adam) % in steps to the target training loss "
           "(target_train_loss_step; epochs when steps are absent), final phase. supported iff the 95 % "
           "t-interval of mean d lies wholly above 0; contradicted iff wholly below 0; not supported otherwise; "
           "not measured with < 2 seeds where both reached the target (the counts where only one did are shown)."),
    "C8": ("as C7 with the wall time to the target validation accuracy (target_val_accuracy_time_s)."),
    "C9": ("ablation phase, paired by seed. (a) oscillation: mean over epochs of loss_oscillation, "
           "amgt-no-threshold − amgt; (b) accuracy drop: amgt − amgt-no-decay, in points. Part (a) supports iff "
           "its 95 % t-interval lies wholly above +m, contradicts iff wholly below −m, with the margin m = 5 % "
           "of full AMGT's mean oscillation; part (b) supports iff its "
           "interval lies wholly above 0 and reaches 1 point (the paper's 1–2 %), contradicts iff wholly below 0. "
           "supported iff both parts support; contradicted iff either contradicts; not supported otherwise; not "
           "measured without ablation runs of amgt, amgt-no-threshold and amgt-no-decay (≥ 2 seeds)."),
    "C10": ("grid phase: for each optimizer, the mean final test accuracy per learning rate (over seeds); "
            "width W = log10(lr_hi/lr_lo) in decades of the contiguous lr range around the best grid point "
            "whose mean is within 1 point of the best. supported iff the 95 % bootstrap interval (seeds "
            "resampled per lr) of W_AMGT − W_Adam lies wholly above 0; contradicted iff wholly below 0; not "
            "supported otherwise; not measured without grid runs of both with ≥ 2 seeds per lr. A diverged run "
            "without an accuracy scores 0 (no usable model)."),
    "C11": ("exact computation (quadratic study facts): eigenvalues of the Hessian (±0.01), GD stability limit "
            "2/λmax (±0.001) and the fixed step with the smallest contraction max|1 − ηλ| among the steps "
            "computed. supported iff every stated value agrees; contradicted iff any disagrees (the reason says "
            "which parts hold); not measured without a quadratic study."),
    "C12": ("as C11 for 4.10.2: eigenvalues (±0.01) and α_opt = 2/(λmin + λmax) (±0.005)."),
    "C13": ("from the quadratic facts' fits of log‖x_k − x*‖ against log k under α_k = 1/(μk): the rate is "
            "linear only if the ratio of successive distances stays below 1 (≤ 0.99 at the last step); the bound "
            "C·k^(−μ/2) holds on a problem iff the fitted slope with gradient noise ≤ −μ/2 + 0.05. supported iff "
            "linear and the bound holds on every problem; contradicted iff the ratio → 1 (sublinear, so not "
            "'linear convergence') or the bound fails on a problem; not supported otherwise."),
    "C14": ("for AMGT runs, the running minimum of the squared gradient norm relative to its first-epoch value, "
            "q = min_k g_k² / g_1², over runs with ≥ 3 epochs; g_k = grad_norm (‖∇f‖ at the epoch's last iterate, "
            "noise-free) on function benchmarks, else grad_norm_mean (mean of the per-step norms). "
            "supported iff q ≤ 0.1 in every run; contradicted iff q = 1 (never below the start) in most runs; "
            "not supported "
            "otherwise. Judged on rosenbrock (non-convex test function) when measured, else mnist-lenet5, "
            "else the first non-quadratic benchmark with AMGT runs (any phase but search)."),
    "C15": ("loss oscillation = mean over epochs of loss_oscillation (mean |second difference| of the per-step "
            "loss over the mean |loss|), final phase, paired by seed. supported iff the 95 % t-interval of "
            "AMGT − Adam lies wholly below −m; contradicted iff wholly above +m, with the margin m = 5 % of Adam's "
            "mean oscillation (a negligible difference decides nothing); not supported otherwise; not "
            "measured with < 2 matched seeds."),
}


@dataclass
class ClaimResult:
    """One row of the claims table."""

    id: str
    claim: str
    paper: str
    measured: str
    verdict: str
    reason: str
    rule: str
    benchmark: str = ""
    caveat: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _name(opt: str) -> str:
    return NAMES.get(opt, opt)


def _per_seed(runs: pd.DataFrame, optimizer: str, column: str, scale: float = 1.0) -> pd.Series:
    r = runs[runs["optimizer"] == optimizer]
    return (r.groupby("seed")[column].mean() * scale).dropna()


def _pick(data: ReportData, phase, preferred: Sequence[str], optimizers=(AMGT, ADAM)) -> str | None:
    runs = data.usable(phase)
    have = [b for b in runs["benchmark"].dropna().unique()
            if all((runs[(runs["benchmark"] == b)]["optimizer"] == o).any() for o in optimizers)]
    for b in preferred:
        if b in have:
            return b
    return sorted(have)[0] if have else None


def _absent(data: ReportData, phase: str, what: str) -> str:
    runs = data.usable(phase)
    if not len(runs):
        return f"no {phase}-phase runs in studies {', '.join(data.studies)}"
    present = ", ".join(f"{b}: {', '.join(sorted(g['optimizer'].dropna().unique()))}"
                        for b, g in runs.groupby("benchmark"))
    return f"{what} (measured in the {phase} phase: {present})"


def _final_phase(data: ReportData, cid: str) -> tuple[str | None, pd.DataFrame | None, ClaimResult | None]:
    """The benchmark judged on (a paper benchmark first) and its usable final-phase runs; or, when no
    benchmark has final-phase runs of both AMGT and Adam, ``(None, None, <cid not measured, with why>)``."""
    bench = _pick(data, "final", PAPER_BENCHMARKS)
    if bench is None:
        return None, None, _result(cid, "", NOT_MEASURED, _absent(data, "final", "no benchmark with final-phase "
                                                                               "runs of both AMGT and Adam"))
    return bench, data.usable("final", bench), None


def _verdict_from_interval(iv: stats.Interval, favour: str, margin: float = 0.0) -> str:
    """favour "above": supported iff the CI lies above +margin, contradicted iff below −margin;
    "below": the mirror image. Anything else: not supported."""
    if not iv.defined:
        return NOT_SUPPORTED
    if iv.low > margin:
        return SUPPORTED if favour == "above" else CONTRADICTED
    if iv.high < -margin:
        return SUPPORTED if favour == "below" else CONTRADICTED
    return NOT_SUPPORTED


#: Oscillation comparisons (C9a, C15) need a difference of at least this fraction of the reference
#: optimizer's mean oscillation: statistically clear but negligible differences decide nothing.
OSCILLATION_MARGIN = 0.05


def _result(cid: str, measured: str, verdict: str, reason: str, benchmark: str = "") -> ClaimResult:
    claim, paper = CLAIMS[cid]
    return ClaimResult(cid, claim, paper, measured, verdict, reason, RULES[cid], benchmark)


# ---- C1–C3 -----------------------------------------------------------------------------------------
def _accuracy_claim(cid: str, bench: str, data: ReportData, hint: str) -> ClaimResult:
    runs = data.usable("final", bench)
    if not len(runs) or not {AMGT, ADAM} <= set(runs["optimizer"]):
        return _result(cid, "", NOT_MEASURED,
                       _absent(data, "final", f"no final-phase runs of both AMGT and Adam on {bench}{hint}"), bench)
    means = {o: stats.t_interval(g["test_accuracy"] * 100) for o, g in runs.groupby("optimizer")}
    pair = stats.paired_difference(_per_seed(runs, AMGT, "test_accuracy", 100),
                                   _per_seed(runs, ADAM, "test_accuracy", 100))
    order = [AMGT, ADAM] + sorted(o for o in means if o not in (AMGT, ADAM))
    measured = "; ".join(f"{_name(o)} {means[o].fmt(2, ' %', bounds=(0.0, 100.0))}"  # fmt flags n < 3 itself
                         + ("" if means[o].defined and means[o].n < 3 else f" (n={means[o].n})") for o in order)
    measured += (f"; AMGT − Adam = {pair.difference.fmt(2)} points, n = {pair.n} seeds, "
                 f"Wilcoxon p = {pair.p_wilcoxon:.3g}")
    div = runs[runs["outcome"] == "diverged"]
    if len(div):
        measured += "; diverged runs: " + ", ".join(
            f"{_name(o)} {len(g)} ({int(g['test_accuracy'].isna().sum())} without an accuracy, not in n)"
            for o, g in div.groupby("optimizer"))
    if pair.n < 2:
        return _result(cid, measured, NOT_MEASURED, f"only {pair.n} matched seed(s) of AMGT and Adam on {bench}",
                       bench)
    side = pair.difference.excludes(0.0)
    if side == "above" and means[AMGT].estimate >= means[ADAM].estimate:
        return _result(cid, measured, SUPPORTED, "the paired difference's 95 % CI lies above 0", bench)
    if side == "below":
        return _result(cid, measured, CONTRADICTED, "the paired difference's 95 % CI lies below 0: Adam is "
                       "more accurate", bench)
    return _result(cid, measured, NOT_SUPPORTED, "the paired difference's 95 % CI includes 0", bench)


def _c1(d):
    return _accuracy_claim("C1", "mnist-lenet5", d, "")


def _c2(d):
    return _accuracy_claim("C2", "cifar10-resnet18", d, " (needs a GPU and the CIFAR-10 data set)")


def _c3(d):
    return _accuracy_claim("C3", "imagenet-resnet50", d, " (needs GPUs and the ImageNet data set)")


# ---- C4 -----------------------------------------------------------------------------------------------
def _c4(data: ReportData) -> ClaimResult:
    bench, runs, absent = _final_phase(data, "C4")
    if absent is not None:
        return absent
    sds = {o: g["test_accuracy"].std(ddof=1) for o, g in runs.groupby("optimizer")}
    last5 = {o: g["val_loss_last5_sd"].mean() for o, g in runs.groupby("optimizer")}
    ratio = stats.sd_ratio_interval(runs[runs.optimizer == AMGT]["test_accuracy"],
                                    runs[runs.optimizer == ADAM]["test_accuracy"])
    measured = ("σ(final test accuracy, fraction): " + ", ".join(f"{_name(o)} {v:.4f}" for o, v in sds.items())
                + f"; σ_AMGT/σ_Adam = {ratio.fmt(2)}; mean σ of last-5-epoch val loss: "
                + ", ".join(f"{_name(o)} " + (f"{v:.4f}" if math.isfinite(v) else "n/a (needs ≥ 2 epochs)")
                            for o, v in last5.items()))
    if not ratio.defined:
        return _result("C4", measured, NOT_MEASURED, "fewer than 2 seeds per optimizer (or σ_Adam = 0)", bench)
    side = ratio.excludes(1.0)
    if side == "below":
        return _result("C4", measured, SUPPORTED, "σ ratio's 95 % CI lies below 1", bench)
    if side == "above":
        return _result("C4", measured, CONTRADICTED, "σ ratio's 95 % CI lies above 1: AMGT varies more", bench)
    return _result("C4", measured, NOT_SUPPORTED, "σ ratio's 95 % CI includes 1", bench)


# ---- C5, C6 ---------------------------------------------------------------------------------------------
def _epoch_time_units(data: ReportData, runs: pd.DataFrame, opt: str) -> tuple[np.ndarray, str]:
    r = runs[runs["optimizer"] == opt]
    per_run = r["epoch_time_median"].dropna().to_numpy()
    if per_run.size >= 2:
        return per_run, "runs"
    epochs = data.curves(r["run_id"], "epoch_time_s")["value"].dropna().to_numpy()
    return (epochs, "epochs") if epochs.size >= 2 else (per_run, "runs")


def _c5(data: ReportData) -> ClaimResult:
    bench = _pick(data, "final", ("cifar10-resnet18",) + PAPER_BENCHMARKS)
    if bench is None:
        return _result("C5", "", NOT_MEASURED, _absent(data, "final", "no benchmark with final-phase runs of both "
                                                                       "AMGT and Adam"))
    runs = data.usable("final", bench)
    a, ua = _epoch_time_units(data, runs, AMGT)
    b, ub = _epoch_time_units(data, runs, ADAM)
    if a.size == 0 or b.size == 0:
        return _result("C5", "", NOT_MEASURED, f"no epoch_time_s recorded on {bench}", bench)
    ratio = stats.ratio_of_medians(a, b)
    devices = ", ".join(sorted(set(runs["device"].dropna().astype(str)))) or "unknown device"
    where = ("within 1.8–3.2 %" if 1.018 <= ratio.estimate <= 1.032 else
             "within 5–10 %" if 1.05 <= ratio.estimate <= 1.10 else "outside both of the paper's ranges")
    measured = (f"median epoch time AMGT {np.median(a):.3g} s, Adam {np.median(b):.3g} s; ratio {ratio.fmt(3)} "
                f"(overhead {100 * (ratio.estimate - 1):+.1f} %, {where}); units: {ua}/{ub}; on {devices}")
    if not ratio.defined:
        return _result("C5", measured, NOT_SUPPORTED, "no interval possible (fewer than 2 units per optimizer)",
                       bench)
    if ratio.high <= 1.10:
        return _result("C5", measured, SUPPORTED, "the ratio's 95 % CI stays ≤ 1.10", bench)
    if ratio.low > 1.10:
        return _result("C5", measured, CONTRADICTED, "the ratio's 95 % CI lies above 1.10: more overhead than "
                       "the paper states", bench)
    return _result("C5", measured, NOT_SUPPORTED, "the ratio's 95 % CI straddles 1.10", bench)


def _c6(data: ReportData) -> ClaimResult:
    bench, runs, absent = _final_phase(data, "C6")
    if absent is not None:
        return absent
    s_amgt = runs[runs.optimizer == AMGT]["optimizer_state_bytes"].median()
    s_adam = runs[runs.optimizer == ADAM]["optimizer_state_bytes"].median()
    if not (np.isfinite(s_amgt) and np.isfinite(s_adam)) or s_adam <= 0:
        return _result("C6", "", NOT_MEASURED, f"optimizer_state_bytes not recorded for AMGT and Adam on {bench}",
                       bench)
    n = s_adam / 2.0
    extra = (s_amgt - s_adam) / n
    paper_ratio = (n + s_amgt) / (n + s_adam)
    peak = (runs[runs.optimizer == AMGT]["peak_memory_bytes"].median()
            / runs[runs.optimizer == ADAM]["peak_memory_bytes"].median())
    measured = (f"state bytes AMGT {s_amgt:,.0f}, Adam {s_adam:,.0f}: AMGT adds {extra:.3f} n-sized buffers; "
                f"(params + state) ratio {paper_ratio:.3f} vs 4/3 = 1.333; peak memory ratio {peak:.3f} "
                f"(paper 1560/1470 = 1.061)")
    if abs(extra - 1.0) <= 0.02:
        return _result("C6", measured, SUPPORTED, "AMGT holds exactly one extra n-sized buffer (4n vs 3n)", bench)
    if extra < 0.5 or extra > 1.5:
        return _result("C6", measured, CONTRADICTED, f"AMGT holds {extra:.2f} extra n-sized buffers, not 1", bench)
    return _result("C6", measured, NOT_SUPPORTED, f"{extra:.2f} extra buffers: between the rule's bounds", bench)


# ---- C7, C8 ------------------------------------------------------------------------------------------------
def _reduction_claim(cid: str, data: ReportData, columns: Sequence[str], what: str, paper_pct: float) -> ClaimResult:
    bench, runs, absent = _final_phase(data, cid)
    if absent is not None:
        return absent
    col = next((c for c in columns if runs[c].notna().any()), None)
    if col is None:
        return _result(cid, "", NOT_MEASURED, f"{' / '.join(columns)} not recorded on {bench} (target never "
                       "reached by any run, or not logged)", bench)
    a, b = _per_seed(runs, AMGT, col), _per_seed(runs, ADAM, col)
    seeds_a = set(runs[runs.optimizer == AMGT]["seed"].dropna())
    seeds_b = set(runs[runs.optimizer == ADAM]["seed"].dropna())
    both = sorted(set(a.index) & set(b.index))
    only_a = len((set(a.index) - set(b.index)) & seeds_b)
    only_b = len((set(b.index) - set(a.index)) & seeds_a)
    d = pd.Series({s: 100.0 * (1.0 - a[s] / b[s]) for s in both if b[s] > 0}, dtype=float)
    iv = stats.t_interval(d)
    measured = (f"{what} ({col}): mean reduction AMGT vs Adam {iv.fmt(1)} % over {iv.n} seeds where both reached "
                f"the target (paper ~{paper_pct:.0f} %); reached by AMGT only: {only_a}, by Adam only: {only_b}")
    if iv.n < 2:
        return _result(cid, measured, NOT_MEASURED, f"fewer than 2 seeds where both reached the target on {bench}",
                       bench)
    verdict = _verdict_from_interval(iv, "above")
    reason = {SUPPORTED: "the reduction's 95 % CI lies above 0",
              CONTRADICTED: "the reduction's 95 % CI lies below 0: AMGT needs more",
              NOT_SUPPORTED: "the reduction's 95 % CI includes 0"}[verdict]
    return _result(cid, measured, verdict, reason, bench)


def _c7(d):
    return _reduction_claim("C7", d, ("target_train_loss_step", "target_train_loss_epoch"),
                            "steps to the target training loss", 18)


def _c8(d):
    return _reduction_claim("C8", d, ("target_val_accuracy_time_s",), "time to the target validation accuracy", 15)


# ---- C9 ------------------------------------------------------------------------------------------------------
def _c9(data: ReportData) -> ClaimResult:
    need = ("amgt", "amgt-no-threshold", "amgt-no-decay")
    bench = _pick(data, "ablation", PAPER_BENCHMARKS, optimizers=need)
    if bench is None:
        return _result("C9", "", NOT_MEASURED, _absent(data, "ablation", "no benchmark with ablation runs of "
                                                                          + ", ".join(need)))
    runs = data.usable("ablation", bench)
    osc = stats.paired_difference(_per_seed(runs, "amgt-no-threshold", "oscillation_mean"),
                                  _per_seed(runs, "amgt", "oscillation_mean"))
    drop = stats.paired_difference(_per_seed(runs, "amgt", "test_accuracy", 100),
                                   _per_seed(runs, "amgt-no-decay", "test_accuracy", 100))
    measured = (f"(a) oscillation no-threshold − full = {osc.difference.fmt(4)} (n={osc.n}); "
                f"(b) accuracy full − no-decay = {drop.difference.fmt(2)} points (n={drop.n})")
    if osc.n < 2 or drop.n < 2:
        return _result("C9", measured, NOT_MEASURED, "fewer than 2 matched seeds in the ablation", bench)
    ref = _per_seed(runs, "amgt", "oscillation_mean").mean()
    a = _verdict_from_interval(osc.difference, "above", OSCILLATION_MARGIN * abs(ref))
    side = drop.difference.excludes(0.0)
    b = (SUPPORTED if side == "above" and drop.difference.high >= 1.0 else
         CONTRADICTED if side == "below" else NOT_SUPPORTED)
    parts = f"part (a): {a}; part (b): {b}"
    if a == SUPPORTED and b == SUPPORTED:
        return _result("C9", measured, SUPPORTED, parts, bench)
    if CONTRADICTED in (a, b):
        return _result("C9", measured, CONTRADICTED, parts, bench)
    return _result("C9", measured, NOT_SUPPORTED, parts, bench)


# ---- C10 -------------------------------------------------------------------------------------------------------
def lr_grid(data: ReportData, bench: str) -> pd.DataFrame:
    """Grid-phase runs of ``bench`` as ``optimizer, lr, seed, score`` (score = test accuracy in points).

    A diverged run without an accuracy scores 0: it left no usable model, which is exactly the failure a
    learning-rate robustness claim is about (dropping it would make a diverging lr look better).
    """
    runs = data.usable("grid", bench)
    if "hp.lr" not in runs:
        return pd.DataFrame(columns=["optimizer", "lr", "seed", "score"])
    score = runs["test_accuracy"] * 100
    score = score.mask(score.isna() & (runs["outcome"] == "diverged"), 0.0)
    return pd.DataFrame({"optimizer": runs["optimizer"], "lr": pd.to_numeric(runs["hp.lr"], errors="coerce"),
                         "seed": runs["seed"], "score": score}).dropna(subset=["lr"])


def _c10(data: ReportData) -> ClaimResult:
    bench = _pick(data, "grid", PAPER_BENCHMARKS)
    if bench is None:
        return _result("C10", "", NOT_MEASURED, _absent(data, "grid", "no learning-rate grid with both AMGT and "
                                                                      "Adam"))
    grid = lr_grid(data, bench)
    widths = {}
    for o, g in grid.groupby("optimizer"):
        m = g.groupby("lr")["score"].mean()
        widths[o] = stats.lr_range_width(m.index.to_numpy(), m.to_numpy())["width"]
    diff = stats.lr_width_difference(grid[grid.optimizer == AMGT], grid[grid.optimizer == ADAM])
    measured = ("width within 1 point of best (decades): " + ", ".join(f"{_name(o)} {w:.2f}" for o, w in widths.items())
                + f"; W_AMGT − W_Adam = {diff.fmt(2)} decades")
    n_lr = grid[grid.optimizer == AMGT]["lr"].nunique()
    if n_lr < 2 or diff.n < 2 or not diff.defined:
        return _result("C10", measured, NOT_MEASURED, f"grid too small on {bench}: {n_lr} learning rates, "
                       f"≥ {diff.n} seeds per lr (need ≥ 2 of each)", bench)
    verdict = _verdict_from_interval(diff, "above")
    reason = {SUPPORTED: "AMGT's good-lr range is wider than Adam's (CI above 0)",
              CONTRADICTED: "AMGT's good-lr range is narrower than Adam's (CI below 0)",
              NOT_SUPPORTED: "the width difference's 95 % CI includes 0"}[verdict]
    return _result("C10", measured, verdict, reason, bench)


# ---- C11–C13 ------------------------------------------------------------------------------------------------------
def _facts(data: ReportData) -> tuple[dict | None, str]:
    for study, facts in data.quadratic_facts.items():
        if isinstance(facts, dict) and facts:
            return facts, study
    return None, ""


def _float(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _close(a: Sequence[float], b: Sequence[float], tol: float) -> bool:
    a, b = sorted(float(x) for x in a), sorted(float(x) for x in b)
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b))


def _c11(data: ReportData) -> ClaimResult:
    facts, study = _facts(data)
    if facts is None or "4.10.1" not in facts:
        return _result("C11", "", NOT_MEASURED, "no quadratic study (with quadratic_facts.json) among the studies")
    f = facts["4.10.1"]
    paper = f.get("paper", {})
    ev_ok = _close(f["eigenvalues"], paper.get("eigenvalues", [2.0, 6.0]), 0.01)
    lim_ok = abs(float(f["gd_stability_limit"]) - float(paper.get("stability_limit", 1 / 3))) <= 1e-3
    fastest_paper = float(paper.get("fastest_step_in_table_4_4", 0.3))
    fastest = [float(x) for x in f.get("fastest_steps_by_contraction", [])]
    fast_ok = any(abs(x - fastest_paper) <= 1e-9 for x in fastest)
    contraction = {round(float(r["lr"]), 9): float(r["contraction"]) for r in f.get("gd", [])}
    measured = (f"eigenvalues {', '.join(f'{x:.4g}' for x in f['eigenvalues'])}; GD stable iff η < "
                f"{float(f['gd_stability_limit']):.4f}; optimal step {float(f['gd_optimal_step']):.4g} (contraction "
                f"{float(f['gd_optimal_contraction']):.3g}); fastest computed step(s) "
                f"{', '.join(f'{x:.4g}' for x in fastest)}; "
                f"contraction at η = 0.1: {contraction.get(0.1, math.nan):.3g}, "
                f"at η = 0.3: {contraction.get(0.3, math.nan):.3g} (exact; study {study})")
    parts = {"eigenvalues": ev_ok, "stability limit": lim_ok, f"η = {fastest_paper:g} fastest": fast_ok}
    return _exact_facts_result("C11", measured, parts)


def _exact_facts_result(claim: str, measured: str, parts: dict[str, bool]) -> ClaimResult:
    """A claim checked against exact computation: supported iff every part agrees, else contradicted; the
    rule text lists each part's agreement."""
    holds = ", ".join(f"{k} {'agrees' if v else 'disagrees'}" for k, v in parts.items())
    return _result(claim, measured, SUPPORTED if all(parts.values()) else CONTRADICTED, holds)


def _c12(data: ReportData) -> ClaimResult:
    facts, study = _facts(data)
    if facts is None or "4.10.2" not in facts:
        return _result("C12", "", NOT_MEASURED, "no quadratic study (with quadratic_facts.json) among the studies")
    f = facts["4.10.2"]
    paper = f.get("paper", {})
    ev_ok = _close(f["eigenvalues"], paper.get("eigenvalues", [1.17, 4.83]), 0.01)
    alpha_ok = abs(float(f["gd_optimal_step"]) - float(paper.get("alpha_opt", 0.33))) <= 0.005
    extra = ""
    if "rapid_convergence_steps" in paper:
        bad = [s for s in paper["rapid_convergence_steps"] if float(s) >= float(f["gd_stability_limit"])]
        if bad:
            extra = f"; the paper's 'rapid' step(s) {', '.join(map(str, bad))} exceed the stability limit (GD diverges)"
    measured = (f"Hessian {f.get('hessian')}, eigenvalues {', '.join(f'{x:.4g}' for x in f['eigenvalues'])} "
                f"(paper writes {paper.get('hessian')} and {paper.get('eigenvalues')}); α_opt = "
                f"{float(f['gd_optimal_step']):.4g}; GD stable iff η < {float(f['gd_stability_limit']):.4f}"
                f"{extra} (exact; study {study})")
    parts = {"eigenvalues": ev_ok, "α_opt": alpha_ok}
    return _exact_facts_result("C12", measured, parts)


def _c13(data: ReportData) -> ClaimResult:
    facts, study = _facts(data)
    if facts is None or "C13" not in facts:
        return _result("C13", "", NOT_MEASURED, "no quadratic study (with quadratic_facts.json) among the studies")
    c13 = {k: v for k, v in facts["C13"].items() if k != "paper" and isinstance(v, dict)}
    ratios, bound_fail, bound_ok, lines = [], [], [], []
    for name, fits in c13.items():
        for mode in ("deterministic", "noisy"):
            fit = fits.get(mode) or {}
            r, s, ps = (_float(fit.get(k)) for k in ("last_ratio", "fitted_slope", "paper_slope"))
            if math.isfinite(r):
                ratios.append(r)
            lines.append(f"{name} {mode}: slope {s:.3f} vs −μ/2 = {ps:.3f}, last ratio {r:.4f}")
            if mode == "noisy" and math.isfinite(s) and math.isfinite(ps):
                (bound_ok if s <= ps + 0.05 else bound_fail).append(name)
    if not ratios:
        return _result("C13", "; ".join(lines), NOT_MEASURED, "the facts hold no finite distance-ratio fits")
    measured = "; ".join(lines) + f" (study {study})"
    sublinear = max(ratios) > 0.99
    reason = (("successive-distance ratio → 1 (max " + f"{max(ratios):.4f}): sublinear, not linear convergence"
               if sublinear else "successive-distance ratios stay below 0.99")
              + (f"; bound k^(−μ/2) violated with gradient noise on {', '.join(bound_fail)}" if bound_fail else "")
              + (f"; bound holds on {', '.join(bound_ok)}" if bound_ok else ""))
    if sublinear or bound_fail:
        return _result("C13", measured, CONTRADICTED, reason)
    if bound_ok:
        return _result("C13", measured, SUPPORTED, reason)
    return _result("C13", measured, NOT_SUPPORTED, reason)


# ---- C14, C15 -----------------------------------------------------------------------------------------------------
def _c14(data: ReportData) -> ClaimResult:
    runs = data.usable([p for p in ("final", "grid", "ablation", "quadratic")])
    runs = runs[(runs["optimizer"] == AMGT) & runs["grad_sq_first"].notna() & runs["grad_sq_min"].notna()]
    benches = [b for b in runs["benchmark"].dropna().unique() if not str(b).startswith("quadratic")]  # convex
    bench = next((b for b in ("rosenbrock",) + PAPER_BENCHMARKS if b in benches),
                 sorted(benches)[0] if benches else None)
    if bench is None:
        return _result("C14", "", NOT_MEASURED, "no AMGT run with a grad_norm or grad_norm_mean history (phases "
                       "final, grid, ablation, quadratic)")
    r = runs[runs["benchmark"] == bench]
    h = data.histories
    epochs = h[h["metric"].isin(("grad_norm_mean", "grad_norm")) & h["run_id"].isin(r["run_id"])].groupby(
        "run_id")["step"].nunique()
    r = r[r["run_id"].map(epochs).fillna(0) >= 3]
    if not len(r):
        return _result("C14", "", NOT_MEASURED, f"AMGT runs on {bench} have fewer than 3 epochs of grad_norm_mean: "
                       "no trajectory to judge", bench)
    q = (r["grad_sq_min"] / r["grad_sq_first"]).replace([np.inf], np.nan).dropna()
    if not len(q):
        return _result("C14", "", NOT_MEASURED, f"grad_norm_mean is zero or missing in the first epoch on {bench}",
                       bench)
    source = ", ".join(sorted(set(r["grad_source"].dropna()))) if "grad_source" in r else "grad_norm_mean"
    measured = (f"q = min_k g_k²/g_1² ({source}) over {len(q)} AMGT run(s): median {q.median():.3g}, "
                f"max {q.max():.3g}, "
                f"epochs {int(r['epochs_completed'].max()) if r['epochs_completed'].notna().any() else '?'}")
    if (q <= 0.1).all():
        return _result("C14", measured, SUPPORTED, "the squared gradient norm fell ≥ 10× in every run", bench)
    if (q >= 1.0).mean() > 0.5:
        return _result("C14", measured, CONTRADICTED, "in most runs the gradient norm never fell below its start",
                       bench)
    return _result("C14", measured, NOT_SUPPORTED, "the gradient norm fell, but not ≥ 10× in every run", bench)


def _c15(data: ReportData) -> ClaimResult:
    bench, runs, absent = _final_phase(data, "C15")
    if absent is not None:
        return absent
    pair = stats.paired_difference(_per_seed(runs, AMGT, "oscillation_mean"), _per_seed(runs, ADAM, "oscillation_mean"))
    measured = (f"oscillation AMGT − Adam = {pair.difference.fmt(4)} (n = {pair.n} seeds, "
                f"Wilcoxon p = {pair.p_wilcoxon:.3g})")
    if pair.n < 2:
        return _result("C15", measured, NOT_MEASURED, f"fewer than 2 matched seeds with loss_oscillation on {bench}",
                       bench)
    ref = _per_seed(runs, ADAM, "oscillation_mean").mean()
    verdict = _verdict_from_interval(pair.difference, "below", OSCILLATION_MARGIN * abs(ref))
    reason = {SUPPORTED: "AMGT oscillates less (CI below −5 % of Adam's oscillation)",
              CONTRADICTED: "AMGT oscillates more (CI above +5 % of Adam's oscillation)",
              NOT_SUPPORTED: "the difference's 95 % CI reaches within ±5 % of Adam's oscillation"}[verdict]
    return _result("C15", measured, verdict, reason, bench)


_EVALUATORS: dict[str, Callable[[ReportData], ClaimResult]] = {
    "C1": _c1, "C2": _c2, "C3": _c3, "C4": _c4, "C5": _c5, "C6": _c6, "C7": _c7, "C8": _c8, "C9": _c9,
    "C10": _c10, "C11": _c11, "C12": _c12, "C13": _c13, "C14": _c14, "C15": _c15,
}


def _span(values: pd.Series) -> str:
    v = sorted({int(x) for x in pd.to_numeric(values, errors="coerce").dropna()})
    return "" if not v else str(v[0]) if len(v) == 1 else f"{v[0]}–{v[-1]}"


def training_caveat(runs: pd.DataFrame, benchmark: str) -> str:
    """The caveat (``CAVEAT_RULE``) of a verdict that rests on ``runs`` (columns ``epochs``, ``max_steps``,
    ``epochs_completed``) of ``benchmark``: e.g. "runs capped at 30 steps; 1 epoch; paper: 30 epochs" (the epochs
    the runs completed, where logged, else the epochs planned).
    Empty when the runs trained as the paper did (or there are no runs)."""
    if not len(runs) or not benchmark:
        return ""
    parts = []
    capped = _span(runs["max_steps"]) if "max_steps" in runs else ""
    if capped:
        parts.append(f"runs capped at {capped} steps")
    # the epochs the runs completed (a step cap can end a run early), else those planned
    done = runs["epochs_completed"] if "epochs_completed" in runs else pd.Series(dtype=float)
    epochs = done if done.notna().any() else runs.get("epochs", pd.Series(dtype=float))
    ep = pd.to_numeric(epochs, errors="coerce").dropna()
    paper = PAPER_EPOCHS.get(benchmark)
    if paper is None:
        parts.append(f"{benchmark} is not one of the paper's benchmarks"
                     + (f" ({_span(ep)} epoch{'' if ep.max() == 1 else 's'})" if len(ep) else ""))
    elif len(ep) and ep.max() < SHORT_FRACTION * paper:
        parts.append(f"{_span(ep)} epoch{'' if ep.max() == 1 else 's'}")
    if not parts:
        return ""
    return "; ".join(parts) + (f"; paper: {paper} epochs" if paper else "")


def _with_caveat(res: ClaimResult, data: ReportData) -> ClaimResult:
    phases = CLAIM_PHASES.get(res.id)
    if not phases or not res.benchmark or res.verdict == NOT_MEASURED:
        return res
    runs = data.usable(phases, res.benchmark)
    if res.id == "C14":
        runs = runs[runs["optimizer"] == AMGT]
    res.caveat = training_caveat(runs, res.benchmark)
    return res


def evaluate_claims(data: ReportData) -> list[ClaimResult]:
    """One :class:`ClaimResult` per claim C1–C15, in order. A claim whose evaluation raises is reported as
    "not measured" with the error, so one malformed input cannot hide the other fourteen."""
    out = []
    for cid, fn in _EVALUATORS.items():
        try:
            out.append(_with_caveat(fn(data), data))
        except Exception as exc:  # noqa: BLE001 — reported, not swallowed
            out.append(_result(cid, "", NOT_MEASURED, f"could not be evaluated: {type(exc).__name__}: {exc}"))
    return out
