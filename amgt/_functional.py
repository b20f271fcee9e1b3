"""The AMGT update rule as plain functions (no state handling): a per-tensor loop and a foreach path.

The class :class:`amgt.AMGT` owns the state and calls :func:`amgt_update`. The math follows
``docs/algorithm.md`` (our precise reading of Laisin et al. 2025, "A Mathematically Modified Adam
Algorithm", sections "Adaptive Momentum Adjustment", "Momentum Thresholding" and "Diminishing Step
Size"). Where the mechanisms are switched off (``gamma == 0``, ``tau == 0``, ``lr_decay == 0``) the
operations are exactly those of ``torch.optim.Adam`` (torch 2.x, non-capturable), in the same order, so
the two agree to float32 round-off.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Optional

import torch
from torch import Tensor

__all__ = ["amgt_update", "state_dtype", "Diagnostics"]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def state_dtype(param: Tensor) -> torch.dtype:
    """dtype of the optimizer state kept for ``param``.

    16-bit parameters (float16, bfloat16) keep their moments in float32, so that the moments do not lose
    precision; every other dtype keeps its own (as torch.optim.Adam does).
    """
    return torch.float32 if param.dtype in _LOW_PRECISION else param.dtype


class Diagnostics:
    """Running sums of AMGT's per-step diagnostics, kept on the parameters' devices (no device sync).

    ``summary()`` is the only place values are copied to the host.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.lr_t: Optional[float] = None
        self._lambda_host = 0.0  # elements whose λ_t is exactly 1 (γ = 0 or first step)
        self._lambda_elems = 0
        self._suppressed_elems = 0  # elements that went through thresholding
        self._dev: dict[torch.device, Tensor] = {}  # device -> [sum of λ_t, suppressed count]

    def _acc(self, device: torch.device) -> Tensor:
        acc = self._dev.get(device)
        if acc is None:
            dtype = torch.float32 if device.type == "mps" else torch.float64
            acc = self._dev[device] = torch.zeros(2, dtype=dtype, device=device)
        return acc

    def add_lambda(self, total: Tensor | float, numel: int, device: torch.device) -> None:
        self._lambda_elems += numel
        if isinstance(total, Tensor):
            self._acc(device)[0].add_(total)
        else:
            self._lambda_host += total

    def add_suppressed(self, count: Tensor, numel: int, device: torch.device) -> None:
        self._suppressed_elems += numel
        self._acc(device)[1].add_(count)

    def summary(self) -> dict[str, float]:
        lam, sup = self._lambda_host, 0.0
        for acc in self._dev.values():
            a, b = acc.tolist()
            lam, sup = lam + a, sup + b
        return {
            "suppressed_fraction": sup / self._suppressed_elems if self._suppressed_elems else 0.0,
            "lambda_mean": lam / self._lambda_elems if self._lambda_elems else 1.0,
            "lr_t": float("nan") if self.lr_t is None else self.lr_t,
            "steps": float(self.steps),
        }


def _value(step: Tensor) -> float:
    return step.item() if isinstance(step, Tensor) else float(step)


def _variance_weight_(var: Tensor, vhat: Tensor, eps: float, gamma: float, variance: str) -> Tensor:
    """In place: turn σ² = v̂ - m̂_prev² (unclamped) into λ_t = 1 / (1 + γ·ρ)."""
    var.clamp_(min=0)
    if variance == "relative":
        var.div_(vhat.add(eps * eps))
    return var.mul_(gamma).add_(1).reciprocal_()


def _threshold_(u: Tensor, residual: Optional[Tensor], norm: Tensor, tau: float) -> Tensor:
    """In place: zero the elements of ``u`` below τ·RMS(u); keep them in ``residual`` if given.

    ``norm`` is ||u||₂ (already including the residual). Returns the number of suppressed elements
    as a 0-d tensor on ``u``'s device.
    """
    theta = norm * (tau / math.sqrt(u.numel()))
    keep = u.abs().ge_(theta)
    if residual is not None:
        torch.mul(u, keep.logical_not(), out=residual)
    u.mul_(keep)
    return keep.numel() - keep.sum()


