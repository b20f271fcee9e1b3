"""Service overhead: the same MNIST trials run directly (``workers.run_trial`` in a loop) and through
``amgt-study run`` (Ray Tune + Optuna + MLflow) on SQLite and on PostgreSQL stores.

The trial set is a comparison study whose search space is one fixed learning rate per optimizer
(a one-choice categorical dimension), so Optuna still proposes every search trial and the study still
runs both phases (``search``: ``--trials-per-optimizer`` trials per optimizer at the search seed
``seed_start + study.plan.SEARCH_SEED_OFFSET``;
``final``: ``--seeds`` seeds per optimizer), while every trial's configuration is known in advance. The
direct run executes exactly those configurations (same benchmark, optimizer, lr, seed, epochs, batch
size, ``max_steps``, evaluation) with ``workers.run_trial``.

Like is compared with like:

* threads: every trial uses one intra-op thread. Ray gives a 1-CPU trial ``OMP_NUM_THREADS=1`` (checked
  here: ``torch.get_num_threads()`` inside a trial); the direct run sets ``num_threads: 1`` and
  ``OMP_NUM_THREADS=1``.
* concurrency ``c``: the study runs with ``max_concurrent_trials: c`` (1 CPU per trial); the direct run
  uses one process for ``c = 1`` (a plain loop) and a pool of ``c`` spawned processes otherwise (each
  takes the next trial when it is free, as Ray does).
* end to end: both are timed as fresh subprocesses from start to exit, so interpreter start, imports,
  ``ray.init``, MLflow/Optuna schema creation on a fresh database and ``ray.shutdown`` are all inside
  the service's figure; they are also timed on their own (``startup`` in the output).

Where the service's time goes is read from the driver's progress lines (timestamped as they arrive)
and the MLflow runs it wrote: start-up before the first line, each trial's MLflow run span against its
own ``wall_time_s`` (what ``run_trial`` spent), the gaps between a trial's start in Tune and its MLflow
run, and the shut-down after the last line.

PostgreSQL: two throwaway databases (MLflow, Optuna) per run are created with psycopg on
``$AMGT_TEST_PG_ADMIN`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``) and dropped after.

    python benchmarks/service_overhead.py --epochs 1 --json overhead.json          # 4 one-epoch trials
    python benchmarks/service_overhead.py --max-steps 5 --stores sqlite --concurrency 1 \\
        --optimizers adam --no-startup                                             # smoke test (~1 min)

Needs MNIST under ``--data-dir`` / ``$AMGT_DATA_DIR`` (``MNIST/raw``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.overhead_stores import PG_ADMIN, _create_pg_databases, _drop_pg_databases, _stores  # noqa: E402
from study.plan import SEARCH_SEED_OFFSET  # noqa: E402  (search trials train with seed_start + this)

BENCHMARK = "mnist-lenet5"


# ---- the trial set -----------------------------------------------------------------------------------


def study_dict(args, name: str, concurrency: int, tracking_uri: str, optuna_storage: str) -> dict:
    """The comparison study whose trials are fixed in advance (one lr choice per optimizer)."""
    study = {
        "name": name,
        "kind": "comparison",
        "benchmark": BENCHMARK,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "device": "cpu",
        "data_dir": str(args.data_dir),
        "optimizers": [{"name": o, "search_space": {"lr": {"choices": [args.lr]}}} for o in args.optimizers],
        "search": {"sampler": "tpe", "trials_per_optimizer": args.trials_per_optimizer, "metric": "val_accuracy"},
        "seeds": args.seeds,
        "seed_start": 0,
        "resources": {"cpus": 1, "gpus": 0},
        "max_concurrent_trials": concurrency,
        "max_failures": 0,
        "tracking_uri": tracking_uri,
        "optuna_storage": optuna_storage,
    }
    if args.max_steps:
        study["max_steps"] = args.max_steps
    return study


def trial_configs(args) -> list[dict]:
    """The ``workers.run_trial`` configs of that study, in the order the study runs them."""
    base = {"benchmark": BENCHMARK, "epochs": args.epochs, "batch_size": args.batch_size, "device": "cpu",
            "data_dir": str(args.data_dir), "evaluate_test": True, "num_threads": 1}
    if args.max_steps:
        base["max_steps"] = args.max_steps
    out = []
    for i in range(args.trials_per_optimizer):
        for opt in args.optimizers:
            out.append({**base, "optimizer": opt, "hparams": {"lr": args.lr}, "seed": SEARCH_SEED_OFFSET,
                        "_phase": "search"})
    for seed in range(args.seeds):
        for opt in args.optimizers:
            out.append({**base, "optimizer": opt, "hparams": {"lr": args.lr}, "seed": seed, "_phase": "final"})
    return out


# ---- child processes: direct run, start-up components --------------------------------------------------


def _direct_one(cfg: dict) -> dict:
    import workers

    t0 = time.time()
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    res = workers.run_trial(cfg)
    t1 = time.time()
    return {"optimizer": cfg["optimizer"], "seed": cfg["seed"], "start": t0, "end": t1,
            "wall_time_s": res["wall_time_s"], "epoch_time_s": res.get("epoch_time_s"),
            "val_accuracy": res.get("val_accuracy"), "status": res["status"], "pid": os.getpid(),
            "torch_threads": _threads()}


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _pool_init() -> None:
    import workers  # noqa: F401  (imports counted in the pool's start-up, as in a Ray worker)


def child_direct(spec_path: str, out_path: str) -> None:
    """Run the trials of ``spec_path`` directly; ``procs`` = 1: a loop in this process, else a pool."""
    t_start = time.time()
    spec = json.loads(Path(spec_path).read_text())
    trials, procs = spec["trials"], spec["procs"]
    import workers  # noqa: F401

    t_imported = time.time()
    if procs == 1:
        results = [_direct_one(c) for c in trials]
    else:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(procs, initializer=_pool_init) as pool:
            results = list(pool.imap_unordered(_direct_one, trials, chunksize=1))
    Path(out_path).write_text(json.dumps({"t_start": t_start, "t_imported": t_imported, "t_end": time.time(),
                                          "trials": results}))


def _timer(out: dict):
    """``timed(key, fn)``: call ``fn()``, store its wall seconds in ``out[key]``, return its result."""

    def timed(key, fn):
        t = time.perf_counter()
        r = fn()
        out[key] = time.perf_counter() - t
        return r

    return timed


def child_startup(spec_path: str, out_path: str) -> None:
    """Time the service's start-up pieces one by one in a fresh process."""
    spec = json.loads(Path(spec_path).read_text())
    out: dict = {}
    timed = _timer(out)

    timed("import_torch_workers_s", lambda: __import__("workers"))
    timed("import_mlflow_s", lambda: __import__("mlflow"))
    timed("import_optuna_s", lambda: __import__("optuna"))
    timed("import_ray_tune_s", lambda: __import__("ray.tune"))
    timed("import_study_tracking_s", lambda: (__import__("study.runner"), __import__("tracking")))
    import ray

    timed("ray_init_s", lambda: ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                                         logging_level="WARNING"))
    # a trivial 1-CPU actor: how long a fresh Ray worker takes to start and answer, then to import torch
    @ray.remote(num_cpus=1)
    class Probe:
        def ping(self):
            return os.getpid()

        def threads(self):
            import torch

            return torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")

    def actor_start():
        a = Probe.remote()
        ray.get(a.ping.remote())
        return a

    actor = timed("ray_actor_start_s", actor_start)
    threads, omp = timed("ray_actor_torch_import_s", lambda: ray.get(actor.threads.remote()))
    out["ray_actor_torch_threads"] = threads
    out["ray_actor_omp_num_threads"] = omp
    ray.kill(actor)
    timed("ray_shutdown_s", ray.shutdown)
    from optuna.storages import RDBStorage

    import tracking

    for store, (mlflow_uri, optuna_url) in spec["stores"].items():
        timed(f"{store}_mlflow_schema_s", lambda: tracking.get_client(mlflow_uri))
        timed(f"{store}_mlflow_experiment_s", lambda: tracking.get_or_create_experiment("startup-probe", mlflow_uri))
        timed(f"{store}_optuna_schema_s", lambda: RDBStorage(optuna_url))
        # what a fresh trial process pays before and around run_trial, on the now existing store
        probe_out = Path(out_path).with_name(f"probe-{store}.json")
        t = time.time()
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "_probe", json.dumps([mlflow_uri, spec["data_dir"]]),
                        str(probe_out)], check=True, env=os.environ)
        t_exit = time.time()
        probe = json.loads(probe_out.read_text())
        probe["interpreter_exit_s"] = t_exit - probe.pop("t_written")
        probe["process_wall_s"] = t_exit - t
        out.update({f"{store}_trial_process_{k}": v for k, v in probe.items()})
    Path(out_path).write_text(json.dumps(out))


