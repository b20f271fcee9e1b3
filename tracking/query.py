"""Reading studies back from MLflow into pandas: the reading side of ``tracking/schema.py``.

Everything here goes through MLflow's public client (``MlflowClient.search_experiments``,
``search_runs``, ``get_metric_history``, ``download_artifacts``), so it works the same on every store
MLflow supports: ``sqlite:///…``, ``postgresql+psycopg://…`` and an ``http://`` tracking server.

Column names follow ``mlflow.search_runs``: ``run_id``, ``experiment_id``, ``status``, ``start_time``,
``end_time`` (UTC timestamps), then ``tags.<name>``, ``params.<name>`` and ``metrics.<name>`` (a metric's
latest value, which for per-epoch metrics logged with ``step = epoch`` is the final epoch's), plus
``study`` (the experiment's name).

Example::

    from tracking.query import list_studies, load_runs, load_histories
    runs = load_runs("sqlite:///mlflow.db", "quickstart", phase="final",
                     columns=["tags.optimizer", "tags.seed", "metrics.test_accuracy"])
    curves = load_histories("sqlite:///mlflow.db", runs.run_id, ["train_loss", "val_accuracy"])
"""

from __future__ import annotations

import io
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import ViewType

from tracking import schema
from tracking.search import PAGE_SIZE, any_run, run_filter, search_runs
from tracking.store import DEFAULT_TRACKING_URI, get_client, resolve_tracking_uri

__all__ = [
    "DEFAULT_TRACKING_URI",
    "UnknownStudyError",
    "resolve_tracking_uri",  # re-exported from tracking.store
    "client_for",
    "list_studies",
    "is_study",
    "experiment_ids",
    "load_runs",
    "load_parent_runs",
    "load_histories",
    "HISTORY_SOURCES",
]

HISTORY_SOURCES = ("metric_history", "artifact")
_BASE_COLUMNS = ("run_id", "experiment_id", "study", "status", "start_time", "end_time")


class UnknownStudyError(ValueError):
    """A study name that has no MLflow experiment in the tracking store. ``.known`` lists the ones that do."""

    def __init__(self, names: Sequence[str], known: Sequence[str], tracking_uri: str):
        self.names = list(names)
        self.known = list(known)
        listing = ", ".join(self.known) if self.known else "none (the store holds no studies yet)"
        super().__init__(
            f"Unknown study {', '.join(repr(n) for n in self.names)} in tracking store {tracking_uri}; "
            f"known studies: {listing}"
        )


def client_for(tracking_uri: str | None) -> MlflowClient:
    """An ``MlflowClient`` for the resolved URI (``tracking.store.get_client``).

    Raises:
        FileNotFoundError: a ``sqlite:///`` store whose file does not exist (reading never creates one).
        tracking.store.TrackingStoreError: an unsupported URI.
    """
    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):].split("?", 1)[0])
        if not path.exists():
            raise FileNotFoundError(
                f"MLflow tracking store {uri} does not exist (no file {path}); run a study first or pass "
                f"--tracking-uri / set MLFLOW_TRACKING_URI to the store that holds it"
            )
    return get_client(uri)


def _all_experiments(client: MlflowClient):
    token = None
    while True:
        page = client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
        yield from page
        token = page.token
        if not token:
            break


def is_study(client: MlflowClient, experiment) -> bool:
    """Whether an MLflow experiment holds a study: amgt-study recorded it (an ``amgt.*`` experiment tag), or
    it has a run tagged ``study`` = its name (runs written through this package's tracking API).  Other
    experiments in a shared server (MLflow's ``Default``, other projects') are not studies."""
    if experiment.name == "Default":
        return False
    if any(k.startswith("amgt.") for k in (experiment.tags or {})):
        return True
    return any_run(client, [experiment.experiment_id], run_filter(study=experiment.name))


def list_studies(tracking_uri: str | None = None) -> list[str]:
    """Names of the studies in the store (one MLflow experiment per study, :func:`is_study`), sorted.
    Raises ``FileNotFoundError`` for a missing SQLite file."""
    client = client_for(tracking_uri)
    return sorted(e.name for e in _all_experiments(client) if is_study(client, e))


