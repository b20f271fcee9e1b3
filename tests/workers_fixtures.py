"""Writers of tiny data sets in the real on-disk formats, for the workers tests.

CIFAR-10: torchvision's ``cifar-10-batches-py`` layout, pickled dicts with 'data' (N×3072 uint8, channel-major
rows) and 'labels' like the original ``cifar-10-python.tar.gz``. ImageFolder: ``imagenet/{train,val}/<class>/``
with PNG and JPEG files written by Pillow.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def write_cifar10(root: Path, per_batch: int = 8, seed: int = 0) -> Path:
    """Write data_batch_1..5, test_batch and batches.meta with ``per_batch`` random images each."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {
            "batch_label": f"{name} (test fixture)",
            "labels": [int(v) for v in rng.integers(0, 10, per_batch)],
            "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            "filenames": [f"img_{i}.png" for i in range(per_batch)],
        }
        with open(base / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": per_batch,
                     "num_vis": 3072}, f, protocol=2)
    return base


def write_imagefolder(root: Path, classes=("n01440764", "n01443537", "n01484850"), per_class: int = 6,
                      size: int = 40, seed: int = 0) -> Path:
    """Write ``<root>/imagenet/{train,val}/<class>/`` with alternating PNG and JPEG RGB images."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = Path(root) / "imagenet"
    for split, n in (("train", per_class), ("val", max(2, per_class // 2))):
        for c in classes:
            d = base / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                ext = "png" if i % 2 == 0 else "JPEG"
                Image.fromarray(arr).save(d / f"{c}_{i}.{ext}")
    return base
