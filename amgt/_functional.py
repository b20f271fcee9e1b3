"""The AMGT update rule as plain functions (no state handling): a per-tensor loop, a foreach path, and the
dispatch to the fused (``_fused.py``) and traced (``_capturable.py``) paths.

The class :class:`amgt.AMGT` owns the state and calls :func:`amgt_update`. The math follows
``docs/algorithm.md`` (our precise reading of Laisin et al. 2025, "A Mathematically Modified Adam
Algorithm", sections "Adaptive Momentum Adjustment", "Dynamic Learning Rate Schedule", "Experimental
Setup"). Where the mechanisms are switched off (``gamma == 0``, ``tau == 0``, ``lr_decay == 0``) the
operations are exactly those of ``torch.optim.Adam`` (torch 2.x, non-capturable), in the same order, so
the two agree to float32 round-off.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from typing import Optional

import torch
from torch import Tensor

from ._capturable import capturable_amgt, masked_update
from ._diagnostics import Diagnostics

__all__ = ["amgt_update", "default_foreach", "state_dtype", "Diagnostics", "Workspace"]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def state_dtype(param: Tensor) -> torch.dtype:
    """dtype of the optimizer state kept for ``param``.

    16-bit parameters (float16, bfloat16) keep their moments in float32, so that the moments do not lose
    precision; every other dtype keeps its own (as torch.optim.Adam does).
    """
    return torch.float32 if param.dtype in _LOW_PRECISION else param.dtype


def default_foreach(params: list[Tensor]) -> bool:
    """``foreach=None``'s choice, as torch.optim makes it: the multi-tensor path when every parameter is
    on a device with native multi-tensor kernels (CUDA, XPU), the per-tensor loop otherwise (CPU)."""
    return all(p.device.type in ("cuda", "xpu") for p in params)


def _value(step: Tensor) -> float:
    return step.item() if isinstance(step, Tensor) else float(step)


class _Coefficients:
    """The step-dependent scalars of one step t (host floats; the same for the loop and foreach paths)."""

    __slots__ = ("lr_t", "bc1", "bc2", "var_scale", "den_shift", "first")

    def __init__(self, step: float, *, lr: float, beta1: float, beta2: float, eps: float, lr_decay: float,
                 dtype: torch.dtype) -> None:
        self.lr_t = lr / (1 + lr_decay * (step - 1))  # η_t = η0 / (1 + λ(t-1))
        self.bc1 = 1 - beta1**step
        self.bc2 = 1 - beta2**step
        self.first = step <= 1
        if not self.first:
            # σ²·bc2 = v - var_scale·m²  (σ² = v̂ - m̂_prev², m̂_prev = m / (1 - β1^(t-1)))
            self.var_scale = self.bc2 / (1 - beta1 ** (step - 1)) ** 2
            # (v̂ + ε²)·bc2 = v + den_shift; floored at the dtype's smallest normal so that 0/0 cannot occur
            self.den_shift = max(eps * eps * self.bc2, torch.finfo(dtype).tiny)


class Workspace:
    """Scratch buffers reused across tensors and steps by the per-tensor loop (three per device and dtype,
    each as large as the largest tensor seen).

    Why: on CPU, large temporaries are returned to the OS when freed and page-faulted back in on the next
    allocation, which costs about as much as the arithmetic; reusing three buffers removes that (and keeps
    small tensors' temporaries in cache). Not part of the optimizer state (never saved).
    """

    def __init__(self) -> None:
        self._bufs: dict[tuple, list[Tensor]] = {}
        self._views: dict[tuple, list[Tensor]] = {}  # (device, dtype, shape) -> views of the buffers

    def get(self, like: Tensor) -> list[Tensor]:
        """Three scratch tensors with ``like``'s shape, dtype and device (contents undefined)."""
        key = (like.device, like.dtype)
        views = self._views.get((key, like.shape))
        if views is not None:
            return views
        n = like.numel()
        bufs = self._bufs.get(key)
        if bufs is None or bufs[0].numel() < n:
            bufs = self._bufs[key] = [torch.empty(n, dtype=like.dtype, device=like.device) for _ in range(3)]
            self._views = {k: v for k, v in self._views.items() if k[0] != key}  # they view the old buffers
        views = self._views[(key, like.shape)] = [b[:n].view(like.shape) for b in bufs]
        return views

    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for bufs in self._bufs.values() for b in bufs)


