"""``build_report``: read studies from MLflow, compute tables, claims and figures, write HTML/Markdown/CSV,
and log them as artifacts of each study's parent run."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from tracking import query

from . import plots, tables
from .answer import answer_claims, answer_optimizers, answer_source
from .claims import ClaimResult, evaluate_claims
from .data import ReportData
from .importance import IMPORTANCE_COLUMNS, importance_section, resolve_optuna_storage
from .pairs import Comparison, pair_results, resolve_comparison
from .protocol import selection_table
from .render import render_html, render_markdown
from .sections import Computed, claims_frame, pairs_frame, power_frame, report_sections, rules_frame
from .verdicts import DEFAULT_SETTINGS, VerdictSettings

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
    matplotlib ``figure`` they were drawn from), in the same order. comparison: the candidate(s) and the
    baseline compared (``pairs.Comparison``); pairs: the candidate-vs-baseline results (``comparison_pairs.csv``;
    empty for the default AMGT-vs-Adam report, whose verdicts are ``claims``; ``claims`` is empty when the
    candidate is not AMGT: C1–C15 are not evaluated on another optimizer).
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
    comparison: Comparison = field(default_factory=Comparison)
    pairs: list[ClaimResult] = field(default_factory=list)

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
    settings: VerdictSettings | None = None,
    candidate: str | None = None,
    baseline: str | None = None,
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
        settings: the verdicts' decision settings (``verdicts.VerdictSettings``: α, power, the overlap rule,
            per-claim smallest effects of interest, paper effects and minimum seeds); None: the defaults.
        candidate, baseline: the optimizers (names as the runs' ``optimizer`` tag) the comparison, cost and
            sensitivity tables and the paired statistics put against each other (``pairs.resolve_comparison``).
            baseline None: ``"adam"``. candidate None: AMGT when the studies have AMGT runs (the paper's report:
            claims C1–C15, no pair section), else every other optimizer of the final phase against the
            baseline. A candidate other than AMGT gets a "<candidate> vs <baseline>" section
            (``comparison_pairs.csv``) instead of the claims, which are not evaluated on it.

    Returns:
        ReportResult. A study still running or missing phases gives a report that says what is missing
        (``.missing``), never invented numbers.

    Raises:
        tracking.query.UnknownStudyError: a study not in the store (lists the known ones).
        ValueError: a format not in ``FORMATS``, no study named, or a candidate/baseline that is not an
            optimizer of the studies (the message lists those present; nothing is written).
        FileNotFoundError: a SQLite store file that does not exist.
    """
    names = [studies] if isinstance(studies, str) else list(dict.fromkeys(studies))
    fmts = _formats(formats)
    uri = query.resolve_tracking_uri(tracking_uri)
    timings = {}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # pandas' hint that a wide frame built column by column is fragmented: a speed note, not a problem
        warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
        data = ReportData.load(names, uri, history_source=history_source)
        timings["load_s"] = time.perf_counter() - t0
        storage = resolve_optuna_storage(optuna_storage, uri)
        result = write_report(data, out_dir, formats=fmts, optuna_storage=storage, timings=timings,
                              settings=settings, candidate=candidate, baseline=baseline)
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
        if (p["status"] == "RUNNING").any():  # a partial report on a parent that will end FINISHED reads as final
            result.missing.append(f"study {study!r} is still running: the report was not logged to MLflow (build it "
                                  "again once the study has finished)")
            continue
        rank = {ph: i for i, ph in enumerate(_PARENT_PREFERENCE)}
        p = p.copy()  # de-fragmented (a wide runs frame): no pandas PerformanceWarning
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


