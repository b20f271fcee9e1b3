"""One test battery over every registered optimizer, plus AMGT's own properties.

The battery follows torch's ``OptimizerInfo`` idea (torch/testing/_internal/common_optimizers.py): one
table saying what each optimizer supports, and the same checks run for every entry of
``amgt.available_optimizers()`` and for AMGT's fused path (``fused=True``). The AMGT-specific tests check the properties listed in
``docs/algorithm.md`` / amgt-spec.md ("Properties the implementation must have").
"""

from __future__ import annotations

import copy
import io
import math
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import amgt
from amgt import AMGT, available_optimizers, build_optimizer

torch.set_num_threads(1)  # 2 shared CPU cores; the tensors here are tiny anyway


# --------------------------------------------------------------------------------------------------------
# The OptimizerInfo table
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OptimizerInfo:
    """What a registered optimizer supports (the battery skips what it does not claim)."""

    supports_foreach: bool = True
    supports_sparse: bool = False  # True: sparse grads work; False: they must raise a clear error
    supports_complex: bool = True
    supports_maximize: bool = True
    lr: float = 0.05  # for the small convergence problem


_INFO = {
    "sgd": OptimizerInfo(supports_sparse=True, lr=0.02),
    "rmsprop": OptimizerInfo(lr=0.01),
}


def info(name: str) -> OptimizerInfo:
    return _INFO.get(name, OptimizerInfo())


ALL = available_optimizers()
AMGT_NAMES = [n for n in ALL if n.startswith("amgt")]
# AMGT's fused path (fused=True) runs the whole battery too, as "<registry name>:fused"
BATTERY = ALL + [f"{n}:fused" for n in AMGT_NAMES]


def build(name: str, params, **hparams):
    """``build_optimizer`` for a battery entry: ``"<name>:fused"`` is ``name`` with ``fused=True`` (whose
    ``foreach`` argument is then left out: the two cannot both be set)."""
    base, _, variant = name.partition(":")
    if variant == "fused":
        hparams.pop("foreach", None)
        hparams["fused"] = True
    return build_optimizer(base, params, **hparams)


def test_registry_lists_the_issue_optimizers():
    expected = {"amgt", "adam", "adamw", "amsgrad", "adabelief", "rmsprop", "sgd",
                "amgt-no-threshold", "amgt-no-decay", "amgt-no-variance"}
    assert set(ALL) == expected


# --------------------------------------------------------------------------------------------------------
# Helpers: deterministic parameters and gradients
# --------------------------------------------------------------------------------------------------------
MIXED_SHAPES = [(5, 3), (7,), (), (0,), (2, 0, 3), (4, 1, 2, 2)]


def make_params(shapes=((5, 3), (7,), ()), dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(s, generator=gen, dtype=dtype)) for s in shapes]


def clone_params(params):
    return [nn.Parameter(p.detach().clone()) for p in params]


def set_grads(params, step, noise=1.0, seed=123):
    """Gradient of 0.5·||p - 1||² plus seeded noise: depends on the parameters, reproducible per step."""
    gen = torch.Generator().manual_seed(seed * 100_003 + step)
    for p in params:
        if p.is_complex():
            n = torch.view_as_complex(torch.randn(*p.shape, 2, generator=gen, dtype=p.real.dtype))
        else:
            n = torch.randn(p.shape, generator=gen, dtype=torch.float32).to(p.dtype)
        p.grad = (p.detach() - 1) + noise * n


def run(opt, params, steps, start=0, **kw):
    for t in range(start, start + steps):
        set_grads(params, t, **kw)
        opt.step()
    return params


def assert_same(a, b, exact=True, rtol=1e-5, atol=1e-6):
    for x, y in zip(a, b):
        if exact:
            assert torch.equal(x.detach(), y.detach()), (x, y)
        else:
            torch.testing.assert_close(x.detach(), y.detach(), rtol=rtol, atol=atol)


