"""The report's text: one :class:`~tracking.reports.render.Section` per part, from the computed tables,
claims and figures (``build.write_report`` computes, this module words it, ``render`` lays it out)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .claims import ClaimResult, general_rules, rules
from .data import USABLE_OUTCOMES, ReportData
from .importance import CONTOUR_MIN_TRIALS
from .answer import answer_lines, answer_source
from .claims import NAMES
from .pairs import Comparison, pair_rules
from .render import Section
from .verdicts import VerdictSettings

__all__ = ["Computed", "report_sections", "claims_frame", "power_frame", "rules_frame", "pairs_frame",
           "CLAIM_COLUMNS", "POWER_COLUMNS", "PAIR_COLUMNS"]

CLAIM_COLUMNS = ["id", "claim", "paper", "measured", "verdict", "power", "caveat", "reason", "benchmark", "rule"]
POWER_COLUMNS = ["id", "verdict", "interval_alone", "n", "min_n", "mde", "seeds_needed", "p", "p_test", "p_wilcoxon",
                 "power"]
#: comparison_pairs.csv: one row per candidate × baseline × benchmark × metric (``pairs.pair_results``).
PAIR_COLUMNS = ["id", "claim", "benchmark", "verdict", "effect", "n", "min_n", "mde", "p", "p_test", "p_wilcoxon",
                "interval_alone", "seeds_needed", "power", "measured", "reason", "rule"]


@dataclass
class Computed:
    """Everything a report shows: tables by name, claims, figures by section, notes for "What is missing"."""

    data: ReportData
    settings: VerdictSettings
    claims: list[ClaimResult]
    tables: dict[str, pd.DataFrame]
    figures: dict[str, list] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    formats: tuple[str, ...] = ("html", "md", "csv")
    comparison: Comparison = field(default_factory=Comparison)
    pairs: list[ClaimResult] = field(default_factory=list)


def pairs_frame(pairs: list[ClaimResult]) -> pd.DataFrame:
    """The candidate-vs-baseline results (``comparison_pairs.csv``): verdict, effect with its 95 % interval,
    n, the MDE and the rest of the power fields, what was measured, the reason and the rule."""
    return pd.DataFrame([{k: c.as_dict()[k] for k in PAIR_COLUMNS} for c in pairs], columns=PAIR_COLUMNS)


def claims_frame(claims: list[ClaimResult]) -> pd.DataFrame:
    return pd.DataFrame([c.as_dict() for c in claims], columns=CLAIM_COLUMNS)


def power_frame(claims: list[ClaimResult]) -> pd.DataFrame:
    """Per claim: what the data behind its verdict could detect (n, minimum, MDE, units needed for the paper's
    effect as "detect / supported", the p of the test behind the interval and the Wilcoxon p beside it)."""
    return pd.DataFrame([{k: c.as_dict()[k] for k in POWER_COLUMNS} for c in claims], columns=POWER_COLUMNS)


def rules_frame(settings: VerdictSettings, comparison: Comparison | None = None) -> pd.DataFrame:
    """The verdict rules printed: C1–C15's when they are evaluated (``comparison.paper_claims``), the
    candidate-vs-baseline metrics' ("pair: accuracy", ...) when there is a pair section, and the general ones."""
    comparison = comparison or Comparison()
    r = rules(settings) if comparison.paper_claims else {}
    if not comparison.paper_pair:
        r = {**r, **{f"pair: {k}": v for k, v in pair_rules(settings).items()}}
    g = general_rules(settings)
    return pd.DataFrame({"id": [*r, *g], "rule": [*r.values(), *g.values()]})


def _caveat_line(claims: list[ClaimResult]) -> str:
    caveated = [c for c in claims if c.caveat]
    if not caveated:
        return "No verdict rests on runs capped (max_steps) or shorter than the paper's setup."
    parts: dict[str, None] = {}
    for c in caveated:
        for part in c.caveat.split("; "):
            parts[f"{c.benchmark}: {part}" if not part.startswith("paper:") else part] = None
    return ("Caveat: the verdict(s) of " + ", ".join(c.id for c in caveated) + " rest on short or capped runs or a "
            "search that may have under-tuned (" + "; ".join(parts) + "), not on the paper's setup; see the claims "
            "table's column 'caveat', the study settings and the selection table.")