def _single_tensor_amgt(
    params, grads, exp_avgs, exp_avg_sqs, residuals, state_steps, *, lr, beta1, beta2, eps,
    weight_decay, decoupled_weight_decay, gamma, tau, lr_decay, variance, maximize, diagnostics,
):
    for i, param in enumerate(params):
        grad = grads[i] if not maximize else -grads[i]
        exp_avg, exp_avg_sq, residual, step_t = exp_avgs[i], exp_avg_sqs[i], residuals[i], state_steps[i]
        if torch.is_complex(param):
            param, grad = torch.view_as_real(param), torch.view_as_real(grad)
            exp_avg, exp_avg_sq = torch.view_as_real(exp_avg), torch.view_as_real(exp_avg_sq)
            if residual is not None:
                residual = torch.view_as_real(residual)
        if grad.dtype != exp_avg.dtype:
            grad = grad.to(exp_avg.dtype)

        step_t += 1
        step = _value(step_t)
        lr_t = lr / (1 + lr_decay * (step - 1))

        if weight_decay != 0:
            if decoupled_weight_decay:
                param.mul_(1 - lr_t * weight_decay)
            else:
                grad = grad.add(param, alpha=weight_decay)

        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bias_correction2 = 1 - beta2**step

        if gamma != 0 and step > 1:
            vhat = exp_avg_sq / bias_correction2
            mprev = exp_avg / (1 - beta1 ** (step - 1))
            lam = _variance_weight_(vhat.addcmul(mprev, mprev, value=-1), vhat, eps, gamma, variance)
            exp_avg.lerp_(grad * lam, 1 - beta1)
            if diagnostics is not None:
                diagnostics.add_lambda(lam.sum(), lam.numel(), lam.device)
        else:
            exp_avg.lerp_(grad, 1 - beta1)
            if diagnostics is not None:
                diagnostics.add_lambda(float(grad.numel()), grad.numel(), grad.device)

        bias_correction1 = 1 - beta1**step
        denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(eps)
        if tau == 0 or param.numel() == 0:
            param.addcdiv_(exp_avg, denom, value=-lr_t / bias_correction1)
            continue
        u = exp_avg.div(denom).mul_(1 / bias_correction1)
        if residual is not None:
            u.add_(residual)
        suppressed = _threshold_(u, residual, torch.linalg.vector_norm(u), tau)
        if diagnostics is not None:
            diagnostics.add_suppressed(suppressed, u.numel(), u.device)
        param.add_(u, alpha=-lr_t)