# --------------------------------------------------------------------------------------------------------
# The battery (every registered optimizer)
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BATTERY)
def test_converges_on_small_problem(name):
    """Least squares, 64×10 well-conditioned design, full batch: the loss falls by 100× in 400 steps."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 10, generator=gen)
    w_true = torch.randn(10, 1, generator=gen)
    y = x @ w_true
    model = nn.Linear(10, 1, bias=False)
    nn.init.zeros_(model.weight)
    opt = build(name, model.parameters(), lr=info(name).lr)

    def closure():
        opt.zero_grad()
        loss = (model(x) - y).square().mean()
        loss.backward()
        return loss

    first = closure().item()
    for _ in range(400):
        loss = opt.step(closure)
    assert math.isfinite(loss.item())
    assert loss.item() < first / 100, (first, loss.item())


@pytest.mark.parametrize("name", BATTERY)
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_params_without_grad_untouched(name, weight_decay):
    params = make_params()
    frozen = params[1].detach().clone()
    opt = build(name, params, weight_decay=weight_decay)
    for t in range(5):
        set_grads(params, t)
        params[1].grad = None
        opt.step()
    assert torch.equal(params[1].detach(), frozen)  # bit-identical
    assert len(opt.state[params[1]]) == 0  # no state created for it
    assert not torch.equal(params[0].detach(), make_params()[0].detach())
    # A parameter whose grad goes back to None after it had state is not touched either.
    before = params[0].detach().clone()
    params[0].grad = None
    set_grads([params[2]], 99)
    opt.step()
    assert torch.equal(params[0].detach(), before)


@pytest.mark.parametrize("name", BATTERY)
@pytest.mark.parametrize("foreach", [False, True])
def test_grad_is_not_modified(name, foreach):
    """step() reads .grad and never writes it (maximize and L2 weight decay included), as torch.optim."""
    if foreach and not info(name).supports_foreach:
        pytest.skip("no foreach path")
    hp = {"weight_decay": 0.1, "foreach": foreach}
    if info(name).supports_maximize:
        hp["maximize"] = True
    params = make_params()
    opt = build(name, params, **hp)
    for t in range(3):
        set_grads(params, t)
        grads = [p.grad.clone() for p in params]
        opt.step()
        assert_same([p.grad for p in params], grads)


@pytest.mark.parametrize("name", BATTERY)
@pytest.mark.parametrize("foreach", [False, True])
def test_empty_and_zero_dim_tensors(name, foreach):
    if foreach and not info(name).supports_foreach:
        pytest.skip("no foreach path")
    params = make_params(MIXED_SHAPES)
    start = [p.detach().clone() for p in params]
    opt = build(name, params, foreach=foreach)
    run(opt, params, 3)
    for p, s in zip(params, start):
        assert p.shape == s.shape and torch.isfinite(p).all()
        if p.numel():
            assert not torch.equal(p.detach(), s)


@pytest.mark.parametrize("name", [n for n in BATTERY if info(n).supports_foreach])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_foreach_matches_loop(name, dtype):
    """Default hyperparameters, mixed shapes (0-d and empty included) and a second dtype in the group;
    for the ``:fused`` entries, the fused kernel against the loop."""
    loop_params = make_params(MIXED_SHAPES, dtype=dtype) + make_params([(3, 3)], dtype=torch.float64, seed=5)
    fe_params = clone_params(loop_params)
    loop = build(name.partition(":")[0], loop_params, foreach=False)  # a fused entry: against the loop
    fe = build(name, fe_params, foreach=True)
    for t in range(25):
        set_grads(loop_params, t)
        set_grads(fe_params, t)
        if t < 4:  # the last tensor joins late: per-parameter step counters differ inside one group
            loop_params[0].grad = fe_params[0].grad = None
        loop.step()
        fe.step()
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-13)
    assert_same(loop_params, fe_params, exact=False, **tol)


@pytest.mark.parametrize("name", BATTERY)
def test_parameter_joining_late_starts_fresh(name):
    """State is per parameter: a tensor whose first gradient comes at step 6 gets a first-step update."""
    params = make_params()
    opt = build(name, params[:2] + [params[2]])
    for t in range(5):
        set_grads(params, t)
        params[2].grad = None
        opt.step()
    late = nn.Parameter(params[2].detach().clone())
    fresh = build(name, [late])
    set_grads(params, 5)
    late.grad = params[2].grad.clone()
    opt.step()
    fresh.step()
    assert torch.equal(params[2].detach(), late.detach())


@pytest.mark.parametrize("name", BATTERY)
@pytest.mark.parametrize("via_bytes", [False, True])
def test_state_dict_round_trip_into_fresh_model(name, via_bytes):
    ref = make_params()
    opt = build(name, ref)
    run(opt, ref, 8)
    saved_params = [p.detach().clone() for p in ref]
    sd = copy.deepcopy(opt.state_dict())
    if via_bytes:
        buf = io.BytesIO()
        torch.save(sd, buf)
        buf.seek(0)
        sd = torch.load(buf, weights_only=True)
    run(opt, ref, 8, start=8)

    fresh = [nn.Parameter(torch.empty_like(p)) for p in saved_params]
    with torch.no_grad():
        for f, s in zip(fresh, saved_params):
            f.copy_(s)
    opt2 = build(name, fresh, lr=0.123)  # lr is restored from the state dict
    opt2.load_state_dict(sd)
    run(opt2, fresh, 8, start=8)
    assert_same(ref, fresh)


@pytest.mark.parametrize("name", BATTERY)
def test_state_dict_across_dtypes(name):
    """float32 run saved, loaded into a float64 copy: continues like the float32 run (to float32 round-off)."""
    ref = make_params()
    opt = build(name, ref)
    run(opt, ref, 5)
    sd = copy.deepcopy(opt.state_dict())
    wide = [nn.Parameter(p.detach().double()) for p in ref]
    opt2 = build(name, wide)
    opt2.load_state_dict(sd)
    for st in opt2.state.values():
        for k, v in st.items():
            if torch.is_tensor(v) and v.is_floating_point() and v.dim() > 0:
                assert v.dtype == torch.float64, k
    run(opt, ref, 5, start=5)
    run(opt2, wide, 5, start=5)
    assert_same([p.double() for p in ref], wide, exact=False, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", BATTERY)
def test_scheduler_lr_change_takes_effect(name):
    """StepLR(gamma=0) sets lr to 0 after 3 steps: from then on the parameters stay put."""
    params = make_params()
    opt = build(name, params, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.0)
    for t in range(3):
        set_grads(params, t)
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == 0.0
    frozen = [p.detach().clone() for p in params]
    run(opt, params, 3, start=3)
    assert_same(params, frozen)


@pytest.mark.parametrize("name", BATTERY)
def test_per_group_overrides(name):
    """Two param groups with their own lr/weight_decay behave like two separate optimizers."""
    a, b = make_params(seed=1), make_params(seed=2)
    a2, b2 = clone_params(a), clone_params(b)
    both = build(name, [{"params": a}, {"params": b, "lr": 0.01, "weight_decay": 0.05}])
    sep_a = build(name, a2)
    sep_b = build(name, b2, lr=0.01, weight_decay=0.05)
    for t in range(6):
        set_grads(a + b, t)
        set_grads(a2 + b2, t)
        both.step()
        sep_a.step()
        sep_b.step()
    assert_same(a + b, a2 + b2)
    assert not torch.allclose(torch.cat([p.flatten() for p in a]), torch.cat([p.flatten() for p in b]))


@pytest.mark.parametrize("name", BATTERY)
def test_closure_runs_with_grad_and_returns_loss(name):
    model = nn.Linear(3, 1)
    x = torch.randn(8, 3)
    opt = build(name, model.parameters())
    calls = []

    def closure():
        opt.zero_grad()
        loss = model(x).square().mean()
        assert torch.is_grad_enabled()
        loss.backward()
        calls.append(loss.item())
        return loss

    before = model.weight.detach().clone()
    with torch.no_grad():  # the optimizer turns gradients on for the closure
        loss = opt.step(closure)
    assert calls and loss.item() == calls[0]
    assert not torch.equal(model.weight.detach(), before)


@pytest.mark.parametrize("name", BATTERY)
def test_grad_scaler_skipped_step_changes_nothing(name):
    model = nn.Linear(4, 2)
    opt = build(name, model.parameters())
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    x = torch.randn(16, 4)
    for _ in range(2):  # real steps first, so that state exists
        opt.zero_grad()
        scaler.scale(model(x).square().mean()).backward()
        scaler.step(opt)
        scaler.update()
    params = [p.detach().clone() for p in model.parameters()]
    state = copy.deepcopy(opt.state_dict())
    opt.zero_grad()
    scaler.scale(model(x).square().mean()).backward()
    model.weight.grad[0, 0] = float("inf")
    scaler.step(opt)
    scaler.update()
    assert scaler.get_scale() == 2.0**7  # the step was seen as skipped
    assert_same(model.parameters(), params)
    after = opt.state_dict()
    for k, st in state["state"].items():
        for key, v in st.items():
            w = after["state"][k][key]
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(w)), (k, key)  # step counter included
    for g0, g1 in zip(state["param_groups"], after["param_groups"]):
        assert g0 == g1


@pytest.mark.parametrize("name", BATTERY)
def test_sparse_gradients(name):
    emb = nn.Embedding(10, 3, sparse=True)
    opt = build(name, emb.parameters())
    emb(torch.tensor([1, 2, 2])).sum().backward()
    if info(name).supports_sparse:
        before = emb.weight.detach().clone()
        opt.step()
        assert not torch.equal(before, emb.weight.detach())
    else:
        with pytest.raises(RuntimeError, match="(?i)sparse"):
            opt.step()


@pytest.mark.parametrize("name", [n for n in BATTERY if info(n).supports_complex])
@pytest.mark.parametrize("foreach", [False, True])
def test_complex_params_follow_view_as_real(name, foreach):
    """A complex parameter moves exactly like its view_as_real run as a real parameter."""
    gen = torch.Generator().manual_seed(0)
    z = nn.Parameter(torch.randn(4, 3, dtype=torch.complex64, generator=gen))
    r = nn.Parameter(torch.view_as_real(z.detach()).clone())
    oz = build(name, [z], foreach=foreach, weight_decay=0.01)
    orr = build(name, [r], foreach=foreach, weight_decay=0.01)
    for t in range(10):
        set_grads([z], t)
        r.grad = torch.view_as_real(z.grad).clone()
        oz.step()
        orr.step()
    torch.testing.assert_close(torch.view_as_real(z.detach()), r.detach(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", BATTERY)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_params(name, dtype):
    """16-bit parameters: steps run, stay finite, and move like the float32 run (same direction)."""
    ref = make_params([(50,)])
    low = [nn.Parameter(p.detach().to(dtype)) for p in ref]
    start = low[0].detach().float().clone()
    o_ref = build(name, ref, lr=0.05)  # steps well above the 16-bit spacing near 1 (2^-7)
    o_low = build(name, low, lr=0.05)
    for t in range(5):
        set_grads(ref, t)
        low[0].grad = ref[0].grad.to(dtype)
        o_ref.step()
        o_low.step()
    assert low[0].dtype == dtype and torch.isfinite(low[0]).all()
    d_ref = ref[0].detach() - make_params([(50,)])[0].detach()
    d_low = low[0].detach().float() - start
    assert torch.nn.functional.cosine_similarity(d_ref, d_low, dim=0) > 0.9


# --------------------------------------------------------------------------------------------------------
# AMGT: reductions to Adam / AdamW
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize(
    "hp",
    [{}, {"weight_decay": 0.1}, {"maximize": True}, {"weight_decay": 0.05, "maximize": True},
     {"betas": (0.8, 0.99), "eps": 1e-6, "lr": 3e-3}],
    ids=["plain", "l2", "maximize", "l2-maximize", "betas-eps-lr"],
)
def test_amgt_without_mechanisms_is_adam(foreach, hp):
    """γ = τ = λ = 0: bit-identical to torch.optim.Adam (same path), step for step, 300 steps."""
    p_amgt = make_params([(6, 5), (5,), ()])
    p_adam = clone_params(p_amgt)
    o_amgt = AMGT(p_amgt, gamma=0.0, tau=0.0, lr_decay=0.0, foreach=foreach, **hp)
    o_adam = torch.optim.Adam(p_adam, foreach=foreach, **hp)
    for t in range(300):
        set_grads(p_amgt, t)
        set_grads(p_adam, t)
        o_amgt.step()
        o_adam.step()
        if t % 50 == 0 or t == 299:
            assert_same(p_amgt, p_adam)
    for pa, pb in zip(p_amgt, p_adam):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(o_amgt.state[pa][key], o_adam.state[pb][key])


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("weight_decay", [0.01, 0.3])
def test_amgt_decoupled_without_mechanisms_is_adamw(foreach, weight_decay):
    p_amgt = make_params([(6, 5), (5,)])
    p_adamw = clone_params(p_amgt)
    o_amgt = AMGT(p_amgt, weight_decay=weight_decay, decoupled_weight_decay=True, gamma=0.0, tau=0.0,
                  lr_decay=0.0, foreach=foreach)
    o_adamw = torch.optim.AdamW(p_adamw, weight_decay=weight_decay, foreach=foreach)
    for t in range(300):
        set_grads(p_amgt, t)
        set_grads(p_adamw, t)
        o_amgt.step()
        o_adamw.step()
    assert_same(p_amgt, p_adamw)


def test_amgt_is_adam_under_one_cycle_with_cycle_momentum():
    """OneCycleLR rewrites lr and betas[0] every step; AMGT reads both from the group like Adam does."""
    p_amgt = make_params()
    p_adam = clone_params(p_amgt)
    o_amgt = AMGT(p_amgt, gamma=0.0, tau=0.0, lr_decay=0.0)
    o_adam = torch.optim.Adam(p_adam)
    scheds = [torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=60, cycle_momentum=True)
              for o in (o_amgt, o_adam)]
    betas_seen = set()
    for t in range(60):
        set_grads(p_amgt, t)
        set_grads(p_adam, t)
        o_amgt.step()
        o_adam.step()
        for s in scheds:
            s.step() if t < 59 else None
        betas_seen.add(o_amgt.param_groups[0]["betas"][0])
    assert len(betas_seen) > 10  # the scheduler did rewrite β1
    assert_same(p_amgt, p_adam)


def test_amgt_default_run_under_one_cycle_uses_rewritten_betas():
    """With the mechanisms on, a run whose β1 is rewritten differs from one where it is not."""
    a = make_params()
    b = clone_params(a)
    oa, ob = AMGT(a), AMGT(b)
    sched = torch.optim.lr_scheduler.OneCycleLR(oa, max_lr=1e-3, total_steps=30, cycle_momentum=True)
    for t in range(20):
        set_grads(a, t)
        set_grads(b, t)
        oa.step()
        ob.step()
        sched.step()
        for g in ob.param_groups:  # same lr, β1 left alone
            g["lr"] = oa.param_groups[0]["lr"]
    assert not torch.allclose(a[0], b[0])


# --------------------------------------------------------------------------------------------------------
# AMGT: each mechanism alone
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("foreach", [False, True])
def test_lr_decay_alone_is_adam_with_inverse_time_schedule(foreach):
    """λ > 0 alone: η_t = η0 / (1 + λ(t-1)), i.e. Adam under LambdaLR(1 / (1 + λ·epoch))."""
    lam = 0.05
    p_amgt = make_params()
    p_adam = clone_params(p_amgt)
    o_amgt = AMGT(p_amgt, lr=0.01, gamma=0.0, tau=0.0, lr_decay=lam, foreach=foreach)
    o_adam = torch.optim.Adam(p_adam, lr=0.01, foreach=foreach)
    sched = torch.optim.lr_scheduler.LambdaLR(o_adam, lambda e: 1.0 / (1.0 + lam * e))
    for t in range(1, 41):
        set_grads(p_amgt, t)
        set_grads(p_adam, t)
        o_amgt.step()
        o_adam.step()
        sched.step()
        d = o_amgt.diagnostics()
        assert d["lr_t"] == pytest.approx(0.01 / (1 + lam * (t - 1)), rel=1e-12)
    assert_same(p_amgt, p_adam, exact=False, rtol=1e-6, atol=1e-7)
    assert o_amgt.param_groups[0]["lr"] == 0.01  # the group's η0 itself is never rewritten


def _threshold_run(foreach, feedback, steps=12, tau=0.5):
    """AMGT with τ > 0 next to the same AMGT with τ = 0: the τ = 0 run yields the unthresholded u."""
    shapes = [(30,), (8, 5), ()]
    p_thr = make_params(shapes)
    p_raw = clone_params(p_thr)
    kw = dict(lr=0.1, gamma=1.0, lr_decay=0.0, foreach=foreach)
    o_thr = AMGT(p_thr, tau=tau, threshold_feedback=feedback, **kw)
    o_raw = AMGT(p_raw, tau=0.0, **kw)
    history = []
    for t in range(steps):
        # identical gradients for both (taken at the τ = 0 run's parameters) so the moments agree
        set_grads(p_raw, t)
        for a, b in zip(p_thr, p_raw):
            a.grad = b.grad.clone()
        before_thr = [p.detach().clone() for p in p_thr]
        before_raw = [p.detach().clone() for p in p_raw]
        o_thr.step()
        o_raw.step()
        applied = [(b - p.detach()) / 0.1 for b, p in zip(before_thr, p_thr)]
        raw = [(b - p.detach()) / 0.1 for b, p in zip(before_raw, p_raw)]
        history.append((applied, raw, o_thr.diagnostics()))
    return p_thr, o_thr, history


@pytest.mark.parametrize("foreach", [False, True])
def test_threshold_with_feedback_keeps_suppressed_mass(foreach):
    """τ > 0 alone: some elements suppressed, and Σ applied + residual == Σ unthresholded (error feedback)."""
    p_thr, o_thr, history = _threshold_run(foreach, feedback=True)
    total_applied = [torch.zeros_like(p) for p in p_thr]
    total_raw = [torch.zeros_like(p) for p in p_thr]
    suppressed_any = False
    for applied, raw, diag in history:
        zeros = sum(int((a == 0).sum()) for a in applied)
        numel = sum(a.numel() for a in applied)
        assert diag["suppressed_fraction"] == pytest.approx(zeros / numel)
        suppressed_any |= zeros > 0
        for ta, tr, a, r in zip(total_applied, total_raw, applied, raw):
            ta += a
            tr += r
    assert suppressed_any
    for p, ta, tr in zip(p_thr, total_applied, total_raw):
        residual = o_thr.state[p]["threshold_residual"]
        assert residual.abs().sum() > 0 or p.dim() == 0
        torch.testing.assert_close(ta + residual, tr, rtol=1e-4, atol=1e-5)
    assert set(o_thr.state[p_thr[0]]) == {"step", "exp_avg", "exp_avg_sq", "threshold_residual"}


@pytest.mark.parametrize("foreach", [False, True])
def test_threshold_without_feedback_drops_small_updates(foreach):
    """threshold_feedback=False: no residual buffer; applied = u·mask with mask = |u| ≥ τ·RMS(u)."""
    tau = 0.5
    p_thr, o_thr, history = _threshold_run(foreach, feedback=False, tau=tau)
    assert "threshold_residual" not in o_thr.state[p_thr[0]]
    for t, (applied, raw, diag) in enumerate(history):
        for a, r in zip(applied, raw):
            theta = tau * r.norm() / math.sqrt(r.numel())
            expected = torch.where(r.abs() >= theta, r, torch.zeros_like(r))
            # elements right at the threshold may flip by round-off; compare away from it
            clear = (r.abs() - theta).abs() > 1e-4 * theta
            torch.testing.assert_close(a[clear], expected[clear], rtol=1e-4, atol=1e-6)
        if t == 0:  # Adam's first step is ±lr·(1 - O(ε)) everywhere: |u| = RMS(u), nothing is below τ·RMS
            assert diag["suppressed_fraction"] == 0.0
        else:
            assert 0 < diag["suppressed_fraction"] < 1


@pytest.mark.parametrize("tau,feedback", [(0.0, True), (0.0, False), (0.05, False)])
def test_no_residual_buffer_unless_feedback_thresholding(tau, feedback):
    params = make_params()
    opt = AMGT(params, tau=tau, threshold_feedback=feedback)
    run(opt, params, 3)
    for p in params:
        assert set(opt.state[p]) == {"step", "exp_avg", "exp_avg_sq"}  # Adam's 3n


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("variance", ["relative", "absolute"])
def test_variance_weight_below_one_only_for_noisy_gradients(foreach, variance):
    """γ > 0 alone: λ_t ≈ 1 for a constant gradient, clearly < 1 for pure noise."""
    gen = torch.Generator().manual_seed(0)
    const = [nn.Parameter(torch.zeros(200))]
    noisy = [nn.Parameter(torch.zeros(200))]
    gamma = 1.0 if variance == "relative" else 4.0
    o_c = AMGT(const, gamma=gamma, tau=0.0, lr_decay=0.0, variance=variance, foreach=foreach, lr=0.0)
    o_n = AMGT(noisy, gamma=gamma, tau=0.0, lr_decay=0.0, variance=variance, foreach=foreach, lr=0.0)
    g_const = torch.full((200,), 0.5)
    for _ in range(50):
        const[0].grad = g_const.clone()
        noisy[0].grad = torch.randn(200, generator=gen)
        o_c.step()
        o_n.step()
    d_c, d_n = o_c.diagnostics(), o_n.diagnostics()
    assert d_c["lambda_mean"] > 0.999
    assert d_n["lambda_mean"] < 0.8
    # and λ changes m: with γ = 0 the noisy run's momentum is larger in magnitude
    ref = [nn.Parameter(torch.zeros(200))]
    o_r = AMGT(ref, gamma=0.0, tau=0.0, lr_decay=0.0, foreach=foreach, lr=0.0)
    gen.manual_seed(0)
    for _ in range(50):
        ref[0].grad = torch.randn(200, generator=gen)
        o_r.step()
    assert o_n.state[noisy[0]]["exp_avg"].abs().mean() < 0.9 * o_r.state[ref[0]]["exp_avg"].abs().mean()


def test_first_step_equals_adam_even_with_all_mechanisms_but_threshold():
    """t = 1 uses λ_1 = 1 and η_1 = η0: the first AMGT step (τ = 0) is Adam's first step exactly."""
    a = make_params()
    b = clone_params(a)
    oa, ob = AMGT(a, gamma=5.0, tau=0.0, lr_decay=0.5), torch.optim.Adam(b)
    set_grads(a, 0)
    set_grads(b, 0)
    oa.step()
    ob.step()
    assert_same(a, b)


