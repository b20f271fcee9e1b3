"""Robustness reports exported from MLflow: comparison and cost tables, plots, hyperparameter importance,
fairness and provenance, and the paper-claims check (C1–C15, ``docs/paper-claims.md``).

Public API::

    from tracking.reports import build_report
    result = build_report(["quickstart"], tracking_uri="sqlite:///mlflow.db", out_dir="report")
    result.html, result.paths, result.missing

Verdicts are configurable: ``build_report(..., settings=VerdictSettings(...))`` or
``evaluate_claims(data, settings)`` (α, power, the winner's-curse overlap rule, per-claim smallest effects of
interest, paper effects and minimum seeds; defaults ``DEFAULT_CLAIMS``).

Modules: ``data`` (reading runs into pandas), ``stats`` (intervals, bootstrap), ``evidence`` (the tests behind
the verdicts), ``power`` (MDE, seeds needed, p floors), ``verdicts`` (vocabulary, settings, the decision rule),
``measures`` (matched-loss oscillation, detrended σ, tunability area, censored time to target), ``protocol``
(winner's curse, edge-of-range, random start-up), ``claims`` (one module per kind of claim), ``pairs`` (any
candidate against any baseline: ``build_report(..., candidate="nadam", baseline="adam")``), ``tables``,
``plots``, ``importance`` (Optuna), ``answer`` (the report's first section: conclusion, verdicts, per-optimizer
results), ``sections`` (the report's text), ``render`` (HTML/Markdown), ``build``,
``restore`` (a report rebuilt from its own CSVs), ``synthetic`` (constructed studies for tests).
See ``docs/reports.md``.
"""

from __future__ import annotations

from tracking.query import UnknownStudyError

from .build import FORMATS, ReportResult, build_report, write_report
from .claims import CLAIMS, RULES, ClaimResult, evaluate_claims
from .data import ReportData
from .verdicts import DEFAULT_CLAIMS, DEFAULT_SETTINGS, VERDICTS, ClaimSettings, VerdictSettings

__all__ = ["build_report", "write_report", "ReportResult", "ReportData", "evaluate_claims", "ClaimResult",
           "CLAIMS", "RULES", "VERDICTS", "FORMATS", "UnknownStudyError", "VerdictSettings", "ClaimSettings",
           "DEFAULT_SETTINGS", "DEFAULT_CLAIMS"]
