"""One trial: train one model with one optimizer on one benchmark and report per-epoch metrics.

Written like torchvision's ``references/classification/train.py``: :func:`train_one_epoch` and
:func:`evaluate` are plain functions, and :func:`run_trial` strings them together. No Ray, no MLflow: a
caller connects ``report`` (and optionally a :class:`~workers.CheckpointHook`) to whatever it uses.
"""

from __future__ import annotations

import math
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch

import amgt

from . import metrics as M
from ._registry import available_benchmarks, get_benchmark
from .checkpoint import CheckpointHook
from .data import epoch_generator
from .problem import Problem, check_evaluation

__all__ = ["run_trial", "train_one_epoch", "resolve_config", "resolve_device", "EpochStats"]

# keys a config may hold; anything else is ignored with a warning
CONFIG_KEYS = frozenset({
    "benchmark", "optimizer", "hparams", "epochs", "batch_size", "seed", "device", "max_steps", "data_dir",
    "target", "val_fraction", "evaluate_test", "download", "divergence_factor", "deterministic", "num_threads",
    # benchmark-specific
    "steps_per_epoch", "problem", "image_size", "num_workers",
})


#: largest trial seed: torch.Generator.manual_seed takes a signed 64-bit value, and the data split adds an offset
MAX_SEED = 2**62

# config keys that must match between a checkpoint and the trial resuming from it
_IDENTITY_KEYS = ("benchmark", "optimizer", "hparams", "seed", "batch_size", "steps_per_epoch", "val_fraction",
                  "problem", "max_steps")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/None → ``cuda`` when available, else ``cpu``; otherwise ``torch.device(device)``.

    Raises:
        ValueError: an unknown device string, or CUDA requested but unavailable.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"Invalid device {device!r} (allowed: 'auto', 'cpu', 'cuda', 'cuda:N'): {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available (use 'auto' or 'cpu')")
    return dev


def _device_label(dev: torch.device) -> str:
    if dev.type == "cuda":
        idx = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"cuda:{idx} ({torch.cuda.get_device_name(idx)})"
    return str(dev)


def _int_field(cfg: dict, key: str, minimum: int, optional: bool = False, maximum: int | None = None) -> None:
    value = cfg.get(key)
    if optional and value is None:
        return
    too_big = maximum is not None and isinstance(value, (int, float, np.integer)) and value > maximum
    if (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum) or too_big:
        if isinstance(value, float) and value.is_integer() and value >= minimum and not too_big:
            cfg[key] = int(value)
            return
        upper = "" if maximum is None else f" and ≤ {maximum}"
        raise ValueError(f"Invalid {key}: {value!r} (allowed: an integer ≥ {minimum}{upper}"
                         f"{' or null' if optional else ''})")
    cfg[key] = int(value)


