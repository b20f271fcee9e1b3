"""The tracking writing API on real stores: SQLite (tmp dir), PostgreSQL (the `postgres_url` fixture)
and an `mlflow server` subprocess on that PostgreSQL database with proxied artifacts.

The PostgreSQL schema (MLflow's alembic migrations, a few seconds) is created once per session and
shared; each test uses its own study/experiment name.
"""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

import tracking
from tracking import schema as S

REPO = Path(__file__).resolve().parents[1]
# MLflow 3.17's SQL store triggers this SQLAlchemy 2.1 deprecation on import; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")


# ---- fixtures --------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_tracking_uri(postgres_url) -> str:
    """The throwaway PostgreSQL database with MLflow's schema created (once per session)."""
    tracking.get_client(postgres_url)
    return postgres_url


@pytest.fixture
def pg_uri(pg_tracking_uri, monkeypatch, tmp_path_factory) -> str:
    """The PostgreSQL store, with artifacts of new experiments under a tmp dir (AMGT_ARTIFACT_ROOT),
    not ./mlartifacts in the working directory."""
    monkeypatch.setenv("AMGT_ARTIFACT_ROOT", str(tmp_path_factory.getbasetemp() / "pg-artifacts"))
    return pg_tracking_uri


@pytest.fixture(scope="session")
def mlflow_server(pg_tracking_uri, tmp_path_factory):
    """`mlflow server` on the PostgreSQL database, artifacts proxied (--serve-artifacts) into tmp.

    Yields (url, artifacts_dir); the server is stopped after the session.
    """
    art = tmp_path_factory.mktemp("server-artifacts")
    log_path = art.parent / "mlflow-server.log"
    port = _free_port()
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", pg_tracking_uri,
        "--serve-artifacts", "--artifacts-destination", str(art),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]
    env = dict(os.environ, MLFLOW_LOGGING_LEVEL="WARNING")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited ({proc.returncode}): {log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.read().strip() == b"OK":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not answer /health in 120 s: {log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        tracking.check_tracking_store(url, timeout=60)  # its API answers too (slow on a loaded machine)
        yield url, art
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def sqlite_tracking_uri(tmp_path_factory) -> str:
    """A SQLite store in tmp with MLflow's schema created (once per session)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('sqlite-store')}/mlflow.db"
    tracking.get_client(uri)
    return uri


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres),
                        pytest.param("http", marks=[pytest.mark.postgres, pytest.mark.slow])])
def store_uri(request) -> str:
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_tracking_uri")
    if request.param == "postgresql":
        return request.getfixturevalue("pg_uri")
    return request.getfixturevalue("mlflow_server")[0]


@pytest.fixture
def study() -> str:
    return f"test-study-{uuid.uuid4().hex[:8]}"


def _trial_tags(study: str, **extra) -> dict:
    tags = {S.TAG_STUDY: study, S.TAG_PHASE: "search", S.TAG_OPTIMIZER: "amgt", S.TAG_BENCHMARK: "digits-cnn",
            S.TAG_SEED: 0, S.TAG_OPTUNA_TRIAL: 3, S.TAG_RAY_TRIAL_ID: "abc_00003"}
    tags.update(extra)
    return tags


def _download_text(client, run_id: str, path: str, dst: Path) -> str:
    dst.mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run_id, path, str(dst))).read_text()


# ---- the API on every store ---------------------------------------------------------------------------


def test_trial_round_trip(store_uri, study, tmp_path):
    uri = tracking.resolve_tracking_uri(store_uri)
    tracking.check_tracking_store(uri)
    exp = tracking.get_or_create_experiment(study, uri)
    assert tracking.get_or_create_experiment(study, uri) == exp
    parent = tracking.start_parent_run(uri, exp, study=study, phase="search", kind="comparison",
                                       params={"trials_per_optimizer": 4},
                                       artifacts={S.ARTIFACT_STUDY: "name: x\n", S.ARTIFACT_FAIRNESS: {"a": 1}})
    config = {"benchmark": "digits-cnn", "optimizer": "amgt", "hparams": {"lr": 1e-3, "tau": 0.5},
              "epochs": 3, "batch_size": 64, "seed": 0}
    tl = tracking.TrialLogger(uri, exp, parent, trial_key="amgt/t3/s0", tags=_trial_tags(study),
                              params=tracking.trial_params(config))
    assert tl.existing() is None
    with tl:
        for epoch in (1, 2, 3):
            tl.log_epoch({"epoch": epoch, "train_loss": 1.0 / epoch, "val_accuracy": 0.5 + 0.1 * epoch,
                          "status": "ignored-non-numeric"}, epoch)
        tl.finish({"best_val_accuracy": 0.8, "epochs_completed": 3, "target_val_accuracy_epoch": math.nan,
                   "device": "cpu", "status": "completed"}, outcome="completed", config=config)

    client = tracking.get_client(uri)
    run = client.get_run(tl.run_id)
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags[S.TAG_ROLE] == S.ROLE_TRIAL and tags[S.TAG_TRIAL_KEY] == "amgt/t3/s0"
    assert tags["mlflow.parentRunId"] == parent
    assert tags[S.TAG_OUTCOME] == "completed" and tags[S.TAG_DEVICE] == "cpu"
    assert tags[S.TAG_OPTUNA_TRIAL] == "3" and tags[S.TAG_RAY_TRIAL_ID] == "abc_00003"
    assert tags[S.TAG_SEED] == "0" and tags[S.TAG_BENCHMARK] == "digits-cnn"
    assert len(tags[S.TAG_GIT_SHA]) == 40  # the project is a git checkout
    params = run.data.params
    assert params["hp.lr"] == "0.001" and params["hp.tau"] == "0.5" and params["epochs"] == "3"
    hist = client.get_metric_history(tl.run_id, "train_loss")
    assert sorted((m.step, m.value) for m in hist) == [(1, 1.0), (2, 0.5), (3, 1.0 / 3)]
    assert run.data.metrics["best_val_accuracy"] == 0.8
    assert "target_val_accuracy_epoch" not in run.data.metrics  # NaN final metric = not reached: absent
    assert "status" not in run.data.metrics

    assert json.loads(_download_text(client, tl.run_id, S.ARTIFACT_CONFIG, tmp_path / "a")) == config
    rows = list(csv.DictReader(_download_text(client, tl.run_id, S.ARTIFACT_CURVES, tmp_path / "b").splitlines()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert float(rows[2]["val_accuracy"]) == pytest.approx(0.8)
    assert _download_text(client, parent, S.ARTIFACT_STUDY, tmp_path / "c") == "name: x\n"

    found = tl.existing()
    assert found["run_id"] == tl.run_id and found["outcome"] == "completed"
    assert found["metrics"]["best_val_accuracy"] == 0.8
    if uri.startswith("http"):
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server
    else:
        assert run.info.artifact_uri.startswith(tracking.default_artifact_root(uri))


def test_parent_run_reused_on_resume(store_uri, study):
    uri = tracking.resolve_tracking_uri(store_uri)
    exp = tracking.get_or_create_experiment(study, uri)
    first = tracking.start_parent_run(uri, exp, study=study, phase="search", kind="comparison", params={"n": 4})
    tracking.end_parent_run(uri, first)
    client = tracking.get_client(uri)
    assert client.get_run(first).info.status == "FINISHED"
    again = tracking.start_parent_run(uri, exp, study=study, phase="search", kind="comparison",
                                      params={"n": 4, "extra": "x"})
    assert again == first
    run = client.get_run(first)
    assert run.info.status == "RUNNING" and run.data.params == {"n": "4", "extra": "x"}
    assert run.data.tags[S.TAG_ROLE] == S.ROLE_PARENT and run.data.tags[S.TAG_KIND] == "comparison"
    final = tracking.start_parent_run(uri, exp, study=study, phase="final", kind="comparison")
    assert final != first
    tracking.end_parent_run(uri, first, "FAILED", error="driver crashed")
    assert client.get_run(first).info.status == "FAILED"
    with pytest.raises(ValueError, match="phase"):
        tracking.start_parent_run(uri, exp, study=study, phase="nope", kind="comparison")


def test_a_late_logging_failure_does_not_overwrite_a_run_the_driver_ended(sqlite_tracking_uri, study, monkeypatch):
    """A trial ASHA stops is closed FINISHED by the driver (study/attempts.py) while Ray tears its worker down;
    the worker's own finish() may then fail mid-write (its temp files removed at interpreter exit, as CI saw).
    That failure is raised, but the run stays FINISHED; a run still RUNNING is ended FAILED as before."""
    uri = tracking.resolve_tracking_uri(sqlite_tracking_uri)
    exp = tracking.get_or_create_experiment(study, uri)
    parent = tracking.start_parent_run(uri, exp, study=study, phase="search", kind="comparison")
    client = tracking.get_client(uri)

    def torn_down(*args, **kwargs):
        raise FileNotFoundError("[Errno 2] No such file or directory: '/tmp/tmpx/config.json'")

    ended = tracking.TrialLogger(uri, exp, parent, trial_key="asha/0", tags=_trial_tags(study))
    running = tracking.TrialLogger(uri, exp, parent, trial_key="asha/1", tags=_trial_tags(study))
    ended.start()
    running.start()
    monkeypatch.setattr(tracking.runs, "log_artifacts", torn_down)
    ended.log_epoch({"train_loss": 1.0, "val_accuracy": 0.5}, 1)
    client.set_tag(ended.run_id, S.TAG_OUTCOME, "completed")
    client.set_terminated(ended.run_id, status="FINISHED")  # what the driver does for an early-stopped trial
    with pytest.raises(FileNotFoundError):
        ended.finish({"status": "completed"}, outcome="completed", config={"lr": 1e-3})
    run = client.get_run(ended.run_id)
    assert run.info.status == "FINISHED" and run.data.tags[S.TAG_OUTCOME] == "completed"
    assert S.TAG_ERROR not in run.data.tags

    with pytest.raises(FileNotFoundError):
        running.finish({"status": "completed"}, outcome="completed", config={"lr": 1e-3})
    run = client.get_run(running.run_id)
    assert run.info.status == "FAILED" and "logging the trial's results failed" in run.data.tags[S.TAG_ERROR]


def test_diverged_is_finished_and_failed_is_failed(store_uri, study):
    uri = tracking.resolve_tracking_uri(store_uri)
    exp = tracking.get_or_create_experiment(study, uri)
    parent = tracking.start_parent_run(uri, exp, study=study, phase="search", kind="comparison")
    client = tracking.get_client(uri)

    div = tracking.TrialLogger(uri, exp, parent, trial_key="div", tags=_trial_tags(study))
    div.start()
    div.log_epoch({"train_loss": 2.0}, 1)
    div.log_epoch({"train_loss": math.inf}, 2)
    div.log_epoch({"train_loss": math.nan}, 3)
    div.finish({"status": "diverged"}, outcome="diverged")
    run = client.get_run(div.run_id)
    assert run.info.status == "FINISHED" and run.data.tags[S.TAG_OUTCOME] == "diverged"
    values = [m.value for m in sorted(client.get_metric_history(div.run_id, "train_loss"), key=lambda m: m.step)]
    # ±inf is recorded as non-finite (NaN, the sign in a tag), never as MLflow's clamped ±1.797e308
    assert values[0] == 2.0 and math.isnan(values[1]) and math.isnan(values[2])
    assert run.data.tags[tracking.runs.TAG_INFINITE] == "train_loss:+inf"
    curves = Path(client.download_artifacts(div.run_id, "curves.csv", tempfile.mkdtemp())).read_text()
    assert "\n2,inf" in curves  # the artifact keeps the value itself

    # a param too long for MLflow: its start and a marker in the param, the whole value as an artifact
    long = tracking.TrialLogger(uri, exp, parent, trial_key="long", tags=_trial_tags(study),
                                params={"hp.note": "x" * 7000, "seed": 1})
    long.start()
    long.finish({"status": "completed"}, outcome="completed")
    got = client.get_run(long.run_id).data.params
    assert len(got["hp.note"]) <= 6000 and "whole value in artifact params/hp.note.txt" in got["hp.note"]
    path = client.download_artifacts(long.run_id, "params/hp.note.txt", str(Path(tempfile.mkdtemp())))
    assert Path(path).read_text() == "x" * 7000 and got["seed"] == "1"

    # an exception inside the context manager: FAILED with the error text, exception propagates
    bad = tracking.TrialLogger(uri, exp, parent, trial_key="bad", tags=_trial_tags(study))
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        with bad:
            bad.log_epoch({"train_loss": 1.0}, 1)
            raise RuntimeError("CUDA out of memory (simulated)")
    run = client.get_run(bad.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags[S.TAG_OUTCOME] == "failed"
    assert "RuntimeError: CUDA out of memory (simulated)" in run.data.tags[S.TAG_ERROR]
    assert bad.existing() is None  # a failed trial is run again on resume

    # explicit finish(outcome="failed"), never started before
    err = tracking.TrialLogger(uri, exp, parent, trial_key="err", tags=_trial_tags(study))
    err.finish(None, outcome="failed", error="ValueError: bad hparams")
    run = client.get_run(err.run_id)
    assert run.info.status == "FAILED" and run.data.tags[S.TAG_ERROR] == "ValueError: bad hparams"

    # leaving the block without finish() is a bug in the caller: FAILED, not RUNNING
    forgot = tracking.TrialLogger(uri, exp, parent, trial_key="forgot", tags=_trial_tags(study))
    with forgot:
        forgot.log_epoch({"train_loss": 1.0}, 1)
    assert client.get_run(forgot.run_id).info.status == "FAILED"

    with pytest.raises(ValueError, match="outcome"):
        tracking.TrialLogger(uri, exp, parent, trial_key="x", tags={}).finish(None, outcome="ok")
    with pytest.raises(RuntimeError, match="already finished"):
        div.finish(None, outcome="completed")
    running = client.search_runs([exp], "attributes.status = 'RUNNING' and tags.role = 'trial'")
    assert running == []


def test_history_from_result_and_batch_limits(store_uri, study):
    """finish() logs result["history"] when log_epoch was not used; >1000 metrics and >100 params
    are split into several log_batch calls (MLflow's limits)."""
    uri = tracking.resolve_tracking_uri(store_uri)
    exp = tracking.get_or_create_experiment(study, uri)
    parent = tracking.start_parent_run(uri, exp, study=study, phase="grid", kind="sensitivity")
    params = {f"hp.p{i}": i for i in range(150)}
    history = [{"epoch": e, **{f"m{i}": float(e * i) for i in range(400)}} for e in (1, 2, 3)]  # 1200 metrics
    tl = tracking.TrialLogger(uri, exp, parent, trial_key="wide", tags=_trial_tags(study, phase="grid"),
                              params=params)
    tl.finish({"history": history, "best_val_accuracy": 0.5}, outcome="completed")
    client = tracking.get_client(uri)
    run = client.get_run(tl.run_id)
    assert len(run.data.params) == 150
    assert run.data.metrics["m399"] == 3 * 399.0
    assert sorted(m.step for m in client.get_metric_history(tl.run_id, "m7")) == [1, 2, 3]
    assert "m7" in tl.curves_csv().splitlines()[0]


_KILLED_WORKER = textwrap.dedent("""
    import json, os, signal, sys
    import tracking
    run_ids = []
    for uri, exp, parent, study in json.loads(sys.argv[1]):   # one trial on each store
        tl = tracking.TrialLogger(uri, exp, parent, trial_key="killed", tags={"study": study, "phase": "search"})
        tl.start()
        tl.log_epoch({"train_loss": 1.0}, 1)
        run_ids.append(tl.run_id)
    print(json.dumps(run_ids), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)   # the worker dies: no finish(), no __exit__
""")


@pytest.mark.postgres
def test_close_stale_runs_after_killed_worker(sqlite_tracking_uri, pg_uri, tmp_path):
    """A worker killed mid-trial leaves its runs RUNNING (SQLite and PostgreSQL); close_stale_runs
    marks them FAILED and touches nothing else."""
    stores = []
    for uri in (sqlite_tracking_uri, pg_uri):
        uri = tracking.resolve_tracking_uri(uri)
        study = f"test-study-{uuid.uuid4().hex[:8]}"
        exp = tracking.get_or_create_experiment(study, uri)
        parent = tracking.start_parent_run(uri, exp, study=study, phase="search", kind="comparison")
        stores.append((uri, exp, parent, study))
    proc = subprocess.run([sys.executable, "-c", _KILLED_WORKER, json.dumps(stores)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == -9, proc.stderr[-2000:]
    run_ids = json.loads(proc.stdout.strip().splitlines()[-1])
    for (uri, exp, parent, study), run_id in zip(stores, run_ids):
        client = tracking.get_client(uri)
        assert client.get_run(run_id).info.status == "RUNNING"
        done = tracking.TrialLogger(uri, exp, parent, trial_key="done", tags={"study": study, "phase": "search"})
        done.finish({}, outcome="completed")

        closed = tracking.close_stale_runs(uri, study, phase="search")
        assert closed == [run_id]
        run = client.get_run(run_id)
        assert run.info.status == "FAILED" and run.data.tags[S.TAG_OUTCOME] == "failed"
        assert "close_stale_runs" in run.data.tags[S.TAG_ERROR]
        assert client.get_run(done.run_id).info.status == "FINISHED"  # finished runs are left alone
        assert client.get_run(parent).info.status == "RUNNING"        # parents are the driver's business
        assert tracking.close_stale_runs(uri, study) == []
        assert tracking.close_stale_runs(uri, "no-such-study") == []


_RACER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import tracking
    jobs, me, other = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    out = []
    for i, (uri, name) in enumerate(jobs):
        tracking.get_client(uri)        # store and schema ready (schema creation is itself locked)
        Path(f"{me}.{i}").touch()
        while not Path(f"{other}.{i}").exists():   # barrier: both processes call at the same moment
            time.sleep(0.001)
        out.append(tracking.get_or_create_experiment(name, uri))
    print(json.dumps(out), flush=True)
""")


@pytest.mark.postgres
def test_experiment_creation_is_race_free(pg_uri, tmp_path):
    """Two processes create the same experiment at once, on SQLite (a fresh database, so MLflow's schema
    creation races too) and on PostgreSQL: both get the same id and there is one experiment."""
    jobs = [(tracking.resolve_tracking_uri(f"sqlite:///{tmp_path}/fresh.db"), f"race-{uuid.uuid4().hex[:8]}"),
            (tracking.resolve_tracking_uri(pg_uri), f"race-{uuid.uuid4().hex[:8]}")]
    a, b = str(tmp_path / "a.ready"), str(tmp_path / "b.ready")
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, json.dumps(jobs), me, other],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
             for me, other in ((a, b), (b, a))]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    ids = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert ids[0] == ids[1]
    for (uri, name), exp_id in zip(jobs, ids[0]):
        exps = [e for e in tracking.get_client(uri).search_experiments(max_results=1000) if e.name == name]
        assert [e.experiment_id for e in exps] == [exp_id]


def test_log_artifacts_kinds(sqlite_tracking_uri, study, tmp_path):
    """Text, JSON, bytes, a file (renamed or not) and a directory land where their names say."""
    uri = tracking.resolve_tracking_uri(sqlite_tracking_uri)
    exp = tracking.get_or_create_experiment(study, uri)
    parent = tracking.start_parent_run(uri, exp, study=study, phase="search", kind="comparison")
    rep = tmp_path / "rep"
    rep.mkdir()
    (rep / "a.png").write_bytes(b"\x89PNG")
    (rep / "b.md").write_text("# b")
    note = tmp_path / "f.txt"
    note.write_text("hi")
    tracking.log_artifacts(uri, parent, {"report/": rep, "notes/f.txt": note, "notes/renamed.txt": note,
                                         "raw/x.bin": b"\x00\x01", "top.json": {"a": 1}, "t.txt": "text"})
    client = tracking.get_client(uri)

    def walk(path=None):
        for info in client.list_artifacts(parent, path):
            yield from walk(info.path) if info.is_dir else [info.path]

    assert sorted(walk()) == ["notes/f.txt", "notes/renamed.txt", "raw/x.bin", "report/a.png", "report/b.md",
                              "t.txt", "top.json"]
    assert json.loads(_download_text(client, parent, "top.json", tmp_path / "d")) == {"a": 1}
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tracking.log_artifacts(uri, parent, {"x.txt": tmp_path / "missing.txt"})


# ---- unreachable and wrong stores ----------------------------------------------------------------------


def test_unreachable_postgresql_fails_fast_with_masked_password():
    port = _free_port()  # nothing listens there
    uri = f"postgresql+psycopg://postgres:s3cret@127.0.0.1:{port}/mlflow"
    t0 = time.monotonic()
    with pytest.raises(tracking.TrackingStoreError) as info:
        tracking.check_tracking_store(uri)
    assert time.monotonic() - t0 < 6
    msg = str(info.value)
    assert f"127.0.0.1:{port}/mlflow" in msg and "***" in msg and "s3cret" not in msg
    assert "unreachable" in msg and "\n" not in msg
    t0 = time.monotonic()
    with pytest.raises(tracking.TrackingStoreError, match="unreachable"):  # any first use fails fast too
        tracking.get_or_create_experiment("x", uri)
    assert time.monotonic() - t0 < 6


def test_a_store_reached_before_is_waited_for_on_first_use(monkeypatch):
    """A trial's worker (its driver reached the store) waits out an outage for the retry budget, then one line."""
    from tracking.retry import StoreUnavailableError

    monkeypatch.setenv("AMGT_STORE_RETRY_S", "3")
    uri = f"postgresql+psycopg://postgres:s3cret@127.0.0.1:{_free_port()}/mlflow"
    tracking.expect_reachable(uri)
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailableError) as info:
        tracking.get_client(uri)
    assert time.monotonic() - t0 >= 2.5
    msg = str(info.value)
    assert "unreachable for 3 s" in msg and "s3cret" not in msg and "\n" not in msg


@pytest.mark.postgres
def test_missing_postgresql_database_says_create_it(postgres_url):
    uri = postgres_url.rsplit("/", 1)[0] + "/amgt_no_such_db"
    with pytest.raises(tracking.TrackingStoreError, match="create the database"):
        tracking.check_tracking_store(uri)


def test_unreachable_server_fails_fast():
    uri = f"http://127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    with pytest.raises(tracking.TrackingStoreError, match="unreachable") as info:
        tracking.check_tracking_store(uri)
    assert time.monotonic() - t0 < 6
    assert uri in str(info.value)


def test_check_passes_on_live_stores(store_uri):
    tracking.check_tracking_store(store_uri)


def test_sqlite_file_that_is_not_a_database(tmp_path):
    bad = tmp_path / "notes.db"
    bad.write_text("this is not sqlite " * 100)
    with pytest.raises(tracking.TrackingStoreError, match="not a usable SQLite database"):
        tracking.check_tracking_store(f"sqlite:///{bad}")


def test_deleted_experiment_is_a_clear_error(tmp_path, study):
    uri = tracking.resolve_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    exp = tracking.get_or_create_experiment(study, uri)
    tracking.get_client(uri).delete_experiment(exp)
    with pytest.raises(tracking.TrackingStoreError, match="deleted: restore it"):
        tracking.get_or_create_experiment(study, uri)


# ---- URIs and provenance --------------------------------------------------------------------------------


def test_resolve_tracking_uri(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("AMGT_ARTIFACT_ROOT", raising=False)
    assert tracking.DEFAULT_TRACKING_URI == "sqlite:///mlflow.db"
    assert tracking.resolve_tracking_uri() == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000/")
    assert tracking.resolve_tracking_uri() == "http://mlflow:5000"
    assert tracking.resolve_tracking_uri("sqlite:///sub/x.db") == f"sqlite:///{tmp_path}/sub/x.db"
    assert tracking.resolve_tracking_uri("sqlite:////abs/x.db") == "sqlite:////abs/x.db"
    assert (tracking.resolve_tracking_uri("postgresql://u:p@h:5432/db")
            == "postgresql+psycopg://u:p@h:5432/db")  # psycopg2 is not installed; psycopg 3 is
    assert (tracking.resolve_tracking_uri("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db")
    with pytest.raises(tracking.TrackingStoreError, match="unsupported MLflow tracking URI"):
        tracking.resolve_tracking_uri("file:///tmp/mlruns")
    with pytest.raises(tracking.TrackingStoreError, match="in-memory"):
        tracking.resolve_tracking_uri("sqlite://")
    assert tracking.mask_uri("postgresql+psycopg://u:pw@h:5432/db") == "postgresql+psycopg://u:***@h:5432/db"
    assert tracking.default_artifact_root(f"sqlite:///{tmp_path}/d/m.db") == f"{tmp_path}/d/mlartifacts"
    assert tracking.default_artifact_root("http://mlflow:5000") is None
    assert tracking.default_artifact_root("postgresql+psycopg://u@h/db") == f"{tmp_path}/mlartifacts"
    monkeypatch.setenv("AMGT_ARTIFACT_ROOT", "/srv/art")
    assert tracking.default_artifact_root("postgresql+psycopg://u@h/db") == "/srv/art"


def test_provenance(tmp_path):
    sha = tracking.git_sha()
    assert sha is not None and len(sha) == 40 and int(sha, 16) >= 0
    assert tracking.git_sha(tmp_path) is None  # not a git checkout
    dev = tracking.device_string()
    assert dev == "cpu" or dev.startswith(("cuda:", "mps"))
    assert tracking.device_string("cpu") == "cpu"
    versions = tracking.package_versions()
    assert {"python", "torch", "mlflow"} <= set(versions)
    tags = tracking.provenance_tags(include_device=False)
    assert tags[S.TAG_GIT_SHA] == sha and tags["version.mlflow"] == versions["mlflow"]


def test_import_is_cheap():
    code = ("import sys, tracking; heavy = [m for m in ('mlflow', 'torch', 'sqlalchemy', 'tracking.reports') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"