def child_probe(arg: str, out_path: str) -> None:
    """A fresh process doing what a Ray trial worker does before training: imports, MLflow client on an
    existing store, the run searches of ``TrialLogger.existing`` / ``_attempt``, MNIST loading."""
    mlflow_uri, data_dir = json.loads(arg)
    out: dict = {}
    timed = _timer(out)

    timed("import_torch_workers_s", lambda: __import__("workers"))
    timed("import_mlflow_tracking_s", lambda: (__import__("mlflow"), __import__("tracking")))
    import tracking
    from tracking.search import run_filter, search_runs

    client = timed("mlflow_client_existing_store_s", lambda: tracking.get_client(mlflow_uri))
    exp = client.get_experiment_by_name("startup-probe")
    timed("two_run_searches_s", lambda: [search_runs(client, [exp.experiment_id],
                                                     run_filter(trial_key="x", status="FINISHED"))
                                         for _ in range(2)])
    from workers.data import load_mnist_tensors

    timed("mnist_load_s", lambda: (load_mnist_tensors(Path(data_dir), "train"), load_mnist_tensors(Path(data_dir), "test")))
    out["t_written"] = time.time()
    Path(out_path).write_text(json.dumps(out))


# ---- running the subprocesses -------------------------------------------------------------------------


def _env(args) -> dict:
    env = dict(os.environ)
    env["AMGT_DATA_DIR"] = str(args.data_dir)
    env["OMP_NUM_THREADS"] = "1"  # what Ray gives a 1-CPU trial; the service's driver gets it too
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("RAY_ADDRESS", None)
    # A private Ray temp dir: with no address, ray.init() joins the cluster named in
    # <temp dir>/ray/ray_current_cluster (a `ray start` head, a test's ray.cluster_utils.Cluster) when there
    # is one; on a shared machine that is someone else's. Here every run starts its own local Ray.
    env["RAY_TMPDIR"] = args.ray_tmp
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("AMGT_OPTUNA_STORAGE", None)
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    return env


