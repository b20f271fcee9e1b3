"""The report's tables as pandas DataFrames (one CSV each). Accuracies in percentage points.

Definitions (printed in the report too):
- comparison: final phase, per benchmark × optimizer: n scored runs (failure rule: a diverged run without an
  accuracy scores chance), mean final test accuracy and its 95 % t-interval, σ across seeds (ddof 1), the
  mean over seeds of σ over epochs about the trend (``val_acc_sd_detrended``, points), the hyperparameters
  used (the search's best), the paired difference to the baseline (Adam by default; matched seeds) with its
  t-interval, its sd, the MDE at that n, the paired-t p (the interval's test) Holm-adjusted across the optimizers of that benchmark,
  and the exact Wilcoxon p beside it with its floor 2/2ⁿ; runs replaying their selection (winner's curse)
  are counted in ``replayed`` and left out under the overlap rule "exclude".
- cost: final phase: median over runs of each run's median epoch time, its ratio to the baseline's (Adam's by
  default) in the same study with a bootstrap interval, peak memory (max), optimizer-state bytes (median).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from tracking import schema

from . import evidence as ev
from . import stats
from .claims import ADAM, AMGT, PAPER_ACCURACY, lr_grid
from .claims.ablation import matched_oscillation
from .claims.common import Context, scored_accuracy
from .claims.cost import implementations
from .data import ReportData
from .power import wilcoxon_floor
from .verdicts import DEFAULT_SETTINGS, VerdictSettings

__all__ = ["settings_table", "clip_accuracy_ci",
           "comparison_table", "cost_table", "sensitivity_tables", "ablation_table", "budget_table",
           "fairness_table", "provenance_table", "runs_table", "hparams_of", "runs_columns_table", "histories_table",
           "RUNS_COLUMNS", "COMPARISON_COLUMNS", "comparison_columns"]


def _hp_text(v) -> str | None:
    if v is None or (not isinstance(v, str) and pd.isna(v)) or v in ("nan", "None", ""):
        return None
    try:
        return f"{float(v):.4g}"
    except (TypeError, ValueError):
        return str(v)


def hparams_of(runs: pd.DataFrame) -> str:
    """The hyperparameters of a group of runs, ``name=value`` (4 significant digits), the most common
    setting among the runs; hyperparameters an optimizer does not have are left out."""
    cols = sorted(c for c in runs.columns if c.startswith("hp."))
    if not cols or not len(runs):
        return ""
    texts = []
    for _, r in runs[cols].iterrows():
        items = [(c[3:], _hp_text(r[c])) for c in cols]
        texts.append(", ".join(f"{k}={v}" for k, v in items if v is not None))
    return pd.Series(texts).mode().iloc[0]


def _order(opts, first: Sequence[str] = (AMGT, ADAM)) -> list[str]:
    """``first`` (the candidates, then the baseline) where present, then the others sorted."""
    opts = list(dict.fromkeys(opts))
    first = list(dict.fromkeys(first))
    return [o for o in first if o in opts] + sorted(o for o in opts if o not in first)


ACCURACY_RANGE = (0.0, 100.0)


def clip_accuracy_ci(df: pd.DataFrame, low: str = "ci_low", high: str = "ci_high", n: str = "n") -> pd.DataFrame:
    """Clip the displayed accuracy interval ``low``/``high`` (points) to [0, 100], keep the t-interval as
    computed in ``<low>_raw``/``<high>_raw``, and add ``ci_note``: "clipped" when an end lay outside the
    range, "n < 3" when the interval rests on fewer than 3 values (t = 12.7 at n = 2: nearly meaningless)."""
    df = df.copy()
    raw_lo, raw_hi = df[low].astype(float), df[high].astype(float)
    df[low] = raw_lo.clip(lower=ACCURACY_RANGE[0])
    df[high] = raw_hi.clip(upper=ACCURACY_RANGE[1])
    at = list(df.columns).index(high) + 1
    df.insert(at, f"{low}_raw", raw_lo)
    df.insert(at + 1, f"{high}_raw", raw_hi)
    notes = []
    for lo, hi, k in zip(raw_lo, raw_hi, df[n]):
        parts = []
        if (np.isfinite(lo) and lo < ACCURACY_RANGE[0]) or (np.isfinite(hi) and hi > ACCURACY_RANGE[1]):
            parts.append("clipped to [0, 100]")
        if pd.notna(k) and 0 < k < 3:
            parts.append(f"n = {int(k)} < 3")
        notes.append("; ".join(parts))
    df.insert(at + 2, "ci_note", notes)
    return df


def _values(v: pd.Series, limit: int = 12) -> str:
    u = sorted({int(x) for x in pd.to_numeric(v, errors="coerce").dropna()})
    return ", ".join(map(str, u[:limit])) + (" …" if len(u) > limit else "")


def settings_table(data: ReportData) -> pd.DataFrame:
    """How long the trials trained, per study × benchmark: kind (parent runs' ``kind`` tag), phases,
    epochs, batch_size, max_steps (the trials' params; "none" = full epochs), seeds (non-search phases),
    search trials per optimizer, device, and the paper's epochs for that benchmark."""
    from .claims import PAPER_EPOCHS

    rows = []
    p = data.parents
    for (study, bench), r in data.runs.groupby(["study", "benchmark"], dropna=False):
        kinds = (sorted(set(p.loc[p["study"] == study, "tags.kind"].dropna().astype(str)))
                 if len(p) and "tags.kind" in p and "study" in p else [])
        search = r[r["phase"] == "search"]
        seeds = r.loc[r["phase"] != "search", "seed"].dropna().unique()
        capped = _values(r["max_steps"])
        rows.append({"study": study, "benchmark": bench, "kind": ", ".join(kinds),
                     "phases": ", ".join(sorted(set(r["phase"].dropna().astype(str)))),
                     "epochs": _values(r["epochs"]) or _values(r["epochs_completed"]),
                     "batch_size": _values(r["batch_size"]),
                     "max_steps": capped or "none (full epochs)",
                     "seeds": f"{len(seeds)} ({_values(pd.Series(seeds))})" if len(seeds) else "0",
                     "trials_per_optimizer": ", ".join(f"{o} {len(g)}" for o, g in search.groupby("optimizer")),
                     "device": ", ".join(sorted(set(r["device"].dropna().astype(str)))),
                     "paper_epochs": PAPER_EPOCHS.get(bench, math.nan)})
    return pd.DataFrame(rows, columns=["study", "benchmark", "kind", "phases", "epochs", "batch_size", "max_steps",
                                       "seeds", "trials_per_optimizer", "device", "paper_epochs"])


COMPARISON_COLUMNS = [
    "benchmark", "optimizer", "runs", "n", "diverged", "failed", "interrupted", "running", "replayed", "search_failed",
    "test_acc_mean", "ci_low", "ci_high", "paper_acc", "sigma_seeds", "sigma_epochs_detrended", "diff_vs_adam", "diff_ci_low", "diff_ci_high",
    "n_pairs", "sd_diff", "mde", "p_t", "p_holm", "p_wilcoxon", "p_wilcoxon_floor", "hyperparameters", "note"]



def comparison_columns(baseline: str = ADAM) -> list[str]:
    """The comparison table's columns; the paired difference is named after the baseline (``diff_vs_adam``)."""
    return [f"diff_vs_{baseline}" if c == "diff_vs_adam" else c for c in COMPARISON_COLUMNS]


def comparison_table(data: ReportData, settings: VerdictSettings | None = None, *,
                     candidates: Sequence[str] = (AMGT,), baseline: str = ADAM) -> pd.DataFrame:
    """Final phase, per benchmark × optimizer (docstring of the module; docs/reports.md "Definitions").
    Accuracies follow the failure rule (a diverged run without one scores chance); runs that replay their
    selected search trial are counted in ``replayed`` and, under the overlap rule "exclude", left out.
    Every optimizer is paired by seed with ``baseline`` (column ``diff_vs_<baseline>``); rows: ``candidates``,
    the baseline, then the others."""
    s = settings or DEFAULT_SETTINGS
    diff = f"diff_vs_{baseline}"
    rows = []
    all_final = data.runs[data.runs["phase"] == "final"]
    search = data.runs[data.runs["phase"] == "search"]
    for bench, allb in all_final.groupby("benchmark"):
        runs = data.usable("final", bench)
        base, _ = scored_accuracy(runs, baseline, bench)
        searched = search[search["benchmark"] == bench]
        search_failed = searched[searched["outcome"] == "failed"].groupby("optimizer").size()
        block = []
        for opt in _order(allb["optimizer"].dropna(), (*candidates, baseline)):
            r = runs[runs.optimizer == opt]
            a = allb[allb.optimizer == opt]
            scored, _ = scored_accuracy(runs, opt, bench)
            iv = stats.t_interval(scored)
            row = {"benchmark": bench, "optimizer": opt, "runs": len(a), "n": iv.n,
                   "diverged": int((a.outcome == "diverged").sum()), "failed": int((a.outcome == "failed").sum()),
                   "interrupted": int((a.outcome == "interrupted").sum()), "running": int((a.outcome == "running").sum()),
                   "replayed": int((a["selection_overlap"].fillna("") != "").sum()) if "selection_overlap" in a else 0,
                   "search_failed": int(search_failed.get(opt, 0)), "note": "",
                   "test_acc_mean": iv.estimate, "ci_low": iv.low, "ci_high": iv.high,
                   "paper_acc": PAPER_ACCURACY.get(bench, {}).get(opt, math.nan),
                   "sigma_seeds": float(scored.std(ddof=1)) if len(scored) > 1 else math.nan,
                   "sigma_epochs_detrended": float(r["val_acc_sd_detrended"].mean() * 100),
                   "hyperparameters": hparams_of(r if len(r) else a),
                   diff: math.nan, "diff_ci_low": math.nan, "diff_ci_high": math.nan,
                   "n_pairs": 0, "sd_diff": math.nan, "mde": math.nan, "p_t": math.nan, "p_wilcoxon": math.nan,
                   "p_wilcoxon_floor": math.nan}
            if opt != baseline and len(base):
                both = sorted(set(scored.index) & set(base.index))
                cs = s.claim("C1")
                res = ev.paired(scored[both] - base[both], direction=+1, delta=cs.sesoi, paper=None, min_n=cs.min_n,
                                alpha=s.alpha, power=s.power)
                row.update({diff: res.estimate}, diff_ci_low=res.ci[0], diff_ci_high=res.ci[1], n_pairs=res.n,
                           sd_diff=res.sd, mde=res.power.mde, p_t=res.p, p_wilcoxon=res.p_wilcoxon,
                           p_wilcoxon_floor=wilcoxon_floor(res.n))
            block.append(row)
        for opt in sorted(set(searched["optimizer"].dropna()) - set(allb["optimizer"].dropna())):
            block.append({"benchmark": bench, "optimizer": opt, "runs": 0, "n": 0, "diverged": 0, "failed": 0,
                          "interrupted": 0, "running": 0, "replayed": 0, "search_failed": int(search_failed.get(opt, 0)),
                          "n_pairs": 0, "p_t": math.nan, "hyperparameters": "", "note": schema.NOTE_NOT_RERUN})
        adjusted = stats.holm([r["p_t"] for r in block])
        for r, p in zip(block, adjusted):
            r["p_holm"] = p
        rows.extend(block)
    return clip_accuracy_ci(pd.DataFrame(rows, columns=comparison_columns(baseline)))


def cost_table(data: ReportData, *, candidates: Sequence[str] = (AMGT,), baseline: str = ADAM) -> pd.DataFrame:
    """Final phase, per study × benchmark × optimizer (module docstring); the ratio is to ``baseline``'s
    median epoch time (column ``ratio_to_<baseline>``); rows: ``candidates``, the baseline, the others."""
    rows = []
    ratio_col = f"ratio_to_{baseline}"
    for (study, bench), runs in data.usable("final").groupby(["study", "benchmark"]):
        adam = runs[runs.optimizer == baseline]["epoch_time_median"]
        for opt in _order(runs["optimizer"].dropna(), (*candidates, baseline)):
            r = runs[runs.optimizer == opt]
            ratio = stats.ratio_of_medians(r["epoch_time_median"], adam) if len(adam) else stats.Interval(
                math.nan, math.nan, math.nan, 0)
            rows.append({"study": study, "benchmark": bench, "optimizer": opt, "runs": len(r),
                         "median_epoch_time_s": float(r["epoch_time_median"].median()),
                         ratio_col: ratio.estimate, "ratio_ci_low": ratio.low, "ratio_ci_high": ratio.high,
                         "peak_memory_mb": float(r["peak_memory_bytes"].max() / 2**20),
                         "optimizer_state_bytes": float(r["optimizer_state_bytes"].median()),
                         "samples_per_s": float(r["samples_per_s"].median()),
                         "device": ", ".join(sorted(set(r["device"].dropna().astype(str)))),
                         "optimizer_impl": implementations(r, opt)})
    return pd.DataFrame(rows, columns=["study", "benchmark", "optimizer", "runs", "median_epoch_time_s",
                                       ratio_col, "ratio_ci_low", "ratio_ci_high", "peak_memory_mb",
                                       "optimizer_state_bytes", "samples_per_s", "device", "optimizer_impl"])


def sensitivity_tables(data: ReportData, *, first: Sequence[str] = (AMGT, ADAM)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per benchmark × optimizer × lr: mean test accuracy, CI, n) and (per benchmark × optimizer: width
    within 1 point of the best, in decades, with the range's ends); rows: ``first`` (candidates, baseline), then
    the others."""
    cells, widths = [], []
    for bench in sorted(data.usable("grid")["benchmark"].dropna().unique()):
        grid = lr_grid(data, bench)
        for opt in _order(grid["optimizer"].dropna(), first):
            g = grid[grid.optimizer == opt]
            means = []
            for lr, c in g.groupby("lr"):
                iv = stats.t_interval(c["score"])
                cells.append({"benchmark": bench, "optimizer": opt, "lr": lr, "n": iv.n, "test_acc_mean": iv.estimate,
                              "ci_low": iv.low, "ci_high": iv.high})
                means.append((lr, iv.estimate))
            w = stats.lr_range_width([m[0] for m in means], [m[1] for m in means])
            widths.append({"benchmark": bench, "optimizer": opt, "width_decades": w["width"], "lr_lo": w["lr_lo"],
                           "lr_hi": w["lr_hi"], "lr_best": w["lr_best"], "best_acc": w["best"]})
    return (clip_accuracy_ci(pd.DataFrame(cells, columns=["benchmark", "optimizer", "lr", "n", "test_acc_mean",
                                                          "ci_low", "ci_high"])),
            pd.DataFrame(widths, columns=["benchmark", "optimizer", "width_decades", "lr_lo", "lr_hi", "lr_best",
                                          "best_acc"]))


def ablation_table(data: ReportData) -> pd.DataFrame:
    """Ablation phase, per benchmark × variant: accuracy (failure rule) with its t-interval, the
    mean-over-epochs oscillation (divided by the loss level: shown, confounded), the paired accuracy difference
    to full AMGT and the oscillation ratio to full AMGT at matched training loss (mean over seeds of
    exp(ln osc_variant − ln osc_full); NaN without per-epoch histories)."""
    rows = []
    ctx = Context(data, DEFAULT_SETTINGS)
    for bench, runs in data.usable("ablation").groupby("benchmark"):
        full_acc, _ = scored_accuracy(runs, AMGT, bench)
        for opt in _order(runs["optimizer"].dropna()):
            r = runs[runs.optimizer == opt]
            scored, _ = scored_accuracy(runs, opt, bench)
            acc = stats.t_interval(scored)
            osc = stats.t_interval(r["oscillation_mean"])
            row = {"benchmark": bench, "optimizer": opt, "n": acc.n, "test_acc_mean": acc.estimate,
                   "ci_low": acc.low, "ci_high": acc.high, "oscillation_mean": osc.estimate,
                   "osc_ci_low": osc.low, "osc_ci_high": osc.high, "acc_diff_vs_full": math.nan,
                   "acc_diff_ci_low": math.nan, "acc_diff_ci_high": math.nan, "osc_ratio_matched_vs_full": math.nan,
                   "osc_matched_pairs": 0}
            if opt != AMGT and len(full_acc):
                d = stats.paired_difference(scored, full_acc)
                ratio, _ = matched_oscillation(ctx, runs, opt, AMGT)
                row.update(acc_diff_vs_full=d.difference.estimate, acc_diff_ci_low=d.difference.low,
                           acc_diff_ci_high=d.difference.high,
                           osc_ratio_matched_vs_full=float(np.exp(ratio).mean()) if len(ratio) else math.nan,
                           osc_matched_pairs=len(ratio))
            rows.append(row)
    return clip_accuracy_ci(pd.DataFrame(rows, columns=[
        "benchmark", "optimizer", "n", "test_acc_mean", "ci_low", "ci_high", "oscillation_mean", "osc_ci_low",
        "osc_ci_high", "acc_diff_vs_full", "acc_diff_ci_low", "acc_diff_ci_high", "osc_ratio_matched_vs_full",
        "osc_matched_pairs"]))


def budget_table(data: ReportData, ks=None) -> pd.DataFrame:
    """Expected best validation accuracy (points) after k search trials, per benchmark × optimizer
    (``stats.expected_best_of_k``; score = best_val_accuracy, else the final val_accuracy)."""
    rows = []
    search = data.usable("search")
    for (bench, opt), r in search.groupby(["benchmark", "optimizer"]):
        score = r["best_val_accuracy"].where(r["best_val_accuracy"].notna(), r["val_accuracy"]) * 100
        n = int(score.notna().sum())
        if n == 0:
            continue
        k = sorted(set([1, 2, 3, 5, 10, 20, 50, 100, n]) & set(range(1, n + 1))) if ks is None else ks
        t = stats.expected_best_of_k(score, k)
        t.insert(0, "optimizer", opt)
        t.insert(0, "benchmark", bench)
        t["trials"] = n
        rows.append(t)
    return (pd.concat(rows, ignore_index=True) if rows else
            pd.DataFrame(columns=["benchmark", "optimizer", "k", "expected", "low", "high", "trials"]))


def fairness_table(data: ReportData) -> pd.DataFrame:
    """Per study × phase × benchmark × optimizer: trials by outcome, seeds, search-space dimensions
    (hyperparameters that vary within the group), the hyperparameters varied."""
    rows = []
    for (study, phase, bench, opt), r in data.runs.groupby(["study", "phase", "benchmark", "optimizer"], dropna=False):
        hp = [c for c in r.columns if c.startswith("hp.") and r[c].notna().any()]
        varied = [c[3:] for c in hp if r[c].astype(str).nunique() > 1]
        seeds = sorted(int(s) for s in r["seed"].dropna().unique())
        rows.append({"study": study, "phase": phase, "benchmark": bench, "optimizer": opt, "trials": len(r),
                     "completed": int((r.outcome == "completed").sum()),
                     "diverged": int((r.outcome == "diverged").sum()),
                     "failed": int((r.outcome == "failed").sum()),
                     "interrupted": int((r.outcome == "interrupted").sum()), "running": int((r.outcome == "running").sum()),
                     "search_dims": len(varied), "varied": ", ".join(varied),
                     "seeds": ", ".join(map(str, seeds[:20])) + (" …" if len(seeds) > 20 else "")})
    return pd.DataFrame(rows, columns=["study", "phase", "benchmark", "optimizer", "trials", "completed", "diverged",
                                       "failed", "interrupted", "running", "search_dims", "varied", "seeds"])


def provenance_table(data: ReportData) -> pd.DataFrame:
    """One row per parent run: study, phase, kind, run id, status, dates, git sha, device, package versions."""
    p = data.parents
    rows = []
    for _, r in (p.iterrows() if len(p) else []):
        versions = {c[len("tags.version."):]: r[c] for c in p.columns
                    if c.startswith("tags.version.") and isinstance(r[c], str)}
        trials = data.runs[(data.runs.study == r.get("study")) & (data.runs.phase == r.get("tags.phase"))]
        rows.append({"study": r.get("study"), "phase": r.get("tags.phase"), "kind": r.get("tags.kind"),
                     "parent_run_id": r["run_id"], "status": r["status"],
                     "start": str(r["start_time"])[:19], "end": str(r["end_time"])[:19],
                     "trial_runs": len(trials),
                     "trial_dates": (f"{str(trials.start_time.min())[:19]} – {str(trials.end_time.max())[:19]}"
                                     if len(trials) else ""),
                     "git_sha": r.get("tags.mlflow.source.git.commit"),
                     "trial_git_shas": ", ".join(sorted(set(trials["git_sha"].dropna().astype(str))))[:200],
                     "device": r.get("tags.device"),
                     "trial_devices": ", ".join(sorted(set(trials["device"].dropna().astype(str)))),
                     "versions": ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))})
    return pd.DataFrame(rows, columns=["study", "phase", "kind", "parent_run_id", "status", "start", "end",
                                       "trial_runs", "trial_dates", "git_sha", "trial_git_shas", "device",
                                       "trial_devices", "versions"])


#: runs.csv: column -> meaning (one meaning per column, the same in every row; docs/reports.md).
RUNS_COLUMNS = {
    "run_id": "MLflow run id of the trial", "study": "study (MLflow experiment)", "phase": "search, final, grid, "
    "ablation or quadratic", "benchmark": "benchmark tag", "optimizer": "optimizer tag (ablation variants included)",
    "seed": "seed tag",
    "outcome": "completed, diverged, failed, interrupted (KILLED: a stop signal or a lost Ray node) or running",
    "status": "MLflow run status", "device": "device tag", "git_sha": "git commit of the code",
    "start_time": "run start (UTC)", "end_time": "run end (UTC)", "error": "error text of a failed trial",
    "epochs": "epochs planned (param)", "batch_size": "batch size (param)",
    "max_steps": "cap on optimizer steps of the whole trial (param; empty: none)",
    "optimizer_impl": "the optimizer implementation timed (tag; empty: not recorded)",
    "hp.*": "every hyperparameter the trial logged (params hp.<name>); empty: not logged for that run",
    "test_accuracy": "last epoch's test accuracy (fraction; empty for a diverged run)",
    "val_accuracy": "last epoch's validation accuracy (fraction)",
    "best_val_accuracy": "best validation accuracy over epochs (fraction)",
    "train_loss": "last epoch's mean training loss", "val_loss": "last epoch's validation loss",
    "loss_oscillation": "last epoch's loss oscillation (workers.metrics.loss_oscillation)",
    "epoch_time_s": "last epoch's time (s)", "steps": "optimizer steps completed (cumulative, last epoch)",
    "optimizer_state_bytes": "bytes of the optimizer state (last epoch)",
    "peak_memory_bytes": "peak memory (last epoch; CUDA max allocated, CPU peak RSS)",
    "wall_time_s": "wall time of the trial (s)", "epochs_completed": "epochs the trial completed",
    "target_train_loss_step": "steps when the training loss first reached the benchmark's target (empty: never)",
    "target_train_loss_epoch": "epoch of the same (empty: never)",
    "target_val_accuracy_time_s": "training time when validation accuracy first reached the target (empty: never)",
    "target_val_accuracy_step": "steps of the same (empty: never)",
    "test_examples": "size of the test set, when logged", "num_classes": "classes, when logged",
    "epoch_time_median": "median over epochs of epoch_time_s (from the history; empty without one)",
    "oscillation_mean": "mean over epochs of loss_oscillation (from the history; empty without one)",
    "val_acc_sd_detrended": "σ over the last half of epochs of val_accuracy about its linear trend (fraction; "
                            "from the history; empty with < 4 epochs in that half)",
    "grad_sq_first": "squared gradient norm at the first epoch (grad_source; from the history)",
    "grad_sq_min": "minimum over epochs of the squared gradient norm (from the history)",
    "grad_source": "grad_norm (noise-free) or grad_norm_mean (mean of per-step norms)",
    "selection_overlap": "why a final-phase run replays its selected search trial (winner's curse); empty: it "
                         "does not",
}


def runs_columns_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The data dictionary of runs.csv: one row per column with its meaning."""
    rows = []
    for c in runs.columns:
        key = "hp.*" if c.startswith("hp.") else c
        rows.append({"column": c, "meaning": RUNS_COLUMNS.get(key, "")})
    return pd.DataFrame(rows, columns=["column", "meaning"])


def runs_table(data: ReportData) -> pd.DataFrame:
    """Every trial run behind the report (run ids, tags, every hyperparameter, final metrics, the per-run
    summaries the claims use): for the CSV. ``RUNS_COLUMNS`` says what each column means."""
    hp = sorted(c for c in data.runs.columns if c.startswith("hp."))
    keep = [c for c in RUNS_COLUMNS if c != "hp.*"]
    keep = keep[:keep.index("optimizer_impl") + 1] + hp + keep[keep.index("optimizer_impl") + 1:]
    return data.runs[[c for c in keep if c in data.runs.columns]].sort_values(
        ["study", "phase", "benchmark", "optimizer", "seed"], na_position="last").reset_index(drop=True)


def histories_table(data: ReportData) -> pd.DataFrame:
    """The per-epoch histories behind the report (long: run_id, metric, step = epoch, value), so the report
    can be rebuilt from its own CSVs (``restore``)."""
    h = data.histories
    if not len(h):
        return pd.DataFrame(columns=["run_id", "metric", "step", "value"])
    return h[["run_id", "metric", "step", "value"]].sort_values(["run_id", "metric", "step"]).reset_index(drop=True)
