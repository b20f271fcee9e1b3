"""A worked example of bringing your own benchmark and optimizer to amgt-study (docs/studies.md, "Test your
own optimizer"): a small MLP on scikit-learn's bundled 8×8 digits, and SGD with Nesterov momentum as a factory.

Three ways to use them, all resolved by the same registries (``workers.get_benchmark``, ``amgt.get_optimizer_spec``):

* by import path in a study file: ``benchmark: "amgt_byo_example:DIGITS_MLP"`` and
  ``{name: sgd-nesterov, class: "amgt_byo_example:sgd_nesterov"}`` (this folder on ``PYTHONPATH``);
* by entry point, once installed (``pip install -e examples/byo``, see its pyproject.toml):
  ``benchmark: digits-mlp`` and ``optimizers: [sgd-nesterov]``;
* directly: ``workers.run_trial({"benchmark": "amgt_byo_example:DIGITS_MLP", "optimizer": "torch.optim:NAdam"})``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from workers import Benchmark
from workers.benchmarks import ClassificationProblem
from workers.data import InMemoryData, split_indices

__all__ = ["DIGITS_MLP", "DigitsMLP", "build_digits_mlp", "sgd_nesterov"]


class DigitsMLP(nn.Module):
    """8×8 images (N, 1, 8, 8) → 10 logits: flatten, one hidden layer of ``hidden`` ReLU units."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_digits_mlp(config: dict, device: torch.device) -> ClassificationProblem:
    """The benchmark's ``build(config, device)``: the data split by ``config["seed"]`` and
    ``config["val_fraction"]`` (a fixed test set: every 5th image), the model on ``device``.

    Returns a ``workers.benchmarks.ClassificationProblem``: ``evaluate`` gives ``val_loss``/``val_accuracy``
    (and ``test_loss``/``test_accuracy``), which is what the study's search and the reports read.
    """
    from sklearn.datasets import load_digits

    ds = load_digits()
    x = torch.tensor(ds.images, dtype=torch.float32).unsqueeze(1)  # (1797, 1, 8, 8), values 0..16
    y = torch.tensor(ds.target, dtype=torch.int64)
    is_test = np.arange(len(y)) % 5 == 0
    test = torch.as_tensor(np.flatnonzero(is_test))
    rest = torch.as_tensor(np.flatnonzero(~is_test))
    tr, va = split_indices(len(rest), config["val_fraction"], config["seed"])
    train_x = x[rest][tr]
    scaled = train_x / 16.0
    data = InMemoryData(train_x, y[rest][tr], x[rest][va], y[rest][va], x[test], y[test], scale=1 / 16,
                        mean=(scaled.mean().item(),), std=(scaled.std().item(),), num_classes=10)
    return ClassificationProblem(DigitsMLP().to(device), data.to(device), eval_batch_size=1000)


#: The benchmark: registry entry ``digits-mlp`` (entry point) or ``amgt_byo_example:DIGITS_MLP`` (import path).
DIGITS_MLP = Benchmark(
    name="digits-mlp", kind="classification",
    defaults={"epochs": 5, "batch_size": 64, "val_fraction": 0.15,
              "targets": {"val_accuracy": 0.9, "train_loss": 0.2}},
    build=build_digits_mlp,
    description="scikit-learn's 8×8 digits, MLP with one hidden layer of 64 (the bring-your-own example)",
)


def sgd_nesterov(params, lr: float = 0.05, momentum: float = 0.9, weight_decay: float = 0.0) -> torch.optim.SGD:
    """SGD with Nesterov momentum: an optimizer factory ``f(params, **hparams)`` (torch.optim.SGD, nesterov=True)."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
