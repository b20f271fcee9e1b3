"""Running a study: the order of the steps, each done by its own module.

Phases (names from tracking/schema.py ``PHASES``):

* ``comparison``: ``search`` (each optimizer's space searched with ``search.trials_per_optimizer`` trials,
  one Optuna study per optimizer, study/searcher.py), then ``final`` (the best configuration of each
  optimizer re-run over ``seeds`` fresh seeds, study/plan.py).  Both run in one ``ray.tune.Tuner``: the
  searcher proposes the final trials once every search trial has completed, so they reuse the search's
  workers; with ASHA early stopping, one Tuner per optimizer's search and one for the final phase.
* ``sensitivity``: ``grid`` (a log grid of learning rates × optimizers × seeds, claim C10).
* ``ablation``: ``ablation`` (each listed optimizer with fixed hyperparameters × seeds, claim C9).
* ``quadratic``: ``quadratic`` (the exact facts of the quadratic problems, logged as
  ``quadratic_facts.json`` on the parent run, and the listed optimizers run on them; C11–C13).

Order of :func:`run_study`: the data (study/preflight.py), the study's identity (study/identity.py), the
stores, their agreement with each other and with the identity (study/stores.py), and the resources: every
refusal comes before anything is written.  Then Ray starts while a thread creates the study's records,
runs a dead driver left RUNNING are closed, and the phases run, each under its MLflow parent run
(study/phases.py).  Running it again, or :func:`resume_study` from anywhere with the same stores, launches
only what is missing.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .config import StudyConfig
from .errors import StudyRunError
from .loading import dump_study
from .phases import PhaseSummary, Phases, finished_keys, interrupted_since, tally
from .plan import (
    PlannedTrial,
    SearchTarget,
    StudyContext,
    base_trial_config,
    optuna_study_name,
    plan_trials,
    search_seed,
    search_trial_key,
)
from .preflight import check_resources, check_study_data, local_resources
from .stores import Stores, check_agreement, check_stores, create_records, read_study_record, resolve_stores
from .interrupts import abandon, resume_hint, sigterm_as_interrupt, terminated
from .watchdog import RayletWatchdog

_log = logging.getLogger(__name__)

__all__ = ["StudyRunError", "StudyPlan", "plan_study", "run_study", "resume_study", "stores_for", "recorded_study_file"]

Echo = Callable[[str], None]


# ---- planning (read only) ------------------------------------------------------------------------------


@dataclass
class StudyPlan:
    """What ``run`` would do (``--dry-run``): the study, its stores, the identity check, trials per
    (phase, optimizer), and what the stores already hold (``existing``: None for a new study)."""

    cfg: StudyConfig
    stores: Stores
    fingerprint: str
    planned: dict[tuple[str, str], int]
    existing: str | None = None
    data: list[tuple[str, Path]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.planned.values())


def _optuna_names(cfg: StudyConfig) -> list[str]:
    if cfg.kind != "comparison":
        return []
    return [optuna_study_name(cfg.name, o.name) for o in cfg.optimizers if o.resolved_space()]


def stores_for(cfg: StudyConfig | None, name: str, tracking_uri: str | None = None,
               optuna_storage: str | None = None) -> Stores:
    """The stores of study ``name``: explicit > the file's > environment > what the study was recorded with
    (its Optuna storage) > derived from the tracking URI (study/stores.py)."""
    first = resolve_stores(tracking_uri, optuna_storage, file_tracking_uri=cfg.tracking_uri if cfg else None,
                           file_optuna_storage=cfg.optuna_storage if cfg else None)
    if first.optuna_source == "given":
        return first
    try:
        record = read_study_record(first.tracking_uri, name)
    except StudyRunError:
        return first  # check_stores says what is wrong with the store
    if record is None or not record.optuna_storage:
        return first
    return resolve_stores(tracking_uri, optuna_storage, file_tracking_uri=cfg.tracking_uri if cfg else None,
                          recorded_optuna_storage=record.optuna_storage)


def _check_not_in_a_job_package(stores: Stores) -> None:
    """A SQLite store inside a Ray job's working directory is deleted with the job: refuse it."""
    if "RAY_JOB_CONFIG_JSON_ENV_VAR" not in os.environ or not stores.tracking_uri.startswith("sqlite:///"):
        return
    path = Path(stores.tracking_uri[len("sqlite:///"):].partition("?")[0])
    if "runtime_resources" in path.parts:
        raise StudyRunError(
            f"the MLflow store would be {path}, inside this Ray job's temporary working directory (deleted with the "
            "job): give the job the cluster's store, e.g. ray job submit --runtime-env-json "
            "'{\"env_vars\": {\"MLFLOW_TRACKING_URI\": \"http://mlflow:5000\"}}' (docs/deployment.md)")


