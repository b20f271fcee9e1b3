"""What runs inside a Ray Tune worker: one trial = ``workers.run_trial`` + one MLflow child run.

The function trainable :func:`trial_function` is wrapped by the runner with ``tune.with_parameters`` (the
:class:`study.plan.StudyContext`) and ``tune.with_resources``.  Its Tune config is always
``{"trial": PlannedTrial.to_dict()}`` (the search's proposals too, study/searcher.py).  Its ``report``
callback, called by ``workers.run_trial`` once per epoch, both ``tune.report()``s the epoch (for the
searcher and ASHA) and logs it to MLflow through ``tracking.TrialLogger`` (batched, ``step = epoch``).
Every result carries ``mlflow_run_id`` (the run it is logged to), and a search trial's results always
carry the search metric (NaN when the trial did not produce it), so that the searcher and the scheduler
never see a result without it.

What a trial's run shows in the MLflow UI: a short name that starts with what tells it apart
(:func:`run_name`: ``amgt seed0``, ``amgt search#3``, ``adam lr0.001 seed1``); every setting of the optimizer
it built as params ``optim.<name>`` (:func:`optimizer_settings`: the class's defaults, the registry's paper
defaults and pinned values, the trial's hyperparameters; ``hp.*`` stay the study's searched/fixed ones);
its data set as a dataset input (:func:`dataset_record`: name, content digest, split sizes); MLflow's
system metrics when ``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING`` is true (``amgt-study run --system-metrics``).

Outcomes (tracking/schema.py ``OUTCOMES``): a trial that diverges is a FINISHED run tagged
``outcome=diverged``; an exception ends the run FAILED with the error text and re-raises, so Ray Tune
retries the trial up to ``max_failures`` (each attempt is its own MLflow run, tagged ``attempt``); a trial
stopped early by ASHA is a FINISHED run tagged ``early_stopped=true``; a trial Ray Tune stopped without a
scheduler (a stop signal) is KILLED, so that ``resume`` runs it again.
"""

from __future__ import annotations

import math
import os
import traceback
from typing import Any

from .attempts import TAG_EARLY_STOPPED
from .phases import TAG_FINGERPRINT
from .plan import PlannedTrial, StudyContext
from .search import ATTR_MLFLOW_RUN

__all__ = ["trial_function", "run_name", "optimizer_settings", "dataset_record", "TAG_ATTEMPT", "TAG_EARLY_STOPPED", "TAG_RAY_NODE_ID", "TAG_OPTIMIZER_IMPL",
           "INTERRUPTED_ERROR"]

TAG_ATTEMPT = "attempt"              # 1-based attempt of a planned trial (Ray Tune retries on failure)
#: ``error`` tag of a trial run that Ray Tune stopped before it finished, without a scheduler (a stop signal).
INTERRUPTED_ERROR = "interrupted: Ray Tune stopped the trial before it finished (a stop signal)"
TAG_RAY_NODE_ID = "ray_node_id"      # the Ray node the trial ran on (multi-node clusters)
TAG_WORKER_PID = "worker_pid"        # the trial's worker process on that node (to find it in logs)
TAG_OPTIMIZER_IMPL = "optimizer_impl"  # the implementation that ran (e.g. "torch.optim.Adam(foreach)")
TAG_RESUMED = "resumed_from_run"     # set on the Tune result when a finished run was found on resume


def _numeric(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (bool, int, float))}


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _tags(ctx: StudyContext, planned: PlannedTrial) -> dict[str, str]:
    import ray
    from ray import tune

    from tracking import schema

    tags = {
        schema.TAG_STUDY: ctx.study,
        schema.TAG_PHASE: planned.phase,
        schema.TAG_ROLE: schema.ROLE_TRIAL,
        schema.TAG_KIND: ctx.kind,
        schema.TAG_OPTIMIZER: planned.optimizer,
        schema.TAG_BENCHMARK: planned.benchmark,
        schema.TAG_SEED: str(planned.seed),
        schema.TAG_RAY_TRIAL_ID: tune.get_context().get_trial_id() or "",
        schema.TAG_TRIAL_KEY: planned.trial_key,
        TAG_FINGERPRINT: ctx.fingerprint,
        TAG_RAY_NODE_ID: ray.get_runtime_context().get_node_id(),
        TAG_WORKER_PID: str(os.getpid()),
    }
    if planned.optuna_trial_number is not None:
        tags[schema.TAG_OPTUNA_TRIAL] = str(planned.optuna_trial_number)
    if planned.optuna_study_name:
        tags[schema.TAG_OPTUNA_STUDY] = planned.optuna_study_name
    if planned.source_trial is not None:
        tags["source_optuna_trial_number"] = str(planned.source_trial)
    if ctx.git_sha:
        tags[schema.TAG_GIT_SHA] = ctx.git_sha
    return tags


