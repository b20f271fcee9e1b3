"""The service under its own infrastructure's faults, for real: a second PostgreSQL cluster of the test's own
(created, restarted, stopped and dropped here; never the main one) under a running study; SIGKILL during a
store's first-use schema creation; two drivers of one study; an unreachable Ray; Optuna's schema raced by
16 processes.  Each fault test prints its figures (planned, finished, lost, duplicates, RUNNING) and they
are collected in docs/reliability.md."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

from conftest import _free_port

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
AMGT_STUDY = [sys.executable, "-c", "from study.cli import main; main()"]
PG_VERSION = "15"


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "AMGT_OPTUNA_STORAGE")}
    return {**env, "RAY_AUTH_MODE": "disabled"}


@pytest.fixture
def pg2():
    """A PostgreSQL cluster of this test's own (pg_createcluster), trust auth on 127.0.0.1, dropped afterwards.
    Yields an object with ``url(db)``, ``createdb(db)``, ``restart()``, ``stop()``, ``start()`` and
    ``connections()``."""
    if subprocess.run(["which", "pg_createcluster"], capture_output=True).returncode:
        pytest.skip("pg_createcluster (Debian's postgresql-common) is not installed")
    name, port = f"amgtfault{uuid.uuid4().hex[:6]}", _free_port()
    subprocess.run(["pg_createcluster", PG_VERSION, name, "--port", str(port)], check=True, capture_output=True)
    hba = Path(f"/etc/postgresql/{PG_VERSION}/{name}/pg_hba.conf")
    hba.write_text("local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n")
    ctl = lambda action: subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, name, action],  # noqa: E731
                                        check=True, capture_output=True)
    ctl("start")

    class Cluster:
        def url(self, db: str) -> str:
            return f"postgresql+psycopg://postgres@127.0.0.1:{port}/{db}"

        def createdb(self, db: str) -> str:
            import psycopg

            with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{db}"')
            return self.url(db)

        def connections(self) -> int:
            import psycopg

            try:
                with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=2) as conn:
                    return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                                        ).fetchone()[0] - 1
            except psycopg.OperationalError:
                return -1

        restart = staticmethod(lambda: ctl("restart"))
        stop = staticmethod(lambda: ctl("stop"))
        start = staticmethod(lambda: ctl("start"))

    try:
        yield Cluster()
    finally:
        subprocess.run(["pg_dropcluster", PG_VERSION, name, "--stop"], capture_output=True)


def _study(path: Path, name: str, **over) -> Path:
    data = {"name": name, "kind": "comparison", "benchmark": "digits-cnn", "epochs": 4, "batch_size": 32,
            "optimizers": ["adam", "sgd"], "search": {"trials_per_optimizer": 2}, "seeds": 2,
            "max_concurrent_trials": 2, "max_failures": 2}
    data.update(over)
    path.write_text(yaml.safe_dump(data))
    return path


def _figures(uri: str, study: str, planned: int) -> dict:
    import tracking

    c = tracking.get_client(uri)
    exp = c.get_experiment_by_name(study)
    runs = [r for r in c.search_runs([exp.experiment_id], max_results=5000) if r.data.tags.get("role") == "trial"]
    finished = collections.Counter(r.data.tags["trial_key"] for r in runs if r.info.status == "FINISHED")
    return {"planned": planned, "finished": len(finished), "lost": planned - len(finished),
            "duplicates": sum(n - 1 for n in finished.values()),
            "running": sum(r.info.status == "RUNNING" for r in runs), "runs": len(runs)}


def _wait_for(predicate, proc, log: Path, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.time() < deadline, "timed out: " + log.read_text()[-3000:]
        time.sleep(0.3)


def _runs_in_phase(pg, db: str, study: str, phase: str, status: str | None = None) -> int:
    import psycopg

    sql = ("SELECT count(*) FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id "
           "JOIN tags p ON p.run_uuid = r.run_uuid AND p.key = 'phase' AND p.value = %s "
           "JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'role' AND t.value = 'trial' WHERE e.name = %s")
    args: tuple = (phase, study)
    if status:
        sql += " AND r.status = %s"
        args += (status,)
    try:
        with psycopg.connect(pg.url(db).replace("+psycopg", ""), connect_timeout=2) as conn:
            return conn.execute(sql, args).fetchone()[0]
    except psycopg.Error:
        return 0


@pytest.mark.parametrize("faults", [("restart-in-search", "stop-20s-in-final"), ("restart-in-final",)])
def test_database_faults_under_a_running_study(tmp_path, pg2, faults, capsys):
    """A PostgreSQL restart during the search and during the final phase, and a 20 s outage (the cluster
    stopped, then started): every planned trial finished once (after at most one resume), no duplicate
    FINISHED run per trial key, nothing RUNNING, no raw traceback."""
    mlflow_db, optuna_db = pg2.createdb("mlflow"), pg2.createdb("optuna")
    name = "faults" + str(len(faults))
    path = _study(tmp_path / "f.yaml", name)
    env = {**_env(), "AMGT_ARTIFACT_ROOT": str(tmp_path / "artifacts"), "AMGT_STORE_RETRY_S": "90"}
    args = ["--tracking-uri", mlflow_db, "--optuna-storage", optuna_db]
    log = tmp_path / "run.log"
    peak = [0]
    proc = subprocess.Popen(AMGT_STUDY + ["run", str(path)] + args, cwd=tmp_path, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)
    stop_polling = threading.Event()

    def poll():
        while not stop_polling.wait(0.5):
            peak[0] = max(peak[0], pg2.connections())

    threading.Thread(target=poll, daemon=True).start()
    try:
        for fault in faults:
            phase = fault.rsplit("-", 1)[-1]
            _wait_for(lambda: _runs_in_phase(pg2, "mlflow", name, phase, "RUNNING") >= 1, proc, log)
            if fault.startswith("restart"):
                pg2.restart()
            else:
                pg2.stop()
                time.sleep(20)
                pg2.start()
        rc = proc.wait(timeout=600)
    finally:
        stop_polling.set()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = log.read_text()
    resumed = False
    if rc != 0:
        lines = [ln for ln in out.splitlines() if ln.startswith("error: ")]
        assert len(lines) == 1 and "Traceback" not in out, out[-4000:]
        res = subprocess.run(AMGT_STUDY + ["resume", name] + args, cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=600)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        out, resumed = out + res.stdout + res.stderr, True
    assert "Traceback" not in out, out[-4000:]
    figures = {**_figures(mlflow_db, name, planned=2 * 2 + 2 * 2), "resumed": resumed,
               "peak_connections": peak[0]}
    with capsys.disabled():
        print(f"\n[faults] {' then '.join(faults)}: {figures}")
    assert figures["lost"] == 0 and figures["duplicates"] == 0 and figures["running"] == 0, figures
    # budgets stay equal: each optimizer has exactly its 2 counted search trials
    import optuna

    from study.search import counted_trials

    for opt in ("adam", "sgd"):
        assert len(counted_trials(optuna.load_study(study_name=f"{name}/{opt}", storage=optuna_db))) == 2
    assert 0 < peak[0] <= 16, peak  # driver (2 + 2 Optuna + 2 MLflow) and 2 workers, not 10 per study


def test_sigkill_during_first_use_schema_creation_then_run_works(tmp_path):
    """A first run killed at 0.3 ... 2.5 s (while MLflow and Optuna create their SQLite schemas): the next run
    works, whatever moment the kill hit."""
    env = _env()
    path = _study(tmp_path / "k.yaml", "kills", kind="ablation", search=None, optimizers=["adam"], seeds=1, epochs=1,
                  max_steps=2, max_concurrent_trials=None)
    for delay in (0.3, 0.8, 1.2, 1.6, 2.0, 2.5):
        proc = subprocess.Popen(AMGT_STUDY + ["run", str(path)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    out = subprocess.run(AMGT_STUDY + ["run", str(path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    assert not list(tmp_path.glob(".*.creating-*"))  # no temporary schema file left behind


def test_a_half_created_sqlite_store_names_its_repair(tmp_path):
    import sqlite3

    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as conn:  # what a kill during MLflow's own (non-atomic) creation leaves
        conn.execute("CREATE TABLE experiments (experiment_id INTEGER)")
        conn.execute("CREATE TABLE runs (run_uuid TEXT)")
    path = _study(tmp_path / "h.yaml", "half", kind="ablation", search=None, optimizers=["adam"], seeds=1)
    out = subprocess.run(AMGT_STUDY + ["run", str(path)], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    (line,) = [ln for ln in out.stderr.splitlines() if ln.startswith("error: ")]
    assert "half-created" in line and f"rm {db}" in line


def test_two_drivers_of_one_study(tmp_path):
    """A second `run` (and `resume`) while the first runs is refused, naming the running driver; the first
    finishes normally; status tells the live driver from a dead one."""
    env = _env()
    path = _study(tmp_path / "two.yaml", "twod", kind="ablation", search=None, optimizers=["adam"], seeds=4,
                  epochs=30, max_concurrent_trials=1)
    log = tmp_path / "first.log"
    first = subprocess.Popen(AMGT_STUDY + ["run", str(path)], cwd=tmp_path, env=env, stdout=open(log, "w"),
                             stderr=subprocess.STDOUT, start_new_session=True)
    try:
        import tracking

        uri = f"sqlite:///{tmp_path}/mlflow.db"

        def leased() -> bool:
            if not (tmp_path / "mlflow.db").exists():
                return False
            try:
                exp = tracking.get_client(uri).get_experiment_by_name("twod")
            except Exception:  # noqa: BLE001 - the store is being created
                return False
            return exp is not None and "amgt.lease" in exp.tags

        _wait_for(leased, first, log)
        # status, a second run and a resume at once, while the first driver runs (one start-up's time, not three)
        seconds = {name: subprocess.Popen(AMGT_STUDY + cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True)
                   for name, cmd in (("status", ["status", "twod"]), ("run", ["run", str(path)]),
                                     ("resume", ["resume", "twod"]))}
        outs = {name: p.communicate(timeout=120) for name, p in seconds.items()}
        st_out, st_err = outs.pop("status")
        assert f"twod (ablation on digits-cnn): running (driver pid {first.pid}" in st_out, st_out + st_err
        for name, (out, err) in outs.items():
            second = subprocess.CompletedProcess(name, seconds[name].returncode, out, err)
            assert second.returncode == 1, second.stdout[-2000:] + second.stderr[-2000:]
            (line,) = [ln for ln in second.stderr.splitlines() if ln.startswith("error: ")]
            assert f"is being run by another driver (pid {first.pid} on" in line
        assert first.wait(timeout=400) == 0, log.read_text()[-3000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    figures = _figures(uri, "twod", planned=4)
    assert figures["finished"] == 4 and figures["duplicates"] == 0 and figures["running"] == 0, figures
    st = subprocess.run(AMGT_STUDY + ["status", "twod"], cwd=tmp_path, env=env, capture_output=True, text=True,
                        timeout=120)
    assert "twod (ablation on digits-cnn): done;" in st.stdout, st.stdout


def test_a_dead_drivers_study_is_taken_over(tmp_path):
    """SIGKILL the driver: status says the driver is dead (not "running"); resume takes the lease over."""
    env = _env()
    path = _study(tmp_path / "d.yaml", "dead", kind="ablation", search=None, optimizers=["adam"], seeds=2,
                  epochs=20, max_concurrent_trials=1)
    log = tmp_path / "run.log"
    proc = subprocess.Popen(AMGT_STUDY + ["run", str(path)], cwd=tmp_path, env=env, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    db = tmp_path / "mlflow.db"
    import sqlite3

    def running() -> bool:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
                return conn.execute("SELECT count(*) FROM runs r JOIN metrics m ON m.run_uuid = r.run_uuid "
                                    "WHERE r.status = 'RUNNING'").fetchone()[0] > 0
        except sqlite3.Error:
            return False

    try:
        _wait_for(running, proc, log)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    st = subprocess.run(AMGT_STUDY + ["status", "dead"], cwd=tmp_path, env=env, capture_output=True, text=True,
                        timeout=120)
    assert "dead (ablation on digits-cnn): driver dead;" in st.stdout and "amgt-study resume dead" in st.stdout, st.stdout
    res = subprocess.run(AMGT_STUDY + ["resume", "dead"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    figures = _figures(f"sqlite:///{db}", "dead", planned=2)
    assert figures["finished"] == 2 and figures["duplicates"] == 0 and figures["running"] == 0, figures


@pytest.mark.parametrize("moment", ["mid-search", "at-lease"])
def test_raylet_loss_is_one_line_and_closes_the_runs(tmp_path, moment):
    """SIGKILL the raylet of the driver's local Ray mid-search, or as soon as the driver holds the study's lease
    (before its first trial run): the driver ends at once with exit 1 and one `error:` line of ours (no
    traceback), its runs closed KILLED and its lease given back (status: incomplete, or not started when no
    phase had opened; never "driver dead"); `resume` then finishes every planned trial once."""
    import psutil

    import tracking

    env = _env()
    path = _study(tmp_path / "rl.yaml", "rayletloss", optimizers=["adam"], seeds=1, epochs=30,
                  max_concurrent_trials=1)
    log, err = tmp_path / "run.log", tmp_path / "run.err"
    proc = subprocess.Popen(AMGT_STUDY + ["run", str(path)], cwd=tmp_path, env=env, stdout=open(log, "w"),
                            stderr=open(err, "w"), start_new_session=True)
    db = tmp_path / "mlflow.db"
    import sqlite3

    def trial_running() -> bool:  # a trial's run has logged an epoch
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
                return conn.execute(
                    "SELECT count(*) FROM runs r JOIN metrics m ON m.run_uuid = r.run_uuid JOIN tags t ON "
                    "t.run_uuid = r.run_uuid AND t.key = 'role' AND t.value = 'trial' WHERE r.status = 'RUNNING'"
                ).fetchone()[0] > 0
        except sqlite3.Error:
            return False

    def leased() -> bool:
        try:
            exp = tracking.get_client(f"sqlite:///{db}").get_experiment_by_name("rayletloss")
        except Exception:  # noqa: BLE001 - the store is being created
            return False
        return exp is not None and "amgt.lease" in exp.tags

    try:
        _wait_for(trial_running if moment == "mid-search" else leased, proc, log)
        (raylet,) = [p for p in psutil.Process(proc.pid).children(recursive=True) if p.name() == "raylet"]
        raylet.kill()
        t0 = time.time()
        rc = proc.wait(timeout=90)
        took = time.time() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    stderr = err.read_text()
    assert rc == 1, (rc, stderr[-3000:], log.read_text()[-3000:])
    (line,) = [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
    assert "lost the Ray node this driver runs on (its raylet, pid" in line and "amgt-study resume rayletloss" in line
    assert "Traceback" not in stderr + log.read_text(), stderr[-3000:]
    figures = _figures(f"sqlite:///{db}", "rayletloss", planned=3)
    print(f"\nraylet killed {moment}: driver ended {took:.1f} s later, exit {rc}; {figures}")
    assert figures["running"] == 0, figures
    client = tracking.get_client(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("rayletloss")
    assert "amgt.lease" not in exp.tags
    assert not client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")  # parent runs too
    st = subprocess.run(AMGT_STUDY + ["status", "rayletloss"], cwd=tmp_path, env=env, capture_output=True,
                        text=True, timeout=120)
    states = ("incomplete",) if moment == "mid-search" else ("incomplete", "not started")
    assert any(f"rayletloss (comparison on digits-cnn): {s};" in st.stdout for s in states), st.stdout
    res = subprocess.run(AMGT_STUDY + ["resume", "rayletloss"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    figures = _figures(f"sqlite:///{db}", "rayletloss", planned=3)
    assert figures["finished"] == 3 and figures["duplicates"] == 0 and figures["running"] == 0, figures


def test_a_node_lost_while_a_phase_opens_closes_that_phase(tmp_path, monkeypatch):
    """The lost-node path (study/interrupts.py abandon) runs on the watchdog's thread while the main thread may be
    opening a phase (CI once saw a parent run left RUNNING when the raylet died as the lease was taken): it waits
    for that parent run to be recorded, ends it KILLED, and no phase opens after it."""
    import types

    import tracking
    from study import interrupts, runner
    from study.identity import study_identity
    from study.loading import load_study
    from study.plan import StudyContext, base_trial_config
    from study.stores import create_records, resolve_stores

    cfg = load_study(_study(tmp_path / "s.yaml", "opening"))
    stores = resolve_stores(f"sqlite:///{tmp_path / 'mlflow.db'}")
    identity = study_identity(cfg)
    experiment_id = create_records(stores, cfg.name, identity, "name: opening\n")
    ctx = StudyContext(study=cfg.name, kind=cfg.kind, tracking_uri=stores.tracking_uri, experiment_id=experiment_id,
                       base=base_trial_config(cfg), fingerprint=identity.fingerprint, git_sha="test",
                       search_metric=cfg.search.metric, early_stopping=False, optimizer_refs={})
    guard = threading.Lock()
    phases = runner.Phases(cfg, stores, ctx, guard)
    real, entered = tracking.start_parent_run, threading.Event()

    def slow_start(*args, **kwargs):  # the store call under way when the node is lost
        entered.set()
        time.sleep(0.5)
        return real(*args, **kwargs)

    class Exited(Exception):
        pass

    def fake_exit(code):
        raise Exited(code)

    monkeypatch.setattr(tracking, "start_parent_run", slow_start)
    monkeypatch.setattr(interrupts.os, "_exit", fake_exit)
    opening = threading.Thread(target=phases.open, args=("search",))
    opening.start()
    assert entered.wait(30)
    lease = types.SimpleNamespace(release=lambda: None)
    with pytest.raises(Exited):
        interrupts.abandon(cfg.name, stores, experiment_id, [types.SimpleNamespace(phases=phases)], lease, None,
                        "raylet pid 0 gone", guard)
    opening.join(30)
    client = tracking.get_client(stores.tracking_uri)
    (parent,) = client.search_runs([experiment_id])
    assert parent.info.status == "KILLED" and "lost the driver's Ray node" in parent.data.tags.get("error", ""), \
        (parent.info.status, parent.data.tags)
    later = threading.Thread(target=phases.open, args=("final",), daemon=True)
    later.start()
    later.join(1.0)
    assert later.is_alive()  # no phase opens once the node is lost (the process is about to end)
    assert len(client.search_runs([experiment_id])) == 1
    guard.release()
    later.join(30)


def test_an_unreachable_ray_address_is_one_line_in_seconds(tmp_path):
    path = _study(tmp_path / "r.yaml", "noray", kind="ablation", search=None, optimizers=["adam"], seeds=1)
    for address in (f"127.0.0.1:{_free_port()}", "198.51.100.1:6379"):  # refused; silently dropped (TEST-NET-2)
        t0 = time.time()
        out = subprocess.run(AMGT_STUDY + ["run", str(path), "--ray-address", address], cwd=tmp_path, env=_env(),
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 1 and time.time() - t0 < 60, out.stderr[-2000:]
        (line,) = [ln for ln in out.stderr.splitlines() if ln.startswith("error: ")]
        assert f"cannot connect to Ray at '{address}'" in line


def test_optuna_schema_creation_is_serialised(pg2):
    """16 processes opening one fresh Optuna database at once all succeed (Optuna alone: some fail with
    `duplicate key value violates unique constraint "pg_type_typname_nsp_index"`)."""
    url = pg2.createdb("race")
    code = ("import sys; from study.optuna_store import open_optuna_study; "
            "open_optuna_study(sys.argv[1], 'race', direction='maximize', fingerprint='f')")
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(16)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert all(rc == 0 for rc, _ in results), [err[-500:] for rc, err in results if rc]
