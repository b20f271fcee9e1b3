"""Caveats: what qualifies a verdict without changing it — short or capped training, a benchmark outside the
paper's, and a search that may have under-tuned (a chosen value at the edge of what was explored, a search
that was all random start-up)."""

from __future__ import annotations

import pandas as pd

from ..data import ReportData
from ..protocol import selection_table
from ..verdicts import NOT_MEASURED
from .common import ADAM, AMGT, PAPER_EPOCHS, ClaimResult, name

__all__ = ["CAVEAT_RULE", "SHORT_FRACTION", "CLAIM_PHASES", "training_caveat", "with_caveat"]

#: A verdict carries a caveat when its runs trained for less than this fraction of the paper's epochs.
SHORT_FRACTION = 0.5
#: The phases whose runs a claim rests on (for its caveat); C11–C13 are exact computations, no caveat.
CLAIM_PHASES = {**{c: ("final",) for c in ("C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C15")},
                "C9": ("ablation",), "C10": ("grid",), "C14": ("final", "grid", "ablation")}
#: Claims whose runs are the search's selection re-run (their caveat names under-tuning).
SELECTED = ("C1", "C2", "C3", "C4", "C5", "C7", "C8", "C15")
CAVEAT_RULE = ("Caveat (column 'caveat'; it never changes a verdict): a verdict resting on trial runs that were "
               "capped (max_steps set: at most that many optimizer steps in the whole trial), that trained for fewer "
               f"than {SHORT_FRACTION:.0%} of the paper's epochs ("
               + ", ".join(f"{b} {e}" for b, e in PAPER_EPOCHS.items())
               + "), or that ran on a benchmark the paper does not use, says so; so does a final-phase verdict whose "
               "AMGT or Adam configuration sits at the edge of the range its search explored, or whose search was "
               "all random start-up (the selection table). Such a verdict is about the run measured, not about the "
               "paper's setup.")


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


def tuning_caveat(selection: pd.DataFrame, benchmark: str) -> str:
    """Edge-of-range and random-search notes of AMGT's and Adam's selections on ``benchmark``."""
    if not len(selection):
        return ""
    s = selection[(selection["benchmark"] == benchmark) & selection["optimizer"].isin((AMGT, ADAM))]
    parts = [f"{name(r.optimizer)}: {r.edge}" for r in s.itertuples() if r.edge]
    random = [r for r in s.itertuples() if pd.notna(r.startup_trials) and r.startup_trials >= r.search_trials > 0
              and r.sampler == "tpe"]
    if random:
        parts.append("search of " + ", ".join(f"{name(r.optimizer)} {r.search_trials}" for r in random)
                     + " trials was all TPE random start-up")
    return "; ".join(parts)


def with_caveat(res: ClaimResult, data: ReportData, selection: pd.DataFrame | None = None) -> ClaimResult:
    phases = CLAIM_PHASES.get(res.id)
    if not phases or not res.benchmark or res.verdict == NOT_MEASURED:
        return res
    runs = data.usable(phases, res.benchmark)
    if res.id == "C14":
        runs = runs[runs["optimizer"] == AMGT]
    parts = [training_caveat(runs, res.benchmark)]
    if res.id in SELECTED:
        sel = selection if selection is not None else selection_table(data.runs, data.parents, data.fairness)
        parts.append(tuning_caveat(sel, res.benchmark))
    res.caveat = "; ".join(p for p in parts if p)
    return res
