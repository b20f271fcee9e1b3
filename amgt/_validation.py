"""Argument checks shared by the optimizers: ValueError naming the argument, its value and the range."""

from __future__ import annotations

import math
from typing import Any, Callable

from torch import Tensor

__all__ = ["check_adam_numbers", "check_flag", "check_foreach", "check_fused", "check_number"]


def check_number(name: str, value: Any, allowed: str, ok: Callable[[float], bool]) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite real Python number (not bool) with ``ok(value)``."""
    if isinstance(value, Tensor):
        raise ValueError(f"Invalid {name}: {value!r} (allowed: a Python number, {allowed}; tensors are not supported)")
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or not ok(float(value))):
        raise ValueError(f"Invalid {name}: {value!r} (allowed: {allowed})")


def check_flag(name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is a bool."""
    if not isinstance(value, bool):
        raise ValueError(f"Invalid {name}: {value!r} (allowed: True or False)")


def check_adam_numbers(*, lr: Any, betas: Any, eps: Any, weight_decay: Any) -> None:
    """The ranges torch.optim.Adam accepts, as ``ValueError`` naming the first argument out of range:
    ``lr`` ≥ 0, ``betas`` a pair in [0, 1), ``eps`` > 0, ``weight_decay`` ≥ 0 (all finite)."""
    check_number("lr", lr, ">= 0 and finite", lambda x: x >= 0)
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"Invalid betas: {betas!r} (allowed: a pair (beta1, beta2), each in [0, 1))")
    check_number("betas[0]", betas[0], "[0, 1)", lambda x: 0 <= x < 1)
    check_number("betas[1]", betas[1], "[0, 1)", lambda x: 0 <= x < 1)
    check_number("eps", eps, "> 0 and finite", lambda x: x > 0)
    check_number("weight_decay", weight_decay, ">= 0 and finite", lambda x: x >= 0)


def check_foreach(foreach: Any) -> None:
    """Raise ``ValueError`` unless ``foreach`` is None, True or False (torch.optim's three choices)."""
    if foreach is not None and not isinstance(foreach, bool):
        raise ValueError(f"Invalid foreach: {foreach!r} (allowed: None, True or False)")


def check_fused(fused: Any, foreach: Any) -> None:
    """Raise ``ValueError`` unless ``fused`` is None, True or False, and not True together with
    ``foreach=True`` (torch.optim refuses that pair too)."""
    if fused is not None and not isinstance(fused, bool):
        raise ValueError(f"Invalid fused: {fused!r} (allowed: None, True or False)")
    if fused and foreach:
        raise ValueError("Invalid fused: True together with foreach=True (allowed: at most one of them True)")


def add_checked_param_group(
    optimizer: Any, param_group: dict[str, Any], check: Callable[..., None], keys: tuple[str, ...]
) -> None:
    """``torch.optim.Optimizer.add_param_group``, then ``check(**{key: group[key]})`` on the new group.

    Raises:
        ValueError: a group value out of range, prefixed with the group's index; the group is removed again.
    """
    from torch.optim.optimizer import Optimizer

    Optimizer.add_param_group(optimizer, param_group)
    group = optimizer.param_groups[-1]
    try:
        check(**{k: group[k] for k in keys})
    except ValueError as exc:
        optimizer.param_groups.pop()
        raise ValueError(f"param group {len(optimizer.param_groups)}: {exc}") from None