def plan_study(cfg: StudyConfig, *, tracking_uri: str | None = None, optuna_storage: str | None = None,
               ray_address: str | None = None) -> StudyPlan:
    """Everything ``run`` checks before it writes, and the plan: data, identity, stores (read only),
    agreement, and resources on this machine (when no cluster is joined).

    Raises:
        FileNotFoundError, StudyRunError, StudyIdentityError, StoresDisagreeError, StudyConfigError: as
        :func:`run_study` would, before writing anything.
    """
    from .execution import ray_address_of
    from .identity import study_identity
    from .plan import planned_counts

    data = check_study_data(cfg)
    identity = study_identity(cfg)
    stores = stores_for(cfg, cfg.name, tracking_uri, optuna_storage)
    check_stores(stores, needs_optuna=bool(_optuna_names(cfg)))
    _check_not_in_a_job_package(stores)
    record = check_agreement(stores, cfg.name, identity, _optuna_names(cfg))
    _check_no_live_driver(cfg.name, record)
    if ray_address_of(cfg, ray_address) is None:
        check_resources(cfg, local_resources())
    existing = None
    if record is not None and record.has_runs:
        existing = f"the same settings: runs only what is missing ({_done_text(stores, cfg.name)})"
    elif record is not None:
        existing = "an empty experiment of that name"
    return StudyPlan(cfg, stores, identity.fingerprint, planned_counts(cfg), existing, data)


def _done_text(stores: Stores, name: str) -> str:
    """``"12/40 planned trials finished"`` (completed or diverged) from the study's status (study/status.py);
    what it cannot read is said as such (a dry run still prints its plan)."""
    from .status import study_status

    try:
        total = study_status(stores, name).total
    except Exception as exc:  # noqa: BLE001 - a view of the plan only
        return f"its progress could not be read: {type(exc).__name__}"
    if total.planned is None:
        return f"{total.finished} trials finished"
    return f"{total.finished}/{total.planned} planned trials finished"


def _check_no_live_driver(name: str, record) -> None:
    """Refuse, before anything is written, a study another live driver is running (study/lease.py)."""
    if record is not None and record.lease is not None and record.lease.alive():
        from .lease import driver_conflict

        raise driver_conflict(name, record.lease)


def recorded_study_file(cfg: StudyConfig) -> str:
    """The study file as recorded with the study (what ``resume`` reruns): stores and Ray address left out
    (they are where it is read from), the data dir made absolute."""
    data_dir = str(Path(cfg.data_dir).expanduser().absolute()) if cfg.data_dir else None
    return dump_study(cfg.model_copy(update={"tracking_uri": None, "optuna_storage": None, "ray_address": None,
                                             "data_dir": data_dir}))


# ---- running -------------------------------------------------------------------------------------------


