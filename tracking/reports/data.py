"""The runs behind a report: read from MLflow once, cleaned into one table per concept.

``ReportData.load`` reads a set of studies (``tracking.query``), ``ReportData.from_frames`` builds the same
object from DataFrames a test constructs. Columns of ``ReportData.runs`` (one row per trial run):
``run_id, study, phase, optimizer, benchmark, seed, outcome, status, device, git_sha, start_time,
end_time, error``, ``epochs, batch_size, max_steps`` (the trial's params; NaN when not logged), every
metric of ``schema.METRICS_EPOCH``/``METRICS_FINAL`` (latest value; accuracies
are fractions in [0, 1]), ``hp.<name>`` for each hyperparameter, and the per-run summaries of the
per-epoch curves:

- ``epoch_time_median``: median of ``epoch_time_s`` over epochs (s);
- ``val_acc_sd_detrended``: σ over epochs of ``val_accuracy`` about its linear trend, last half of training
  (``measures.detrended_sd``; fraction; NaN with fewer than 4 epochs in that half);
- ``oscillation_mean``: mean over epochs of ``loss_oscillation``;
- ``grad_sq_first`` / ``grad_sq_min``: the squared gradient norm at the first epoch / its minimum over
  epochs, from ``grad_norm`` (‖∇f(x)‖ at the epoch's last iterate, noise-free: function benchmarks) when
  the run logged it, else from ``grad_norm_mean`` (mean of the per-step norms); ``grad_source`` says which.

One meaning per column: a metric column is MLflow's latest value (the last epoch's); a summary column is
computed from the run's per-epoch history and is NaN when the history was not loaded (search-phase runs),
never filled with the last epoch's value. A runs table that already carries a summary (a report's own
``runs.csv`` read back, ``restore``) keeps it for runs without a history.
``selection_overlap``: why a final-phase run replays its selected search trial ("" if it does not;
``protocol.selection_overlap``); with ``overlap_rule = "exclude"`` (default) such runs are left out of
every final-phase statistic (``usable``).

Outcome: the ``outcome`` tag (completed | diverged | failed); a run MLflow says KILLED is ``interrupted``
(stopped by a signal, Ctrl-C or a lost Ray node, not by its own code: never a failure of the optimizer, see
claims/common.py ``failure_blocks``); a run without the tag is ``running`` while MLflow says RUNNING,
``failed`` when FAILED, ``completed`` when FINISHED.

One row per trial, not per attempt: a trial retried by Ray Tune (``max_failures``) or re-run by ``resume``
has one MLflow run per attempt under the same ``trial_key``; its failed attempts are dropped when another
attempt completed, diverged or is running, and only its last failed attempt is kept when all failed
(``ReportData.retried_attempts`` counts the attempts dropped), as ``amgt-study status`` counts trials.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from tracking import query, schema

from .measures import detrended_sd
from .protocol import selection_overlap

__all__ = ["ReportData", "HISTORY_METRICS", "EXPECTED_PHASES", "USABLE_OUTCOMES", "TRAINING_PARAMS"]

HISTORY_METRICS = ("train_loss", "val_loss", "val_accuracy", "test_accuracy", "epoch_time_s",
                   "grad_norm_mean", "grad_norm_std", "loss_oscillation", "grad_norm")
#: The phases each study kind writes (study/runner.py); a kind's missing phase is reported.
EXPECTED_PHASES = {"comparison": ("search", "final"), "sensitivity": ("grid",), "ablation": ("ablation",),
                   "quadratic": ("quadratic",)}
#: Runs that enter the statistics: a diverged run is a result (it keeps the accuracy it recorded).
USABLE_OUTCOMES = ("completed", "diverged")
#: attempts that ended without a result: another attempt of the same trial replaces them
UNFINISHED_OUTCOMES = ("failed", "interrupted")
#: How long a trial trained (its MLflow params, ``schema.PARAMS_TRIAL``): numeric columns of ``runs``,
#: NaN when not logged (``max_steps`` NaN: every epoch ran in full).
TRAINING_PARAMS = ("epochs", "batch_size", "max_steps")

_TAGS = {"study": schema.TAG_STUDY, "phase": schema.TAG_PHASE, "optimizer": schema.TAG_OPTIMIZER,
         "benchmark": schema.TAG_BENCHMARK, "seed": schema.TAG_SEED, "outcome": schema.TAG_OUTCOME,
         "device": schema.TAG_DEVICE, "git_sha": schema.TAG_GIT_SHA, "error": schema.TAG_ERROR,
         "optuna_trial": schema.TAG_OPTUNA_TRIAL, "trial_key": schema.TAG_TRIAL_KEY,
         "optimizer_impl": schema.TAG_OPTIMIZER_IMPL}
_METRICS = tuple(dict.fromkeys(schema.METRICS_EPOCH + schema.METRICS_FINAL + schema.METRICS_FINAL_OPTIONAL))


def _trial_columns() -> list[str]:
    return ([f"tags.{t}" for t in _TAGS.values()] + ["params.hp.*", "params.optim.*", "params.epochs",
                                                             "params.batch_size", "params.max_steps"]
            + [f"metrics.{m}" for m in _METRICS])


def _superseded_attempts(runs: pd.DataFrame) -> pd.Series:
    """Boolean mask of the failed attempts that another attempt of the same ``trial_key`` replaces: every
    failed one when an attempt completed, diverged or is running, else all but the latest failed one.
    Runs without a ``trial_key`` are never superseded."""
    mask = pd.Series(False, index=runs.index)
    if "trial_key" not in runs.columns:
        return mask
    keyed = runs[runs["trial_key"].notna() & (runs["trial_key"].astype(str) != "")]
    for _, group in keyed.groupby(["study", "trial_key"], dropna=False):
        failed = group[group["outcome"].isin(UNFINISHED_OUTCOMES)]
        if len(group) < 2 or failed.empty:
            continue
        if len(failed) < len(group):
            mask[failed.index] = True
        else:
            latest = failed.sort_values("start_time", na_position="first", kind="stable").index[-1]
            mask[failed.index.drop(latest)] = True
    return mask


def _outcome(status: str, tag) -> str:
    if status == "KILLED":
        return "interrupted"
    if isinstance(tag, str) and tag in schema.OUTCOMES:
        return tag
    if status == "RUNNING" or status == "SCHEDULED":
        return "running"
    if status == "FAILED":
        return "failed"
    return "completed"


def _num(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def clean_trials(raw: pd.DataFrame) -> pd.DataFrame:
    """``load_runs`` output (``tags.*``/``params.*``/``metrics.*``) → the clean ``runs`` table."""
    out = pd.DataFrame({"run_id": raw["run_id"].astype(str)})
    for name, tag in _TAGS.items():
        col = f"tags.{tag}"
        out[name] = raw[col].to_numpy() if col in raw.columns else None
    if "study" in raw.columns:
        out["study"] = out["study"].where(out["study"].notna(), raw["study"])
    out["status"] = raw["status"].to_numpy()
    out["start_time"] = raw["start_time"].to_numpy()
    out["end_time"] = raw["end_time"].to_numpy()
    for m in _METRICS:
        col = f"metrics.{m}"
        out[m] = raw[col].to_numpy(dtype=float) if col in raw.columns else np.nan
    for col in raw.columns:  # hp.*: what the trial set; optim.*: the optimizer's full settings (defaults too)
        if col.startswith(("params." + schema.PARAM_HP_PREFIX, "params." + schema.PARAM_OPTIM_PREFIX)):
            out[col[len("params."):]] = [_num(v) for v in raw[col]]
    for p in TRAINING_PARAMS:  # max_steps absent (NaN): full epochs
        out[p] = pd.to_numeric(raw[f"params.{p}"], errors="coerce").to_numpy() if f"params.{p}" in raw else np.nan
    return out


@dataclass
class ReportData:
    """Everything a report is computed from. ``missing``: what the store lacks, in words."""

    studies: list[str]
    runs: pd.DataFrame
    histories: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["run_id", "metric", "step", "value"]))
    parents: pd.DataFrame = field(default_factory=pd.DataFrame)
    quadratic_facts: dict = field(default_factory=dict)   # study -> facts dict
    missing: list[str] = field(default_factory=list)
    tracking_uri: str | None = None
    retried_attempts: int = 0   # failed attempts of trials that were run again (not rows of ``runs``)
    fairness: dict = field(default_factory=dict)          # study -> fairness.json of its parent runs
    overlap_rule: str = "exclude"                         # VerdictSettings.overlap_rule

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def from_frames(cls, runs: pd.DataFrame, histories: pd.DataFrame | None = None, *,
                    studies: Sequence[str] | None = None, parents: pd.DataFrame | None = None,
                    quadratic_facts: dict | None = None, missing: list[str] | None = None,
                    tracking_uri: str | None = None, fairness: dict | None = None) -> "ReportData":
        """Normalise a clean ``runs`` table (missing columns filled: NaN metrics, outcome from status)
        and derive the per-run curve summaries from ``histories`` (long: run_id, metric, step, value)."""
        runs = runs.copy()
        defaults = {"study": "study", "phase": "final", "benchmark": None, "optimizer": None, "seed": np.nan,
                    "status": "FINISHED", "outcome": None, "device": None, "git_sha": None, "error": None,
                    "start_time": pd.NaT, "end_time": pd.NaT, "optuna_trial": None,
                    **{p: np.nan for p in TRAINING_PARAMS}}
        for col, val in defaults.items():
            if col not in runs.columns:
                runs[col] = val
        for m in _METRICS:
            if m not in runs.columns:
                runs[m] = np.nan
            runs[m] = pd.to_numeric(runs[m], errors="coerce").astype(float)
        runs["seed"] = pd.to_numeric(runs["seed"], errors="coerce")
        runs["outcome"] = [_outcome(s, o) for s, o in zip(runs["status"], runs["outcome"])]
        superseded = _superseded_attempts(runs)
        runs = runs[~superseded].reset_index(drop=True)
        hist = histories if histories is not None else pd.DataFrame(columns=["run_id", "metric", "step", "value"])
        runs = _summarise(runs, hist)
        parents = parents if parents is not None else pd.DataFrame()
        runs["selection_overlap"] = selection_overlap(runs, parents)
        return cls(studies=list(studies or sorted(runs["study"].dropna().unique())), runs=runs,
                   histories=hist, parents=parents,
                   quadratic_facts=dict(quadratic_facts or {}), missing=list(missing or []),
                   tracking_uri=tracking_uri, retried_attempts=int(superseded.sum()),
                   fairness=dict(fairness or {}))

    @classmethod
    def load(cls, studies: Sequence[str], tracking_uri: str | None = None, *,
             history_source: str = "metric_history") -> "ReportData":
        """Read the studies from MLflow: parent runs, trial runs (only the columns the report uses), the
        per-epoch histories of every non-search run that has ended, and the quadratic facts.

        Raises:
            UnknownStudyError: a study that is not in the store (the message lists the known ones).
        """
        studies = list(studies)
        query.experiment_ids(tracking_uri, studies)  # raises UnknownStudyError early
        parents = query.load_runs(tracking_uri, studies, role=schema.ROLE_PARENT)
        raw = query.load_runs(tracking_uri, studies, role=schema.ROLE_TRIAL, columns=_trial_columns())
        runs = clean_trials(raw)
        ended = runs[(runs["phase"] != "search") & (runs["status"] != "RUNNING")]
        hist = query.load_histories(tracking_uri, ended["run_id"], HISTORY_METRICS, source=history_source)
        facts, fact_notes = _quadratic_facts(tracking_uri, parents)
        fairness = _fairness(tracking_uri, parents)
        data = cls.from_frames(runs, hist, studies=studies, parents=parents, quadratic_facts=facts,
                               tracking_uri=tracking_uri, fairness=fairness)
        data.missing = completeness(studies, parents, data.runs) + fact_notes
        return data

    # ---- selections --------------------------------------------------------------------------
    def usable(self, phase: str | Sequence[str] | None = None, benchmark: str | None = None) -> pd.DataFrame:
        """Runs that enter statistics (completed or diverged), optionally of a phase and benchmark; with
        ``overlap_rule == "exclude"`` without the final-phase runs that replay their selection."""
        r = self.runs[self.runs["outcome"].isin(USABLE_OUTCOMES)]
        if self.overlap_rule == "exclude" and "selection_overlap" in r:
            r = r[r["selection_overlap"].fillna("") == ""]
        if phase is not None:
            r = r[r["phase"].isin([phase] if isinstance(phase, str) else list(phase))]
        if benchmark is not None:
            r = r[r["benchmark"] == benchmark]
        return r

    def replayed(self, benchmark: str | None = None) -> pd.DataFrame:
        """Final-phase runs that replay their selected search trial (``selection_overlap`` set)."""
        r = self.runs[(self.runs["phase"] == "final") & (self.runs["selection_overlap"].fillna("") != "")]
        return r if benchmark is None else r[r["benchmark"] == benchmark]

    def with_overlap_rule(self, rule: str) -> "ReportData":
        """A shallow copy that applies ``rule`` ("exclude" or "flag")."""
        from dataclasses import replace

        return replace(self, overlap_rule=rule)

    def curves(self, run_ids: Sequence[str], metric: str) -> pd.DataFrame:
        h = self.histories
        return h[(h["metric"] == metric) & (h["run_id"].isin(list(run_ids)))]


def _finite_mean(v: pd.Series) -> float:
    x = v.to_numpy(dtype=float)
    return float(np.nanmean(x)) if np.isfinite(x).any() else np.nan


def _first_sq(v: pd.Series) -> float:
    return float(v.iloc[0]) ** 2


def _min_sq(v: pd.Series) -> float:
    x = v.to_numpy(dtype=float) ** 2
    return float(np.nanmin(x)) if np.isfinite(x).any() else np.nan


_SUMMARIES = (  # (column, metric, reducer over the run's epochs in order)
    ("epoch_time_median", "epoch_time_s", lambda v: float(np.nanmedian(v.to_numpy(dtype=float)))),
    ("val_acc_sd_detrended", "val_accuracy", lambda v: detrended_sd(v.to_numpy(dtype=float))),
    ("oscillation_mean", "loss_oscillation", _finite_mean),
    ("grad_sq_first", "grad_norm_mean", _first_sq),
    ("grad_sq_min", "grad_norm_mean", _min_sq),
    ("_true_sq_first", "grad_norm", _first_sq),
    ("_true_sq_min", "grad_norm", _min_sq),
)


def _summarise(runs: pd.DataFrame, hist: pd.DataFrame) -> pd.DataFrame:
    runs = runs.copy()
    h = hist.sort_values(["run_id", "metric", "step"]) if len(hist) else hist
    for column, metric, reduce in _SUMMARIES:
        sub = h[h["metric"] == metric] if len(h) else h
        per_run = sub.groupby("run_id")["value"].agg(reduce) if len(sub) else pd.Series(dtype=float)
        computed = runs["run_id"].map(per_run).astype(float)
        if column in runs.columns:  # a summary carried by the table itself: kept where no history exists
            given = pd.to_numeric(runs[column], errors="coerce").astype(float)
            computed = computed.where(runs["run_id"].isin(per_run.index), given)
        runs[column] = computed
    true = runs["_true_sq_first"].notna() & runs["_true_sq_min"].notna()
    given_source = runs["grad_source"] if "grad_source" in runs.columns else pd.Series(None, index=runs.index)
    runs["grad_source"] = np.where(true, "grad_norm", np.where(runs["grad_sq_first"].notna(), "grad_norm_mean", None))
    has_hist = runs["run_id"].isin(set(h.loc[h["metric"].isin(("grad_norm", "grad_norm_mean")), "run_id"])
                                   if len(h) else set())
    runs["grad_source"] = runs["grad_source"].where(has_hist | given_source.isna(), given_source)
    runs.loc[true, "grad_sq_first"] = runs.loc[true, "_true_sq_first"]
    runs.loc[true, "grad_sq_min"] = runs.loc[true, "_true_sq_min"]
    runs = runs.drop(columns=["_true_sq_first", "_true_sq_min"])
    return runs


def completeness(studies: Sequence[str], parents: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    """What a report cannot show yet, in words: running phases and trials, expected phases without
    runs, failed trials (counted, and shown in the fairness table)."""
    notes: list[str] = []
    for study in studies:
        p = parents[parents["study"] == study] if len(parents) else parents
        r = runs[runs["study"] == study]
        kinds = sorted(set(p.get("tags.kind", pd.Series(dtype=str)).dropna())) if len(p) else []
        if not len(p) and not len(r):
            notes.append(f"study {study!r}: no runs at all yet")
            continue
        for kind in kinds:
            if kind not in EXPECTED_PHASES:
                continue
            for phase in EXPECTED_PHASES[kind]:
                has_parent = len(p) and (p["tags.phase"] == phase).any()
                has_runs = (r["phase"] == phase).any()
                if phase == "quadratic":
                    if not has_parent:
                        notes.append(f"study {study!r} (kind {kind}): phase {phase!r} has not started")
                    continue
                if not has_runs:
                    notes.append(f"study {study!r} (kind {kind}): phase {phase!r} has no trial runs"
                                 + ("" if has_parent else " (not started)"))
        if len(p):
            for _, row in p[p["status"] == "RUNNING"].iterrows():
                notes.append(f"study {study!r}: phase {row.get('tags.phase')!r} is still running "
                             f"(parent run {row['run_id']}); its numbers may change")
        running = r[r["outcome"] == "running"]
        if len(running):
            by = running.groupby("phase").size().to_dict()
            notes.append(f"study {study!r}: {len(running)} trial run(s) still running ({by}); they are counted "
                         "in the fairness table but not in any statistic")
    return notes


def _fairness(tracking_uri: str | None, parents: pd.DataFrame) -> dict:
    """study -> its fairness.json (the search phase's parent first, else any parent that has one)."""
    out: dict = {}
    if not len(parents) or "tags.phase" not in parents:
        return out
    client = query.client_for(tracking_uri)
    rank = {"search": 0, "final": 1}
    ordered = parents.assign(_r=parents["tags.phase"].map(rank).fillna(9)).sort_values("_r")
    for _, row in ordered.iterrows():
        if row["study"] in out:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = client.download_artifacts(row["run_id"], schema.ARTIFACT_FAIRNESS, tmp)
                out[row["study"]] = json.loads(Path(path).read_text())
            except Exception:  # not every phase writes one; older runs may lack it
                continue
    return out


def _quadratic_facts(tracking_uri: str | None, parents: pd.DataFrame) -> tuple[dict, list[str]]:
    facts: dict = {}
    notes: list[str] = []
    if not len(parents) or "tags.phase" not in parents:
        return facts, notes
    client = query.client_for(tracking_uri)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for _, row in parents[parents["tags.phase"] == "quadratic"].iterrows():
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = client.download_artifacts(row["run_id"], schema.ARTIFACT_QUADRATIC, tmp)
                facts[row["study"]] = json.loads(Path(path).read_text())
            except Exception as exc:  # absent while the phase runs, or unreadable
                notes.append(f"study {row['study']!r}: no readable {schema.ARTIFACT_QUADRATIC} on parent run "
                             f"{row['run_id']} ({type(exc).__name__})")
    return facts, notes
