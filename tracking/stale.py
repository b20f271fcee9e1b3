"""Closing the trial runs a killed worker left ``RUNNING``: the resume path's sweep, before new trials start."""

from __future__ import annotations

from . import schema as S
from .runs import STALE_ERROR, _log_params_tags
from .search import run_filter, search_runs
from .store import get_client, resolve_tracking_uri

__all__ = ["close_stale_runs"]


def close_stale_runs(tracking_uri: str, study: str, *, experiment_id: str | None = None,
                     phase: str | None = None, reason: str = STALE_ERROR, status: str = "FAILED",
                     started_since_ms: int | None = None) -> list[str]:
    """Mark the study's trial runs still ``RUNNING`` as ``status`` (``FAILED``, or ``KILLED`` for an
    interrupted driver; ``outcome=failed``, ``error=reason``).

    For the resume path, before new trials start: a worker process that was killed (OOM, node
    lost, Ctrl-C on the driver) leaves its child run RUNNING. Only call it when no trial of the
    study is running (or pass ``started_since_ms``: only runs started since then, e.g. by one Tune run
    that has ended). The experiment is ``experiment_id`` or the one named ``study``.

    Returns:
        The ids of the runs closed (empty when there is no such experiment or no stale run).
    """
    uri = resolve_tracking_uri(tracking_uri)
    client = get_client(uri)
    if experiment_id is None:
        exp = client.get_experiment_by_name(study)
        if exp is None:
            return []
        experiment_id = exp.experiment_id
    flt = run_filter(status="RUNNING", role=S.ROLE_TRIAL, study=study, phase=phase, started_since_ms=started_since_ms)
    closed = []
    for run in search_runs(client, [str(experiment_id)], flt):
        run_id = run.info.run_id
        _log_params_tags(client, run_id, {}, {S.TAG_OUTCOME: "failed", S.TAG_ERROR: reason})
        client.set_terminated(run_id, status=status)
        closed.append(run_id)
    return closed