def experiment_ids(tracking_uri: str | None, studies: str | Sequence[str]) -> dict[str, str]:
    """``{study: experiment_id}`` for each named study.

    Raises:
        UnknownStudyError: a name with no experiment (the message lists the known studies).
    """
    names = [studies] if isinstance(studies, str) else list(studies)
    if not names:
        raise ValueError("no study named: pass at least one study name")
    client = client_for(tracking_uri)
    by_name = {e.name: e for e in _all_experiments(client)}
    unknown = [n for n in names if n not in by_name or not is_study(client, by_name[n])]
    if unknown:
        raise UnknownStudyError(unknown, sorted(n for n, e in by_name.items() if is_study(client, e)),
                                resolve_tracking_uri(tracking_uri))
    return {n: by_name[n].experiment_id for n in names}


def _wanted(columns: set[str] | None):
    if columns is None:
        return lambda name: True
    exact = {c for c in columns if not c.endswith("*")}
    prefixes = tuple(c[:-1] for c in columns if c.endswith("*"))
    return lambda name: name in exact or (bool(prefixes) and name.startswith(prefixes))


def _run_rows(runs, study_of: dict[str, str], columns: set[str] | None) -> list[dict]:
    rows = []
    want = _wanted(columns)
    for run in runs:
        info, data = run.info, run.data
        row = {
            "run_id": info.run_id,
            "experiment_id": info.experiment_id,
            "study": study_of.get(info.experiment_id),
            "status": info.status,
            "start_time": info.start_time,
            "end_time": info.end_time,
        }
        for prefix, values in (("tags.", data.tags), ("params.", data.params), ("metrics.", data.metrics)):
            for key, value in values.items():
                name = prefix + key
                if want(name):
                    row[name] = value
        rows.append(row)
    return rows


def _frame(rows: list[dict], columns: Sequence[str] | None) -> pd.DataFrame:
    df = pd.DataFrame.from_records(rows)
    if df.empty:
        df = pd.DataFrame(columns=list(_BASE_COLUMNS))
    if columns is not None:
        exact = [c for c in columns if not c.endswith("*") and c not in _BASE_COLUMNS]
        for col in exact:
            if col not in df.columns:
                df[col] = float("nan") if col.startswith("metrics.") else None
        patterned = sorted(c for c in df.columns if c not in _BASE_COLUMNS and c not in exact)
        df = df[list(_BASE_COLUMNS) + exact + patterned]
    for col in ("start_time", "end_time"):
        df[col] = pd.to_datetime(df[col], unit="ms", utc=True)
    metric_cols = [c for c in df.columns if str(c).startswith("metrics.")]
    for col in metric_cols:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df.reset_index(drop=True)


def load_runs(
    tracking_uri: str | None,
    study: str | Sequence[str],
    *,
    phase: str | Sequence[str] | None = None,
    role: str | None = schema.ROLE_TRIAL,
    columns: Sequence[str] | None = None,
    extra_filter: str | None = None,
    page_size: int = PAGE_SIZE,
) -> pd.DataFrame:
    """All runs of one or more studies as a DataFrame, one row per run.

    Paginated ``MlflowClient.search_runs`` filtered server-side on the tags ``role`` and ``phase``
    (``schema.TAG_ROLE``/``TAG_PHASE``); deleted runs are excluded.

    Args:
        tracking_uri: the store (``None``: ``MLFLOW_TRACKING_URI``, then ``sqlite:///mlflow.db``).
        study: a study name or several (their experiments are searched together).
        phase: one of ``schema.PHASES``, several, or ``None`` for all.
        role: ``"trial"`` (default), ``"parent"``, or ``None`` for both.
        columns: the ``tags.*``/``params.*``/``metrics.*`` columns to keep (the base columns
            ``run_id, experiment_id, study, status, start_time, end_time`` always come); a name ending
            in ``*`` keeps every column with that prefix (``"params.hp.*"``); missing exact names are
            filled with NA. ``None`` keeps every column found.
        extra_filter: an MLflow filter string ANDed to the tag filter (MLflow's syntax has no OR).
        page_size: ``max_results`` per page (≤ 50,000).

    Returns:
        DataFrame; metrics as float, params and tags as str, times as UTC timestamps.

    Raises:
        UnknownStudyError: a study with no experiment. ValueError: a phase not in ``schema.PHASES``.
    """
    ids = experiment_ids(tracking_uri, study)
    study_of = {v: k for k, v in ids.items()}
    phases = [phase] if isinstance(phase, str) else (list(phase) if phase is not None else [None])
    for p in phases:
        if p is not None and p not in schema.PHASES:
            raise ValueError(f"phase {p!r} is not one of {', '.join(schema.PHASES)}")
    client = client_for(tracking_uri)
    wanted = set(columns) if columns is not None else None
    rows: list[dict] = []
    for p in phases:
        flt = run_filter(role=role, phase=p, extra=extra_filter)
        rows.extend(_run_rows(search_runs(client, list(ids.values()), flt, page_size=page_size), study_of, wanted))
    return _frame(rows, columns)