def run_name(study: str, planned: PlannedTrial) -> str:
    """A trial run's MLflow name: the optimizer first, then what tells its runs apart (the Optuna trial
    number in the search; the grid's lr, the problem and the seed elsewhere), e.g. ``amgt search#3``,
    ``amgt seed0``, ``adam lr0.001 seed1``, ``amgt quad-ill seed0``."""
    if planned.phase == "search" and planned.optuna_trial_number is not None:
        return f"{planned.optimizer} search#{planned.optuna_trial_number}"
    prefix = f"{study}/{planned.phase}/"
    what = planned.trial_key[len(prefix):] if planned.trial_key.startswith(prefix) else planned.trial_key
    parts = [p for p in what.split("/") if p and p != planned.optimizer]
    return " ".join([planned.optimizer, *parts])


def optimizer_settings(optimizer: str, hparams: dict[str, Any]) -> dict[str, Any]:
    """Every setting of the optimizer a trial builds, as ``optim.<name>`` params: ``torch.optim.Optimizer.defaults``
    of ``amgt.build_optimizer(optimizer, ..., **hparams)`` (built over one scalar parameter), ``optim.class`` (the
    class built) and ``optim.source`` (``amgt.OptimizerSpec.source``: built-in, ``import path torch.optim:NAdam``,
    ``entry point of <distribution> (<value>)``).  ``optimizer`` is a registry name or an import path.
    Empty when it cannot be built (the trial itself then fails with the error, recorded on its run)."""
    import torch

    import amgt
    from tracking import schema

    try:
        opt = amgt.build_optimizer(optimizer, [torch.zeros(1, requires_grad=True)], **hparams)
    except Exception:  # noqa: BLE001 - workers.run_trial raises the same error, recorded as the trial's
        return {}
    cls = type(opt)
    out = {schema.PARAM_OPTIM_PREFIX + "class": f"{cls.__module__}.{cls.__qualname__}",
           schema.PARAM_OPTIM_PREFIX + "source": amgt.get_optimizer_spec(optimizer).source}
    out.update({schema.PARAM_OPTIM_PREFIX + k: v for k, v in opt.defaults.items() if v is not None})
    return out


#: Data sets whose benchmark holds them in memory: their split sizes are counted by building the data once
#: per worker process and (benchmark, data dir, val_fraction) (``workers.data.split_indices``: the sizes do
#: not depend on the seed).  Image folders are not counted (it would index them a second time).
_COUNTED = ("digits", "MNIST", "CIFAR-10")
_SPLITS: dict[tuple, dict[str, int]] = {}


def _split_sizes(trial_cfg: dict[str, Any]) -> tuple[dict[str, int], float]:
    import torch

    from workers import get_benchmark
    from workers.train import resolve_config

    cfg = resolve_config(trial_cfg)
    key = (cfg["benchmark"], cfg.get("data_dir"), cfg.get("val_fraction"))
    if key not in _SPLITS:
        data = get_benchmark(cfg["benchmark"]).build({**cfg, "device": "cpu"}, torch.device("cpu")).data
        _SPLITS[key] = {"train": int(data.train_y.shape[0]), "validation": int(data.val_y.shape[0])}
        if data.test_y is not None:
            _SPLITS[key]["test"] = int(data.test_y.shape[0])
    return dict(_SPLITS[key]), cfg.get("val_fraction")


def dataset_record(trial_cfg: dict[str, Any]):
    """The trial's data set as a ``tracking.datasets.DatasetRecord`` (``workers.provenance.data_identity``:
    name, SHA-256 of the content, source; split sizes of the data the benchmark builds for this seed and
    ``val_fraction``), or None for benchmarks without a data set (the quadratic and function problems).

    Raises:
        FileNotFoundError, ValueError: the data is missing or corrupt (as the trial would).
    """
    from tracking.datasets import DatasetRecord
    from workers.provenance import data_identity

    identity = data_identity(trial_cfg["benchmark"], trial_cfg.get("data_dir"))
    if identity is None:
        return None
    splits: dict[str, int] = {}
    details: dict[str, Any] = {"files": len(identity.files)} if identity.files else {}
    if identity.name in _COUNTED:
        splits, val_fraction = _split_sizes(trial_cfg)
        details.update(val_fraction=val_fraction, split_seed=trial_cfg.get("seed"))
    return DatasetRecord(identity.name, identity.digest, identity.source, splits, details)


def _log_dataset(uri: str, run_id: str, trial_cfg: dict[str, Any]) -> None:
    """Best effort: a data set that cannot be described is a warning (the trial reports the data error)."""
    import logging

    from tracking.datasets import log_dataset

    try:
        record = dataset_record(trial_cfg)
        if record is not None:
            log_dataset(uri, run_id, record)
    except Exception as exc:  # noqa: BLE001
        logging.getLogger(__name__).warning("run %s: dataset input not logged: %s", run_id, exc)