def _start_ray_and_records(cfg: StudyConfig, stores: Stores, identity, address: str | None) -> tuple[bool, str]:
    """Start (or join) Ray and create the study's records (:func:`study.stores.create_records`).

    A local Ray starts while a thread creates the records: they do not depend on each other and both mostly
    wait.  Joining a cluster, its resources are checked first and the records created after.

    Returns:
        (whether Ray was started here and must be shut down, the MLflow experiment id).
    """
    import ray

    from .execution import ensure_ray

    def records() -> str:
        return create_records(stores, cfg.name, identity, recorded_study_file(cfg), cfg.description)

    joining = ray.is_initialized() or address is not None
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="amgt-stores") as pool:
        created = None if joining else pool.submit(records)
        started = ensure_ray(address)  # on an error the pool waits for the records, then it propagates
        try:
            check_resources(cfg, ray.cluster_resources(), "the Ray cluster" if joining else "this machine")
            experiment_id = records() if created is None else created.result()
        except BaseException:
            if started:
                ray.shutdown()
            raise
    return started, experiment_id


def _finished_search_metrics(ctx: StudyContext, optimizer: str) -> dict[int, dict[str, float]]:
    """{Optuna trial number: final metrics} of the FINISHED search runs of one optimizer (from MLflow)."""
    import tracking
    from tracking import schema
    from tracking.search import run_filter, search_runs

    flt = run_filter(study=ctx.study, phase="search", optimizer=optimizer, status="FINISHED")
    out = {}
    for run in search_runs(tracking.get_client(ctx.tracking_uri), [ctx.experiment_id], flt):
        number = run.data.tags.get(schema.TAG_OPTUNA_TRIAL)
        if number is not None and number.isdigit():
            out[int(number)] = dict(run.data.metrics)
    return out


def _prepare_search(cfg: StudyConfig, stores: Stores, ctx: StudyContext, echo: Echo,
                    summary: PhaseSummary) -> tuple[dict[str, int], dict[str, int]]:
    """Settle what a dead driver left in each optimizer's Optuna study, count its trials; fill
    ``ctx.search``.  Returns ({optimizer: trials to run}, {optimizer: trials counted before})."""
    from .search import counted_trials, settle_interrupted
    from .optuna_store import open_optuna_study

    s = cfg.search
    pending, done = {}, {}
    for entry in cfg.optimizers:
        space = entry.resolved_space()
        summary.planned[entry.name] = s.trials_per_optimizer if space else 0
        summary.finished[entry.name] = 0
        if not space:
            echo(f"[{cfg.name} search] {entry.name}: nothing to search (all hyperparameters fixed); final uses "
                 f"{entry.hparams}")
            continue
        name = optuna_study_name(cfg.name, entry.name)
        ostudy = open_optuna_study(stores.optuna_storage, name, direction="maximize" if s.mode == "max" else "minimize",
                                   fingerprint=ctx.fingerprint)
        recovered, interrupted = settle_interrupted(ostudy, _finished_search_metrics(ctx, entry.name), s.metric)
        if recovered or interrupted:
            echo(f"[{cfg.name} search] {entry.name}: of the trials an earlier driver left running, {recovered} had "
                 f"finished (result taken from MLflow), {interrupted} marked FAIL (interrupted) and replaced")
        n = len(counted_trials(ostudy))
        summary.finished[entry.name] = min(n, s.trials_per_optimizer)
        if s.trials_per_optimizer - n <= 0:
            echo(f"[{cfg.name} search] {entry.name}: {s.trials_per_optimizer}/{s.trials_per_optimizer} trials already done")
            continue
        pending[entry.name], done[entry.name] = s.trials_per_optimizer - n, n
        ctx.search[entry.name] = SearchTarget(cfg.benchmarks[0], search_seed(cfg), dict(entry.hparams), name,
                                              cfg.search.epochs)
        echo(f"[{cfg.name} search] {entry.name}: {s.trials_per_optimizer - n} trial(s) to run ({n} done before); "
             f"space {', '.join(f'{k} {v.describe()}' for k, v in space.items())}")
    return pending, done


