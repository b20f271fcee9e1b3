"""The selection protocol of a comparison study, checked from its runs: winner's curse, edge-of-range
choices, ties, and how much of the search was random start-up.

- **Winner's curse** (:func:`selection_overlap`): the final phase re-runs each optimizer's selected search
  configuration over seeds; a final run with the seed of the selected search trial (or the study's recorded
  ``search_seed``), or whose final metrics are bit-identical to a search trial's, replays the selection: its
  value is the maximum of the search, biased upward. Rule (``VerdictSettings.overlap_rule``): "exclude"
  (default: such runs leave every final-phase statistic, and the report names them) or "flag".
- **Edge of the explored range**: a chosen value equal to the smallest or largest value the search sampled,
  or within 5 % (of the log range, for log dimensions) of the configured bound in ``fairness.json``.
- **Ties**: several search trials share the best objective value (the study picks by its own rule: Optuna's
  ``best_trial``, the first in trial order).
- **Random start-up**: Optuna's TPE samples its first ``n_startup_trials`` at random (default 10); a search of
  ≤ 10 trials is a random search. The count comes from ``fairness.json`` (``n_startup_trials``) when
  recorded.
"""

from __future__ import annotations

import math
import re
from typing import Mapping

import numpy as np
import pandas as pd

from tracking import schema

__all__ = ["selection_overlap", "selection_table", "configured_range", "TPE_DEFAULT_STARTUP", "EDGE_FRACTION",
           "IDENTITY_METRICS", "SELECTION_COLUMNS"]

#: Optuna's ``TPESampler(n_startup_trials=10)`` default (Optuna 4–5).
TPE_DEFAULT_STARTUP = 10
#: A chosen value this close (fraction of the configured range, log scale for log dimensions) to a bound
#: of the configured search space is at the edge.
EDGE_FRACTION = 0.05
#: Final metrics compared for "bit-identical" (a final run that replays a search trial).
IDENTITY_METRICS = ("test_accuracy", "val_accuracy", "best_val_accuracy", "train_loss", "val_loss")
SELECTION_COLUMNS = ["study", "benchmark", "optimizer", "search_trials", "sampler", "startup_trials", "startup",
                     "selected", "selected_trial_seed", "objective", "selected_value", "ties", "edge",
                     "search_seeds", "final_seeds", "overlap_seeds"]


def _hp_cols(df: pd.DataFrame) -> list[str]:
    return sorted(c for c in df.columns if c.startswith("hp."))


def _same(a, b) -> bool:
    def missing(x):
        return x is None or (isinstance(x, float) and math.isnan(x))

    if missing(a) and missing(b):
        return True
    try:
        fa, fb = float(a), float(b)
        return math.isclose(fa, fb, rel_tol=1e-6, abs_tol=0.0) or (math.isnan(fa) and math.isnan(fb))
    except (TypeError, ValueError):
        return str(a) == str(b)


def _matches(search: pd.DataFrame, config: pd.Series, cols: list[str]) -> pd.DataFrame:
    """Search trials whose hyperparameters equal ``config`` on every hp column the final run recorded."""
    keep = [c for c in cols if c in config and not (isinstance(config[c], float) and math.isnan(config[c]))]
    if not keep:
        return search.iloc[0:0]
    mask = np.ones(len(search), bool)
    for c in keep:
        mask &= np.array([_same(v, config[c]) for v in search[c]]) if c in search else False
    return search[mask]


def _identical(a: pd.Series, b: pd.Series) -> bool:
    vals = [(a.get(m), b.get(m)) for m in IDENTITY_METRICS]
    vals = [(x, y) for x, y in vals if x is not None and y is not None and pd.notna(x) and pd.notna(y)]
    return len(vals) >= 2 and all(float(x) == float(y) for x, y in vals)


def _parent_param(parents: pd.DataFrame, study: str, name: str):
    col = f"params.{name}"
    if not len(parents) or col not in parents or "study" not in parents:
        return None
    v = parents.loc[parents["study"] == study, col].dropna()
    return v.iloc[0] if len(v) else None