def resolve_config(config: dict) -> dict:
    """The trial config with the benchmark's defaults filled in and every field checked.

    Raises:
        ValueError: unknown benchmark or optimizer (lists the valid names), a field out of range (names it).
    """
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict, got {type(config).__name__}")
    if "benchmark" not in config:
        raise ValueError("config has no 'benchmark'; valid names: " + ", ".join(available_benchmarks()))
    bench = get_benchmark(config["benchmark"])
    if "optimizer" not in config:
        raise ValueError("config has no 'optimizer'; valid names: " + ", ".join(amgt.available_optimizers()))
    amgt.get_optimizer_spec(config["optimizer"])  # raises ValueError listing the valid names
    unknown = sorted(set(config) - CONFIG_KEYS)
    if unknown:
        warnings.warn(f"run_trial ignores unknown config keys: {', '.join(unknown)}", stacklevel=3)
    cfg = {k: v for k, v in bench.defaults.items() if k != "targets"}
    cfg.update({k: v for k, v in config.items() if k in CONFIG_KEYS and v is not None or k == "max_steps"})
    cfg.setdefault("hparams", {})
    cfg.setdefault("seed", 0)
    cfg.setdefault("device", "auto")
    cfg.setdefault("max_steps", None)
    cfg.setdefault("evaluate_test", True)
    cfg.setdefault("divergence_factor", 100.0)
    cfg.setdefault("deterministic", True)
    if not isinstance(cfg["hparams"], dict):
        raise ValueError(f"Invalid hparams: {cfg['hparams']!r} (allowed: a dict of optimizer keyword arguments)")
    _int_field(cfg, "epochs", 1)
    _int_field(cfg, "seed", 0, maximum=MAX_SEED)
    _int_field(cfg, "max_steps", 1, optional=True)
    cfg.setdefault("num_threads", None)
    _int_field(cfg, "num_threads", 1, optional=True)
    if bench.kind == "classification":
        _int_field(cfg, "batch_size", 1)
    else:
        _int_field(cfg, "steps_per_epoch", 1)
    for key in ("evaluate_test", "deterministic", "download"):
        if key in cfg and not isinstance(cfg[key], (bool, np.bool_)):
            raise ValueError(f"Invalid {key}: {cfg[key]!r} (allowed: true or false)")
    vf = cfg.get("val_fraction")
    if vf is not None and (isinstance(vf, bool) or not isinstance(vf, (int, float)) or not 0 < vf < 1):
        raise ValueError(f"Invalid val_fraction: {vf!r} (allowed: a number with 0 < val_fraction < 1)")
    if "problem" in cfg and not isinstance(cfg["problem"], dict):
        raise ValueError(f"Invalid problem: {cfg['problem']!r} (allowed: a dict of the benchmark's problem settings)")
    factor = cfg["divergence_factor"]
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 1:
        raise ValueError(f"Invalid divergence_factor: {factor!r} (allowed: a number > 1)")
    targets = dict(bench.defaults.get("targets", {}))
    overrides = config.get("target") or {}
    if not isinstance(overrides, dict):
        raise ValueError(f"Invalid target: {overrides!r} (allowed: a dict like {{'val_accuracy': 0.97}})")
    for key, value in overrides.items():
        if key not in targets:
            raise ValueError(f"Invalid target key {key!r} for benchmark {bench.name!r} (allowed: {', '.join(targets)})")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"Invalid target {key}: {value!r} (allowed: a number or null)")
        targets[key] = value
    cfg["target"] = targets
    cfg["device"] = str(cfg["device"])
    return cfg


