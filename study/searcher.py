"""The Ray Tune searcher of a study's search phase: one Tune run drives one Optuna study per optimizer
(ask-and-tell), with equal, separate budgets, and may continue with the final phase's planned trials."""

from __future__ import annotations

import math
from typing import Any, Callable

from ray.tune.search import Searcher

from .config import StudyConfig
from .plan import PlannedTrial, SearchTarget, search_trial_key
from .search import ATTR_DIVERGED, ATTR_METRIC_MISSING, ATTR_MLFLOW_RUN, make_sampler
from .spaces import to_optuna_distributions

__all__ = ["OptunaStudiesSearch"]


class _Budget:
    """One optimizer's search: its Optuna study, space, what a trial needs, and the trials left to propose."""

    def __init__(self, optimizer: str, ostudy, space: dict, target: SearchTarget, left: int):
        self.optimizer, self.ostudy, self.target, self.left = optimizer, ostudy, target, left
        self.distributions = to_optuna_distributions(space)


class OptunaStudiesSearch(Searcher):
    """A Ray Tune searcher over several Optuna studies (one per optimizer), so one Tuner runs every
    optimizer's search with equal, separate budgets: each proposal comes from the optimizer with the most
    budget left (ties in the study file's order), through Optuna's ask-and-tell interface, and its result
    goes back to that study only.

    A proposal is a Tune config ``{"trial": PlannedTrial.to_dict()}`` (phase ``search``).  Results: a finite
    metric is told COMPLETE; a non-finite one (a diverged trial) FAIL with user attr ``diverged``; a result
    without the metric FAIL with ``metric_missing``; a trial that raised FAIL.  The trial's MLflow run id
    (``mlflow_run_id`` in its results) is kept in the Optuna trial's user attrs.

    The metric is not declared to Tune (``metric=None``): a result without it is handled here, never a
    crash of the Tune run.  ``then`` (optional) continues the same Tuner with planned trials: once every
    budget is spent and every search trial has completed, ``then()`` is called once (the runner closes the
    search phase and plans the final trials) and its trials are proposed one per call, then ``FINISHED``.
    """

    def __init__(self, budgets: list[_Budget], *, study: str, metric: str, mode: str, parent_run: str,
                 then: Callable[[], list[PlannedTrial]] | None = None):
        super().__init__(metric=None, mode=None)
        self._budgets = {b.optimizer: b for b in budgets}
        self._order = [b.optimizer for b in budgets]
        self._study, self._target_metric, self._target_mode, self._parent = study, metric, mode, parent_run
        self._live: dict[str, tuple[_Budget, Any]] = {}   # Ray trial id -> (budget, optuna.Trial)
        self._then = then
        self._queue: list[PlannedTrial] | None = None
        self._ended: dict[str, tuple[_Budget, int]] = {}   # Ray trial id -> (budget, Optuna trial number)

    @classmethod
    def for_study(cls, cfg: StudyConfig, stores_url: str, fingerprint: str, pending: dict[str, int],
                  done: dict[str, int], targets: dict[str, SearchTarget], parent_run: str, then=None):
        """The searcher of ``cfg``'s search: ``pending`` {optimizer: trials left}, ``done`` {optimizer: counted
        before} (a resumed sampler gets another seed, so that it does not replay the first proposals)."""
        from .optuna_store import open_optuna_study

        s = cfg.search
        budgets = []
        for opt, left in pending.items():
            space = cfg.optimizer(opt).resolved_space()
            ostudy = open_optuna_study(stores_url, targets[opt].optuna_study_name,
                                       direction="maximize" if s.mode == "max" else "minimize",
                                       fingerprint=fingerprint, sampler=make_sampler(cfg, space, s.seed + done[opt]))
            budgets.append(_Budget(opt, ostudy, space, targets[opt], left))
        return cls(budgets, study=cfg.name, metric=s.metric, mode=s.mode, parent_run=parent_run, then=then)

    def set_search_properties(self, metric, mode, config, **spec):
        return False  # every study has its own space and metric

    def suggest(self, trial_id: str):
        live = [o for o in self._order if self._budgets[o].left > 0]
        if live:
            b = self._budgets[max(live, key=lambda o: (self._budgets[o].left, -self._order.index(o)))]
            trial = b.ostudy.ask(b.distributions)
            b.left -= 1
            self._live[trial_id] = (b, trial)
            planned = PlannedTrial(
                trial_key=search_trial_key(self._study, b.optimizer, trial.number), phase="search",
                optimizer=b.optimizer, benchmark=b.target.benchmark, seed=b.target.seed,
                hparams={**b.target.fixed_hparams, **trial.params}, optuna_trial_number=trial.number,
                optuna_study_name=b.target.optuna_study_name, parent_run=self._parent, epochs=b.target.epochs)
            return {"trial": planned.to_dict()}
        if self._live and (self._then is None or self._queue is None):
            return None  # Tune's "not ready": a running trial may yet be requeued, and the final phase needs it
        if self._then is not None and self._queue is None:
            self._queue = list(self._then())
        if self._queue:
            return {"trial": self._queue.pop(0).to_dict()}
        return self.FINISHED

    @property
    def finished(self) -> bool:
        """Every trial proposed: the budgets spent and (with ``then``) its trials handed out."""
        return not any(b.left for b in self._budgets.values()) and not self._live and (
            self._then is None or self._queue == [])

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        entry = self._live.get(trial_id)
        if entry is not None and result.get(ATTR_MLFLOW_RUN) and ATTR_MLFLOW_RUN not in entry[1].user_attrs:
            entry[1].set_user_attr(ATTR_MLFLOW_RUN, str(result[ATTR_MLFLOW_RUN]))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        from optuna.trial import TrialState

        entry = self._live.pop(trial_id, None)
        if entry is None:
            return
        b, trial = entry
        self._ended[trial_id] = (b, trial.number)
        result = result or {}
        if result.get(ATTR_MLFLOW_RUN):
            trial.set_user_attr(ATTR_MLFLOW_RUN, str(result[ATTR_MLFLOW_RUN]))
        value = result.get(self._target_metric)
        # skip_if_finished: a tell retried after a commit whose answer was lost is not an error
        if error:
            b.ostudy.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            b.ostudy.tell(trial, float(value), skip_if_finished=True)
        elif isinstance(value, (int, float)):
            trial.set_user_attr(ATTR_DIVERGED, True)
            b.ostudy.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        else:
            trial.set_user_attr(ATTR_METRIC_MISSING, self._target_metric)
            b.ostudy.tell(trial, state=TrialState.FAIL, skip_if_finished=True)

    def requeue(self, trial_id: str) -> None:
        """A search trial that failed because a store stayed unreachable, not through its own code: it does
        not count against its optimizer's budget (listed in the Optuna study's ``interrupted_trials``) and is
        proposed again, so budgets stay equal."""
        from .search import ATTR_INTERRUPTED, interrupted_numbers

        entry = self._ended.pop(trial_id, None)
        if entry is None:
            return
        b, number = entry
        b.ostudy.set_user_attr(ATTR_INTERRUPTED, sorted(interrupted_numbers(b.ostudy) | {number}))
        b.left += 1

    # The search state lives in the Optuna storage (resume reads it there), not in Tune checkpoints.
    def save(self, checkpoint_path: str) -> None:
        pass

    def restore(self, checkpoint_path: str) -> None:
        pass
