"""A report rebuilt from its own CSVs, without the MLflow store it was first built from.

``load_report_csvs(directory)`` reads ``runs.csv`` (and ``histories.csv``, ``provenance.csv`` when present)
back into a :class:`~tracking.reports.data.ReportData`; ``write_report`` then recomputes every table, claim
and figure with the current engine. ``rebuild_optuna`` recreates the search phase's Optuna studies (completed
trials: params and objective value) from the search runs, so importance and slice plots can be drawn.

What cannot come back: per-epoch histories that the CSVs do not hold. Reports written before ``histories.csv``
existed (docs/results/mnist-5ep, the 5-epoch runs made before issue 10) keep only per-run summaries: their
training-curve figures are not redrawn and the claims that need curves (C4 part b, C9 part a, C14, C15) read "not measured". Those older
``runs.csv`` also filled two summary columns of search-phase rows with the last epoch's value
(``oscillation_mean``, ``epoch_time_median``: no history was loaded for the search); they are set to NaN on
restore, so every column keeps one meaning. Time-to-target metrics (``target_*``) absent from an older
``runs.csv`` stay NaN (C7, C8 then read "not measured").

Command line: ``python -m tracking.reports.restore DIR --out OUT [--facts quadratic_facts.json]``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .data import ReportData, _num  # the same hp value parsing as runs read from MLflow

__all__ = ["load_report_csvs", "parents_from_provenance", "rebuild_optuna", "LEGACY_SEARCH_SUMMARIES"]

#: Summary columns that older runs.csv filled with the last epoch's value in search-phase rows.
LEGACY_SEARCH_SUMMARIES = ("oscillation_mean", "epoch_time_median")


def parents_from_provenance(prov: pd.DataFrame) -> pd.DataFrame:
    """provenance.csv rows → the parent-run frame ``ReportData`` expects (``run_id``, ``study``, ``status``,
    ``start_time``, ``end_time``, ``tags.phase``, ``tags.kind``, ``tags.mlflow.source.git.commit``,
    ``tags.device``, ``tags.version.<package>``)."""
    rows = []
    for r in prov.itertuples():
        row = {"run_id": str(r.parent_run_id), "study": r.study, "status": r.status,
               "start_time": pd.to_datetime(r.start, utc=True, errors="coerce"),
               "end_time": pd.to_datetime(r.end, utc=True, errors="coerce"),
               "tags.phase": r.phase, "tags.kind": r.kind, "tags.mlflow.source.git.commit": r.git_sha,
               "tags.device": None if pd.isna(r.device) else r.device}
        for name, version in re.findall(r"([\w.-]+) ([\w.+-]+)(?:,|$)", str(r.versions or "")):
            row[f"tags.version.{name}"] = version
        rows.append(row)
    return pd.DataFrame(rows)


def load_report_csvs(directory: str | Path, *, studies: Sequence[str] | None = None,
                     quadratic_facts: Mapping | None = None, fairness: Mapping | None = None) -> ReportData:
    """The runs behind a written report, from its CSVs (module docstring).

    Args:
        directory: holds ``runs.csv`` (required), ``histories.csv`` and ``provenance.csv`` (optional).
        studies: the studies, in the report's order (default: those in runs.csv, sorted).
        quadratic_facts: ``{study: facts}`` for C11–C13 (a quadratic study's ``quadratic_facts.json``).
        fairness: ``{study: fairness.json}`` (search spaces, sampler; for the selection table).

    Raises:
        FileNotFoundError: no ``runs.csv`` in ``directory``.
    """
    d = Path(directory)
    if not (d / "runs.csv").is_file():
        raise FileNotFoundError(f"{d / 'runs.csv'} does not exist: a report directory holds runs.csv")
    runs = pd.read_csv(d / "runs.csv", dtype={"run_id": str, "error": str, "selection_overlap": str})
    for c in runs.columns:
        if c.startswith("hp."):
            runs[c] = [_num(v) for v in runs[c]]
    for c in ("start_time", "end_time"):
        if c in runs:
            runs[c] = pd.to_datetime(runs[c], utc=True, errors="coerce")
    hist_path = d / "histories.csv"
    hist = pd.read_csv(hist_path, dtype={"run_id": str}) if hist_path.is_file() else None
    if hist is None:  # an older runs.csv: its search rows carry last-epoch values in summary columns
        for c in LEGACY_SEARCH_SUMMARIES:
            if c in runs:
                runs.loc[runs["phase"] == "search", c] = np.nan
    runs = runs.drop(columns=["selection_overlap"], errors="ignore")  # recomputed from the runs themselves
    prov = d / "provenance.csv"
    parents = parents_from_provenance(pd.read_csv(prov)) if prov.is_file() else None
    names = list(studies) if studies else sorted(runs["study"].dropna().unique())
    return ReportData.from_frames(runs, hist, studies=names, parents=parents, quadratic_facts=quadratic_facts,
                                  fairness=fairness, tracking_uri=f"CSV files in {d} (restored)")


def _dimension(fairness: Mapping | None, opt: str, hp: str, values: pd.Series):
    import optuna

    from .protocol import configured_range

    space = configured_range(fairness, opt, hp) if fairness else None
    if space:
        low, high, log = space
        return optuna.distributions.FloatDistribution(low, high, log=log)
    v = pd.to_numeric(values, errors="coerce").dropna()
    log = bool((v > 0).all())
    return optuna.distributions.FloatDistribution(float(v.min()), float(v.max()), log=log)


def rebuild_optuna(data: ReportData, storage: str, *, objective: str = "val_accuracy") -> list[str]:
    """Recreate each search phase's Optuna studies (``"<study>/<optimizer>"``, direction maximize) in
    ``storage`` from the search runs: one COMPLETE trial per completed run with its searched hp.* values
    (those that vary) and ``objective`` as the value; distributions from ``data.fairness`` when recorded, else
    the sampled range. Returns the study names written."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = data.runs[(data.runs["phase"] == "search") & (data.runs["outcome"] == "completed")]
    written = []
    for (study, opt), g in search.groupby(["study", "optimizer"]):
        cols = [c for c in g.columns if c.startswith("hp.") and pd.to_numeric(g[c], errors="coerce").nunique() > 1]
        if not cols or objective not in g:
            continue
        fair = data.fairness.get(study)
        dists = {c[3:]: _dimension(fair, opt, c[3:], g[c]) for c in cols}
        s = optuna.create_study(study_name=f"{study}/{opt}", storage=storage, direction="maximize",
                                load_if_exists=False)
        for _, r in g.sort_values("start_time").iterrows():
            value = float(r[objective])
            if not math.isfinite(value):
                continue
            s.add_trial(optuna.trial.create_trial(params={k: float(r[f"hp.{k}"]) for k in dists},
                                                  distributions=dists, value=value))
        written.append(s.study_name)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Rebuild a robustness report from its CSVs (tracking.reports.restore).")
    ap.add_argument("directory", help="report directory holding runs.csv (histories.csv, provenance.csv optional)")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--facts", help="quadratic_facts.json for C11–C13 (JSON object: study -> facts)")
    args = ap.parse_args(argv)
    from .build import write_report

    facts = json.loads(Path(args.facts).read_text()) if args.facts else None
    data = load_report_csvs(args.directory, quadratic_facts=facts)
    result = write_report(data, args.out)
    for p in result.paths:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
