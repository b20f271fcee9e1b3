"""MLflow as the study's dashboard, read back through MlflowClient after a tiny quickstart-like study: the
phase parent runs carry summary metrics, notes and the chosen configurations; every trial run has its
dataset input, its optimizer's full settings, a short name and its final values at step 0; the experiment
opens in the training layout; the saved runs view groups by optimizer; the report is logged as HTML."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DESCRIPTION = "Digits, amgt against sgd, a dashboard test."


@pytest.fixture(scope="module")
def study_store(tmp_path_factory, ray_local):
    """The quickstart cut to two optimizers, 2 search trials each, 2 final seeds, 2 epochs (SQLite)."""
    from study.loading import load_study
    from study.runner import run_study

    tmp = tmp_path_factory.mktemp("dash")
    uri, storage = f"sqlite:///{tmp}/mlflow.db", f"sqlite:///{tmp}/optuna.db"
    cfg = load_study(Path(__file__).resolve().parents[1] / "studies" / "quickstart.yaml", name="dash",
                     sets=["optimizers=[amgt, sgd]", "epochs=2", "batch_size=256", "seeds=2",
                           f"description={DESCRIPTION}"])
    run_study(cfg, tracking_uri=uri, optuna_storage=storage, echo=lambda line: None)
    return uri, storage, tmp


def _client(uri):
    import tracking

    return tracking.get_client(uri)


def _runs(uri, flt):
    c = _client(uri)
    exp = c.get_experiment_by_name("dash")
    return c.search_runs([exp.experiment_id], filter_string=flt, max_results=1000)


def _parent(uri, phase):
    (run,) = _runs(uri, f"tags.role = 'parent' and tags.phase = '{phase}'")
    return run


def test_parent_runs_carry_the_summary(study_store):
    from scipy import stats

    uri, storage, _ = study_store
    final = _parent(uri, "final")
    for opt in ("amgt", "sgd"):
        runs = _runs(uri, f"tags.role = 'trial' and tags.phase = 'final' and tags.optimizer = '{opt}'")
        values = [r.data.metrics["test_accuracy"] for r in runs]
        assert len(values) == 2
        m = final.data.metrics
        mean, sd = statistics.mean(values), statistics.stdev(values)
        assert m[f"{opt}.test_accuracy_mean"] == pytest.approx(mean)
        assert m[f"{opt}.n"] == 2 and m[f"{opt}.trials"] == 2 and m[f"{opt}.failed"] == 0 and m[f"{opt}.diverged"] == 0
        if sd > 0:
            low, high = stats.t.interval(0.95, 1, loc=mean, scale=sd / math.sqrt(2))
            assert (m[f"{opt}.test_accuracy_ci_low"], m[f"{opt}.test_accuracy_ci_high"]) == (
                pytest.approx(low), pytest.approx(high))
        assert f"{opt}.val_accuracy_mean" in m
        history = _client(uri).get_metric_history(final.info.run_id, f"{opt}.test_accuracy_mean")
        assert [h.step for h in history] == [0]

    search = _parent(uri, "search")
    for opt in ("amgt", "sgd"):
        runs = _runs(uri, f"tags.role = 'trial' and tags.phase = 'search' and tags.optimizer = '{opt}'")
        assert search.data.metrics[f"{opt}.val_accuracy_best"] == pytest.approx(
            max(r.data.metrics["val_accuracy"] for r in runs))
        assert search.data.metrics[f"{opt}.trials"] == 2

    # the chosen configuration: params on both parents, the JSON artifact on the final one
    import optuna

    for opt in ("amgt", "sgd"):
        best = optuna.load_study(study_name=f"dash/{opt}", storage=storage).best_trial
        for run in (final, search):
            assert float(run.data.params[f"best.{opt}.lr"]) == pytest.approx(best.params["lr"])
            assert run.data.params[f"best.{opt}.optuna_trial"] == str(best.number)

    # descriptions: the study's own, on the experiment and on every parent run with what the phase does
    c = _client(uri)
    exp = c.get_experiment_by_name("dash")
    assert exp.tags["mlflow.note.content"] == DESCRIPTION
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    for run in (final, search):
        note = run.data.tags["mlflow.note.content"]
        assert note.startswith(DESCRIPTION) and f"**{run.data.tags['phase']}**" in note


def test_every_trial_logs_dataset_settings_name_and_final_values(study_store):
    import amgt
    import torch

    from workers.provenance import data_identity

    uri, storage, _ = study_store
    c = _client(uri)
    identity = data_identity("digits-cnn")
    runs = _runs(uri, "tags.role = 'trial'")
    assert len(runs) == 8
    for r in runs:
        # the dataset input: name, digest of the content, split sizes (the Datasets column and its filter)
        (d,) = r.inputs.dataset_inputs
        assert (d.dataset.name, d.dataset.digest) == ("digits", identity.digest[:16])
        assert [t.value for t in d.tags if t.key == "mlflow.data.context"] == ["training"]
        profile = json.loads(d.dataset.profile)
        assert profile["sha256"] == identity.digest
        assert profile["train_rows"] + profile["validation_rows"] + profile["test_rows"] == 1797 == profile["num_rows"]

        # every setting of the optimizer it built, defaults and pinned values included
        opt = r.data.tags["optimizer"]
        hp = {k[3:]: float(v) for k, v in r.data.params.items() if k.startswith("hp.")}
        built = amgt.build_optimizer(opt, [torch.zeros(1, requires_grad=True)], **hp).defaults
        for key, value in built.items():
            if value is not None:
                logged = r.data.params[f"optim.{key}"]
                assert logged == (json.dumps(list(value)) if isinstance(value, tuple) else str(value)), key
        if opt == "sgd":
            assert r.data.params["optim.momentum"] == "0.9" and r.data.params["optim.nesterov"] == "False"
        else:
            assert r.data.params["optim.betas"] == "[0.9, 0.999]" and "optim.eps" in r.data.params

        # a short name that starts with what tells the runs apart
        phase = r.data.tags["phase"]
        expected = (f"{opt} search#{r.data.tags['optuna_trial_number']}" if phase == "search"
                    else f"{opt} seed{r.data.tags['seed']}")
        assert r.info.run_name == expected

        # the final values at step 0 (bar charts), the per-epoch ones at steps 1..epochs (line charts)
        assert [h.step for h in c.get_metric_history(r.info.run_id, "results/test_accuracy")] == [0]
        assert r.data.metrics["results/test_accuracy"] == r.data.metrics["test_accuracy"]
        assert [h.step for h in c.get_metric_history(r.info.run_id, "best_val_accuracy")] == [0]
        assert sorted(h.step for h in c.get_metric_history(r.info.run_id, "val_accuracy")) == [1, 2]

    # each Optuna trial records the MLflow run that holds it
    import optuna

    by_number = {(r.data.tags["optimizer"], int(r.data.tags["optuna_trial_number"])): r.info.run_id
                 for r in runs if r.data.tags["phase"] == "search"}
    for opt in ("amgt", "sgd"):
        for t in optuna.load_study(study_name=f"dash/{opt}", storage=storage).get_trials():
            assert t.user_attrs["mlflow_run_id"] == by_number[(opt, t.number)]


def test_results_records_and_the_saved_runs_view(study_store):
    from study.cli import _study_view
    from study.formatting import results_lines
    from study.summary import study_results

    uri, _, _ = study_store
    res = study_results(uri, "dash")
    assert (res.phase, res.metric, res.higher_is_better) == ("final", "test_accuracy", True)
    assert sorted(g.group for g in res.groups) == ["amgt", "sgd"]
    best = res.ranked()[0]
    assert best.metrics["test_accuracy"].mean == max(g.metrics["test_accuracy"].mean for g in res.groups)
    assert best.hparams["lr"] == _parent(uri, "final").data.params[f"best.{best.group}.lr"]
    lines = results_lines(res, ui_command="amgt-study ui dash", report_command="amgt-study report dash")
    assert lines[1].split()[:2] == ["optimizer", "configuration"] and " [" in lines[2] and "%" in lines[2]

    out = _study_view(uri, "dash", "http://127.0.0.1:5000")
    exp = _client(uri).get_experiment_by_name("dash")
    assert out[0] == (f"study dash: http://127.0.0.1:5000/#/experiments/{exp.experiment_id}/runs?workflowType="
                      "machine_learning&viewStateShareKey=amgt-study&compareRunsMode=CHART")
    view = json.loads(exp.tags["mlflow.sharedViewState.amgt-study"])
    assert view["groupBy"] == {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": "optimizer"}]}
    assert view["searchFilter"] == "tags.role = 'trial' and tags.phase = 'final'"
    assert view["orderByKey"] == "metrics.`results/test_accuracy`" and view["orderByAsc"] is False
    assert "metrics.`results/test_accuracy`" in view["selectedColumns"]
    # the filter is one MLflow accepts, and it selects the final trials
    assert len(_runs(uri, view["searchFilter"])) == 4


def test_report_html_is_an_artifact_of_the_final_parent_run(study_store):
    """What the MLflow UI opens in its artifact view: the self-contained report.html under report/."""
    from tracking.reports import build_report

    uri, storage, tmp = study_store
    build_report(["dash"], tracking_uri=uri, out_dir=tmp / "report", formats=("html",), optuna_storage=storage)
    final = _parent(uri, "final")
    paths = {a.path for a in _client(uri).list_artifacts(final.info.run_id, "report")}
    assert "report/report.html" in paths
    from study.summary import study_results

    assert study_results(uri, "dash").report_artifact == f"runs:/{final.info.run_id}/report/report.html"


def test_system_metrics_are_opt_in(tmp_path, monkeypatch):
    """With system metrics on, MLflow's monitor logs system/* metrics on the trial's run while it is open."""
    import time

    import tracking

    pytest.importorskip("psutil")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    exp = tracking.get_or_create_experiment("sysm", uri)
    off = tracking.TrialLogger(uri, exp, None, trial_key="sysm/x/off")
    assert off.system_metrics is False  # MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING unset: off
    on = tracking.TrialLogger(uri, exp, None, trial_key="sysm/x/on", system_metrics=True)
    on.start()
    time.sleep(3)
    on.finish({"epochs_completed": 1}, outcome="completed")
    run = tracking.get_client(uri).get_run(on.run_id)
    assert run.info.status == "FINISHED"
    assert any(k.startswith("system/") for k in run.data.metrics), sorted(run.data.metrics)
