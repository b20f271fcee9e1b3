"""End to end: studies run by Ray Tune + Optuna and recorded in MLflow (real SQLite, PostgreSQL, an mlflow
server, a two-node Ray cluster; no mocks). Tiny budgets: a few steps per epoch."""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from study.loading import parse_study
from study.runner import run_study

pytestmark = pytest.mark.slow

PG_ADMIN_URL = os.environ.get("AMGT_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
AMGT_STUDY = [sys.executable, "-c", "from study.cli import main; main()"]


def tiny(name: str, **over) -> dict:
    data = {"name": name, "kind": "comparison", "benchmark": "digits-cnn", "epochs": 2, "batch_size": 256,
            "optimizers": ["amgt", "sgd"], "search": {"trials_per_optimizer": 2, "metric": "val_accuracy"},
            "seeds": 2, "resources": {"cpus": 1}}
    data.update(over)
    return data


def client(uri: str):
    import tracking

    return tracking.get_client(uri)


def trial_runs(uri: str, study: str, phase: str | None = None):
    c = client(uri)
    exp = c.get_experiment_by_name(study)
    flt = "tags.role = 'trial'" + (f" and tags.phase = '{phase}'" if phase else "")
    return c.search_runs([exp.experiment_id], filter_string=flt, max_results=1000)


def optuna_trials(storage: str, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def check_no_duplicates_and_none_running(runs) -> None:
    finished = collections.Counter(r.data.tags["trial_key"] for r in runs if r.info.status == "FINISHED")
    assert all(n == 1 for n in finished.values()), finished
    assert not [r for r in runs if r.info.status == "RUNNING"]


STUDIES = Path(__file__).resolve().parents[1] / "studies"


def test_comparison_end_to_end_sqlite(tmp_path, ray_local):
    """The shipped quickstart file, cut down to two optimizers and a few steps (--set), on SQLite."""
    from study.loading import load_study

    uri, storage = f"sqlite:///{tmp_path}/mlflow.db", f"sqlite:///{tmp_path}/optuna.db"
    cfg = load_study(STUDIES / "quickstart.yaml", name="e2e",
                     sets=["optimizers=[amgt, sgd]", "epochs=2", "batch_size=256", "seeds=1"])
    assert cfg.search.trials_per_optimizer == 2
    lines: list[str] = []
    summary = run_study(cfg, tracking_uri=uri, optuna_storage=storage, echo=lines.append)
    assert summary["search"].finished == {"amgt": 2, "sgd": 2}
    assert summary["final"].finished == {"amgt": 1, "sgd": 1}
    assert any("done, " in ln and "running" in ln for ln in lines)  # progress per optimizer

    # Optuna: one persisted study per (study, optimizer), equal budget
    for opt in ("amgt", "sgd"):
        states = [t.state.name for t in optuna_trials(storage, f"e2e/{opt}")]
        assert states == ["COMPLETE", "COMPLETE"]

    runs = trial_runs(uri, "e2e")
    check_no_duplicates_and_none_running(runs)
    search = [r for r in runs if r.data.tags["phase"] == "search"]
    final = [r for r in runs if r.data.tags["phase"] == "final"]
    assert len(search) == 4 and len(final) == 2
    r = search[0]
    for tag in ("study", "phase", "optimizer", "benchmark", "seed", "optuna_trial_number", "optuna_study_name",
                "ray_trial_id", "trial_key", "device", "outcome", "ray_node_id", "attempt", "mlflow.parentRunId"):
        assert r.data.tags.get(tag), tag
    assert r.data.tags["outcome"] == "completed" and r.data.tags["device"] == "cpu"
    assert {"optimizer", "benchmark", "seed", "epochs", "batch_size", "hp.lr"} <= set(r.data.params)
    c = client(uri)
    history = c.get_metric_history(r.info.run_id, "train_loss")
    assert sorted(m.step for m in history) == [1, 2]
    assert {a.path for a in c.list_artifacts(r.info.run_id)} >= {"config.json", "curves.csv"}
    amgt_search = [x for x in search if x.data.tags["optimizer"] == "amgt"]
    assert all({"hp.tau", "hp.lr_decay", "hp.gamma"} <= set(x.data.params) for x in amgt_search)

    # final: the best search configuration of each optimizer, over the seeds
    import optuna

    for opt in ("amgt", "sgd"):
        best = optuna.load_study(study_name=f"e2e/{opt}", storage=storage).best_trial
        runs_opt = [x for x in final if x.data.tags["optimizer"] == opt]
        assert sorted(x.data.tags["seed"] for x in runs_opt) == ["0"]
        assert all(float(x.data.params["hp.lr"]) == pytest.approx(best.params["lr"]) for x in runs_opt)

    # parent runs: one per phase, with the study file and the fairness record
    exp = c.get_experiment_by_name("e2e")
    parents = c.search_runs([exp.experiment_id], filter_string="tags.role = 'parent'")
    assert sorted(p.data.tags["phase"] for p in parents) == ["final", "search"]
    assert all(p.info.status == "FINISHED" for p in parents)
    parent = next(p for p in parents if p.data.tags["phase"] == "search")
    fair = json.loads(Path(c.download_artifacts(parent.info.run_id, "fairness.json", str(tmp_path))).read_text())
    assert fair["trials_per_optimizer"] == {"amgt": 2, "sgd": 2}
    assert fair["optimizers"]["amgt"]["dimensions"] == 4
    assert all(x.data.tags["mlflow.parentRunId"] == parent.info.run_id for x in search)

    # the CLI's report command reads it back (tracking.reports.build_report)
    from click.testing import CliRunner

    from study.cli import cli

    rep = CliRunner().invoke(cli, ["report", "e2e", "--tracking-uri", uri, "--optuna-storage", storage,
                                   "--out", str(tmp_path / "report"), "--format", "md,csv"])
    assert rep.exit_code == 0, rep.output
    assert (tmp_path / "report" / "report.md").is_file() and "wrote " in rep.output

    # a dry run says what is done; running it again is a no-op: nothing launched, no new runs
    from study.runner import plan_study

    plan = plan_study(cfg, tracking_uri=uri, optuna_storage=storage)
    assert plan.existing == "the same settings: runs only what is missing (6/6 planned trials finished)", plan.existing
    again = run_study(cfg, tracking_uri=uri, optuna_storage=storage, echo=lines.append)
    assert again["search"].launched == 0 and again["final"].launched == 0
    assert len(trial_runs(uri, "e2e")) == 6


def test_worker_failure_and_divergence(tmp_path, ray_local):
    """A trial that raises in its worker: retried up to max_failures, every attempt a FAILED run with the
    error text; the progress lines name that error and count the trial as failed, not finished; status
    counts planned trials and attempts apart. A trial that diverges: a FINISHED run tagged diverged."""
    from study.formatting import overview_line
    from study.status import studies_overview, study_status
    from study.stores import resolve_stores

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # MNIST files that pass the driver's checks (present, valid gzip: the data digest reads them) but hold no
    # IDX data: the worker's loader raises ValueError in every attempt.
    import gzip

    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / f"{name}.gz").write_bytes(gzip.compress(b"not an IDX file"))
    common = {"kind": "ablation", "search": None, "seeds": 1, "max_failures": 1}
    cfg = parse_study(tiny("fail", **common, benchmark="mnist-lenet5", data_dir=str(tmp_path / "data"),
                           optimizers=["adam"]))
    lines: list[str] = []
    summary = run_study(cfg, tracking_uri=uri, echo=lines.append)
    assert summary["ablation"].finished == {"adam": 0}
    assert summary["ablation"].failed == {"adam": 1} and summary["ablation"].attempts == {"adam": 2}
    text = "\n".join(lines)
    (retry,) = [ln for ln in lines if "retrying" in ln]
    assert "after attempt 1 failed: ValueError: Corrupt or truncated MNIST file" in retry, text
    (failed,) = [ln for ln in lines if "(failed " in ln]
    assert "after 2 attempts: ValueError: Corrupt or truncated MNIST file" in failed, text
    (fin,) = [ln for ln in lines if "[fail ablation] finished:" in ln]
    assert fin.endswith("finished: adam: 0/1 completed, 1 failed after 2 attempts"), text
    runs = trial_runs(uri, "fail")
    check_no_duplicates_and_none_running(runs)
    assert len(runs) == 2  # first attempt + 1 retry
    assert sorted(r.data.tags["attempt"] for r in runs) == ["1", "2"]
    for r in runs:
        assert r.info.status == "FAILED" and r.data.tags["outcome"] == "failed"
        assert "Corrupt or truncated MNIST file" in r.data.tags["error"]

    cfg = parse_study(tiny("div", **common, optimizers=[{"name": "sgd", "hparams": {"lr": 1.0e4}}]))
    lines.clear()
    summary = run_study(cfg, tracking_uri=uri, echo=lines.append)
    assert summary["ablation"].finished == {"sgd": 1} and summary["ablation"].diverged == {"sgd": 1}
    assert "[div ablation] finished: sgd: 0/1 completed, 1 diverged" in lines, lines
    (div,) = trial_runs(uri, "div")
    assert div.info.status == "FINISHED" and div.data.tags["outcome"] == "diverged"

    # status: planned trials; completed, diverged, failed, running trials; attempts (runs) apart
    stores = resolve_stores(uri)

    def row(name, opt):
        c = study_status(stores, name).counts[("ablation", opt)]
        return [c.planned, c.completed, c.diverged, c.failed, c.interrupted, c.running, c.attempts]

    assert row("fail", "adam") == [1, 0, 0, 1, 0, 0, 2]
    assert row("div", "sgd") == [1, 0, 1, 0, 0, 0, 1]
    assert [overview_line(st) for st in studies_overview(stores)] == [
        "div: done; ablation on digits-cnn, 1/1 trials finished (0 completed, 1 diverged), 0 failed, 0 interrupted, "
        "0 running; 1 attempts",
        "fail: incomplete; ablation on mnist-lenet5, 0/1 trials finished (0 completed, 0 diverged), 1 failed, "
        "0 interrupted, 0 running; 2 attempts",
    ]


def test_postgresql_end_to_end(tmp_path, ray_local, pg_database, monkeypatch):
    monkeypatch.setenv("AMGT_ARTIFACT_ROOT", str(tmp_path / "artifacts"))  # not ./mlartifacts in the checkout
    uri, storage = pg_database(), pg_database()  # MLflow and Optuna each in their own database
    data = tiny("pg", optimizers=["amgt"], search={"trials_per_optimizer": 1, "metric": "val_accuracy"}, seeds=1,
                epochs=1)
    summary = run_study(parse_study(data), tracking_uri=uri, optuna_storage=storage,
                        echo=lambda s: None)
    assert summary["search"].finished == {"amgt": 1}
    runs = trial_runs(uri, "pg")
    check_no_duplicates_and_none_running(runs)
    assert collections.Counter((r.data.tags["phase"], r.info.status) for r in runs) == {
        ("search", "FINISHED"): 1, ("final", "FINISHED"): 1}
    assert {a.path for a in client(uri).list_artifacts(runs[0].info.run_id)} >= {"config.json", "curves.csv"}
    assert [t.state.name for t in optuna_trials(storage, "pg/amgt")] == ["COMPLETE"]


def test_through_mlflow_server_on_postgresql_with_asha(tmp_path, ray_local, mlflow_server):
    """An http:// tracking URI (mlflow server on PostgreSQL, artifacts proxied), and ASHA early stopping:
    a trial ASHA stops is a FINISHED run (tagged early_stopped), never one left RUNNING."""
    cfg = parse_study(tiny("srv", optimizers=["adam"], seeds=1, epochs=3, search={
        "trials_per_optimizer": 3, "early_stopping": {"type": "asha", "grace_period": 1, "reduction_factor": 2}}))
    lines: list[str] = []
    summary = run_study(cfg, tracking_uri=mlflow_server, optuna_storage=f"sqlite:///{tmp_path}/optuna.db",
                        echo=lines.append)
    runs = trial_runs(mlflow_server, "srv")
    seen = "\n".join(lines + [f"{r.data.tags.get('trial_key')} {r.info.status} {r.data.tags.get('outcome')} "
                                f"early_stopped={r.data.tags.get('early_stopped')} {r.data.tags.get('error', '')[:300]}"
                                for r in runs])
    assert summary["search"].finished == {"adam": 3} and summary["final"].finished == {"adam": 1}, seen
    check_no_duplicates_and_none_running(runs)
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs), [
        (r.data.tags.get("trial_key"), r.info.status, r.data.tags.get("error")) for r in runs]
    for r in runs:  # a stopped trial has fewer epochs, and says so; a trial that ran them all does not
        epochs = len(client(mlflow_server).get_metric_history(r.info.run_id, "train_loss"))
        assert (epochs == 3) == (r.data.tags.get("early_stopped") != "true"), (epochs, r.data.tags)
    c = client(mlflow_server)
    assert {a.path for a in c.list_artifacts(runs[0].info.run_id)} >= {"config.json", "curves.csv"}
    assert (tmp_path / "server-artifacts").is_dir()  # uploaded through the server's artifact proxy


