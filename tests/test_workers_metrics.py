"""The metric definitions of docs/workers.md, checked on constructed inputs."""

import math

import pytest
import torch

import amgt
from workers import metrics as M


def test_loss_oscillation_linear_descent_is_zero():
    assert M.loss_oscillation([5.0, 4.0, 3.0, 2.0, 1.0]) == pytest.approx(0.0, abs=1e-15)


def test_loss_oscillation_alternating_is_4a_over_c():
    # ±a around c: every second difference is ±4a, the mean |loss| is c
    c, a = 2.0, 0.1
    seq = [c + a * (-1) ** i for i in range(10)]
    assert M.loss_oscillation(seq) == pytest.approx(4 * a / c)


def test_loss_oscillation_hand_computed_and_scale_free():
    seq = [1.0, 3.0, 2.0, 2.0]
    # second differences: 2-6+1=-3, 2-4+3=1 -> mean |.| = 2; mean |loss| = 2 -> 1.0
    assert M.loss_oscillation(seq) == pytest.approx(1.0)
    assert M.loss_oscillation([7 * v for v in seq]) == pytest.approx(1.0)


def test_loss_oscillation_ranks_a_noisy_curve_above_a_smooth_one():
    k = torch.arange(1, 201, dtype=torch.float64)
    smooth = 1.0 / k.sqrt()
    noisy = smooth * (1 + 0.2 * torch.sin(k * 2.5))
    assert M.loss_oscillation(noisy) > 10 * M.loss_oscillation(smooth)


@pytest.mark.parametrize("seq", [[], [1.0], [1.0, 2.0], [0.0, 0.0, 0.0], [1.0, float("nan"), 2.0]])
def test_loss_oscillation_undefined_cases_are_nan(seq):
    assert math.isnan(M.loss_oscillation(seq))


def test_loss_increase_fraction():
    assert M.loss_increase_fraction([3, 2, 4, 1, 5]) == pytest.approx(0.5)
    assert math.isnan(M.loss_increase_fraction([1.0]))


def test_mean_std_population():
    assert M.mean_std([1.0, 3.0]) == (2.0, 1.0)
    assert all(math.isnan(v) for v in M.mean_std([]))


def test_global_grad_norm_matches_clip_grad_norm():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    m(torch.randn(5, 4)).pow(2).sum().backward()
    expected = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in m.parameters()]))
    assert M.global_grad_norm(m.parameters()).item() == pytest.approx(expected.item(), rel=1e-6)


def test_optimizer_state_bytes_adam_vs_amgt():
    n = 1000
    for name, buffers in (("adam", 2), ("amgt", 3), ("amgt-no-threshold", 2)):
        p = torch.nn.Parameter(torch.zeros(n))
        opt = amgt.build_optimizer(name, [p])
        p.grad = torch.ones(n)
        opt.step()
        # n float32 per buffer + one 0-d float32 step counter
        assert M.optimizer_state_bytes(opt) == buffers * n * 4 + 4, name


def test_peak_memory_cpu_is_positive():
    assert M.peak_memory_bytes(torch.device("cpu")) > 10 * 2**20


def test_first_reaching():
    hist = [{"epoch": 1, "a": 0.5}, {"epoch": 2, "a": float("nan")}, {"epoch": 3, "a": 0.9}, {"epoch": 4, "a": 0.95}]
    assert M.first_reaching(hist, "a", 0.9, above=True)["epoch"] == 3
    assert M.first_reaching(hist, "a", 0.99, above=True) is None
    assert M.first_reaching(hist, "a", 0.5, above=False)["epoch"] == 1
