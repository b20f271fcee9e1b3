"""A study's phases as MLflow parent runs, and the count of each phase's planned trials.

One parent run per (study, phase) (``tracking.start_parent_run``), holding the validated study file
(``study.yaml``), the fairness record (``fairness.json``), the study's fingerprint and the protocol's seeds
as params, the study's description and what the phase does as its MLflow note (``mlflow.note.content``);
every trial run is its nested child.  When a phase closes, its parent run gets the phase's summary metrics
(study/summary.py: per optimizer the mean, sd and 95 % interval of the final metrics, trials, failures);
the chosen configurations are params ``best.<optimizer>.<hparam>`` and ``best_configurations.json``.  :class:`Phases` opens, closes and aborts them, one open
at a time.  :func:`tally` counts a phase's planned trials from MLflow with the one rule of
``tracking.search.latest_attempts``: a trial is its FINISHED run if it has one, else its latest attempt.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from .config import StudyConfig
from .errors import one_line
from .loading import dump_study
from .plan import StudyContext, format_value, search_seed
from .stores import Stores

__all__ = ["PhaseSummary", "Phases", "tally", "finished_keys", "interrupted_since", "parent_params", "phase_note",
           "TAG_FINGERPRINT"]

TAG_FINGERPRINT = "study_fingerprint"   # on every parent and trial run: the study's identity
_log = logging.getLogger(__name__)


@dataclass
class PhaseSummary:
    """Trials of one phase per optimizer.

    ``planned``: trials planned; ``finished``: planned trials with a result (a FINISHED run: completed,
    early-stopped or diverged); ``diverged``: of those, diverged; ``failed``: trials whose every attempt
    failed; ``interrupted``: trials whose latest attempt was interrupted (KILLED: ``resume`` runs them);
    ``attempts``: the MLflow runs (attempts) of the failed trials; ``not_run``: optimizers skipped (``final``
    without a completed search trial); ``launched``: Ray trials started by this driver.
    """

    phase: str
    planned: dict[str, int] = field(default_factory=dict)
    finished: dict[str, int] = field(default_factory=dict)
    launched: int = 0
    diverged: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    interrupted: dict[str, int] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    not_run: set[str] = field(default_factory=set)

    @property
    def missing(self) -> int:
        """Planned trials without a result."""
        return sum(max(0, n - self.finished.get(opt, 0)) for opt, n in self.planned.items())

    @property
    def rerunnable(self) -> int:
        """Missing trials that ``resume`` runs again: interrupted ones, and failed trials outside the search (a
        failed search trial has used its share of the budget; an optimizer in ``not_run`` has no completed
        search trial to re-run)."""
        if self.phase == "search":
            return sum(self.interrupted.values())
        return sum(max(0, n - self.finished.get(opt, 0)) for opt, n in self.planned.items() if opt not in self.not_run)


def _trial_runs(ctx: StudyContext, phase: str, **conditions):
    import tracking
    from tracking import schema
    from tracking.search import run_filter, search_runs

    flt = run_filter(study=ctx.study, phase=phase, role=schema.ROLE_TRIAL, **conditions)
    return search_runs(tracking.get_client(ctx.tracking_uri), [ctx.experiment_id], flt)


def finished_keys(ctx: StudyContext, phase: str) -> set[str]:
    """Trial keys of the phase with a FINISHED run (resume skips them)."""
    from tracking import schema

    return {r.data.tags.get(schema.TAG_TRIAL_KEY) for r in _trial_runs(ctx, phase, status="FINISHED")}


def tally(ctx: StudyContext, phase: str, keys: dict[str, list[str]], summary: PhaseSummary) -> None:
    """Fill ``summary``'s finished/diverged/failed/interrupted/attempts for ``keys`` ({optimizer: planned
    trial keys}); a trial still RUNNING counts in none of them."""
    from tracking import schema
    from tracking.search import attempts_by_key, latest_attempts

    runs = _trial_runs(ctx, phase)
    latest, attempts = latest_attempts(runs), attempts_by_key(runs)
    for opt, ks in keys.items():
        fin = div = failed = interrupted = n_attempts = 0
        for k in ks:
            run = latest.get(k)
            if run is None:
                failed += 1
            elif run.info.status == "FINISHED":
                fin += 1
                div += run.data.tags.get(schema.TAG_OUTCOME) == "diverged"
            elif run.info.status == "KILLED":
                interrupted += 1
            elif run.info.status != "RUNNING":
                failed += 1
                n_attempts += len(attempts.get(k, []))
        summary.finished[opt], summary.diverged[opt] = fin, div
        summary.failed[opt], summary.interrupted[opt], summary.attempts[opt] = failed, interrupted, n_attempts


def interrupted_since(ctx: StudyContext, since_ms: int) -> int:
    """Trial runs started since ``since_ms`` that Ray Tune stopped unfinished (a stop signal)."""
    import tracking
    from tracking import schema
    from tracking.search import run_filter, search_runs

    from .trainable import INTERRUPTED_ERROR

    flt = run_filter(study=ctx.study, role=schema.ROLE_TRIAL, status="KILLED", started_since_ms=since_ms)
    runs = search_runs(tracking.get_client(ctx.tracking_uri), [ctx.experiment_id], flt)
    return sum(r.data.tags.get(schema.TAG_ERROR) == INTERRUPTED_ERROR for r in runs)


def parent_params(cfg: StudyConfig, base: dict[str, Any]) -> dict[str, Any]:
    """The parent runs' params: the protocol as run (the seeds used by the search and by the final runs)."""
    params: dict[str, Any] = {
        "benchmark": cfg.benchmark, "epochs": base.get("epochs"), "batch_size": base.get("batch_size"),
        "max_steps": cfg.max_steps, "seeds": cfg.seeds, "seed_start": cfg.seed_start,
        "final_seeds": ",".join(str(s) for s in cfg.seed_values),
        "optimizers": ",".join(o.name for o in cfg.optimizers),
        "cpus_per_trial": cfg.resources.cpus, "gpus_per_trial": cfg.resources.gpus,
        "max_failures": cfg.max_failures,
    }
    if cfg.search is not None:
        from .search import startup_trials

        params.update({"sampler": cfg.search.sampler, "trials_per_optimizer": cfg.search.trials_per_optimizer,
                       "n_startup_trials": startup_trials(cfg), "search_seed": search_seed(cfg),
                       "search_epochs": cfg.search.epochs or base.get("epochs"),
                       "metric": cfg.search.metric, "mode": cfg.search.mode,
                       "early_stopping": cfg.search.early_stopping.type if cfg.search.early_stopping else "none"})
    if cfg.sensitivity is not None:
        params["lr_grid"] = ",".join(format_value(v) for v in cfg.sensitivity.values())
    return {k: v for k, v in params.items() if v is not None}