def write_report(data: ReportData, out_dir: str | Path, *, formats: Sequence[str] = FORMATS,
                 optuna_storage: str | None = None, timings: dict | None = None,
                 settings: VerdictSettings | None = None, candidate: str | None = None,
                 baseline: str | None = None) -> ReportResult:
    """Compute every table, claim and figure from ``data`` and write the report files into ``out_dir``.
    ``settings``: the verdicts' decision settings (default ``verdicts.DEFAULT_SETTINGS``; its overlap rule is
    applied to every final-phase statistic). ``candidate``, ``baseline``: as ``build_report``'s (checked before
    anything is written). Files are written to a temporary directory first and moved in at the end (nothing
    half-written)."""
    fmts = _formats(formats)
    settings = settings or DEFAULT_SETTINGS
    if data.overlap_rule != settings.overlap_rule:
        data = data.with_overlap_rule(settings.overlap_rule)
    comparison = resolve_comparison(data, candidate, baseline)
    first = (*comparison.candidates, comparison.baseline)
    timings = dict(timings or {})
    t0 = time.perf_counter()
    claims = evaluate_claims(data, settings) if comparison.paper_claims else []
    pairs = [] if comparison.paper_pair else pair_results(data, comparison, settings)
    sens_cells, sens_widths = tables.sensitivity_tables(data, first=first)
    ablation = tables.ablation_table(data)
    budget = tables.budget_table(data)
    runs = tables.runs_table(data)
    notes: list[str] = []
    if optuna_storage:
        searched = sorted(data.runs.loc[data.runs["phase"] == "search", "study"].dropna().unique())
        importance, optuna_figs, notes = (
            importance_section(searched, optuna_storage, _objectives(data)) if searched else
            (pd.DataFrame(columns=IMPORTANCE_COLUMNS), [], []))
    else:
        importance, optuna_figs, notes = (pd.DataFrame(columns=IMPORTANCE_COLUMNS), [],
                                          ["no Optuna storage given: no importance"])
    if not len(data.histories) and len(data.usable("final")):
        notes.append("no per-epoch histories: the training-curve figures (loss, validation accuracy, gradient σ, "
                     "accuracy vs time) are not drawn, and the claims that need curves (C4 part b, C9 part a, C14, "
                     "C15) are not measured")
    comp = tables.comparison_table(data, settings, candidates=comparison.candidates, baseline=comparison.baseline)
    phase, source = answer_source({"comparison": comp, "ablation": ablation})
    figures = {"answer": plots.answer_figure(phase, source, data, comparison.baseline),
               "curves": plots.curve_figures(data) + plots.accuracy_vs_time(data),
               "sensitivity": plots.sensitivity_figures(sens_cells, sens_widths, data),
               "ablation": plots.ablation_figures(ablation, data), "budget": plots.budget_figures(budget, data),
               "importance": optuna_figs}
    answer = ({"answer_claims": answer_claims(claims)} if comparison.paper_claims else {}) | (
        {} if comparison.paper_pair else {"answer_pairs": answer_claims(pairs)})
    verdicts = ({"claims": claims_frame(claims), "power": power_frame(claims)} if comparison.paper_claims else {}) | (
        {} if comparison.paper_pair else {"comparison_pairs": pairs_frame(pairs)})
    all_tables = {**answer, "answer_optimizers": answer_optimizers(phase, source, comparison.baseline),
                  "settings": tables.settings_table(data), **verdicts, "rules": rules_frame(settings, comparison),
                  "selection": selection_table(data.runs, data.parents, data.fairness),
                  "comparison": comp,
                  "cost": tables.cost_table(data, candidates=comparison.candidates, baseline=comparison.baseline),
                  "lr_sensitivity": sens_cells, "lr_width": sens_widths, "ablation": ablation, "budget": budget,
                  "importance": importance, "fairness": tables.fairness_table(data),
                  "provenance": tables.provenance_table(data), "environment": _environment(), "runs": runs,
                  "runs_columns": tables.runs_columns_table(runs), "histories": tables.histories_table(data)}
    computed = Computed(data, settings, claims, all_tables, figures, notes, fmts, comparison, pairs)
    sections, missing = report_sections(computed)
    figures = [f for group in figures.values() for f in group]
    title = (f"AMGT robustness report — {', '.join(data.studies)}" if comparison.paper_claims else
             f"{comparison.label} — robustness report — {', '.join(data.studies)}")
    timings["compute_s"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = ReportResult(out_dir=out, missing=missing, claims=claims, tables=all_tables, timings=timings,
                          comparison=comparison, pairs=pairs)
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
