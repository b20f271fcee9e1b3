"""The paper's claims C1–C15 (``docs/paper-claims.md``) judged against measured runs.

One module per kind of claim: ``accuracy`` (C1–C4), ``cost`` (C5–C8), ``ablation`` (C9, C15), ``robustness``
(C10), ``exact`` (C11–C13), ``convergence`` (C14); the rule texts in ``rules``, shared selection, failure and
decision helpers in ``common``, caveats in ``caveats``. The vocabulary and the decision rule are
``tracking.reports.verdicts``; the tests and their power ``tracking.reports.evidence`` / ``power``.
Accuracies are compared in percentage points (the metrics are fractions × 100), intervals are 95 %, and
"paired" means matched by seed.
"""

from __future__ import annotations

from typing import Callable

from ..data import ReportData
from ..protocol import selection_table
from ..verdicts import DEFAULT_SETTINGS, NOT_MEASURED, VERDICTS, VerdictSettings
from . import ablation, accuracy, convergence, cost, exact, robustness
from .caveats import CAVEAT_RULE, SHORT_FRACTION, configuration_guard, training_caveat, with_caveat
from .common import (ADAM, AMGT, NAMES, PAPER_ACCURACY, PAPER_BENCHMARKS, PAPER_EPOCHS, ClaimResult, Context,
                     benchmark_guard)
from .robustness import lr_grid
from .rules import CLAIMS, DECISION_RULE, FAILURE_RULE, OVERLAP_RULE, RULES, rules

__all__ = ["ClaimResult", "CLAIMS", "RULES", "rules", "VERDICTS", "evaluate_claims", "PAPER_BENCHMARKS",
           "PAPER_EPOCHS", "PAPER_ACCURACY", "CAVEAT_RULE", "SHORT_FRACTION", "training_caveat", "lr_grid", "NAMES",
           "AMGT", "ADAM", "DECISION_RULE", "FAILURE_RULE", "OVERLAP_RULE", "general_rules"]

_EVALUATORS: dict[str, Callable[[Context], ClaimResult]] = {
    "C1": accuracy.c1, "C2": accuracy.c2, "C3": accuracy.c3, "C4": accuracy.c4, "C5": cost.c5, "C6": cost.c6,
    "C7": cost.c7, "C8": cost.c8, "C9": ablation.c9, "C10": robustness.c10, "C11": exact.c11, "C12": exact.c12,
    "C13": exact.c13, "C14": convergence.c14, "C15": ablation.c15,
}


def general_rules(settings: VerdictSettings | None = None) -> dict[str, str]:
    """The rules every claim shares (decision, failures, winner's curse, caveats), as printed in the report."""
    s = settings or DEFAULT_SETTINGS
    return {"decision": DECISION_RULE.format(alpha=s.alpha, power=s.power), "failure": FAILURE_RULE,
            "overlap": OVERLAP_RULE.format(overlap=s.overlap_rule), "caveat": CAVEAT_RULE}


def evaluate_claims(data: ReportData, settings: VerdictSettings | None = None) -> list[ClaimResult]:
    """One :class:`ClaimResult` per claim C1–C15, in order, under ``settings`` (default:
    ``verdicts.DEFAULT_SETTINGS``; its ``overlap_rule`` is applied to ``data`` for this evaluation).

    A claim whose evaluation raises is reported as "not measured" with the error, so one malformed input
    cannot hide the other fourteen."""
    settings = settings or DEFAULT_SETTINGS
    if data.overlap_rule != settings.overlap_rule:
        data = data.with_overlap_rule(settings.overlap_rule)
    ctx = Context(data, settings)
    selection = selection_table(data.runs, data.parents, data.fairness)
    out = []
    for cid, fn in _EVALUATORS.items():
        try:
            res = fn(ctx)
            if cid in ("C11", "C12", "C13") and res.verdict != NOT_MEASURED:
                res.power = exact.EXACT
            out.append(configuration_guard(with_caveat(benchmark_guard(res), data, selection), data))
        except Exception as exc:  # noqa: BLE001 — reported, not swallowed
            out.append(ctx.result(cid, "", NOT_MEASURED, f"could not be evaluated: {type(exc).__name__}: {exc}"))
    return out