def _pending(cfg: StudyConfig, ctx: StudyContext, phase: str, planned: list[PlannedTrial], echo: Echo,
             summary: PhaseSummary) -> list[PlannedTrial]:
    """The planned trials of a phase with no FINISHED run yet, each carrying its phase's parent run;
    fills ``summary``'s planned and finished counts."""
    finished = finished_keys(ctx, phase)
    for p in planned:
        summary.planned[p.optimizer] = summary.planned.get(p.optimizer, 0) + 1
        summary.finished[p.optimizer] = summary.finished.get(p.optimizer, 0) + (p.trial_key in finished)
    pending = [p.with_parent(ctx.parent_runs[phase]) for p in planned if p.trial_key not in finished]
    echo(f"[{cfg.name} {phase}] launching {len(pending)} of {len(planned)} planned trials" if pending
         else f"[{cfg.name} {phase}] all {len(planned)} planned trials already finished")
    return pending


def _tally_planned(ctx: StudyContext, phase: str, planned: list[PlannedTrial], summary: PhaseSummary) -> None:
    keys: dict[str, list[str]] = {}
    for p in planned:
        keys.setdefault(p.optimizer, []).append(p.trial_key)
    tally(ctx, phase, keys, summary)


def _tally_search(cfg: StudyConfig, stores: Stores, ctx: StudyContext, summary: PhaseSummary) -> None:
    from .search import counted_trials
    from .optuna_store import load_optuna_study

    keys = {}
    for entry in cfg.optimizers:
        if entry.resolved_space():
            ostudy = load_optuna_study(stores.optuna_storage, optuna_study_name(cfg.name, entry.name))
            counted = counted_trials(ostudy)[: cfg.search.trials_per_optimizer] if ostudy else []
            keys[entry.name] = [search_trial_key(cfg.name, entry.name, t.number) for t in counted]
    tally(ctx, "search", keys, summary)


