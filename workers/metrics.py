"""Per-epoch measurements shared by every benchmark: loss oscillation, gradient-norm statistics,
optimizer-state size, peak memory, and time-to-target.

Every definition here is the one written in ``docs/workers.md``; the tests check them on constructed inputs.
"""

from __future__ import annotations

import math
import resource
import sys
from typing import Iterable, Mapping, Sequence

import torch

__all__ = [
    "EXTRA_EPOCH_METRICS",
    "loss_oscillation",
    "loss_increase_fraction",
    "mean_std",
    "optimizer_state_bytes",
    "peak_memory_bytes",
    "reset_peak_memory",
    "global_grad_norm",
    "first_reaching",
]


# per-epoch metrics that quadratic/function benchmarks report beyond tracking.schema.METRICS_EPOCH
EXTRA_EPOCH_METRICS = ("distance_to_optimum", "grad_norm", "grad_norm_sq_min")


def loss_oscillation(losses: Sequence[float] | torch.Tensor) -> float:
    r"""Loss oscillation of one epoch (claims C9, C15): the mean absolute second difference of the
    per-step training loss, relative to the mean absolute loss.

    .. math::
       \mathrm{osc} = \frac{\frac{1}{n-2}\sum_{i=2}^{n-1} |\ell_{i+1} - 2\ell_i + \ell_{i-1}|}
                           {\frac{1}{n}\sum_{i=1}^{n} |\ell_i|}

    where :math:`\ell_1..\ell_n` are the losses of the epoch's optimizer steps in order (the mini-batch loss
    computed for each step, before that step). A steady (linear) descent scores 0, whatever its slope; a
    loss alternating ±a around c scores 4a/c. It is scale-free (multiplying all losses by k > 0 changes
    nothing). The second difference removes the trend that a first difference would count as oscillation.

    Args:
        losses: the per-step losses, shape (n,).

    Returns:
        The oscillation (dimensionless, ≥ 0); NaN when n < 3, when the mean absolute loss is 0, or when
        any loss is non-finite.
    """
    x = torch.as_tensor(losses, dtype=torch.float64).flatten()
    if x.numel() < 3 or not bool(torch.isfinite(x).all()):
        return math.nan
    scale = x.abs().mean().item()
    if scale == 0.0:
        return math.nan
    second = x[2:] - 2.0 * x[1:-1] + x[:-2]
    return second.abs().mean().item() / scale


def loss_increase_fraction(losses: Sequence[float] | torch.Tensor) -> float:
    """Fraction of consecutive steps at which the per-step loss went up (ℓ_{i+1} > ℓ_i), in [0, 1].

    A second, cruder oscillation measure (not logged by default); NaN when n < 2.
    """
    x = torch.as_tensor(losses, dtype=torch.float64).flatten()
    if x.numel() < 2:
        return math.nan
    return (x[1:] > x[:-1]).double().mean().item()


def mean_std(values: Sequence[float] | torch.Tensor) -> tuple[float, float]:
    """Mean and population standard deviation (ddof = 0) of ``values``; (NaN, NaN) when empty."""
    x = torch.as_tensor(values, dtype=torch.float64).flatten()
    if x.numel() == 0:
        return math.nan, math.nan
    return x.mean().item(), x.std(correction=0).item()


def global_grad_norm(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """L2 norm of all gradients concatenated (as ``torch.nn.utils.clip_grad_norm_`` computes it), as a
    0-d float32 tensor on the gradients' device (no host synchronisation). Parameters without a
    gradient are skipped; 0 when none has one."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norms = torch._foreach_norm(grads)
    if any(n.dtype != torch.float32 for n in norms):  # e.g. 16-bit or float64 gradients
        norms = [n.float() for n in norms]
    return torch.linalg.vector_norm(torch.stack(norms))


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held by the tensors in ``optimizer.state`` (numel × element size, summed; step counters
    included). For Adam this is 2n floats + the step counters; for AMGT with thresholding and error
    feedback 3n + counters (the paper's "4n vs 3n" counts the parameters too)."""
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                total += value.numel() * value.element_size()
    return total


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory window on a CUDA device (``torch.cuda.reset_peak_memory_stats``); a no-op
    on the CPU, whose peak RSS cannot be reset."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory in bytes.

    CUDA: ``torch.cuda.max_memory_allocated(device)`` since the last :func:`reset_peak_memory` (the
    caching allocator's peak of allocated tensor memory; per epoch in the training loop).
    CPU (and others): the process's peak resident set size since it started
    (``getrusage(RUSAGE_SELF).ru_maxrss``; kilobytes on Linux, bytes on macOS).
    """
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def first_reaching(history: Sequence[Mapping[str, float]], key: str, target: float, *, above: bool):
    """The first epoch record whose ``key`` reaches ``target`` (≥ when ``above`` else ≤), or None.

    Non-finite values never reach a target.
    """
    for rec in history:
        value = rec.get(key)
        if value is None or not math.isfinite(value):
            continue
        if (value >= target) if above else (value <= target):
            return rec
    return None