def _answer(c: Computed, missing: int) -> Section:
    """The first section: the conclusion in a few lines, the claims' and the optimizers' tables, one figure."""
    t = c.tables
    phase, source = answer_source(t)
    lines = answer_lines(c.claims, phase, source, studies=list(c.data.studies),
                         caveated=[x.id for x in c.claims if x.caveat], missing=missing,
                         candidates=c.comparison.candidates, baseline=c.comparison.baseline, pairs=c.pairs)
    tables = [(n, t[n]) for n in ("answer_claims", "answer_pairs", "answer_optimizers") if len(t.get(n, ()))]
    return Section("The answer", lines, tables, c.figures.get("answer", []), anchor="answer", compact=True)


def _method(c: Computed, caveat: str) -> Section:
    """How the numbers were made, printed once: runs counted, failure rule, winner's curse, units, intervals,
    power, and the caveat."""
    data = c.data
    counts = data.runs["outcome"].value_counts().to_dict()
    replayed = data.replayed()
    rule = c.settings.overlap_rule
    return Section("Method and caveats", [
        f"Studies: {', '.join(data.studies)}. Tracking store: {data.tracking_uri or 'given as DataFrames'}. "
        f"Trial runs: {len(data.runs)} ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}"
        + (f"; not counted: {data.retried_attempts} failed earlier attempt(s) of trials that were retried or "
           "resumed" if data.retried_attempts else "") + "). "
        f"Statistics use completed and diverged runs ({', '.join(USABLE_OUTCOMES)}). A diverged run is a failure, "
        "never dropped: without an accuracy it scores the chance accuracy, for time to target it never reaches "
        "the target, and a failure count forbids 'supported' (rules). Failed, interrupted (stopped by a signal or a lost "
        "Ray node: not a failure of the optimizer) and running runs are counted in the comparison and fairness "
        "tables only.",
        (f"Winner's curse: {len(replayed)} final-phase run(s) replay their selected search trial (same seed or "
         f"bit-identical metrics); overlap rule '{rule}': "
         + ("left out of every final-phase statistic." if rule == "exclude" else "kept and flagged.")
         if len(replayed) else "No final-phase run replays its selected search trial."),
        "Units: accuracies, their σ and their differences are in percentage points everywhere (the logged metrics "
        "are fractions × 100). Intervals are 95 %: Student t for means and "
        "paired differences (matched by seed), F for ratios of standard deviations, Welch t on log time for the "
        "epoch-time ratio, percentile bootstrap for the ratio of medians in the cost table and lr-range widths. "
        "The p-value beside a verdict is that of the interval's own test (paired t unless stated); the exact "
        "Wilcoxon signed-rank p is shown beside it (floor 2/2ⁿ: 0.25 at n = 3). Every empirical verdict states its "
        "power: the n achieved against the pre-registered minimum, the minimum detectable effect at that n (α = "
        f"{c.settings.alpha:g}, power {c.settings.power:g}, from the observed spread) and the seeds needed for the "
        "paper's own effect (table power).",
        caveat], anchor="method")


def _omit_empty(sections: list[Section]) -> tuple[list[Section], list[str]]:
    """Sections that need data (``Section.needs``) and got none (every table empty, no figure) are left out,
    and so are empty tables of the sections kept (their CSVs are still written); returns (the sections kept,
    the lines for "What is missing" naming what was left out and what it lacked)."""
    kept, left_out, empty = [], [], []
    for s in sections:
        if s.needs and not s.figures and not any(len(df) for _, df in s.tables):
            left_out.append(f"{s.title} (no {s.needs})")
            continue
        empty += [name for name, df in s.tables if not len(df)]
        s.tables = [(name, df) for name, df in s.tables if len(df)]
        kept.append(s)
    return kept, ([f"sections left out, nothing to show: {'; '.join(left_out)}"] if left_out else []) + (
        [f"empty tables left out: {', '.join(empty)}"] if empty else [])


