"""One study, one identity: changed settings under a name are refused with nothing written; a study is found
from its stores alone (any directory); the MLflow store and the Optuna storage must hold the same study;
validation that tells the truth (real SQLite/PostgreSQL, a local Ray; tiny budgets)."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from study.cli import cli
from study.config import StudyConfigError
from study.errors import StoresDisagreeError, StudyIdentityError, StudyRunError
from study.loading import parse_study
from study.runner import run_study

pytestmark = pytest.mark.slow
PG_ADMIN_URL = os.environ.get("AMGT_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
AMGT_STUDY = [sys.executable, "-c", "from study.cli import main; main()"]


def tiny(name: str, **over) -> dict:
    data = {"name": name, "kind": "comparison", "benchmark": "digits-cnn", "epochs": 1, "batch_size": 256,
            "max_steps": 3, "optimizers": ["adam", "sgd"], "search": {"trials_per_optimizer": 2}, "seeds": 1,
            "resources": {"cpus": 1}}
    data.update(over)
    return data


def runs_of(uri: str, study: str):
    import tracking

    c = tracking.get_client(uri)
    exp = c.get_experiment_by_name(study)
    return [] if exp is None else c.search_runs([exp.experiment_id], max_results=1000)


def optuna_trial_count(storage: str, name: str) -> int:
    import optuna

    return len(optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False))


def cli_in(cwd: Path, *args: str, timeout: int = 400) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "AMGT_OPTUNA_STORAGE")}
    return subprocess.run(AMGT_STUDY + list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_changed_settings_under_a_name_are_refused_and_nothing_is_written(tmp_path, ray_local):
    uri, storage = f"sqlite:///{tmp_path}/mlflow.db", f"sqlite:///{tmp_path}/optuna.db"
    cfg = parse_study(tiny("ident"))
    run_study(cfg, tracking_uri=uri, optuna_storage=storage, echo=lambda s: None)
    before = sorted(r.info.run_id for r in runs_of(uri, "ident"))
    assert len(before) == 2 * 2 + 2 + 2  # 4 search + 2 final trials + 2 parent runs
    trials_before = optuna_trial_count(storage, "ident/adam")

    for change in ({"epochs": 2}, {"seeds": 3}, {"optimizers": ["adam", {"name": "sgd", "hparams": {"momentum": 0.5}}]},
                   {"search": {"trials_per_optimizer": 3}}):
        with pytest.raises(StudyIdentityError) as info:
            run_study(parse_study(tiny("ident", **change)), tracking_uri=uri, optuna_storage=storage,
                      echo=lambda s: None)
        msg = str(info.value)
        assert "was run with other settings" in msg and "--name ident-2" in msg and "amgt-study resume ident" in msg
        field = next(iter(change))
        assert field in msg, msg  # names what differs
    assert sorted(r.info.run_id for r in runs_of(uri, "ident")) == before
    assert optuna_trial_count(storage, "ident/adam") == trials_before

    # --set without --name follows the same rule, and so does --dry-run (it checks the stores, read only)
    path = tmp_path / "ident.yaml"
    path.write_text(yaml.safe_dump(tiny("ident")))
    for extra in ([], ["--dry-run"]):
        res = CliRunner().invoke(cli, ["run", str(path), "--set", "epochs=4", "--tracking-uri", uri,
                                       "--optuna-storage", storage, *extra])
        assert res.exit_code == 1, res.output
        assert "epochs 1 -> 4" in res.output and "error:" in res.output
    # the same settings resume: nothing to launch, no new runs; status never counts more than planned
    again = run_study(cfg, tracking_uri=uri, optuna_storage=storage, echo=lambda s: None)
    assert again["search"].launched == 0 and again["final"].launched == 0
    assert sorted(r.info.run_id for r in runs_of(uri, "ident")) == before
    from study.status import study_status
    from study.stores import resolve_stores

    status = study_status(resolve_stores(uri, storage), "ident")
    assert status.state == "done"
    assert all(c.finished <= c.planned for c in status.counts.values())
    assert status.total.finished == status.total.planned == 6


def test_state_lives_in_the_stores_not_in_a_directory(tmp_path):
    """Run in one directory; status, resume and report from another with only the tracking URI."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "where.yaml").write_text(yaml.safe_dump(tiny("where", optimizers=["adam"])))
    out = cli_in(first, "run", "where.yaml")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert sorted(p.name for p in first.iterdir()) == ["mlartifacts", "mlflow.db", "optuna.db", "where.yaml"]
    uri = f"sqlite:///{first}/mlflow.db"

    # a final run lost (as if the driver had died before it): resume from elsewhere runs just that one
    import tracking

    c = tracking.get_client(uri)
    (lost,) = [r for r in runs_of(uri, "where") if r.data.tags.get("phase") == "final" and r.data.tags["role"] == "trial"]
    c.delete_run(lost.info.run_id)

    st = cli_in(second, "status", "where", "--tracking-uri", uri)
    assert st.returncode == 0, st.stderr
    assert "incomplete" in st.stdout and "best adam" in st.stdout  # Optuna found beside the recorded mlflow.db
    res = cli_in(second, "resume", "where", "--tracking-uri", uri)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "[where search] adam: 2/2 trials already done" in res.stdout
    assert "[where final] launching 1 of 1 planned trials" in res.stdout
    st = cli_in(second, "status", "where", "--tracking-uri", uri)
    assert "where (comparison on digits-cnn): done" in st.stdout, st.stdout
    rep = cli_in(second, "report", "where", "--tracking-uri", uri, "--out", str(second / "rep"), "--format", "md")
    assert rep.returncode == 0, rep.stderr[-2000:]
    assert (second / "rep" / "report.md").is_file()
    assert sorted(p.name for p in second.iterdir()) == ["rep"]  # nothing else written here
    finished = collections.Counter(r.data.tags["phase"] for r in runs_of(uri, "where")
                                   if r.info.status == "FINISHED" and r.data.tags["role"] == "trial")
    assert finished == {"search": 2, "final": 1}


