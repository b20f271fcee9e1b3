"""AMGT: Adaptive Moment Gradient Thresholding, a ``torch.optim.Optimizer``."""

from __future__ import annotations

import warnings
from typing import Any, Callable, Iterable, Optional

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer

from ._functional import Diagnostics, Workspace, amgt_update, default_foreach, state_dtype
from ._state import load_state_dict_checked
from ._validation import (add_checked_param_group, check_adam_numbers, check_flag, check_foreach, check_fused,
                          check_number)

__all__ = ["AMGT"]

_VARIANCES = ("relative", "absolute")
_GROUP_KEYS = ("lr", "betas", "eps", "weight_decay", "decoupled_weight_decay", "gamma", "tau", "lr_decay",
               "threshold_feedback", "variance", "maximize", "foreach", "fused")


def _check_hyperparameters(*, lr: Any, betas: Any, eps: Any, weight_decay: Any, decoupled_weight_decay: Any,
                           gamma: Any, tau: Any, lr_decay: Any, threshold_feedback: Any, variance: Any,
                           maximize: Any, foreach: Any, fused: Any) -> None:
    """Raise ``ValueError`` naming the first argument out of its range (see :class:`AMGT`'s Args)."""
    check_adam_numbers(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    check_number("gamma", gamma, ">= 0 and finite (0 switches variance-adaptive momentum off)",
                 lambda x: x >= 0)
    check_number("tau", tau, "[0, 1] (0 switches thresholding off; <= 1 keeps each tensor's largest "
                 "element)", lambda x: 0 <= x <= 1)
    check_number("lr_decay", lr_decay, ">= 0 and finite (0 keeps the step size constant)", lambda x: x >= 0)
    if variance not in _VARIANCES:
        raise ValueError(f"Invalid variance: {variance!r} (allowed: {', '.join(map(repr, _VARIANCES))})")
    check_flag("decoupled_weight_decay", decoupled_weight_decay)
    check_flag("threshold_feedback", threshold_feedback)
    check_flag("maximize", maximize)
    check_foreach(foreach)
    check_fused(fused, foreach)


class AMGT(Optimizer):
    r"""AMGT: Adam with variance-adaptive momentum, per-layer momentum thresholding and a diminishing step.

    Source: Laisin, Osu, Duruojinkeya, Chibuisi, "A Mathematically Modified Adam Algorithm for Improved
    Convergence in Deep Neural Networks", OJOMSTE 6(2), 2025 — sections "Adaptive Momentum Adjustment"
    and "Dynamic Learning Rate Schedule", the thresholding of "Experimental Setup" (τ 0.05–0.1 per layer)
    and of the complexity analysis (an n-sized fourth buffer), and "Global Convergence of AMGT" (bounded
    update error). The paper never writes one complete algorithm; this is the precise reading in
    ``docs/algorithm.md``.

    .. math::
       \begin{aligned}
       &\textbf{for } t = 1, 2, \dots \text{ and each parameter tensor } p \text{ with gradient } g: \\
       &\quad \eta_t = \eta_0 / (1 + \lambda (t-1)) \\
       &\quad g \leftarrow -g \text{ if maximize};\quad
             \text{decoupled: } p \leftarrow p(1-\eta_t w) \text{ else } g \leftarrow g + w p \\
       &\quad v \leftarrow \beta_2 v + (1-\beta_2) g^2, \qquad \hat v = v / (1-\beta_2^t) \\
       &\quad \sigma^2 = \max(\hat v - (m / (1-\beta_1^{t-1}))^2, 0), \qquad
             \rho = \sigma^2 / (\hat v + \epsilon^2) \text{ (relative) or } \sigma^2 \text{ (absolute)} \\
       &\quad \lambda_t = 1 / (1 + \gamma \rho) \quad (\lambda_1 = 1) \\
       &\quad m \leftarrow \beta_1 m + (1-\beta_1)\lambda_t g, \qquad \hat m = m / (1-\beta_1^t) \\
       &\quad u = \hat m / (\sqrt{\hat v} + \epsilon) \;(+\, r \text{ with feedback}) \\
       &\quad \theta = \tau \cdot \lVert u \rVert_2 / \sqrt{n}, \quad \text{mask} = |u| \ge \theta, \quad
             r \leftarrow u (1-\text{mask}), \quad u \leftarrow u \cdot \text{mask} \quad (\tau > 0) \\
       &\quad p \leftarrow p - \eta_t u
       \end{aligned}

    With ``gamma=0, tau=0, lr_decay=0`` this is exactly :class:`torch.optim.Adam` (and, with
    ``decoupled_weight_decay=True``, :class:`torch.optim.AdamW`), operation for operation.

    Deviations from the paper (see ``docs/algorithm.md``): the variance of "recent gradients" is the
    EMA variance from the existing moments (no extra memory); ``variance="relative"`` (default) divides
    it by :math:`\hat v` so γ is unit-free; thresholding is relative to each tensor's RMS; the suppressed
    part is fed back (error feedback, the paper's bounded-error assumption) unless
    ``threshold_feedback=False``; τ is limited to [0, 1] (each tensor's largest element always passes);
    η_t uses t−1 so that step 1 uses η0 (the paper writes 1 + λt); the momentum formula's missing g_t is
    restored; the undefined "correction term α_t" and "dynamic β(t)" are not used.

    Args:
        params: parameters or param groups, as for any ``torch.optim`` optimizer.
        lr: η0 ≥ 0, the initial step size (0 freezes the parameters, as in torch.optim). Default 1e-3.
        betas: (β1, β2), each in [0, 1). Default (0.9, 0.999).
        eps: ε > 0 added to the denominator, as in Adam. Default 1e-8.
        weight_decay: w ≥ 0, L2 penalty (or decoupled decay). Default 0.
        decoupled_weight_decay: AdamW-style decay when True. Default False.
        gamma: γ ≥ 0, weight of the gradient variance in λ_t; 0 switches the mechanism off. Default 1.0.
        tau: τ in [0, 1], threshold as a fraction of the tensor's update RMS; 0 switches it off. τ ≤ 1
            guarantees each tensor's largest element is always applied. Default 0.05.
        lr_decay: λ ≥ 0 in η_t = η0/(1+λ(t−1)); 0 switches it off. Default 1e-4.
        threshold_feedback: keep suppressed update mass in a residual buffer. Default True.
        variance: ``"relative"`` or ``"absolute"`` (the paper's literal σ²). Default ``"relative"``.
        maximize: maximize the objective instead. Default False.
        foreach: use the multi-tensor path; ``None`` picks it as torch.optim does (on CUDA, not on CPU).
        fused: one multi-tensor kernel per device and dtype (torch.optim's name): on CPU a C++ kernel
            compiled on first use (about a second) and cached, on CUDA ``torch.compile`` of the step. Without
            a compiler it warns once and runs the foreach path. ``None``/False: off (as torch.optim).
            Cannot be combined with ``foreach=True``. See BENCHMARKS.md for what it buys.
        compiled: deprecated name of ``fused`` (DeprecationWarning).

    State per parameter (lazily, on its first gradient): ``step`` (0-d float32 tensor), ``exp_avg`` m,
    ``exp_avg_sq`` v, and ``threshold_residual`` r only when τ > 0 with feedback (4n against Adam's 3n).
    Moments of float16/bfloat16 parameters are kept in float32.

    Non-finite gradients (τ > 0): an element whose update is inf/NaN is left out of its tensor's
    threshold (θ is τ times the RMS of the finite elements) and never applied, so the parameter element
    keeps its last value and the rest of the tensor trains on; its moments stay non-finite (as in Adam,
    that element is lost) and it is counted in ``diagnostics()["nonfinite_fraction"]``. With τ = 0 the
    step is Adam's, and a non-finite gradient element makes that parameter element non-finite, as in Adam.

    ``torch.compile(optimizer.step)`` traces one graph for all steps (step-dependent numbers are tensors,
    as torch.optim's ``capturable``), whatever ``foreach``/``fused`` say.

    Raises:
        ValueError: an argument out of its range (the message names it, its value and the range).
        RuntimeError: at ``step()``, for sparse gradients.

    Example:
        >>> model = torch.nn.Linear(4, 2)
        >>> opt = AMGT(model.parameters(), lr=1e-3, tau=0.05)
        >>> model(torch.randn(8, 4)).square().mean().backward()
        >>> opt.step(); opt.zero_grad()
        >>> sorted(opt.diagnostics())
        ['lambda_mean', 'lr_t', 'nonfinite_fraction', 'steps', 'suppressed_fraction']
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        decoupled_weight_decay: bool = False,
        gamma: float = 1.0,
        tau: float = 0.05,
        lr_decay: float = 1e-4,
        threshold_feedback: bool = True,
        variance: str = "relative",
        maximize: bool = False,
        foreach: Optional[bool] = None,
        fused: Optional[bool] = None,
        compiled: Optional[bool] = None,
    ) -> None:
        if compiled is not None:
            warnings.warn("AMGT(compiled=...) is deprecated; use fused=... (torch.optim's name)",
                          DeprecationWarning, stacklevel=2)
            check_flag("compiled", compiled)
            fused = compiled if fused is None else fused
        _check_hyperparameters(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, decoupled_weight_decay=decoupled_weight_decay,
            gamma=gamma, tau=tau, lr_decay=lr_decay, threshold_feedback=threshold_feedback, variance=variance,
            maximize=maximize, foreach=foreach, fused=fused)
        defaults = dict(
            lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay, gamma=gamma, tau=tau, lr_decay=lr_decay,
            threshold_feedback=threshold_feedback, variance=variance, maximize=maximize, foreach=foreach,
            fused=bool(fused),
        )
        super().__init__(params, defaults)
        self._diagnostics = Diagnostics()
        self._workspace = Workspace()


    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group, as torch.optim does, checking its own hyperparameters like the constructor's.

        Raises:
            ValueError: a group value out of range (names the group index, the argument and the range);
                the group is not added.
        """
        add_checked_param_group(self, param_group, _check_hyperparameters, _GROUP_KEYS)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            if "compiled" in group:  # saved before `fused` replaced it
                group.setdefault("fused", bool(group.pop("compiled")))
            for key, value in self.defaults.items():
                group.setdefault(key, value)
        if not hasattr(self, "_diagnostics"):
            self._diagnostics = Diagnostics()
        if not hasattr(self, "_workspace"):
            self._workspace = Workspace()

    def _init_group(self, group, params, grads, exp_avgs, exp_avg_sqs, residuals, state_steps) -> None:
        want_residual = group["tau"] > 0 and group["threshold_feedback"]
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("AMGT does not support sparse gradients; use a dense gradient "
                                   "(e.g. nn.Embedding(sparse=False)) or torch.optim.SparseAdam")
            state = self.state[p]
            if len(state) == 0:
                dtype = state_dtype(p)
                state["step"] = torch.tensor(0.0, dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
            if want_residual and "threshold_residual" not in state:
                state["threshold_residual"] = torch.zeros_like(state["exp_avg"])
            self._diagnostics.accumulator(p.device)  # exists before a traced step adds to it
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            residuals.append(state["threshold_residual"] if want_residual else None)
            state_steps.append(state["step"])

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:
        """Perform one optimization step.

        Args:
            closure: re-evaluates the model and returns the loss; run under ``torch.enable_grad()``.

        Returns:
            The closure's loss, or None.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        diag = self._diagnostics
        ran = []
        for group in self.param_groups:
            params, grads, exp_avgs, exp_avg_sqs, residuals, state_steps = [], [], [], [], [], []
            self._init_group(group, params, grads, exp_avgs, exp_avg_sqs, residuals, state_steps)
            if not params:
                continue
            foreach = group["foreach"]
            if foreach is None:
                foreach = default_foreach(params)
            beta1, beta2 = group["betas"]
            impl = amgt_update(
                params, grads, exp_avgs, exp_avg_sqs, residuals, state_steps, foreach=foreach,
                fused=bool(group.get("fused")),
                lr=float(group["lr"]), beta1=beta1, beta2=beta2, eps=group["eps"],
                weight_decay=group["weight_decay"], decoupled_weight_decay=group["decoupled_weight_decay"],
                gamma=group["gamma"], tau=group["tau"], lr_decay=group["lr_decay"],
                variance=group["variance"], maximize=group["maximize"], diagnostics=diag,
                workspace=self._workspace,
            )
            if not ran:  # η_t of the first group's first parameter, computed when asked (no host read here)
                diag.last = (float(group["lr"]), group["lr_decay"], state_steps[0])
            if impl not in ran:
                ran.append(impl)
        if ran:
            diag.count_step()
            diag.implementation = "+".join(ran)
        return loss

    @property
    def implementation(self) -> Optional[str]:
        """The code path the last step ran: ``"loop"``, ``"foreach"``, ``"fused"`` or ``"compile"`` (traced
        by ``torch.compile``), joined by ``+`` when param groups differ; None before the first step.
        ``fused=True`` that fell back (no compiler) reports ``"foreach"``."""
        return self._diagnostics.implementation

    def diagnostics(self, reset: bool = True) -> dict[str, float]:
        """AMGT's diagnostics, averaged over the steps since the last reset.

        Returns a dict with
        ``suppressed_fraction`` (fraction of thresholded elements not applied, in [0, 1]; 0 when τ = 0),
        ``nonfinite_fraction`` (fraction of thresholded elements whose update was inf/NaN and was skipped;
        included in ``suppressed_fraction``; 0 when τ = 0),
        ``lambda_mean`` (mean of λ_t over elements and steps, in (0, 1]; an element whose λ_t is NaN, which
        only a non-finite gradient or moment makes, adds 0),
        ``lr_t`` (η_t of the first parameter group's first parameter at the last step; NaN before any step),
        ``steps`` (number of steps summed over).
        The sums are kept on the parameters' devices; this call is the only one that reads them.
        """
        out = self._diagnostics.summary()
        if reset:
            self._diagnostics.reset()
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict as ``torch.optim.Optimizer.load_state_dict`` does (hooks included), checking
        first that every state tensor has its parameter's shape, and keeping the moments of 16-bit
        parameters in float32 (``amgt/_state.py``).

        Raises:
            ValueError: a state tensor's shape differs from its parameter's (names both; nothing is
                loaded), or torch's own errors.
        """
        load_state_dict_checked(self, state_dict, super().load_state_dict)