def report_sections(c: Computed) -> tuple[list[Section], list[str]]:
    """The report's sections in order, and the lines the "What is missing" section lists (what the store
    lacks, the notes, the sections left out because they had nothing to show)."""
    t, data, fmts = c.tables, c.data, c.formats
    caveat = _caveat_line(c.claims)
    small_n = [f"{r.benchmark}/{r.optimizer} n={int(r.n)}" for r in t["comparison"].itertuples() if 0 < r.n < 3]
    ci_note = ("ci_low/ci_high are clipped to the accuracy's range [0, 100] for display; ci_low_raw/ci_high_raw "
               "are the t-interval as computed and ci_note marks clipped ends and n < 3."
               + (f" Too few runs for a useful interval (n < 3; with n = 2 the t-interval is ±12.7 standard "
                  f"errors): {', '.join(small_n)}." if small_n else ""))
    base = c.comparison.baseline
    bname = NAMES.get(base, base)
    body = [
        Section("Paper claims C1–C15", [
            "Verdicts: supported / contradicted / equivalent / paper's effect ruled out / inconclusive / not "
            "supported (rules that are not tests) / not measured (with the reason) / not measured (benchmark "
            "differs). The rule behind each verdict is under 'Verdict rules' and what qualifies it under 'Method "
            "and caveats' (claims.csv also has them per claim: columns 'rule', 'caveat'); the column 'power' says "
            "what the data could detect; the table 'power' gives the same in numbers (seeds_needed: to detect the "
            "paper's effect / for 'supported')."],
            [("claims", t["claims"].drop(columns=["rule", "caveat"])), ("power", t["power"])], anchor="claims")
        if c.comparison.paper_claims else None,
        Section(c.comparison.label, [
            f"Candidate vs baseline: {c.comparison.label}, per final-phase benchmark. The claims C1–C15 are AMGT's "
            "(the paper's)" + (" and are not evaluated here" if not c.comparison.paper_claims else
                               ", judged above against Adam") + "; the same statistics compare the pair instead: "
            "final test accuracy paired by seed (C1's statistic: paired t 95 % interval, TOST, power and MDE) and "
            "the time per epoch (C5's: Welch t on log time against its bound), with the verdict vocabulary and "
            "the settings of C1 and C5 without the paper's effects (rules under 'Verdict rules'; "
            "comparison_pairs.csv has every column, the rule included)."],
            [("comparison_pairs", t["comparison_pairs"].drop(columns=["rule"]))], anchor="pairs")
        if not c.comparison.paper_pair else None,
        Section("Comparison (the paper's Table 4.2)", [
            "Final phase: each optimizer's best configuration from the search, re-run with several seeds. "
            "test_acc_mean with its 95 % t-interval over n scored runs (failure rule), paper_acc: Table 4.2; "
            "replayed: runs replaying their selection (left out under the overlap rule 'exclude'); "
            f"diff_vs_{base} = mean of the per-seed differences to {bname} (points) with its t-interval over "
            "n_pairs seeds, sd_diff its "
            "spread and mde the minimum detectable difference at that n (α 0.05, power 0.8); p_t = paired t (the "
            "interval's test), p_holm = Holm over the optimizers of the benchmark, p_wilcoxon beside it with its "
            "floor. sigma_seeds = σ across seeds of the final accuracy (points); sigma_epochs_detrended = mean over "
            "seeds of σ over the last half of epochs of the validation accuracy about its trend (points; the paper's "
            "'variance over epochs' without the learning trend). hyperparameters: the configuration run.", ci_note],
            [("comparison", t["comparison"])], anchor="comparison", needs="final-phase runs"),
        Section("Cost (the paper's Table 4.3)", [
            "median_epoch_time_s = median over runs of each run's median epoch time; "
            f"ratio_to_{base} = that median over {bname}'s in the same study and benchmark (95 % percentile "
            "bootstrap; claim C5 uses the Welch t on "
            "log time); peak_memory_mb = the largest peak_memory_bytes recorded (CUDA: max allocated; CPU: process "
            "peak RSS); optimizer_state_bytes = bytes of the optimizer's state tensors (median over runs); "
            "optimizer_impl = the implementation timed (tag; 'not recorded' for older runs)."],
            [("cost", t["cost"])], anchor="cost", needs="final-phase runs"),
        Section("Training curves", [
            "Final phase, per benchmark. Each figure names, in a footer inside the image, the study, benchmark, "
            "phase, number of seeds, epochs, max_steps (the cap on optimizer steps of the whole trial), device and "
            "git commit it was drawn from."],
            figures=c.figures.get("curves", []), anchor="curves", needs="per-epoch histories of final-phase runs"),
        Section("Learning-rate sensitivity", [
            "Grid phase: final test accuracy per learning rate (mean, 95 % CI over seeds; a diverged run scores "
            "chance). width_decades = log10(lr_hi/lr_lo) of the contiguous lr range around the best grid point "
            "whose mean is within 1 point of the best (shown; claim C10 judges the tunability area, the mean "
            "accuracy over the log-lr grid). ci_low/ci_high clipped to [0, 100] as in the comparison."],
            [("lr_sensitivity", t["lr_sensitivity"]), ("lr_width", t["lr_width"])], c.figures.get("sensitivity", []),
            anchor="sensitivity", needs="grid-phase runs"),
        Section("Ablation", [
            "Ablation phase: AMGT with one mechanism switched off (amgt-no-threshold: τ = 0; amgt-no-decay: λ = 0; "
            "amgt-no-variance: γ = 0) and Adam; differences are paired by seed against full AMGT. oscillation_mean "
            "is the mean over epochs of loss_oscillation, which divides by the loss level (a run still at a higher "
            "loss scores lower): shown, not judged; osc_ratio_matched_vs_full compares the oscillation at the same "
            "training loss (claims C9, C15). Accuracy ci_low/ci_high clipped to [0, 100] as in the comparison."],
            [("ablation", t["ablation"])], c.figures.get("ablation", []), anchor="ablation",
            needs="ablation-phase runs"),
        Section("Tuning budget", [
            "Search phase: expected best validation accuracy after k trials drawn at random from the trials run "
            "(Dodge et al. 2019), with a 95 % bootstrap band."], [("budget", t["budget"])], c.figures.get("budget", []),
            anchor="budget", needs="search-phase runs"),
        Section("What matters: hyperparameter importance", [
            "From the Optuna studies: importance_default = optuna.importance.get_param_importances with Optuna's "
            "default evaluator (PED-ANOVA in Optuna 5); importance_fanova = the same with "
            "FanovaImportanceEvaluator(seed=0); each sums to 1 per study. Contour and slice plots: Optuna's "
            "matplotlib visualisations for AMGT's lr, tau (τ), lr_decay (λ) and gamma (γ); a contour plot is drawn "
            f"only from ≥ {CONTOUR_MIN_TRIALS} completed trials over params with ≥ 2 distinct values (else it "
            "interpolates a surface between a few points: skipped, with the reason under What is missing)."],
            [("importance", t["importance"])], c.figures.get("importance", []), anchor="importance",
            needs="Optuna study with completed trials"),
        Section("Selection protocol (winner's curse, tuning)", [
            "Comparison studies, per optimizer: the sampler and how many search trials were its random start-up "
            "(TPE: n_startup_trials, Optuna's default 10 when the study did not record it), the configuration the "
            "final phase ran, the selected search trial's seed and objective (points), ties at the best value, a "
            "chosen value at the edge of the sampled range or near a configured bound (fairness.json), and the "
            "final seeds that replay the selection (same seed as the selected search trial or the recorded "
            "search_seed, or bit-identical final metrics)."], [("selection", t["selection"])], anchor="selection",
            needs="search and final phases"),
        Section("Fairness", [
            "Trials per study, phase, benchmark and optimizer, by outcome; search_dims = hyperparameters that vary "
            "within the group (the search-space dimensions actually explored); seeds used. Diverged and failed runs "
            "are counted here, never dropped silently."], [("fairness", t["fairness"])], anchor="fairness",
            needs="trial runs"),
        Section("Study settings", [
            "How long the trials trained, per study and benchmark (the trial runs' MLflow params epochs, batch_size, "
            "max_steps; max_steps caps the optimizer steps of the whole trial, 'none' = every epoch in full), the "
            "seeds of the non-search phases, search trials per optimizer, the device, and the paper's epochs for "
            "the benchmark (MNIST 30, CIFAR-10 100, ImageNet 90)."], [("settings", t["settings"])],
            anchor="settings", needs="trial runs"),
        _method(c, caveat),
        Section("Verdict rules", [f"{r.id}: {r.rule}" for r in t["rules"].itertuples()], anchor="rules"),
        Section("Provenance", [
            "One row per parent run (study phase): git commit, devices, package versions, dates. Every trial run id "
            "with its tags, every hyperparameter it logged, its final metrics and the per-run summaries the claims "
            "use is in " + ("runs.csv (each column's meaning in runs_columns.csv, one meaning per column), and the "
                            "per-epoch histories behind the summaries and figures in histories.csv."
                            if "csv" in fmts else "the table runs (CSV output not requested).")],
            [("provenance", t["provenance"]), ("environment", t["environment"])], anchor="provenance"),
    ]
    body, left_out = _omit_empty([b for b in body if b is not None])
    missing = [*data.missing, *c.notes, *left_out]
    out = [_answer(c, len(missing))]
    if missing:
        out.append(Section("What is missing", missing, anchor="missing"))
    return out + body, missing
