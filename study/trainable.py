"""What runs inside a Ray Tune worker: one trial = ``workers.run_trial`` + one MLflow child run.

The function trainable :func:`trial_function` is wrapped by the runner with ``tune.with_parameters`` (the
study-wide context: tracking URI, experiment and parent-run ids, the base trial config) and
``tune.with_resources``.  Its ``report`` callback, called by ``workers.run_trial`` once per epoch, both
``tune.report()``s the epoch (for OptunaSearch and ASHA) and logs it to MLflow through
``tracking.TrialLogger`` (batched, ``step = epoch``).

Outcomes (tracking/schema.py ``OUTCOMES``): a trial that diverges is a FINISHED run tagged
``outcome=diverged``; an exception ends the run FAILED with the error text and re-raises, so Ray Tune
retries the trial up to ``max_failures`` (each attempt is its own MLflow run, tagged ``attempt``); a trial
stopped early by ASHA is a FINISHED run tagged ``early_stopped=true``.
"""

from __future__ import annotations

import math
import os
import traceback
from typing import Any

__all__ = ["trial_function", "search_trial_key", "OPTIMIZER_KEY", "TAG_ATTEMPT", "TAG_EARLY_STOPPED", "TAG_RAY_NODE_ID", "OPTUNA_KEY",
           "INTERRUPTED_ERROR"]

TAG_ATTEMPT = "attempt"              # 1-based attempt of a planned trial (Ray Tune retries on failure)
TAG_EARLY_STOPPED = "early_stopped"  # "true" when the scheduler (ASHA) stopped the trial
#: ``error`` tag of a trial run that Ray Tune stopped before it finished, without a scheduler (a stop signal).
INTERRUPTED_ERROR = "interrupted: Ray Tune stopped the trial before it finished (a stop signal)"
TAG_RAY_NODE_ID = "ray_node_id"      # the Ray node the trial ran on (multi-node clusters)
TAG_WORKER_PID = "worker_pid"        # the trial's worker process on that node (to find it in logs)
TAG_RESUMED = "resumed_from_run"     # set on the Tune result when a finished run was found on resume
OPTUNA_KEY = "_optuna_trial_number"  # injected into the search config by the runner's OptunaSearch
OPTIMIZER_KEY = "_optimizer"         # which optimizer's Optuna study proposed a search config


