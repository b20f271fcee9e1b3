"""The search phase's Optuna side: samplers, trials a dead driver left running, the trials that count
against the budget, and the best configuration of each optimizer (the Ray Tune searcher that drives the
Optuna studies is study/searcher.py).

Every Optuna call is a public one: ``Study.ask`` / ``Study.tell`` (ask-and-tell), ``Trial.set_user_attr``,
``Study.set_user_attr``, ``Study.get_trials``.

Budget rules (equal budgets, docs/studies.md): each optimizer gets ``search.trials_per_optimizer`` trials.
A trial counts against it when it COMPLETEs, is PRUNED, diverges or fails in the trial's own code; a trial
interrupted by a dead driver (marked in the Optuna study's user attribute ``interrupted_trials``) does not,
and is replaced on resume.

Selection: the best COMPLETE trial by the search metric (max or min); ties go to the lowest trial number
(the earliest proposal), so the choice is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .config import StudyConfig
from .spaces import grid_values

__all__ = [
    "BestTrial",
    "make_sampler",
    "startup_trials",
    "settle_interrupted",
    "recorded_best",
    "counted_trials",
    "interrupted_numbers",
    "best_trial",
    "ATTR_INTERRUPTED",
    "ATTR_DIVERGED",
    "ATTR_METRIC_MISSING",
    "ATTR_MLFLOW_RUN",
]

ATTR_INTERRUPTED = "interrupted_trials"   # study user attr: trial numbers a dead driver left running
ATTR_DIVERGED = "diverged"                # trial user attr: the metric was not finite
ATTR_METRIC_MISSING = "metric_missing"    # trial user attr: the result did not carry the search metric
ATTR_MLFLOW_RUN = "mlflow_run_id"         # trial user attr: the MLflow run that holds the trial
TPE_DEFAULT_STARTUP = 10                  # optuna.samplers.TPESampler's n_startup_trials default


@dataclass(frozen=True)
class BestTrial:
    """An optimizer's chosen configuration: the searched ``params``, the Optuna trial ``number`` (None when
    nothing was searched) and its metric ``value``."""

    params: dict[str, Any]
    number: int | None
    value: float | None


def startup_trials(cfg: StudyConfig) -> int:
    """How many of each optimizer's search trials are random start-up trials before the sampler models the
    results (TPE: ``search.n_startup_trials``, Optuna's default 10, capped by the budget; random/grid/QMC:
    every trial is space-filling, so all of them)."""
    s = cfg.search
    if s.sampler != "tpe":
        return s.trials_per_optimizer
    n = s.n_startup_trials if s.n_startup_trials is not None else TPE_DEFAULT_STARTUP
    return min(n, s.trials_per_optimizer)


def make_sampler(cfg: StudyConfig, space: dict, seed: int):
    """The Optuna sampler named by ``search.sampler`` (TPE default; random, grid, QMC)."""
    import optuna

    s = cfg.search
    if s.sampler == "tpe":
        kwargs = {} if s.n_startup_trials is None else {"n_startup_trials": s.n_startup_trials}
        return optuna.samplers.TPESampler(seed=seed, **kwargs)
    if s.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True)
    from .grid_sampler import AskTellGridSampler

    grid = {name: grid_values(dim, s.grid_points) for name, dim in space.items()}
    return AskTellGridSampler(grid, seed=seed)


def interrupted_numbers(ostudy) -> set[int]:
    """Trial numbers a dead driver left running (replaced on resume, not counted against the budget)."""
    return set(ostudy.user_attrs.get(ATTR_INTERRUPTED, []))


def settle_interrupted(ostudy, finished: dict[int, dict[str, float]], metric: str) -> tuple[int, int]:
    """Settle the trials a dead driver left RUNNING (or WAITING) in an Optuna study.

    A trial whose MLflow run FINISHED before the driver died (``finished``: {trial number: final metrics})
    is told COMPLETE with that run's ``metric``, so its result is neither lost nor re-run; any other is told
    FAIL and recorded in the study's ``interrupted_trials`` (replaced on resume).

    Returns:
        (recovered, interrupted) counts.
    """
    from optuna.trial import TrialState

    recovered, interrupted = 0, []
    for t in ostudy.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        value = finished.get(t.number, {}).get(metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            ostudy.tell(t.number, float(value))
            recovered += 1
        else:
            ostudy.tell(t.number, state=TrialState.FAIL)
            interrupted.append(t.number)
    if interrupted:
        ostudy.set_user_attr(ATTR_INTERRUPTED, sorted(interrupted_numbers(ostudy) | set(interrupted)))
    return recovered, len(interrupted)


def counted_trials(ostudy) -> list:
    """The trials that used the budget: COMPLETE, PRUNED, and FAIL unless interrupted."""
    from optuna.trial import TrialState

    skip = interrupted_numbers(ostudy)
    return [t for t in ostudy.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (t.state == TrialState.FAIL and t.number not in skip)]


def recorded_best(storage: str, study: str, optimizer: str, mode: str) -> BestTrial | None:
    """The best COMPLETE trial of ``optimizer``'s Optuna study in ``storage`` (:func:`best_trial`), or None when
    that study does not exist or completed none.

    Raises:
        what the storage raises when it cannot be read.
    """
    from .optuna_store import load_optuna_study
    from .plan import optuna_study_name

    ostudy = load_optuna_study(storage, optuna_study_name(study, optimizer))
    return best_trial(ostudy, mode) if ostudy is not None else None


def best_trial(ostudy, mode: str) -> BestTrial | None:
    """The best COMPLETE trial (``mode`` ``"max"``/``"min"``; ties: the lowest number), or None."""
    from optuna.trial import TrialState

    done = [t for t in ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None and math.isfinite(t.value)]
    if not done:
        return None
    sign = -1.0 if mode == "max" else 1.0
    t = min(done, key=lambda t: (sign * t.value, t.number))
    return BestTrial(dict(t.params), t.number, float(t.value))
