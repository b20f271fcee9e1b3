"""tracking.query on real MLflow stores (SQLite in tmp_path, and the local PostgreSQL)."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from tracking import query
from tracking.reports.synthetic import Effect, write_study

logging.getLogger("alembic").setLevel(logging.WARNING)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("query") / "mlflow.db"
    uri = f"sqlite:///{path}"
    write_study(uri, "alpha", effects={"amgt": Effect(accuracy=0.99), "adam": Effect(accuracy=0.98)},
                n_search=3, seeds=range(2), epochs=3)
    write_study(uri, "beta", kind="ablation", effects={"amgt": Effect(), "amgt-no-decay": Effect()},
                seeds=range(2), epochs=2, artifacts=False)
    return uri


def test_list_studies(store):
    assert query.list_studies(store) == ["alpha", "beta"]


def test_experiments_that_are_not_studies_are_neither_listed_nor_reported(tmp_path):
    """A shared MLflow server holds other projects' experiments: they are not studies (status, list, report)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    write_study(uri, "alpha", effects={"amgt": Effect(), "adam": Effect()}, n_search=1, seeds=range(1), epochs=1,
                artifacts=False)
    client = MlflowClient(uri)
    other = client.create_experiment("someone-elses-project")
    client.set_terminated(client.create_run(other, tags={"team": "vision"}).info.run_id)
    client.create_experiment("empty-one")
    assert query.list_studies(uri) == ["alpha"]
    with pytest.raises(query.UnknownStudyError, match="someone-elses-project") as info:
        query.experiment_ids(uri, ["alpha", "someone-elses-project"])
    assert "alpha" in str(info.value)
    assert query.experiment_ids(uri, "alpha") == {"alpha": client.get_experiment_by_name("alpha").experiment_id}


def test_load_runs_filters_by_tags_and_pages(store):
    trials = query.load_runs(store, "alpha", page_size=2)  # several pages
    assert len(trials) == 2 * 3 + 2 * 2
    assert set(trials["tags.phase"]) == {"search", "final"} and set(trials["tags.role"]) == {"trial"}
    final = query.load_runs(store, "alpha", phase="final")
    assert len(final) == 4 and set(final["tags.phase"]) == {"final"}
    assert final["metrics.test_accuracy"].dtype == float and final["start_time"].dt.tz is not None
    both = query.load_runs(store, ["alpha", "beta"], phase=["final", "ablation"])
    assert sorted(both.groupby("study").size().to_dict().items()) == [("alpha", 4), ("beta", 4)]
    parents = query.load_parent_runs(store, "alpha")
    assert sorted(parents["tags.phase"]) == ["final", "search"]


def test_load_runs_keeps_only_the_columns_asked(store):
    df = query.load_runs(store, "alpha", phase="final",
                         columns=["tags.optimizer", "params.hp.*", "metrics.test_accuracy", "metrics.nope"])
    assert list(df.columns) == ["run_id", "experiment_id", "study", "status", "start_time", "end_time",
                                "tags.optimizer", "metrics.test_accuracy", "metrics.nope", "params.hp.lr"]
    assert df["metrics.nope"].isna().all()


def test_unknown_study_lists_known(store):
    with pytest.raises(query.UnknownStudyError, match=r"'gamma'.*known studies: alpha, beta") as err:
        query.load_runs(store, ["alpha", "gamma"])
    assert err.value.known == ["alpha", "beta"]
    with pytest.raises(ValueError, match="phase 'finale' is not one of"):
        query.load_runs(store, "alpha", phase="finale")


def test_missing_sqlite_file_is_not_created(tmp_path):
    uri = f"sqlite:///{tmp_path / 'nope.db'}"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        query.list_studies(uri)
    assert not (tmp_path / "nope.db").exists()


def test_histories_from_metric_history_and_artifact_agree(store):
    ids = query.load_runs(store, "alpha", phase="final")["run_id"]
    metrics = ["train_loss", "val_accuracy", "epoch_time_s"]
    a = query.load_histories(store, ids, metrics, source="metric_history")
    b = query.load_histories(store, ids, metrics, source="artifact")
    assert list(a.columns) == ["run_id", "metric", "step", "value"]
    assert len(a) == 4 * 3 * 3 and sorted(a["step"].unique()) == [1, 2, 3]
    pd.testing.assert_frame_equal(a, b)
    assert query.load_histories(store, [], metrics).empty
    no_curves = query.load_runs(store, "beta")["run_id"]  # written without curves.csv: falls back
    pd.testing.assert_frame_equal(query.load_histories(store, no_curves, metrics, source="artifact"),
                                  query.load_histories(store, no_curves, metrics))
    with pytest.raises(ValueError, match="source 'x'"):
        query.load_histories(store, ids, metrics, source="x")


@pytest.mark.postgres
def test_postgresql_store(postgres_url):
    write_study(postgres_url, "pg", effects={"amgt": Effect(), "adam": Effect()}, n_search=2, seeds=range(2), epochs=2)
    assert "pg" in query.list_studies(postgres_url)
    runs = query.load_runs(postgres_url, "pg", phase="final", columns=["tags.optimizer", "metrics.test_accuracy"])
    assert len(runs) == 4 and runs["metrics.test_accuracy"].between(0.9, 1.0).all()
    hist = query.load_histories(postgres_url, runs["run_id"], ["val_accuracy"])
    assert len(hist) == 4 * 2