def _numeric(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if isinstance(v, bool):
            out[k] = float(v)
        elif isinstance(v, (int, float)):
            out[k] = float(v)
    return out


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def resolve_planned(config: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]:
    """The planned trial for this Tune config: a grid entry (``config["trial"]``) or an Optuna suggestion.

    ``parent_run`` is the MLflow parent run of the trial's phase: the planned entry's own (the runner puts
    it there: a final phase's parent run may be opened while the Tuner that runs it is already going), else
    ``ctx["parent_runs"][phase]`` (shipped to the workers when the Tuner started).
    """
    if "trial" in config:
        planned = dict(config["trial"])
    else:
        number = int(config[OPTUNA_KEY])
        optimizer = config[OPTIMIZER_KEY]
        info = ctx["search"][optimizer]
        sampled = {k: v for k, v in config.items() if k not in (OPTUNA_KEY, OPTIMIZER_KEY)}
        planned = {
            "trial_key": search_trial_key(ctx["study"], optimizer, number),
            "phase": "search",
            "optimizer": optimizer,
            "benchmark": info["benchmark"],
            "seed": info["seed"],
            "hparams": {**info["fixed_hparams"], **sampled},
            "optuna_trial_number": number,
            "optuna_study_name": info["optuna_study_name"],
        }
    if not planned.get("parent_run"):
        planned["parent_run"] = ctx["parent_runs"][planned["phase"]]
    return planned


def search_trial_key(study: str, optimizer: str, number: int) -> str:
    """The stable key of a search trial: its Optuna study (study, optimizer) and trial number."""
    return f"{study}/search/{optimizer}/{number}"


def trial_function(config: dict[str, Any], ctx: dict[str, Any]) -> None:
    """The Ray Tune function trainable of every study trial.

    Args:
        config: from Tune: ``{"trial": planned}`` (grid and final phases; ``planned["parent_run"]``: its
            phase's parent run) or the sampled hyperparameters plus ``_optuna_trial_number`` (search phase).
        ctx: study context built by the runner (``tracking_uri``, ``experiment_id``, ``parent_runs``
            {phase: run_id} of the phases open when the Tuner started, ``base`` trial-config keys, ``study``,
            ``kind``, ``git_sha``, ...).

    Raises:
        Whatever ``workers.run_trial`` raises (after the MLflow run is ended FAILED with the error text).
    """
    import ray
    from ray import tune

    import tracking
    import workers
    from tracking import schema

    planned = resolve_planned(config, ctx)
    phase = planned["phase"]
    trial_cfg = {
        **ctx["base"],
        "benchmark": planned["benchmark"],
        "optimizer": planned["optimizer"],
        "hparams": dict(planned["hparams"]),
        "seed": int(planned["seed"]),
    }
    tune_ctx = tune.get_context()
    ray_trial_id = tune_ctx.get_trial_id() or ""
    tags = {
        schema.TAG_STUDY: ctx["study"],
        schema.TAG_PHASE: phase,
        schema.TAG_ROLE: schema.ROLE_TRIAL,
        schema.TAG_KIND: ctx["kind"],
        schema.TAG_OPTIMIZER: planned["optimizer"],
        schema.TAG_BENCHMARK: planned["benchmark"],
        schema.TAG_SEED: str(planned["seed"]),
        schema.TAG_RAY_TRIAL_ID: ray_trial_id,
        schema.TAG_TRIAL_KEY: planned["trial_key"],
        TAG_RAY_NODE_ID: ray.get_runtime_context().get_node_id(),
        TAG_WORKER_PID: str(os.getpid()),
    }
    if planned.get("optuna_trial_number") is not None:
        tags[schema.TAG_OPTUNA_TRIAL] = str(planned["optuna_trial_number"])
    if planned.get("optuna_study_name"):
        tags[schema.TAG_OPTUNA_STUDY] = planned["optuna_study_name"]
    if planned.get("source_trial"):
        tags["source_optuna_trial_number"] = str(planned["source_trial"])
    if ctx.get("git_sha"):
        tags[schema.TAG_GIT_SHA] = ctx["git_sha"]

    tags[TAG_ATTEMPT] = str(_attempt(ctx, planned["trial_key"]))
    logger = tracking.TrialLogger(
        ctx["tracking_uri"], ctx["experiment_id"], planned["parent_run"],
        trial_key=planned["trial_key"], tags=tags, params=tracking.trial_params(trial_cfg),
    )
    previous = logger.existing()
    if previous is not None:
        # Resume: this planned trial already has a finished run; report its final metrics, start no new run.
        metrics = _numeric(previous.get("metrics", {})) if isinstance(previous, dict) else {}
        tune.report({**metrics, TAG_RESUMED: 1.0})
        return

    logger.start()
    planned_epochs = int(trial_cfg.get("epochs") or 0)
    best = {"val_accuracy": -math.inf}
    last: dict[str, Any] = {}

    def report(metrics: dict[str, Any]) -> None:
        epoch = int(metrics["epoch"])
        nums = _numeric(metrics)
        logger.log_epoch(nums, epoch)
        if _finite(nums.get("val_accuracy")):
            best["val_accuracy"] = max(best["val_accuracy"], nums["val_accuracy"])
        if math.isfinite(best["val_accuracy"]):
            nums["best_val_accuracy"] = best["val_accuracy"]
        last.clear()
        last.update(nums)
        try:
            tune.report(nums)
        except SystemExit:
            # Ray Tune ends a trial's thread with SystemExit when the scheduler says STOP. ASHA also says STOP
            # at max_t, the last epoch: then let run_trial finish and return its final metrics.
            if epoch < planned_epochs:
                raise

    try:
        result = workers.run_trial(trial_cfg, report=report)
    except SystemExit:
        if phase == "search" and ctx.get("early_stopping"):
            # Ray Tune stops a trial the scheduler (ASHA) cut short by exiting its training thread.
            logger.client.set_tag(logger.run_id, TAG_EARLY_STOPPED, "true")
            logger.finish({**last, "status": "completed"}, outcome="completed", config=trial_cfg)
        else:
            # No scheduler: Ray Tune stopped the whole experiment (SIGUSR1, or SIGINT with its own handler).
            # The trial did not finish: KILLED, so that `resume` runs it again; the driver then stops.
            logger.finish(dict(last), outcome="failed", error=INTERRUPTED_ERROR, config=trial_cfg, killed=True)
        raise
    except BaseException as exc:  # noqa: BLE001 - recorded, then re-raised for Ray's retry
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        logger.finish(None, outcome="failed", error=f"{text}\n{traceback.format_exc()[-4000:]}", config=trial_cfg)
        raise
    status = result.get("status", "completed")
    outcome = status if status in ("completed", "diverged") else "completed"
    logger.finish(result, outcome=outcome, config=trial_cfg)
    if not last:
        # Nothing was reported per epoch (e.g. diverged before the first epoch ended): give Tune a result.
        tune.report({**_numeric({k: v for k, v in result.items() if k != "history"}), "diverged": float(outcome == "diverged")})


def _attempt(ctx: dict[str, Any], trial_key: str) -> int:
    """1 + the number of FAILED runs of this planned trial (earlier attempts Ray Tune retried)."""
    from tracking import schema
    from tracking.runs import _quote, search_all_runs
    from tracking.store import get_client

    flt = f"tags.{schema.TAG_TRIAL_KEY} = {_quote(trial_key)} and attributes.status = 'FAILED'"
    return 1 + len(search_all_runs(get_client(ctx["tracking_uri"]), [ctx["experiment_id"]], flt))