def _trial_runs(db: Path, study: str, *, status: str = "FINISHED", phase: str | None = None) -> int:
    """Trial runs of ``study`` with ``status`` (and ``phase``) in the MLflow SQLite file ``db``, read while
    the study may still be writing it (0 while it does not exist yet)."""
    import sqlite3

    if not db.exists():
        return 0
    sql = ("SELECT count(*) FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id "
           "JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'role' AND t.value = 'trial' ")
    args: tuple = ()
    if phase is not None:
        sql += "JOIN tags p ON p.run_uuid = r.run_uuid AND p.key = 'phase' AND p.value = ? "
        args = (phase,)
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(sql + "WHERE e.name = ? AND r.status = ?", (*args, study, status)).fetchone()[0]
    except sqlite3.Error:
        return 0


def test_kill_and_resume(tmp_path):
    """Kill the driver mid-study, resume: exactly the planned trials, Optuna history kept, no duplicate runs."""
    path = tmp_path / "kr.yaml"
    path.write_text(yaml.safe_dump(tiny("kr", optimizers=["adam", "sgd"], seeds=1, max_concurrent_trials=1,
                                        search={"trials_per_optimizer": 2})))
    env = {**os.environ, "RAY_ADDRESS": "", "MLFLOW_TRACKING_URI": ""}
    env.pop("RAY_ADDRESS")
    env.pop("MLFLOW_TRACKING_URI")
    log = open(tmp_path / "run.log", "w")
    proc = subprocess.Popen(AMGT_STUDY + ["run", str(path)], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)
    try:
        deadline = time.time() + 240
        while _trial_runs(tmp_path / "mlflow.db", "kr") < 2:
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            assert time.time() < deadline, "no trial finished in time: " + (tmp_path / "run.log").read_text()[-3000:]
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
        proc.wait(timeout=30)
    assert _trial_runs(tmp_path / "mlflow.db", "kr") < 6  # really interrupted

    out = subprocess.run(AMGT_STUDY + ["resume", "kr"], cwd=tmp_path, capture_output=True, text=True, env=env,
                         timeout=400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    uri, storage = f"sqlite:///{tmp_path}/mlflow.db", f"sqlite:///{tmp_path}/optuna.db"
    runs = trial_runs(uri, "kr")
    check_no_duplicates_and_none_running(runs)
    finished = collections.Counter((r.data.tags["phase"], r.data.tags["optimizer"]) for r in runs
                                   if r.info.status == "FINISHED")
    assert finished == {("search", "adam"): 2, ("search", "sgd"): 2, ("final", "adam"): 1, ("final", "sgd"): 1}
    for opt in ("adam", "sgd"):
        trials = optuna_trials(storage, f"kr/{opt}")
        complete = [t for t in trials if t.state.name == "COMPLETE"]
        assert len(complete) == 2
        # a trial the kill interrupted stays in the history, marked FAIL + interrupted (or, if its run had
        # finished, COMPLETE with the result recovered from MLflow)
        import optuna

        interrupted = set(optuna.load_study(study_name=f"kr/{opt}", storage=storage).user_attrs.get(
            "interrupted_trials", []))
        assert all(t.number in interrupted for t in trials if t.state.name != "COMPLETE")
        # each completed Optuna trial has exactly one finished MLflow run
        keys = {r.data.tags["trial_key"] for r in runs if r.info.status == "FINISHED"}
        assert all(f"kr/search/{opt}/{t.number}" in keys for t in complete)

    status = subprocess.run(AMGT_STUDY + ["status", "kr"], cwd=tmp_path, capture_output=True, text=True, env=env,
                            timeout=120)
    assert status.returncode == 0 and "best adam" in status.stdout


def _running_trial(db: Path, study: str) -> tuple[str, int] | None:
    """(run id, worker pid) of a RUNNING trial run that has logged an epoch, if any."""
    import sqlite3

    if not db.exists():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute(
                "SELECT r.run_uuid, t.value FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid JOIN experiments e "
                "ON e.experiment_id = r.experiment_id WHERE e.name = ? AND r.status = 'RUNNING' "
                "AND t.key = 'worker_pid' AND EXISTS (SELECT 1 FROM metrics m WHERE m.run_uuid = r.run_uuid)",
                (study,)).fetchone()
    except sqlite3.Error:
        return None
    return (row[0], int(row[1])) if row else None


def test_worker_death_is_retried(tmp_path):
    """Kill a trial's worker process (SIGKILL) mid-trial: its run ends FAILED with the error, Ray Tune
    retries the trial (max_failures), the retry finishes; nothing is left RUNNING."""
    path = tmp_path / "wd.yaml"
    path.write_text(yaml.safe_dump(tiny("wd", kind="ablation", search=None, optimizers=["adam"], seeds=1,
                                        epochs=4, batch_size=8, max_failures=1)))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    log = open(tmp_path / "run.log", "w")
    proc = subprocess.Popen(AMGT_STUDY + ["run", str(path)], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)
    try:
        deadline = time.time() + 240
        while (found := _running_trial(tmp_path / "mlflow.db", "wd")) is None:
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            assert time.time() < deadline, "no trial started: " + (tmp_path / "run.log").read_text()[-3000:]
            time.sleep(0.2)
        run_id, pid = found
        os.kill(pid, signal.SIGKILL)  # the Ray worker process running the trial (started by our driver)
        assert proc.wait(timeout=300) == 0, (tmp_path / "run.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    runs = trial_runs(f"sqlite:///{tmp_path}/mlflow.db", "wd")
    check_no_duplicates_and_none_running(runs)
    by_id = {r.info.run_id: r for r in runs}
    killed = by_id[run_id]
    assert killed.info.status == "FAILED" and killed.data.tags["outcome"] == "failed"
    assert killed.data.tags["error"]
    retry = [r for r in runs if r.info.status == "FINISHED"]
    assert len(retry) == 1 and retry[0].data.tags["attempt"] == "2"
    assert "retrying" in (tmp_path / "run.log").read_text()


def test_two_node_ray_cluster(tmp_path):
    """The same runner on a two-node Ray cluster (ray.cluster_utils.Cluster on this machine): trials land on
    both nodes."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        path = tmp_path / "two.yaml"
        path.write_text(yaml.safe_dump(tiny("two", kind="ablation", search=None, optimizers=["adam"], seeds=4,
                                            epochs=1, max_steps=2)))
        out = subprocess.run(AMGT_STUDY + ["run", str(path), "--ray-address", cluster.address], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        runs = trial_runs(f"sqlite:///{tmp_path}/mlflow.db", "two")
        assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
        nodes = {r.data.tags["ray_node_id"] for r in runs}
        assert len(nodes) == 2, nodes
    finally:
        cluster.shutdown()


def test_tiny_mnist_study(tmp_path, ray_local, data_dir):
    """The real MNIST (LeNet-5) through the whole path: a few steps, one seed."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = parse_study(tiny("mnist-tiny", kind="ablation", search=None, benchmark="mnist-lenet5",
                           optimizers=["amgt"], seeds=1, epochs=1, max_steps=5, batch_size=128,
                           data_dir=str(data_dir)))
    summary = run_study(cfg, tracking_uri=uri, echo=lambda s: None)
    assert summary["ablation"].finished == {"amgt": 1}
    (run,) = trial_runs(uri, "mnist-tiny")
    assert run.info.status == "FINISHED" and run.data.tags["benchmark"] == "mnist-lenet5"
    assert 0.0 <= run.data.metrics["test_accuracy"] <= 1.0 and run.data.params["batch_size"] == "128"


