"""What a trial's results depend on besides its config: the data it read and the code that trained.

:func:`data_identity` names a benchmark's data set by its content (a SHA-256 digest), so that the same
data laid out differently (MNIST as ``.gz`` or decompressed IDX files) is the same data set, and changed
files are a different one.  :func:`code_digest` is a digest of the trial code (the ``amgt`` and
``workers`` packages' sources): two runs with the same config and digest ran the same training code.
The study's identity (study/identity.py) and the MLflow dataset inputs (``mlflow.log_input``) use both.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DataIdentity", "data_identity", "code_digest"]

_CHUNK = 1 << 20
_CACHE: dict[tuple, "DataIdentity | None"] = {}


@dataclass(frozen=True)
class DataIdentity:
    """A benchmark's data set.

    Attributes:
        name: the data set's name (``"MNIST"``, ``"CIFAR-10"``, ``"ImageNet"``, ``"digits"``).
        digest: SHA-256 (hex, 64 characters) of the content: the decompressed bytes of every file
            (MNIST, CIFAR-10), scikit-learn's bundled arrays (digits), or the relative paths and sizes of
            every image (ImageNet folders: decoding is too costly to hash up front).
        source: where it was read (a folder, or ``"sklearn.datasets.load_digits"``).
        files: the files hashed, relative to ``source`` (empty for digits).
    """

    name: str
    digest: str
    source: str
    files: tuple[str, ...] = ()


def _hash_file(h, path: Path) -> None:
    """Feed ``path``'s content (decompressed if ``.gz``) to ``h``.

    Raises:
        ValueError: the file cannot be read or decompressed (names it).
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"Corrupt or truncated data file {path}: {type(exc).__name__}: {exc}. Delete it and get "
                         "the data set again.") from None


def _hash_files(name: str, root: Path, paths: list[Path]) -> DataIdentity:
    h = hashlib.sha256()
    rel = []
    for p in paths:
        plain = p.name[:-3] if p.suffix == ".gz" else p.name  # the layout (.gz or not) is not the content
        h.update(plain.encode() + b"\0")
        _hash_file(h, p)
        rel.append(str(p.relative_to(root)))
    return DataIdentity(name, h.hexdigest(), str(root), tuple(rel))


def _stat_key(paths: list[Path]) -> tuple:
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths)


def data_identity(benchmark: str, data_dir: str | os.PathLike | None = None) -> DataIdentity | None:
    """The data set of ``benchmark`` as its trials would read it (``data_dir`` resolved as the trial does).

    Cached per process by the files' paths, sizes and modification times.  MNIST (55 MB decompressed)
    takes about 0.3 s the first time.

    Returns:
        The identity, or None for benchmarks without a data set (the quadratic and function benchmarks).

    Raises:
        FileNotFoundError / ValueError: as ``workers.benchmarks.check_data`` (missing or corrupt data).
    """
    from . import data as D
    from .benchmarks import check_data

    root = check_data(benchmark, data_dir)
    if benchmark == "digits-cnn":
        key = ("digits",)
        if key not in _CACHE:
            from sklearn.datasets import load_digits

            ds = load_digits()
            h = hashlib.sha256(ds.data.astype("<f8").tobytes() + ds.target.astype("<i8").tobytes())
            _CACHE[key] = DataIdentity("digits", h.hexdigest(), "sklearn.datasets.load_digits")
        return _CACHE[key]
    if root is None:
        return None
    root = Path(root)
    if benchmark == "mnist-lenet5":
        name, paths = "MNIST", D.mnist_paths(root, "train") + D.mnist_paths(root, "test")
    elif benchmark == "cifar10-resnet18":
        name, paths = "CIFAR-10", D.cifar10_paths(root, "train") + D.cifar10_paths(root, "test")
    elif benchmark == "imagenet-resnet50":
        base = D.check_imagefolder(root)
        images = sorted(p for p in base.rglob("*") if p.is_file())
        key = ("imagenet", str(base), len(images), sum(p.stat().st_size for p in images))
        if key not in _CACHE:
            h = hashlib.sha256()
            for p in images:
                h.update(f"{p.relative_to(base)}\0{p.stat().st_size}\n".encode())
            _CACHE[key] = DataIdentity("ImageNet", h.hexdigest(), str(base), ())
        return _CACHE[key]
    else:
        return None
    key = (name, *_stat_key(paths))
    if key not in _CACHE:
        _CACHE[key] = _hash_files(name, root, paths)
    return _CACHE[key]


def code_digest() -> str:
    """SHA-256 (hex, first 16 characters) of the trial code: every ``.py`` file of the ``amgt`` and
    ``workers`` packages, by relative path and content.  The study and reporting code is not included:
    it does not change what a trial computes."""
    import amgt

    h = hashlib.sha256()
    for package in (Path(amgt.__file__).parent, Path(__file__).parent):
        for path in sorted(package.rglob("*.py")):
            h.update(f"{package.name}/{path.relative_to(package)}\0".encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]
