"""Benchmarks on real data formats: real MNIST (../shared/data via the data_dir fixture), CIFAR-10 and
ImageFolder fixtures written in the real formats, every benchmark a few steps, missing and corrupt data."""

from __future__ import annotations

import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import workers
from workers import data as D
from workers_fixtures import write_cifar10, write_imagefolder


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------ MNIST
def test_mnist_lenet5_short_run_reaches_sensible_accuracy(data_dir):
    res = workers.run_trial({"benchmark": "mnist-lenet5", "optimizer": "amgt", "epochs": 1, "max_steps": 250,
                             "seed": 0, "device": "cpu", "data_dir": str(data_dir)})
    assert res["status"] == "completed" and res["steps"] == 250
    assert res["val_accuracy"] > 0.90, res["val_accuracy"]
    assert res["test_accuracy"] > 0.90, res["test_accuracy"]


def test_mnist_tensors_and_split(data_dir):
    x, y = D.load_mnist_tensors(data_dir, "train")
    tx, ty = D.load_mnist_tensors(data_dir, "test")
    assert x.shape == (60000, 1, 28, 28) and x.dtype == torch.uint8 and tx.shape == (10000, 1, 28, 28)
    assert set(torch.unique(y).tolist()) == set(range(10))
    tr, va = D.split_indices(60000, 1 / 12, seed=5)
    assert len(va) == 5000 and len(tr) == 55000 and not set(tr.tolist()) & set(va.tolist())
    tr2, va2 = D.split_indices(60000, 1 / 12, seed=5)
    assert torch.equal(va, va2)
    assert not torch.equal(va, D.split_indices(60000, 1 / 12, seed=6)[1])
    # torchvision's own reader agrees with ours (it reads uncompressed files only: decompress a copy)
    import gzip
    import tempfile

    import torchvision

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "MNIST" / "raw"
        raw.mkdir(parents=True)
        for p in D.mnist_paths(data_dir, "train") + D.mnist_paths(data_dir, "test"):
            (raw / p.name.removesuffix(".gz")).write_bytes(gzip.decompress(p.read_bytes()) if p.suffix == ".gz"
                                                           else p.read_bytes())
        ref = torchvision.datasets.MNIST(tmp, train=False, download=False)
        assert torch.equal(ref.data, tx[:, 0]) and torch.equal(ref.targets, ty)


