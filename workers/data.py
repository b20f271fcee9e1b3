"""Data for the classification benchmarks: loading, the train/validation split, batching, augmentation.

Small data sets (digits, MNIST, CIFAR-10) are read once into uint8 tensors, kept in memory (on the
training device) and batched by indexing, with augmentation done on whole batches of tensors; no
per-sample PIL transforms. ImageNet-style ImageFolder data is streamed by a ``DataLoader`` with
torchvision's standard transforms (torchvision ``references/classification``).

The validation split is held out of the training data by the trial's seed; the test split is the data
set's own test set (digits: a fixed stratified 20% split). Model selection uses validation metrics only.
"""

from __future__ import annotations

import gzip
import zlib
import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import torch

__all__ = [
    "InMemoryData",
    "LoaderData",
    "resolve_data_dir",
    "split_indices",
    "epoch_generator",
    "random_crop_flip",
    "load_digits_tensors",
    "load_mnist_tensors",
    "load_cifar10_tensors",
    "build_imagefolder_data",
    "mnist_paths",
    "cifar10_paths",
    "check_mnist",
    "check_cifar10",
    "check_imagefolder",
    "MNIST_MEAN_STD",
    "CIFAR10_MEAN_STD",
    "IMAGENET_MEAN_STD",
]

MNIST_MEAN_STD = ((0.1307,), (0.3081,))
CIFAR10_MEAN_STD = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """The data root: ``data_dir`` if given, else ``$AMGT_DATA_DIR``, else ``$XDG_CACHE_HOME/amgt-study/data``
    (``~/.cache/amgt-study/data``)."""
    if data_dir:
        return Path(data_dir).expanduser()
    env = os.environ.get("AMGT_DATA_DIR")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "amgt-study" / "data"


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A CPU ``torch.Generator`` determined by (seed, epoch, stream) only, so an epoch's shuffling and
    augmentation are the same whether the trial ran straight through or resumed from a checkpoint."""
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + int(epoch) * 7_919 + int(stream)) % (2**63 - 1))
    return g


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``range(n)`` into (train, validation) index tensors; the validation part has
    ``round(n * val_fraction)`` elements chosen by ``seed``. Both are sorted.

    Raises:
        ValueError: ``val_fraction`` outside (0, 1) or a split leaving either part empty.
    """
    if not (0.0 < float(val_fraction) < 1.0):
        raise ValueError(f"Invalid val_fraction: {val_fraction!r} (allowed: 0 < val_fraction < 1)")
    n_val = int(round(n * float(val_fraction)))
    if n_val < 1 or n_val >= n:
        raise ValueError(f"val_fraction={val_fraction} leaves an empty split of {n} samples")
    g = torch.Generator().manual_seed(int(seed) + 12_345)
    perm = torch.randperm(n, generator=g)
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Batched ``RandomCrop(size, padding=padding)`` (zero fill) + ``RandomHorizontalFlip(0.5)``.

    Args:
        x: images (N, C, H, W), any dtype, on any device.
        generator: CPU generator drawing the offsets and flips (so results do not depend on the device).

    Returns:
        Tensor of the same shape, dtype and device.
    """
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    oy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    ox = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (N, H, 1)
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (N, 1, W)
    cols = torch.where(flip[:, None, None], (ox[:, None] + torch.arange(w - 1, -1, -1, device=x.device))[:, None, :], cols)
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows, cols]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


@dataclass
class InMemoryData:
    """A classification data set held as tensors on the training device.

    Attributes:
        train_x, val_x, test_x: images (N, C, H, W), uint8 (or float) in raw units.
        train_y, val_y, test_y: labels (N,), int64.
        scale: factor mapping raw units to [0, 1] (1/255 for bytes, 1/16 for the digits).
        mean, std: per-channel normalisation applied after scaling.
        augment: ``augment(x01, generator)`` on [0, 1] float batches of training data, or None.
        num_classes: number of classes.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: Optional[torch.Tensor]
    test_y: Optional[torch.Tensor]
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: Optional[Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = None
    num_classes: int = 10

    def to(self, device: torch.device) -> "InMemoryData":
        for name in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(device))
        return self

    @property
    def num_train(self) -> int:
        return int(self.train_y.shape[0])

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        mean = torch.tensor(self.mean, device=x.device, dtype=torch.float32).view(1, c, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=torch.float32).view(1, c, 1, 1)
        return (x - mean) / std

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of shuffled, augmented, normalised training batches (the last one may be smaller)."""
        perm = torch.randperm(self.num_train, generator=generator).to(self.train_y.device)
        for start in range(0, self.num_train, batch_size):
            idx = perm[start:start + batch_size]
            x = self.train_x[idx].float() * self.scale
            if self.augment is not None:
                x = self.augment(x, generator)
            yield self._normalize(x), self.train_y[idx]

    def eval_batches(self, split: str, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Normalised batches of ``split`` ("val" or "test") in order, without augmentation."""
        xs, ys = (self.val_x, self.val_y) if split == "val" else (self.test_x, self.test_y)
        if xs is None:
            return
        for start in range(0, ys.shape[0], batch_size):
            yield self._normalize(xs[start:start + batch_size].float() * self.scale), ys[start:start + batch_size]

    def has_test(self) -> bool:
        return self.test_x is not None


