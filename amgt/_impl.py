"""Which implementation of an optimizer runs (for reports: a speed comparison must say what it timed)."""

from __future__ import annotations

from torch.optim import Optimizer

from ._functional import default_foreach

__all__ = ["optimizer_implementation"]


def optimizer_implementation(optimizer: Optimizer) -> str:
    """``"<class>(<path>)"``, e.g. ``"amgt.AMGT(fused)"`` or ``"torch.optim.Adam(foreach)"``.

    The path is ``loop`` (per-tensor), ``foreach`` (multi-tensor) or ``fused``, per param group (joined
    by ``+`` when groups differ). For :class:`amgt.AMGT` it is the path its last step ran (a ``fused=True``
    that fell back reports ``foreach``; a step traced by ``torch.compile``, ``compile``); before any step,
    and for every other optimizer, it is read from the group flags with torch.optim's default for
    ``foreach=None`` (multi-tensor when every parameter is on CUDA/XPU, else the loop).
    """
    cls = type(optimizer)
    module = cls.__module__
    prefix = "torch.optim" if module.startswith("torch.optim") else module.split(".")[0]
    ran = getattr(optimizer, "implementation", None)
    if not isinstance(ran, str):
        paths = []
        for group in optimizer.param_groups:
            if group.get("fused"):
                path = "fused"
            elif group.get("foreach") is None:
                path = "foreach" if group["params"] and default_foreach(group["params"]) else "loop"
            else:
                path = "foreach" if group["foreach"] else "loop"
            if path not in paths:
                paths.append(path)
        ran = "+".join(paths) or "loop"
    return f"{prefix}.{cls.__name__}({ran})"
