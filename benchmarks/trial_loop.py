"""The trial's training loop (``workers.run_trial``) against a bare loop over the same batches.

Both train the same freshly built model (same seed, so the same initial weights) with the same optimizer
on the same batches (the trial's first epoch, ``workers.data.epoch_generator(seed, 1)``), capped at
``--steps`` optimizer steps. The bare loop is ``zero_grad(set_to_none=True)``, loss, ``backward()``,
``step()`` and nothing else. The trial's figure is the ``epoch_time_s`` that ``run_trial`` reports
(``train_one_epoch``'s clock: the same span, plus every per-step measurement the reports use: loss,
gradient norm, divergence check). Model building, data loading and evaluation are outside both clocks.

Rounds are interleaved (order shuffled each round) and the ratio of the minima is printed, because on a
shared machine interference only ever adds time; medians are shown next to it. A second pair of columns
uses this thread's CPU time (``time.thread_time``: the time while descheduled by other processes left
out) of the bare loop and of ``workers.train_one_epoch`` (the function ``run_trial`` times) called as
``run_trial`` calls it, a steadier figure on a loaded machine.

    python benchmarks/trial_loop.py --benchmark mnist-lenet5 --optimizers amgt,adam --steps 200 --rounds 7 --threads 1

The last column, (train_one_epoch's minimum − the bare loop's minimum) / steps, is the bookkeeping's cost
per step; with ``--batch-size 1`` (forward and backward nearly free) it can be read to a few µs, while
the ratio at the paper's batch size only resolves to the machine's noise.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import amgt  # noqa: E402
import workers  # noqa: E402
from workers.data import epoch_generator  # noqa: E402
from workers.train import resolve_config  # noqa: E402


def _config(benchmark: str, optimizer: str, steps: int, seed: int, batch_size: int | None = None) -> dict:
    cfg = {"benchmark": benchmark, "optimizer": optimizer, "epochs": 1, "max_steps": steps, "seed": seed,
           "device": "cpu", "evaluate_test": False}
    if batch_size is not None:
        cfg["batch_size"] = batch_size
    return cfg


def _setup(config: dict):
    cfg = resolve_config(config)
    torch.manual_seed(cfg["seed"])
    problem = workers.get_benchmark(cfg["benchmark"]).build(cfg, torch.device(cfg["device"]))
    opt = amgt.build_optimizer(cfg["optimizer"], problem.model.parameters(), **cfg["hparams"])
    batches = problem.train_batches(cfg.get("batch_size"), epoch_generator(cfg["seed"], 1))
    return cfg, problem, opt, batches


def bare_loop(config: dict) -> tuple[float, float]:
    """(wall s, CPU s) of the bare loop over the trial's first-epoch batches (``max_steps`` steps)."""
    cfg, problem, opt, batches = _setup(config)
    steps = 0
    start, cpu = time.perf_counter(), time.thread_time()
    for batch in batches:
        if steps >= cfg["max_steps"]:
            break
        opt.zero_grad(set_to_none=True)
        loss, _ = problem.step_loss(batch)
        loss.backward()
        opt.step()
        steps += 1
    return time.perf_counter() - start, time.thread_time() - cpu


def trial_epoch_cpu(config: dict) -> float:
    """CPU s of ``workers.train_one_epoch`` over the same batches, with run_trial's arguments on CPU."""
    cfg, problem, opt, batches = _setup(config)
    cpu = time.thread_time()
    workers.train_one_epoch(problem, opt, batches, torch.device("cpu"), max_steps=cfg["max_steps"],
                            initial_loss=None, divergence_factor=float(cfg["divergence_factor"]), check_every=1)
    return time.thread_time() - cpu


def trial_loop(config: dict) -> float:
    """``epoch_time_s`` of ``workers.run_trial`` over the same batches."""
    res = workers.run_trial(config)
    assert res["steps"] == config["max_steps"], res["steps"]
    return float(res["epoch_time_s"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--benchmark", default="mnist-lenet5")
    ap.add_argument("--optimizers", default="amgt,adam", help="comma list of registry names")
    ap.add_argument("--steps", type=int, default=200, help="optimizer steps per run")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (bare and trial once each)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=None,
                    help="default: the benchmark's; a small batch makes the per-step bookkeeping stand out")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rng = random.Random(args.seed)
    rows = []
    for name in args.optimizers.split(","):
        cfg = _config(args.benchmark, name, args.steps, args.seed, args.batch_size)
        trial_loop(cfg)  # warm-up: imports, first-use costs
        times = {"bare": [], "bare_cpu": [], "trial": [], "trial_cpu": []}
        for _ in range(args.rounds):
            order = ["bare", "trial", "trial_cpu"]
            rng.shuffle(order)
            for kind in order:
                if kind == "bare":
                    wall, cpu = bare_loop(cfg)
                    times["bare"].append(wall)
                    times["bare_cpu"].append(cpu)
                else:
                    times[kind].append(trial_loop(cfg) if kind == "trial" else trial_epoch_cpu(cfg))
        rows.append((name, times))
    print(f"{args.benchmark}, {args.steps} steps per run, {args.rounds} interleaved rounds, {args.threads} thread(s), "
          f"torch {torch.__version__}, {os.cpu_count()} CPUs; {date}; load average {load_before} before, "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} after")
    print()
    print("| optimizer | bare loop wall s (min / median) | run_trial epoch_time_s (min / median) | × bare, wall (min) "
          "| × bare, wall (median) | bare CPU s (min) | train_one_epoch CPU s (min) | × bare, CPU (min) "
          "| extra CPU µs per step (min − min) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, t in rows:
        b, r, bc, rc = t["bare"], t["trial"], t["bare_cpu"], t["trial_cpu"]
        print(f"| {name} | {min(b):.3f} / {statistics.median(b):.3f} | {min(r):.3f} / {statistics.median(r):.3f} | "
              f"**{min(r) / min(b):.3f}** | {statistics.median(r) / statistics.median(b):.3f} | {min(bc):.3f} | "
              f"{min(rc):.3f} | **{min(rc) / min(bc):.3f}** | {(min(rc) - min(bc)) / args.steps * 1e6:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