class _Driver:
    """One driver's run of a study: its context, phases, callbacks and Tune runs."""

    def __init__(self, cfg: StudyConfig, stores: Stores, ctx: StudyContext, storage: Path, echo: Echo, display=None,
                 guard: threading.Lock | None = None):
        from .attempts import AttemptCloser
        from .progress import StudyProgress

        self.cfg, self.stores, self.ctx, self.storage, self.echo = cfg, stores, ctx, storage, echo
        self.phases = Phases(cfg, stores, ctx, guard)
        self.progress = StudyProgress.for_study(cfg, ctx, display or echo)
        self.closer = AttemptCloser(ctx)
        self.callbacks = [self.closer, self.progress]

    def tune(self, name: str, tune_config, param_space: dict | None = None) -> None:
        """One Tune run; raises ``KeyboardInterrupt`` when a stop signal ended it early (as Ctrl-C does, so
        that the open phase ends KILLED, not FINISHED)."""
        import tracking

        from .execution import run_tuner
        from .trainable import INTERRUPTED_ERROR

        started, stopped = run_tuner(self.cfg, self.ctx, self.storage, tune_config=tune_config,
                                     name=f"{name}-{time.strftime('%Y%m%dT%H%M%S')}", callbacks=self.callbacks,
                                     param_space=param_space)
        stopped = stopped or bool(self.closer.unfinished) or bool(interrupted_since(self.ctx, started))
        # Every trial of this Tune run has ended: a run still RUNNING is an attempt that could not close it
        # (its worker was stopped or lost while it wrote its end).
        tracking.close_stale_runs(self.ctx.tracking_uri, self.ctx.study, experiment_id=self.ctx.experiment_id,
                                  started_since_ms=started, status="KILLED" if stopped else "FAILED",
                                  reason=INTERRUPTED_ERROR if stopped else
                                  "attempt ended without closing its run (store unreachable or worker lost)")
        if stopped:
            raise KeyboardInterrupt("Ray Tune stopped the study's trials on a stop signal")

    def close(self, phase: str) -> None:
        from .progress import phase_line

        summary = self.phases.close(phase)
        self.progress.phase_closed(summary)
        self.echo(phase_line(self.cfg.name, summary))

    def run_planned(self, phase: str) -> None:
        summary = self.phases.open(phase)
        planned = plan_trials(self.cfg, phase)
        pending = _pending(self.cfg, self.ctx, phase, planned, self.echo, summary)
        if pending:
            self.launch(phase, pending, summary)
        _tally_planned(self.ctx, phase, planned, summary)
        self.close(phase)

    def launch(self, phase: str, pending: list[PlannedTrial], summary: PhaseSummary) -> None:
        from ray import tune

        self.progress.add_phase(phase, summary.planned, summary.finished)
        tune_config = tune.TuneConfig(num_samples=1, max_concurrent_trials=self.cfg.max_concurrent_trials,
                                      reuse_actors=True)
        self.tune(phase, tune_config, {"trial": tune.grid_search([{**p.to_dict()} for p in pending])})
        summary.launched += len(pending)

    def run_comparison(self) -> None:
        """The ``search`` phase, then ``final`` (see the module docstring)."""
        from ray import tune

        from .searcher import OptunaStudiesSearch
        from .search import recorded_best

        cfg, s = self.cfg, self.cfg.search
        search = self.phases.open("search")
        pending, done = _prepare_search(cfg, self.stores, self.ctx, self.echo, search)
        final_planned: list[PlannedTrial] = []

        def start_final() -> list[PlannedTrial]:
            """Close the search phase, open the final one; its trials not finished yet."""
            _tally_search(cfg, self.stores, self.ctx, search)
            self.close("search")
            final = self.phases.open("final")
            best = {}
            for entry in cfg.optimizers:
                if not entry.resolved_space():
                    from .search import BestTrial

                    best[entry.name] = BestTrial({}, None, None)
                    continue
                chosen = recorded_best(self.stores.optuna_storage, cfg.name, entry.name, s.mode)
                if chosen is not None:
                    best[entry.name] = chosen
            self.phases.record_best(best)
            missing = [o.name for o in cfg.optimizers if o.name not in best]
            if missing:
                self.echo(f"[{cfg.name} final] no completed search trial for {', '.join(missing)}: not re-run")
            final.not_run.update(missing)
            for o in cfg.optimizers:  # in the file's order; _pending adds the planned trials
                final.planned[o.name], final.finished[o.name] = (cfg.seeds if o.name in missing else 0), 0
            final_planned.extend(plan_trials(cfg, "final", best))
            return _pending(cfg, self.ctx, "final", final_planned, self.echo, final)

        if pending and s.early_stopping is None:
            self.progress.add_phase("search", {o: s.trials_per_optimizer for o in pending}, done,
                                    self.search_bests(done))
            budget = sum(pending.values())

            def then() -> list[PlannedTrial]:
                search.launched = budget
                trials = start_final()
                final = self.phases.summaries["final"]
                self.progress.add_phase("final", final.planned, final.finished)
                final.launched = len(trials)
                return trials

            searcher = OptunaStudiesSearch.for_study(cfg, self.stores.optuna_storage, self.ctx.fingerprint, pending,
                                                     done, self.ctx.search, self.ctx.parent_runs["search"], then=then)
            self.closer.on_store_failure = searcher.requeue
            # An upper bound (re-asked trials included): the searcher says FINISHED after the last final trial.
            tune_config = tune.TuneConfig(search_alg=searcher,
                                          num_samples=2 * budget + len(cfg.optimizers) * cfg.seeds,
                                          max_concurrent_trials=cfg.max_concurrent_trials, reuse_actors=True)
            self.tune("study", tune_config)
            if not searcher.finished:
                # Ray Tune ended the run before its searcher proposed every trial: only a stop signal does that.
                raise KeyboardInterrupt("Ray Tune stopped the study on a stop signal")
        else:
            if pending:
                self.run_asha(pending, done, search)
            trials = start_final()
            if trials:
                self.launch("final", trials, self.phases.summaries["final"])
        _tally_planned(self.ctx, "final", final_planned, self.phases.summaries["final"])
        self.close("final")

    def search_bests(self, done: dict[str, int]) -> dict[str, float]:
        """The best search score recorded before this driver (each optimizer's Optuna study's best COMPLETE
        trial, the one the final phase selects), for optimizers with trials ``done``."""
        from .search import recorded_best

        bests = {}
        for opt in (o for o, n in done.items() if n):
            chosen = recorded_best(self.stores.optuna_storage, self.cfg.name, opt, self.cfg.search.mode)
            if chosen is not None:
                bests[opt] = chosen.value
        return bests

    def run_asha(self, pending: dict[str, int], done: dict[str, int], summary: PhaseSummary) -> None:
        """The search with ASHA early stopping: one Tuner per optimizer, so that ASHA compares trials of the
        same optimizer only, and no worker reuse (Ray fails the next trial if a stopped trial's thread is
        still finishing, TUNE_FUNCTION_THREAD_TIMEOUT_S)."""
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler

        from .searcher import OptunaStudiesSearch

        s = self.cfg.search
        for opt, left in pending.items():
            scheduler = ASHAScheduler(time_attr="training_iteration", metric=s.metric, mode=s.mode,
                                      max_t=int(s.epochs or self.ctx.base["epochs"]),
                                      grace_period=s.early_stopping.grace_period,
                                      reduction_factor=s.early_stopping.reduction_factor)
            self.progress.add_phase("search", {opt: s.trials_per_optimizer}, {opt: done[opt]},
                                    self.search_bests({opt: done[opt]}))
            searcher = OptunaStudiesSearch.for_study(self.cfg, self.stores.optuna_storage, self.ctx.fingerprint,
                                                     {opt: left}, done, self.ctx.search, self.ctx.parent_runs["search"])
            self.closer.on_store_failure = searcher.requeue
            tune_config = tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=2 * left,
                                          max_concurrent_trials=self.cfg.max_concurrent_trials, reuse_actors=False)
            self.tune(f"search-{opt}", tune_config)
            summary.launched += left


