"""The report's tables as pandas DataFrames (one CSV each). Accuracies in percentage points.

Definitions (printed in the report too):
- comparison: final phase, per benchmark × optimizer: n runs with an accuracy, mean final test accuracy
  and its 95 % t-interval, σ across seeds (ddof 1), the mean over seeds of σ of the last 5 epochs'
  validation loss, the hyperparameters used (the search's best), the paired difference to Adam (matched
  seeds) with its t-interval, the two-sided Wilcoxon signed-rank p and the Holm-adjusted p across the
  optimizers of that benchmark; diverged runs are counted and keep the accuracy they recorded.
- cost: final phase: median over runs of each run's median epoch time, its ratio to Adam's in the same
  study with a bootstrap interval, peak memory (max), optimizer-state bytes (median).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import stats
from .claims import ADAM, AMGT, PAPER_ACCURACY, lr_grid
from .data import ReportData

__all__ = ["settings_table", "clip_accuracy_ci",
           "comparison_table", "cost_table", "sensitivity_tables", "ablation_table", "budget_table",
           "fairness_table", "provenance_table", "runs_table", "hparams_of"]


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


def _order(opts) -> list[str]:
    opts = list(dict.fromkeys(opts))
    return [o for o in (AMGT, ADAM) if o in opts] + sorted(o for o in opts if o not in (AMGT, ADAM))


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


def comparison_table(data: ReportData) -> pd.DataFrame:
    rows = []
    all_final = data.runs[data.runs["phase"] == "final"]
    for bench, allb in all_final.groupby("benchmark"):
        runs = allb[allb["outcome"].isin(("completed", "diverged"))]
        base = runs[runs.optimizer == ADAM].groupby("seed")["test_accuracy"].mean() * 100
        block = []
        for opt in _order(allb["optimizer"].dropna()):
            r = runs[runs.optimizer == opt]
            a = allb[allb.optimizer == opt]
            iv = stats.t_interval(r["test_accuracy"] * 100)
            row = {"benchmark": bench, "optimizer": opt, "runs": len(a), "n": iv.n,
                   "diverged": int((a.outcome == "diverged").sum()), "failed": int((a.outcome == "failed").sum()),
                   "running": int((a.outcome == "running").sum()),
                   "test_acc_mean": iv.estimate, "ci_low": iv.low, "ci_high": iv.high,
                   "paper_acc": PAPER_ACCURACY.get(bench, {}).get(opt, math.nan),
                   "sigma_seeds": float(r["test_accuracy"].std(ddof=1) * 100) if len(r) > 1 else math.nan,
                   "sigma_val_loss_last5": float(r["val_loss_last5_sd"].mean()),
                   "hyperparameters": hparams_of(r if len(r) else a),
                   "diff_vs_adam": math.nan, "diff_ci_low": math.nan, "diff_ci_high": math.nan,
                   "n_pairs": 0, "p_wilcoxon": math.nan}
            if opt != ADAM and len(base):
                pair = stats.paired_difference(r.groupby("seed")["test_accuracy"].mean() * 100, base)
                row.update(diff_vs_adam=pair.difference.estimate, diff_ci_low=pair.difference.low,
                           diff_ci_high=pair.difference.high, n_pairs=pair.n, p_wilcoxon=pair.p_wilcoxon)
            block.append(row)
        adjusted = stats.holm([r["p_wilcoxon"] for r in block])
        for r, p in zip(block, adjusted):
            r["p_holm"] = p
        rows.extend(block)
    cols = ["benchmark", "optimizer", "runs", "n", "diverged", "failed", "running", "test_acc_mean", "ci_low",
            "ci_high", "paper_acc", "sigma_seeds", "sigma_val_loss_last5", "diff_vs_adam", "diff_ci_low",
            "diff_ci_high",
            "n_pairs", "p_wilcoxon", "p_holm", "hyperparameters"]
    return clip_accuracy_ci(pd.DataFrame(rows, columns=cols))


def cost_table(data: ReportData) -> pd.DataFrame:
    rows = []
    for (study, bench), runs in data.usable("final").groupby(["study", "benchmark"]):
        adam = runs[runs.optimizer == ADAM]["epoch_time_median"]
        for opt in _order(runs["optimizer"].dropna()):
            r = runs[runs.optimizer == opt]
            ratio = stats.ratio_of_medians(r["epoch_time_median"], adam) if len(adam) else stats.Interval(
                math.nan, math.nan, math.nan, 0)
            rows.append({"study": study, "benchmark": bench, "optimizer": opt, "runs": len(r),
                         "median_epoch_time_s": float(r["epoch_time_median"].median()),
                         "ratio_to_adam": ratio.estimate, "ratio_ci_low": ratio.low, "ratio_ci_high": ratio.high,
                         "peak_memory_mb": float(r["peak_memory_bytes"].max() / 2**20),
                         "optimizer_state_bytes": float(r["optimizer_state_bytes"].median()),
                         "samples_per_s": float(r["samples_per_s"].median()),
                         "device": ", ".join(sorted(set(r["device"].dropna().astype(str))))})
    return pd.DataFrame(rows, columns=["study", "benchmark", "optimizer", "runs", "median_epoch_time_s",
                                       "ratio_to_adam", "ratio_ci_low", "ratio_ci_high", "peak_memory_mb",
                                       "optimizer_state_bytes", "samples_per_s", "device"])


def sensitivity_tables(data: ReportData) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per benchmark × optimizer × lr: mean test accuracy, CI, n) and (per benchmark × optimizer: width
    within 1 point of the best, in decades, with the range's ends)."""
    cells, widths = [], []
    for bench in sorted(data.usable("grid")["benchmark"].dropna().unique()):
        grid = lr_grid(data, bench)
        for opt in _order(grid["optimizer"].dropna()):
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
    rows = []
    for bench, runs in data.usable("ablation").groupby("benchmark"):
        full_acc = runs[runs.optimizer == AMGT].groupby("seed")["test_accuracy"].mean() * 100
        full_osc = runs[runs.optimizer == AMGT].groupby("seed")["oscillation_mean"].mean()
        for opt in _order(runs["optimizer"].dropna()):
            r = runs[runs.optimizer == opt]
            acc = stats.t_interval(r["test_accuracy"] * 100)
            osc = stats.t_interval(r["oscillation_mean"])
            row = {"benchmark": bench, "optimizer": opt, "n": acc.n, "test_acc_mean": acc.estimate,
                   "ci_low": acc.low, "ci_high": acc.high, "oscillation_mean": osc.estimate,
                   "osc_ci_low": osc.low, "osc_ci_high": osc.high, "acc_diff_vs_full": math.nan,
                   "acc_diff_ci_low": math.nan, "acc_diff_ci_high": math.nan, "osc_diff_vs_full": math.nan}
            if opt != AMGT and len(full_acc):
                d = stats.paired_difference(r.groupby("seed")["test_accuracy"].mean() * 100, full_acc)
                o = stats.paired_difference(r.groupby("seed")["oscillation_mean"].mean(), full_osc)
                row.update(acc_diff_vs_full=d.difference.estimate, acc_diff_ci_low=d.difference.low,
                           acc_diff_ci_high=d.difference.high, osc_diff_vs_full=o.difference.estimate)
            rows.append(row)
    return clip_accuracy_ci(pd.DataFrame(rows, columns=[
        "benchmark", "optimizer", "n", "test_acc_mean", "ci_low", "ci_high", "oscillation_mean", "osc_ci_low",
        "osc_ci_high", "acc_diff_vs_full", "acc_diff_ci_low", "acc_diff_ci_high", "osc_diff_vs_full"]))


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
                     "failed": int((r.outcome == "failed").sum()), "running": int((r.outcome == "running").sum()),
                     "search_dims": len(varied), "varied": ", ".join(varied),
                     "seeds": ", ".join(map(str, seeds[:20])) + (" …" if len(seeds) > 20 else "")})
    return pd.DataFrame(rows, columns=["study", "phase", "benchmark", "optimizer", "trials", "completed", "diverged",
                                       "failed", "running", "search_dims", "varied", "seeds"])


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


def runs_table(data: ReportData) -> pd.DataFrame:
    """Every trial run behind the report (run ids, tags, hyperparameters, final metrics): for the CSV."""
    keep = ["run_id", "study", "phase", "benchmark", "optimizer", "seed", "outcome", "status", "device", "git_sha",
            "start_time", "end_time", "error", "epochs", "batch_size", "max_steps"] + sorted(
        c for c in data.runs.columns if c.startswith("hp.")) + [
        "test_accuracy", "val_accuracy", "best_val_accuracy", "train_loss", "val_loss", "epoch_time_median",
        "oscillation_mean", "optimizer_state_bytes", "peak_memory_bytes", "wall_time_s", "epochs_completed"]
    return data.runs[[c for c in keep if c in data.runs.columns]].sort_values(
        ["study", "phase", "benchmark", "optimizer", "seed"], na_position="last").reset_index(drop=True)