def _variance_weight(exp_avg: Tensor, exp_avg_sq: Tensor, c: _Coefficients, gamma: float, variance: str,
                     out: tuple[Tensor, Tensor]) -> Tensor:
    """λ_t = 1 / (1 + γ·ρ) from the moments before this step's momentum update (v already updated).

    ρ = σ² / (v̂ + ε²) ("relative") or σ² ("absolute"), σ² = max(v̂ - m̂_prev², 0). With
    num = σ²·bc2 = max(v - var_scale·m², 0) and den = (v̂ + ε²)·bc2 = v + den_shift, "relative" is
    λ = den / (den + γ·num): five elementwise passes. Writes into ``out`` (two scratch tensors).
    """
    num = torch.addcmul(exp_avg_sq, exp_avg, exp_avg, value=-c.var_scale, out=out[0]).clamp_min_(0)
    if variance == "relative":
        den = torch.add(exp_avg_sq, c.den_shift, out=out[1])
        torch.add(den, num, alpha=gamma, out=num)
        return den.div_(num)
    return num.mul_(gamma / c.bc2).add_(1).reciprocal_()


def _exact_sum(x: Tensor) -> Tensor:
    """Sum of ``x`` as a 0-d tensor, NaN elements left out (λ_t is NaN only for an element whose
    gradient or moments are non-finite); in float64 beyond 2**24 elements, where float32 sums of 0/1
    masks and of λ in (0, 1] could round."""
    return x.nansum() if x.numel() <= 1 << 24 else x.nansum(dtype=torch.float64)


def _sum_of_sums(sums: list[Tensor]) -> Tensor:
    """Total of per-tensor 0-d sums on one device, in float64 (float32 on MPS, which has no float64), so
    that counts past 2**24 over many tensors stay exact."""
    dtype = torch.float32 if sums[0].device.type == "mps" else torch.float64
    return torch.stack(sums).sum(dtype=dtype)


def host_reads_are_free(device: torch.device) -> bool:
    """Whether the eager paths may read a tensor value on the host (CPU: no device to wait for). Elsewhere
    they never do, so that a step does not synchronize (tests switch this off to check that path)."""
    return device.type == "cpu"


def _threshold_apply_(param: Tensor, u: Tensor, residual: Optional[Tensor], tau: float, alpha: float,
                      scratch: Tensor, theta: Optional[Tensor] = None) -> tuple[Tensor, Tensor | int]:
    """Per-tensor thresholding of ``u`` and the parameter update ``param += alpha·u·mask``.

    θ = τ·||u||₂/sqrt(n), mask = |u| ≥ θ. With ``residual`` (which then already holds u: r + update), the
    suppressed part u·(1-mask) stays in it. ``theta`` may be passed in (the foreach path computes the norms
    together). Returns (kept count as a 0-d tensor, count of non-finite u).

    Non-finite elements of u (an inf/NaN gradient, or moments made non-finite by one) are left out: θ is
    τ times the RMS of the finite elements, and a non-finite element is never applied (its parameter
    element keeps its value; it is counted in the diagnostics). On CPU the common all-finite case is
    checked on the host and runs the four passes below; otherwise :func:`masked_update` (no host read).
    """
    if host_reads_are_free(u.device):
        if theta is None:
            theta = torch.linalg.vector_norm(u) * (tau / math.sqrt(u.numel()))
        if math.isfinite(theta.item()):
            keep = torch.abs(u, out=scratch).ge_(theta)  # a float 0/1 mask (bool kernels are slower on CPU)
            kept = _exact_sum(keep)
            param.addcmul_(keep, u, value=alpha)  # p += α·u·mask
            if residual is not None:
                residual.addcmul_(keep, residual, value=-1)  # r (= u) ← u·(1 - mask)
            return kept, 0
    return masked_update(param, u, residual, tau, alpha)


def _add_diagnostics(diagnostics: Optional[Diagnostics], sums: dict, counts: dict) -> None:
    """Add per-device lists of 0-d sums (``sums[device][field]``) and element counts to ``diagnostics``."""
    if diagnostics is None:
        return
    for device, fields in sums.items():
        diagnostics.add(device, [_sum_of_sums(x) if x else 0.0 for x in fields])
    for device, fields in counts.items():
        diagnostics.add(device, [float(x) for x in fields])


