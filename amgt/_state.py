"""Loading an optimizer state dict the way torch.optim does, plus two checks of our own.

``torch.optim.Optimizer.load_state_dict`` runs the load-state-dict pre-hooks (a pre-hook may return a new
dict), casts every floating state tensor to its parameter's dtype, installs the state, then runs the
post-hooks (which may replace state tensors). We keep all of that and add, through the same public hook
API (a pre-hook that runs after the caller's, a post-hook that runs before the caller's):

- **Shape check** (before anything is changed): every state tensor must have its parameter's shape. torch
  maps saved parameters to the optimizer's by position only, so a model whose parameters were reordered
  swaps state silently where shapes agree and fails later in ``step()`` where they do not; we raise
  ``ValueError`` naming the first mismatch. (Reordered parameters of equal shapes cannot be detected.)
- **Full precision for 16-bit parameters**: torch's cast would store float32 moments of float16/bfloat16
  parameters in 16 bits; they are re-read, at float32, from the dict the pre-hooks produced.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import Tensor
from torch.optim import Optimizer

from ._functional import state_dtype

__all__ = ["load_state_dict_checked", "check_state_shapes"]


def _pairs(optimizer: Optimizer, state_dict: dict[str, Any]):
    """(saved id, parameter, group index, index in group), in torch's positional order; empty when the
    group structure differs (torch's own check then raises)."""
    saved = state_dict.get("param_groups", [])
    if len(saved) != len(optimizer.param_groups):
        return []
    out = []
    for gi, (sg, g) in enumerate(zip(saved, optimizer.param_groups)):
        if len(sg["params"]) != len(g["params"]):
            return []
        out += [(pid, p, gi, j) for j, (pid, p) in enumerate(zip(sg["params"], g["params"]))]
    return out


def check_state_shapes(optimizer: Optimizer, state_dict: dict[str, Any]) -> None:
    """Raise ``ValueError`` if a saved state tensor (other than ``step``) has another shape than the
    parameter it would be loaded into."""
    saved_state = state_dict.get("state", {})
    for pid, p, gi, j in _pairs(optimizer, state_dict):
        for key, value in saved_state.get(pid, {}).items():
            if key != "step" and isinstance(value, Tensor) and value.shape != p.shape:
                raise ValueError(
                    f"Invalid state dict: state {key!r} of saved parameter {pid} has shape {tuple(value.shape)}, "
                    f"but the parameter it loads into (param group {gi}, index {j}) has shape {tuple(p.shape)} "
                    f"(allowed: the parameters the state was saved from, in the same order; were the "
                    f"parameters reordered, or is this another model's state?)")


def _restore_full_precision(optimizer: Optimizer, state_dict: dict[str, Any]) -> None:
    saved_state = state_dict["state"]
    for pid, p, _, _ in _pairs(optimizer, state_dict):
        if pid not in saved_state or p not in optimizer.state or p.dtype == state_dtype(p):
            continue
        for key, value in saved_state[pid].items():
            if key != "step" and isinstance(value, Tensor) and value.is_floating_point():
                optimizer.state[p][key] = value.to(device=p.device, dtype=state_dtype(p), copy=True)


def load_state_dict_checked(optimizer: Optimizer, state_dict: dict[str, Any],
                            load: Callable[[dict[str, Any]], None]) -> None:
    """``load(state_dict)`` (``torch.optim.Optimizer.load_state_dict``) with the shape check and the
    float32 moments of 16-bit parameters (module docstring); the caller's hooks are honoured as torch does.

    Raises:
        ValueError: a state tensor whose shape differs from its parameter's (nothing is loaded then), or
            torch's own errors (different numbers of groups or parameters).
    """
    final: dict[str, Any] = {}

    def pre_hook(opt: Optimizer, sd: dict[str, Any]) -> None:
        check_state_shapes(opt, sd)
        final["state_dict"] = sd

    def post_hook(opt: Optimizer) -> None:
        _restore_full_precision(opt, final["state_dict"])

    handles = [optimizer.register_load_state_dict_pre_hook(pre_hook),  # after the caller's pre-hooks
               optimizer.register_load_state_dict_post_hook(post_hook, prepend=True)]  # before theirs
    try:
        load(state_dict)
    finally:
        for h in handles:
            h.remove()
