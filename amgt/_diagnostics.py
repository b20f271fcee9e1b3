"""AMGT's running diagnostics: sums kept on the parameters' devices, read on the host only when asked."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

__all__ = ["Diagnostics", "FIELDS"]

#: what each accumulator holds, in this order (the fused CPU kernel, amgt/_fused_cpu.cpp, adds in place)
FIELDS = ("lambda_sum", "lambda_elems", "kept", "thresholded", "nonfinite")


class Diagnostics:
    """Running sums of AMGT's per-step diagnostics.

    Per device, one small tensor (``FIELDS``: Σλ_t, elements with a λ_t, elements kept by thresholding,
    elements thresholded, elements whose update was non-finite) is added to in place by the update paths,
    so a step needs no host read; host numbers (e.g. λ_t = 1 counts) go to a host-side copy. The
    accumulators keep their identity across :meth:`reset` (zeroed in place), which lets
    ``torch.compile(optimizer.step)`` treat them as fixed graph inputs. :meth:`summary` is the only read.
    """

    def __init__(self) -> None:
        self._dev: dict[torch.device, Tensor] = {}
        self._host = [0.0] * len(FIELDS)
        self._steps = torch.zeros((), dtype=torch.float64)  # a tensor: a traced step adds to it in the graph
        # (η0, λ, step counter) of the first group's first parameter at the last step: η_t is computed from
        # them when asked, so that the step itself never reads the counter
        self.last: Optional[tuple[float, float, Tensor]] = None
        self.implementation: Optional[str] = None  # the path the last step ran ("loop", "fused", ...)

    def reset(self) -> None:
        """Zero the sums and the step count in place (``last`` is kept: η_t survives a reset)."""
        for acc in self._dev.values():
            acc.zero_()
        self._host = [0.0] * len(FIELDS)
        self._steps.zero_()

    def count_step(self) -> None:
        """One more optimizer step (a step that updated at least one parameter)."""
        self._steps.add_(1)

    @property
    def steps(self) -> int:
        return int(self._steps.item())

    def accumulator(self, device: torch.device) -> Tensor:
        """The accumulator of ``device`` (created zeroed on first use; float64, float32 on MPS)."""
        acc = self._dev.get(device)
        if acc is None:
            dtype = torch.float32 if device.type == "mps" else torch.float64
            acc = self._dev[device] = torch.zeros(len(FIELDS), dtype=dtype, device=device)
        return acc

    def add(self, device: torch.device, values: Sequence[Tensor | float]) -> None:
        """Add one value per field (0-d tensors on ``device``, or host numbers)."""
        acc = None
        for i, x in enumerate(values):
            if isinstance(x, Tensor):
                acc = self.accumulator(device) if acc is None else acc
                acc[i].add_(x)
            elif x:
                self._host[i] += x

    def summary(self) -> dict[str, float]:
        """``suppressed_fraction``, ``nonfinite_fraction``, ``lambda_mean``, ``lr_t``, ``steps`` (see
        :meth:`amgt.AMGT.diagnostics`)."""
        tot = list(self._host)
        for acc in self._dev.values():
            tot = [a + b for a, b in zip(tot, acc.tolist())]
        lam, lam_n, kept, thr, bad = tot
        lr_t = float("nan")
        if self.last is not None:
            lr, lr_decay, step = self.last
            lr_t = lr / (1 + lr_decay * (step.item() - 1))
        return {
            "suppressed_fraction": (thr - kept) / thr if thr else 0.0,
            "nonfinite_fraction": bad / thr if thr else 0.0,
            "lambda_mean": lam / lam_n if lam_n else 1.0,
            "lr_t": lr_t,
            "steps": float(self._steps.item()),
        }