def _single_tensor_amgt(
    params, grads, exp_avgs, exp_avg_sqs, residuals, state_steps, *, lr, beta1, beta2, eps,
    weight_decay, decoupled_weight_decay, gamma, tau, lr_decay, variance, maximize, diagnostics,
    workspace=None,
):
    workspace = workspace if workspace is not None else Workspace()
    # Per-call bookkeeping instead of per-tensor ops (Python dispatch is ~3 µs an op, ~20 ops a tensor):
    # one increment of every step counter, coefficients per distinct step, diagnostics summed per device.
    if not params:
        return
    if all(s.device.type == "cpu" for s in state_steps):
        torch._foreach_add_(state_steps, 1)
    else:
        for s in state_steps:
            s += 1
    coefficients: dict[tuple, _Coefficients] = {}
    # per device and diagnostics field (_diagnostics.FIELDS): per-tensor 0-d sums, and element counts
    sums: dict[torch.device, list[list[Tensor]]] = defaultdict(lambda: [[], [], [], [], []])
    counts: dict[torch.device, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for i, param in enumerate(params):
        grad = grads[i]
        exp_avg, exp_avg_sq, residual = exp_avgs[i], exp_avg_sqs[i], residuals[i]
        if torch.is_complex(param):
            param, grad = torch.view_as_real(param), torch.view_as_real(grad)
            exp_avg, exp_avg_sq = torch.view_as_real(exp_avg), torch.view_as_real(exp_avg_sq)
            if residual is not None:
                residual = torch.view_as_real(residual)
        s0, s1, s2 = workspace.get(exp_avg)
        # The caller's .grad is never written: sign, dtype and L2 changes go to scratch s2.
        if maximize:
            grad = torch.neg(grad, out=s2) if grad.dtype == s2.dtype else s2.copy_(grad).neg_()
        elif grad.dtype != exp_avg.dtype:
            grad = s2.copy_(grad)

        key = (_value(state_steps[i]), exp_avg.dtype)
        c = coefficients.get(key)
        if c is None:
            c = coefficients[key] = _Coefficients(key[0], lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                                                  lr_decay=lr_decay, dtype=exp_avg.dtype)

        if weight_decay != 0:
            if decoupled_weight_decay:
                param.mul_(1 - c.lr_t * weight_decay)
            else:
                grad = torch.add(grad, param, alpha=weight_decay, out=s2)

        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)

        n = grad.numel()
        if gamma != 0 and not c.first:
            lam = _variance_weight(exp_avg, exp_avg_sq, c, gamma, variance, (s0, s1))
            exp_avg.mul_(beta1).addcmul_(grad, lam, value=1 - beta1)
            if diagnostics is not None:
                sums[lam.device][0].append(_exact_sum(lam))
        else:
            exp_avg.lerp_(grad, 1 - beta1)  # Adam's own operation
            counts[exp_avg.device][0] += n  # λ_t = 1 for each of them
        counts[exp_avg.device][1] += n

        if tau == 0 or n == 0:
            # exactly torch.optim.Adam's operations (non-capturable path)
            denom = torch.sqrt(exp_avg_sq, out=s0).div_(c.bc2**0.5).add_(eps)
            param.addcdiv_(exp_avg, denom, value=-c.lr_t / c.bc1)
            continue
        # u = m̂ / (sqrt(v̂) + ε) = (sqrt(bc2)/bc1)·m / (sqrt(v) + ε·sqrt(bc2)): one pass fewer than Adam's form
        sqrt_bc2 = c.bc2**0.5
        denom = torch.sqrt(exp_avg_sq, out=s0).add_(eps * sqrt_bc2)
        if residual is not None:
            u = residual.addcdiv_(exp_avg, denom, value=sqrt_bc2 / c.bc1)
            alpha = -c.lr_t
        else:  # the mask is scale-free: fold the bias correction into the step
            u = torch.div(exp_avg, denom, out=s1)
            alpha = -c.lr_t * sqrt_bc2 / c.bc1
        kept, bad = _threshold_apply_(param, u, residual, tau, alpha, s0)
        if diagnostics is not None:
            sums[u.device][2].append(kept)
            counts[u.device][3] += n
            if isinstance(bad, Tensor):
                sums[u.device][4].append(bad)
    _add_diagnostics(diagnostics, sums, counts)


def _total(xs: list[Tensor], device: torch.device) -> Tensor:
    """Sum of all elements of 0/1 masks, as a 0-d tensor on ``device`` (no host read).

    On CUDA one multi-tensor L1-norm kernel; on CPU, per-tensor sums (the CPU L1 norm is ~5x slower)."""
    if device.type == "cpu":
        return _sum_of_sums([x.sum() for x in xs])
    return torch.stack(torch._foreach_norm(xs, 1)).sum(dtype=torch.float64)


