"""MLflow tracking for AMGT studies: stores, experiments, parent/child runs, provenance.

Writing side (this package's top level; importing it does not import mlflow, torch or the reports)::

    uri = tracking.resolve_tracking_uri(cli_uri)         # explicit > MLFLOW_TRACKING_URI > sqlite:///mlflow.db
    tracking.check_tracking_store(uri)                   # TrackingStoreError before any trial starts
    exp = tracking.get_or_create_experiment(study, uri)  # race-free
    parent = tracking.start_parent_run(uri, exp, study=study, phase="search", kind="comparison")
    with tracking.TrialLogger(uri, exp, parent, trial_key=key, tags=tags, params=params) as tl:
        ...  tl.log_epoch(metrics, epoch) ...  tl.finish(result, outcome="completed", config=config)
    tracking.end_parent_run(uri, parent)

Names stored in MLflow are in :mod:`tracking.schema`; reading back is :mod:`tracking.query` and the
reports are :mod:`tracking.reports` (import those explicitly).
"""

from . import schema
from .provenance import device_string, git_sha, package_versions, provenance_tags
from .runs import (
    TrialLogger,
    end_parent_run,
    find_parent_run,
    log_artifacts,
    log_summary,
    mark_training_experiment,
    results_metrics,
    start_parent_run,
    trial_params,
)
from .stale import close_stale_runs
from .store import (
    DEFAULT_TRACKING_URI,
    TrackingStoreError,
    check_tracking_store,
    default_artifact_root,
    expect_reachable,
    get_client,
    get_or_create_experiment,
    mask_uri,
    resolve_tracking_uri,
    store_kind,
)

__all__ = [
    "schema",
    "DEFAULT_TRACKING_URI",
    "TrackingStoreError",
    "resolve_tracking_uri",
    "check_tracking_store",
    "default_artifact_root",
    "get_client",
    "expect_reachable",
    "get_or_create_experiment",
    "mask_uri",
    "store_kind",
    "start_parent_run",
    "end_parent_run",
    "find_parent_run",
    "log_artifacts",
    "TrialLogger",
    "close_stale_runs",
    "trial_params",
    "log_summary",
    "mark_training_experiment",
    "results_metrics",
    "git_sha",
    "device_string",
    "package_versions",
    "provenance_tags",
]
