"""AMGT under torch.compile (one graph for every step) and the fused path's kernel: build, cache,
threads, the fallback without a compiler, and the CUDA dispatch (tested here without a GPU)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch._dynamo.testing import CompileCounter

import amgt._fused as fused_mod
from amgt import AMGT

torch.set_num_threads(1)


def _model_params(seed=0):
    """A 6-layer MLP: 12 parameter tensors (the issue's example size)."""
    torch.manual_seed(seed)
    layers = []
    for i in range(6):
        layers += [nn.Linear(8, 8), nn.ReLU()]
    return list(nn.Sequential(*layers).parameters())


def _set_grads(params, t):
    gen = torch.Generator().manual_seed(t)
    for p in params:
        g = torch.randn(p.shape, generator=gen)
        if t == 0:
            g.view(-1)[::3] = 0.0  # zero elements at step 1 (the case that made NaN)
        p.grad = g


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("kw", [{}, {"fused": True}, {"variance": "absolute", "threshold_feedback": False}],
                         ids=["default", "fused", "absolute-no-feedback"])
def test_compiled_step_is_one_graph_for_all_steps(kw):
    """Step counters and every step-dependent number are tensors: the first step's graph (state created
    by _init_group, run eagerly by Dynamo) serves every later step, no recompilation, no graph break."""
    params = _model_params()
    opt = AMGT(params, lr=0.01, **kw)
    counter = CompileCounter()
    step = torch.compile(opt.step, backend=counter)
    for t in range(6):
        _set_grads(params, t)
        step()
    assert counter.frame_count == 1, counter.frame_count
    assert opt.implementation == "compile"
    assert opt.diagnostics()["steps"] == 6.0


def test_compiled_step_matches_the_eager_loop():
    """What the graph computes (aot_eager: the traced graph, run by the eager kernels) is the loop's
    update to float32 round-off, diagnostics included; a channels_last parameter included."""
    a = _model_params() + [nn.Parameter(torch.randn(4, 3, 3, 3).to(memory_format=torch.channels_last))]
    b = [nn.Parameter(p.detach().clone()) for p in a]
    oa, ob = AMGT(a, lr=0.01), AMGT(b, lr=0.01, foreach=False)
    step = torch.compile(oa.step, backend="aot_eager")
    for t in range(8):
        _set_grads(a, t)
        for x, y in zip(a, b):
            y.grad = x.grad.clone()
        step()
        ob.step()
    for x, y in zip(a, b):
        torch.testing.assert_close(x.detach(), y.detach(), rtol=1e-5, atol=1e-6)
    da, db = oa.diagnostics(), ob.diagnostics()
    assert da["lambda_mean"] == pytest.approx(db["lambda_mean"], rel=1e-6)
    assert da["suppressed_fraction"] == pytest.approx(db["suppressed_fraction"], abs=1e-3)
    assert da["lr_t"] == pytest.approx(db["lr_t"])


# ---------------------------------------------------------------------------------------------------
# The fused path's CPU kernel
# ---------------------------------------------------------------------------------------------------
def test_fused_kernel_result_does_not_depend_on_the_thread_count():
    """Sums are per fixed chunk, so 1 and 2 threads give bit-identical results (also on a tensor large
    enough to be split between threads)."""
    results = []
    threads = torch.get_num_threads()
    for n in (1, 2):
        torch.set_num_threads(n)
        torch.manual_seed(0)
        params = [nn.Parameter(torch.randn(300_000)), nn.Parameter(torch.randn(50, 7))]
        opt = AMGT(params, lr=0.01, fused=True)
        for t in range(4):
            _set_grads(params, t + 1)
            opt.step()
        results.append(([p.detach().clone() for p in params], opt.diagnostics()))
    torch.set_num_threads(threads)
    (p1, d1), (p2, d2) = results
    assert all(torch.equal(x, y) for x, y in zip(p1, p2))
    assert d1 == d2


def test_fused_kernel_is_built_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("AMGT_EXTENSIONS_DIR", str(tmp_path))
    fused_mod.cpu_kernel.cache_clear()
    try:
        assert fused_mod.cpu_kernel() is not None
        built = list(tmp_path.glob("amgt_fused_cpu_*.so"))
        assert len(built) == 1
        mtime = built[0].stat().st_mtime_ns
        fused_mod.cpu_kernel.cache_clear()
        assert fused_mod.cpu_kernel() is not None  # a new process would do the same: load, not rebuild
        assert built[0].stat().st_mtime_ns == mtime and list(tmp_path.glob("*.so")) == built
    finally:
        fused_mod.cpu_kernel.cache_clear()


def test_fused_without_a_compiler_warns_once_and_runs_foreach(monkeypatch):
    monkeypatch.setattr(fused_mod, "_compiler", lambda: None)
    fused_mod.cpu_kernel.cache_clear()
    fused_mod._warned.cache_clear()
    try:
        a = _model_params()
        b = [nn.Parameter(p.detach().clone()) for p in a]
        oa, ob = AMGT(a, lr=0.01, fused=True), AMGT(b, lr=0.01, foreach=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for t in range(3):
                _set_grads(a, t)
                _set_grads(b, t)
                oa.step()
                ob.step()
        msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        assert len(msgs) == 1 and "no C++ compiler" in msgs[0] and "foreach" in msgs[0]
        assert oa.implementation == "foreach"
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    finally:
        fused_mod.cpu_kernel.cache_clear()
        fused_mod._warned.cache_clear()


def test_fused_dispatch_per_device_and_cuda_fallback(monkeypatch):
    """CUDA parameters go to the torch.compile-d capturable step (dispatch checked with CPU tensors posing
    as a CUDA device: no GPU here); when compiling fails, one warning and the foreach path."""
    assert fused_mod.fused_backend(torch.device("cpu")) == "cpu-kernel"
    assert fused_mod.fused_backend(torch.device("cuda", 0)) == "cuda-compile"
    assert fused_mod.fused_backend(torch.device("mps")) == "none"
    calls = []

    def fake_compiled(static):
        from amgt._capturable import capturable_amgt

        def run(*lists, diagnostics):
            calls.append(dict(static))
            diagnostics.accumulator(lists[0][0].device).add_(capturable_amgt(*lists, **dict(static)))
        return run

    monkeypatch.setattr(fused_mod, "fused_backend", lambda device: "cuda-compile")
    monkeypatch.setattr(fused_mod, "_cuda_compiled", fake_compiled)
    a = _model_params()
    b = [nn.Parameter(p.detach().clone()) for p in a]
    oa, ob = AMGT(a, lr=0.01, fused=True), AMGT(b, lr=0.01, foreach=False)
    for t in range(3):
        _set_grads(a, t)
        _set_grads(b, t)
        oa.step()
        ob.step()
    assert len(calls) == 3 and calls[0]["variance"] == "relative" and calls[0]["tau"] == 0.05
    assert oa.implementation == "fused"
    for x, y in zip(a, b):
        torch.testing.assert_close(x.detach(), y.detach(), rtol=1e-5, atol=1e-6)

    def broken(static):
        def run(*lists, diagnostics):
            raise RuntimeError("no working Triton")
        return run

    monkeypatch.setattr(fused_mod, "_cuda_compiled", broken)
    fused_mod._warned.cache_clear()
    with pytest.warns(RuntimeWarning, match="torch.compile of the CUDA step failed.*foreach"):
        _set_grads(a, 3)
        oa.step()
    assert oa.implementation == "foreach"
    fused_mod._warned.cache_clear()
    fused_mod._CUDA_STEPS.clear()
