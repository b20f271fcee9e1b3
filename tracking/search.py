"""Every MLflow run query the study and the reports make: one filter builder, one paginator, one
"latest attempt" rule, so that both sides agree by construction.

MLflow's search syntax (``MlflowClient.search_runs``) has ``and`` but no ``or`` and no escape character
in string literals; :func:`run_filter` builds the clauses from the names in :mod:`tracking.schema`, and
:func:`search_runs` follows the page tokens.

A planned trial (tag ``trial_key``) may have several runs: one per attempt (Ray Tune retries a failed
attempt; ``resume`` re-runs an interrupted one).  :func:`latest_attempts` applies the one rule every count
uses: a trial is its FINISHED run if it has one (the newest, by end time), otherwise its newest attempt
(by start time).

Example::

    flt = run_filter(study="quickstart", phase="final", role=schema.ROLE_TRIAL, status="FINISHED")
    runs = search_runs(client, [experiment_id], flt)
    trials = latest_attempts(runs)            # {trial_key: Run}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Sequence

from . import schema as S

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

__all__ = ["quote", "run_filter", "search_runs", "any_run", "latest_attempts", "attempts_by_key", "PAGE_SIZE", "RUN_STATUSES"]

#: ``max_results`` per page; MLflow's SQL stores and its REST API accept up to 50,000.
PAGE_SIZE = 10_000
#: MLflow's run statuses (``mlflow.entities.RunStatus``).
RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")


def quote(value: object) -> str:
    """A string literal for an MLflow search filter.

    MLflow's filter grammar has no escape syntax; a literal is quoted with whichever quote character it
    does not contain.

    Raises:
        ValueError: the value holds both ``'`` and ``"`` (it cannot be searched).
    """
    text = str(value)
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    raise ValueError(f"value {text!r} holds both quote characters; it cannot be searched in MLflow")


def run_filter(*, study: str | None = None, phase: str | None = None, role: str | None = None,
               optimizer: str | None = None, trial_key: str | None = None, status: str | None = None,
               started_since_ms: int | None = None, tags: dict[str, str] | None = None,
               extra: str | None = None) -> str:
    """An MLflow filter string ANDing the given conditions (``None`` = no condition).

    Args:
        study, phase, role, optimizer, trial_key: tag values (names from :mod:`tracking.schema`).
        status: one of :data:`RUN_STATUSES` (``attributes.status``).
        started_since_ms: runs whose ``start_time`` (epoch milliseconds) is at least this.
        tags: further ``{tag: value}`` equalities.
        extra: a raw clause appended as is.

    Raises:
        ValueError: an unknown status or phase, or a value that cannot be quoted.
    """
    clauses = []
    if phase is not None and phase not in S.PHASES:
        raise ValueError(f"phase {phase!r} is not one of {', '.join(S.PHASES)}")
    for tag, value in ((S.TAG_STUDY, study), (S.TAG_PHASE, phase), (S.TAG_ROLE, role),
                       (S.TAG_OPTIMIZER, optimizer), (S.TAG_TRIAL_KEY, trial_key), *(tags or {}).items()):
        if value is not None:
            clauses.append(f"tags.`{tag}` = {quote(value)}")
    if status is not None:
        if status not in RUN_STATUSES:
            raise ValueError(f"run status {status!r} is not one of {', '.join(RUN_STATUSES)}")
        clauses.append(f"attributes.status = '{status}'")
    if started_since_ms is not None:
        clauses.append(f"attributes.start_time >= {int(started_since_ms)}")
    if extra:
        clauses.append(extra)
    return " and ".join(clauses)


def search_runs(client: "MlflowClient", experiment_ids: Sequence[str], filter_string: str = "", *,
                order_by: list[str] | None = None, page_size: int = PAGE_SIZE) -> list["Run"]:
    """All active runs matching ``filter_string`` in the experiments, following MLflow's page tokens."""
    from mlflow.entities import ViewType

    runs: list = []
    token = None
    while True:
        page = client.search_runs(list(experiment_ids), filter_string=filter_string,
                                  run_view_type=ViewType.ACTIVE_ONLY, max_results=page_size,
                                  order_by=order_by, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def any_run(client: "MlflowClient", experiment_ids: Sequence[str], filter_string: str = "") -> bool:
    """Whether at least one active run matches (one page of one run: cheap on any store)."""
    from mlflow.entities import ViewType

    return bool(client.search_runs(list(experiment_ids), filter_string=filter_string,
                                   run_view_type=ViewType.ACTIVE_ONLY, max_results=1))


def attempts_by_key(runs: Iterable["Run"]) -> dict[str, list["Run"]]:
    """``{trial_key: [runs]}``, each list oldest attempt first (runs without a ``trial_key`` are keyed by run id)."""
    out: dict[str, list] = {}
    for run in runs:
        key = run.data.tags.get(S.TAG_TRIAL_KEY) or run.info.run_id
        out.setdefault(key, []).append(run)
    for attempts in out.values():
        attempts.sort(key=lambda r: (r.info.start_time or 0, r.info.run_id))
    return out


def latest_attempts(runs: Iterable["Run"]) -> dict[str, "Run"]:
    """The run that stands for each planned trial: its newest FINISHED run (by end time) if it has one,
    else its newest attempt (by start time).  This is the one rule for "a trial counts once"."""
    out = {}
    for key, attempts in attempts_by_key(runs).items():
        finished = [r for r in attempts if r.info.status == "FINISHED"]
        if finished:
            out[key] = max(finished, key=lambda r: (r.info.end_time or 0, r.info.run_id))
        else:
            out[key] = attempts[-1]
    return out