def _study_note(cfg: StudyConfig) -> str:
    """The study's description, or one line saying what it is."""
    text = " ".join((cfg.description or "").split())
    return text or (f"amgt-study {cfg.kind} study on {', '.join(cfg.benchmarks)}: "
                    f"{', '.join(o.name for o in cfg.optimizers)}")


def phase_note(cfg: StudyConfig, phase: str) -> str:
    """One line saying what a phase runs (the parent run's note in the MLflow UI)."""
    seeds = f"{cfg.seeds} seed{'s' * (cfg.seeds != 1)}"
    if phase == "search":
        s = cfg.search
        return (f"each optimizer's search space tuned with {s.trials_per_optimizer} Optuna trials ({s.sampler}), "
                f"selected on {s.metric} ({s.mode}); one training seed for every search trial.")
    if phase == "final":
        return f"the best search configuration of each optimizer re-run over {seeds} it never saw in the search."
    if phase == "grid":
        return f"every optimizer at each learning rate of the grid, over {seeds}."
    if phase == "ablation":
        return f"each listed optimizer with fixed hyperparameters, over {seeds}."
    return f"the listed optimizers on the quadratic and function problems, over {seeds}."


def _quadratic_facts() -> dict[str, Any]:
    from workers.quadratic import study_facts

    return study_facts()


