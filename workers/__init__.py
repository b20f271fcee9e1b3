"""What one trial does: benchmarks (data + model + paper defaults), the training loop, per-epoch metrics,
and the convex-quadratic study. Usable on its own: no Ray, no MLflow.

>>> import workers
>>> result = workers.run_trial({"benchmark": "digits-cnn", "optimizer": "amgt", "epochs": 1})
>>> result["status"]
'completed'
"""

from . import benchmarks as _benchmarks  # noqa: F401  (registers the classification benchmarks)
from . import quadratic  # noqa: F401  (registers the quadratic and function benchmarks)
from ._registry import ENTRY_POINT_GROUP, Benchmark, available_benchmarks, get_benchmark, register_benchmark
from .checkpoint import CheckpointHook, DirectoryCheckpoint
from .metrics import EXTRA_EPOCH_METRICS, loss_increase_fraction, loss_oscillation
from .problem import EVALUATE_METRICS, Problem
from .train import resolve_config, run_trial, train_one_epoch

__all__ = [
    "ENTRY_POINT_GROUP",
    "EVALUATE_METRICS",
    "EXTRA_EPOCH_METRICS",
    "Benchmark",
    "CheckpointHook",
    "DirectoryCheckpoint",
    "Problem",
    "available_benchmarks",
    "get_benchmark",
    "loss_increase_fraction",
    "loss_oscillation",
    "quadratic",
    "register_benchmark",
    "resolve_config",
    "run_trial",
    "train_one_epoch",
]
