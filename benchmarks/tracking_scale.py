"""Tracking at scale: MLflow logging throughput (batched vs per call) and the time to load 1,000 and
10,000 runs and build a report from them, on the local PostgreSQL.

A throwaway database is created with psycopg and dropped at the end (also on error). Runs are written
through MLflow's public client, laid out as ``tracking/schema.py`` says (``tracking.reports.synthetic``):

- study ``scale-1k``: 1,000 trial runs (search phase 980, final phase 20), each with 10 epochs of 13
  per-epoch metrics, final metrics, and the ``curves.csv`` artifact;
- study ``scale-9k``: 9,000 more search-phase runs, so that the two studies hold 10,000 trial runs. Writing
  9,000 runs through MLflow's client takes ~15 minutes on this 2-core machine, so these are copies made in
  SQL (``INSERT … SELECT``) of the rows MLflow wrote for the search runs of ``scale-1k`` (tables ``runs``,
  ``tags``, ``params``, ``metrics``, ``latest_metrics``), with new run ids, the new experiment id and the
  ``study``/parent-run tags rewritten: the same rows, in the same tables, that MLflow itself writes.

Measured: logging throughput per call vs batched (``log_metric`` per value vs one ``log_batch`` per
epoch); ``tracking.query.load_runs`` on 1,000 and 10,000 runs (all columns, and only the report's);
``load_histories`` by ``get_metric_history`` vs the ``curves.csv`` artifact, per run, in the 10,000-run
store; ``build_report`` over the 1,000- and 10,000-run studies.

    python benchmarks/tracking_scale.py            # ~2–4 min on 2 busy CPU cores
    python benchmarks/tracking_scale.py --small    # 100 + 900 runs, a smoke test
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import platform
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PG_ADMIN = os.environ.get("AMGT_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
OPTIMIZERS = ("amgt", "adam", "rmsprop", "sgd")


def _quiet():
    logging.disable(logging.WARNING)
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"


def _client(uri: str):
    from tracking.store import get_client

    return get_client(uri)


def _setup_study(uri: str, study: str, artifact_root: str) -> tuple[str, dict]:
    from tracking.reports.synthetic import start_parent

    client = _client(uri)
    exp_id = client.create_experiment(study, artifact_location=f"{artifact_root}/{study}")
    parents = {phase: start_parent(client, exp_id, study=study, phase=phase, kind="comparison")
               for phase in ("search", "final")}
    return exp_id, parents


def _write_chunk(args) -> int:
    """Worker process: write ``count`` runs of one (study, phase)."""
    uri, exp_id, parent, study, phase, start, count, epochs, artifacts = args
    _quiet()
    from mlflow.entities import Metric, Param

    from tracking.reports.synthetic import Effect, trial_history
    from tracking import schema

    client = _client(uri)
    for i in range(start, start + count):
        opt = OPTIMIZERS[i % len(OPTIMIZERS)]
        seed = i if phase == "search" else i % 5
        hist = trial_history(Effect(accuracy=0.98 + 0.002 * (opt == "amgt")), seed, epochs)
        tags = {schema.TAG_ROLE: schema.ROLE_TRIAL, schema.TAG_STUDY: study, schema.TAG_PHASE: phase,
                schema.TAG_OPTIMIZER: opt, schema.TAG_BENCHMARK: "mnist-lenet5", schema.TAG_SEED: str(seed),
                schema.TAG_OUTCOME: "completed", schema.TAG_DEVICE: "cpu", schema.TAG_GIT_SHA: "0" * 40,
                schema.TAG_TRIAL_KEY: f"{phase}/{i}", "mlflow.parentRunId": parent}
        run = client.create_run(exp_id, tags=tags)
        rid = run.info.run_id
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now + r["epoch"], int(r["epoch"])) for r in hist for k, v in r.items()
                   if k != "epoch"]
        metrics += [Metric("best_val_accuracy", max(r["val_accuracy"] for r in hist), now, 0),
                    Metric("epochs_completed", float(epochs), now, 0)]
        params = [Param("hp.lr", repr(10 ** (-4 + 3 * ((i * 0.618) % 1)))), Param("optimizer", opt),
                  Param("benchmark", "mnist-lenet5"), Param("seed", str(seed)), Param("epochs", str(epochs)),
                  Param("batch_size", "128")]
        client.log_batch(rid, metrics=metrics, params=params)
        if artifacts:
            keys = list(hist[0])
            text = ",".join(keys) + "\n" + "\n".join(",".join(str(r[k]) for k in keys) for r in hist) + "\n"
            client.log_text(rid, text, schema.ARTIFACT_CURVES)
        client.set_terminated(rid, "FINISHED")
    return count


def populate(uri: str, study: str, artifact_root: str, *, search: int, final: int, epochs: int,
             artifacts: bool, workers: int) -> float:
    exp_id, parents = _setup_study(uri, study, artifact_root)
    jobs = []
    for phase, n in (("search", search), ("final", final)):
        chunk = max(1, n // (workers * 4))
        for start in range(0, n, chunk):
            jobs.append((uri, exp_id, parents[phase], study, phase, start, min(chunk, n - start), epochs, artifacts))
    t = time.perf_counter()
    # spawn: a forked child would share the parent's SQLAlchemy connection pool
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        written = sum(pool.map(_write_chunk, jobs))
    elapsed = time.perf_counter() - t
    client = _client(uri)
    for pid in parents.values():
        client.set_terminated(pid, "FINISHED")
    assert written == search + final
    return elapsed


def copy_runs(uri: str, db: str, source: str, target: str, artifact_root: str, count: int) -> float:
    """Copy ``count`` search-phase runs of study ``source`` into a new study ``target`` in SQL."""
    import psycopg

    exp_id, parents = _setup_study(uri, target, artifact_root)
    t = time.perf_counter()
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + db
    with psycopg.connect(url, autocommit=False) as conn:
        src_exp = conn.execute("select experiment_id from experiments where name = %s", (source,)).fetchone()[0]
        src_runs = [r[0] for r in conn.execute(
            "select r.run_uuid from runs r join tags t on t.run_uuid = r.run_uuid and t.key = 'phase' "
            "and t.value = 'search' join tags t2 on t2.run_uuid = r.run_uuid and t2.key = 'role' "
            "and t2.value = 'trial' where r.experiment_id = %s order by r.run_uuid", (src_exp,))]
        copies = -(-count // len(src_runs))
        conn.execute("create temp table src(run_uuid varchar(32) primary key)")
        with conn.cursor().copy("copy src (run_uuid) from stdin") as cp:
            for rid in src_runs:
                cp.write_row((rid,))
        conn.execute("create temp table k as select g as k from generate_series(1, %s) g", (copies,))
        conn.execute("create temp table idmap as select s.run_uuid as old, md5(s.run_uuid || '-' || k.k) as new, "
                     "row_number() over (order by k.k, s.run_uuid) as n from src s cross join k")
        conn.execute("delete from idmap where n > %s", (count,))

        def cols(table):
            return [r[0] for r in conn.execute(
                "select column_name from information_schema.columns where table_name = %s "
                "and table_schema = 'public' order by ordinal_position", (table,))]

        for table in ("runs", "tags", "params", "metrics", "latest_metrics"):
            names = cols(table)
            select = []
            for c in names:
                if c == "run_uuid":
                    select.append("m.new")
                elif c == "experiment_id" and table == "runs":
                    select.append(str(int(exp_id)))
                elif c == "value" and table == "tags":
                    select.append(f"case when x.key = 'study' then '{target}' when x.key = "
                                  f"'mlflow.parentRunId' then '{parents['search']}' else x.value end")
                else:
                    select.append(f"x.{c}")
            conn.execute(f"insert into {table} ({', '.join(names)}) select {', '.join(select)} "
                         f"from {table} x join idmap m on m.old = x.run_uuid")
        conn.commit()
    client = _client(uri)
    for pid in parents.values():
        client.set_terminated(pid, "FINISHED")
    return time.perf_counter() - t


def logging_throughput(uri: str, artifact_root: str, runs: int, epochs: int) -> dict:
    """Runs/s and metric values/s logging ``runs`` runs of ``epochs`` epochs, per call vs batched."""
    from tracking.reports.synthetic import Effect, log_trial, start_parent, trial_history

    client = _client(uri)
    out = {}
    for mode in ("per_call", "batched"):
        exp = client.create_experiment(f"throughput-{mode}", artifact_location=f"{artifact_root}/tp-{mode}")
        pid = start_parent(client, exp, study=f"throughput-{mode}", phase="search", kind="comparison")
        hists = [trial_history(Effect(), s, epochs) for s in range(runs)]
        values = sum(len(r) - 1 for h in hists for r in h)
        t = time.perf_counter()
        for s, h in enumerate(hists):
            log_trial(client, exp, pid, study=f"throughput-{mode}", phase="search", optimizer="adam",
                      benchmark="mnist-lenet5", seed=s, hparams={"lr": 1e-3}, history=h,
                      batched=mode == "batched", artifacts=False)
        dt = time.perf_counter() - t
        out[mode] = {"runs": runs, "epochs": epochs, "metric_values": values, "seconds": dt,
                     "runs_per_s": runs / dt, "values_per_s": values / dt}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="100 + 900 runs instead of 1,000 + 9,000")
    ap.add_argument("--workers", type=int, default=2, help="processes writing runs (default 2)")
    ap.add_argument("--throughput-runs", type=int, default=10, help="runs per mode in the logging test")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    _quiet()
    import psycopg

    n1k, n9k = (100, 900) if args.small else (1000, 9000)
    db = f"amgt_bench_{uuid.uuid4().hex[:10]}"
    uri = f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}"
    results: dict = {"database": "PostgreSQL (local, throwaway database)", "python": platform.python_version(),
                     "cpus": os.cpu_count(), "runs_small_study": n1k, "runs_total": n1k + n9k}
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
        results["server"] = conn.execute("show server_version").fetchone()[0]
    tmp = tempfile.mkdtemp(prefix="amgt-bench-")
    try:
        from tracking import query
        from tracking.reports import build_report

        _client(uri)
        t0 = time.perf_counter()
        results["logging"] = logging_throughput(uri, tmp, runs=args.throughput_runs, epochs=10)
        results["populate_1k_s"] = populate(uri, "scale-1k", tmp, search=n1k - 20, final=20, epochs=10,
                                            artifacts=True, workers=args.workers)
        results["copy_9k_s"] = copy_runs(uri, db, "scale-1k", "scale-9k", tmp, n9k)
        from tracking.reports.data import _trial_columns

        def timed(fn, repeat=1):
            best, value = float("inf"), None
            for _ in range(repeat):
                t = time.perf_counter()
                value = fn()
                best = min(best, time.perf_counter() - t)
            return best, value

        loads = {}
        for label, studies in (("1k", ["scale-1k"]), ("10k", ["scale-1k", "scale-9k"])):
            s_all, df = timed(lambda: query.load_runs(uri, studies))
            s_cols, df2 = timed(lambda: query.load_runs(uri, studies, columns=_trial_columns()))
            loads[label] = {"runs": len(df), "all_columns_s": s_all, "report_columns_s": s_cols,
                            "columns_all": df.shape[1], "columns_report": df2.shape[1]}
        results["load_runs"] = loads
        ids = query.load_runs(uri, "scale-1k", columns=["tags.phase"])["run_id"].tolist()
        sample = ids[:200]
        metrics = ["train_loss", "val_loss", "val_accuracy", "test_accuracy", "epoch_time_s", "grad_norm_mean",
                   "grad_norm_std", "loss_oscillation"]
        hist = {}
        for source in ("metric_history", "artifact"):
            s, h = timed(lambda: query.load_histories(uri, sample, metrics, source=source), repeat=1)
            hist[source] = {"runs": len(sample), "metrics": len(metrics), "rows": len(h), "seconds": s,
                            "ms_per_run": 1000 * s / len(sample)}
        results["load_histories"] = hist
        reports = {}
        for label, studies in (("1k", ["scale-1k"]), ("10k", ["scale-1k", "scale-9k"])):
            t = time.perf_counter()
            r = build_report(studies, tracking_uri=uri, out_dir=Path(tmp) / f"report-{label}",
                             optuna_storage=f"sqlite:///{tmp}/none.db", log_artifacts=True)
            reports[label] = {"seconds": time.perf_counter() - t, **{k: round(v, 3) for k, v in r.timings.items()},
                              "runs": int(len(r.tables["runs"]))}
        results["build_report"] = reports
        results["total_s"] = time.perf_counter() - t0
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
