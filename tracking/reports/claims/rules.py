"""The claims (``docs/paper-claims.md``) and the rule text printed beside each verdict, written from the
report's :class:`~tracking.reports.verdicts.VerdictSettings` (so a changed δ or minimum shows in the text)."""

from __future__ import annotations

from ..verdicts import DEFAULT_SETTINGS, VerdictSettings

__all__ = ["CLAIMS", "rules", "RULES", "DECISION_RULE", "FAILURE_RULE", "OVERLAP_RULE"]

#: id -> (claim, paper value)
CLAIMS = {
    "C1": ("MNIST / LeNet-5 test accuracy (Table 4.2)", "AMGT 99.2, Adam 99.0, RMSProp 98.9, SGD 98.7 %"),
    "C2": ("CIFAR-10 / ResNet-18 test accuracy (Table 4.2)", "AMGT 87.3, Adam 86.2, RMSProp 85.0, SGD 83.1 %"),
    "C3": ("ImageNet subset / ResNet-50 top-1 (Table 4.2)", "AMGT 77.0, Adam 75.6, RMSProp 74.1, SGD 73.4 %"),
    "C4": ("Convergence stability ±σ (Table 4.2)", ("AMGT 0.6, Adam 0.9, RMSProp 1.2, SGD 1.4 points (printed as the "
                                                     "fractions ±0.006, 0.009, 0.012, 0.014)")),
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

DECISION_RULE = (
    "Decision rule of every interval claim (δ = the claim's smallest effect of interest, P = the paper's effect, "
    "α = {alpha:g}): supported iff the 95 % CI clears +δ in the paper's direction; contradicted iff it lies beyond "
    "δ the other way; equivalent iff TOST (two one-sided tests at α, the 90 % CI) puts the effect within ±δ; "
    "paper's effect ruled out iff the one-sided test at α rejects an effect as large as P (P = δ when the paper "
    "gives no number); inconclusive otherwise, and always when n is below the claim's pre-registered minimum, "
    "when the spread is zero or below one step of a quantised metric (an accuracy moves in steps of one test "
    "example), or when the failure count forbids the verdict. The p shown is the same test's (paired t unless "
    "stated); the exact Wilcoxon p is shown beside it, never decides. Every empirical row states its power: n, "
    "the MDE at n (α two-sided, power {power:g}, from the observed spread), the units needed for P, and the "
    "tests' p floors.")
FAILURE_RULE = (
    "Failure rule (C1–C4, C7–C10, C15): a diverged run is a result, never dropped: without a recorded accuracy it "
    "scores the chance accuracy (100/classes points; 0 when the classes are unknown); for time to target it never "
    "reaches the target (censored at the budget, PAR1); a failed run (error) is not a measurement. "
    "'supported' needs AMGT to have no more failed or diverged seeds than the comparator, 'contradicted' the "
    "mirror.")
OVERLAP_RULE = (
    "Winner's curse (overlap rule '{overlap}'): a final-phase run with the seed of its selected search trial (or "
    "the study's search_seed), or with final metrics bit-identical to a search trial's, replays the selection; "
    "'exclude' leaves it out of every final-phase statistic (named in the measured text), 'flag' keeps it.")


def _acc(cid: str, bench: str, s: VerdictSettings) -> str:
    c = s.claim(cid)
    return (f"paired difference AMGT − Adam of final test accuracy (points; final phase, matched seeds; failure "
            f"rule applies), paired t. δ = {c.sesoi:g} points (at least one test example), P = +{c.paper_effect:g} "
            f"(Table 4.2), minimum {c.min_n} seeds. Not measured when {bench} has no final-phase runs of both "
            "AMGT and Adam.")


def _rules(s: VerdictSettings) -> dict[str, str]:
    c = s.claim
    return {
        "C1": _acc("C1", "mnist-lenet5", s),
        "C2": _acc("C2", "cifar10-resnet18", s),
        "C3": _acc("C3", "imagenet-resnet50", s),
        "C4": (f"two readings, both needed. (a) σ across seeds of the final test accuracy (ddof 1, failure rule), "
               f"F test of σ_AMGT/σ_Adam: δ = ratio {c('C4').sesoi:g} (equivalence band {c('C4').sesoi:g}–"
               f"{1 / c('C4').sesoi:.3g}), P = {c('C4').paper_effect:.3g} (0.006/0.009), minimum {c('C4').min_n} "
               "seeds; a σ below one test example is degenerate. (b) the paper's own definition, variance over "
               "training epochs: per run, σ of the validation accuracy about a least-squares line through the last "
               f"half of the epochs (≥ 4 epochs in that half), paired t of ln(σ_AMGT/σ_Adam): δ = ratio "
               f"{c('C4b').sesoi:g}, P = {c('C4b').paper_effect:.3g}. Combined: supported iff both parts are; "
               "contradicted iff one is; ruled out iff one is ruled out or equivalent; else inconclusive. Judged "
               "on the first paper benchmark measured."),
        "C5": (f"ratio r of geometric-mean per-run median epoch times AMGT/Adam in the same study (final phase), "
               f"Welch t on log time. supported iff the 95 % CI's upper end ≤ {c('C5').sesoi:g} (the paper's 10 % "
               f"overhead bound); contradicted iff its lower end > {c('C5').sesoi:g}; inconclusive otherwise or with "
               f"fewer than {c('C5').min_n} runs each. Power: runs needed for the paper's ratio "
               f"{c('C5').paper_effect:.3f} to be shown below the bound. The timed implementation "
               "(optimizer_impl tag) is shown. Judged on cifar10-resnet18 when measured, else the first paper "
               "benchmark."),
        "C6": ("S = median optimizer_state_bytes per optimizer (final phase). Adam holds 2 n-sized buffers "
               "(exp_avg, exp_avg_sq), so n = S_Adam/2 and AMGT's extra buffers e = (S_AMGT − S_Adam)/n; the paper's "
               f"4n/3n counts the parameters too: (n + S_AMGT)/(n + S_Adam). supported iff |e − 1| ≤ "
               f"{c('C6').sesoi:g}; contradicted iff e < 0.5 or e > 1.5; not supported otherwise. Exact (bytes are "
               "deterministic; no test). Peak memory ratio shown, not judged. Any benchmark (a property of the "
               "algorithm)."),
        "C7": (f"per seed, reduction d = 100·(1 − x_AMGT/x_Adam) % in steps to the target training loss "
               "(target_train_loss_step; epochs when steps are absent), final phase. A run that did not reach "
               "the target (budget ran out, diverged) scores the budget (the most steps any final run of the "
               "benchmark completed; PAR1), so a pair where only one reached it makes the mean a bound (said beside "
               "it); a pair where neither reached it carries no information and is dropped "
               f"(counted). paired t, δ = {c('C7').sesoi:g} %, P = {c('C7').paper_effect:g} %, minimum "
               f"{c('C7').min_n} seeds; 'supported' also needs no seed where only Adam reached the target "
               "(the mirror for 'contradicted'). Not measured when no pair reached it."),
        "C8": (f"as C7 with the wall time to the target validation accuracy (target_val_accuracy_time_s; budget: "
               f"the longest wall_time_s), δ = {c('C8').sesoi:g} %, P = {c('C8').paper_effect:g} %."),
        "C9": (f"ablation phase, paired by seed, both parts needed. (a) loss oscillation of amgt-no-threshold vs "
               "amgt compared at matched training loss (per seed, each run's oscillation interpolated in "
               "(ln loss, ln oscillation) at the lowest loss both reached), paired t of the log ratio: δ = "
               f"{c('C9a').sesoi:.0%} of the oscillation, no paper number. (b) accuracy drop amgt − amgt-no-decay "
               f"(points, failure rule): δ = {c('C9b').sesoi:g} points, P = {c('C9b').paper_effect:g} (the paper's "
               f"1–2 %). Minimum {c('C9a').min_n} seeds. Combined as C4. Shown, not judged: the mean-over-epochs "
               "oscillation (confounded with the loss level) and its correlation with the loss across runs."),
        "C10": (f"grid phase, per seed: tunability area = mean test accuracy over the common log-lr grid "
                f"(trapezoid in log10 lr / span; diverged runs score chance), paired t of AMGT − Adam: δ = "
                f"{c('C10').sesoi:g} point, no paper number, minimum {c('C10').min_n} seeds. Shown beside, not "
                "judged: the width W = log10(lr_hi/lr_lo) of the contiguous range within 1 point of the best (a "
                "discrete statistic; its bootstrap over few seeds takes few values)."),
        "C11": ("exact computation (quadratic study facts): eigenvalues of the Hessian (±0.01), GD stability limit "
                "2/λmax (±0.001) and the fixed step with the smallest contraction max|1 − ηλ| among the steps "
                "computed. supported iff every stated value agrees; contradicted iff any disagrees (the reason "
                "says which parts hold); not measured without a quadratic study."),
        "C12": "as C11 for 4.10.2: eigenvalues (±0.01) and α_opt = 2/(λmin + λmax) (±0.005).",
        "C13": ("from the quadratic facts' fits of log‖x_k − x*‖ against log k under α_k = 1/(μk): the rate is "
                "linear only if the ratio of successive distances stays below 1 (≤ 0.99 at the last step); the "
                "bound C·k^(−μ/2) holds on a problem iff the fitted slope with gradient noise ≤ −μ/2 + 0.05. "
                "supported iff linear and the bound holds on every problem; contradicted iff the ratio → 1 "
                "(sublinear, so not 'linear convergence') or the bound fails on a problem; not supported otherwise."),
        "C14": ("for AMGT runs, q = min_k g_k² / g_1² over runs with ≥ 3 epochs; g_k = grad_norm (noise-free, "
                "function benchmarks) else grad_norm_mean. supported iff q ≤ 0.1 in every run; contradicted iff "
                "q = 1 (never below the start) in most runs; not supported otherwise; inconclusive with fewer "
                f"than {c('C14').min_n} runs. A per-run rule, no test (power: the sign test's floor 0.5ⁿ is "
                "shown). Judged on rosenbrock, else a paper benchmark; on the runs of the final phase, else the "
                "ablation's full AMGT, else the quadratic phase, else the grid at AMGT's best learning rate (a run "
                "stuck at a bad one has small gradients too)."),
        "C15": ("loss oscillation AMGT vs Adam compared at matched training loss (as C9a), final phase, paired t "
                f"of the log ratio: δ = {c('C15').sesoi:.0%} of the oscillation, no paper number, minimum "
                f"{c('C15').min_n} seeds. Shown, not judged: the mean-over-epochs oscillation (it rewards a "
                "higher loss)."),
    }


def rules(settings: VerdictSettings | None = None) -> dict[str, str]:
    """id -> the rule text under ``settings`` (default :data:`~tracking.reports.verdicts.DEFAULT_SETTINGS`)."""
    return _rules(settings or DEFAULT_SETTINGS)


RULES = rules(DEFAULT_SETTINGS)