def test_one_tuner_runs_search_then_final(tmp_path, ray_local):
    """A comparison study without early stopping is one Ray Tune run: the final trials come from the search's
    searcher once every search trial has completed, on the search's worker (one trial at a time: one worker
    process for all), each nested under the final phase's parent run (opened mid-run). An optimizer without a
    completed search trial gets no final trial: the searcher finishes before Tune's num_samples."""
    uri, storage = f"sqlite:///{tmp_path}/mlflow.db", f"sqlite:///{tmp_path}/optuna.db"
    cfg = parse_study(tiny("one", optimizers=[  # sgd at lr 1e4 diverges: no completed search trial
        "adam", {"name": "sgd", "search_space": {"lr": {"choices": [1.0e4]}}}],
        epochs=1, max_concurrent_trials=1, seeds=2, search={"trials_per_optimizer": 2}))
    lines: list[str] = []
    summary = run_study(cfg, tracking_uri=uri, optuna_storage=storage, echo=lines.append)
    assert summary["search"].launched == 4 and summary["search"].finished == {"adam": 2, "sgd": 2}
    assert summary["search"].diverged == {"adam": 0, "sgd": 2}
    assert summary["final"].launched == 2 and summary["final"].not_run == {"sgd"}
    assert summary["final"].finished == {"adam": 2, "sgd": 0}
    runs = trial_runs(uri, "one")
    check_no_duplicates_and_none_running(runs)
    assert collections.Counter(r.data.tags["phase"] for r in runs) == {"search": 4, "final": 2}
    assert len({r.data.tags["worker_pid"] for r in runs}) == 1  # the final trials reused the search's worker
    c = client(uri)
    exp = c.get_experiment_by_name("one")
    parents = {p.data.tags["phase"]: p for p in c.search_runs([exp.experiment_id], "tags.role = 'parent'")}
    assert sorted(parents) == ["final", "search"] and all(p.info.status == "FINISHED" for p in parents.values())
    for r in runs:
        assert r.data.tags["mlflow.parentRunId"] == parents[r.data.tags["phase"]].info.run_id
    best = json.loads(Path(c.download_artifacts(parents["final"].info.run_id, "best_configurations.json",
                                                str(tmp_path))).read_text())
    assert sorted(best) == ["adam"]
    # the phases' lines in order: search ends, then final is planned and run, in the same Tune run
    at = {key: next(i for i, ln in enumerate(lines) if key in ln) for key in (
        "[one search] finished: adam: 2/2 completed; sgd: 0/2 completed, 2 diverged",
        "[one final] no completed search trial for sgd: not re-run", "[one final] launching 2 of 2 planned trials",
        "[one final] adam: 2/2 done", "[one final] finished: adam: 2/2 completed; sgd: 0/2 completed (not run")}
    assert list(at.values()) == sorted(at.values()), lines