def test_stores_that_disagree_are_refused(tmp_path, ray_local):
    a, b, c = (tmp_path / n for n in "abc")
    for d in (a, b, c):
        d.mkdir()
    run_study(parse_study(tiny("pair", optimizers=["adam"])), tracking_uri=f"sqlite:///{a}/mlflow.db",
              optuna_storage=f"sqlite:///{a}/optuna.db", echo=lambda s: None)
    # a fresh MLflow store with the Optuna storage that holds the study
    with pytest.raises(StoresDisagreeError) as info:
        run_study(parse_study(tiny("pair", optimizers=["adam"])), tracking_uri=f"sqlite:///{b}/mlflow.db",
                  optuna_storage=f"sqlite:///{a}/optuna.db", echo=lambda s: None)
    assert f"{a}/optuna.db" in str(info.value) and f"{b}/mlflow.db" in str(info.value)
    assert list(b.iterdir()) == []
    # the MLflow store that holds the study's search trials with an Optuna storage that does not
    with pytest.raises(StoresDisagreeError) as info:
        run_study(parse_study(tiny("pair", optimizers=["adam"])), tracking_uri=f"sqlite:///{a}/mlflow.db",
                  optuna_storage=f"sqlite:///{c}/optuna.db", echo=lambda s: None)
    assert "holds search trials" in str(info.value) and f"{a}/optuna.db" in str(info.value)  # names the recorded one
    assert list(c.iterdir()) == []


def test_postgresql_default_optuna_storage_is_its_own_database_on_the_same_server(tmp_path, ray_local, monkeypatch):
    """No Optuna storage given with a PostgreSQL tracking URI: database <mlflow db>_optuna on the same server,
    created on first use; never a file in the working directory."""
    psycopg = pytest.importorskip("psycopg")
    monkeypatch.setenv("AMGT_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.delenv("AMGT_OPTUNA_STORAGE", raising=False)
    monkeypatch.chdir(tmp_path)
    name = f"amgt_ident_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        uri = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        run_study(parse_study(tiny("pgdef", optimizers=["adam"], search={"trials_per_optimizer": 1})), tracking_uri=uri,
                  echo=lambda s: None)
        assert optuna_trial_count(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}_optuna", "pgdef/adam") == 1
        assert not (tmp_path / "optuna.db").exists()
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            for db in (name, f"{name}_optuna"):
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def test_an_http_tracking_uri_needs_an_optuna_storage_for_a_search():
    from study.stores import require_optuna, resolve_stores

    stores = resolve_stores("http://127.0.0.1:5000")
    assert stores.optuna_storage is None
    with pytest.raises(StudyRunError, match="--optuna-storage or \\$AMGT_OPTUNA_STORAGE"):
        require_optuna(stores)


