"""The AMGT update rule as plain functions (no state handling): a per-tensor loop and a foreach path.

The class :class:`amgt.AMGT` owns the state and calls :func:`amgt_update`. The math follows
``docs/algorithm.md`` (our precise reading of Laisin et al. 2025, "A Mathematically Modified Adam
Algorithm", sections "Adaptive Momentum Adjustment", "Dynamic Learning Rate Schedule", "Experimental
Setup"). Where the mechanisms are switched off (``gamma == 0``, ``tau == 0``, ``lr_decay == 0``) the
operations are exactly those of ``torch.optim.Adam`` (torch 2.x, non-capturable), in the same order, so
the two agree to float32 round-off.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Optional

import torch
from torch import Tensor

__all__ = ["amgt_update", "state_dtype", "Diagnostics", "Workspace"]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def state_dtype(param: Tensor) -> torch.dtype:
    """dtype of the optimizer state kept for ``param``.

    16-bit parameters (float16, bfloat16) keep their moments in float32, so that the moments do not lose
    precision; every other dtype keeps its own (as torch.optim.Adam does).
    """
    return torch.float32 if param.dtype in _LOW_PRECISION else param.dtype


class Diagnostics:
    """Running sums of AMGT's per-step diagnostics, kept on the parameters' devices (no device sync).

    ``summary()`` is the only place values are copied to the host. The paths add one 0-d tensor per
    device and step (the loop stacks its per-tensor sums first), so the bookkeeping costs a few small ops
    per step, not per parameter.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.lr_t: Optional[float] = None
        self._lambda_host = 0.0  # elements whose λ_t is exactly 1 (γ = 0 or first step)
        self._lambda_elems = 0
        self._thresholded_elems = 0  # elements that went through thresholding
        self._dev: dict[torch.device, Tensor] = {}  # device -> [sum of λ_t, kept count]

    def _acc(self, device: torch.device) -> Tensor:
        acc = self._dev.get(device)
        if acc is None:
            dtype = torch.float32 if device.type == "mps" else torch.float64
            acc = self._dev[device] = torch.zeros(2, dtype=dtype, device=device)
        return acc

    def add_lambda(self, total: Tensor | float, numel: int, device: torch.device) -> None:
        """Add Σλ_t over ``numel`` elements (a 0-d tensor on ``device``, or a host float)."""
        self._lambda_elems += numel
        if isinstance(total, Tensor):
            self._acc(device)[0].add_(total)
        else:
            self._lambda_host += total

    def add_kept(self, kept: Tensor, numel: int, device: torch.device) -> None:
        """Add the number of elements kept by thresholding (0-d tensor on ``device``) out of ``numel``."""
        self._thresholded_elems += numel
        self._acc(device)[1].add_(kept)

    def summary(self) -> dict[str, float]:
        lam, kept = self._lambda_host, 0.0
        for acc in self._dev.values():
            a, b = acc.tolist()
            lam, kept = lam + a, kept + b
        n = self._thresholded_elems
        return {
            "suppressed_fraction": (n - kept) / n if n else 0.0,
            "lambda_mean": lam / self._lambda_elems if self._lambda_elems else 1.0,
            "lr_t": float("nan") if self.lr_t is None else self.lr_t,
            "steps": float(self.steps),
        }


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
    """Sum of ``x`` as a 0-d tensor; in float64 beyond 2**24 elements, where float32 sums of 0/1 masks and
    of λ in (0, 1] could round."""
    return x.sum() if x.numel() <= 1 << 24 else x.sum(dtype=torch.float64)


def _sum_of_sums(sums: list[Tensor]) -> Tensor:
    """Total of per-tensor 0-d sums on one device, in float64 (float32 on MPS, which has no float64), so
    that counts past 2**24 over many tensors stay exact."""
    dtype = torch.float32 if sums[0].device.type == "mps" else torch.float64
    return torch.stack(sums).sum(dtype=dtype)