def run_study(cfg: StudyConfig, *, tracking_uri: str | None = None, optuna_storage: str | None = None,
              ray_address: str | None = None, echo: Echo = print, display=None) -> dict[str, PhaseSummary]:
    """Run (or finish) a study: every phase of its kind, every trial recorded in MLflow.

    ``echo`` takes the runner's messages; the trials' progress goes to ``display`` (a
    ``study.progress.Display``; default: plain lines through ``echo``).

    Returns:
        ``{phase: PhaseSummary}`` (trials planned and finished per optimizer, trials launched now).

    Raises:
        StudyConfigError: resources the cluster does not have.  StudyIdentityError: the name holds results of
        other settings.  StoresDisagreeError: the MLflow store and the Optuna storage do not hold the same
        study.  StudyRunError: unreachable store or Ray, corrupt data.  FileNotFoundError: the benchmark's
        data is missing.  KeyboardInterrupt: interrupted (the open phase's parent run is ended KILLED; other
        errors end it FAILED).
    """
    import ray

    import tracking

    from .execution import ray_address_of, tune_storage
    from .identity import study_identity

    check_study_data(cfg)
    identity = study_identity(cfg)
    stores = stores_for(cfg, cfg.name, tracking_uri, optuna_storage)
    check_stores(stores, needs_optuna=bool(_optuna_names(cfg)))
    _check_not_in_a_job_package(stores)
    _check_no_live_driver(cfg.name, check_agreement(stores, cfg.name, identity, _optuna_names(cfg)))
    address = ray_address_of(cfg, ray_address)
    if address is None and not ray.is_initialized():
        check_resources(cfg, local_resources())
    from .lease import StudyLease

    started_ray, experiment_id = _start_ray_and_records(cfg, stores, identity, address)
    restore_sigterm = sigterm_as_interrupt()  # after ray.init, which installs Ray's own (an abort)
    lease = StudyLease(stores.tracking_uri, experiment_id, cfg.name)
    drivers: list[_Driver] = []  # the driver, once made (what `abandon` closes)
    guard = threading.Lock()  # held while a phase opens; `abandon` takes it for good (no phase opens after it)
    watchdog = RayletWatchdog(lambda what: abandon(cfg.name, stores, experiment_id, drivers, lease, display, what,
                                                   guard), started_here=started_ray)
    try:
        watchdog.start()  # from here on a lost raylet is one line and closed runs, lease included
        lease.acquire()  # before anything of a dead driver is closed: only the lease holder does that
        closed = tracking.close_stale_runs(stores.tracking_uri, cfg.name, experiment_id=experiment_id)
        if closed:
            echo(f"[{cfg.name}] {len(closed)} run(s) left RUNNING by an earlier driver closed as FAILED")
        ctx = StudyContext(
            study=cfg.name, kind=cfg.kind, tracking_uri=stores.tracking_uri, experiment_id=experiment_id,
            base=base_trial_config(cfg), fingerprint=identity.fingerprint, git_sha=tracking.git_sha(),
            search_metric=cfg.search.metric if cfg.search else None,
            early_stopping=cfg.kind == "comparison" and cfg.search.early_stopping is not None,
            optimizer_refs={e.name: e.ref for e in cfg.optimizers if e.ref != e.name})
        t0 = time.time()
        with tune_storage(cfg.name) as storage:
            driver = _Driver(cfg, stores, ctx, storage, echo, display, guard)
            drivers.append(driver)
            try:
                if cfg.kind == "comparison":
                    driver.run_comparison()
                else:
                    for phase in cfg.phases:
                        driver.run_planned(phase)
            except KeyboardInterrupt as exc:
                watchdog.stop()  # Ray is stopped below on purpose
                why = "SIGTERM to the driver" if terminated(exc) else str(exc) or "Ctrl-C"
                driver.phases.abort("KILLED", f"interrupted ({why})")
                if started_ray:
                    # The trials died with this driver's Ray: their runs would stay RUNNING until `resume`.
                    ray.shutdown()
                    started_ray = False
                    how = "SIGTERM to the driver" if terminated(exc) else "Ctrl-C on the driver"
                    tracking.close_stale_runs(stores.tracking_uri, cfg.name, experiment_id=experiment_id,
                                              reason=f"interrupted ({how})", status="KILLED")
                echo(f"[{cfg.name}] interrupted: the open phase and its running trials ended KILLED; finish the study "
                     f"with {resume_hint(cfg.name, stores)}")
                raise
            except BaseException as exc:
                driver.phases.abort("FAILED", f"{type(exc).__name__}: {exc}")
                raise
        where = stores.describe(searched="search" in cfg.phases)
        echo(f"[{cfg.name}] done in {time.time() - t0:.0f} s; {where} (experiment {cfg.name})")
        return driver.phases.results
    finally:
        watchdog.stop()
        lease.release()
        if started_ray:
            ray.shutdown()
        restore_sigterm()


def resume_study(name: str, *, tracking_uri: str | None = None, optuna_storage: str | None = None,
                 ray_address: str | None = None, echo: Echo = print, display=None) -> dict[str, PhaseSummary]:
    """Finish the study ``name`` as it was recorded in its MLflow store (its study file, same settings).

    Raises:
        StudyRunError: no such study in the store; and everything :func:`run_study` raises.
    """
    from .status import load_recorded_study

    stores = stores_for(None, name, tracking_uri, optuna_storage)
    check_stores(stores, needs_optuna=False)
    cfg = load_recorded_study(stores, name)
    return run_study(cfg, tracking_uri=stores.tracking_uri, optuna_storage=optuna_storage, ray_address=ray_address,
                     echo=echo, display=display)