def test_search_metric_must_be_one_the_benchmark_reports():
    for bench, metric in (("rosenbrock", "val_loss"), ("quadratic-4.10.1", "val_accuracy"),
                          ("digits-cnn", "test_accuracy"), ("digits-cnn", "train_loss")):
        data = tiny("m", benchmark=bench, search={"trials_per_optimizer": 1, "metric": metric})
        with pytest.raises(StudyConfigError,
                           match=f"field search.metric: '{metric}' is not a selection metric of benchmark"):
            parse_study(data)
    assert parse_study(tiny("m", benchmark="rosenbrock", search={"trials_per_optimizer": 1, "metric": "grad_norm"}))


def test_the_searcher_never_fails_on_a_result_without_the_metric(tmp_path):
    """A result without the search metric is FAIL with user attr metric_missing; a non-finite one FAIL with
    diverged; a finite one COMPLETE; a trial error FAIL.  Selection: best value, ties to the lowest number."""
    from optuna.trial import TrialState

    from study.plan import PlannedTrial, SearchTarget
    from study.search import best_trial
    from study.searcher import OptunaStudiesSearch

    cfg = parse_study(tiny("srch", optimizers=["adam"], search={"trials_per_optimizer": 5}))
    url = f"sqlite:///{tmp_path}/optuna.db"
    target = SearchTarget("digits-cnn", 1_000_000, {}, "srch/adam")
    searcher = OptunaStudiesSearch.for_study(cfg, url, "fp", {"adam": 5}, {"adam": 0}, {"adam": target}, "P")
    configs = [searcher.suggest(f"t{i}") for i in range(5)]
    assert searcher.suggest("t5") is None  # budget spent, trials still running: not ready (one may be requeued)
    planned = [PlannedTrial.from_dict(c["trial"]) for c in configs]
    assert [p.optuna_trial_number for p in planned] == [0, 1, 2, 3, 4] and planned[0].seed == 1_000_000
    assert all(p.parent_run == "P" and p.trial_key == f"srch/search/adam/{i}" for i, p in enumerate(planned))
    searcher.on_trial_complete("t0", {"epoch": 1})                       # no metric
    searcher.on_trial_complete("t1", {"val_accuracy": float("nan")})     # diverged
    searcher.on_trial_complete("t2", {"val_accuracy": 0.5, "mlflow_run_id": "R2"})
    searcher.on_trial_complete("t3", {"val_accuracy": 0.5})               # a tie: trial 2 stays the choice
    searcher.on_trial_complete("t4", None, error=True)
    import optuna

    ostudy = optuna.load_study(study_name="srch/adam", storage=url)
    trials = ostudy.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE,
                                         TrialState.FAIL]
    assert trials[0].user_attrs["metric_missing"] == "val_accuracy" and trials[1].user_attrs["diverged"]
    assert trials[2].user_attrs["mlflow_run_id"] == "R2"
    assert best_trial(ostudy, "max").number == 2 and searcher.finished
    assert ostudy.user_attrs["amgt.fingerprint"] == "fp"
    # a trial that failed because a store stayed unreachable gives its budget back and is proposed again
    searcher.requeue("t4")
    assert not searcher.finished and ostudy.user_attrs["interrupted_trials"] == [4]
    again = PlannedTrial.from_dict(searcher.suggest("t6")["trial"])
    assert again.optuna_trial_number == 5
    searcher.on_trial_complete("t6", {"val_accuracy": 0.4})
    assert searcher.suggest("t7") == searcher.FINISHED
    from study.search import counted_trials

    assert len(counted_trials(ostudy)) == 5  # the budget: trial 4 is not counted


