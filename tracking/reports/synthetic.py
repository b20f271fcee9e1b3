"""Synthetic studies written to MLflow exactly as ``tracking/schema.py`` lays them out.

For the reports' tests and ``benchmarks/tracking_scale.py`` only: the numbers are drawn from simple models
chosen by the caller (an accuracy, a time per epoch, ...), so a test can construct the data behind each
verdict, and a benchmark can fill a store with 10,000 runs quickly. The reports never call this module.
Runs are written through the public ``MlflowClient`` (``create_run``, ``log_batch``, ``log_text``,
``set_terminated``), so what is read back is what a real study leaves in MLflow.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from tracking import schema
from tracking.store import get_or_create_experiment

__all__ = ["Effect", "log_trial", "start_parent", "write_study", "trial_history"]


@dataclass
class Effect:
    """How one optimizer behaves in a synthetic study.

    accuracy: mean final test accuracy (fraction in [0, 1]); accuracy_sd: its spread over seeds.
    epoch_time_s: time per epoch (s); state_bytes: optimizer-state bytes; peak_memory_bytes: bytes.
    oscillation: mean per-epoch loss oscillation; loss_rate: per-epoch decay rate of the training loss.
    lr_best / lr_width: for grid studies, accuracy falls by ``(log10(lr/lr_best)/lr_width)²`` points.
    diverge_seeds / fail_seeds: seeds whose run ends diverged / failed.
    seed_accuracy: {seed: exact final accuracy} (overrides the drawn one; e.g. a seed-invariant optimizer).
    absolute_oscillation: when set, loss_oscillation = absolute_oscillation / train_loss (the same absolute
    noise at every loss level: the relative measure then rewards a higher loss).
    val_noise: sd of the per-epoch validation accuracy around its curve.
    """

    accuracy: float = 0.98
    accuracy_sd: float = 0.002
    epoch_time_s: float = 1.0
    state_bytes: int = 80_000
    peak_memory_bytes: int = 50_000_000
    oscillation: float = 0.10
    loss_rate: float = 0.5
    lr_best: float = 1e-3
    lr_width: float = 1.0
    diverge_seeds: tuple = ()
    fail_seeds: tuple = ()
    extra: dict = field(default_factory=dict)
    seed_accuracy: dict = field(default_factory=dict)
    absolute_oscillation: float | None = None
    val_noise: float = 0.002


def trial_history(effect: Effect, seed: int, epochs: int, *, accuracy: float | None = None,
                  diverged: bool = False, stream: int = 0) -> list[dict]:
    """Per-epoch metric dicts (keys from ``schema.METRICS_EPOCH`` plus ``epoch``), deterministic in seed.
    ``stream``: an independent noise stream (``write_study`` gives each optimizer its own, so paired
    differences between optimizers are not artificially noise-free)."""
    rng = np.random.default_rng([seed * 7919 + int(effect.epoch_time_s * 1000) % 7919, stream])
    acc = effect.accuracy + effect.accuracy_sd * rng.standard_normal() if accuracy is None else accuracy
    if accuracy is None and seed in effect.seed_accuracy:
        acc = effect.seed_accuracy[seed]
    acc = float(min(acc, 1.0))
    rows = []
    for e in range(1, epochs + 1):
        frac = 1.0 - math.exp(-effect.loss_rate * e)
        loss = 2.3 * math.exp(-effect.loss_rate * e) + 0.02 * rng.random()
        row = {
            "epoch": e,
            "train_loss": loss,
            "val_loss": loss * 1.1 + 0.01 * rng.random(),
            "val_accuracy": min(1.0, acc * frac + effect.val_noise * rng.standard_normal()),
            "test_accuracy": acc if e == epochs else min(1.0, acc * frac),
            "test_loss": loss * 1.1,
            "epoch_time_s": effect.epoch_time_s * (1.0 + 0.02 * rng.standard_normal()),
            "steps": 100.0 * e,
            "samples_per_s": 128 * 100 / effect.epoch_time_s,
            "grad_norm_mean": 2.0 * math.exp(-0.7 * e) + 0.01,
            "grad_norm_std": 0.5 * math.exp(-0.3 * e) + 0.01 * rng.random(),
            "loss_oscillation": max(0.0, (effect.oscillation if effect.absolute_oscillation is None
                                          else effect.absolute_oscillation / loss)
                                    * (1.0 + 0.05 * rng.standard_normal())),
            "optimizer_state_bytes": float(effect.state_bytes),
            "peak_memory_bytes": float(effect.peak_memory_bytes),
        }
        if diverged and e == epochs:
            # as workers.train does: a diverged classification run has no loss or accuracy at its last epoch
            row.update(train_loss=math.nan, val_loss=math.nan, val_accuracy=math.nan, test_accuracy=math.nan,
                       test_loss=math.nan)
        rows.append(row)
    return rows


def start_parent(client: MlflowClient, experiment_id: str, *, study: str, phase: str, kind: str,
                 tags: Mapping[str, str] | None = None) -> str:
    """A parent run for (study, phase), tagged as the study runner tags it; left RUNNING."""
    run = client.create_run(experiment_id, run_name=f"{study}/{phase}", tags={
        schema.TAG_ROLE: schema.ROLE_PARENT, schema.TAG_STUDY: study, schema.TAG_PHASE: phase,
        schema.TAG_KIND: kind, schema.TAG_GIT_SHA: "0" * 40, schema.TAG_DEVICE: "cpu",
        "version.mlflow": "synthetic", **(tags or {})})
    return run.info.run_id


def log_trial(client: MlflowClient, experiment_id: str, parent_run_id: str, *, study: str, phase: str,
              optimizer: str, benchmark: str, seed: int, hparams: Mapping[str, float],
              history: list[dict], outcome: str = "completed", batched: bool = True,
              artifacts: bool = True, epochs: int | None = None, finish: bool = True,
              final: Mapping[str, float] | None = None, max_steps: int | None = None) -> str:
    """Log one trial run (tags, params, per-epoch metrics with step = epoch, final metrics, artifacts).

    batched: one ``log_batch`` per epoch (as ``TrialLogger`` does) or one ``log_metric`` call per value.
    finish: end the run (FINISHED, or FAILED for outcome "failed"); False leaves it RUNNING.
    max_steps: logged as the ``max_steps`` param when given (the study runner logs it only when set).
    """
    tags = {
        schema.TAG_ROLE: schema.ROLE_TRIAL, schema.TAG_STUDY: study, schema.TAG_PHASE: phase,
        schema.TAG_OPTIMIZER: optimizer, schema.TAG_BENCHMARK: benchmark, schema.TAG_SEED: str(seed),
        schema.TAG_TRIAL_KEY: f"{phase}/{optimizer}/{benchmark}/{seed}/{json.dumps(dict(hparams), sort_keys=True)}",
        schema.TAG_DEVICE: "cpu", schema.TAG_GIT_SHA: "0" * 40, "mlflow.parentRunId": parent_run_id,
    }
    if finish:
        tags[schema.TAG_OUTCOME] = outcome
    params = {schema.PARAM_HP_PREFIX + k: str(v) for k, v in hparams.items()}
    params.update(optimizer=optimizer, benchmark=benchmark, seed=str(seed),
                  epochs=str(epochs or len(history)), batch_size="128")
    if max_steps is not None:
        params["max_steps"] = str(int(max_steps))
    run = client.create_run(experiment_id, tags=tags, run_name=f"{optimizer}-s{seed}")
    rid = run.info.run_id
    now = int(time.time() * 1000)
    if batched:
        client.log_batch(rid, params=[Param(k, v) for k, v in params.items()])
    else:
        for k, v in params.items():
            client.log_param(rid, k, v)
    for row in history:
        step = int(row["epoch"])
        items = [(k, float(v)) for k, v in row.items() if k != "epoch"]
        if batched:
            client.log_batch(rid, metrics=[Metric(k, v, now + step, step) for k, v in items])
        else:
            for k, v in items:
                client.log_metric(rid, k, v, timestamp=now + step, step=step)
    if final is None and history:
        best = max((r["val_accuracy"] for r in history if math.isfinite(r["val_accuracy"])), default=math.nan)
        final = {"best_val_accuracy": best, "epochs_completed": float(len(history)),
                 "wall_time_s": float(sum(r["epoch_time_s"] for r in history))}
    if final:
        client.log_batch(rid, metrics=[Metric(k, float(v), now + 10_000, 0) for k, v in final.items()])
    if artifacts and history:
        keys = list(history[0])
        lines = [",".join(keys)] + [",".join(repr(float(r[k])) if k != "epoch" else str(r[k])
                                             for k in keys) for r in history]
        client.log_text(rid, "\n".join(lines) + "\n", schema.ARTIFACT_CURVES)
        client.log_text(rid, json.dumps({"optimizer": optimizer, "benchmark": benchmark, "seed": seed,
                                         "hparams": dict(hparams)}), schema.ARTIFACT_CONFIG)
    if finish:
        if outcome == "failed":
            client.set_tag(rid, schema.TAG_ERROR, "RuntimeError: synthetic failure")
        client.set_terminated(rid, "FAILED" if outcome == "failed" else "FINISHED")
    return rid




def write_study(
    tracking_uri: str,
    study: str,
    *,
    kind: str = "comparison",
    benchmarks: Iterable[str] = ("mnist-lenet5",),
    effects: Mapping[str, Effect],
    seeds: Iterable[int] = range(5),
    epochs: int = 5,
    n_search: int = 0,
    lr_grid: Iterable[float] = (),
    phases: Iterable[str] | None = None,
    batched: bool = True,
    artifacts: bool = True,
    finish_parents: bool = True,
    running_seeds: tuple = (),
    quadratic_facts: Mapping | None = None,
    target: Mapping[str, float] | None = None,
    max_steps: int | None = None,
    parent_params: Mapping[str, str] | None = None,
    fairness: Mapping | None = None,
    search_seed: int | None = None,
    replay_selection: bool = False,
) -> dict[str, str]:
    """Write a whole study: ``{phase: parent_run_id}``.

    kind "comparison": phases search (``n_search`` trials per optimizer, random lr) and final (one run
    per seed at each optimizer's ``lr_best``). kind "sensitivity": phase grid (every lr in ``lr_grid`` ×
    seed). kind "ablation": phase ablation (one run per optimizer × seed). kind "quadratic": a parent
    run of phase quadratic carrying ``quadratic_facts`` as ``quadratic_facts.json``.
    ``phases`` restricts which phases are written (a study with missing phases). ``running_seeds``:
    final/ablation runs of these seeds are left RUNNING (a study still running). ``target``: e.g.
    ``{"val_accuracy": 0.9, "train_loss": 0.3}``; the target_* final metrics are derived from the curves.
    ``max_steps``: logged as every trial's ``max_steps`` param (a capped smoke study).
    ``parent_params``: params of every parent run (e.g. ``{"sampler": "tpe", "search_seed": "1000"}``).
    ``fairness``: logged as the search parent's ``fairness.json``. ``search_seed``: the seed tag of every
    search trial (default: trial i has seed i). ``replay_selection``: search trial 0 of each optimizer runs at
    its ``lr_best`` with exactly the history of the final run of the same seed (the winner's curse a study
    that reuses its search seed in the final phase has).
    """
    client = MlflowClient(tracking_uri=tracking_uri)
    exp_id = get_or_create_experiment(study, tracking_uri)  # artifacts beside the store, not ./mlruns
    default_phases = {"comparison": ("search", "final"), "sensitivity": ("grid",),
                      "ablation": ("ablation",), "quadratic": ("quadratic",)}[kind]
    phases = tuple(phases) if phases is not None else default_phases
    seeds = list(seeds)
    parents: dict[str, str] = {}
    rng = np.random.default_rng(12345)
    for phase in phases:
        pid = start_parent(client, exp_id, study=study, phase=phase, kind=kind)
        parents[phase] = pid
        if parent_params:
            client.log_batch(pid, params=[Param(k, str(v)) for k, v in parent_params.items()])
        if fairness is not None and phase == "search":
            client.log_text(pid, json.dumps(dict(fairness)), schema.ARTIFACT_FAIRNESS)
        if phase == "quadratic":
            client.log_text(pid, json.dumps(dict(quadratic_facts or {})), schema.ARTIFACT_QUADRATIC)
        for bench in benchmarks if phase != "quadratic" else ():
            for opt, eff in effects.items():
                stream = zlib.crc32(opt.encode())
                if phase == "search":
                    for i in range(n_search):
                        lr = float(10 ** rng.uniform(-4, -1))
                        seed_tag = i if search_seed is None else search_seed
                        drop = (math.log10(lr / eff.lr_best) / eff.lr_width) ** 2 / 100.0
                        hist = trial_history(eff, 1000 + i, epochs, accuracy=eff.accuracy - drop, stream=stream)
                        if replay_selection and i == 0:
                            lr, hist = eff.lr_best, trial_history(eff, seed_tag, epochs, stream=stream)
                        log_trial(client, exp_id, pid, study=study, phase=phase, optimizer=opt,
                                  benchmark=bench, seed=seed_tag, hparams={"lr": lr, **eff.extra}, history=hist,
                                  batched=batched, artifacts=artifacts, max_steps=max_steps)
                    continue
                grid = list(lr_grid) if phase == "grid" else [eff.lr_best]
                for lr in grid:
                    drop = (math.log10(lr / eff.lr_best) / eff.lr_width) ** 2 / 100.0
                    for s in seeds:
                        outcome = ("diverged" if s in eff.diverge_seeds else
                                   "failed" if s in eff.fail_seeds else "completed")
                        hist = trial_history(eff, s, epochs, diverged=outcome == "diverged", stream=stream)
                        if phase == "grid":
                            for r in hist:
                                r["test_accuracy"] -= drop
                        final = None
                        if target:
                            final = _targets(hist, target)
                        log_trial(client, exp_id, pid, study=study, phase=phase, optimizer=opt,
                                  benchmark=bench, seed=s, hparams={"lr": lr, **eff.extra},
                                  history=hist if outcome != "failed" else hist[:1], outcome=outcome,
                                  batched=batched, artifacts=artifacts, finish=s not in running_seeds,
                                  final=final, max_steps=max_steps)
        if finish_parents:
            client.set_terminated(pid, "FINISHED")
    return parents


def _targets(hist: list[dict], target: Mapping[str, float]) -> dict[str, float]:
    final = {"best_val_accuracy": max((r["val_accuracy"] for r in hist if math.isfinite(r["val_accuracy"])),
                                      default=math.nan),
             "epochs_completed": float(len(hist)), "wall_time_s": sum(r["epoch_time_s"] for r in hist)}
    elapsed = 0.0
    for r in hist:
        elapsed += r["epoch_time_s"]
        if "val_accuracy" in target and "target_val_accuracy_epoch" not in final \
                and math.isfinite(r["val_accuracy"]) and r["val_accuracy"] >= target["val_accuracy"]:
            final.update(target_val_accuracy_epoch=r["epoch"], target_val_accuracy_step=r["steps"],
                         target_val_accuracy_time_s=elapsed)
        if "train_loss" in target and "target_train_loss_epoch" not in final \
                and r["train_loss"] <= target["train_loss"]:
            final.update(target_train_loss_epoch=r["epoch"], target_train_loss_step=r["steps"])
    return final
