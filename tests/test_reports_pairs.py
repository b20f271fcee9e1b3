"""The comparison generalises (issue 15): any candidate against any baseline in the report's tables and paired
statistics; the paper's claims C1–C15 stay AMGT's (docs/reports.md, "Candidate and baseline")."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats
from statsmodels.stats.power import TTestPower

from study.cli import cli
from tracking.reports import CLAIMS, build_report
from tracking.reports.synthetic import Effect, write_study

logging.getLogger("alembic").setLevel(logging.WARNING)

BYO = {"adam": Effect(accuracy=0.960, accuracy_sd=0.004, epoch_time_s=1.0),
       "nadam": Effect(accuracy=0.975, accuracy_sd=0.004, epoch_time_s=1.02),
       "lion": Effect(accuracy=0.950, accuracy_sd=0.002, epoch_time_s=0.9)}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    write_study(uri, "byo", benchmarks=("digits-cnn",), effects=BYO, n_search=3, seeds=range(5), epochs=3)
    write_study(uri, "paper", effects={"amgt": Effect(accuracy=0.990, accuracy_sd=0.001, epoch_time_s=1.05),
                                       "adam": Effect(accuracy=0.985, accuracy_sd=0.001),
                                       "nadam": Effect(accuracy=0.986, accuracy_sd=0.001)},
                n_search=2, seeds=range(5), epochs=3)
    return uri, root


def _report(store, name, out, **kw):
    uri, root = store
    return build_report([name], tracking_uri=uri, out_dir=root / out, log_artifacts=False, **kw)


def _per_seed(result, opt) -> pd.Series:
    runs = result.tables["runs"]
    r = runs[(runs["phase"] == "final") & (runs["optimizer"] == opt)]
    return (r.set_index("seed")["test_accuracy"] * 100).sort_index()


def test_nadam_vs_adam_has_the_paired_numbers_recomputed_with_scipy(store):
    r = _report(store, "byo", "nadam", candidate="nadam")
    assert (r.comparison.candidates, r.comparison.baseline) == (("nadam",), "adam")
    d = _per_seed(r, "nadam") - _per_seed(r, "adam")
    n, mean, sd = len(d), float(d.mean()), float(d.std(ddof=1))
    lo, hi = stats.t.interval(0.95, n - 1, loc=mean, scale=sd / math.sqrt(n))
    p = stats.ttest_rel(_per_seed(r, "nadam"), _per_seed(r, "adam")).pvalue
    mde = TTestPower().solve_power(nobs=n, alpha=0.05, power=0.8) * sd

    pairs = pd.read_csv(r.out_dir / "comparison_pairs.csv").set_index("id")
    acc = pairs.loc["nadam vs adam: accuracy"]
    assert acc["benchmark"] == "digits-cnn" and acc["n"] == n == 5
    assert acc["p"] == pytest.approx(p, rel=1e-9) and acc["mde"] == pytest.approx(mde, rel=1e-6)
    assert acc["effect"] == f"{mean:.2f} [{lo:.2f}, {hi:.2f}] points"
    assert lo > 0.5 and acc["verdict"] == "supported"  # the interval clears δ (one of 360 test images: 0.28 points)
    assert "in nadam's favour" in acc["reason"]
    comp = r.tables["comparison"].set_index("optimizer")
    assert list(r.tables["comparison"]["optimizer"]) == ["nadam", "adam", "lion"]
    assert comp.loc["nadam", "diff_vs_adam"] == pytest.approx(mean) and comp.loc["nadam", "n_pairs"] == n
    assert (comp.loc["nadam", "diff_ci_low"], comp.loc["nadam", "diff_ci_high"]) == pytest.approx((lo, hi))

    cost = pairs.loc["nadam vs adam: time/epoch"]
    runs = r.tables["runs"]
    final = runs[runs["phase"] == "final"]
    x = np.log(final.loc[final.optimizer == "nadam", "epoch_time_median"])
    y = np.log(final.loc[final.optimizer == "adam", "epoch_time_median"])
    welch = stats.ttest_ind(x, y, equal_var=False)
    ci = welch.confidence_interval(0.95)
    assert cost["p"] == pytest.approx(welch.pvalue, rel=1e-9)
    assert cost["effect"] == f"ratio {math.exp(x.mean() - y.mean()):.3f} [{math.exp(ci.low):.3f}, {math.exp(ci.high):.3f}]"
    assert cost["verdict"] == ("supported" if math.exp(ci.high) <= 1.10 else "inconclusive")
    # the answer: the pair's line and table, no claim of the paper's
    assert "answer_pairs" in r.tables and "answer_claims" not in r.tables
    assert any(line.startswith("Claims C1–C15 are AMGT's") for line in r.md.read_text().splitlines())


def test_no_paper_claim_is_judged_on_another_candidate(store):
    r = _report(store, "byo", "nadam-noclaims", candidate="nadam")
    assert r.claims == [] and not (r.out_dir / "claims.csv").exists() and not (r.out_dir / "power.csv").exists()
    ids = set(pd.read_csv(r.out_dir / "comparison_pairs.csv")["id"]) | set(r.tables["answer_pairs"]["id"])
    assert not ids & set(CLAIMS)
    assert set(r.tables["rules"]["id"]).isdisjoint(CLAIMS) and "pair: accuracy" in set(r.tables["rules"]["id"])
    html = r.html.read_text()
    assert "Paper claims C1–C15</h2>" not in html and "<h2>nadam vs Adam</h2>" in html
    assert r.html.read_text().count('data-name="comparison_pairs"') == 1


def test_default_without_amgt_compares_every_other_final_optimizer(store):
    r = _report(store, "byo", "default")
    assert (r.comparison.candidates, r.comparison.baseline) == (("lion", "nadam"), "adam")
    got = {p.id: p.verdict for p in r.pairs}
    assert set(got) == {f"{c} vs adam: {m}" for c in ("lion", "nadam") for m in ("accuracy", "time/epoch")}
    assert got["lion vs adam: accuracy"] == "contradicted" and r.claims == []


def test_tables_are_keyed_by_the_chosen_pair(store):
    r = _report(store, "byo", "vs-lion", candidate="nadam", baseline="lion")
    comp = r.tables["comparison"]
    assert list(comp["optimizer"]) == ["nadam", "lion", "adam"] and "diff_vs_adam" not in comp
    d = _per_seed(r, "adam") - _per_seed(r, "lion")
    assert comp.set_index("optimizer").loc["adam", "diff_vs_lion"] == pytest.approx(d.mean())
    assert math.isnan(comp.set_index("optimizer").loc["lion", "diff_vs_lion"])
    cost = r.tables["cost"].set_index("optimizer")
    assert cost.loc["lion", "ratio_to_lion"] == pytest.approx(1.0) and "ratio_to_adam" not in cost
    assert [p.id for p in r.pairs] == ["nadam vs lion: accuracy", "nadam vs lion: time/epoch"]
    assert "vs lion, points [95 % CI]" in r.tables["answer_optimizers"].columns


def test_studies_with_amgt_keep_the_paper_report(store):
    default = _report(store, "paper", "paper-default")
    explicit = _report(store, "paper", "paper-explicit", candidate="amgt", baseline="adam")
    assert default.pairs == [] and [c.id for c in default.claims] == list(CLAIMS)
    assert "comparison_pairs" not in default.tables and "Candidate vs baseline" not in default.md.read_text()
    assert default.md.read_text().splitlines()[0] == "# AMGT robustness report — paper"
    for name, df in default.tables.items():
        if name != "environment":
            pd.testing.assert_frame_equal(df, explicit.tables[name], check_dtype=False)
    # another candidate in the same study: the pair, and no claim of the paper's
    other = _report(store, "paper", "paper-nadam", candidate="nadam")
    assert other.claims == [] and [p.id for p in other.pairs][0] == "nadam vs adam: accuracy"
    # AMGT against another baseline: the claims (AMGT vs Adam, as the paper) and the pair's section
    both = _report(store, "paper", "paper-vs-nadam", candidate="amgt", baseline="nadam")
    assert [c.id for c in both.claims] == list(CLAIMS) and both.pairs[0].id == "amgt vs nadam: accuracy"
    assert "diff_vs_nadam" in both.tables["comparison"]


@pytest.mark.parametrize("args, message", [
    (["--candidate", "nosuch"], "--candidate 'nosuch' is not an optimizer of studies byo; optimizers present: "
                                "adam, lion, nadam"),
    (["--baseline", "sgd"], "--baseline 'sgd' is not an optimizer of studies byo; optimizers present: adam, lion, "
                            "nadam"),
    (["--candidate", "adam"], "--candidate 'adam' is also the baseline"),
])
def test_unknown_optimizer_names_are_one_line_and_write_nothing(store, tmp_path, args, message):
    uri, _ = store
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["report", "byo", "--tracking-uri", uri, "--out", str(out), *args])
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: report byo: ") and message in lines[0], lines
    assert not out.exists()
