"""One registry for AMGT, its ablation variants and the baselines the paper compares it with.

``build_optimizer(name, params, **hparams)`` mirrors timm's ``create_optimizer``/``create_model``: a name
lookup that lists the valid names when a name is wrong, and that refuses hyperparameters the optimizer
does not take (no silent ignoring).

Paper defaults (Laisin et al. 2025, section "Experimental Setup"): lr 1e-3 for Adam and AMGT, 1e-2 for
SGD and RMSProp, SGD momentum 0.9, τ in 0.05–0.1, λ = 1e-4.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
from torch.optim import Optimizer

from .adabelief import AdaBelief
from .optimizer import AMGT

__all__ = [
    "OptimizerSpec",
    "available_optimizers",
    "build_optimizer",
    "get_optimizer_spec",
    "register_optimizer",
]


@dataclass(frozen=True)
class OptimizerSpec:
    """One registered optimizer.

    Attributes:
        name: the registry name (e.g. ``"amgt-no-threshold"``).
        cls: the ``torch.optim.Optimizer`` class built.
        defaults: hyperparameters applied unless the caller overrides them (the paper's setup).
        fixed: hyperparameters this entry pins (e.g. ``tau=0``); passing them raises.
        description: one line for listings.
    """

    name: str
    cls: type[Optimizer]
    defaults: dict[str, Any] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def hyperparameters(self) -> tuple[str, ...]:
        """The keyword arguments a caller may pass (the class's own, less ``params`` and the pinned ones)."""
        sig = inspect.signature(self.cls.__init__)
        names = [
            n for n, p in sig.parameters.items()
            if n not in ("self", "params") and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]
        return tuple(n for n in names if n not in self.fixed)

    def build(self, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], **hparams: Any) -> Optimizer:
        allowed = self.hyperparameters
        for key in hparams:
            if key in self.fixed:
                raise ValueError(
                    f"Optimizer {self.name!r} fixes {key}={self.fixed[key]!r}; it cannot be set "
                    f"(use another registered optimizer to vary it)"
                )
            if key not in allowed:
                raise ValueError(
                    f"Unknown hyperparameter {key!r} for optimizer {self.name!r}; "
                    f"allowed: {', '.join(sorted(allowed))}"
                )
        self._check_types(hparams)
        kwargs = {**self.defaults, **hparams, **self.fixed}
        return self.cls(params, **kwargs)

    def _check_types(self, hparams: dict[str, Any]) -> None:
        """Refuse a value whose type does not fit the class's default for that argument (a number where
        the default is a number, a pair where it is a pair): torch.optim's own range checks raise a bare
        ``TypeError`` ("'<=' not supported ...") on a string or None, and ignore a third beta."""
        sig = inspect.signature(self.cls.__init__).parameters
        for key, value in hparams.items():
            default = sig[key].default if key in sig else inspect.Parameter.empty
            if isinstance(default, bool) or default is None or default is inspect.Parameter.empty:
                continue
            if isinstance(default, (int, float)):
                if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
                    raise ValueError(f"Invalid {key} for optimizer {self.name!r}: {value!r} (allowed: a number)")
            elif isinstance(default, tuple) and all(isinstance(d, (int, float)) for d in default):
                if (not isinstance(value, (tuple, list)) or len(value) != len(default)
                        or any(isinstance(v, bool) or not isinstance(v, (int, float, torch.Tensor)) for v in value)):
                    raise ValueError(f"Invalid {key} for optimizer {self.name!r}: {value!r} "
                                     f"(allowed: {len(default)} numbers, e.g. {default!r})")


_REGISTRY: dict[str, OptimizerSpec] = {}


def register_optimizer(spec: OptimizerSpec) -> OptimizerSpec:
    """Add ``spec`` to the registry; a name may be registered once."""
    if spec.name in _REGISTRY:
        raise ValueError(f"Optimizer {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def available_optimizers() -> list[str]:
    """The registered names, sorted."""
    return sorted(_REGISTRY)


def get_optimizer_spec(name: str) -> OptimizerSpec:
    """The spec registered under ``name``.

    Raises:
        ValueError: unknown name; the message lists the valid names.
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown optimizer {name!r}; valid names: {', '.join(available_optimizers())}"
        ) from None


def build_optimizer(
    name: str, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], **hparams: Any
) -> Optimizer:
    """Build the optimizer registered as ``name`` over ``params``.

    Args:
        name: one of :func:`available_optimizers`.
        params: parameters or param groups.
        **hparams: keyword arguments of the optimizer class; unset ones take the paper defaults.

    Raises:
        ValueError: unknown name (lists valid names), unknown or pinned hyperparameter (names it),
            or a value out of range (raised by the optimizer's constructor).

    Example:
        >>> opt = build_optimizer("sgd", torch.nn.Linear(2, 1).parameters(), lr=0.1)
        >>> opt.defaults["momentum"]
        0.9
    """
    return get_optimizer_spec(name).build(params, **hparams)


def _register_builtins() -> None:
    paper_adam = {"lr": 1e-3}
    specs = [
        OptimizerSpec("amgt", AMGT, {"lr": 1e-3, "tau": 0.05, "lr_decay": 1e-4},
                      description="AMGT: variance-adaptive momentum + thresholding + diminishing step"),
        OptimizerSpec("amgt-no-threshold", AMGT, {"lr": 1e-3, "lr_decay": 1e-4}, {"tau": 0.0},
                      description="AMGT ablation: thresholding off (tau=0)"),
        OptimizerSpec("amgt-no-decay", AMGT, {"lr": 1e-3, "tau": 0.05}, {"lr_decay": 0.0},
                      description="AMGT ablation: step-size decay off (lr_decay=0)"),
        OptimizerSpec("amgt-no-variance", AMGT, {"lr": 1e-3, "tau": 0.05, "lr_decay": 1e-4}, {"gamma": 0.0},
                      description="AMGT ablation: variance-adaptive momentum off (gamma=0)"),
        OptimizerSpec("adam", torch.optim.Adam, paper_adam, {"amsgrad": False, "decoupled_weight_decay": False},
                      description="torch.optim.Adam"),
        OptimizerSpec("adamw", torch.optim.AdamW, paper_adam, {"amsgrad": False},
                      description="torch.optim.AdamW (decoupled weight decay)"),
        OptimizerSpec("amsgrad", torch.optim.Adam, paper_adam, {"amsgrad": True, "decoupled_weight_decay": False},
                      description="torch.optim.Adam(amsgrad=True)"),
        OptimizerSpec("adabelief", AdaBelief, {"lr": 1e-3, "eps": 1e-16},
                      description="AdaBelief (Zhuang et al. 2020, Algorithm 2; amgt.AdaBelief)"),
        OptimizerSpec("rmsprop", torch.optim.RMSprop, {"lr": 1e-2}, description="torch.optim.RMSprop"),
        OptimizerSpec("sgd", torch.optim.SGD, {"lr": 1e-2, "momentum": 0.9},
                      description="torch.optim.SGD with momentum 0.9"),
    ]
    for spec in specs:
        register_optimizer(spec)


_register_builtins()