def _multi_tensor_amgt(
    params, grads, exp_avgs, exp_avg_sqs, residuals, state_steps, *, lr, beta1, beta2, eps,
    weight_decay, decoupled_weight_decay, gamma, tau, lr_decay, variance, maximize, diagnostics,
):
    # Group by device, dtype, residual and step (so every per-step scalar is one number per group).
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, p in enumerate(params):
        groups[(p.device, p.dtype, residuals[i] is not None, _value(state_steps[i]))].append(i)

    for (device, _, has_residual, _), idx in groups.items():
        d_params = [params[i] for i in idx]
        d_grads = [grads[i] for i in idx]
        d_exp_avgs = [exp_avgs[i] for i in idx]
        d_exp_avg_sqs = [exp_avg_sqs[i] for i in idx]
        d_residuals = [residuals[i] for i in idx] if has_residual else None
        d_steps = [state_steps[i] for i in idx]

        if torch.is_complex(d_params[0]):
            d_params = [torch.view_as_real(x) for x in d_params]
            d_grads = [torch.view_as_real(x) for x in d_grads]
            d_exp_avgs = [torch.view_as_real(x) for x in d_exp_avgs]
            d_exp_avg_sqs = [torch.view_as_real(x) for x in d_exp_avg_sqs]
            if d_residuals is not None:
                d_residuals = [torch.view_as_real(x) for x in d_residuals]
        owned = False  # whether d_grads are our own copies (the caller's .grad is never modified)
        if d_grads[0].dtype != d_exp_avgs[0].dtype:
            d_grads, owned = [g.to(d_exp_avgs[0].dtype) for g in d_grads], True
        if maximize:
            d_grads, owned = torch._foreach_neg(d_grads), True

        torch._foreach_add_(d_steps, 1)
        c = _Coefficients(_value(d_steps[0]), lr=lr, beta1=beta1, beta2=beta2, eps=eps, lr_decay=lr_decay,
                          dtype=d_exp_avgs[0].dtype)

        if weight_decay != 0:
            if decoupled_weight_decay:
                torch._foreach_mul_(d_params, 1 - c.lr_t * weight_decay)
            elif owned:
                torch._foreach_add_(d_grads, d_params, alpha=weight_decay)
            else:
                d_grads, owned = torch._foreach_add(d_grads, d_params, alpha=weight_decay), True

        torch._foreach_mul_(d_exp_avg_sqs, beta2)
        torch._foreach_addcmul_(d_exp_avg_sqs, d_grads, d_grads, 1 - beta2)

        numel = sum(g.numel() for g in d_grads)
        if gamma != 0 and not c.first:
            num = torch._foreach_addcmul(d_exp_avg_sqs, d_exp_avgs, d_exp_avgs, value=-c.var_scale)
            torch._foreach_clamp_min_(num, 0.0)
            if variance == "relative":
                lam = torch._foreach_add(d_exp_avg_sqs, c.den_shift)
                torch._foreach_div_(lam, torch._foreach_add(lam, num, alpha=gamma))
            else:
                lam = num
                torch._foreach_mul_(lam, gamma / c.bc2)
                torch._foreach_add_(lam, 1.0)
                torch._foreach_reciprocal_(lam)
            torch._foreach_mul_(d_exp_avgs, beta1)
            torch._foreach_addcmul_(d_exp_avgs, d_grads, lam, 1 - beta1)
            if diagnostics is not None:
                diagnostics.add(device, [_sum_of_sums([_exact_sum(x) for x in lam]), float(numel)])
        else:
            torch._foreach_lerp_(d_exp_avgs, d_grads, 1 - beta1)
            if diagnostics is not None:
                diagnostics.add(device, [float(numel), float(numel)])

        if tau == 0:
            # exactly torch.optim.Adam's foreach operations (non-capturable path)
            denom = torch._foreach_sqrt(d_exp_avg_sqs)
            torch._foreach_div_(denom, c.bc2**0.5)
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(d_params, d_exp_avgs, denom, (c.lr_t / c.bc1) * -1)
            continue
        sqrt_bc2 = c.bc2**0.5
        denom = torch._foreach_sqrt(d_exp_avg_sqs)
        torch._foreach_add_(denom, eps * sqrt_bc2)
        if d_residuals is not None:
            torch._foreach_addcdiv_(d_residuals, d_exp_avgs, denom, sqrt_bc2 / c.bc1)
            u, alpha = d_residuals, -c.lr_t
        else:
            u, alpha = torch._foreach_div(d_exp_avgs, denom), -c.lr_t * sqrt_bc2 / c.bc1
        nonempty = [j for j, x in enumerate(u) if x.numel()]
        if not nonempty:
            continue
        u = [u[j] for j in nonempty]
        d_params = [d_params[j] for j in nonempty]
        thetas = [nj * (tau / math.sqrt(uj.numel())) for nj, uj in zip(torch._foreach_norm(u), u)]
        bad: Tensor | float = 0.0
        if host_reads_are_free(device) and all(map(math.isfinite, torch.stack(thetas).tolist())):
            keep = torch._foreach_abs(u)
            for kj, theta in zip(keep, thetas):
                kj.ge_(theta)
            kept = _total(keep, device)
            torch._foreach_addcmul_(d_params, keep, u, alpha)  # p += α·u·mask
            if d_residuals is not None:
                torch._foreach_addcmul_(u, keep, u, -1.0)  # the residual keeps u·(1 - mask)
        else:  # a non-finite element somewhere, or no host read allowed: see _threshold_apply_
            res = [masked_update(pj, uj, uj if d_residuals is not None else None, tau, alpha)
                   for pj, uj in zip(d_params, u)]
            kept = _sum_of_sums([k for k, _ in res])
            bad = _sum_of_sums([b for _, b in res])
        if diagnostics is not None:
            diagnostics.add(device, [0.0, 0.0, kept, float(numel), bad])