@dataclass
class EpochStats:
    """What :func:`train_one_epoch` measured: per-step losses and gradient norms, samples, time."""

    losses: list = field(default_factory=list)      # per-step logged losses (host floats)
    grad_norms: list = field(default_factory=list)  # per-step global gradient L2 norms
    samples: int = 0
    steps: int = 0
    time_s: float = 0.0
    diverged: bool = False
    reason: str = ""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_one_epoch(problem, optimizer: torch.optim.Optimizer, batches, device: torch.device, *,
                    max_steps: Optional[int], initial_loss: Optional[float], divergence_factor: float,
                    check_every: int) -> tuple[EpochStats, Optional[float]]:
    """Run optimizer steps over ``batches`` (one epoch, or until ``max_steps`` steps).

    Each step: zero the gradients, compute the loss, backpropagate, record the global gradient L2 norm
    (before the step), ``optimizer.step()``. The per-step loss and norm stay on the device as 0-d
    tensors and are copied to the host once, at the end of the epoch; every ``check_every`` steps (and at
    the end) the losses since the last check are read once to check them: a non-finite loss, or one
    above ``divergence_factor × initial_loss`` (the trial's first step's loss), stops the epoch with
    ``diverged=True``. (``run_trial`` checks every step on CPU, where a read is not a device sync, and
    every 50 steps on other devices.)

    Returns:
        (stats, initial_loss): the stats, and the trial's first loss (set on the trial's first step).
    """
    stats = EpochStats()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    loss_buf: list[torch.Tensor] = []
    norm_buf: list[torch.Tensor] = []
    checked = 0

    def check() -> bool:
        nonlocal checked, initial_loss
        if checked == len(loss_buf):
            return False
        new = loss_buf[checked:]
        # one host read for the losses since the last check (on CPU, every step: a read, not a sync)
        recent = [new[0].item()] if len(new) == 1 else torch.stack(new).double().cpu().tolist()
        if initial_loss is None:
            initial_loss = float(recent[0])
        checked = len(loss_buf)
        if not all(map(math.isfinite, recent)):
            stats.diverged, stats.reason = True, "non-finite loss"
            return True
        limit = divergence_factor * max(abs(initial_loss), 1e-12)
        if max(recent) > limit:
            stats.diverged = True
            stats.reason = f"loss {max(recent):.4g} > {divergence_factor:g} × initial loss {initial_loss:.4g}"
            return True
        return False

    _sync(device)
    start = time.perf_counter()
    for batch in batches:
        if max_steps is not None and stats.steps >= max_steps:
            break
        optimizer.zero_grad(set_to_none=True)
        loss, logged = problem.step_loss(batch)
        loss.backward()
        norm_buf.append(M.global_grad_norm(params).detach())
        optimizer.step()
        if logged.dtype != torch.float32 or logged.dim() or logged.requires_grad:
            logged = logged.detach().float().reshape(())
        loss_buf.append(logged)
        stats.samples += problem.batch_size_of(batch)
        stats.steps += 1
        if stats.steps % check_every == 0 and check():
            break
    if not stats.diverged:
        check()
    _sync(device)
    stats.time_s = time.perf_counter() - start
    if loss_buf:
        stats.losses = torch.stack(loss_buf).double().cpu().tolist()
        stats.grad_norms = torch.stack(norm_buf).double().cpu().tolist()
    return stats, initial_loss


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _seed_everything(seed: int, device: torch.device, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if device.type == "cuda":
        if deterministic:
            # cuBLAS reproducibility (CUDA docs); effective when no cuBLAS handle exists yet in this process
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.cuda.manual_seed_all(seed)
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cudnn.benchmark = not deterministic


def _final_metrics(history: list[dict], targets: dict, kind: str, wall_time_s: float) -> dict[str, float]:
    out: dict[str, float] = {"epochs_completed": float(len(history)), "wall_time_s": wall_time_s}
    if kind == "classification":
        vals = [h["val_accuracy"] for h in history if math.isfinite(h.get("val_accuracy", math.nan))]
        out["best_val_accuracy"] = max(vals) if vals else math.nan
        target = targets.get("val_accuracy")
        rec = M.first_reaching(history, "val_accuracy", target, above=True) if target is not None else None
        out["target_val_accuracy_epoch"] = float(rec["epoch"]) if rec else math.nan
        out["target_val_accuracy_step"] = float(rec["steps"]) if rec else math.nan
        out["target_val_accuracy_time_s"] = float(rec["train_time_s"]) if rec else math.nan
    target = targets.get("train_loss")
    rec = M.first_reaching(history, "train_loss", target, above=False) if target is not None else None
    out["target_train_loss_epoch"] = float(rec["epoch"]) if rec else math.nan
    out["target_train_loss_step"] = float(rec["steps"]) if rec else math.nan
    return out


def _public(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k != "train_time_s"}


def run_trial(config: dict, report: Callable[[dict], None] | None = None,
              checkpoint: CheckpointHook | None = None) -> dict:
    """Train one model with one optimizer on one benchmark; report metrics once per epoch.

    Args:
        config: a plain dict (as Ray Tune passes it). Keys: ``benchmark`` (see
            :func:`workers.available_benchmarks`, or an import path of a :class:`workers.Benchmark`),
            ``optimizer`` (see :func:`amgt.available_optimizers`, or an import path ``"module:Attribute"``),
            ``hparams`` (optimizer keyword arguments), ``epochs``, ``batch_size``, ``seed``, ``device``
            (``"auto"``: CUDA when present), ``max_steps`` (cap on optimizer steps for the whole trial),
            ``data_dir`` (default ``$AMGT_DATA_DIR``, then ``~/.cache/amgt-study/data``), ``target``
            (overrides, e.g. ``{"val_accuracy": 0.97}``), ``val_fraction``, ``evaluate_test`` (default
            True), ``download`` (let torchvision download MNIST/CIFAR-10; default False), ``num_threads``
            (CPU intra-op threads for this trial, ``torch.set_num_threads``; default: leave as is),
            ``divergence_factor`` (default 100), ``deterministic`` (cuDNN deterministic; default True);
            quadratic/function benchmarks take ``steps_per_epoch`` and ``problem`` instead of
            ``batch_size``. Missing keys take the benchmark's defaults (``workers.get_benchmark(n).defaults``).
        report: called once per epoch with a flat dict: ``epoch`` (1-based) and the metrics of
            ``docs/workers.md`` (names from ``tracking.schema.METRICS_EPOCH`` where they apply).
        checkpoint: optional :class:`workers.CheckpointHook`: ``load()`` once at the start (resume),
            ``save(state)`` after each epoch, before ``report``.

    Returns:
        The final epoch's metrics, the final metrics (``best_val_accuracy``, ``epochs_completed``,
        ``wall_time_s``, ``target_*``; NaN when a target was never reached), ``status``
        (``"completed"`` | ``"diverged"``), ``diverged_reason``, ``device`` (str), ``optimizer_impl``
        (str: the implementation that ran, e.g. ``"amgt.AMGT(loop)"`` or ``"torch.optim.Adam(foreach)"``;
        see :func:`amgt.optimizer_implementation`), ``history`` (the per-epoch dicts) and ``config``
        (the resolved config).

    Raises:
        ValueError: unknown benchmark/optimizer (lists the valid names), a bad config field, corrupt data.
        FileNotFoundError: data missing (names the folder, the files expected and how to get them).
    """
    cfg = resolve_config(config)
    threads_before = torch.get_num_threads()
    if cfg["num_threads"] is not None:
        torch.set_num_threads(cfg["num_threads"])
    try:
        return _run(cfg, report, checkpoint)
    finally:
        torch.set_num_threads(threads_before)


def _run(cfg: dict, report, checkpoint) -> dict:
    bench = get_benchmark(cfg["benchmark"])
    device = resolve_device(cfg["device"])
    wall_start = time.perf_counter()
    _seed_everything(cfg["seed"], device, cfg["deterministic"])
    problem = bench.build(cfg, device)
    if not isinstance(problem, Problem):
        raise ValueError(f"benchmark {bench.name!r}: build() returned a {type(problem).__name__} without the "
                         "members of workers.Problem (model, train_batches, batch_size_of, step_loss, evaluate)")
    model = problem.model
    optimizer = amgt.build_optimizer(cfg["optimizer"], model.parameters(), **cfg["hparams"])

    history: list[dict] = []
    start_epoch, total_steps, train_time, wall_before = 0, 0, 0.0, 0.0
    initial_loss: Optional[float] = None
    status, reason = "completed", ""
    identity = {k: cfg.get(k) for k in _IDENTITY_KEYS}
    state = checkpoint.load() if checkpoint is not None else None
    if state is not None:
        saved = state.get("identity")
        if saved is not None and saved != identity:
            diff = sorted(k for k in _IDENTITY_KEYS if saved.get(k) != identity.get(k))
            raise ValueError(f"Checkpoint {checkpoint!r} belongs to another trial (differs in: {', '.join(diff)}); "
                             f"use a fresh checkpoint location for this config")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"], device)
        history = list(state["history"])
        start_epoch, total_steps = int(state["epoch"]), int(state["steps"])
        train_time, wall_before = float(state["train_time_s"]), float(state["wall_time_s"])
        initial_loss = state["initial_loss"]
        status, reason = state["status"], state.get("diverged_reason", "")

    check_every = 1 if device.type == "cpu" else 50
    epoch = start_epoch
    while status == "completed" and epoch < cfg["epochs"]:
        if cfg["max_steps"] is not None and total_steps >= cfg["max_steps"]:
            break
        epoch += 1
        if isinstance(optimizer, amgt.AMGT):
            optimizer.diagnostics(reset=True)
        M.reset_peak_memory(device)
        gen = epoch_generator(cfg["seed"], epoch)
        batches = problem.train_batches(cfg.get("batch_size"), gen)
        left = None if cfg["max_steps"] is None else cfg["max_steps"] - total_steps
        stats, initial_loss = train_one_epoch(
            problem, optimizer, batches, device, max_steps=left, initial_loss=initial_loss,
            divergence_factor=float(cfg["divergence_factor"]), check_every=check_every)
        total_steps += stats.steps
        train_time += stats.time_s
        rec: dict[str, Any] = {"epoch": epoch}
        rec["train_loss"] = float(np.mean(stats.losses)) if stats.losses else math.nan
        if stats.diverged:
            status, reason = "diverged", stats.reason
            if bench.kind == "classification":
                rec.update(val_loss=math.nan, val_accuracy=math.nan)
                if cfg["evaluate_test"]:
                    rec.update(test_loss=math.nan, test_accuracy=math.nan)
        else:
            evaluation = problem.evaluate(cfg["evaluate_test"])
            check_evaluation(bench.name, bench.kind, evaluation)
            rec.update(evaluation)
        rec["epoch_time_s"] = stats.time_s
        rec["steps"] = total_steps
        if bench.kind == "classification":
            rec["samples_per_s"] = stats.samples / stats.time_s if stats.time_s > 0 else math.nan
        rec["grad_norm_mean"], rec["grad_norm_std"] = M.mean_std(stats.grad_norms)
        rec["loss_oscillation"] = M.loss_oscillation(stats.losses)
        if bench.kind != "classification" and stats.grad_norms:
            prev = history[-1].get("grad_norm_sq_min", math.inf) if history else math.inf
            rec["grad_norm_sq_min"] = min(prev, min(g * g for g in stats.grad_norms))
        rec["optimizer_state_bytes"] = float(M.optimizer_state_bytes(optimizer))
        rec["peak_memory_bytes"] = float(M.peak_memory_bytes(device))
        if isinstance(optimizer, amgt.AMGT):
            diag = optimizer.diagnostics(reset=True)
            rec["amgt_suppressed_fraction"] = float(diag["suppressed_fraction"])
            rec["amgt_lambda_mean"] = float(diag["lambda_mean"])
            rec["amgt_lr_t"] = float(diag["lr_t"])
        rec = {k: (v if k in ("epoch", "steps") else float(v)) for k, v in rec.items()}
        rec["train_time_s"] = train_time
        history.append(rec)
        if checkpoint is not None:
            checkpoint.save({
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                "steps": total_steps, "rng": _rng_state(device), "history": history,
                "train_time_s": train_time, "wall_time_s": wall_before + time.perf_counter() - wall_start,
                "initial_loss": initial_loss, "status": status, "diverged_reason": reason,
                "identity": identity,
            })
        if report is not None:
            report(_public(rec))

    wall = wall_before + time.perf_counter() - wall_start
    result: dict[str, Any] = dict(_public(history[-1])) if history else {}
    result.update(_final_metrics(history, cfg["target"], bench.kind, wall))
    result.update(status=status, diverged_reason=reason, device=_device_label(device),
                  optimizer_impl=amgt.optimizer_implementation(optimizer),
                  history=[_public(h) for h in history], config=cfg)
    return result
