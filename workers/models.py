"""The networks of the classification benchmarks (paper Table 4.1), built without pretrained weights."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DigitsCNN", "LeNet5", "GlobalAvgPool", "resnet18_cifar", "resnet50"]


class GlobalAvgPool(nn.Module):
    """Mean over the spatial dimensions, (N, C, H, W) → (N, C, 1, 1): the same as ResNet's
    ``AdaptiveAvgPool2d((1, 1))``, but its CUDA backward is deterministic (``AdaptiveAvgPool2d``'s is not,
    per ``torch.use_deterministic_algorithms``), so same seed → same metrics on a GPU too."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


class DigitsCNN(nn.Module):
    """A small CNN for scikit-learn's 8×8 digits: input (N, 1, 8, 8), output logits (N, 10).

    conv3×3(1→16) → ReLU → conv3×3(16→32) → ReLU → max-pool 2 → linear(512→64) → ReLU → linear(64→10).
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(inplace=True), nn.Linear(64, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) for 28×28 MNIST: input (N, 1, 28, 28), output logits (N, 10).

    conv5×5(1→6, padding 2) → ReLU → max-pool 2 → conv5×5(6→16) → ReLU → max-pool 2 →
    linear(400→120) → ReLU → linear(120→84) → ReLU → linear(84→10). The usual modern reading (ReLU and
    max-pooling instead of the original scaled tanh and trainable subsampling); the paper does not say which.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def resnet18_cifar(num_classes: int = 10) -> nn.Module:
    """torchvision's ResNet-18 (weights=None) in its CIFAR variant: a 3×3 stride-1 stem and no max-pool,
    so 32×32 inputs keep a 4×4 map before the average pool (He et al. 2016, section 4.2)."""
    from torchvision.models import resnet18

    model = resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    model.avgpool = GlobalAvgPool()
    return model


def resnet50(num_classes: int = 1000) -> nn.Module:
    """torchvision's ResNet-50, randomly initialised (weights=None), with ``num_classes`` outputs (its
    average pool replaced by the equivalent :class:`GlobalAvgPool`)."""
    from torchvision.models import resnet50 as _resnet50

    model = _resnet50(weights=None, num_classes=num_classes)
    model.avgpool = GlobalAvgPool()
    return model