def _threshold_apply_(param: Tensor, u: Tensor, residual: Optional[Tensor], tau: float, alpha: float,
                      scratch: Tensor) -> Tensor:
    """Per-tensor thresholding of ``u`` and the parameter update ``param += alpha·u·mask``.

    θ = τ·||u||₂/sqrt(n), mask = |u| ≥ θ. With ``residual`` (which then already holds u: r + update), the
    suppressed part u·(1-mask) stays in it. The mask is a float 0/1 tensor in ``scratch`` (on CPU, bool
    tensors take slow kernels). Returns the number of kept elements as a 0-d tensor (no host read).
    """
    theta = torch.linalg.vector_norm(u) * (tau / math.sqrt(u.numel()))
    keep = torch.abs(u, out=scratch).ge_(theta)
    kept = _exact_sum(keep)
    param.addcmul_(keep, u, value=alpha)  # p += α·u·mask
    if residual is not None:
        residual.addcmul_(keep, residual, value=-1)  # r (= u) ← u·(1 - mask)
    return kept


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
    # per device: per-tensor sums (0-d tensors) and the number of elements they cover
    lam_sums: dict[torch.device, list[Tensor]] = defaultdict(list)
    kept_sums: dict[torch.device, list[Tensor]] = defaultdict(list)
    lam_elems: dict[torch.device, int] = defaultdict(int)
    kept_elems: dict[torch.device, int] = defaultdict(int)
    lambda_one_elems = 0  # elements whose λ_t is exactly 1 (γ = 0 or first step)
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
                lam_sums[lam.device].append(_exact_sum(lam))
                lam_elems[lam.device] += n
        else:
            exp_avg.lerp_(grad, 1 - beta1)  # Adam's own operation
            lambda_one_elems += n

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
        kept = _threshold_apply_(param, u, residual, tau, alpha, s0)
        if diagnostics is not None:
            kept_sums[u.device].append(kept)
            kept_elems[u.device] += n

    if diagnostics is not None:
        for device, sums in lam_sums.items():
            diagnostics.add_lambda(_sum_of_sums(sums), lam_elems[device], device)
        if lambda_one_elems:
            diagnostics.add_lambda(float(lambda_one_elems), lambda_one_elems, None)
        for device, sums in kept_sums.items():
            diagnostics.add_kept(_sum_of_sums(sums), kept_elems[device], device)


def _total(xs: list[Tensor], device: torch.device) -> Tensor:
    """Sum of all elements of non-negative tensors, as a 0-d tensor on ``device`` (no host read).

    On CUDA one multi-tensor L1-norm kernel; on CPU, per-tensor sums (the CPU L1 norm is ~5x slower)."""
    if device.type == "cpu":
        return torch.stack([x.sum() for x in xs]).sum()
    return torch.stack(torch._foreach_norm(xs, 1)).sum()


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
                diagnostics.add_lambda(_total(lam, device), numel, device)
        else:
            torch._foreach_lerp_(d_exp_avgs, d_grads, 1 - beta1)
            if diagnostics is not None:
                diagnostics.add_lambda(float(numel), numel, device)

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
        norms = torch._foreach_norm(u)
        keep = torch._foreach_abs(u)
        for kj, nj, uj in zip(keep, norms, u):
            kj.ge_(nj * (tau / math.sqrt(uj.numel())))
        kept = _total(keep, device)
        torch._foreach_addcmul_(d_params, keep, u, alpha)  # p += α·u·mask
        if d_residuals is not None:
            torch._foreach_addcmul_(u, keep, u, -1.0)  # the residual keeps u·(1 - mask)
        if diagnostics is not None:
            diagnostics.add_kept(kept, numel, device)


def _tensor_step_for_compile(p, g, m, v, r, coef, *, beta1: float, beta2: float, eps: float,
                             weight_decay: float, decoupled: bool, use_gamma: bool, relative: bool, tau: float,
                             maximize: bool):
    """One AMGT step of one flattened tensor, written for ``torch.compile`` (one fused kernel per pass).

    ``coef`` (float64, on the tensors' device): [η_t, var_scale, den_shift, sqrt(bc2), γ_t, sqrt(bc2)/bc1,
    1/sqrt(n)], with γ_t = 0 at t = 1 (λ_1 = 1) and γ_t = γ/bc2 for ``variance="absolute"``. Step-dependent
    numbers travel in this tensor so that a new step does not recompile. Returns (kept count, Σλ).
    """
    g = g.to(m.dtype)
    if maximize:
        g = -g
    lr_t = coef[0]
    if weight_decay != 0:
        if decoupled:
            p.mul_(1 - lr_t * weight_decay)
        else:
            g = g + weight_decay * p.to(m.dtype)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    if use_gamma:
        num = (v - coef[1] * m * m).clamp_min(0)
        if relative:
            den = v + coef[2]
            lam = den / (den + coef[4] * num)
        else:
            lam = 1 / (1 + coef[4] * num)
        m.mul_(beta1).add_((1 - beta1) * lam * g)
        lam_sum = lam.sum(dtype=torch.float64)
    else:
        m.lerp_(g, 1 - beta1)
        lam_sum = torch.zeros((), dtype=torch.float64, device=m.device) + m.numel()
    denom = v.sqrt() + eps * coef[3]
    if tau == 0:
        p.copy_((p.to(m.dtype) - (lr_t * coef[5]) * m / denom).to(p.dtype))
        return torch.zeros((), dtype=torch.float64, device=m.device) + m.numel(), lam_sum
    u = coef[5] * m / denom
    if r is not None:
        u = u + r
    theta = torch.linalg.vector_norm(u) * (tau * coef[6])
    keep = u.abs() >= theta
    applied = torch.where(keep, u, torch.zeros_like(u))
    if r is not None:
        r.copy_(u - applied)
    p.copy_((p.to(m.dtype) - lr_t * applied).to(p.dtype))
    return keep.sum(dtype=torch.float64), lam_sum


