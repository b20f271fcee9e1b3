"""AMGT on bad input a real training run meets: zero and non-finite gradient elements, parameters in
other memory layouts, load_state_dict hooks, reordered parameters on load. Every path: the per-tensor
loop, foreach, fused (``fused=True``), and the no-host-read logic the CUDA paths use ("sync-free")."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import amgt
import amgt._functional as F
from amgt import AMGT, AdaBelief

torch.set_num_threads(1)

PATHS = ["loop", "foreach", "fused", "sync-free"]


@pytest.fixture
def path_kwargs(request, monkeypatch):
    """AMGT keyword arguments for one path; "sync-free" is the loop with host reads switched off (the
    logic of every non-CPU device); "compiled-alias" is the deprecated ``compiled=True`` (= fused), where
    the issue found the step-1 NaN."""
    path = request.param
    if path == "sync-free":
        monkeypatch.setattr(F, "host_reads_are_free", lambda device: False)
    if path == "compiled-alias":
        import warnings

        warnings.filterwarnings("ignore", "AMGT\\(compiled", DeprecationWarning)
    return {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True},
            "sync-free": {"foreach": False}, "compiled-alias": {"compiled": True}}[path]


def _grads(shape, step, seed=0):
    gen = torch.Generator().manual_seed(seed * 1000 + step)
    return torch.randn(shape, generator=gen)


# ---------------------------------------------------------------------------------------------------
# 1. A gradient element that is exactly 0 at step 1 (dead ReLU unit, unused embedding row)
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path_kwargs", PATHS + ["compiled-alias"], indirect=True)
@pytest.mark.parametrize("variance", ["relative", "absolute"])
def test_zero_gradient_elements_at_step_one_leave_the_tensor_training(path_kwargs, variance):
    """λ_1 = 1 whatever v is: no 0/0. With τ > 0 a NaN in the momentum would freeze the whole tensor."""
    p = nn.Parameter(torch.zeros(64))
    opt = AMGT([p], lr=0.01, gamma=1.0, tau=0.05, variance=variance, **path_kwargs)
    for t in range(6):
        g = _grads(64, t)
        if t == 0:
            g[:8] = 0.0  # dead at step 1, alive later
        p.grad = g
        before = p.detach().clone()
        opt.step()
        st = opt.state[p]
        assert torch.isfinite(st["exp_avg"]).all() and torch.isfinite(st["exp_avg_sq"]).all()
        assert torch.isfinite(p).all()
        moved = (p.detach() != before).sum().item()
        assert moved >= (56 if t == 0 else 32), (t, moved)  # most elements move at every step
    assert (p.detach()[:8] != 0).all()  # the elements dead at step 1 trained afterwards


# ---------------------------------------------------------------------------------------------------
# 2. Parameters in other memory layouts (fused: no .view(-1) on a non-contiguous tensor)
# ---------------------------------------------------------------------------------------------------
def _layout_params():
    gen = torch.Generator().manual_seed(3)
    conv = torch.randn(8, 4, 3, 3, generator=gen).to(memory_format=torch.channels_last)
    transposed = torch.randn(7, 5, generator=gen).t()
    strided = torch.randn(6, 10, generator=gen)[:, ::2]  # not dense: every second column
    return [nn.Parameter(x) for x in (conv, transposed, strided)]


def test_fused_steps_channels_last_transposed_and_strided_parameters_like_the_loop():
    a, b = _layout_params(), _layout_params()
    assert a[0].is_contiguous(memory_format=torch.channels_last) and not a[1].is_contiguous()
    oa, ob = AMGT(a, lr=0.01, fused=True), AMGT(b, lr=0.01, foreach=False)
    for t in range(8):
        for i, (x, y) in enumerate(zip(a, b)):
            g = _grads(x.shape, t, seed=i)
            x.grad = g.contiguous() if i == 0 else g  # a channels_last parameter with a contiguous grad
            y.grad = g.clone()
        oa.step()
        ob.step()
    for x, y in zip(a, b):
        torch.testing.assert_close(x.detach(), y.detach(), rtol=1e-5, atol=1e-6)
    assert a[0].is_contiguous(memory_format=torch.channels_last)  # layout kept, state follows it
    assert oa.state[a[0]]["exp_avg"].is_contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------------------------------------------
# 3. load_state_dict hooks are honoured, as torch.optim.Adam honours them
# ---------------------------------------------------------------------------------------------------
def _trained(cls, dtype, **kw):
    p = nn.Parameter(torch.randn(6, dtype=torch.float32).to(dtype))
    opt = cls([p], lr=0.01, **kw)
    for t in range(3):
        p.grad = _grads(6, t).to(dtype)
        opt.step()
    return p, opt


@pytest.mark.parametrize("cls", [AMGT, AdaBelief, torch.optim.Adam], ids=["amgt", "adabelief", "adam"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"])
def test_load_state_dict_pre_and_post_hooks_are_honoured(cls, dtype):
    p, opt = _trained(cls, dtype)
    sd = copy.deepcopy(opt.state_dict())
    marker = torch.full((6,), 0.25)
    q = nn.Parameter(p.detach().clone())
    fresh = cls([q], lr=0.01)

    def pre_hook(optimizer, state_dict):  # returns a new dict: its values must be the ones loaded
        new = copy.deepcopy(state_dict)
        new["state"][0]["exp_avg"] = marker.clone()
        return new

    replaced = {}

    def post_hook(optimizer):  # replaces a state tensor: the replacement must stay
        replaced["t"] = optimizer.state[q]["exp_avg"] * 2
        optimizer.state[q]["exp_avg"] = replaced["t"]

    fresh.register_load_state_dict_pre_hook(pre_hook)
    fresh.register_load_state_dict_post_hook(post_hook)
    fresh.load_state_dict(sd)
    got = fresh.state[q]["exp_avg"]
    assert got is replaced["t"]
    torch.testing.assert_close(got.float(), 2 * marker.to(got.dtype).float())
    if cls is not torch.optim.Adam:
        assert got.dtype == torch.float32  # 16-bit parameters keep float32 moments
    assert torch.equal(sd["state"][0]["exp_avg"], opt.state[p]["exp_avg"])  # the caller's dict untouched


# ---------------------------------------------------------------------------------------------------
# 4. A non-finite gradient element: handled per element, never a frozen tensor
# ---------------------------------------------------------------------------------------------------
TAU_VARIANTS = [("amgt", {}), ("amgt-no-decay", {}), ("amgt-no-variance", {}),
                ("amgt", {"threshold_feedback": False}), ("amgt", {"variance": "absolute", "tau": 0.5})]


@pytest.mark.parametrize("path_kwargs", PATHS, indirect=True)
@pytest.mark.parametrize("name,hp", TAU_VARIANTS, ids=[f"{n}{hp}" for n, hp in TAU_VARIANTS])
@pytest.mark.parametrize("bad", [float("inf"), float("nan")], ids=["inf", "nan"])
def test_non_finite_gradient_element_is_skipped_and_the_rest_trains(path_kwargs, name, hp, bad):
    """One inf/NaN element at step 3 of a 64-element tensor: that element is never applied again (its
    moments are lost, as in Adam) but the other 63 train exactly as a 63-element tensor without it (θ is
    τ·RMS of the finite elements); the parameter stays finite; the diagnostics count it."""
    full = nn.Parameter(torch.linspace(-1, 1, 64))
    keep = torch.arange(64) != 5
    short = nn.Parameter(full.detach()[keep].clone())
    o_full = amgt.build_optimizer(name, [full], lr=0.05, **hp, **path_kwargs)
    o_short = amgt.build_optimizer(name, [short], lr=0.05, **hp, **path_kwargs)
    for t in range(10):
        g = _grads(64, t) + (full.detach() - 0.3)
        short.grad = g[keep].clone()
        if t == 3:
            g[5] = bad
        full.grad = g
        o_full.step()
        o_short.step()
    assert torch.isfinite(full).all()
    torch.testing.assert_close(full.detach()[keep], short.detach(), rtol=1e-5, atol=1e-6)
    d = o_full.diagnostics()
    assert d["nonfinite_fraction"] == pytest.approx(7 / (10 * 64))  # element 5 at steps 3..9
    assert o_short.diagnostics()["nonfinite_fraction"] == 0.0
    assert 0 < d["lambda_mean"] <= 1


def test_non_finite_gradient_with_tau_zero_is_adam():
    """τ = 0 is Adam operation for operation, including what an inf gradient element does (that
    element becomes non-finite, the others train)."""
    a = nn.Parameter(torch.linspace(-1, 1, 16))
    b = nn.Parameter(a.detach().clone())
    oa, ob = AMGT([a], gamma=0.0, tau=0.0, lr_decay=0.0), torch.optim.Adam([b])
    for t in range(4):
        g = _grads(16, t)
        if t == 1:
            g[2] = float("inf")
        a.grad, b.grad = g.clone(), g.clone()
        oa.step()
        ob.step()
    assert not torch.isfinite(a.detach()[2])
    torch.testing.assert_close(a.detach(), b.detach(), equal_nan=True, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------
# 5. Reordered parameters on load
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [AMGT, AdaBelief])
def test_load_names_a_state_tensor_whose_shape_differs_from_its_parameter(cls):
    w, b = nn.Parameter(torch.randn(5, 3)), nn.Parameter(torch.randn(7))
    opt = cls([w, b], lr=0.01)
    for t in range(2):
        w.grad, b.grad = _grads((5, 3), t), _grads(7, t)
        opt.step()
    sd = opt.state_dict()
    w2, b2 = nn.Parameter(torch.randn(5, 3)), nn.Parameter(torch.randn(7))
    other = cls([b2, w2], lr=0.5)  # the same parameters, in another order
    b2.grad = torch.ones(7)
    other.step()
    before = copy.deepcopy(other.state_dict())
    with pytest.raises(ValueError, match=r"exp_avg.*\(5, 3\).*index 0.*\(7,\)") as err:
        other.load_state_dict(sd)
    assert "reordered" in str(err.value)
    after = other.state_dict()  # nothing was loaded
    assert after["param_groups"] == before["param_groups"]
    assert torch.equal(after["state"][0]["exp_avg"], before["state"][0]["exp_avg"])
