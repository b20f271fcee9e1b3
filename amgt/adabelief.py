"""AdaBelief (Zhuang et al., NeurIPS 2020, Algorithm 2) as a ``torch.optim.Optimizer``.

Why our own: ``pytorch_optimizer.AdaBelief`` (4.1.0) failed this project's optimizer battery
(tests/test_optimizers.py): it negates the caller's ``.grad`` in place for ``maximize=True`` and adds the
L2 term into ``.grad`` in place, and it keeps one step counter per param group, so a parameter whose
first gradient arrives late gets a wrong bias correction. This class follows ``torch.optim.Adam``'s
structure (lazy per-parameter state, a loop and a foreach path, out-of-place gradient handling).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Iterable, Optional

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer

from ._functional import default_foreach, state_dtype
from ._state import load_state_dict_checked
from ._validation import add_checked_param_group, check_adam_numbers, check_flag, check_foreach

__all__ = ["AdaBelief", "adabelief_update"]


_GROUP_KEYS = ("lr", "betas", "eps", "weight_decay", "decoupled_weight_decay", "maximize", "foreach")


def _check_hyperparameters(*, lr: Any, betas: Any, eps: Any, weight_decay: Any, decoupled_weight_decay: Any,
                           maximize: Any, foreach: Any) -> None:
    """Raise ``ValueError`` naming the first argument out of its range (see :class:`AdaBelief`'s Args)."""
    check_adam_numbers(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    check_flag("decoupled_weight_decay", decoupled_weight_decay)
    check_flag("maximize", maximize)
    check_foreach(foreach)


class AdaBelief(Optimizer):
    r"""AdaBelief: Adam whose second moment tracks the "belief" (g_t - m_t)² instead of g_t².

    Source: Zhuang, Tang, Ding, Tatikonda, Dvornek, Papademetris, Duncan, "AdaBelief Optimizer: Adapting
    Stepsizes by the Belief in Observed Gradients", NeurIPS 2020, Algorithm 2 (unconstrained, so the
    projection is the identity).

    .. math::
       \begin{aligned}
       &g \leftarrow -g \text{ if maximize};\quad
             \text{decoupled: } p \leftarrow p(1-\eta w) \text{ else } g \leftarrow g + w p \\
       &m \leftarrow \beta_1 m + (1-\beta_1) g \\
       &s \leftarrow \beta_2 s + (1-\beta_2)(g - m)^2 + \epsilon \\
       &\hat m = m / (1-\beta_1^t), \quad \hat s = s / (1-\beta_2^t) \\
       &p \leftarrow p - \eta\, \hat m / (\sqrt{\hat s} + \epsilon)
       \end{aligned}

    Args:
        params: parameters or param groups.
        lr: η ≥ 0. Default 1e-3.
        betas: (β1, β2), each in [0, 1). Default (0.9, 0.999).
        eps: ε > 0, added to s every step and to the denominator (the paper's Algorithm 2). Default 1e-16,
            the authors' recommended value for their PyTorch implementation.
        weight_decay: w ≥ 0. Default 0.
        decoupled_weight_decay: AdamW-style decay (the authors' ``weight_decouple``). Default False,
            i.e. an L2 term in the gradient, like ``torch.optim.Adam``.
        maximize: maximize the objective. Default False.
        foreach: multi-tensor path; ``None`` picks it as torch.optim does (on CUDA, not on CPU).

    State per parameter (lazily): ``step`` (0-d float32), ``exp_avg`` m, ``exp_avg_var`` s; 16-bit
    parameters keep float32 moments. The rectified (RAdam-like) and AMSGrad variants are not provided.

    Raises:
        ValueError: an argument out of range (names it, its value, the allowed range).
        RuntimeError: at ``step()``, for sparse gradients.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-16,
        weight_decay: float = 0.0,
        *,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
        foreach: Optional[bool] = None,
    ) -> None:
        _check_hyperparameters(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                               decoupled_weight_decay=decoupled_weight_decay, maximize=maximize, foreach=foreach)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize, foreach=foreach)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group, as torch.optim does, checking its own hyperparameters like the constructor's.

        Raises:
            ValueError: a group value out of range (names the group index and the argument); not added.
        """
        add_checked_param_group(self, param_group, _check_hyperparameters, _GROUP_KEYS)

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:
        """One optimization step; the closure (if any) runs under ``torch.enable_grad()``; returns its loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, exp_avgs, exp_avg_vars, steps = [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AdaBelief does not support sparse gradients; use dense gradients "
                                       "(e.g. nn.Embedding(sparse=False)) or torch.optim.SparseAdam")
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = torch.tensor(0.0, dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, dtype=state_dtype(p), memory_format=torch.preserve_format)
                    state["exp_avg_var"] = torch.zeros_like(state["exp_avg"])
                params.append(p)
                grads.append(p.grad)
                exp_avgs.append(state["exp_avg"])
                exp_avg_vars.append(state["exp_avg_var"])
                steps.append(state["step"])
            if not params:
                continue
            foreach = group["foreach"]
            if foreach is None:
                foreach = default_foreach(params)
            beta1, beta2 = group["betas"]
            adabelief_update(
                params, grads, exp_avgs, exp_avg_vars, steps, foreach=foreach, lr=float(group["lr"]),
                beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                decoupled_weight_decay=group["decoupled_weight_decay"], maximize=group["maximize"],
            )
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As torch.optim (hooks included), with AMGT's checks: every state tensor must have its
        parameter's shape (``ValueError`` otherwise, nothing loaded), and the moments of float16/bfloat16
        parameters stay float32 (``amgt/_state.py``)."""
        load_state_dict_checked(self, state_dict, super().load_state_dict)


def _real(xs: list[Tensor]) -> list[Tensor]:
    return [torch.view_as_real(x) if torch.is_complex(x) else x for x in xs]


def adabelief_update(
    params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], exp_avg_vars: list[Tensor],
    state_steps: list[Tensor], *, foreach: bool, lr: float, beta1: float, beta2: float, eps: float,
    weight_decay: float, decoupled_weight_decay: bool, maximize: bool,
) -> None:
    """One AdaBelief step over lists of tensors (in place on params, moments and steps; grads untouched)."""
    if not foreach:
        for p, g, m, s, step_t in zip(params, grads, exp_avgs, exp_avg_vars, state_steps):
            g = -g if maximize else g
            p, g, m, s = _real([p, g, m, s])
            if g.dtype != m.dtype:
                g = g.to(m.dtype)
            step_t += 1
            step = step_t.item()
            if weight_decay != 0:
                if decoupled_weight_decay:
                    p.mul_(1 - lr * weight_decay)
                else:
                    g = g.add(p, alpha=weight_decay)
            m.lerp_(g, 1 - beta1)
            diff = g - m
            s.mul_(beta2).addcmul_(diff, diff, value=1 - beta2).add_(eps)
            bc1, bc2 = 1 - beta1**step, 1 - beta2**step
            denom = (s.sqrt() / bc2**0.5).add_(eps)
            p.addcdiv_(m, denom, value=-lr / bc1)
        return

    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, p in enumerate(params):
        groups[(p.device, p.dtype)].append(i)
    for idx in groups.values():
        d_params = _real([params[i] for i in idx])
        d_grads = _real([grads[i] for i in idx])
        d_m = _real([exp_avgs[i] for i in idx])
        d_s = _real([exp_avg_vars[i] for i in idx])
        d_steps = [state_steps[i] for i in idx]
        if d_grads[0].dtype != d_m[0].dtype:
            d_grads = [g.to(d_m[0].dtype) for g in d_grads]
        if maximize:
            d_grads = torch._foreach_neg(d_grads)
        torch._foreach_add_(d_steps, 1)
        steps = [s.item() for s in d_steps]
        if weight_decay != 0:
            if decoupled_weight_decay:
                torch._foreach_mul_(d_params, 1 - lr * weight_decay)
            else:
                d_grads = torch._foreach_add(d_grads, d_params, alpha=weight_decay)
        torch._foreach_lerp_(d_m, d_grads, 1 - beta1)
        diff = torch._foreach_sub(d_grads, d_m)
        torch._foreach_mul_(d_s, beta2)
        torch._foreach_addcmul_(d_s, diff, diff, 1 - beta2)
        torch._foreach_add_(d_s, eps)
        denom = torch._foreach_sqrt(d_s)
        torch._foreach_div_(denom, [(1 - beta2**t) ** 0.5 for t in steps])
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(d_params, d_m, denom, [-lr / (1 - beta1**t) for t in steps])