@pytest.mark.parametrize("foreach", [False, True])
def test_amgt_per_group_mechanism_overrides(foreach):
    """γ, τ, λ and variance set per group act per group (the residual exists only where τ > 0)."""
    a, b = make_params(seed=1), make_params(seed=2)
    a2, b2 = clone_params(a), clone_params(b)
    over = {"tau": 0.0, "gamma": 3.0, "lr_decay": 0.1, "variance": "absolute"}
    both = AMGT([{"params": a}, {"params": b, **over}], lr=0.01, foreach=foreach)
    sep_a, sep_b = AMGT(a2, lr=0.01, foreach=foreach), AMGT(b2, lr=0.01, foreach=foreach, **over)
    for t in range(8):
        set_grads(a + b, t)
        set_grads(a2 + b2, t)
        both.step()
        sep_a.step()
        sep_b.step()
    assert_same(a + b, a2 + b2)
    assert "threshold_residual" in both.state[a[0]] and "threshold_residual" not in both.state[b[0]]


@pytest.mark.parametrize("name", AMGT_NAMES)
def test_ablation_variants_pin_their_mechanism(name):
    params = make_params()
    opt = build_optimizer(name, params)
    g = opt.param_groups[0]
    off = {"amgt": None, "amgt-no-threshold": ("tau", 0.0), "amgt-no-decay": ("lr_decay", 0.0),
           "amgt-no-variance": ("gamma", 0.0)}[name]
    for key, default in (("tau", 0.05), ("lr_decay", 1e-4), ("gamma", 1.0)):
        assert g[key] == (off[1] if off and off[0] == key else default)