def _run_child(args, mode: str, spec: dict, workdir: Path) -> tuple[float, dict]:
    spec_path, out_path = workdir / f"{mode}-spec.json", workdir / f"{mode}-out.json"
    spec_path.write_text(json.dumps(spec))
    t0 = time.time()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), f"_{mode}", str(spec_path), str(out_path)],
                          cwd=workdir, env=_env(args), capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} child failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(out_path.read_text())
    out["_launch"] = t0
    return wall, out


def run_direct(args, concurrency: int, workdir: Path) -> dict:
    trials = trial_configs(args)
    wall, out = _run_child(args, "direct", {"trials": trials, "procs": concurrency}, workdir)
    work = sum(t["wall_time_s"] for t in out["trials"])
    return {
        "what": "direct", "concurrency": concurrency, "end_to_end_s": wall,
        "python_start_and_import_s": out["t_imported"] - out["_launch"],
        "trials": len(out["trials"]), "trial_wall_time_sum_s": work,
        "trial_wall_time_s": [t["wall_time_s"] for t in out["trials"]],
        "epoch_time_s": [t["epoch_time_s"] for t in out["trials"]],
        "val_accuracy": [t["val_accuracy"] for t in out["trials"]],
        "torch_threads": sorted({t["torch_threads"] for t in out["trials"]}),
        "statuses": sorted({t["status"] for t in out["trials"]}),
    }


def _amgt_study_cmd() -> list[str]:
    exe = shutil.which("amgt-study")
    return [exe] if exe else [sys.executable, "-c", "from study.cli import main; main()"]


def run_service(args, store: str, concurrency: int, workdir: Path) -> dict:
    """``amgt-study run`` of the fixed-trial study as a subprocess; its progress lines timestamped."""
    import yaml

    dbs = _create_pg_databases(2) if store == "postgresql" else []
    try:
        tracking_uri, optuna_storage = _stores(store, workdir, dbs)
        name = f"overhead-{store}-c{concurrency}"
        study_file = workdir / "study.yaml"
        study_file.write_text(yaml.safe_dump(study_dict(args, name, concurrency, tracking_uri, optuna_storage)))
        lines: list[tuple[float, str]] = []
        t0 = time.time()
        proc = subprocess.Popen(_amgt_study_cmd() + ["run", str(study_file), "--verbose"], cwd=workdir, env=_env(args),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        err: list[str] = []
        reader = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)
        reader.start()
        for line in proc.stdout:
            lines.append((time.time(), line.rstrip("\n")))
        rc = proc.wait()
        t_exit = time.time()
        reader.join(5)
        if rc != 0:
            raise RuntimeError(f"amgt-study run ({store}, c={concurrency}) exited {rc}:\n{''.join(err)[-3000:]}")
        if any("Connecting to latest cluster" in e for e in err):
            raise RuntimeError(f"amgt-study run ({store}, c={concurrency}) joined another Ray cluster: {''.join(err)[-1000:]}")
        runs = _trial_runs(tracking_uri, name)
    finally:
        if dbs:
            _drop_pg_databases(dbs)
    expected = len(trial_configs(args))
    if len(runs) != expected or any(r["status"] != "FINISHED" for r in runs):
        raise RuntimeError(f"service run {store} c={concurrency}: {len(runs)} trial runs "
                           f"({sorted({r['status'] for r in runs})}), expected {expected} FINISHED")
    return _analyse_service(store, concurrency, t0, t_exit, lines, runs)


