"""``build_report``: read studies from MLflow, compute tables, claims and figures, write HTML/Markdown/CSV,
and log them as artifacts of each study's parent run."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from tracking import query, schema

from . import plots, tables
from .claims import CAVEAT_RULE, RULES, ClaimResult, evaluate_claims
from .data import USABLE_OUTCOMES, ReportData
from .importance import CONTOUR_MIN_TRIALS, IMPORTANCE_COLUMNS, importance_section, resolve_optuna_storage
from .render import Section, render_html, render_markdown

__all__ = ["build_report", "ReportResult", "FORMATS", "write_report", "ARTIFACT_DIR"]

FORMATS = ("html", "md", "csv")
ARTIFACT_DIR = "report"
#: Parent run that receives the report, in order of preference (one per study).
_PARENT_PREFERENCE = ("final", "grid", "ablation", "quadratic", "search")


@dataclass
class ReportResult:
    """What ``build_report`` wrote.

    paths: every file written (``report.html``, ``report.md``, the CSVs, ``figures/*.png``), a list of
    Paths; ``html``, ``md`` (None when not written), ``csv`` and ``figures`` select them by kind.
    missing: what the store lacks, in words (also printed at the top of the report).
    claims: the claims table rows. tables: every table by name. artifact_runs: parent run ids that got the
    report as artifacts (under ``report/``). timings: seconds per stage (load, compute, render, log).
    figures_drawn: the ``plots.Figure`` objects behind ``figures`` (name, title, caption, png, and the
    matplotlib ``figure`` they were drawn from), in the same order.
    """

    out_dir: Path
    html: Path | None = None
    md: Path | None = None
    csv: list = field(default_factory=list)
    figures: list = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    claims: list[ClaimResult] = field(default_factory=list)
    tables: dict = field(default_factory=dict)
    artifact_runs: list[str] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    figures_drawn: list = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        return [p for p in (self.html, self.md) if p is not None] + list(self.csv) + list(self.figures)


def _formats(formats) -> tuple[str, ...]:
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    formats = tuple(dict.fromkeys(formats))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"report format(s) {bad or formats!r} not allowed; choose from {', '.join(FORMATS)}")
    return formats


def build_report(
    studies: Sequence[str] | str,
    *,
    tracking_uri: str | None = None,
    out_dir: str | Path = "report",
    formats: Sequence[str] | str = FORMATS,
    optuna_storage: str | None = None,
    log_artifacts: bool = True,
    history_source: str = "metric_history",
) -> ReportResult:
    """Build the robustness report of one or more studies (comparison, sensitivity, ablation, quadratic
    studies can be combined).

    Args:
        studies: study names (MLflow experiment names).
        tracking_uri: the MLflow store (None: ``MLFLOW_TRACKING_URI``, then ``sqlite:///mlflow.db``).
        out_dir: directory for ``report.html``, ``report.md``, ``<table>.csv`` and ``figures/*.png``.
        formats: any of ``"html"``, ``"md"``, ``"csv"`` (a list or a comma-separated string).
        optuna_storage: where the studies' Optuna studies live (None: the study runner's default).
        log_artifacts: also log the written files to each study's parent run under ``report/``.
        history_source: ``"metric_history"`` or ``"artifact"`` (``tracking.query.load_histories``).

    Returns:
        ReportResult. A study still running or missing phases gives a report that says what is missing
        (``.missing``), never invented numbers.

    Raises:
        tracking.query.UnknownStudyError: a study not in the store (lists the known ones).
        ValueError: a format not in ``FORMATS``, or no study named.
        FileNotFoundError: a SQLite store file that does not exist.
    """
    names = [studies] if isinstance(studies, str) else list(dict.fromkeys(studies))
    fmts = _formats(formats)
    uri = query.resolve_tracking_uri(tracking_uri)
    timings = {}
    t0 = time.perf_counter()
    data = ReportData.load(names, uri, history_source=history_source)
    timings["load_s"] = time.perf_counter() - t0
    storage = resolve_optuna_storage(optuna_storage, uri)
    result = write_report(data, out_dir, formats=fmts, optuna_storage=storage, timings=timings)
    if log_artifacts:
        t1 = time.perf_counter()
        result.artifact_runs = _log(uri, data, result)
        timings["log_s"] = time.perf_counter() - t1
    return result


def _log(uri: str, data: ReportData, result: ReportResult) -> list[str]:
    client = query.client_for(uri)
    logged = []
    parents = data.parents
    for study in data.studies:
        p = parents[parents["study"] == study] if len(parents) else parents
        if not len(p):
            result.missing.append(f"study {study!r} has no parent run: the report was not logged to MLflow")
            continue
        rank = {ph: i for i, ph in enumerate(_PARENT_PREFERENCE)}
        p = p.assign(_r=p["tags.phase"].map(rank).fillna(99)).sort_values(["_r", "start_time"])
        rid = p["run_id"].iloc[0]
        files = [f for f in result.out_dir.iterdir() if f.is_file()]
        for f in files:
            client.log_artifact(rid, str(f), ARTIFACT_DIR)
        if (result.out_dir / "figures").is_dir():
            client.log_artifacts(rid, str(result.out_dir / "figures"), f"{ARTIFACT_DIR}/figures")
        logged.append(rid)
    return logged


def _environment() -> pd.DataFrame:
    from importlib import metadata

    rows = [{"item": "python", "value": platform.python_version()},
            {"item": "platform", "value": platform.platform()},
            {"item": "report generated (UTC)",
             "value": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")}]
    for pkg in ("amgt-study", "mlflow", "optuna", "pandas", "scipy", "matplotlib", "numpy"):
        try:
            rows.append({"item": pkg, "value": metadata.version(pkg)})
        except metadata.PackageNotFoundError:
            pass
    return pd.DataFrame(rows)


def _objectives(data: ReportData) -> dict[str, str]:
    """study -> the metric its search optimised (the search parent run's ``metric`` param), when logged."""
    p = data.parents
    if not len(p) or "params.metric" not in p or "tags.phase" not in p:
        return {}
    p = p[(p["tags.phase"] == "search") & p["params.metric"].notna()]
    return {str(st): str(m) for st, m in zip(p["study"], p["params.metric"])}


def _claims_frame(claims: list[ClaimResult]) -> pd.DataFrame:
    return pd.DataFrame([c.as_dict() for c in claims],
                        columns=["id", "claim", "paper", "measured", "verdict", "caveat", "reason", "benchmark",
                                 "rule"])


def write_report(data: ReportData, out_dir: str | Path, *, formats: Sequence[str] = FORMATS,
                 optuna_storage: str | None = None, timings: dict | None = None) -> ReportResult:
    """Compute every table, claim and figure from ``data`` and write the report files into ``out_dir``.
    Files are written to a temporary directory first and moved in at the end (nothing half-written)."""
    fmts = _formats(formats)
    timings = dict(timings or {})
    t0 = time.perf_counter()
    missing = list(data.missing)
    claims = evaluate_claims(data)
    settings = tables.settings_table(data)
    environment = _environment()
    comparison = tables.comparison_table(data)
    cost = tables.cost_table(data)
    sens_cells, sens_widths = tables.sensitivity_tables(data)
    ablation = tables.ablation_table(data)
    budget = tables.budget_table(data)
    fairness = tables.fairness_table(data)
    provenance = tables.provenance_table(data)
    runs = tables.runs_table(data)
    if optuna_storage:
        searched = sorted(data.runs.loc[data.runs["phase"] == "search", "study"].dropna().unique())
        importance, optuna_figs, notes = (
            importance_section(searched, optuna_storage, _objectives(data)) if searched else
            (pd.DataFrame(columns=IMPORTANCE_COLUMNS), [], []))
    else:
        importance, optuna_figs, notes = (pd.DataFrame(columns=IMPORTANCE_COLUMNS), [],
                                          ["no Optuna storage given: no importance"])
    figs_curves = plots.curve_figures(data)
    figs_time = plots.accuracy_vs_time(data)
    figs_sens = plots.sensitivity_figures(sens_cells, sens_widths, data)
    figs_abl = plots.ablation_figures(ablation, data)
    figs_budget = plots.budget_figures(budget, data)
    timings["compute_s"] = time.perf_counter() - t0

    claims_df = _claims_frame(claims)
    rules_df = pd.DataFrame({"id": [*RULES, "caveat"], "rule": [*RULES.values(), CAVEAT_RULE]})
    caveated = [c for c in claims if c.caveat]
    caveat_line = ("Caveat: the verdict(s) of " + ", ".join(c.id for c in caveated) + " rest on short or capped "
                   "runs (" + "; ".join(sorted({f"{c.benchmark}: {c.caveat}" for c in caveated})) + "), not on the "
                   "paper's setup; see the claims table's column 'caveat' and the study settings."
                   if caveated else "No verdict rests on runs capped (max_steps) or shorter than the paper's setup.")
    small_n = [f"{r.benchmark}/{r.optimizer} n={int(r.n)}" for r in comparison.itertuples() if 0 < r.n < 3]
    ci_note = ("ci_low/ci_high are clipped to the accuracy's range [0, 100] for display; ci_low_raw/ci_high_raw "
               "are the t-interval as computed and ci_note marks clipped ends and n < 3."
               + (f" Too few runs for a useful interval (n < 3; with n = 2 the t-interval is ±12.7 standard "
                  f"errors): {', '.join(small_n)}." if small_n else ""))
    counts = data.runs["outcome"].value_counts().to_dict()
    title = f"AMGT robustness report — {', '.join(data.studies)}"
    sections = [
        Section("Summary", [
            f"Studies: {', '.join(data.studies)}. Tracking store: {data.tracking_uri or 'given as DataFrames'}. "
            f"Trial runs: {len(data.runs)} ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}"
            + (f"; not counted: {data.retried_attempts} failed earlier attempt(s) of trials that were retried or "
               "resumed" if data.retried_attempts else "") + "). "
            f"Statistics use completed and diverged runs ({', '.join(USABLE_OUTCOMES)}). A diverged run is a "
            "result: it is counted (column 'diverged') and enters every statistic for which it recorded a value "
            "(the worker records no accuracy for a diverged classification run, so it is not in that mean's n). "
            "Failed and running runs are counted in the comparison and fairness tables only.",
            "Claims C1–C15: " + ", ".join(
                f"{v} {', '.join(c.id for c in claims if c.verdict == v)}"
                for v in ("supported", "not supported", "contradicted", "not measured")
                if any(c.verdict == v for c in claims)) + ".",
            caveat_line,
            "Accuracies are in percent (the metrics are fractions × 100). Intervals are 95 %: Student t for means "
            "and paired differences (matched by seed), percentile bootstrap for ratios of medians and lr-range "
            "widths, F for ratios of standard deviations. p-values: two-sided Wilcoxon signed-rank "
            "(scipy.stats.wilcoxon), Holm-adjusted across the optimizers compared with Adam on each benchmark."],
            anchor="summary"),
    ]
    if missing or notes:
        sections.append(Section("What is missing", [*missing, *notes] or ["nothing"], anchor="missing"))
    sections.append(Section("Study settings", [
        "How long the trials trained, per study and benchmark (the trial runs' MLflow params epochs, batch_size, "
        "max_steps; max_steps caps the optimizer steps of the whole trial, 'none' = every epoch in full), the seeds of the "
        "non-search phases, search trials per optimizer, the device, and the paper's epochs for the benchmark "
        "(MNIST 30, CIFAR-10 100, ImageNet 90).", caveat_line], [("settings", settings)], anchor="settings"))
    sections += [
        Section("Paper claims C1–C15", [
            "Verdicts: supported / not supported / contradicted (the data says the opposite) / not measured "
            "(with the reason). The rule that decided each verdict is in the column 'rule' and repeated below. "
            "Column 'caveat': the verdict rests on capped or short runs (rule below).", caveat_line],
            [("claims", claims_df)], anchor="claims"),
        Section("Verdict rules", [f"{cid}: {rule}" for cid, rule in RULES.items()] + [CAVEAT_RULE], anchor="rules"),
        Section("Comparison (the paper's Table 4.2)", [
            "Final phase: each optimizer's best configuration from the search, re-run with several seeds. "
            "test_acc_mean with its 95 % t-interval (ci_low, ci_high) over n runs (paper_acc: Table 4.2); "
            "diff_vs_adam = mean of the "
            "per-seed differences to Adam (points) with its t-interval over n_pairs seeds; p_wilcoxon and p_holm "
            "as in the summary. Stability σ: sigma_seeds = standard deviation (ddof 1) across seeds of the final "
            "test accuracy (points); sigma_val_loss_last5 = mean over seeds of the standard deviation (ddof 1) of "
            "the last 5 epochs' validation loss. hyperparameters: the configuration run (the search's best).", ci_note],
            [("comparison", comparison)], anchor="comparison"),
        Section("Cost (the paper's Table 4.3)", [
            "median_epoch_time_s = median over runs of each run's median epoch time; ratio_to_adam = that "
            "median over Adam's in the same study and benchmark (95 % percentile bootstrap); peak_memory_mb = "
            "the largest peak_memory_bytes recorded (CUDA: max allocated; CPU: process peak RSS); "
            "optimizer_state_bytes = bytes of the optimizer's state tensors (median over runs)."],
            [("cost", cost)], anchor="cost"),
        Section("Training curves", [
            "Final phase, per benchmark. Each figure names, in a footer inside the image, the study, benchmark, "
            "phase, number of seeds, epochs, max_steps, device and git commit it was drawn from."],
            figures=figs_curves + figs_time, anchor="curves"),
        Section("Learning-rate sensitivity", [
            "Grid phase: final test accuracy per learning rate (mean, 95 % CI over seeds). width_decades = "
            "log10(lr_hi/lr_lo) of the contiguous lr range around the best grid point whose mean is within 1 "
            "point of the best. ci_low/ci_high clipped to [0, 100] as in the comparison (raw ends and ci_note "
            "beside them)."], [("lr_sensitivity", sens_cells), ("lr_width", sens_widths)], figs_sens,
            anchor="sensitivity"),
        Section("Ablation", [
            "Ablation phase: AMGT with one mechanism switched off (amgt-no-threshold: τ = 0; amgt-no-decay: "
            "λ = 0; amgt-no-variance: γ = 0) and Adam; differences are paired by seed against full AMGT. "
            "Accuracy ci_low/ci_high clipped to [0, 100] as in the comparison."],
            [("ablation", ablation)], figs_abl, anchor="ablation"),
        Section("Tuning budget", [
            "Search phase: expected best validation accuracy after k trials drawn at random from the trials "
            "run (Dodge et al. 2019), with a 95 % bootstrap band."], [("budget", budget)], figs_budget,
            anchor="budget"),
        Section("What matters: hyperparameter importance", [
            "From the Optuna studies: importance_default = optuna.importance.get_param_importances with "
            "Optuna's default evaluator (PED-ANOVA in Optuna 5); importance_fanova = the same with "
            "FanovaImportanceEvaluator(seed=0); each sums to 1 per study. Contour and slice plots: Optuna's "
            "matplotlib visualisations for AMGT's lr, tau (τ), lr_decay (λ) and gamma (γ); a contour plot is "
            f"drawn only from ≥ {CONTOUR_MIN_TRIALS} completed trials over params with ≥ 2 distinct values (else "
            "it interpolates a surface between a few points: skipped, with the reason below).", *notes],
            [("importance", importance)], optuna_figs, anchor="importance"),
        Section("Fairness", [
            "Trials per study, phase, benchmark and optimizer, by outcome; search_dims = hyperparameters that "
            "vary within the group (the search-space dimensions actually explored); seeds used. Diverged and "
            "failed runs are counted here, never dropped silently."], [("fairness", fairness)], anchor="fairness"),
        Section("Provenance", [
            "One row per parent run (study phase): git commit, devices, package versions, dates. Every trial "
            "run id with its tags, hyperparameters and final metrics is in "
            + ("runs.csv." if "csv" in fmts else "the table runs (CSV output not requested).")],
            [("provenance", provenance), ("environment", environment)], anchor="provenance"),
    ]
    all_tables = {"settings": settings, "claims": claims_df, "rules": rules_df, "comparison": comparison, "cost": cost,
                  "lr_sensitivity": sens_cells, "lr_width": sens_widths, "ablation": ablation, "budget": budget,
                  "importance": importance, "fairness": fairness, "provenance": provenance, "environment": environment,
                  "runs": runs}
    figures = figs_curves + figs_time + figs_sens + figs_abl + figs_budget + optuna_figs

    t1 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = ReportResult(out_dir=out, missing=missing + notes, claims=claims, tables=all_tables, timings=timings)
    tmp = Path(tempfile.mkdtemp(prefix=".report-", dir=out))
    try:
        (tmp / "figures").mkdir()
        for f in figures:
            (tmp / "figures" / f"{f.name}.png").write_bytes(f.png)
        if "csv" in fmts:
            for name, df in all_tables.items():
                df.to_csv(tmp / f"{name}.csv", index=False)
        if "html" in fmts:
            (tmp / "report.html").write_text(render_html(title, sections, csv="csv" in fmts), encoding="utf-8")
        if "md" in fmts:
            (tmp / "report.md").write_text(render_markdown(title, sections, csv="csv" in fmts), encoding="utf-8")
        if (out / "figures").exists():
            shutil.rmtree(out / "figures")
        for item in tmp.iterdir():
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if "html" in fmts:
        result.html = out / "report.html"
    if "md" in fmts:
        result.md = out / "report.md"
    if "csv" in fmts:
        result.csv = [out / f"{n}.csv" for n in all_tables]
    result.figures = [out / "figures" / f"{f.name}.png" for f in figures]
    result.figures_drawn = list(figures)
    timings["render_s"] = time.perf_counter() - t1
    result.timings = timings
    return result