# --------------------------------------------------------------------------------------------------------
# AMGT: state, dtypes, complex, diagnostics
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("foreach", [False, True])
def test_low_precision_params_keep_float32_state(dtype, foreach):
    params = make_params([(20,), (3, 4)], dtype=dtype)
    opt = AMGT(params, foreach=foreach)
    run(opt, params, 4)
    for p in params:
        st = opt.state[p]
        assert p.dtype == dtype
        assert st["exp_avg"].dtype == st["exp_avg_sq"].dtype == st["threshold_residual"].dtype == torch.float32
        assert st["step"].dtype == torch.float32 and st["step"].item() == 4
    # and a state_dict round trip keeps them float32 (torch's default load would cast them to 16 bits)
    fresh = clone_params(params)
    opt2 = AMGT(fresh, foreach=foreach)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    for p in fresh:
        assert opt2.state[p]["exp_avg"].dtype == torch.float32
    run(opt, params, 3, start=4)
    run(opt2, fresh, 3, start=4)
    assert_same(params, fresh)


@pytest.mark.parametrize("foreach", [False, True])
def test_amgt_complex_defaults_match_real_view(foreach):
    """Default hyperparameters (all mechanisms on): complex = AMGT on the view_as_real parameter."""
    gen = torch.Generator().manual_seed(1)
    z = nn.Parameter(torch.randn(6, 5, dtype=torch.complex64, generator=gen))
    r = nn.Parameter(torch.view_as_real(z.detach()).clone())
    oz, orr = AMGT([z], lr=0.05, foreach=foreach), AMGT([r], lr=0.05, foreach=foreach)
    for t in range(15):
        set_grads([z], t)
        r.grad = torch.view_as_real(z.grad).clone()
        oz.step()
        orr.step()
    torch.testing.assert_close(torch.view_as_real(z.detach()), r.detach(), rtol=1e-6, atol=1e-7)
    assert oz.diagnostics()["suppressed_fraction"] > 0