class Phases:
    """The phases of a study as MLflow parent runs, one open at a time: :meth:`open` starts (on resume:
    reopens) a phase's parent run, :meth:`close` ends it FINISHED, :meth:`abort` ends the open one FAILED or
    KILLED (and never raises: the first error is the one the user sees).

    ``guard`` (a lock the caller may share) is held while a phase's parent run is started and recorded as the
    open one: whoever takes it sees no parent run half-opened, and while it is held no phase opens (the
    driver's lost-node path, study/runner.py, takes it for good before it closes the open phase)."""

    def __init__(self, cfg: StudyConfig, stores: Stores, ctx: StudyContext, guard: threading.Lock | None = None):
        import tracking

        self.cfg, self.stores, self.ctx = cfg, stores, ctx
        self.guard = guard or threading.Lock()
        tracking.mark_training_experiment(stores.tracking_uri, ctx.experiment_id, _study_note(cfg))
        self.params = parent_params(cfg, ctx.base)
        self.tags = {**tracking.provenance_tags(include_device=False), TAG_FINGERPRINT: ctx.fingerprint,
                     "optuna_storage": tracking.mask_uri(stores.optuna_storage) if stores.optuna_storage else ""}
        self.artifacts = {"study.yaml": dump_study(cfg), "fairness.json": cfg.fairness()}
        self.summaries: dict[str, PhaseSummary] = {}
        self.closed: list[str] = []
        self.current: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Ray Tune pickles the searcher, whose ``then`` refers to the driver and so to its phases: a copy gets a
        # lock of its own (a lock cannot be pickled; a copy never opens a phase of this driver).
        return {k: v for k, v in self.__dict__.items() if k != "guard"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, guard=threading.Lock())

    def open(self, phase: str) -> PhaseSummary:
        import tracking

        artifacts = dict(self.artifacts)
        if phase == "quadratic":
            artifacts["quadratic_facts.json"] = _quadratic_facts()
        from tracking import schema

        tags = {**self.tags, schema.TAG_NOTE: f"{_study_note(self.cfg)}\n\n**{phase}**: {phase_note(self.cfg, phase)}"}
        with self.guard:
            self.ctx.parent_runs[phase] = tracking.start_parent_run(
                self.stores.tracking_uri, self.ctx.experiment_id, study=self.cfg.name, phase=phase,
                kind=self.cfg.kind, params=self.params, tags=tags, artifacts=artifacts)
            self.current = phase
        self.summaries[phase] = PhaseSummary(phase)
        return self.summaries[phase]

    def close(self, phase: str) -> PhaseSummary:
        import tracking

        self.log_summary(phase)
        tracking.end_parent_run(self.stores.tracking_uri, self.ctx.parent_runs[phase], "FINISHED")
        self.current = None
        self.closed.append(phase)
        return self.summaries[phase]

    def log_summary(self, phase: str) -> None:
        """Log the phase's summary metrics on its parent run (study/summary.py); a failure is a warning."""
        import tracking

        from .summary import phase_results, summary_metrics

        s = self.cfg.search
        try:
            groups = phase_results(self.stores.tracking_uri, self.ctx.experiment_id, self.cfg.name, phase,
                                   metric=s.metric if s and phase == "search" else None, mode=s.mode if s else "max")
            tracking.log_summary(self.stores.tracking_uri, self.ctx.parent_runs[phase], summary_metrics(groups))
        except Exception as exc:  # noqa: BLE001 - the trials' runs hold the results; the summary is a view
            _log.warning("phase %s: summary metrics not logged on its parent run: %s", phase, one_line(exc))

    def record_best(self, best: dict[str, Any]) -> None:
        """The chosen configuration of each optimizer (``{optimizer: study.search.BestTrial}``): the
        ``best_configurations.json`` artifact of the final parent run, and params ``best.<optimizer>.<hparam>``
        on the search and final parent runs."""
        import tracking

        from .summary import best_params

        uri = self.stores.tracking_uri
        tracking.log_artifacts(uri, self.ctx.parent_runs["final"], {
            "best_configurations.json": {o: {"hparams": b.params, "number": b.number, "value": b.value}
                                         for o, b in best.items()}})
        for phase in ("search", "final"):
            if phase in self.ctx.parent_runs:
                tracking.log_summary(uri, self.ctx.parent_runs[phase], params=best_params(best))

    def abort(self, status: str, error: str) -> None:
        import tracking

        if self.current is None:
            return
        try:
            tracking.end_parent_run(self.stores.tracking_uri, self.ctx.parent_runs[self.current], status, error=error)
        except Exception as exc:  # noqa: BLE001 - the store may be what failed; resume closes it
            _log.warning("could not end the parent run of phase %s: %s", self.current, one_line(exc))
        self.current = None

    @property
    def results(self) -> dict[str, PhaseSummary]:
        """The phases closed, in order."""
        return {p: self.summaries[p] for p in self.closed}