_COMPILED_STEP = None


def _compiled_step():
    global _COMPILED_STEP
    if _COMPILED_STEP is None:
        _COMPILED_STEP = torch.compile(_tensor_step_for_compile, dynamic=True, fullgraph=True)
    return _COMPILED_STEP


def _compiled_amgt(
    params, grads, exp_avgs, exp_avg_sqs, residuals, state_steps, *, lr, beta1, beta2, eps,
    weight_decay, decoupled_weight_decay, gamma, tau, lr_decay, variance, maximize, diagnostics,
):
    step_fn = _compiled_step()
    flat = lambda x: None if x is None else (torch.view_as_real(x) if torch.is_complex(x) else x).view(-1)
    for i, param in enumerate(params):
        step_t = state_steps[i]
        step_t += 1
        if param.numel() == 0:
            continue
        p, g, m, v, r = (flat(x) for x in (param, grads[i], exp_avgs[i], exp_avg_sqs[i], residuals[i]))
        c = _Coefficients(_value(step_t), lr=lr, beta1=beta1, beta2=beta2, eps=eps, lr_decay=lr_decay,
                          dtype=m.dtype)
        use_gamma = gamma != 0
        gamma_t = 0.0 if c.first else (gamma if variance == "relative" else gamma / c.bc2)
        sqrt_bc2 = c.bc2**0.5
        coef = torch.tensor(
            [c.lr_t, 0.0 if c.first else c.var_scale, 0.0 if c.first else c.den_shift, sqrt_bc2, gamma_t,
             sqrt_bc2 / c.bc1, 1 / math.sqrt(m.numel())], dtype=torch.float64,
        ).to(m.device, non_blocking=True)
        kept, lam_sum = step_fn(
            p, g, m, v, r if tau > 0 else None, coef, beta1=beta1, beta2=beta2, eps=eps,
            weight_decay=weight_decay, decoupled=decoupled_weight_decay, use_gamma=use_gamma,
            relative=variance == "relative", tau=tau, maximize=maximize,
        )
        if diagnostics is not None:
            diagnostics.add_lambda(lam_sum, m.numel(), m.device)
            if tau > 0:
                diagnostics.add_kept(kept, m.numel(), m.device)


def amgt_update(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    residuals: list[Optional[Tensor]],
    state_steps: list[Tensor],
    *,
    foreach: bool,
    compiled: bool = False,
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
) -> None:
    """One AMGT step over lists of tensors (the functional form; see ``AMGT`` for the math).

    All lists have one entry per parameter; ``residuals[i]`` is ``None`` when threshold feedback is off
    or ``tau == 0``. ``state_steps`` are 0-d float32 tensors, incremented here. ``compiled=True`` runs
    each tensor through one ``torch.compile``-d function (fused kernels; first call compiles, ~10-40 s;
    needs a C++ compiler on CPU) and ignores ``foreach``. ``workspace`` (a :class:`Workspace`) lends the
    loop path reusable scratch buffers; without one it allocates its own for this call. ``params``, the moments,
    residuals and steps are updated in place; ``grads`` are never modified.
    """
    if not compiled and not foreach:
        _single_tensor_amgt(
            params, grads, exp_avgs, exp_avg_sqs, residuals, state_steps, lr=lr, beta1=beta1, beta2=beta2,
            eps=eps, weight_decay=weight_decay, decoupled_weight_decay=decoupled_weight_decay, gamma=gamma,
            tau=tau, lr_decay=lr_decay, variance=variance, maximize=maximize, diagnostics=diagnostics,
            workspace=workspace,
        )
        return
    fn = _compiled_amgt if compiled else _multi_tensor_amgt
    fn(
        params, grads, exp_avgs, exp_avg_sqs, residuals, state_steps, lr=lr, beta1=beta1, beta2=beta2,
        eps=eps, weight_decay=weight_decay, decoupled_weight_decay=decoupled_weight_decay, gamma=gamma,
        tau=tau, lr_decay=lr_decay, variance=variance, maximize=maximize, diagnostics=diagnostics,
    )