class _SyncRecorder(torch.overrides.TorchFunctionMode):
    """Records host reads of tensor values (item/tolist/bool/float/int) during a step."""

    READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__float__,
             torch.Tensor.__int__, torch.Tensor.nonzero}

    def __init__(self, allowed):
        super().__init__()
        self.allowed = {id(t) for t in allowed}
        self.reads = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.READS and args and id(args[0]) not in self.allowed:
            self.reads.append(func.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("host_reads", [False, True], ids=["as-on-cuda", "cpu"])
def test_diagnostics_need_no_host_read_until_asked(foreach, host_reads, monkeypatch):
    """step() reads no tensor value on the host except the CPU ``step`` counters (as torch.optim.Adam)
    and, on CPU only, each tensor's threshold θ (a CPU scalar: no device to wait for), which lets the
    all-finite case skip the non-finite handling. With that switched off, as on CUDA, it reads nothing;
    diagnostics() is where the accumulated sums are read."""
    import amgt._functional as F

    monkeypatch.setattr(F, "host_reads_are_free", lambda device: host_reads)
    params = make_params([(40,), (6, 7)])
    opt = AMGT(params, foreach=foreach, lr=0.01)
    set_grads(params, 0)
    opt.step()  # state exists now
    steps = [opt.state[p]["step"] for p in params]
    rec = _SyncRecorder(steps)
    with rec:
        for t in range(1, 4):
            set_grads(params, t)
            opt.step()
    expected = [] if not host_reads else ["tolist"] * 3 if foreach else ["item"] * 6  # per group or tensor
    assert rec.reads == expected
    rec2 = _SyncRecorder([])
    with rec2:
        d = opt.diagnostics()
    assert rec2.reads  # the sums are read here
    assert d["steps"] == 4.0
    assert 0.0 <= d["suppressed_fraction"] <= 1.0
    assert 0.0 < d["lambda_mean"] <= 1.0
    assert d["lr_t"] == pytest.approx(0.01 / (1 + 1e-4 * 3))


def test_diagnostics_reset_and_before_any_step():
    params = make_params()
    opt = AMGT(params)
    d0 = opt.diagnostics()
    assert math.isnan(d0["lr_t"]) and d0["steps"] == 0.0 and d0["suppressed_fraction"] == 0.0
    run(opt, params, 3)
    assert opt.diagnostics(reset=False)["steps"] == 3.0
    assert opt.diagnostics()["steps"] == 3.0
    d = opt.diagnostics()
    assert d["steps"] == 0.0 and d["lr_t"] == pytest.approx(1e-3 / (1 + 2e-4))  # η_t survives a reset


def test_tau_zero_reports_no_suppression_and_lambda_one_without_gamma():
    params = make_params()
    opt = AMGT(params, tau=0.0, gamma=0.0)
    run(opt, params, 3)
    d = opt.diagnostics()
    assert d["suppressed_fraction"] == 0.0 and d["lambda_mean"] == 1.0


# --------------------------------------------------------------------------------------------------------
# AMGT: constructor validation, registry errors
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"lr": -1e-3}, "lr"), ({"lr": float("nan")}, "lr"), ({"lr": torch.tensor(0.1)}, "lr"),
        ({"betas": (1.0, 0.999)}, "betas[0]"), ({"betas": (0.9, -0.1)}, "betas[1]"),
        ({"betas": (0.9,)}, "betas"), ({"eps": 0.0}, "eps"), ({"eps": -1.0}, "eps"),
        ({"weight_decay": -0.1}, "weight_decay"), ({"gamma": -1.0}, "gamma"),
        ({"gamma": float("inf")}, "gamma"), ({"tau": -0.05}, "tau"), ({"tau": 1.5}, "tau"),
        ({"lr_decay": -1e-4}, "lr_decay"), ({"variance": "sample"}, "variance"),
        ({"threshold_feedback": "yes"}, "threshold_feedback"), ({"maximize": 1}, "maximize"),
        ({"decoupled_weight_decay": None}, "decoupled_weight_decay"), ({"foreach": "auto"}, "foreach"),
        ({"lr": "0.1"}, "lr"), ({"fused": "no"}, "fused"), ({"fused": True, "foreach": True}, "fused"),
    ],
)
def test_constructor_rejects_out_of_range(kwargs, name):
    value = next(iter(kwargs.values()))
    with pytest.raises(ValueError) as err:
        AMGT(make_params(), **kwargs)
    msg = str(err.value)
    assert name in msg and "allowed" in msg
    shown = repr(value[0] if name == "betas[0]" else value[1] if name == "betas[1]" else value)
    assert shown in msg, msg