def load_parent_runs(tracking_uri: str | None, study: str | Sequence[str]) -> pd.DataFrame:
    """The parent runs (``role=parent``, one per study phase) of the studies, all columns."""
    return load_runs(tracking_uri, study, role=schema.ROLE_PARENT)


def _history_from_metrics(client: MlflowClient, run_id: str, metrics: Sequence[str]) -> list[tuple]:
    out = []
    for key in metrics:
        for m in client.get_metric_history(run_id, key):
            out.append((run_id, key, int(m.step), float(m.value)))
    return out


def _history_from_artifact(client: MlflowClient, run_id: str, metrics: Sequence[str]) -> list[tuple]:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, schema.ARTIFACT_CURVES, tmp)
        except Exception:  # no curves.csv (e.g. a run that failed before its first epoch)
            return _history_from_metrics(client, run_id, metrics)
        text = Path(path).read_text()
    curves = pd.read_csv(io.StringIO(text))
    steps = curves["epoch"] if "epoch" in curves.columns else pd.Series(range(1, len(curves) + 1))
    out = []
    for key in metrics:
        if key in curves.columns:
            for step, value in zip(steps, curves[key]):
                if pd.notna(value):
                    out.append((run_id, key, int(step), float(value)))
    return out


def load_histories(
    tracking_uri: str | None,
    run_ids: Iterable[str],
    metrics: Sequence[str],
    *,
    source: str = "metric_history",
    max_workers: int = 8,
) -> pd.DataFrame:
    """Per-epoch metric histories in long format.

    Args:
        run_ids: runs to read. metrics: metric names (``schema.METRICS_EPOCH``).
        source: ``"metric_history"`` (``MlflowClient.get_metric_history``, one call per run and metric:
            the record itself) or ``"artifact"`` (the run's ``curves.csv``, one download per run; falls
            back to the metric history when the artifact is missing). ``benchmarks/tracking_scale.py``
            measures both.
        max_workers: concurrent requests (threads).

    Returns:
        DataFrame with columns ``run_id, metric, step, value`` (step = epoch, 1-based), sorted.

    Raises:
        ValueError: an unknown ``source``.
    """
    if source not in HISTORY_SOURCES:
        raise ValueError(f"source {source!r} is not one of {', '.join(HISTORY_SOURCES)}")
    ids = list(dict.fromkeys(str(r) for r in run_ids))
    columns = ["run_id", "metric", "step", "value"]
    if not ids or not metrics:
        return pd.DataFrame(columns=columns).astype({"step": int, "value": float})
    client = client_for(tracking_uri)
    if source == "artifact":  # one progress bar per download otherwise
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    fetch = _history_from_metrics if source == "metric_history" else _history_from_artifact
    with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
        parts = list(pool.map(lambda rid: fetch(client, rid, list(metrics)), ids))
    rows = [row for part in parts for row in part]
    df = pd.DataFrame(rows, columns=columns)
    df = df.astype({"step": int, "value": float})
    return df.sort_values(["run_id", "metric", "step"], kind="stable").reset_index(drop=True)
