"""build_report end to end on real MLflow (SQLite in tmp_path) and real Optuna storages."""

from __future__ import annotations

import base64
import logging
from html.parser import HTMLParser

import pandas as pd
import pytest
from mlflow import MlflowClient

from tracking.query import UnknownStudyError
from tracking.reports import CLAIMS, VERDICTS, build_report
from tracking.reports.synthetic import Effect, write_study

logging.getLogger("alembic").setLevel(logging.WARNING)

FACTS = {  # the shape of workers.quadratic.study_facts(), values from its exact computation
    "4.10.1": {"eigenvalues": [2.0, 6.0], "gd_stability_limit": 1 / 3, "gd_optimal_step": 0.25,
               "gd_optimal_contraction": 0.5, "fastest_steps_by_contraction": [0.25],
               "gd": [{"lr": 0.1, "contraction": 0.8}, {"lr": 0.3, "contraction": 0.8}],
               "paper": {"eigenvalues": [2.0, 6.0], "stability_limit": 1 / 3, "fastest_step_in_table_4_4": 0.3}},
    "4.10.2": {"eigenvalues": [0.7639, 5.2361], "gd_stability_limit": 0.38197, "gd_optimal_step": 1 / 3,
               "hessian": [[2, -2], [-2, 4]],
               "paper": {"eigenvalues": [1.17, 4.83], "alpha_opt": 0.33, "hessian": [[2, 2], [-2, 4]],
                         "rapid_convergence_steps": [0.3, 0.4]}},
    "C13": {"4.10.1": {"noisy": {"fitted_slope": -0.50, "paper_slope": -1.0, "last_ratio": 0.9995}},
            "paper": {"rate": "linear"}},
}


class _Parser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.text, self.tags = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs))
        if tag in ("link", "script") or (tag == "a" and dict(attrs).get("href", "#").startswith("http")):
            raise AssertionError(f"external resource in a self-contained report: {tag} {attrs}")

    def handle_data(self, data):
        self.text.append(data)


def _optuna(storage: str, study: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for opt, params in (("amgt", ("lr", "tau", "lr_decay", "gamma")), ("adam", ("lr",))):
        s = optuna.create_study(study_name=f"{study}/{opt}", storage=storage, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))

        def objective(trial):
            lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
            extra = 0.0
            if "tau" in params:
                extra += 0.01 * trial.suggest_float("tau", 0.0, 0.2)
                extra += 0.0 * trial.suggest_float("lr_decay", 1e-5, 1e-2, log=True)
                extra += 0.001 * trial.suggest_float("gamma", 0.0, 2.0)
            return 0.99 - 0.01 * (__import__("math").log10(lr) + 3) ** 2 + extra

        s.optimize(objective, n_trials=12)
    one = optuna.create_study(study_name=f"{study}/sgd", storage=storage)
    one.optimize(lambda t: t.suggest_float("lr", 0.01, 0.1), n_trials=1)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("reports")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    effects = {"amgt": Effect(accuracy=0.990, accuracy_sd=0.001, epoch_time_s=1.05, state_bytes=120_000,
                              oscillation=0.08),
               "adam": Effect(accuracy=0.985, accuracy_sd=0.001, epoch_time_s=1.0, state_bytes=80_000,
                              oscillation=0.10),
               "sgd": Effect(accuracy=0.980, epoch_time_s=0.9, state_bytes=40_000, diverge_seeds=(3,),
                             fail_seeds=(2,))}
    write_study(uri, "cmp", effects=effects, n_search=4, seeds=range(5), epochs=4,
                target={"val_accuracy": 0.9, "train_loss": 0.3})
    write_study(uri, "sens", kind="sensitivity", effects={"amgt": Effect(lr_width=1.5), "adam": Effect(lr_width=0.7)},
                seeds=range(3), epochs=2, lr_grid=[1e-4, 1e-3, 1e-2, 1e-1])
    write_study(uri, "abl", kind="ablation", seeds=range(5), epochs=3, effects={
        "amgt": Effect(accuracy=0.99), "amgt-no-threshold": Effect(accuracy=0.99, oscillation=0.2),
        "amgt-no-decay": Effect(accuracy=0.975), "adam": Effect()})
    write_study(uri, "quad", kind="quadratic", effects={}, quadratic_facts=FACTS)
    write_study(uri, "partial", effects={"amgt": Effect(), "adam": Effect()}, phases=("search", "final"),
                n_search=2, seeds=range(3), epochs=2, running_seeds=(1, 2), finish_parents=False)
    write_study(uri, "searchonly", effects={"amgt": Effect(), "adam": Effect()}, phases=("search",), n_search=2,
                epochs=2)
    storage = f"sqlite:///{root / 'optuna.db'}"
    _optuna(storage, "cmp")
    return uri, storage, root