def test_registry_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        build_optimizer("adamm", make_params())
    for n in ALL:
        assert n in str(err.value)


@pytest.mark.parametrize("name", ALL)
def test_registry_unknown_hyperparameter_is_named(name):
    with pytest.raises(ValueError, match="'not_a_knob'"):
        build_optimizer(name, make_params(), not_a_knob=1)


def test_registry_amsgrad_not_applicable_to_amgt():
    with pytest.raises(ValueError, match="'amsgrad'"):
        build_optimizer("amgt", make_params(), amsgrad=True)


@pytest.mark.parametrize("name,key,value", [("amgt-no-threshold", "tau", 0.1),
                                            ("amgt-no-decay", "lr_decay", 1e-3),
                                            ("amgt-no-variance", "gamma", 2.0),
                                            ("amsgrad", "amsgrad", False)])
def test_registry_refuses_pinned_hyperparameters(name, key, value):
    with pytest.raises(ValueError, match=key):
        build_optimizer(name, make_params(), **{key: value})


def test_registry_defaults_from_the_paper():
    assert build_optimizer("sgd", make_params()).defaults["momentum"] == 0.9
    assert build_optimizer("sgd", make_params(), momentum=0.5).defaults["momentum"] == 0.5
    assert build_optimizer("amsgrad", make_params()).defaults["amsgrad"] is True
    assert isinstance(build_optimizer("adamw", make_params()), torch.optim.AdamW)
    assert amgt.get_optimizer_spec("amgt").cls is AMGT