def _multi_tensor_amgt(
    params, grads, exp_avgs, exp_avg_sqs, residuals, state_steps, *, lr, beta1, beta2, eps,
    weight_decay, decoupled_weight_decay, gamma, tau, lr_decay, variance, maximize, diagnostics,
):
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, p in enumerate(params):
        groups[(p.device, p.dtype, residuals[i] is not None)].append(i)

    for (device, _, has_residual), idx in groups.items():
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
        steps = [_value(s) for s in d_steps]
        lr_ts = [lr / (1 + lr_decay * (s - 1)) for s in steps]

        if weight_decay != 0:
            if decoupled_weight_decay:
                torch._foreach_mul_(d_params, [1 - lr_t * weight_decay for lr_t in lr_ts])
            elif owned:
                torch._foreach_add_(d_grads, d_params, alpha=weight_decay)
            else:
                d_grads, owned = torch._foreach_add(d_grads, d_params, alpha=weight_decay), True

        torch._foreach_mul_(d_exp_avg_sqs, beta2)
        torch._foreach_addcmul_(d_exp_avg_sqs, d_grads, d_grads, 1 - beta2)
        bias_correction2 = [1 - beta2**s for s in steps]

        numel = sum(g.numel() for g in d_grads)
        if gamma != 0 and min(steps) > 1:
            vhat = torch._foreach_div(d_exp_avg_sqs, bias_correction2)
            mprev = torch._foreach_div(d_exp_avgs, [1 - beta1 ** (s - 1) for s in steps])
            var = torch._foreach_addcmul(vhat, mprev, mprev, value=-1)
            torch._foreach_clamp_min_(var, 0.0)
            if variance == "relative":
                torch._foreach_add_(vhat, eps * eps)
                torch._foreach_div_(var, vhat)
            torch._foreach_mul_(var, gamma)
            torch._foreach_add_(var, 1.0)
            torch._foreach_reciprocal_(var)  # var now holds λ_t
            d_grads = torch._foreach_mul(d_grads, var)
            if diagnostics is not None:
                diagnostics.add_lambda(torch.stack(torch._foreach_norm(var, 1)).sum(), numel, device)
        elif gamma != 0:
            # Some tensors are at their first step (λ = 1 there): fall back to the loop for the λ part.
            lams = []
            new_grads = []
            for s, g, m, v, bc2 in zip(steps, d_grads, d_exp_avgs, d_exp_avg_sqs, bias_correction2):
                if s > 1:
                    vh = v / bc2
                    mp = m / (1 - beta1 ** (s - 1))
                    lam = _variance_weight_(vh.addcmul(mp, mp, value=-1), vh, eps, gamma, variance)
                    new_grads.append(g * lam)
                    lams.append(lam.sum())
                else:
                    new_grads.append(g)
                    lams.append(torch.tensor(float(g.numel()), device=g.device))
            d_grads = new_grads
            if diagnostics is not None:
                diagnostics.add_lambda(torch.stack(lams).sum(), numel, device)
        elif diagnostics is not None:
            diagnostics.add_lambda(float(numel), numel, device)

        torch._foreach_lerp_(d_exp_avgs, d_grads, 1 - beta1)
        bias_correction1 = [1 - beta1**s for s in steps]
        denom = torch._foreach_sqrt(d_exp_avg_sqs)
        torch._foreach_div_(denom, [math.sqrt(bc) for bc in bias_correction2])
        torch._foreach_add_(denom, eps)

        if tau == 0:
            torch._foreach_addcdiv_(
                d_params, d_exp_avgs, denom, [-lr_t / bc for lr_t, bc in zip(lr_ts, bias_correction1)]
            )
            continue
        u = torch._foreach_div(d_exp_avgs, denom)
        torch._foreach_mul_(u, [1 / bc for bc in bias_correction1])
        if d_residuals is not None:
            torch._foreach_add_(u, d_residuals)
        norms = torch._foreach_norm(u)
        suppressed = []
        for j, uj in enumerate(u):
            if uj.numel() == 0:
                continue
            res = d_residuals[j] if d_residuals is not None else None
            suppressed.append(_threshold_(uj, res, norms[j], tau))
        if diagnostics is not None and suppressed:
            diagnostics.add_suppressed(torch.stack(suppressed).sum(), numel, device)
        torch._foreach_mul_(u, [-lr_t for lr_t in lr_ts])
        if u[0].dtype != d_params[0].dtype:
            u = [x.to(d_params[0].dtype) for x in u]
        torch._foreach_add_(d_params, u)


def amgt_update(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    residuals: list[Optional[Tensor]],
    state_steps: list[Tensor],
    *,
    foreach: bool,
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
) -> None:
    """One AMGT step over lists of tensors (the functional form; see ``AMGT`` for the math).

    All lists have one entry per parameter; ``residuals[i]`` is ``None`` when threshold feedback is off
    or ``tau == 0``. ``state_steps`` are 0-d float32 tensors, incremented here. ``params``, the moments,
    residuals and steps are updated in place; ``grads`` are never modified.
    """
    fn = _multi_tensor_amgt if foreach else _single_tensor_amgt
    fn(
        params, grads, exp_avgs, exp_avg_sqs, residuals, state_steps, lr=lr, beta1=beta1, beta2=beta2,
        eps=eps, weight_decay=weight_decay, decoupled_weight_decay=decoupled_weight_decay, gamma=gamma,
        tau=tau, lr_decay=lr_decay, variance=variance, maximize=maximize, diagnostics=diagnostics,
    )
