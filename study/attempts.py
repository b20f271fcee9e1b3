"""Closing the MLflow runs of trial attempts that ended without closing their own run.

A trial's worker closes its own run (study/trainable.py): FINISHED with its results, FAILED with its error,
KILLED when interrupted.  An attempt can still leave its run RUNNING: the worker was killed, or the store
was unreachable when the attempt ended.  Such a run is closed FAILED, never FINISHED: only the attempt that
produced a run may mark it FINISHED (one FINISHED run per planned trial, whatever the retries).

:class:`AttemptCloser` does it as Ray Tune reports each attempt's end:

* an attempt failed (``on_trial_error``, ``on_trial_recover`` before a retry): the runs of its trial key
  still RUNNING are closed FAILED with the error (the next attempt has not started yet);
* a trial completed (``on_trial_complete``): the runs of its key still RUNNING, other than the one the
  completed attempt reported (``mlflow_run_id`` in its results), are stale attempts: FAILED.  The reported
  run itself is still RUNNING when the scheduler (ASHA) stopped the trial before its last epoch (Ray Tune
  tears the worker down without waiting for it): then it is closed FINISHED, tagged ``early_stopped``.

Whatever is still RUNNING when the driver's Tune run ends, or when the next driver starts (a dead
driver's), is closed by ``tracking.close_stale_runs``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from ray import tune

from .errors import one_line
from .plan import StudyContext

__all__ = ["AttemptCloser", "trial_error_text", "failure_text", "last_error_line", "planned_of",
           "TAG_EARLY_STOPPED"]

TAG_EARLY_STOPPED = "early_stopped"  # "true" when the scheduler (ASHA) stopped the trial
STORE_FAILURE = "StoreUnavailableError"  # the exception of a store that stayed unreachable (tracking.retry)
_log = logging.getLogger(__name__)


def planned_of(trial):
    """The :class:`study.plan.PlannedTrial` of a Ray Tune trial (every study config is ``{"trial": ...}``)."""
    from .plan import PlannedTrial

    cfg = getattr(trial, "config", None) or {}
    return PlannedTrial.from_dict(cfg["trial"]) if "trial" in cfg else None


def last_error_line(text: str, limit: int = 300) -> str:
    """The line of an error text that says what went wrong (an exception's ``Type: message``)."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    hits = [ln for ln in lines if re.match(r"^[A-Za-z_.]*(Error|Exception|Exit)\b.*:", ln)]
    line = (hits[-1] if hits else (lines[-1] if lines else "")).replace("\x1b", "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def trial_error_text(trial) -> str:
    """The error of the trial's latest failure, from Ray Tune's error file.

    Ray Tune appends ``Failure # N ...`` + the exception to ``error.txt`` in the trial's driver-side staging
    dir just before the callbacks run (``Trial.handle_error``); ``Trial.get_error`` reads the copy in the
    storage path, which may not be synced yet, so the local file is read first."""
    err = None
    path = getattr(trial, "error_file", None)
    try:
        if path and os.path.isfile(path):
            text = Path(path).read_text(errors="replace")
            err = re.split(r"^Failure # \d+ \(occurred at [^)]*\)\s*$", text, flags=re.M)[-1].strip() or None
    except (OSError, AttributeError):
        err = None
    if not err:
        try:
            err = trial.get_error()
        except Exception:  # noqa: BLE001
            err = None
    return f"Ray Tune trial {trial.trial_id} failed: {err}" if err else f"Ray Tune trial {trial.trial_id} failed (worker lost)"


def _mlflow_error(ctx: StudyContext, trial_key: str) -> str | None:
    """The ``error`` tag of the latest FAILED MLflow run of ``trial_key`` (the worker's own traceback)."""
    import tracking
    from tracking import schema
    from tracking.search import run_filter, search_runs

    try:
        runs = search_runs(tracking.get_client(ctx.tracking_uri), [ctx.experiment_id],
                           run_filter(trial_key=trial_key, status="FAILED"))
    except Exception:  # noqa: BLE001 - progress lines must not stop the study
        return None
    runs = sorted(runs, key=lambda r: r.info.start_time or 0)
    return runs[-1].data.tags.get(schema.TAG_ERROR) if runs else None


def failure_text(ctx: StudyContext, trial) -> str:
    """What made a trial attempt fail: Ray Tune's error for this failure; when Ray has none (the error file
    is not there), the error the worker recorded on the trial's latest FAILED MLflow run."""
    text = trial_error_text(trial)
    planned = planned_of(trial)
    if planned is not None and text.endswith("(worker lost)"):
        recorded = _mlflow_error(ctx, planned.trial_key)
        if recorded:
            return recorded
    return text


def close_attempts(ctx: StudyContext, trial_key: str, *, error: str, keep: str | None = None,
                   early_stopped: str | None = None) -> list[str]:
    """Close the RUNNING runs of ``trial_key``: ``early_stopped`` (a run id) FINISHED + ``early_stopped``,
    ``keep`` (a run id) left alone, every other FAILED with ``error``.  Returns the ids closed FAILED.
    Store errors are logged, not raised (bookkeeping never stops a study; ``close_stale_runs`` catches up)."""
    import tracking
    from tracking import schema
    from tracking.search import run_filter, search_runs

    closed = []
    try:
        client = tracking.get_client(ctx.tracking_uri)
        for run in search_runs(client, [ctx.experiment_id], run_filter(trial_key=trial_key, status="RUNNING")):
            run_id = run.info.run_id
            if run_id == keep:
                continue
            if run_id == early_stopped:
                client.set_tag(run_id, schema.TAG_OUTCOME, "completed")
                client.set_tag(run_id, TAG_EARLY_STOPPED, "true")
                client.set_terminated(run_id, status="FINISHED")
                continue
            client.set_tag(run_id, schema.TAG_OUTCOME, "failed")
            client.set_tag(run_id, schema.TAG_ERROR, error[:8000])
            client.set_terminated(run_id, status="FAILED")
            closed.append(run_id)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        _log.warning("could not close the MLflow runs of %s: %s", trial_key, one_line(exc))
    return closed


class AttemptCloser(tune.Callback):
    """Ray Tune callback closing the runs that attempts left RUNNING (see the module docstring).

    It also keeps the Ray trials that started and have not ended (completed or errored): a Tune run that
    returns with any left (:attr:`unfinished`) was stopped early (a stop signal, SIGUSR1: Ray Tune then
    stops its trials without reporting their end)."""

    def __init__(self, ctx: StudyContext):
        self.ctx = ctx
        self.open: set[str] = set()
        #: called with the Ray trial id of a trial that failed because a store stayed unreachable (its own
        #: code did not fail): the searcher gives the budget back (study/searcher.py ``requeue``)
        self.on_store_failure = None

    @property
    def unfinished(self) -> int:
        return len(self.open)

    def on_trial_start(self, iteration, trials, trial, **info):
        self.open.add(trial.trial_id)

    def _run_of(self, trial) -> str | None:
        from .search import ATTR_MLFLOW_RUN

        return (getattr(trial, "last_result", None) or {}).get(ATTR_MLFLOW_RUN)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.open.discard(trial.trial_id)
        planned = planned_of(trial)
        if planned is None:
            return
        reported = self._run_of(trial)
        # ASHA stopped the trial before its last epoch: its run is still RUNNING (the worker is torn down
        # without closing it) and is the trial's result.  A trial that reached its last epoch closes its own
        # run before Tune sees that epoch (study/trainable.py), so it is never tagged early_stopped.
        stopped = (self.ctx.early_stopping and planned.phase == "search"
                   and self._epoch_of(trial) < self.ctx.epochs_of(planned))
        close_attempts(self.ctx, planned.trial_key,
                       error="attempt ended without closing its run (store unreachable or worker lost); "
                             "another attempt of the trial finished",
                       keep=None if stopped else reported, early_stopped=reported if stopped else None)

    @staticmethod
    def _epoch_of(trial) -> int:
        result = getattr(trial, "last_result", None) or {}
        try:
            return int(result.get("epoch", result.get("training_iteration", 0)) or 0)
        except (TypeError, ValueError):
            return 0

    def on_trial_error(self, iteration, trials, trial, **info):
        self.open.discard(trial.trial_id)
        self.on_trial_recover(iteration, trials, trial, **info)
        if self.on_store_failure is not None and STORE_FAILURE in trial_error_text(trial):
            self.on_store_failure(trial.trial_id)

    def on_trial_recover(self, iteration, trials, trial, **info):
        planned = planned_of(trial)
        if planned is not None:
            close_attempts(self.ctx, planned.trial_key, error=trial_error_text(trial))