# --------------------------------------------------------------------------------------------------------
# AdaBelief (our implementation) against the maintained library, where the library is right
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("foreach", [False, True])
def test_adabelief_matches_pytorch_optimizer(foreach):
    """Same numbers as pytorch_optimizer.AdaBelief (no rectify, L2 decay) on the cases it handles right."""
    po = pytest.importorskip("pytorch_optimizer")
    ours = make_params([(6, 5), (5,)])
    theirs = clone_params(ours)
    o1 = amgt.AdaBelief(ours, lr=0.01, weight_decay=0.01, foreach=foreach)
    o2 = po.AdaBelief(theirs, lr=0.01, weight_decay=0.01, weight_decouple=False, rectify=False, eps=1e-16,
                      foreach=foreach)
    for t in range(100):
        set_grads(ours, t)
        set_grads(theirs, t)
        o1.step()
        o2.step()
    assert_same(ours, theirs, exact=False, rtol=1e-5, atol=1e-6)


def test_foreach_none_uses_the_loop_on_cpu(monkeypatch):
    """foreach=None follows torch.optim's default: multi-tensor on CUDA, the per-tensor loop on CPU."""
    import amgt._functional as F

    def boom(*a, **k):
        raise AssertionError("foreach path used on CPU")

    monkeypatch.setattr(F, "_multi_tensor_amgt", boom)
    params = make_params()
    run(AMGT(params), params, 2)
    with pytest.raises(AssertionError, match="foreach path"):
        run(AMGT(params, foreach=True), params, 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_step_without_sync():
    """On CUDA, the default (foreach) step runs with sync debug mode 'error' once state exists."""
    params = [nn.Parameter(torch.randn(50, device="cuda")), nn.Parameter(torch.randn(3, 4, device="cuda"))]
    opt = AMGT(params)
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            opt.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert opt.diagnostics()["steps"] == 4.0


def test_compiled_is_a_deprecated_name_for_fused():
    """AMGT(compiled=True) warns and runs the fused path: equal to the loop to round-off, diagnostics
    included; 16-bit parameters go through it too."""
    shapes = [(30,), (8, 5), (2, 3, 4)]
    a = make_params(shapes) + make_params([(16,)], dtype=torch.bfloat16, seed=3)
    b = clone_params(a)
    with pytest.warns(DeprecationWarning, match="fused"):
        oa = AMGT(a, lr=0.01, compiled=True)
    ob = AMGT(b, lr=0.01, foreach=False)
    assert oa.defaults["fused"] is True
    for t in range(15):
        set_grads(a, t)
        for x, y in zip(a, b):
            y.grad = x.grad.clone()
        oa.step()
        ob.step()
    assert oa.implementation == "fused" and ob.implementation == "loop"
    assert_same(a[:3], b[:3], exact=False, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a[3].float(), b[3].float(), rtol=1e-2, atol=1e-2)
    da, db = oa.diagnostics(), ob.diagnostics()
    assert da["suppressed_fraction"] == pytest.approx(db["suppressed_fraction"], abs=0.02)
    assert da["lambda_mean"] == pytest.approx(db["lambda_mean"], rel=1e-5)
    assert oa.state[a[3]]["exp_avg"].dtype == torch.float32


def test_diagnostics_agree_between_paths_and_with_a_direct_count():
    """The loop path sums its diagnostics once per step (per device), the foreach path per group: both give
    the same λ mean and suppressed fraction, and the fraction is the count of zero applied updates."""
    shapes = ((40, 30), (17,), (), (3, 0), (64,))
    results = {}
    for foreach in (False, True):
        params = make_params(shapes)
        groups = [{"params": params[:2]}, {"params": params[2:], "tau": 0.3, "gamma": 2.0}]
        opt = AMGT(groups, lr=0.1, tau=0.1, foreach=foreach)
        zeros = numel = 0
        for t in range(6):
            set_grads(params, t)
            params[1].grad = None if t == 2 else params[1].grad  # a parameter without a gradient one step
            before = [p.detach().clone() for p in params]
            opt.step()
            for b, p in zip(before, params):
                if p.grad is not None and p.numel():
                    zeros += int((b == p.detach()).sum())
                    numel += p.numel()
        d = opt.diagnostics()
        assert d["steps"] == 6
        assert d["suppressed_fraction"] == pytest.approx(zeros / numel, abs=1e-12)
        assert 0 < d["lambda_mean"] < 1
        results[foreach] = d
    assert results[False]["suppressed_fraction"] == pytest.approx(results[True]["suppressed_fraction"], abs=1e-12)
    assert results[False]["lambda_mean"] == pytest.approx(results[True]["lambda_mean"], rel=1e-6)


@pytest.mark.parametrize("foreach", [False, True])
def test_functional_update_with_no_tensors_is_a_no_op(foreach):
    from amgt._functional import Diagnostics, amgt_update

    diag = Diagnostics()
    amgt_update([], [], [], [], [], [], foreach=foreach, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0, decoupled_weight_decay=False, gamma=1.0, tau=0.05, lr_decay=1e-4,
                variance="relative", maximize=False, diagnostics=diag)
    assert diag.summary()["steps"] == 0.0 and diag.summary()["suppressed_fraction"] == 0.0
