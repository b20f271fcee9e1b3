"""Where a study stands, read from its stores alone (any directory, any machine): per phase and optimizer,
the planned trials and how many completed, diverged, failed, were interrupted or are running, and each
optimizer's best search trial.  Returns records; the CLI formats them.

Counting rules: only planned trials are counted (the plan comes from the study file recorded in MLflow),
each once, by ``tracking.search.latest_attempts`` (its FINISHED run if any, else its latest attempt), so
completed + diverged + failed + interrupted + running <= planned.  ``attempts`` counts every MLflow run of
the planned and the replaced trials (a retried trial has one per attempt).  A search trial a dead driver
interrupted is not planned (``resume`` replaced it), and is shown apart as ``replaced``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import StudyConfig
from .errors import StudyRunError
from .stores import Stores, read_study_record

__all__ = ["TrialCounts", "BestConfiguration", "StudyStatus", "study_status", "studies_overview",
           "load_recorded_study"]


@dataclass
class TrialCounts:
    """Counts of one (phase, optimizer); ``planned`` is None when the study's plan is not recorded."""

    planned: int | None = None
    completed: int = 0
    diverged: int = 0
    failed: int = 0
    interrupted: int = 0
    running: int = 0
    attempts: int = 0
    replaced: int = 0

    @property
    def finished(self) -> int:
        return self.completed + self.diverged


@dataclass(frozen=True)
class BestConfiguration:
    """An optimizer's best search trial so far."""

    optimizer: str
    metric: str
    value: float
    number: int
    params: dict[str, Any]


@dataclass
class StudyStatus:
    """A study's state.  ``state``: ``done`` (every planned trial finished), ``running`` (a live driver holds
    the study's lease, study/lease.py), ``driver dead`` (runs are RUNNING but no live driver holds the
    lease: ``resume`` takes over), ``incomplete``, or ``not started``.  ``driver``: who runs it, if anyone."""

    name: str
    kind: str | None
    benchmark: str | None
    stores: str
    state: str
    counts: dict[tuple[str, str], TrialCounts] = field(default_factory=dict)
    best: list[BestConfiguration] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    driver: str | None = None

    @property
    def total(self) -> TrialCounts:
        t = TrialCounts(planned=0)
        for c in self.counts.values():
            t.planned = None if t.planned is None or c.planned is None else t.planned + c.planned
            for k in ("completed", "diverged", "failed", "interrupted", "running", "attempts", "replaced"):
                setattr(t, k, getattr(t, k) + getattr(c, k))
        return t


def load_recorded_study(stores: Stores, name: str) -> StudyConfig:
    """The study file recorded in MLflow by the study's latest ``run`` (for ``resume`` and ``status``).

    Raises:
        StudyRunError: the MLflow store has no such study (lists the known ones), or no study file.
    """
    import tracking
    from tracking import query

    from .loading import parse_study_text

    record = read_study_record(stores.tracking_uri, name)
    if record is None:
        try:
            known = query.list_studies(stores.tracking_uri)
        except Exception:  # noqa: BLE001 - an empty or missing store
            known = []
        raise StudyRunError(f"no study named {name!r} in MLflow store {tracking.mask_uri(stores.tracking_uri)} "
                            f"(known: {', '.join(known) or 'none'}); give --tracking-uri / MLFLOW_TRACKING_URI "
                            "of the store it was run with, or run it first (`amgt-study run FILE`)")
    if not record.study_file:
        raise StudyRunError(f"study {name!r} in {tracking.mask_uri(stores.tracking_uri)} was recorded without its "
                            "study file (an older amgt-study): run the file again under a new name")
    return parse_study_text(record.study_file, f"the study file recorded with {name!r}")


