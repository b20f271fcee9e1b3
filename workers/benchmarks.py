"""The classification benchmarks of the paper's Table 4.1 (plus the offline digits quickstart), each
registered next to its definition: data set + network + the paper's defaults.

Paper setup (section "Experimental Setup"): batch 128 for MNIST and CIFAR-10, 256 for ImageNet; 30 / 100 /
90 epochs. Targets (for time-to-target, claims C7/C8) are ours, documented in ``docs/workers.md``.
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn

from . import data as _data
from ._registry import register_benchmark
from .models import DigitsCNN, LeNet5, resnet18_cifar, resnet50

__all__ = ["ClassificationProblem", "DATA_CHECKS", "check_data"]


class ClassificationProblem:
    """A network trained with cross-entropy on a data set (``InMemoryData`` or ``LoaderData``).

    ``step_loss(batch)`` returns (loss to differentiate, the same loss detached); ``evaluate`` returns
    ``val_loss``/``val_accuracy`` (and ``test_loss``/``test_accuracy``): mean cross-entropy (nats) and
    top-1 accuracy (fraction in [0, 1]) over the whole split.
    """

    kind = "classification"

    def __init__(self, model: nn.Module, data, eval_batch_size: int) -> None:
        self.model = model
        self.data = data
        self.eval_batch_size = eval_batch_size
        self.criterion = nn.CrossEntropyLoss()

    def train_batches(self, batch_size: int, generator: torch.Generator):
        return self.data.train_batches(batch_size, generator)

    @staticmethod
    def batch_size_of(batch) -> int:
        return int(batch[1].shape[0])

    def step_loss(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        loss = self.criterion(self.model(x), y)
        return loss, loss.detach()

    @torch.no_grad()
    def _evaluate_split(self, split: str) -> tuple[float, float]:
        loss_sum = torch.zeros((), dtype=torch.float64)
        correct = torch.zeros((), dtype=torch.int64)
        n = 0
        for x, y in self.data.eval_batches(split, self.eval_batch_size):
            logits = self.model(x)
            loss_sum = loss_sum + nn.functional.cross_entropy(logits, y, reduction="sum").double().cpu()
            correct = correct + (logits.argmax(1) == y).sum().cpu()
            n += int(y.shape[0])
        if n == 0:
            return math.nan, math.nan
        return loss_sum.item() / n, correct.item() / n

    def evaluate(self, evaluate_test: bool) -> dict[str, float]:
        self.model.eval()
        try:
            out = {}
            out["val_loss"], out["val_accuracy"] = self._evaluate_split("val")
            if evaluate_test and self.data.has_test():
                out["test_loss"], out["test_accuracy"] = self._evaluate_split("test")
            return out
        finally:
            self.model.train()


def _in_memory(data: _data.InMemoryData, model: nn.Module, config: dict, device: torch.device) -> ClassificationProblem:
    data.to(device)
    return ClassificationProblem(model.to(device), data, eval_batch_size=max(int(config["batch_size"]), 1000))


@register_benchmark(
    "digits-cnn", "classification",
    {"epochs": 10, "batch_size": 64, "val_fraction": 0.15,
     "targets": {"val_accuracy": 0.95, "train_loss": 0.1}},
    "scikit-learn's bundled 8×8 digits, small CNN (offline, seconds per epoch): the quickstart",
)
def _digits_cnn(config: dict, device: torch.device) -> ClassificationProblem:
    data = _data.load_digits_tensors(config["val_fraction"], config["seed"])
    return _in_memory(data, DigitsCNN(), config, device)


def _in_memory_split(config: dict, loader, mean_std, **kwargs) -> _data.InMemoryData:
    """8-bit images from ``loader(root, "train"|"test", download=...)`` held in memory, with the validation
    split of the training part fixed by ``config["seed"]`` (the test set never enters model selection)."""
    root = _data.resolve_data_dir(config.get("data_dir"))
    download = bool(config.get("download", False))
    x, y = loader(root, "train", download=download)
    tx, ty = loader(root, "test", download=download)
    tr, va = _data.split_indices(int(y.shape[0]), config["val_fraction"], config["seed"])
    mean, std = mean_std
    return _data.InMemoryData(x[tr], y[tr], x[va], y[va], tx, ty, scale=1 / 255, mean=mean, std=std, **kwargs)


@register_benchmark(
    "mnist-lenet5", "classification",
    {"epochs": 30, "batch_size": 128, "val_fraction": 1 / 12,
     "targets": {"val_accuracy": 0.99, "train_loss": 0.05}},
    "LeNet-5 on MNIST (paper Table 4.1: batch 128, 30 epochs); 55k train / 5k validation / 10k test",
)
def _mnist_lenet5(config: dict, device: torch.device) -> ClassificationProblem:
    data = _in_memory_split(config, _data.load_mnist_tensors, _data.MNIST_MEAN_STD)
    return _in_memory(data, LeNet5(), config, device)


@register_benchmark(
    "cifar10-resnet18", "classification",
    {"epochs": 100, "batch_size": 128, "val_fraction": 0.1,
     "targets": {"val_accuracy": 0.85, "train_loss": 0.3}},
    "ResNet-18 (CIFAR stem) on CIFAR-10 with crop+flip (paper: batch 128, 100 epochs); 45k/5k/10k",
)
def _cifar10_resnet18(config: dict, device: torch.device) -> ClassificationProblem:
    data = _in_memory_split(config, _data.load_cifar10_tensors, _data.CIFAR10_MEAN_STD,
                            augment=_data.random_crop_flip)
    return _in_memory(data, resnet18_cifar(10), config, device)


@register_benchmark(
    "imagenet-resnet50", "classification",
    {"epochs": 90, "batch_size": 256, "val_fraction": 0.02, "image_size": 224, "num_workers": None,
     "targets": {"val_accuracy": 0.70, "train_loss": 1.5}},
    "ResNet-50 (no pretrained weights) on ImageNet or a class subset, ImageFolder at <data_dir>/imagenet "
    "(paper: batch 256, 90 epochs)",
)
def _imagenet_resnet50(config: dict, device: torch.device) -> ClassificationProblem:
    root = _data.resolve_data_dir(config.get("data_dir"))
    workers = config.get("num_workers")
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    data = _data.build_imagefolder_data(root, config["val_fraction"], config["seed"], int(config["image_size"]),
                                        device, int(workers))
    model = resnet50(num_classes=data.num_classes).to(device)
    return ClassificationProblem(model, data, eval_batch_size=int(config["batch_size"]))


# Cheap checks (file existence and sizes, nothing decoded) of each benchmark's data: the study runner calls
# check_data before it starts Ray or writes anything. Benchmarks not listed need no data (digits is bundled
# with scikit-learn; the quadratic and function benchmarks are formulas).
DATA_CHECKS = {
    "mnist-lenet5": _data.check_mnist,
    "cifar10-resnet18": _data.check_cifar10,
    "imagenet-resnet50": _data.check_imagefolder,
}


def check_data(benchmark: str, data_dir: str | os.PathLike | None = None):
    """Check, cheaply, that ``benchmark``'s data is where its trials will look for it.

    Args:
        benchmark: a name from ``workers.available_benchmarks()``.
        data_dir: the trial config's ``data_dir``; None: ``$AMGT_DATA_DIR``, then ``~/.cache/amgt-study/data``
            (:func:`workers.data.resolve_data_dir`, as the trial resolves it).

    Returns:
        The resolved data root (``Path``), or None when the benchmark needs no data.

    Raises:
        ValueError: unknown benchmark (lists the valid names), or a data file that is corrupt/truncated.
        FileNotFoundError: the same message the loader would raise: folder, files expected, how to get them.
    """
    from ._registry import get_benchmark

    get_benchmark(benchmark)  # ValueError listing the names when unknown
    check = DATA_CHECKS.get(benchmark)
    if check is None:
        return None
    root = _data.resolve_data_dir(data_dir)
    check(root)
    return root
