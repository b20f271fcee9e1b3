"""The results table `run`/`resume` print, and the advice after planned trials did not complete (study/cli.py,
study/summary.py, study/formatting.py): every optimizer of the study is listed, and `resume` is suggested only
when it can run something (a new user saw an all-failing optimizer vanish and was told to resume in circles)."""

from __future__ import annotations

import pytest

from study.phases import PhaseSummary


@pytest.fixture
def flaky_study(tmp_path):
    """A comparison study as the runner records it: adam's search trial completed and it ran in the final phase
    over 2 seeds; nadam's two search trials failed, so it was not re-run."""
    import tracking
    from tracking.reports.synthetic import log_trial, start_parent

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = tracking.get_client(uri)
    exp = client.create_experiment("flaky")
    hist = [{"epoch": 1, "train_loss": 0.5, "val_accuracy": 0.9, "test_accuracy": 0.9, "epoch_time_s": 1.0}]
    search = start_parent(client, exp, study="flaky", phase="search", kind="comparison")
    log_trial(client, exp, search, study="flaky", phase="search", optimizer="adam", benchmark="digits-cnn", seed=0,
              hparams={"lr": 1e-3}, history=hist)
    for seed in (0, 1):
        log_trial(client, exp, search, study="flaky", phase="search", optimizer="nadam", benchmark="digits-cnn",
                  seed=seed, hparams={"lr": 1e-3 * (seed + 1)}, history=hist, outcome="failed")
    final = start_parent(client, exp, study="flaky", phase="final", kind="comparison")
    for seed in (10, 11):
        log_trial(client, exp, final, study="flaky", phase="final", optimizer="adam", benchmark="digits-cnn",
                  seed=seed, hparams={"lr": 1e-3}, history=hist, final={"test_accuracy": 0.9 + seed / 1000})
    return uri


def test_an_optimizer_whose_search_trials_all_failed_stays_in_the_table(flaky_study):
    from study.formatting import results_lines
    from study.summary import study_results

    res = study_results(flaky_study, "flaky")
    assert res.phase == "final" and [g.optimizer for g in res.ranked()] == ["adam", "nadam"]
    lines = results_lines(res, ui_command="ui", report_command="report")
    (nadam,) = [ln for ln in lines if ln.strip().startswith("nadam")]
    cells = nadam.split()
    assert "not re-run: no completed search trial" in nadam and cells[-3:] == ["0", "0", "2"], nadam  # n, div, failed
    assert "-" in cells  # no value, not a made-up one


def test_resume_is_advised_only_when_it_can_run_something(capsys, flaky_study):
    from study.cli import _finish

    def finish(summary) -> tuple[int, str]:
        with pytest.raises(SystemExit) as ended:
            _finish("flaky", summary, tracking_uri=flaky_study)
        (warning,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning: ")]
        return ended.value.code, warning

    search = PhaseSummary("search", planned={"adam": 1, "nadam": 2}, finished={"adam": 1}, failed={"nadam": 2})
    final = PhaseSummary("final", planned={"adam": 2, "nadam": 2}, finished={"adam": 2}, not_run={"nadam"})
    assert search.missing == 2 and final.missing == 2 and search.rerunnable == 0 and final.rerunnable == 0
    code, warning = finish({"search": search, "final": final})
    assert code == 3 and "4 planned trial(s) of study flaky did not complete" in warning
    assert "`resume` cannot add any" in warning and "--name flaky-2" in warning
    assert "amgt-study resume flaky`" not in warning

    # a failed final trial and an interrupted search trial: resume runs both
    search = PhaseSummary("search", planned={"adam": 2}, finished={"adam": 1}, interrupted={"adam": 1})
    final = PhaseSummary("final", planned={"adam": 2}, finished={"adam": 1}, failed={"adam": 1})
    code, warning = finish({"search": search, "final": final})
    assert code == 3 and "`amgt-study resume flaky` runs 2 of them again" in warning, warning


def test_status_counts_search_trials_asked_but_never_started(tmp_path):
    """A driver stopped while two search trials waited for a worker (asked of Optuna, no MLflow run yet): with
    no driver holding the study they are interrupted (what `resume` then replaces), and once replaced they count
    as replaced (a new user saw `0 interrupted` here, then `resume` replacing 2)."""
    import optuna

    from study.identity import study_identity
    from study.loading import dump_study, parse_study
    from study.plan import optuna_study_name
    from study.search import ATTR_INTERRUPTED
    from study.status import study_status
    from study.stores import create_records, resolve_stores

    cfg = parse_study({"name": "asked", "kind": "comparison", "benchmark": "digits-cnn", "epochs": 1,
                       "optimizers": ["adam"], "search": {"trials_per_optimizer": 3}, "seeds": 1})
    stores = resolve_stores(f"sqlite:///{tmp_path}/mlflow.db", f"sqlite:///{tmp_path}/optuna.db")
    create_records(stores, cfg.name, study_identity(cfg), dump_study(cfg))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ostudy = optuna.create_study(storage=stores.optuna_storage, study_name=optuna_study_name("asked", "adam"),
                                 direction="maximize")
    first, second = ostudy.ask(), ostudy.ask()
    c = study_status(stores, "asked").counts[("search", "adam")]
    assert (c.planned, c.interrupted, c.running, c.attempts, c.replaced) == (3, 2, 0, 0, 0), c
    # what `resume` does first (study/search.py settle_interrupted): told FAIL, recorded as interrupted
    for t in (first, second):
        ostudy.tell(t, state=optuna.trial.TrialState.FAIL)
    ostudy.set_user_attr(ATTR_INTERRUPTED, [first.number, second.number])
    c = study_status(stores, "asked").counts[("search", "adam")]
    assert (c.interrupted, c.running, c.replaced) == (0, 0, 2), c


def test_ray_tunes_trials_did_not_complete_line_is_dropped():
    """Ray Tune's `ERROR tune.py -- Trials did not complete: [trial_function_9896411c]` named Ray's trial ids
    after the progress display had already said which trials failed; its other errors still show."""
    import logging

    from study.execution import quiet_ray_tune_logs

    quiet_ray_tune_logs()
    quiet_ray_tune_logs()  # idempotent: one filter
    log = logging.getLogger("ray.tune.tune")
    assert len(log.filters) == 1
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    handler = Keep()
    log.addHandler(handler)  # Ray's loggers may not propagate to the root logger
    try:
        log.error("Trials did not complete: %s", ["trial_function_9896411c"])
        log.error("something else went wrong")
    finally:
        log.removeHandler(handler)
    assert seen == ["something else went wrong"]