def _planned_keys(cfg: StudyConfig, stores: Stores, notes: list[str]) -> tuple[dict[tuple[str, str], set[str]],
                                                                               dict[str, set[str]],
                                                                               dict[str, set[str]]]:
    """``({(phase, optimizer): planned trial keys}, {optimizer: replaced search keys}, {optimizer: keys of the
    search trials asked of Optuna and still RUNNING there})``."""
    from optuna.trial import TrialState

    from .plan import optuna_study_name, plan_trials, search_trial_key
    from .search import counted_trials, interrupted_numbers
    from .optuna_store import load_optuna_study

    keys: dict[tuple[str, str], set[str]] = {}
    replaced: dict[str, set[str]] = {}
    asked: dict[str, set[str]] = {}
    for phase in cfg.phases:
        if phase == "search":
            for entry in cfg.optimizers:
                keys[("search", entry.name)] = set()
                if not entry.resolved_space():
                    continue
                try:
                    ostudy = load_optuna_study(stores.optuna_storage, optuna_study_name(cfg.name, entry.name)) \
                        if stores.optuna_storage else None
                except Exception as exc:  # noqa: BLE001 - status prints what it can
                    notes.append(f"Optuna storage not readable: {exc}")
                    ostudy = None
                if ostudy is None:
                    keys[("search", entry.name)] = None  # type: ignore[assignment] - unknown: count all
                    continue
                n = cfg.search.trials_per_optimizer
                counted = counted_trials(ostudy)[:n]
                # a trial still RUNNING in Optuna is planned too: running, or interrupted (its run KILLED) when
                # its driver stopped before `resume` settles it (study/search.py settle_interrupted)
                running = ostudy.get_trials(deepcopy=False, states=(TrialState.RUNNING,))[: max(0, n - len(counted))]
                keys[("search", entry.name)] = {search_trial_key(cfg.name, entry.name, t.number)
                                                for t in counted + running}
                asked[entry.name] = {search_trial_key(cfg.name, entry.name, t.number) for t in running}
                replaced[entry.name] = {search_trial_key(cfg.name, entry.name, n) for n in interrupted_numbers(ostudy)}
        elif phase == "final":
            for entry in cfg.optimizers:
                keys[("final", entry.name)] = {f"{cfg.name}/final/{entry.name}/seed{s}" for s in cfg.seed_values}
        else:
            for p in plan_trials(cfg, phase):
                keys.setdefault((phase, p.optimizer), set()).add(p.trial_key)
    return keys, replaced, asked


def _best(cfg: StudyConfig, stores: Stores, notes: list[str]) -> list[BestConfiguration]:
    from .search import recorded_best

    out = []
    if cfg.kind != "comparison" or not stores.optuna_storage:
        return out
    for entry in cfg.optimizers:
        try:
            b = recorded_best(stores.optuna_storage, cfg.name, entry.name, cfg.search.mode)
        except Exception as exc:  # noqa: BLE001
            notes.append(f"Optuna storage not readable: {exc}")
            return out
        if b is not None:
            out.append(BestConfiguration(entry.name, cfg.search.metric, b.value, b.number, b.params))
    return out


