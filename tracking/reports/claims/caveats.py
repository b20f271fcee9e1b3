"""Caveats: what qualifies a verdict without changing it — short or capped training, a benchmark outside the
paper's, a search that may have under-tuned (a chosen value at the edge of what was explored, a search that was
all random start-up), an AMGT with some of its mechanisms switched off — and the one guard that does change a
verdict for the same reason: a claim about the paper's AMGT judged on an AMGT that is not one
(:func:`configuration_guard`)."""

from __future__ import annotations

import pandas as pd

from ..data import ReportData
from ..protocol import selection_table
from ..verdicts import BENCHMARK_DIFFERS, NOT_MEASURED
from .common import ADAM, AMGT, PAPER_EPOCHS, ClaimResult, name

__all__ = ["CAVEAT_RULE", "SHORT_FRACTION", "CLAIM_PHASES", "MECHANISMS", "training_caveat", "with_caveat",
           "configuration_guard"]

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
               "all random start-up (the selection table), or whose AMGT runs had some of its mechanisms off (τ, γ or "
               "λ = 0 in the logged optimizer settings). Such a verdict is about the run measured, not about the "
               "paper's setup. With all three mechanisms off (that is Adam), and for C6 with τ = 0 (no residual "
               "buffer), a claim about the paper's AMGT is not measured.")


#: AMGT's three mechanisms (docs/algorithm.md) by the hyperparameter that switches each off at 0; with all
#: three off AMGT is Adam (the spec's equivalence property).
MECHANISMS = {"tau": "thresholding (τ = 0)", "gamma": "variance-adaptive momentum (γ = 0)",
              "lr_decay": "step-size decay (λ = 0)"}
#: Claims judged on AMGT runs as the paper configures them: those resting on runs (CLAIM_PHASES; C11–C13 are
#: exact computations) but C9, which switches mechanisms off on purpose.
CONFIGURED_CLAIMS = tuple(c for c in CLAIM_PHASES if c != "C9")


def mechanisms_off(runs: pd.DataFrame) -> list[str]:
    """The mechanisms (:data:`MECHANISMS` labels) switched off in every AMGT run of ``runs``, read from the
    optimizer settings each trial logged (``optim.<name>`` params, defaults included); none when not logged."""
    a = runs[runs["optimizer"] == AMGT] if "optimizer" in runs else runs.iloc[:0]
    off = []
    for hp, label in MECHANISMS.items():
        if f"optim.{hp}" not in a:
            continue
        values = pd.to_numeric(a[f"optim.{hp}"], errors="coerce")
        if len(a) and values.notna().all() and (values == 0).all():
            off.append(label)
    return off


def configuration_guard(res: ClaimResult, data: ReportData) -> ClaimResult:
    """A claim about the paper's AMGT judged on AMGT runs with its mechanisms off: with all three off (that is
    Adam), and for C6 (the residual buffer) with thresholding off, "not measured", the rule's verdict kept in
    the reason; with some off (or a verdict already "benchmark differs"), a caveat naming them. Other claims:
    unchanged."""
    if res.id not in CONFIGURED_CLAIMS or not res.benchmark or res.verdict == NOT_MEASURED:
        return res
    off = mechanisms_off(data.usable(CLAIM_PHASES[res.id], res.benchmark))
    if not off:
        return res
    what = f"AMGT ran with {', '.join(off)} off"
    decided = res.verdict != BENCHMARK_DIFFERS  # that verdict already says "not measured"
    if decided and (len(off) == len(MECHANISMS) or (res.id == "C6" and MECHANISMS["tau"] in off)):
        why = "that is Adam (docs/algorithm.md), not the paper's AMGT" if len(off) == len(MECHANISMS) else \
            "it keeps no residual buffer by design"
        res.interval_alone = res.interval_alone or res.verdict
        res.reason = f"{what}: {why}; on these runs the rule gives: {res.verdict} ({res.reason})"
        res.verdict = NOT_MEASURED
    else:
        res.caveat = "; ".join(p for p in (res.caveat, what) if p)
    return res


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