def _trial_runs(tracking_uri: str, study: str) -> list[dict]:
    from tracking import schema
    from tracking.store import get_client

    client = get_client(tracking_uri)
    exp = client.get_experiment_by_name(study)
    runs = client.search_runs([exp.experiment_id], f"tags.{schema.TAG_ROLE} = '{schema.ROLE_TRIAL}'",
                              max_results=1000)
    return [{"run_id": r.info.run_id, "status": r.info.status, "start": r.info.start_time / 1000,
             "end": r.info.end_time / 1000, "phase": r.data.tags.get(schema.TAG_PHASE),
             "ray_trial_id": r.data.tags.get(schema.TAG_RAY_TRIAL_ID),
             "optimizer": r.data.tags.get(schema.TAG_OPTIMIZER),
             "wall_time_s": r.data.metrics.get("wall_time_s"), "epoch_time_s": r.data.metrics.get("epoch_time_s"),
             "val_accuracy": r.data.metrics.get("val_accuracy")} for r in runs]


def _analyse_service(store, concurrency, t0, t_exit, lines, runs) -> dict:
    started, finished = {}, {}
    t_done = None
    for t, line in lines:
        if "(started " in line:
            started[line.rsplit("(started ", 1)[1].rstrip(")")] = t
        elif "(finished " in line:
            finished[line.rsplit("(finished ", 1)[1].rstrip(")")] = t
        elif "] done in " in line:
            t_done = t
    first_line = lines[0][0] if lines else t_exit
    first_start = min(started.values()) if started else None
    per_trial = []
    for r in sorted(runs, key=lambda r: r["start"]):
        tid = r["ray_trial_id"]
        span = r["end"] - r["start"]
        per_trial.append({
            "phase": r["phase"], "optimizer": r["optimizer"], "wall_time_s": r["wall_time_s"],
            "epoch_time_s": r["epoch_time_s"], "val_accuracy": r["val_accuracy"],
            "mlflow_run_span_s": span,
            # Tune says the trial started -> its MLflow run exists: worker start, imports, MLflow client, searches
            "tune_start_to_run_start_s": (r["start"] - started[tid]) if tid in started else None,
            # inside the run but outside run_trial: logging per epoch, final metrics, artifacts, termination
            "run_span_minus_trial_s": span - (r["wall_time_s"] or 0.0),
            "run_end_to_tune_finish_s": (finished[tid] - r["end"]) if tid in finished else None,
        })
    phases = {}
    for ph in sorted({r["phase"] for r in runs}):
        rs = sorted((r for r in runs if r["phase"] == ph), key=lambda r: r["start"])
        tagged = [t for t, line in lines if f" {ph}] " in line]
        done = [t for t, line in lines if f" {ph}] finished:" in line]
        phases[ph] = {
            "first_line_s": (tagged[0] - t0) if tagged else None,
            "first_run_start_s": rs[0]["start"] - t0,
            "last_run_end_s": max(r["end"] for r in rs) - t0,
            "finished_line_s": (done[0] - t0) if done else None,
            # phase's first progress line -> its first MLflow run: Tuner set-up, actor start, imports, client
            "first_line_to_first_run_s": (rs[0]["start"] - tagged[0]) if tagged else None,
            # one run's end -> the next run's start (meaningful at concurrency 1: the same actor, reused)
            "gaps_between_runs_s": [b["start"] - a["end"] for a, b in zip(rs, rs[1:])],
            "last_run_end_to_finished_line_s": (done[0] - max(r["end"] for r in rs)) if done else None,
        }
    work = sum(r["wall_time_s"] or 0.0 for r in runs)
    return {
        "what": f"service-{store}", "store": store, "concurrency": concurrency, "end_to_end_s": t_exit - t0,
        "trials": len(runs), "trial_wall_time_sum_s": work,
        "trial_wall_time_s": [r["wall_time_s"] for r in runs],
        "epoch_time_s": [r["epoch_time_s"] for r in runs],
        "val_accuracy": [r["val_accuracy"] for r in runs],
        "driver_to_first_line_s": first_line - t0,
        "driver_to_first_trial_start_s": (first_start - t0) if first_start else None,
        "first_run_start_s": min(r["start"] for r in runs) - t0,
        "last_run_end_s": max(r["end"] for r in runs) - t0,
        "last_run_end_to_exit_s": t_exit - max(r["end"] for r in runs),
        "done_line_to_exit_s": (t_exit - t_done) if t_done else None,
        "phases": phases,
        "per_trial": per_trial,
        "lines": [(round(t - t0, 3), line) for t, line in lines],
    }