def test_dry_run_checks_the_stores(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump(tiny("dry")))
    res = CliRunner().invoke(cli, ["run", str(path), "--dry-run", "--tracking-uri",
                                   "postgresql+psycopg://postgres@127.0.0.1:1/nodb"])
    assert res.exit_code == 1 and "unreachable" in res.output and "127.0.0.1:1" in res.output
    res = CliRunner().invoke(cli, ["run", str(path), "--dry-run", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    assert res.exit_code == 0, res.output
    assert "stores (checked, read only)" in res.output and "nothing yet (a new study)" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.yaml"]


def test_a_shorter_search_trains_its_own_epochs(tmp_path, ray_local):
    """search.epochs: the search trials train fewer epochs than the final ones; both are recorded."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = parse_study(tiny("short", optimizers=["adam"], epochs=2, max_steps=None, batch_size=512,
                           search={"trials_per_optimizer": 1, "epochs": 1}))
    run_study(cfg, tracking_uri=uri, echo=lambda s: None)
    runs = [r for r in runs_of(uri, "short") if r.data.tags["role"] == "trial"]
    epochs = {r.data.tags["phase"]: r.data.params["epochs"] for r in runs}
    assert epochs == {"search": "1", "final": "2"}
    parents = {r.data.tags["phase"]: r for r in runs_of(uri, "short") if r.data.tags["role"] == "parent"}
    assert parents["search"].data.params["search_epochs"] == "1" and parents["search"].data.params["epochs"] == "2"


def test_an_optimizer_added_or_removed_is_one_change_named_so():
    """The refusal names `optimizers.sgd removed` / `optimizers.nadam added`, not each of their leaves as
    `null -> null`."""
    from study.identity import ABSENT, describe_changes, diff_identity

    space = {"lr": {"low": 1e-4, "high": 1.0, "log": True, "step": None}}
    recorded = {"epochs": 3, "optimizers": {"adam": {"hparams": {}, "search_space": space},
                                            "sgd": {"hparams": {}, "search_space": space}}}
    requested = {"epochs": 5, "optimizers": {"adam": {"hparams": {}, "search_space": space},
                                             "nadam": {"hparams": {"lr": 1e-3}, "search_space": {}}}}
    changes = diff_identity(recorded, requested)
    assert [(c.field, c.recorded == ABSENT, c.requested == ABSENT) for c in changes] == [
        ("epochs", False, False), ("optimizers.nadam", True, False), ("optimizers.sgd", False, True)]
    text = describe_changes(changes)
    assert text == "epochs 3 -> 5, optimizers.nadam added, optimizers.sgd removed" and "null" not in text
    assert diff_identity(recorded, recorded) == []
    # a value that is null on one side and set on the other is still a change of that field
    assert [c.field for c in diff_identity({"target": None}, {"target": 0.9})] == ["target"]


def test_changed_optimizer_code_names_the_way_out_that_works(tmp_path, monkeypatch):
    """An import-path optimizer whose source changed since the study ran: `resume` would meet the same
    difference, so the refusal says to restore the code (or start over under a new name), not to resume."""
    from study.identity import study_identity
    from study.runner import stores_for
    from study.stores import check_agreement, create_records

    module = tmp_path / "mineopt.py"
    module.write_text("import torch\n\n\nclass MyAdam(torch.optim.Adam):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    data = tiny("codechange", optimizers=[{"name": "mine", "class": "mineopt:MyAdam"}])
    cfg = parse_study(data)
    stores = stores_for(cfg, cfg.name, f"sqlite:///{tmp_path}/mlflow.db", f"sqlite:///{tmp_path}/optuna.db")
    create_records(stores, cfg.name, study_identity(cfg), yaml.safe_dump(data))

    module.write_text("import torch\n\n\nclass MyAdam(torch.optim.Adam):\n    pass  # edited\n")
    with pytest.raises(StudyIdentityError) as info:
        check_agreement(stores, cfg.name, study_identity(cfg), [])
    msg = str(info.value)
    assert "was run with other code or data (optimizers.mine.class.source_sha256 " in msg, msg
    assert "restore the code, packages and data it was run with" in msg and "--name codechange-2" in msg
    assert "amgt-study resume" not in msg

    edited = parse_study({**data, "epochs": 2})  # a setting changed as well: the settings message
    with pytest.raises(StudyIdentityError) as info:
        check_agreement(stores, cfg.name, study_identity(edited), [])
    assert "was run with other settings (epochs 1 -> 2, optimizers.mine.class.source_sha256" in str(info.value)