def _split(x, y, val_fraction, seed):
    tr, va = split_indices(int(y.shape[0]), val_fraction, seed)
    return x[tr], y[tr], x[va], y[va]


# ---------------------------------------------------------------- digits (scikit-learn, bundled, offline)
def load_digits_tensors(val_fraction: float, seed: int, test_fraction: float = 0.2) -> InMemoryData:
    """scikit-learn's bundled 8×8 digits (1797 images, values 0–16): a fixed stratified test split
    (``test_fraction``, random_state 0, the same for every seed), and a validation split by ``seed``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    ds = load_digits()
    x = torch.tensor(ds.images, dtype=torch.float32).unsqueeze(1)  # (1797, 1, 8, 8), 0..16
    y = torch.tensor(ds.target, dtype=torch.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(y)), test_size=test_fraction, random_state=0, stratify=ds.target
    )
    idx_train, idx_test = torch.as_tensor(np.sort(idx_train)), torch.as_tensor(np.sort(idx_test))
    trx, try_, vax, vay = _split(x[idx_train], y[idx_train], val_fraction, seed)
    # normalised with the mean/std of this trial's training split (scaled to [0, 1])
    scaled = trx / 16.0
    return InMemoryData(trx, try_, vax, vay, x[idx_test], y[idx_test], scale=1 / 16,
                        mean=(scaled.mean().item(),), std=(scaled.std().item(),), augment=None, num_classes=10)


# ---------------------------------------------------------------- MNIST (torchvision layout)
_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_CACHE: dict[tuple, object] = {}


def _how_to_get(name: str, root: Path, folder: str) -> str:
    """How to get data set ``name`` (torchvision's class name) whose files belong in ``root/folder``."""
    hint = ""
    if root.name in (folder, "raw"):  # AMGT_DATA_DIR=/data/MNIST/raw instead of /data
        parent = root.parent.parent if root.name == "raw" and root.parent.name == folder else root.parent
        hint = (f"{root} looks like the data set's own folder: AMGT_DATA_DIR must be the folder that holds "
                f"{folder}/ (here probably {parent}). ")
    return hint + (
        f"Get it with torchvision (online): `python -c \"import torchvision; "
        f"torchvision.datasets.{name}('{root}', download=True)\"`, or point AMGT_DATA_DIR (or a trial "
        f"config's data_dir) at a folder that holds it; a direct `workers.run_trial` call may also set "
        f"\"download\": true in its config."
    )


# IDX type byte -> big-endian numpy dtype (LeCun's IDX format, as torchvision's SN3_PASCALVINCENT_TYPEMAP)
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _parse_idx(raw: bytes) -> np.ndarray:
    """An IDX file's bytes as an array (native byte order). Header: two zero bytes, a type byte, the
    number of dimensions, then one big-endian uint32 per dimension; then the data, big-endian.

    Raises:
        ValueError: what is wrong (magic, type, dimensions, size against the header).
    """
    if len(raw) < 4:
        raise ValueError(f"{len(raw)} bytes, shorter than the 4-byte IDX magic number")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"magic number {raw[:4].hex()} does not start with two zero bytes")
    dtype = _IDX_DTYPES.get(raw[2])
    if dtype is None:
        raise ValueError(f"unknown data type byte 0x{raw[2]:02x} (expected one of "
                         f"{', '.join(f'0x{t:02x}' for t in _IDX_DTYPES)})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim < 1 or len(raw) < header:
        raise ValueError(f"{ndim} dimension(s) in the header, {len(raw)} bytes: the header is incomplete")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    itemsize = np.dtype(dtype).itemsize
    expected = header + math.prod(shape) * itemsize
    if len(raw) != expected:
        raise ValueError(f"{len(raw)} bytes, but its header (shape {list(shape)}, {itemsize}-byte values) says {expected}")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(data.dtype.newbyteorder("="), copy=False)


def _read_idx(path: Path, expect_dims: int) -> torch.Tensor:
    """An IDX file (uncompressed or ``.gz``) as a tensor of its own dtype (MNIST: uint8), read with numpy.

    Raises:
        ValueError: a corrupt or truncated file, naming it and what is wrong.
    """
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
        array = _parse_idx(raw)
    except (ValueError, OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise ValueError(
            f"Corrupt or truncated MNIST file {path}: not a valid IDX file ({type(exc).__name__}: {exc}). "
            f"Delete it and download MNIST again."
        ) from None
    if array.ndim != expect_dims:
        raise ValueError(f"Corrupt MNIST file {path}: expected {expect_dims} dimensions, got shape {array.shape}")
    # A writable copy owned by torch (np.frombuffer over bytes is read-only).
    return torch.from_numpy(array.copy())


def mnist_paths(root: str | os.PathLike, split: str) -> list[Path]:
    """The (images, labels) IDX files of MNIST ``split`` under ``<root>/MNIST/raw`` (uncompressed or ``.gz``).

    Raises:
        FileNotFoundError: a file missing (names the folder, the files expected and how to get them).
    """
    root = Path(root)
    raw = root / "MNIST" / "raw"
    paths = []
    for name in _MNIST_FILES[split]:
        p = raw / name
        if not p.is_file() and (raw / (name + ".gz")).is_file():
            p = raw / (name + ".gz")
        if not p.is_file():
            expected = ", ".join(n for pair in _MNIST_FILES.values() for n in pair)
            raise FileNotFoundError(
                f"MNIST not found: {raw / name} is missing. Expected in {raw}: {expected} "
                f"(uncompressed or .gz). {_how_to_get('MNIST', root, 'MNIST')}"
            )
        paths.append(p)
    return paths


def _check_idx_size(path: Path, expect_dims: int) -> None:
    """Cheap truncation check of one IDX file: its header, and (uncompressed) the size the header implies."""
    with open(path, "rb") as f:
        head = f.read(4 + 4 * expect_dims)
    if path.suffix == ".gz":
        if head[:2] != b"\x1f\x8b":
            raise ValueError(f"Corrupt MNIST file {path}: not a gzip file. Delete it and download MNIST again.")
        return
    size = path.stat().st_size
    if len(head) < 4 + 4 * expect_dims or head[2] != 0x08 or head[3] != expect_dims:
        raise ValueError(f"Corrupt or truncated MNIST file {path}: not an IDX file of {expect_dims} dimension(s) "
                         f"of bytes ({size} bytes). Delete it and download MNIST again.")
    dims = [int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(expect_dims)]
    expected = 4 + 4 * expect_dims + math.prod(dims)
    if size != expected:
        raise ValueError(f"Corrupt or truncated MNIST file {path}: {size} bytes, its header {dims} says {expected}. "
                         f"Delete it and download MNIST again.")


def check_mnist(root: str | os.PathLike) -> None:
    """Cheap check (file existence and sizes, no decoding) that MNIST is under ``<root>/MNIST/raw``.

    Raises:
        FileNotFoundError: as :func:`load_mnist_tensors` (folder, files expected, how to get them).
        ValueError: a file whose header or size shows it is corrupt or truncated.
    """
    for split in ("train", "test"):
        images, labels = mnist_paths(root, split)
        _check_idx_size(images, 3)
        _check_idx_size(labels, 1)


def load_mnist_tensors(root: Path, split: str, download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST ``split`` ("train" | "test") from torchvision's layout ``<root>/MNIST/raw/`` (IDX files,
    uncompressed or ``.gz``), as (images (N, 1, 28, 28) uint8, labels (N,) int64). Cached per process.

    Raises:
        FileNotFoundError: files missing (names the folder, the files, and how to get them).
        ValueError: a corrupt/truncated file, or images and labels that disagree.
    """
    root = Path(root)
    raw = root / "MNIST" / "raw"
    if download:
        import torchvision

        torchvision.datasets.MNIST(str(root), train=(split == "train"), download=True)
    paths = mnist_paths(root, split)
    key = ("mnist", *(str(p) for p in paths), *(p.stat().st_mtime_ns for p in paths), *(p.stat().st_size for p in paths))
    if key in _CACHE:
        return _CACHE[key]
    images = _read_idx(paths[0], 3)
    labels = _read_idx(paths[1], 1).long()
    if images.shape[0] != labels.shape[0] or tuple(images.shape[1:]) != (28, 28):
        raise ValueError(
            f"Corrupt MNIST {split} files in {raw}: {images.shape[0]} images of shape {tuple(images.shape[1:])} "
            f"but {labels.shape[0]} labels (expected equal counts of 28×28 images)"
        )
    if labels.numel() and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"Corrupt MNIST labels in {paths[1]}: values outside 0–9")
    out = (images.unsqueeze(1).contiguous(), labels)
    _CACHE[key] = out
    return out


# ---------------------------------------------------------------- CIFAR-10 (torchvision layout)
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILES = ("test_batch",)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry["labels"] if "labels" in entry else entry["fine_labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ValueError(
            f"Corrupt or truncated CIFAR-10 batch {path} ({type(exc).__name__}: {exc}); expected a pickled dict "
            f"with 'data' (N×3072 uint8) and 'labels' (N ints), as in cifar-10-python.tar.gz. Download it again."
        ) from None
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
        raise ValueError(
            f"Corrupt CIFAR-10 batch {path}: data of shape {data.shape} and {labels.shape[0]} labels "
            f"(expected N×3072 and N labels)"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"Corrupt CIFAR-10 batch {path}: labels outside 0–9")
    return data, labels


def cifar10_paths(root: str | os.PathLike, split: str) -> list[Path]:
    """The pickled batch files of CIFAR-10 ``split`` under ``<root>/cifar-10-batches-py``.

    Raises:
        FileNotFoundError: a batch file missing or empty (names the folder, the files and how to get them).
    """
    root = Path(root)
    base = root / "cifar-10-batches-py"
    names = CIFAR10_TRAIN_FILES if split == "train" else CIFAR10_TEST_FILES
    paths = [base / n for n in names]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(
                f"CIFAR-10 not found: {p} is missing. Expected in {base}: "
                f"{', '.join(CIFAR10_TRAIN_FILES + CIFAR10_TEST_FILES)}. {_how_to_get('CIFAR10', root, 'cifar-10-batches-py')}"
            )
    return paths


def check_cifar10(root: str | os.PathLike) -> None:
    """Cheap check (existence, non-empty; no unpickling) that CIFAR-10 is under ``<root>/cifar-10-batches-py``.

    Raises:
        FileNotFoundError: as :func:`load_cifar10_tensors`.  ValueError: an empty batch file.
    """
    for split in ("train", "test"):
        for p in cifar10_paths(root, split):
            if p.stat().st_size == 0:
                raise ValueError(f"Corrupt or truncated CIFAR-10 batch {p}: the file is empty. Download it again.")


def load_cifar10_tensors(root: Path, split: str, download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 ``split`` from torchvision's layout ``<root>/cifar-10-batches-py/`` (pickled batches
    data_batch_1..5, test_batch), as (images (N, 3, 32, 32) uint8, labels (N,) int64). Cached per process.

    The files are parsed and checked for structure (shape, label range) rather than torchvision's MD5 of
    the original archive, so that subsets (and the tests' small files in the same format) load too.

    Raises:
        FileNotFoundError: a batch file missing (names the folder, the files and how to get them).
        ValueError: a corrupt or truncated batch.
    """
    root = Path(root)
    base = root / "cifar-10-batches-py"
    if download:
        import torchvision

        torchvision.datasets.CIFAR10(str(root), train=(split == "train"), download=True)
    paths = cifar10_paths(root, split)
    key = ("cifar10", *(str(p) for p in paths), *(p.stat().st_mtime_ns for p in paths), *(p.stat().st_size for p in paths))
    if key in _CACHE:
        return _CACHE[key]
    parts = [_read_cifar_batch(p) for p in paths]
    data = np.concatenate([d for d, _ in parts]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([lab for _, lab in parts])
    out = (torch.from_numpy(data.copy()), torch.from_numpy(labels))
    _CACHE[key] = out
    return out


# ---------------------------------------------------------------- ImageFolder (ImageNet or any subset)
def _checked_pil_loader(path: str):
    """torchvision's PIL loader, raising a ValueError that names the file when it cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"Corrupt or truncated image file {path}: {exc}") from None


class LoaderData:
    """A classification data set streamed from an ImageFolder by ``DataLoader``s (per-sample transforms).

    Same interface as :class:`InMemoryData`: ``train_batches``, ``eval_batches``, ``has_test``,
    ``num_train``, ``num_classes``.
    """

    def __init__(self, train_ds, val_ds, test_ds, num_classes: int, device: torch.device, num_workers: int) -> None:
        self.train_ds, self.val_ds, self.test_ds = train_ds, val_ds, test_ds
        self.num_classes = num_classes
        self.device = device
        self.num_workers = num_workers

    @property
    def num_train(self) -> int:
        return len(self.train_ds)

    def has_test(self) -> bool:
        return self.test_ds is not None

    def _loader(self, ds, batch_size, shuffle, generator=None):
        return torch.utils.data.DataLoader(
            ds, batch_size=batch_size, shuffle=shuffle, generator=generator, num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda", drop_last=False,
        )

    def train_batches(self, batch_size: int, generator: torch.Generator):
        for x, y in self._loader(self.train_ds, batch_size, True, generator):
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def eval_batches(self, split: str, batch_size: int):
        ds = self.val_ds if split == "val" else self.test_ds
        if ds is None:
            return
        for x, y in self._loader(ds, batch_size, False):
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def check_imagefolder(root: str | os.PathLike) -> Path:
    """Cheap check that ``<root>/imagenet/{train,val}`` exist and hold class folders; returns ``<root>/imagenet``.

    Raises:
        FileNotFoundError: a folder missing or without class folders (what is expected, how to get it).
    """
    base = Path(root) / "imagenet"
    for sub in ("train", "val"):
        d = base / sub
        if not d.is_dir() or not any(p.is_dir() for p in d.iterdir()):
            raise FileNotFoundError(
                f"ImageNet not found: {d} is missing or has no class folders. Expected "
                f"{base}/train/<class>/<images> and {base}/val/<class>/<images> (torchvision ImageFolder "
                f"layout; any subset of classes, the same in both). ImageNet cannot be downloaded "
                f"automatically: obtain it from image-net.org and point AMGT_DATA_DIR (or data_dir) at the "
                f"folder that holds imagenet/."
            )
    return base


def build_imagefolder_data(root: Path, val_fraction: float, seed: int, image_size: int, device: torch.device,
                           num_workers: int) -> LoaderData:
    """ImageNet (or any subset of its classes) in ``<root>/imagenet/{train,val}/<class>/<image>``.

    Transforms as torchvision's classification reference: train ``RandomResizedCrop(image_size)`` +
    ``RandomHorizontalFlip``; evaluation ``Resize(image_size·256/224)`` + ``CenterCrop(image_size)``;
    both normalised with the ImageNet mean/std. Validation = ``val_fraction`` of the train folder
    (by ``seed``); test = the val folder.

    Raises:
        FileNotFoundError: a folder missing or without class folders/images.
        ValueError: the val folder's classes differ from the train folder's.
    """
    from torchvision import datasets, transforms

    base = check_imagefolder(root)
    mean, std = IMAGENET_MEAN_STD
    resize = int(math.ceil(image_size * 256 / 224))
    train_tf = transforms.Compose([
        transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize(mean, std),
    ])
    eval_tf = transforms.Compose([
        transforms.Resize(resize), transforms.CenterCrop(image_size), transforms.ToTensor(), transforms.Normalize(mean, std),
    ])
    try:
        train_aug = datasets.ImageFolder(str(base / "train"), transform=train_tf, loader=_checked_pil_loader)
        train_eval = datasets.ImageFolder(str(base / "train"), transform=eval_tf, loader=_checked_pil_loader)
        test = datasets.ImageFolder(str(base / "val"), transform=eval_tf, loader=_checked_pil_loader)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"ImageNet folder {base} has no usable images: {exc}") from None
    if test.classes != train_aug.classes:
        raise ValueError(
            f"ImageNet class folders differ: {base / 'train'} has {len(train_aug.classes)} classes, "
            f"{base / 'val'} has {len(test.classes)}; they must hold the same class folders"
        )
    tr, va = split_indices(len(train_aug), val_fraction, seed)
    sub = torch.utils.data.Subset
    return LoaderData(sub(train_aug, tr.tolist()), sub(train_eval, va.tolist()), test,
                      num_classes=len(train_aug.classes), device=device, num_workers=num_workers)