def _ints(text) -> list[int]:
    if text is None:
        return []
    if isinstance(text, (list, tuple)):
        return [int(x) for x in text]
    return [int(x) for x in re.findall(r"-?\d+", str(text))]


def selection_overlap(runs: pd.DataFrame, parents: pd.DataFrame | None = None) -> pd.Series:
    """For every run, why it replays its selection ("" when it does not): only final-phase runs of
    studies with a search phase can. See the module docstring for the three tests."""
    out = pd.Series("", index=runs.index, dtype=object)
    parents = parents if parents is not None else pd.DataFrame()
    if not len(runs) or "phase" not in runs:
        return out
    cols = _hp_cols(runs)
    for (study, bench, opt), final in runs[runs["phase"] == "final"].groupby(["study", "benchmark", "optimizer"],
                                                                          dropna=False):
        search = runs[(runs["phase"] == "search") & (runs["study"] == study) & (runs["benchmark"] == bench)
                      & (runs["optimizer"] == opt)]
        search_seed = _parent_param(parents, study, schema.PARAM_SEARCH_SEED)
        for idx, row in final.iterrows():
            reasons = []
            chosen = _matches(search, row, cols) if len(search) else search
            seeds = sorted({int(s) for s in chosen["seed"].dropna()}) if len(chosen) else []
            if pd.notna(row["seed"]) and int(row["seed"]) in seeds:
                reasons.append(f"seed {int(row['seed'])} is the seed of the selected search trial")
            elif search_seed is not None and pd.notna(row["seed"]) and int(row["seed"]) in _ints(search_seed):
                reasons.append(f"seed {int(row['seed'])} is the study's search seed")
            if len(search) and any(_identical(row, s) for _, s in search.iterrows()):
                reasons.append("its final metrics are bit-identical to a search trial's")
            out[idx] = "; ".join(reasons)
    return out


def configured_range(fairness: Mapping | None, opt: str, hp: str) -> tuple[float, float, bool] | None:
    """(low, high, log) of the configured dimension from fairness.json (``describe()`` text such as
    "log [0.0001, 0.01]", or a dict with low/high/log), or None."""
    try:
        dim = fairness["optimizers"][opt]["search_space"][hp]
    except (KeyError, TypeError):
        return None
    if isinstance(dim, Mapping):
        try:
            return float(dim["low"]), float(dim["high"]), bool(dim.get("log", False))
        except (KeyError, TypeError, ValueError):
            return None
    nums = re.findall(r"\[\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*\]", str(dim))
    if not nums:
        return None
    return float(nums[0][0]), float(nums[0][1]), "log" in str(dim)


def _edge(search: pd.DataFrame, chosen: pd.Series, opt: str, fairness: Mapping | None) -> list[str]:
    notes = []
    for c in _hp_cols(search):
        vals = pd.to_numeric(search[c], errors="coerce").dropna()
        v = pd.to_numeric(pd.Series([chosen.get(c)]), errors="coerce").iloc[0]
        if vals.nunique() < 2 or not np.isfinite(v):
            continue
        name = c[len("hp."):]
        lo, hi = float(vals.min()), float(vals.max())
        if math.isclose(v, hi, rel_tol=1e-9):
            notes.append(f"{name} = {v:.3g} is the largest of the {len(vals)} values sampled ({lo:.3g}–{hi:.3g})")
        elif math.isclose(v, lo, rel_tol=1e-9):
            notes.append(f"{name} = {v:.3g} is the smallest of the {len(vals)} values sampled ({lo:.3g}–{hi:.3g})")
        space = configured_range(fairness, opt, name)
        if space:
            a, b, log = space
            f = (lambda x: math.log(x)) if log and a > 0 and v > 0 else (lambda x: x)
            span = f(b) - f(a)
            if span > 0 and min(abs(f(v) - f(a)), abs(f(b) - f(v))) <= EDGE_FRACTION * span:
                notes.append(f"{name} = {v:.3g} is within {EDGE_FRACTION:.0%} of a configured bound "
                             f"[{a:g}, {b:g}]" + (" (log scale)" if log else ""))
    return notes


