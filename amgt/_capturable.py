"""The AMGT step with every step-dependent number a tensor (torch.optim's "capturable" style).

Used where the step is traced rather than run op by op: under ``torch.compile(optimizer.step)`` (no host
read, no Python number that changes from step to step, so Dynamo captures one graph that stays valid) and
as the body of ``fused=True`` on CUDA (``_fused.py`` compiles it). The arithmetic is the eager paths'
(``_functional.py``, ``docs/algorithm.md``), including the non-finite handling; it agrees with them to
float32 round-off (the step's coefficients are computed in float64 tensors instead of Python floats).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["capturable_amgt", "masked_update"]


def masked_update(param: Tensor, u: Tensor, residual: Optional[Tensor], tau: float | Tensor, alpha) -> tuple[Tensor, Tensor]:
    """Thresholding without a host read: θ = τ·RMS over the finite elements of ``u``; the elements with
    a finite u and |u| ≥ θ are applied (``param += alpha·u``), the others stay in ``residual`` (which
    holds u) or are dropped. A non-finite u is never applied. Returns (kept count, non-finite count) as
    0-d tensors."""
    finite = u.abs() <= torch.finfo(u.dtype).max  # False for inf and NaN (and faster than isfinite on CPU)
    n_finite = finite.sum()
    norm = torch.linalg.vector_norm(torch.where(finite, u, 0))
    theta = norm * (tau * torch.rsqrt(n_finite.to(u.dtype)))  # no finite element: 0·inf = NaN, nothing kept
    keep = finite & (u.abs() >= theta)
    applied = torch.where(keep, u, 0)
    if isinstance(alpha, Tensor):
        param.add_(applied * alpha)
    else:
        param.add_(applied, alpha=alpha)  # rounds as the fast path's addcmul
    if residual is not None:
        residual.sub_(applied)  # r (= u) ← u·(1 - mask)
    return keep.sum(), u.numel() - n_finite


def capturable_amgt(
    params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor],
    residuals: list[Optional[Tensor]], state_steps: list[Tensor], *, lr: float, beta1: float, beta2: float,
    eps: float, weight_decay: float, decoupled_weight_decay: bool, gamma: float, tau: float, lr_decay: float,
    variance: str, maximize: bool,
) -> Tensor:
    """One AMGT step over tensors of one device, every per-step scalar a tensor.

    Returns the step's diagnostics sums (``_diagnostics.FIELDS``) as a float64 tensor of shape (5,) on
    the tensors' device (float32 on MPS). Same in-place contract as :func:`amgt._functional.amgt_update`.
    """
    device = params[0].device
    fdtype = torch.float32 if device.type == "mps" else torch.float64
    zero = torch.zeros((), dtype=fdtype, device=device)
    lam_sum, lam_n, kept_sum, thr_n, bad_sum = zero, 0, zero, 0, zero
    for s in state_steps:
        s.add_(1)
    for i, param in enumerate(params):
        p, g, m, v, r = param, grads[i], exp_avgs[i], exp_avg_sqs[i], residuals[i]
        if torch.is_complex(p):
            p, g, m, v = (torch.view_as_real(x) for x in (p, g, m, v))
            r = None if r is None else torch.view_as_real(r)
        n = m.numel()
        t = state_steps[i].to(device=device, dtype=fdtype)
        lr_t = lr / (1 + lr_decay * (t - 1))
        bc1 = 1 - beta1**t
        bc2 = 1 - beta2**t
        later = t > 1  # λ_1 = 1: no variance before the second step
        g = g.to(m.dtype)
        if maximize:
            g = -g
        if weight_decay != 0:
            if decoupled_weight_decay:
                p.mul_(1 - lr_t * weight_decay)
            else:
                g = g + weight_decay * p
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        if gamma != 0:
            var_scale = torch.where(later, bc2 / (1 - beta1 ** (t - 1)) ** 2, 0)
            num = (v - var_scale * m * m).clamp_min(0)
            if variance == "relative":
                den = v + (eps * eps * bc2).clamp_min(torch.finfo(m.dtype).tiny)
                lam = den / (den + torch.where(later, gamma, 0) * num)
            else:
                lam = 1 / (1 + torch.where(later, gamma / bc2, 0) * num)
            m.mul_(beta1).add_((1 - beta1) * g * lam)
            lam_sum = lam_sum + lam.nansum(dtype=fdtype)
        else:
            m.lerp_(g, 1 - beta1)
            lam_sum = lam_sum + n
        lam_n += n
        if tau == 0 or n == 0:
            denom = v.sqrt() / bc2.sqrt() + eps
            p.add_(m / denom * (-lr_t / bc1))
            continue
        sqrt_bc2 = bc2.sqrt()
        denom = v.sqrt() + eps * sqrt_bc2
        if r is not None:
            r.add_(m / denom * (sqrt_bc2 / bc1))
            kept, bad = masked_update(p, r, r, tau, -lr_t)
        else:
            kept, bad = masked_update(p, m / denom, None, tau, -lr_t * sqrt_bc2 / bc1)
        kept_sum = kept_sum + kept
        bad_sum = bad_sum + bad
        thr_n += n
    return torch.stack([lam_sum, zero + lam_n, kept_sum.to(fdtype), zero + thr_n, bad_sum.to(fdtype)])
