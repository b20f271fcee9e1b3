"""Robustness reports exported from MLflow: comparison and cost tables, plots, hyperparameter importance,
fairness and provenance, and the paper-claims check (C1–C15, ``docs/paper-claims.md``).

Public API::

    from tracking.reports import build_report
    result = build_report(["quickstart"], tracking_uri="sqlite:///mlflow.db", out_dir="report")
    result.html, result.paths, result.missing

Modules: ``data`` (reading runs into pandas), ``stats`` (intervals, tests, bootstrap), ``claims`` (verdict
rules), ``tables``, ``plots``, ``importance`` (Optuna), ``render`` (HTML/Markdown), ``build``.
See ``docs/reports.md``.
"""

from __future__ import annotations

from tracking.query import UnknownStudyError

from .build import FORMATS, ReportResult, build_report, write_report
from .claims import CLAIMS, RULES, VERDICTS, ClaimResult, evaluate_claims
from .data import ReportData

__all__ = ["build_report", "write_report", "ReportResult", "ReportData", "evaluate_claims", "ClaimResult",
           "CLAIMS", "RULES", "VERDICTS", "FORMATS", "UnknownStudyError"]
