"""The results table `run`/`resume` print, and the advice after planned trials did not complete (study/cli.py,
study/summary.py, study/formatting.py): every optimizer of the study is listed, and `resume` is suggested only
when it can run something (a new user saw an all-failing optimizer vanish and was told to resume in circles)."""

from __future__ import annotations

import pytest

from study.phases import PhaseSummary


@pytest.fixture
def flaky_study(tmp_path):
    """A comparison study as the runner records it: one of adam's two search trials completed (the other failed)
    and it ran in the final phase over 2 seeds; nadam's two search trials failed, so it was not re-run."""
    import tracking
    from tracking.reports.synthetic import log_trial, start_parent

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = tracking.get_client(uri)
    exp = client.create_experiment("flaky")
    hist = [{"epoch": 1, "train_loss": 0.5, "val_accuracy": 0.9, "test_accuracy": 0.9, "epoch_time_s": 1.0}]
    search = start_parent(client, exp, study="flaky", phase="search", kind="comparison")
    log_trial(client, exp, search, study="flaky", phase="search", optimizer="adam", benchmark="digits-cnn", seed=0,
              hparams={"lr": 1e-3}, history=hist)
    log_trial(client, exp, search, study="flaky", phase="search", optimizer="adam", benchmark="digits-cnn", seed=1,
              hparams={"lr": 1e-2}, history=hist, outcome="failed")
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
    (adam,) = [ln for ln in lines if ln.strip().startswith("adam")]
    assert adam.split()[-3:] == ["2", "0", "1"], adam  # its failed search trial counted with its failures
    (nadam,) = [ln for ln in lines if ln.strip().startswith("nadam")]
    cells = nadam.split()
    assert "not re-run: no completed search trial" in nadam and cells[-3:] == ["0", "0", "2"], nadam  # n, div, failed
    assert "-" in cells  # no value, not a made-up one
    assert "(diverged: of the runs shown; failed: the optimizer's trials that failed after their retries, search " \
           "trials included)" in [ln.strip() for ln in lines]


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
    assert "`resume` cannot add any (a failed search trial has used its share of the budget; an optimizer without " \
           "a completed search trial has nothing to re-run)" in warning and "--name flaky-2" in warning
    assert "amgt-study resume flaky`" not in warning

    # a failed final trial and an interrupted search trial: resume runs both
    search = PhaseSummary("search", planned={"adam": 2}, finished={"adam": 1}, interrupted={"adam": 1})
    final = PhaseSummary("final", planned={"adam": 2}, finished={"adam": 1}, failed={"adam": 1})
    code, warning = finish({"search": search, "final": final})
    assert code == 3 and warning.endswith("`amgt-study resume flaky` runs 2 of them again"), warning

    # no search phase (an ablation): nothing said of search budgets
    abl = PhaseSummary("ablation", planned={"adam": 2}, finished={"adam": 1}, failed={"adam": 1})
    code, warning = finish({"ablation": abl})
    assert warning.endswith("`amgt-study resume flaky` runs 1 of them again") and "search" not in warning, warning


def test_status_counts_search_trials_asked_but_never_started(tmp_path):
    """A driver stopped while two search trials waited for a worker (asked of Optuna, no MLflow run yet): with
    no driver holding the study they are interrupted (what `resume` then replaces), and once replaced they count
    as replaced (a new user saw `0 interrupted` here, then `resume` replacing 2)."""
    import optuna

    from study.identity import study_identity
    from study.loading import dump_study, parse_study
    from study.plan import optuna_study_name, search_trial_key
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

    # the driver killed outright (its phase's parent run left RUNNING): in flight, as a trial with a run would be
    import tracking
    from tracking import schema
    from tracking.reports.synthetic import log_trial, start_parent

    client = tracking.get_client(stores.tracking_uri)
    exp = client.get_experiment_by_name("asked").experiment_id
    parent = start_parent(client, exp, study="asked", phase="search", kind="comparison")
    st = study_status(stores, "asked")
    c = st.counts[("search", "adam")]
    assert (c.interrupted, c.running) == (0, 2) and st.state == "driver dead", (c, st.state)
    # one of them had started a run, which the interrupted driver left KILLED
    run = log_trial(client, exp, parent, study="asked", phase="search", optimizer="adam", benchmark="digits-cnn",
                    seed=0, hparams={"lr": 1e-3}, history=[], finish=False)
    client.set_tag(run, schema.TAG_TRIAL_KEY, search_trial_key("asked", "adam", first.number))
    client.set_terminated(run, "KILLED")
    client.set_terminated(parent, "KILLED")
    c = study_status(stores, "asked").counts[("search", "adam")]
    assert (c.interrupted, c.running, c.attempts) == (2, 0, 1), c

    # what `resume` does first (study/search.py settle_interrupted): told FAIL, recorded as interrupted
    for t in (first, second):
        ostudy.tell(t, state=optuna.trial.TrialState.FAIL)
    ostudy.set_user_attr(ATTR_INTERRUPTED, [first.number, second.number])
    c = study_status(stores, "asked").counts[("search", "adam")]
    assert (c.interrupted, c.running, c.replaced, c.attempts) == (0, 0, 2, 1), c  # the replaced trial's run counted


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