@pytest.fixture(scope="module")
def report(stores):
    uri, storage, root = stores
    return build_report(["cmp", "sens", "abl", "quad"], tracking_uri=uri, out_dir=root / "out",
                        optuna_storage=storage)


def test_report_files_and_claims(report):
    assert report.html.is_file() and report.md.is_file()
    claims = pd.read_csv(report.out_dir / "claims.csv")
    assert list(claims["id"]) == list(CLAIMS) and set(claims["verdict"]) <= set(VERDICTS)
    v = dict(zip(claims["id"], claims["verdict"]))
    assert v["C1"] == "supported" and v["C2"] == "not measured" and v["C6"] == "supported"
    assert v["C9"] == "supported" and v["C10"] == "supported"
    assert v["C11"] == v["C12"] == v["C13"] == "contradicted"
    assert not claims["reason"].str.contains("could not be evaluated").any()
    assert not [m for m in report.missing if "Optuna" not in m], report.missing


def test_html_is_self_contained_and_has_every_claim(report):
    text = report.html.read_text(encoding="utf-8")
    p = _Parser()
    p.feed(text)
    body = " ".join(p.text)
    for cid in CLAIMS:
        assert cid in body
    assert len(p.imgs) >= 8  # curves ×3, acc vs time, lr sensitivity, ablation, budget, Optuna contour + slice
    for img in p.imgs:
        assert img["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(img["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "sigma_epochs_detrended" in body and "sigma_seeds" in body and "Selection protocol" in body
    md = report.md.read_text(encoding="utf-8")
    assert all(cid in md for cid in CLAIMS) and "](figures/" in md
    assert all(f.is_file() for f in report.figures)


def test_tables(report):
    t = report.tables
    comp = t["comparison"]
    assert set(comp["optimizer"]) == {"amgt", "adam", "sgd"}
    sgd = comp[comp.optimizer == "sgd"].iloc[0]
    assert sgd["diverged"] == 1 and sgd["failed"] == 1 and sgd["runs"] == 5
    assert sgd["n"] == 4  # the diverged run (no accuracy recorded) scores chance; the failed one is not a measurement
    assert comp["p_holm"].notna().sum() == 2 and (comp["p_holm"].dropna() >= comp["p_t"].dropna()).all()
    amgt = comp[comp.optimizer == "amgt"].iloc[0]
    assert amgt["p_wilcoxon_floor"] == 2 / 2 ** 5 and amgt["n_pairs"] == 5 and comp["mde"].notna().sum() == 2
    cost = t["cost"]
    assert cost.loc[cost.optimizer == "adam", "ratio_to_adam"].iloc[0] == pytest.approx(1.0)
    imp = t["importance"]
    assert set(imp["optimizer"]) == {"amgt", "adam"} and imp["importance_default"].notna().all()
    import matplotlib

    assert matplotlib.rcParams["axes.facecolor"] == "white"  # Optuna's global ggplot style was undone
    assert any("cmp/sgd: 1 completed trial" in m for m in report.missing)
    fair = t["fairness"]
    search = fair[(fair.study == "cmp") & (fair.phase == "search") & (fair.optimizer == "amgt")].iloc[0]
    assert search["trials"] == 4 and search["search_dims"] == 1
    assert len(t["runs"]) == 4 * 3 + 5 * 3 + 3 * 4 * 2 + 5 * 4
    assert set(t["runs_columns"]["column"]) == set(t["runs"].columns) and t["runs_columns"]["meaning"].all()
    assert set(t["histories"]["metric"]) >= {"train_loss", "loss_oscillation", "val_accuracy"}
    assert list(t["power"]["id"]) == list(CLAIMS) and t["power"].loc[0, "n"] == 5


def test_report_logged_to_parent_runs(report, stores):
    client = MlflowClient(tracking_uri=stores[0])
    assert len(report.artifact_runs) == 4
    names = {a.path for a in client.list_artifacts(report.artifact_runs[0], "report")}
    assert {"report/report.html", "report/report.md", "report/claims.csv", "report/figures"} <= names


def test_running_and_missing_phases_are_reported_not_invented(stores, tmp_path):
    uri, storage, _ = stores
    r = build_report(["partial", "searchonly"], tracking_uri=uri, out_dir=tmp_path, optuna_storage=storage,
                     formats="html,csv", log_artifacts=False)
    text = " ".join(r.missing)
    assert "'searchonly' (kind comparison): phase 'final' has no trial runs" in text
    assert "'partial': 4 trial run(s) still running" in text and "phase 'search' is still running" in text
    claims = {c.id: c for c in r.claims}
    assert claims["C1"].verdict == "not measured"  # 1 finished seed per optimizer: no CI, no verdict
    assert "What is missing" in r.html.read_text() and r.md is None
    assert set(r.paths) == {r.html, *r.csv, *r.figures}
    comp = r.tables["comparison"]
    assert comp["running"].sum() == 4 and comp["n"].sum() == 2
    # a partial report is not logged to a parent that will end FINISHED (the UI would show it as final)
    r = build_report(["partial"], tracking_uri=uri, out_dir=tmp_path / "logged", optuna_storage=storage,
                     formats="csv", log_artifacts=True)
    assert r.artifact_runs == [] and any("'partial' is still running: the report was not logged" in m
                                         for m in r.missing), r.missing
    from mlflow import MlflowClient

    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("partial")
    for parent in c.search_runs([exp.experiment_id], "tags.role = 'parent'"):
        assert not c.list_artifacts(parent.info.run_id, "report"), parent.info.run_id


def test_bad_input(stores, tmp_path):
    uri = stores[0]
    with pytest.raises(UnknownStudyError, match=r"'nope'.*known studies: abl, cmp, partial, quad, searchonly, sens"):
        build_report(["nope"], tracking_uri=uri, out_dir=tmp_path)
    with pytest.raises(ValueError, match="not allowed; choose from html, md, csv"):
        build_report(["cmp"], tracking_uri=uri, out_dir=tmp_path, formats="pdf")
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_study_without_runs(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    # a study amgt-study recorded (its experiment tags) whose driver stopped before any run
    MlflowClient(tracking_uri=uri).create_experiment("void", tags={"amgt.fingerprint": "0" * 16})
    r = build_report(["void"], tracking_uri=uri, out_dir=tmp_path / "out")
    assert r.missing[0] == "study 'void': no runs at all yet"
    assert r.missing[-1] == "study 'void' has no parent run: the report was not logged to MLflow"
    assert r.missing[1].startswith("sections left out, nothing to show: Comparison")
    assert r.missing[2:-1] == ["empty tables left out: provenance"]
    assert {c.verdict for c in r.claims} == {"not measured"} and r.html.is_file()


def _referenced_files(out) -> set[str]:
    """Every CSV / figure file report.md and report.html name."""
    import re

    md = (out / "report.md").read_text(encoding="utf-8")
    html = (out / "report.html").read_text(encoding="utf-8")
    names = set(re.findall(r"([\w-]+\.csv)\b", md)) | set(re.findall(r"([\w-]+\.csv)\b", html))
    names |= set(re.findall(r"\]\((figures/[\w.-]+\.png)\)", md))
    return names


def test_every_file_the_report_names_exists(report):
    names = _referenced_files(report.out_dir)
    assert {"environment.csv", "settings.csv", "claims.csv", "runs.csv"} <= names
    assert [n for n in names if not (report.out_dir / n).is_file()] == []


def test_contour_plot_titled(report):
    contour = [f for f in report.figures if f.name.startswith("optuna_contour_cmp_amgt")]
    assert len(contour) == 1
    fig = next(f for f in report.figures_drawn if f.name == "optuna_contour_cmp_amgt").figure
    assert fig._suptitle.get_text() == "cmp — amgt: contour of the objective (objective value, maximized)"


def _inside(fig, artist) -> bool:
    fig.draw_without_rendering()
    box, page = artist.get_window_extent(), fig.bbox
    return box.x0 >= page.x0 - 1 and box.x1 <= page.x1 + 1 and box.y0 >= page.y0 - 1 and box.y1 <= page.y1 + 1


def test_short_capped_study_says_so(tmp_path):
    """A smoke study (1 epoch, max_steps 30, 2 seeds, 3 search trials): settings, caveats, clipped intervals,
    figure footers and ticks, and no contour plot from 3 trials."""
    import optuna

    uri, storage = f"sqlite:///{tmp_path / 'm.db'}", f"sqlite:///{tmp_path / 'o.db'}"
    write_study(uri, "smoke", effects={"amgt": Effect(accuracy=0.9, accuracy_sd=0.1),
                                       "adam": Effect(accuracy=0.88, accuracy_sd=0.05)},
                n_search=3, seeds=range(2), epochs=1, max_steps=30)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = optuna.create_study(study_name="smoke/amgt", storage=storage, direction="maximize",
                            sampler=optuna.samplers.RandomSampler(seed=0))
    s.optimize(lambda t: t.suggest_float("lr", 1e-4, 1e-1, log=True) + t.suggest_float("tau", 0, 0.2), n_trials=3)
    r = build_report(["smoke"], tracking_uri=uri, out_dir=tmp_path / "out", optuna_storage=storage,
                     log_artifacts=False)
    out = r.out_dir
    assert [n for n in _referenced_files(out) if not (out / n).is_file()] == []
    settings = pd.read_csv(out / "settings.csv", dtype=str)
    row = settings.iloc[0]
    assert (row["epochs"], row["batch_size"], row["max_steps"], row["paper_epochs"]) == ("1", "128", "30", "30")
    assert row["seeds"] == "2 (0, 1)" and row["trials_per_optimizer"] == "adam 3, amgt 3" and row["device"] == "cpu"
    md = r.md.read_text(encoding="utf-8")
    assert "## Study settings" in md and "Caveat: the verdict(s) of C1" in md
    claims = pd.read_csv(out / "claims.csv", keep_default_na=False).set_index("id")
    measured = claims[claims["verdict"] != "not measured"]
    assert len(measured) and (measured["caveat"] == "runs capped at 30 steps; 1 epoch; paper: 30 epochs").all()
    assert (claims.loc[claims["verdict"] == "not measured", "caveat"] == "").all()
    comp = r.tables["comparison"].set_index("optimizer")
    assert comp.loc["amgt", "ci_high_raw"] > 100 and comp.loc["amgt", "ci_high"] == 100
    assert comp.loc["amgt", "ci_note"] == "clipped to [0, 100]; n = 2 < 3"
    assert "Too few runs for a useful interval (n < 3" in md and "100.00*" in claims.loc["C1", "measured"]
    assert any("smoke/amgt: contour plot skipped: 3 completed trial(s)" in m for m in r.missing)
    names = {f.name for f in r.figures_drawn}
    assert "optuna_slice_smoke_amgt" in names and not any(n.startswith("optuna_contour") for n in names)
    for f in r.figures_drawn:
        fig = f.figure
        text = " ".join(t.get_text() for t in [fig._supxlabel, *fig.texts] if t is not None)
        assert "study smoke" in text, f.name
        if f.name.startswith("optuna"):
            continue
        assert "mnist-lenet5" in text and "epochs 1" in text, text
        assert "max_steps 30 (optimizer steps per trial)" in text and "/epoch" not in text, text
        assert "cpu" in text and "git 0000000" in text and _inside(fig, fig._supxlabel)
        ax = fig.axes[0]
        legends = [*fig.legends, *([ax.get_legend()] if ax.get_legend() is not None else [])]
        assert len(legends) == 1  # a figure legend, or the answer figure's first-panel legend: outside the axes
        assert not legends[0].get_window_extent().overlaps(ax.get_window_extent())
        if f.name.startswith(("loss_", "val_acc_", "grad_std_")):
            lo, hi = ax.get_xlim()
            assert [t for t in ax.get_xticks() if lo <= t <= hi] == [1]  # one epoch: one integer tick
        if f.name.startswith("budget_"):
            assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3"]
            assert not any(t.get_text() for t in ax.get_xticklabels(minor=True))


def test_retried_and_resumed_attempts_count_once_per_trial():
    """A trial re-run under the same trial_key (a Ray Tune retry or `resume` after Ctrl-C) is one trial: its
    failed earlier attempts are not counted as failed trials; a trial whose attempts all failed counts once."""
    import pandas as pd

    from tracking.reports.data import ReportData

    t = pd.Timestamp("2026-11-29 10:00")
    rows = [
        # final/amgt seed 0: interrupted (KILLED) then completed on resume
        dict(run_id="a1", trial_key="s/final/amgt/0", optimizer="amgt", seed=0, status="KILLED", outcome="failed",
             start_time=t),
        dict(run_id="a2", trial_key="s/final/amgt/0", optimizer="amgt", seed=0, status="FINISHED",
             outcome="completed", start_time=t + pd.Timedelta("1min"), test_accuracy=0.9),
        # final/adam seed 0: failed twice (retries exhausted): one failed trial, the latest attempt kept
        dict(run_id="b1", trial_key="s/final/adam/0", optimizer="adam", seed=0, status="FAILED", outcome="failed",
             start_time=t),
        dict(run_id="b2", trial_key="s/final/adam/0", optimizer="adam", seed=0, status="FAILED", outcome="failed",
             start_time=t + pd.Timedelta("2min")),
        # a run without trial key is never merged
        dict(run_id="c1", trial_key=None, optimizer="adam", seed=1, status="FAILED", outcome="failed", start_time=t),
        # final/amgt seed 1: interrupted and never resumed: one interrupted trial, not a failed one
        dict(run_id="d1", trial_key="s/final/amgt/1", optimizer="amgt", seed=1, status="KILLED", outcome="failed",
             start_time=t),
    ]
    data = ReportData.from_frames(pd.DataFrame(rows).assign(benchmark="mnist-lenet5"), studies=["s"])
    assert sorted(data.runs["run_id"]) == ["a2", "b2", "c1", "d1"]
    assert data.retried_attempts == 2
    assert (data.runs["outcome"] == "failed").sum() == 2
    assert data.runs.set_index("run_id").loc["d1", "outcome"] == "interrupted"

    # an interrupted seed is not a failure of the optimizer: the failure count rule ignores it
    from tracking.reports.claims.common import failure_blocks

    sup, con, summary = failure_blocks(data, "final", "mnist-lenet5", "amgt", "adam")
    assert (sup, summary) == ("", "failed or diverged seeds: AMGT 0, Adam 2"), (sup, summary)