def study_status(stores: Stores, name: str) -> StudyStatus:
    """The status of study ``name`` (see the module docstring).

    Raises:
        StudyRunError: the MLflow store has no such study.
    """
    import tracking
    from tracking import schema
    from tracking.search import any_run, attempts_by_key, latest_attempts, run_filter, search_runs

    record = read_study_record(stores.tracking_uri, name)
    if record is None:
        load_recorded_study(stores, name)  # raises the "no study named" error
    cfg = load_recorded_study(stores, name) if record.study_file else None
    notes: list[str] = []
    runs = search_runs(tracking.get_client(stores.tracking_uri), [record.experiment_id],
                       run_filter(study=name, role=schema.ROLE_TRIAL))
    by_group: dict[tuple[str, str], list] = {}
    for run in runs:
        group = (run.data.tags.get(schema.TAG_PHASE, "?"), run.data.tags.get(schema.TAG_OPTIMIZER, "?"))
        by_group.setdefault(group, []).append(run)
    planned_keys, replaced, asked = _planned_keys(cfg, stores, notes) if cfg else ({}, {}, {})
    live = record.lease is not None and record.lease.alive()
    client = tracking.get_client(stores.tracking_uri)
    # a driver killed outright (SIGKILL, lost machine) leaves its runs RUNNING: what it had in flight shows as
    # running ("driver dead"), whether or not a trial's run had started; a driver that ended cleanly closed them
    parent_running = any_run(client, [record.experiment_id],
                             run_filter(study=name, role=schema.ROLE_PARENT, status="RUNNING"))
    in_flight = live or parent_running or any(r.info.status == "RUNNING" for r in runs)
    counts: dict[tuple[str, str], TrialCounts] = {}
    for group in list(planned_keys) + [g for g in by_group if g not in planned_keys]:
        keys = planned_keys.get(group)
        group_runs = by_group.get(group, [])
        c = counts[group] = TrialCounts()
        if cfg is not None:
            c.planned = (cfg.search.trials_per_optimizer if cfg.optimizer(group[1]).resolved_space() else 0) \
                if group[0] == "search" and group[1] in {o.name for o in cfg.optimizers} else \
                (len(keys) if keys is not None else None)
        gone = replaced.get(group[1], set()) if group[0] == "search" else set()
        latest, attempts = latest_attempts(group_runs), attempts_by_key(group_runs)
        for key, run in latest.items():
            if key in gone:
                c.replaced += 1
                c.attempts += len(attempts[key])  # its runs were tries too
                continue
            if keys is not None and key not in keys:
                continue  # not a planned trial of these settings
            c.attempts += len(attempts[key])
            status = run.info.status
            if status == "FINISHED":
                if run.data.tags.get(schema.TAG_OUTCOME) == "diverged":
                    c.diverged += 1
                else:
                    c.completed += 1
            elif status == "RUNNING":
                c.running += 1
            elif status == "KILLED":
                c.interrupted += 1
            else:
                c.failed += 1
        if group[0] == "search":
            # asked of Optuna but never started as a run (a driver stopped while its trials waited for a worker):
            # running while in flight (see above), else interrupted (`resume` replaces them); replaced ones count
            # as replaced, as those with a run do
            c.replaced += len(gone - set(latest))
            waiting = len(asked.get(group[1], set()) - set(latest) - gone)
            if in_flight:
                c.running += waiting
            else:
                c.interrupted += waiting
    status = StudyStatus(name, cfg.kind if cfg else None, ", ".join(cfg.benchmarks) if cfg else None,
                         stores.describe(), "",
                         counts, _best(cfg, stores, notes) if cfg else [], notes)
    total = status.total
    if live:
        status.driver = record.lease.describe()
    # a driver killed before its first trial run leaves only its phase's parent run RUNNING
    orphaned = not live and not total.running and parent_running
    # "not started": no trial run and no phase opened (a driver stopped before its first trial run has
    # opened, and closed, a phase: incomplete)
    started = bool(total.attempts) or (not live and any_run(
        client, [record.experiment_id], run_filter(study=name, role=schema.ROLE_PARENT)))
    status.state = ("running" if live else "driver dead" if total.running or orphaned
                    else "not started" if not started
                    else "done" if total.planned is not None and total.finished >= total.planned else "incomplete")
    if status.state == "driver dead":
        status.notes.append(f"runs are RUNNING but no driver holds the study: `amgt-study resume {name}` finishes it")
    return status


def studies_overview(stores: Stores) -> list[StudyStatus]:
    """The status of every study in the MLflow store (MLflow's ``Default`` experiment excluded).

    Raises:
        tracking.TrackingStoreError: the tracking store is unreachable.
    """
    from tracking import query

    from .stores import mlflow_is_empty

    if mlflow_is_empty(stores.tracking_uri):
        return []
    out = []
    for name in query.list_studies(stores.tracking_uri):
        try:
            out.append(study_status(stores, name))
        except StudyRunError as exc:
            out.append(StudyStatus(name, None, None, stores.describe(), "unreadable", notes=[str(exc)]))
    return out