def run_startup(args, stores: list[str], workdir: Path) -> dict:
    dbs = _create_pg_databases(2) if "postgresql" in stores else []
    try:
        spec = {"stores": {s: _stores(s, workdir / f"startup-{s}", dbs) for s in stores}, "data_dir": str(args.data_dir)}
        for s in stores:
            (workdir / f"startup-{s}").mkdir(exist_ok=True)
        wall, out = _run_child(args, "startup", spec, workdir)
    finally:
        if dbs:
            _drop_pg_databases(dbs)
    out.pop("_launch", None)
    out["process_wall_s"] = wall
    return out


# ---- report -----------------------------------------------------------------------------------------------


def machine() -> dict:
    import importlib.metadata as md

    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    vers = {}
    for pkg in ("torch", "ray", "optuna", "mlflow", "sqlalchemy", "psycopg"):
        try:
            vers[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            vers[pkg] = None
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=5) as conn:
            vers["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
    except Exception:  # noqa: BLE001
        vers["postgresql"] = None
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "versions": vers, "load_average_start": os.getloadavg(),
            "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def _fmt_list(xs) -> str:
    xs = [x for x in xs if isinstance(x, (int, float)) and math.isfinite(x)]
    return "–" if not xs else f"{min(xs):.1f}–{max(xs):.1f}"


def summarise(results: list[dict]) -> list[str]:
    lines = ["| run | c | end-to-end s | Σ trial wall_time_s | trials' epoch_time_s | ratio to direct (same c, same repeat) |",
             "|---|---|---|---|---|---|"]
    direct = {(r["concurrency"], r.get("repeat")): r["end_to_end_s"] for r in results if r["what"] == "direct"}
    for r in results:
        ref = direct.get((r["concurrency"], r.get("repeat")))
        ratio = f"{r['end_to_end_s'] / ref:.2f}" if ref else "–"
        lines.append(f"| {r['what']} (repeat {r.get('repeat')}) | {r['concurrency']} | {r['end_to_end_s']:.1f} | "
                     f"{r['trial_wall_time_sum_s']:.1f} | {_fmt_list(r['epoch_time_s'])} | {ratio} |")
    return lines


def breakdown(results: list[dict]) -> list[str]:
    """Where each service run's wall time went (seconds from the driver's start)."""
    lines = ["| run | c | start-up: driver start → first progress line | search: first line → first MLflow run | "
             "final: first line → first MLflow run | gaps between runs in a phase | MLflow run span − trial wall_time_s "
             "(per trial) | last run end → exit | end-to-end |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if not r["what"].startswith("service"):
            continue
        ph = r["phases"]
        # at concurrency > 1 runs overlap: the gaps mean nothing there
        gaps = [g for p in ph.values() for g in p["gaps_between_runs_s"]] if r["concurrency"] == 1 else []
        inside = [t["run_span_minus_trial_s"] for t in r["per_trial"]]

        def f(x):
            return "–" if x is None else f"{x:.1f}"

        lines.append(
            f"| {r['what']} (repeat {r.get('repeat')}) | {r['concurrency']} | {f(r['driver_to_first_line_s'])} | "
            f"{f(ph.get('search', {}).get('first_line_to_first_run_s'))} | "
            f"{f(ph.get('final', {}).get('first_line_to_first_run_s'))} | "
            f"{', '.join(f'{g:.2f}' for g in gaps) or '–'} | {min(inside):.2f}–{max(inside):.2f} | "
            f"{f(r['last_run_end_to_exit_s'])} | {r['end_to_end_s']:.1f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_direct", "_startup", "_probe"):
        {"_direct": child_direct, "_startup": child_startup, "_probe": child_probe}[argv[0]](*argv[1:3])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--optimizers", default="adam,amgt", help="comma-separated registry names (default adam,amgt)")
    p.add_argument("--trials-per-optimizer", type=int, default=1, help="search trials per optimizer (default 1)")
    p.add_argument("--seeds", type=int, default=1, help="final-phase seeds per optimizer (default 1)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3, help="the one learning rate of every optimizer")
    p.add_argument("--max-steps", type=int, default=None, help="cap on optimizer steps per trial (smoke tests)")
    p.add_argument("--stores", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    p.add_argument("--concurrency", default="1,2", help="comma-separated trials at once (default 1,2)")
    p.add_argument("--repeats", type=int, default=1, help="repeat every measurement (interleaved)")
    p.add_argument("--no-startup", action="store_true", help="skip timing the start-up pieces on their own")
    p.add_argument("--data-dir", default=os.environ.get("AMGT_DATA_DIR"), help="holds MNIST/raw (default $AMGT_DATA_DIR)")
    p.add_argument("--json", dest="json_path", help="write all results here")
    p.add_argument("--keep", action="store_true", help="keep the temporary directories")
    p.add_argument("--tables", metavar="JSON", help="only print the tables of an earlier --json result")
    args = p.parse_args(argv)
    if args.tables:
        data = json.loads(Path(args.tables).read_text())
        for line in summarise(data["results"]) + [""] + breakdown(data["results"]):
            print(line)
        if data.get("startup"):
            print("\nstart-up pieces (s): " + ", ".join(
                f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in data["startup"].items()))
        return 0
    args.optimizers = [o.strip() for o in args.optimizers.split(",") if o.strip()]
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    bad = [s for s in stores if s not in ("sqlite", "postgresql")]
    if bad:
        p.error(f"--stores: {', '.join(bad)} not allowed; use sqlite, postgresql")
    concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if not args.data_dir or not (Path(args.data_dir) / "MNIST" / "raw").is_dir():
        p.error(f"--data-dir {args.data_dir!r}: no MNIST/raw there (set AMGT_DATA_DIR or pass --data-dir)")
    args.data_dir = Path(args.data_dir).absolute()

    info = machine()
    print(f"machine: {info['cpus']} CPUs, {info['cpu_model']}, load {info['load_average_start']}; {info['versions']}",
          flush=True)
    print(f"trials: {len(trial_configs(args))} ({', '.join(args.optimizers)}; {args.trials_per_optimizer} search + "
          f"{args.seeds} final each; {args.epochs} epoch(s); max_steps {args.max_steps})", flush=True)
    root = Path(tempfile.mkdtemp(prefix="amgt-overhead-"))
    args.ray_tmp = tempfile.mkdtemp(prefix="rso", dir="/tmp" if os.path.isdir("/tmp") else None)  # short: socket paths
    results: list[dict] = []
    out: dict = {"machine": info, "argv": argv, "trials": len(trial_configs(args)), "results": results}
    try:
        if not args.no_startup:
            (root / "startup").mkdir()
            out["startup"] = run_startup(args, stores, root / "startup")
            print("startup: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                          for k, v in out["startup"].items()), flush=True)
        for rep in range(args.repeats):
            for c in concurrencies:
                jobs = [("direct", None)] + [("service", s) for s in stores]
                if rep % 2:
                    jobs.reverse()  # interleave the order between repeats
                for kind, store in jobs:
                    wd = root / f"r{rep}-c{c}-{kind}-{store or 'loop'}"
                    wd.mkdir()
                    t = time.time()
                    r = run_direct(args, c, wd) if kind == "direct" else run_service(args, store, c, wd)
                    r["repeat"] = rep
                    r["load_average_after"] = os.getloadavg()
                    results.append(r)
                    if args.json_path:  # after every measurement, so a long run leaves what it measured
                        Path(args.json_path).write_text(json.dumps(out, indent=1, default=str))
                    print(f"{r['what']:<18} c={c} repeat {rep}: end-to-end {r['end_to_end_s']:.1f} s, "
                          f"Σ trial wall {r['trial_wall_time_sum_s']:.1f} s ({time.time() - t:.0f} s)", flush=True)
        for line in summarise(results) + [""] + breakdown(results):
            print(line)
    finally:
        if args.json_path:
            Path(args.json_path).write_text(json.dumps(out, indent=1, default=str))
        shutil.rmtree(args.ray_tmp, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