def _startup(sampler: str | None, recorded, n: int) -> tuple[int | None, str]:
    if not sampler:
        return None, "sampler not recorded"
    if sampler in ("random", "qmc", "grid"):
        return n, f"{sampler} sampler: every trial is a {'grid point' if sampler == 'grid' else 'random draw'}"
    if sampler == "tpe":
        k = int(recorded) if recorded is not None else TPE_DEFAULT_STARTUP
        src = "recorded" if recorded is not None else "Optuna's default; not recorded by the study"
        r = min(n, k)
        tail = (": the search was a random search, TPE never acted" if r >= n else
                f"; TPE proposed the other {n - r}")
        return r, f"{r} of {n} trials were TPE's random start-up (n_startup_trials = {k}, {src}){tail}"
    return None, f"sampler {sampler}"


def selection_table(runs: pd.DataFrame, parents: pd.DataFrame | None = None,
                    fairness: Mapping[str, Mapping] | None = None,
                    overlap: pd.Series | None = None) -> pd.DataFrame:
    """One row per study × benchmark × optimizer with search trials: the sampler and its random start-up,
    the configuration the final phase ran, the selected trial's seed and objective value, ties at the best
    value, edge-of-range flags, the search and final seeds, and the final seeds that replay the selection."""
    parents = parents if parents is not None else pd.DataFrame()
    fairness = fairness or {}
    overlap = overlap if overlap is not None else selection_overlap(runs, parents)
    rows = []
    if not len(runs) or "phase" not in runs:
        return pd.DataFrame(columns=SELECTION_COLUMNS)
    cols = _hp_cols(runs)
    for (study, bench, opt), search in runs[runs["phase"] == "search"].groupby(["study", "benchmark", "optimizer"],
                                                                             dropna=False):
        fair = fairness.get(study) or {}
        final = runs[(runs["phase"] == "final") & (runs["study"] == study) & (runs["benchmark"] == bench)
                     & (runs["optimizer"] == opt)]
        sampler = fair.get("sampler") or _parent_param(parents, study, "sampler")
        metric = fair.get("metric") or _parent_param(parents, study, "metric") or "val_accuracy"
        objective = metric if metric in search and search[metric].notna().any() else "best_val_accuracy"
        done = search[search["outcome"].isin(("completed", "diverged"))]
        r, startup = _startup(sampler, fair.get("n_startup_trials"), len(done))
        best = pd.to_numeric(done[objective], errors="coerce") if objective in done else pd.Series(dtype=float)
        ties = int((best == best.max()).sum()) if best.notna().any() else 0
        chosen = _matches(search, final.iloc[0], cols) if len(final) else search.iloc[0:0]
        config = final.iloc[0] if len(final) else (done.loc[best.idxmax()] if best.notna().any() else None)
        selected = ", ".join(f"{c[3:]}={float(config[c]):.3g}" for c in cols
                             if config is not None and pd.notna(pd.to_numeric(pd.Series([config[c]]),
                                                                            errors="coerce").iloc[0]))
        ov = final[overlap.reindex(final.index).fillna("").astype(bool)] if len(final) else final
        rows.append({
            "study": study, "benchmark": bench, "optimizer": opt, "search_trials": len(search),
            "sampler": sampler or "",
            "startup_trials": r, "startup": startup, "selected": selected,
            "selected_trial_seed": ", ".join(str(int(s)) for s in sorted(chosen["seed"].dropna().unique())),
            "objective": objective,
            "selected_value": float(pd.to_numeric(chosen[objective], errors="coerce").max()) * 100
            if len(chosen) and objective in chosen else math.nan,
            "ties": ties, "edge": "; ".join(_edge(done, config, opt, fair)) if config is not None else "",
            "search_seeds": ", ".join(str(int(s)) for s in sorted(search["seed"].dropna().unique())),
            "final_seeds": ", ".join(str(int(s)) for s in sorted(final["seed"].dropna().unique())),
            "overlap_seeds": ", ".join(str(int(s)) for s in sorted(ov["seed"].dropna().unique())),
        })
    return pd.DataFrame(rows, columns=SELECTION_COLUMNS)