def test_mnist_missing_names_folder_files_and_how(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        workers.run_trial({"benchmark": "mnist-lenet5", "optimizer": "adam", "data_dir": str(tmp_path), "epochs": 1})
    msg = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in msg and "train-images-idx3-ubyte" in msg
    assert "download=True" in msg and "AMGT_DATA_DIR" in msg


def test_mnist_truncated_file_is_a_clear_error(tmp_path, data_dir):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (data_dir / "MNIST" / "raw").iterdir():
        shutil.copy(f, raw / f.name)
    p = D.mnist_paths(tmp_path, "train")[0]  # uncompressed or .gz, as the data dir has it
    p.write_bytes(p.read_bytes()[:100_000])
    with pytest.raises(ValueError, match="Corrupt or truncated MNIST file .*train-images-idx3-ubyte"):
        D.load_mnist_tensors(tmp_path, "train")


def test_mnist_gz_files_are_read(tmp_path):
    from conftest import SHARED_DATA

    src = SHARED_DATA / "mnist"
    if not src.is_dir():
        pytest.skip("../shared/data/mnist not present")
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(src / name, raw / name)
    x, y = D.load_mnist_tensors(tmp_path, "test")
    assert x.shape == (10000, 1, 28, 28) and y.shape == (10000,)


def _idx(dtype_byte: int, array: np.ndarray) -> bytes:
    """An IDX file: 0, 0, type byte, dimensions, big-endian uint32 sizes, big-endian data."""
    big = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[dtype_byte]
    head = bytes([0, 0, dtype_byte, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return head + array.astype(big).tobytes()


def test_idx_reader_matches_torchvision_on_real_mnist(data_dir, tmp_path):
    import gzip

    from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

    raw = data_dir / "MNIST" / "raw"
    for name, dims in (("train-images-idx3-ubyte", 3), ("train-labels-idx1-ubyte", 1),
                       ("t10k-images-idx3-ubyte", 3), ("t10k-labels-idx1-ubyte", 1)):
        path = raw / name if (raw / name).is_file() else raw / f"{name}.gz"
        plain = path
        if path.suffix == ".gz":  # torchvision's reader takes uncompressed files
            plain = tmp_path / name
            plain.write_bytes(gzip.decompress(path.read_bytes()))
        ours = D._read_idx(path, dims)
        ref = read_sn3_pascalvincent_tensor(str(plain), strict=True)
        assert ours.dtype == ref.dtype == torch.uint8 and ours.shape == ref.shape, name
        assert torch.equal(ours, ref), name
        ours[(0,) * dims] = 1  # writable, owned by torch (not a view of read-only bytes)


@pytest.mark.parametrize("dtype_byte, np_dtype", [(0x08, np.uint8), (0x09, np.int8), (0x0B, np.int16),
                                                  (0x0C, np.int32), (0x0D, np.float32), (0x0E, np.float64)])
def test_idx_reader_dtypes_and_gz_like_torchvision(tmp_path, dtype_byte, np_dtype):
    import gzip

    from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

    rng = np.random.default_rng(dtype_byte)
    array = (rng.standard_normal((3, 4, 5)) * 100).astype(np_dtype)
    plain = tmp_path / "x-idx3-ubyte"
    plain.write_bytes(_idx(dtype_byte, array))
    (tmp_path / "x-idx3-ubyte.gz").write_bytes(gzip.compress(plain.read_bytes()))
    ref = read_sn3_pascalvincent_tensor(str(plain), strict=True)
    for path in (plain, tmp_path / "x-idx3-ubyte.gz"):
        ours = D._read_idx(path, 3)
        assert ours.dtype == ref.dtype and ours.shape == (3, 4, 5)
        assert torch.equal(ours, ref) and np.array_equal(ours.numpy(), array)


@pytest.mark.parametrize("content, words", [
    (b"", "0 bytes, shorter than the 4-byte IDX magic number"),
    (b"\x1f\x8b\x08\x03" + bytes(12), "magic number 1f8b0803 does not start with two zero bytes"),
    (b"\x00\x00\x07\x03" + bytes(12), "unknown data type byte 0x07"),
    (b"\x00\x00\x08\x03" + (2).to_bytes(4, "big"), "3 dimension(s) in the header, 8 bytes: the header is incomplete"),
    (_idx(0x08, np.zeros((2, 28, 28), np.uint8))[:-1], "1583 bytes, but its header (shape [2, 28, 28], 1-byte values) says 1584"),
    (_idx(0x08, np.zeros((2, 28, 28), np.uint8)) + b"\x00", "1585 bytes, but its header"),
    (_idx(0x08, np.zeros((2, 28), np.uint8)), "expected 3 dimensions, got shape (2, 28)"),
])
def test_idx_reader_malformed_file_is_a_clear_error(tmp_path, content, words):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(ValueError) as err:
        D._read_idx(path, 3)
    msg = str(err.value)
    assert str(path) in msg and words in msg, msg
    assert msg.startswith("Corrupt"), msg


def test_idx_reader_broken_gzip_is_a_clear_error(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ValueError, match=r"Corrupt or truncated MNIST file .*train-labels-idx1-ubyte.gz: not a valid "
                                         r"IDX file \((BadGzipFile|EOFError|OSError)"):
        D._read_idx(path, 1)


def test_mnist_trial_path_does_not_import_torchvision(data_dir):
    """Importing torchvision costs a Ray worker ~1.5 s: the MNIST trial path (the trainable's imports, MNIST
    loading, a LeNet-5 trial) must not need it."""
    import subprocess
    import sys

    code = (
        "import sys, ray.tune, tracking, workers, study.trainable\n"
        f"r = workers.run_trial({{'benchmark': 'mnist-lenet5', 'optimizer': 'adam', 'epochs': 1, 'max_steps': 2, "
        f"'device': 'cpu', 'data_dir': {str(data_dir)!r}}})\n"
        "assert r['status'] == 'completed', r\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torchvision'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


# ------------------------------------------------------------------------------------------ CIFAR-10
class _CIFAR10NoMD5:
    """torchvision's CIFAR10 reader with its MD5 check of the original archive skipped (fixture files)."""

    def __new__(cls, root, train):
        import torchvision

        class Reader(torchvision.datasets.CIFAR10):
            def _check_integrity(self):
                return True

            def _load_meta(self):
                with open(root / self.base_folder / self.meta["filename"], "rb") as f:
                    self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]

        return Reader(str(root), train=train, download=False)


def test_cifar10_fixture_loads_like_torchvision(tmp_path):
    write_cifar10(tmp_path, per_batch=8)
    x, y = D.load_cifar10_tensors(tmp_path, "train")
    tx, ty = D.load_cifar10_tensors(tmp_path, "test")
    assert x.shape == (40, 3, 32, 32) and x.dtype == torch.uint8 and tx.shape == (8, 3, 32, 32)
    ref = _CIFAR10NoMD5(tmp_path, train=True)
    assert np.array_equal(x.permute(0, 2, 3, 1).numpy(), ref.data)  # torchvision keeps HWC
    assert y.tolist() == list(ref.targets)


def test_cifar10_resnet18_runs_a_few_steps(tmp_path):
    write_cifar10(tmp_path, per_batch=8)
    res = workers.run_trial({"benchmark": "cifar10-resnet18", "optimizer": "amgt", "epochs": 1, "batch_size": 8,
                             "max_steps": 2, "data_dir": str(tmp_path), "device": "cpu"})
    assert res["status"] == "completed" and res["steps"] == 2
    assert math.isfinite(res["train_loss"]) and 0 <= res["test_accuracy"] <= 1
    model = workers.models.resnet18_cifar()
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    x = torch.randn(2, 3, 32, 32)
    z = torch.randn(2, 512, 4, 4)
    torch.testing.assert_close(model.avgpool(z), torch.nn.AdaptiveAvgPool2d((1, 1))(z))
    assert model(x).shape == (2, 10)


def test_cifar10_missing_and_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py.*data_batch_1"):
        D.load_cifar10_tensors(tmp_path, "train")
    base = write_cifar10(tmp_path, per_batch=8)
    blob = (base / "data_batch_3").read_bytes()
    (base / "data_batch_3").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="Corrupt or truncated CIFAR-10 batch .*data_batch_3"):
        D.load_cifar10_tensors(tmp_path, "train")
    with open(base / "data_batch_3", "wb") as f:
        pickle.dump({"data": np.zeros((4, 100), np.uint8), "labels": [0] * 4}, f)
    with pytest.raises(ValueError, match="data_batch_3.*3072"):
        D.load_cifar10_tensors(tmp_path, "train")


def test_random_crop_flip_is_a_padded_crop_or_its_mirror():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6) + 1
    out = D.random_crop_flip(x, g, padding=2)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for n in range(2):
        crops = [padded[n, :, i:i + 6, j:j + 6] for i in range(5) for j in range(5)]
        crops += [c.flip(-1) for c in crops]
        assert any(torch.equal(out[n], c) for c in crops)
    # over many draws both flips and several offsets occur
    big = torch.rand(256, 1, 8, 8)
    outs = D.random_crop_flip(big, torch.Generator().manual_seed(1))
    assert not torch.equal(outs, big)


# ------------------------------------------------------------------------------------------ ImageFolder
def test_imagenet_resnet50_on_imagefolder_fixture(tmp_path):
    write_imagefolder(tmp_path)
    res = workers.run_trial({"benchmark": "imagenet-resnet50", "optimizer": "adam", "epochs": 1, "batch_size": 4,
                             "max_steps": 2, "image_size": 32, "num_workers": 0, "data_dir": str(tmp_path),
                             "device": "cpu", "val_fraction": 0.2})
    assert res["status"] == "completed" and res["steps"] == 2
    assert math.isfinite(res["val_loss"]) and math.isfinite(res["test_loss"])
    data = D.build_imagefolder_data(tmp_path, 0.2, 0, 32, torch.device("cpu"), 0)
    assert data.num_classes == 3 and data.num_train + len(data.val_ds) == 18 and len(data.test_ds) == 9
    x, y = next(iter(data.train_batches(4, torch.Generator().manual_seed(0))))
    assert x.shape == (4, 3, 32, 32) and y.dtype == torch.int64


def test_imagefolder_missing_corrupt_and_mismatched(tmp_path):
    with pytest.raises(FileNotFoundError, match="imagenet.*train"):
        D.build_imagefolder_data(tmp_path, 0.2, 0, 32, torch.device("cpu"), 0)
    base = write_imagefolder(tmp_path)
    bad = base / "val" / "n01440764" / "n01440764_0.png"
    bad.write_bytes(bad.read_bytes()[:40])
    data = D.build_imagefolder_data(tmp_path, 0.2, 0, 32, torch.device("cpu"), 0)
    with pytest.raises(ValueError, match="Corrupt or truncated image file .*n01440764_0.png"):
        list(data.eval_batches("test", 4))
    shutil.rmtree(base / "val" / "n01484850")
    with pytest.raises(ValueError, match="class folders differ"):
        D.build_imagefolder_data(tmp_path, 0.2, 0, 32, torch.device("cpu"), 0)


# ------------------------------------------------------------------------------------------ all of them
@pytest.mark.parametrize("name", ["digits-cnn", "quadratic-4.10.1", "quadratic-4.10.2", "quadratic", "rosenbrock"])
def test_offline_benchmarks_run_a_few_steps(name):
    res = workers.run_trial({"benchmark": name, "optimizer": "amgt", "epochs": 2, "max_steps": 5, "device": "cpu"})
    assert res["status"] == "completed" and res["steps"] == 5
    assert math.isfinite(res["train_loss"]) and math.isfinite(res["grad_norm_mean"])


def test_data_dir_pointing_inside_the_data_set_gets_a_hint(tmp_path):
    """AMGT_DATA_DIR=<root>/MNIST/raw (a common mistake) names the folder it should have been."""
    from workers import data

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    with pytest.raises(FileNotFoundError) as info:
        data.check_mnist(raw)
    msg = str(info.value)
    assert f"AMGT_DATA_DIR must be the folder that holds MNIST/ (here probably {tmp_path})" in msg
    assert '"download": true' in msg and "workers.run_trial" in msg
    with pytest.raises(FileNotFoundError) as info:
        data.check_mnist(tmp_path / "elsewhere")
    assert "looks like the data set's own folder" not in str(info.value)


def test_damaged_gzip_stream_is_a_corrupt_file_error(tmp_path):
    """A .gz whose deflate stream is damaged (same size, bytes flipped) raises the corrupt-file error, not
    a bare zlib.error."""
    import gzip

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    payload = bytes([0, 0, 8, 1]) + (1000).to_bytes(4, "big") + bytes(range(256)) * 4
    blob = bytearray(gzip.compress(payload[:1008]))
    for i in range(20, min(60, len(blob) - 8)):
        blob[i] ^= 0xFF
    path = raw / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="Corrupt or truncated MNIST file .*t10k-labels-idx1-ubyte.gz"):
        D._read_idx(path, 1)
