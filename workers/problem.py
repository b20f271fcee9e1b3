"""The protocol a benchmark's ``build(config, device)`` returns: a *problem* that ``workers.run_trial`` trains.

A benchmark (``workers.Benchmark``: name, kind, defaults, ``build``) is registered with
``@workers.register_benchmark``, published by a package as an ``amgt_study.benchmarks`` entry point, or named
in a study file by an import path (``benchmark: "my_pkg.bench:BENCHMARK"``).  Whatever its origin, its
``build`` returns an object with the members of :class:`Problem`, and its ``evaluate`` returns (at least)
the metrics :data:`EVALUATE_METRICS` lists for its kind: these are what the study's search selects on
(``workers.SELECTION_METRICS``) and the reports read.  ``run_trial`` adds the rest itself (``train_loss``,
``epoch_time_s``, ``steps``, ``samples_per_s``, gradient norms, ``loss_oscillation``, optimizer state and peak
memory, time to the benchmark's ``targets``), so a user's model and data give every metric the built-in ones
give.  The built-in problems: ``workers.benchmarks.ClassificationProblem`` (a network + an
``workers.data.InMemoryData`` or loader; reuse it for your own classification data) and
``workers.quadratic.FunctionProblem``.  A worked example: ``examples/byo/digits_mlp.py``.
"""

from __future__ import annotations

from typing import Any, Iterable, Protocol, runtime_checkable

import torch

__all__ = ["Problem", "EVALUATE_METRICS", "check_evaluation"]

#: What ``Problem.evaluate`` must return per benchmark kind (more keys are logged too).  Classification:
#: mean cross-entropy (nats) and top-1 accuracy (fraction in [0, 1]) over the whole validation split, and
#: ``test_loss``/``test_accuracy`` when asked (``evaluate_test``) and the data has a test split.  Quadratic and
#: function: f(x) − f*, ‖x − x*‖ and ‖∇f(x)‖ at the epoch's last iterate.
EVALUATE_METRICS = {
    "classification": ("val_loss", "val_accuracy"),
    "quadratic": ("train_loss", "distance_to_optimum", "grad_norm"),
    "function": ("train_loss", "distance_to_optimum", "grad_norm"),
}


@runtime_checkable
class Problem(Protocol):
    """What one trial trains, built once per trial by ``Benchmark.build(config, device)``.

    Attributes:
        model: the ``torch.nn.Module`` whose ``parameters()`` the optimizer is built over, on ``device``.
    """

    model: torch.nn.Module

    def train_batches(self, batch_size: int | None, generator: torch.Generator) -> Iterable[Any]:
        """One epoch's batches, shuffled with ``generator`` (seeded per trial seed and epoch)."""

    def batch_size_of(self, batch: Any) -> int:
        """Examples in ``batch`` (for ``samples_per_s``)."""

    def step_loss(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(the loss to backpropagate, the value to log: a 0-d tensor, e.g. the same loss detached)."""

    def evaluate(self, evaluate_test: bool) -> dict[str, float]:
        """The epoch's evaluation: at least :data:`EVALUATE_METRICS` of the benchmark's kind."""


def check_evaluation(benchmark: str, kind: str, metrics: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the benchmark and the metrics missing from its ``evaluate`` result."""
    missing = [m for m in EVALUATE_METRICS[kind] if m not in metrics]
    if missing:
        raise ValueError(f"benchmark {benchmark!r} (kind {kind}): evaluate() returned no {', '.join(missing)}; a "
                         f"{kind} problem reports {', '.join(EVALUATE_METRICS[kind])} (workers.problem)")
