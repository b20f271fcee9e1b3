"""The quadratic study (claims C11–C13): computed facts against hand-derived values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import workers
from workers import quadratic as Q

SQRT5 = math.sqrt(5.0)


def test_4101_hand_derived():
    q = Q.paper_quadratic("4.10.1")
    # f = 2x² + 2y² − 2xy + 2: ∂²f/∂x² = 4, ∂²f/∂y² = 4, ∂²f/∂x∂y = −2; (4−λ)² = 4 → λ = 2, 6
    np.testing.assert_allclose(q.hessian, [[4, -2], [-2, 4]])
    np.testing.assert_allclose(q.eigenvalues, [2, 6])
    np.testing.assert_allclose(q.minimizer, [0, 0], atol=1e-15)
    assert q.f_star == 2.0
    f = q.facts()
    assert f["condition_number"] == pytest.approx(3.0)
    assert f["gd_stability_limit"] == pytest.approx(1 / 3)
    assert f["gd_optimal_step"] == pytest.approx(0.25)
    assert f["gd_optimal_contraction"] == pytest.approx(0.5)  # (κ−1)/(κ+1) = 2/4
    # η = 0.1: max(|1−0.2|, |1−0.6|) = 0.8; η = 0.3: max(|1−0.6|, |1−1.8|) = 0.8
    assert Q.gd_contraction(q.eigenvalues, 0.1) == pytest.approx(0.8)
    assert Q.gd_contraction(q.eigenvalues, 0.3) == pytest.approx(0.8)
    assert Q.gd_contraction(q.eigenvalues, 0.4) == pytest.approx(1.4)
    assert Q.gd_contraction(q.eigenvalues, 1 / 3 - 1e-9) < 1 < Q.gd_contraction(q.eigenvalues, 1 / 3 + 1e-9)


def test_4102_hand_derived():
    q = Q.paper_quadratic("4.10.2")
    # f = x² + 2y² − 2xy + 2: H = [[2, −2], [−2, 4]], λ² − 6λ + 4 = 0 → λ = 3 ± √5
    np.testing.assert_allclose(q.hessian, [[2, -2], [-2, 4]])
    np.testing.assert_allclose(q.eigenvalues, [3 - SQRT5, 3 + SQRT5])
    f = q.facts()
    assert f["gd_optimal_step"] == pytest.approx(1 / 3)  # 2 / trace
    assert f["gd_stability_limit"] == pytest.approx(2 / (3 + SQRT5))
    assert f["gd_stability_limit"] == pytest.approx(0.381966, abs=1e-6)
    assert Q.gd_contraction(q.eigenvalues, 0.4) > 1


def test_gradient_descent_matches_the_contraction():
    q = Q.paper_quadratic("4.10.1")
    # from (1, 1), an eigenvector of λ = 2: ‖x_k‖ = √2 |1 − 2η|^k exactly
    d = Q.gradient_descent(q, [1, 1], 0.1, 10)
    np.testing.assert_allclose(d, math.sqrt(2) * 0.8 ** np.arange(11), rtol=1e-12)
    # from (1, 0) the λ = 6 direction shows: η = 0.4 diverges at rate 1.4
    d = Q.gradient_descent(q, [1, 0], 0.4, 60)
    assert d[-1] / d[-2] == pytest.approx(1.4, rel=1e-6)


def test_run_trial_sgd_is_gradient_descent():
    res = workers.run_trial({"benchmark": "quadratic-4.10.1", "optimizer": "sgd", "epochs": 1,
                             "steps_per_epoch": 10, "hparams": {"lr": 0.25, "momentum": 0.0}, "device": "cpu"})
    assert res["distance_to_optimum"] == pytest.approx(math.sqrt(2) * 0.5**10, rel=1e-9)
    # f − f* = ½ eᵀHe = ½ · 2 · ‖e‖² along the λ = 2 eigenvector
    assert res["train_loss"] == pytest.approx(2 * 0.5**20, rel=1e-9)
    assert res["grad_norm"] == pytest.approx(2 * math.sqrt(2) * 0.5**10, rel=1e-9)


def test_quadratic_report_keys():
    from tracking.schema import METRICS_EPOCH

    reports = []
    workers.run_trial({"benchmark": "rosenbrock", "optimizer": "amgt", "epochs": 2, "steps_per_epoch": 20,
                       "device": "cpu"}, report=reports.append)
    for r in reports:
        assert set(r) <= set(METRICS_EPOCH) | set(workers.EXTRA_EPOCH_METRICS) | {"epoch"}
        assert set(workers.EXTRA_EPOCH_METRICS) <= set(r)
        assert "val_accuracy" not in r
    assert reports[1]["grad_norm_sq_min"] <= reports[0]["grad_norm_sq_min"]


def test_run_trial_unstable_step_diverges():
    res = workers.run_trial({"benchmark": "quadratic-4.10.1", "optimizer": "sgd", "epochs": 3,
                             "hparams": {"lr": 0.4, "momentum": 0.0}, "problem": {"x0": [1.0, 0.0]},
                             "device": "cpu"})
    assert res["status"] == "diverged"


def test_general_quadratic_and_noise():
    q = Q.general_quadratic(condition_number=100.0, dim=5, mu=0.5, problem_seed=1)
    np.testing.assert_allclose(q.eigenvalues[[0, -1]], [0.5, 50.0], rtol=1e-10)
    q2 = Q.general_quadratic([1.0, 4.0, 9.0], rotate=False)
    np.testing.assert_allclose(q2.hessian, np.diag([1.0, 4.0, 9.0]))
    with pytest.raises(ValueError, match="eigenvalues"):
        Q.general_quadratic([1.0, -1.0])
    with pytest.raises(ValueError, match="exactly one"):
        Q.general_quadratic()
    cfg = {"benchmark": "quadratic", "optimizer": "sgd", "epochs": 2, "steps_per_epoch": 50, "device": "cpu",
           "hparams": {"lr": 0.05, "momentum": 0.0}, "problem": {"eigenvalues": [1.0, 4.0], "noise_std": 0.1}}
    a, b = workers.run_trial(cfg), workers.run_trial(cfg)
    assert a["train_loss"] == b["train_loss"] > 0
    with pytest.raises(ValueError, match="problem keys.*bogus"):
        workers.run_trial({**cfg, "problem": {"bogus": 1}})


def test_inverse_k_rates_deterministic_and_noisy():
    # diagonal λ = (1, 2), μ = 1, α_k = 1/k: the λ=μ part vanishes at k = 1, the other is
    # ∏_{j≥2} (1 − 2/j) = 0 at j = 2: finite termination.
    r = Q.inverse_k_rates(Q.general_quadratic([1.0, 2.0], rotate=False), steps=100)
    assert r["exact_zero_at_step"] == 2
    # λ = (1, 2.5): ∏ (1 − 2.5/j) ~ k^(−2.5), so the fitted slope is −λ2/μ = −2.5 (the paper: −μ/2 = −0.5)
    r = Q.inverse_k_rates(Q.general_quadratic([1.0, 2.5], rotate=False), steps=20_000)
    assert r["fitted_slope"] == pytest.approx(-2.5, abs=0.02)
    assert r["paper_slope"] == -0.5
    assert r["last_ratio"] > 0.999  # ratio → 1: sublinear, not linear convergence
    # gradient noise: E‖e_k‖² ≈ σ²/(μ² k) for the μ part → slope −1/2
    r = Q.inverse_k_rates(Q.general_quadratic([1.0, 2.5], rotate=False), steps=5_000, noise_std=1.0,
                          repeats=400, seed=0)
    assert r["fitted_slope"] == pytest.approx(-0.5, abs=0.05)


def test_fit_loglog_slope():
    k = np.arange(1, 100)
    assert Q.fit_loglog_slope(k, 3.0 * k**-1.5) == pytest.approx(-1.5)
    assert math.isnan(Q.fit_loglog_slope(k, np.zeros_like(k, dtype=float)))


def test_study_facts_serialisable_and_against_the_paper():
    facts = Q.study_facts(steps=100, c13_steps=2_000, c13_repeats=50, c13_amgt_steps=300)
    text = json.dumps(facts, allow_nan=False)  # strict JSON
    assert json.loads(text) == facts
    f1, f2 = facts["4.10.1"], facts["4.10.2"]
    assert f1["eigenvalues"] == pytest.approx([2, 6]) and f1["paper"]["eigenvalues"] == [2.0, 6.0]
    assert f1["gd_optimal_step"] == pytest.approx(0.25)
    assert f1["fastest_steps_by_contraction"] == pytest.approx([0.25])
    assert f1["fastest_paper_steps_by_contraction"] == pytest.approx([0.1, 0.3])  # the paper: 0.3 alone
    assert f1["paper"]["fastest_step_in_table_4_4"] == 0.3
    assert f1["start_is_eigenvector"] is True
    rows = {r["lr"]: r for r in f1["gd"]}
    assert rows[0.4]["converges"] is False and rows[0.3]["converges"] is True
    assert rows[0.4]["iterations_to_tol_generic_start"] is None
    assert f2["eigenvalues"] == pytest.approx([3 - SQRT5, 3 + SQRT5])
    assert f2["paper"]["eigenvalues"] == [1.17, 4.83]
    assert f2["gd_optimal_step"] == pytest.approx(1 / 3)
    assert f2["rapid_convergence_steps_converge"] == {"0.3": True, "0.4": False}
    # the matrix the paper writes, [[2, 2], [−2, 4]], has complex eigenvalues 3 ± i√3
    np.testing.assert_allclose(f2["paper"]["eigenvalues_of_written_hessian"], [[3, math.sqrt(3)], [3, -math.sqrt(3)]])
    c13 = facts["C13"]
    assert c13["4.10.2"]["deterministic"]["fitted_slope"] == pytest.approx(-(3 + SQRT5) / (3 - SQRT5), rel=0.02)
    assert c13["4.10.1"]["deterministic"]["exact_zero_at_step"] == 3
    assert c13["paper"]["rate"] == "linear"
