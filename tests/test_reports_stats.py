"""The report's statistics against scipy (and hand computation) on known inputs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sst

from tracking.reports import stats


def test_t_interval_matches_scipy():
    x = [98.9, 99.1, 99.3, 99.0, 99.2]
    iv = stats.t_interval(x)
    lo, hi = sst.t.interval(0.95, 4, loc=np.mean(x), scale=sst.sem(x))
    assert iv.estimate == pytest.approx(99.1)
    assert (iv.low, iv.high) == pytest.approx((lo, hi))
    assert iv.n == 5 and iv.sd == pytest.approx(np.std(x, ddof=1))
    # by hand: t_{0.975,4} = 2.776445, s = 0.158114, half-width = 2.776445 * 0.158114 / sqrt(5)
    assert iv.high - iv.estimate == pytest.approx(2.776445 * 0.1581139 / math.sqrt(5), rel=1e-5)


def test_t_interval_edge_cases():
    assert not stats.t_interval([1.0]).defined and stats.t_interval([1.0]).estimate == 1.0
    assert stats.t_interval([]).n == 0
    iv = stats.t_interval([2.0, 2.0, float("nan")])
    assert (iv.low, iv.high, iv.n) == (2.0, 2.0, 2)


def test_paired_difference_matches_scipy_wilcoxon_and_pairs_by_seed():
    a = {0: 99.2, 1: 99.0, 2: 99.4, 3: 99.1, 4: 99.3, 5: 98.0}
    b = {4: 99.0, 3: 99.05, 2: 99.0, 1: 98.7, 0: 99.0, 9: 90.0}  # seeds 5 and 9 have no partner
    res = stats.paired_difference(a, b)
    d = np.array([a[s] - b[s] for s in range(5)])
    assert res.n == 5
    assert res.difference.estimate == pytest.approx(d.mean())
    assert res.p_wilcoxon == pytest.approx(sst.wilcoxon(d).pvalue)
    lo, hi = sst.t.interval(0.95, 4, loc=d.mean(), scale=sst.sem(d))
    assert (res.difference.low, res.difference.high) == pytest.approx((lo, hi))
    assert math.isnan(stats.paired_difference({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0}).p_wilcoxon)


def test_holm_known_values():
    # by hand: sorted 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → running max 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = stats.holm([0.01, float("nan"), 0.04])  # NaN does not count: m = 2
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert stats.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])


def test_sd_ratio_interval_matches_f_distribution():
    a, b = [1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 5.0, 7.0, 9.0]
    iv = stats.sd_ratio_interval(a, b)
    r2 = np.var(a, ddof=1) / np.var(b, ddof=1)
    assert iv.estimate == pytest.approx(math.sqrt(r2))
    assert iv.low == pytest.approx(math.sqrt(r2 / sst.f.ppf(0.975, 3, 4)))
    assert iv.high == pytest.approx(math.sqrt(r2 / sst.f.ppf(0.025, 3, 4)))
    assert not stats.sd_ratio_interval([1.0], [1.0, 2.0]).defined


def test_ratio_of_medians_bootstrap_brackets_the_estimate():
    rng = np.random.default_rng(0)
    a, b = 1.1 + 0.01 * rng.standard_normal(8), 1.0 + 0.01 * rng.standard_normal(8)
    iv = stats.ratio_of_medians(a, b)
    assert iv.estimate == pytest.approx(np.median(a) / np.median(b))
    assert iv.low < iv.estimate < iv.high and 1.05 < iv.low and iv.high < 1.15
    one = stats.ratio_of_medians([2.0], [1.0])
    assert one.estimate == 2.0 and not one.defined


def test_expected_best_of_k_matches_exhaustive_enumeration():
    v = [0.5, 0.9, 0.95, 0.97]
    table = stats.expected_best_of_k(v, [1, 2, 3])
    for k, expected in zip(table["k"], table["expected"]):
        brute = np.mean([max(c) for c in itertools.product(v, repeat=k)])  # draws with replacement
        assert expected == pytest.approx(brute)
    assert (table["low"] <= table["expected"] + 1e-12).all() and (table["expected"] <= table["high"] + 1e-12).all()


def test_lr_range_width_contiguous_within_one_point():
    lrs = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    w = stats.lr_range_width(lrs, [97.0, 98.5, 98.0, 90.0, 98.0])  # 1.0 is within 1 point but not contiguous
    assert w["width"] == pytest.approx(1.0) and (w["lr_lo"], w["lr_hi"], w["lr_best"]) == (1e-3, 1e-2, 1e-3)
    assert stats.lr_range_width(lrs, [50, 60, 99, 60, 50])["width"] == 0.0
    assert math.isnan(stats.lr_range_width(lrs, [float("nan")] * 5)["width"])


def test_interval_display_clips_to_the_metric_range_and_flags_small_n():
    iv = stats.Interval(89.58, 63.11, 116.05, 2)
    assert iv.fmt(2) == "89.58 [63.11, 116.05]"  # no bounds: as computed
    text = iv.fmt(2, " %", bounds=(0.0, 100.0))
    assert text.startswith("89.58 % [63.11, 100.00*]") and "t-interval [63.11, 116.05]" in text
    assert "n = 2 < 3" in text
    assert iv.clipped((0.0, 100.0)) == (63.11, 100.0, True)
    inside = stats.Interval(99.0, 98.5, 99.5, 5)
    assert inside.fmt(2, bounds=(0.0, 100.0)) == "99.00 [98.50, 99.50]" and not inside.clipped((0, 100))[2]


def test_accuracy_table_keeps_the_raw_interval_and_marks_clipped_ends():
    import pandas as pd

    from tracking.reports.tables import clip_accuracy_ci

    df = clip_accuracy_ci(pd.DataFrame({"n": [2, 5], "test_acc_mean": [89.58, 99.0], "ci_low": [63.11, 98.5],
                                        "ci_high": [116.05, 99.5]}))
    assert list(df.columns) == ["n", "test_acc_mean", "ci_low", "ci_high", "ci_low_raw", "ci_high_raw", "ci_note"]
    assert df["ci_high"].tolist() == [100.0, 99.5] and df["ci_high_raw"].tolist() == [116.05, 99.5]
    assert df["ci_note"].tolist() == ["clipped to [0, 100]; n = 2 < 3", ""]


def test_the_answer_clips_an_accuracy_difference_to_plus_minus_100_points():
    """A difference of two accuracies lies in [-100, 100] points: the answer showed "-10.00 [-137.06, +117.06]"."""
    import pandas as pd

    from tracking.reports.answer import answer_optimizers

    table = pd.DataFrame([
        {"benchmark": "b", "optimizer": "adam", "n": 2, "test_acc_mean": 96.0, "ci_low": 90.0, "ci_high": 100.0,
         "sigma_seeds": 1.0, "diff_vs_adam": math.nan, "diff_ci_low": math.nan, "diff_ci_high": math.nan},
        {"benchmark": "b", "optimizer": "rmsprop", "n": 2, "test_acc_mean": 86.0, "ci_low": 0.0, "ci_high": 100.0,
         "sigma_seeds": 9.0, "diff_vs_adam": -10.0, "diff_ci_low": -137.06, "diff_ci_high": 117.06},
        {"benchmark": "b", "optimizer": "sgd", "n": 5, "test_acc_mean": 95.0, "ci_low": 94.0, "ci_high": 96.0,
         "sigma_seeds": 1.0, "diff_vs_adam": -1.0, "diff_ci_low": -1.5, "diff_ci_high": -0.5},
    ])
    out = answer_optimizers("final", table)
    col = [c for c in out.columns if c.startswith("vs Adam")][0]
    cells = dict(zip(out["optimizer"], out[col]))
    assert cells["RMSProp"] == "-10.00 [-100.00, +100.00] (clipped)", cells
    assert cells["SGD+momentum"] == "-1.00 [-1.50, -0.50]", cells


def test_the_answer_names_no_winner_on_an_exact_tie_and_says_why_there_is_no_interval():
    """Identical runs (AMGT configured as Adam): the answer once named AMGT the highest mean at the same 90.32 %."""
    import pandas as pd

    from tracking.reports import evidence as ev
    from tracking.reports.answer import answer_lines

    row = {"benchmark": "b", "n": 5, "test_acc_mean": 90.32, "ci_low": 90.32, "ci_high": 90.32, "n_pairs": 5,
           "diff_ci_low": math.nan, "diff_ci_high": math.nan}
    table = pd.DataFrame([{**row, "optimizer": "amgt", "diff_vs_adam": 0.0},
                          {**row, "optimizer": "adam", "diff_vs_adam": math.nan}])
    text = answer_lines([], "final", table, studies=["s"], caveated=[], missing=0)[0]
    assert "no single highest mean: AMGT and Adam tied at 90.32 %" in text, text
    res = ev.paired([0.0] * 5, direction=+1, delta=0.1, paper=None, min_n=3)
    assert any("identical results on both sides" in g for g in res.guards), res.guards