@pytest.mark.parametrize("sig", ["SIGINT", "SIGUSR1", "SIGTERM"])
def test_ctrl_c_in_final_phase_then_resume(tmp_path, sig):
    """Ctrl-C (SIGINT to the driver), SIGUSR1 (Ray Tune's own graceful stop), or SIGTERM (kill, docker stop; it
    once aborted the driver with Ray's native stack dump, exit 134), while the final trials run: exit 130 (143
    for SIGTERM), the final phase's parent run ends KILLED, the trial that was running ends KILLED (never
    FINISHED with partial results); `resume` (run after Ctrl-C: the other signals leave the same state) runs only
    the missing final trials (no search trial again), under the same parent."""
    path = tmp_path / "cc.yaml"
    path.write_text(yaml.safe_dump(tiny("cc", optimizers=["adam"], seeds=5, epochs=3, batch_size=32,
                                        max_concurrent_trials=1, search={"trials_per_optimizer": 1})))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    log = open(tmp_path / "run.log", "w")
    # SIGINT at its default in the driver, as in a terminal: a test session started in the background of a
    # shell script inherits SIGINT ignored (POSIX), and the driver would keep that
    proc = subprocess.Popen(AMGT_STUDY + ["run", str(path)], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    db = tmp_path / "mlflow.db"
    try:
        deadline = time.time() + 240
        while _trial_runs(db, "cc", phase="final") < 1:
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            assert time.time() < deadline, "no final trial finished: " + (tmp_path / "run.log").read_text()[-3000:]
            time.sleep(0.2)
        proc.send_signal(getattr(signal, sig))  # the driver only, as a terminal's Ctrl-C reaches it
        assert proc.wait(timeout=120) == (143 if sig == "SIGTERM" else 130), (tmp_path / "run.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = (tmp_path / "run.log").read_text()
    reason = {"SIGINT": "Ctrl-C", "SIGTERM": "SIGTERM to the driver"}.get(sig, "Ray Tune stopped the study")
    assert f"interrupted ({reason}" in out and "finish the study with `amgt-study resume cc`" in out, out[-3000:]
    from study.trainable import INTERRUPTED_ERROR, TAG_EARLY_STOPPED

    killed_error = {"SIGINT": "interrupted (Ctrl-C on the driver)",
                    "SIGTERM": "interrupted (SIGTERM to the driver)"}.get(sig, INTERRUPTED_ERROR)
    assert "SIGTERM received" not in out and "Aborted" not in out, out[-3000:]
    assert _trial_runs(db, "cc", phase="final") < 5, out[-3000:]
    uri = f"sqlite:///{db}"
    c = client(uri)
    exp = c.get_experiment_by_name("cc")

    def parents():
        return {p.data.tags["phase"]: p for p in c.search_runs([exp.experiment_id], "tags.role = 'parent'")}

    before = parents()
    assert before["search"].info.status == "FINISHED" and before["final"].info.status == "KILLED"
    assert before["final"].data.tags["error"].startswith("interrupted (")
    # the trial that was running is closed KILLED: not left RUNNING, not FINISHED with partial results
    for r in trial_runs(uri, "cc"):
        assert r.info.status in ("FINISHED", "KILLED"), (r.info.status, sorted(r.data.tags.items()))
        assert TAG_EARLY_STOPPED not in r.data.tags, r.data.tags
        if r.info.status == "KILLED":
            assert r.data.tags["error"] == killed_error and r.data.tags["outcome"] == "failed"
    # status counts the interrupted trial as interrupted, not failed
    from study.status import study_status
    from study.stores import resolve_stores

    killed = sum(r.info.status == "KILLED" for r in trial_runs(uri, "cc"))
    counts = study_status(resolve_stores(uri), "cc").counts[("final", "adam")]
    assert counts.interrupted == killed and counts.failed == 0 and counts.finished < 5
    if sig != "SIGINT":
        return  # the stores hold what Ctrl-C leaves (asserted above): resuming from it is the SIGINT case's

    res = subprocess.run(AMGT_STUDY + ["resume", "cc"], cwd=tmp_path, capture_output=True, text=True, env=env,
                         timeout=400)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "[cc search] adam: 1/1 trials already done" in res.stdout
    assert "[cc final] launching" in res.stdout and "started" not in res.stdout.split("[cc final] launching")[0]
    after = parents()
    assert {p: r.info.run_id for p, r in after.items()} == {p: r.info.run_id for p, r in before.items()}
    assert all(r.info.status == "FINISHED" and "error" not in r.data.tags for r in after.values())
    runs = trial_runs(uri, "cc")
    check_no_duplicates_and_none_running(runs)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert collections.Counter(r.data.tags["phase"] for r in finished) == {"search": 1, "final": 5}
    assert len([r for r in runs if r.data.tags["phase"] == "search"]) == 1
    assert all(r.data.tags["mlflow.parentRunId"] == after[r.data.tags["phase"]].info.run_id for r in runs)
    assert [t.state.name for t in optuna_trials(f"sqlite:///{tmp_path}/optuna.db", "cc/adam")] == ["COMPLETE"]


def test_trial_takes_its_parent_run_from_the_plan():
    """A planned trial travels through Tune as a plain dict and comes back equal, its parent run with it."""
    from study.plan import PlannedTrial

    final = PlannedTrial("s/final/adam/seed0", "final", "adam", "b", 0, {"lr": 0.1}, source_trial=3)
    assert final.parent_run is None and final.with_parent("P-final").parent_run == "P-final"
    assert PlannedTrial.from_dict(final.with_parent("P").to_dict()) == final.with_parent("P")