def test_a_grid_search_told_one_trial_at_a_time_ends_without_an_error():
    """Optuna's GridSampler calls `Study.stop()` once its grid is visited, which raises under ask-and-tell (a
    tester saw the last grid trial reported failed although Optuna and MLflow had it COMPLETE); the sampler a grid
    search uses does not; a budget larger than the grid is refused (it would repeat points)."""
    import optuna

    from study.loading import parse_study
    from study.search import make_sampler
    from study.spaces import to_optuna_distributions

    cfg = parse_study({"name": "g", "kind": "comparison", "benchmark": "digits-cnn", "epochs": 1,
                       "optimizers": ["adam"], "seeds": 1,
                       "search": {"trials_per_optimizer": 2, "sampler": "grid", "grid_points": 2}})
    space = cfg.optimizers[0].resolved_space()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    ostudy = optuna.create_study(sampler=make_sampler(cfg, space, seed=0), direction="maximize")
    seen = []
    for _ in range(2):
        trial = ostudy.ask(to_optuna_distributions(space))
        seen.append(trial.params["lr"])
        ostudy.tell(trial, 0.5)  # the last one raised RuntimeError("`Study.stop` is supposed to be invoked ...")
    assert [t.state.name for t in ostudy.trials] == ["COMPLETE"] * 2
    assert len(set(seen)) == 2


def test_a_grid_budget_larger_than_an_optimizers_grid_is_refused():
    """Equal budgets and a grid: an optimizer whose grid has fewer points than the budget would re-run points as
    new trials; the study file is refused, naming the optimizer and its grid size."""
    from study.config import StudyConfigError
    from study.loading import parse_study

    base = {"name": "g", "kind": "comparison", "benchmark": "digits-cnn", "epochs": 1, "seeds": 1,
            "optimizers": ["amgt", "adam"]}
    with pytest.raises(StudyConfigError) as e:
        parse_study({**base, "search": {"trials_per_optimizer": 3, "sampler": "grid", "grid_points": 2}})
    msg = str(e.value)
    assert "field search.trials_per_optimizer: 3 is more than the 2 point(s) of the grid of optimizers.1 (adam)" in msg
    assert "amgt" not in msg.partition("(adam)")[0].split("field ")[-1]  # AMGT's 4-dimensional grid has 16 points
    parse_study({**base, "search": {"trials_per_optimizer": 3, "sampler": "grid", "grid_points": 3}})
    parse_study({**base, "search": {"trials_per_optimizer": 3, "sampler": "random", "grid_points": 2}})


def test_the_resume_hint_is_a_command_that_works_as_printed(tmp_path, monkeypatch):
    """The interrupt line's `resume` command: shell-quoted (a path with a space), with the stores when they are not
    the defaults, a password shown as *** and said so (a tester's pasted command failed on a space)."""
    import shlex

    from study.interrupts import resume_hint
    from study.stores import resolve_stores

    monkeypatch.chdir(tmp_path)
    here = resolve_stores(None)
    assert resume_hint("s", here) == (f"`amgt-study resume s` (from another directory: add --tracking-uri "
                                      f"{here.tracking_uri})")
    spaced = tmp_path / "a b"
    spaced.mkdir()
    other = resolve_stores(f"sqlite:///{spaced}/mlflow.db")
    hint = resume_hint("s", other)
    assert shlex.split(hint.strip("`")) == ["amgt-study", "resume", "s", "--tracking-uri", f"sqlite:///{spaced}/mlflow.db"]
    split = resolve_stores(f"sqlite:///{spaced}/mlflow.db", f"sqlite:///{tmp_path}/elsewhere.db")
    assert shlex.split(resume_hint("s", split).strip("`"))[-2:] == ["--optuna-storage", f"sqlite:///{tmp_path}/elsewhere.db"]
    secret = resolve_stores("postgresql+psycopg://u:pw@127.0.0.1:5432/db")
    hint = resume_hint("s", secret)
    assert "pw" not in hint and "u:***@127.0.0.1" in hint and "the password is shown as ***: give yours" in hint, hint


def test_the_report_lists_an_optimizer_that_was_never_re_run(flaky_study, tmp_path):
    """The report agrees with the results table: nadam (every search trial failed) is a comparison row with its
    failed search trials and no accuracy, and the answer table says it was not re-run (a tester found it only
    under "What is missing")."""
    import pandas as pd

    from tracking.reports import build_report

    out = tmp_path / "rep"
    build_report(["flaky"], tracking_uri=flaky_study, out_dir=out, formats=["csv", "md"], log_artifacts=False)
    comp = pd.read_csv(out / "comparison.csv", keep_default_na=False).set_index("optimizer")
    assert comp.loc["nadam", "note"] == "not re-run: no completed search trial"
    assert (comp.loc["nadam", "runs"], comp.loc["nadam", "n"], comp.loc["nadam", "search_failed"]) == (0, 0, 2)
    assert comp.loc["nadam", "test_acc_mean"] == "" and comp.loc["adam", "search_failed"] == 1
    answer = pd.read_csv(out / "answer_optimizers.csv", keep_default_na=False).set_index("optimizer")
    row = answer.loc[[i for i in answer.index if i.lower() == "nadam"][0]]
    assert row["test accuracy % [95 % CI]"] == "not re-run: no completed search trial (2 failed search trial(s))"


def test_sigterm_raises_an_interrupt_in_the_main_thread_and_is_put_back():
    """The driver's SIGTERM handler (installed after ray.init, replacing Ray's abort): an interrupt that says it came
    from SIGTERM; the previous handler back afterwards; a later run in the same process starts clean."""
    import os
    import signal

    from study.interrupts import Terminated, sigterm_as_interrupt, terminated

    before = signal.getsignal(signal.SIGTERM)
    restore = sigterm_as_interrupt()
    with pytest.raises(Terminated) as info:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs between bytecodes
            pass
    assert terminated(info.value) and terminated(KeyboardInterrupt())  # Ray Tune may re-raise a plain one
    restore()
    assert signal.getsignal(signal.SIGTERM) == before
    sigterm_as_interrupt()()
    assert not terminated(KeyboardInterrupt())
