"""A report from a small real study: the study runner (Ray Tune + Optuna + MLflow) trains digits-cnn with
two optimizers for one epoch, then build_report reads it back."""

from __future__ import annotations

from html.parser import HTMLParser

import pandas as pd
import pytest

pytestmark = pytest.mark.slow


def test_report_from_a_real_tiny_study(tmp_path, ray_local):
    from study.loading import parse_study
    from study.runner import run_study

    from tracking.reports import CLAIMS, build_report

    uri, storage = f"sqlite:///{tmp_path}/mlflow.db", f"sqlite:///{tmp_path}/optuna.db"
    cfg = parse_study({"name": "tiny-report", "kind": "comparison", "benchmark": "digits-cnn", "epochs": 1,
                       "batch_size": 256, "optimizers": ["amgt", "adam"],
                       "search": {"trials_per_optimizer": 2, "metric": "val_accuracy"}, "seeds": 2,
                       "resources": {"cpus": 1}})
    run_study(cfg, tracking_uri=uri, optuna_storage=storage, echo=lambda s: None)

    r = build_report(["tiny-report"], tracking_uri=uri, out_dir=tmp_path / "report", optuna_storage=storage)
    # 2 search trials per optimizer: the contour plot is skipped, with its reason, and nothing else is missing
    # (and the sections a comparison-only study has nothing for are left out, named in one line)
    assert r.missing == ["Optuna study tiny-report/amgt: contour plot skipped: 2 completed trial(s), a contour "
                         "needs ≥ 5 (with fewer it interpolates a surface between a few points)",
                         "sections left out, nothing to show: Learning-rate sensitivity (no grid-phase runs); "
                         "Ablation (no ablation-phase runs)"], r.missing
    settings = r.tables["settings"].iloc[0]
    assert (settings["benchmark"], settings["epochs"], settings["max_steps"]) == ("digits-cnn", "1",
                                                                                 "none (full epochs)")
    measured = [c for c in r.claims if c.verdict != "not measured"]
    assert measured and all(c.caveat.startswith("digits-cnn is not one of the paper's benchmarks (1 epoch)")
                            for c in measured)
    assert "all TPE random start-up" in {c.id: c for c in r.claims}["C5"].caveat  # 2 trials: TPE never acted
    c5 = {c.id: c for c in r.claims}["C5"]
    assert c5.verdict == "not measured (benchmark differs)" and "digits-cnn" in c5.reason
    # the search trains with its own seed (seed_start + 1,000,000), so no final seed replays the selection
    assert "left out" not in c5.measured and "n = 2/2 runs" in c5.measured
    comp = r.tables["comparison"]
    assert sorted(comp["optimizer"]) == ["adam", "amgt"] and (comp["n"] == 2).all() and (comp["replayed"] == 0).all()
    assert comp["test_acc_mean"].between(10, 100).all()  # percent, from the runs' test_accuracy
    amgt = comp[comp.optimizer == "amgt"].iloc[0]
    assert "tau=" in amgt["hyperparameters"] and "lr=" in amgt["hyperparameters"]
    cost = r.tables["cost"]
    assert (cost["median_epoch_time_s"] > 0).all() and (cost["optimizer_state_bytes"] > 0).all()
    claims = {c.id: c for c in r.claims}
    assert list(claims) == list(CLAIMS)
    assert claims["C1"].verdict == "not measured" and "digits-cnn: adam, amgt" in claims["C1"].reason
    assert claims["C6"].verdict == "supported"  # AMGT's one residual buffer, measured on the real optimizer
    assert claims["C14"].verdict == "not measured"  # one epoch: no trajectory
    assert not any("could not be evaluated" in c.reason for c in r.claims)
    imp = r.tables["importance"]
    assert set(imp["optimizer"]) == {"amgt", "adam"} and set(imp[imp.optimizer == "amgt"]["param"]) == {
        "lr", "tau", "lr_decay", "gamma"}
    fair = r.tables["fairness"]
    assert fair.loc[(fair.phase == "search") & (fair.optimizer == "amgt"), "search_dims"].iloc[0] == 4
    assert pd.read_csv(tmp_path / "report" / "runs.csv")["run_id"].nunique() == 8
    text = r.html.read_text(encoding="utf-8")
    ids = []

    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "img":
                ids.append(dict(attrs)["src"][:22])

    P().feed(text)
    assert ids and set(ids) == {"data:image/png;base64,"}
    assert all(cid in text for cid in CLAIMS)