def trial_function(config: dict[str, Any], ctx: StudyContext) -> None:
    """The Ray Tune function trainable of every study trial.

    Args:
        config: from Tune: ``{"trial": PlannedTrial.to_dict()}``.
        ctx: the study context (:class:`study.plan.StudyContext`).

    Raises:
        Whatever ``workers.run_trial`` raises (after the MLflow run is ended FAILED with the error text).
    """
    from ray import tune

    import tracking
    import workers

    planned = PlannedTrial.from_dict(config["trial"])
    tracking.expect_reachable(ctx.tracking_uri)  # the driver reached it: an outage now is waited out
    parent = planned.parent_run or ctx.parent_runs[planned.phase]
    trial_cfg = {**ctx.base, "benchmark": planned.benchmark, "optimizer": ctx.optimizer_ref(planned.optimizer),
                 "hparams": dict(planned.hparams), "seed": int(planned.seed)}
    if planned.epochs is not None:
        trial_cfg["epochs"] = planned.epochs  # search.epochs: a shorter search
    tags = _tags(ctx, planned)
    tags[TAG_ATTEMPT] = str(_attempt(ctx, planned.trial_key))
    params = {**tracking.trial_params(trial_cfg), **optimizer_settings(trial_cfg["optimizer"], dict(planned.hparams))}
    logger = tracking.TrialLogger(ctx.tracking_uri, ctx.experiment_id, parent, trial_key=planned.trial_key,
                                  tags=tags, params=params, run_name=run_name(ctx.study, planned))
    search_metric = ctx.search_metric if planned.phase == "search" else None

    def complete(metrics: dict[str, float], run_id: str) -> dict[str, Any]:
        out: dict[str, Any] = dict(metrics)
        if search_metric and search_metric not in out:
            out[search_metric] = math.nan
        out[ATTR_MLFLOW_RUN] = run_id
        return out

    previous = logger.existing()
    if previous is not None:
        # Resume: this planned trial already has a finished run; report its final metrics, start no new run.
        tune.report({**complete(_numeric(previous.get("metrics", {})), previous["run_id"]), TAG_RESUMED: 1.0})
        return

    run_id = logger.start()
    _log_dataset(ctx.tracking_uri, run_id, trial_cfg)
    planned_epochs = ctx.epochs_of(planned)
    best = {"val_accuracy": -math.inf}
    last: dict[str, Any] = {}
    held: dict[str, Any] = {}  # the last planned epoch's result, reported once the run is closed

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
        if 0 < planned_epochs <= epoch:
            # Held back until this worker has closed its run: Ray Tune ends a trial (ASHA says STOP at max_t,
            # a completed function returns) without waiting for the worker's thread, so a run still being
            # closed when Tune sees the last result would be cut off mid-write.
            held.update(complete(nums, run_id))
            return
        tune.report(complete(nums, run_id))  # SystemExit here: the scheduler stopped the trial (below)

    try:
        result = workers.run_trial(trial_cfg, report=report)
    except SystemExit:
        if planned.phase == "search" and ctx.early_stopping:
            # Ray Tune stops a trial the scheduler (ASHA) cut short by exiting its training thread.
            logger.client.set_tag(run_id, TAG_EARLY_STOPPED, "true")
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
    if result.get("optimizer_impl"):
        logger.client.set_tag(run_id, TAG_OPTIMIZER_IMPL, str(result["optimizer_impl"]))
    logger.finish(result, outcome=outcome, config=trial_cfg)
    if held:
        _report_last(held)
    elif not last:
        # Nothing was reported per epoch (e.g. diverged before the first epoch ended): give Tune a result.
        final = _numeric({k: v for k, v in result.items() if k != "history"})
        _report_last(complete({**final, "diverged": float(outcome == "diverged")}, run_id))


def _report_last(result: dict[str, Any]) -> None:
    """Report a trial's last result after its run is closed.  The scheduler may answer STOP (ASHA at
    max_t): Ray Tune then ends the thread with SystemExit, which is the end of this trial anyway."""
    from ray import tune

    try:
        tune.report(result)
    except SystemExit:
        pass


def _attempt(ctx: StudyContext, trial_key: str) -> int:
    """1 + the runs of this planned trial that ended unfinished (earlier attempts: retried or interrupted)."""
    import tracking
    from tracking.search import run_filter, search_runs

    client = tracking.get_client(ctx.tracking_uri)
    return 1 + sum(len(search_runs(client, [ctx.experiment_id], run_filter(trial_key=trial_key, status=s)))
                   for s in ("FAILED", "KILLED"))