def amgt_update(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    residuals: list[Optional[Tensor]],
    state_steps: list[Tensor],
    *,
    foreach: bool,
    fused: bool = False,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled_weight_decay: bool,
    gamma: float,
    tau: float,
    lr_decay: float,
    variance: str,
    maximize: bool,
    diagnostics: Optional[Diagnostics] = None,
    workspace: Optional[Workspace] = None,
    compiled: Optional[bool] = None,
) -> str:
    """One AMGT step over lists of tensors (the functional form; see ``AMGT`` for the math).

    All lists have one entry per parameter; ``residuals[i]`` is ``None`` when threshold feedback is off
    or ``tau == 0``. ``state_steps`` are 0-d float32 tensors, incremented here. ``params``, the moments,
    residuals and steps are updated in place; ``grads`` are never modified.

    Paths: ``fused=True``: one multi-tensor kernel per device and dtype (``amgt/_fused.py``; falls back to
    foreach with a warning where none can be built); else ``foreach=True``: multi-tensor ``torch._foreach_*``
    operations; else a per-tensor loop (``workspace``, a :class:`Workspace`, lends it reusable scratch
    buffers). Under ``torch.compile`` the step is traced through ``amgt/_capturable.py`` whatever the
    flags (step-dependent numbers as tensors, so one graph serves every step). ``compiled`` is the
    deprecated name of ``fused``.

    Returns:
        The implementation that ran: ``"loop"``, ``"foreach"``, ``"fused"`` or ``"compile"``.
    """
    if compiled is not None:
        warnings.warn("amgt_update(compiled=...) is deprecated; use fused=...", DeprecationWarning, stacklevel=2)
        fused = fused or compiled
    if not params:
        return "foreach" if foreach else "loop"
    hp = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
              decoupled_weight_decay=decoupled_weight_decay, gamma=gamma, tau=tau, lr_decay=lr_decay,
              variance=variance, maximize=maximize)
    lists = (params, grads, exp_avgs, exp_avg_sqs, residuals, state_steps)
    if torch.compiler.is_compiling():
        by_device: dict[torch.device, list[int]] = defaultdict(list)
        for i, p in enumerate(params):
            by_device[p.device].append(i)
        for device, idx in by_device.items():
            sums = capturable_amgt(*([x[i] for i in idx] for x in lists), **hp)
            if diagnostics is not None:
                diagnostics.accumulator(device).add_(sums)
        return "compile"
    if fused:
        from ._fused import fused_amgt

        def fallback(idx: list[int]) -> None:
            _multi_tensor_amgt(*([x[i] for i in idx] for x in lists), **hp, diagnostics=diagnostics)

        return fused_amgt(*lists, **hp, diagnostics=diagnostics, fallback=fallback)
    if foreach:
        _multi_tensor_amgt(*lists, **hp, diagnostics=diagnostics)
        return "foreach"
    _single_tensor_amgt(*lists, **hp, diagnostics=diagnostics, workspace=workspace)
    return "loop"
