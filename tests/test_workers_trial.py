"""workers.run_trial end to end on the offline digits benchmark: the contract of docs/contracts,
determinism, divergence, resume from a checkpoint, time-to-target, bad input."""

from __future__ import annotations

import math

import pytest
import torch

import amgt
import workers
from tracking.schema import METRICS_EPOCH, METRICS_FINAL

# metrics that depend on the wall clock or the process, not on the computation
TIMING = {"epoch_time_s", "samples_per_s", "peak_memory_bytes", "wall_time_s", "target_val_accuracy_time_s"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # the test machine's 2 cores are shared: one intra-op thread is much faster than two under load
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _digits(**kw):
    cfg = {"benchmark": "digits-cnn", "optimizer": "amgt", "epochs": 3, "batch_size": 64, "seed": 3,
           "device": "cpu"}
    cfg.update(kw)
    return cfg


def _strip(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k not in TIMING}


def _same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, float) and math.isnan(x):
            if not (isinstance(y, float) and math.isnan(y)):
                return False
        elif x != y:
            return False
    return True


def test_run_trial_contract_on_digits():
    reports = []
    res = workers.run_trial(_digits(epochs=4, hparams={"lr": 3e-3}), report=reports.append)
    assert [r["epoch"] for r in reports] == [1, 2, 3, 4]
    for r in reports:
        extra = set(r) - set(METRICS_EPOCH) - {"epoch"}
        assert not extra, extra
        for key in ("train_loss", "val_loss", "val_accuracy", "test_accuracy", "test_loss", "epoch_time_s",
                    "steps", "samples_per_s", "grad_norm_mean", "grad_norm_std", "loss_oscillation",
                    "optimizer_state_bytes", "peak_memory_bytes", "amgt_suppressed_fraction",
                    "amgt_lambda_mean", "amgt_lr_t"):
            assert key in r and math.isfinite(r[key]), key
        assert 0 <= r["val_accuracy"] <= 1 and 0 < r["amgt_lambda_mean"] <= 1
    n_train = 1437 - round(1437 * 0.15)  # 80% of 1797 for train+val, 15% of that held out
    steps_per_epoch = math.ceil(n_train / 64)
    assert [r["steps"] for r in reports] == [steps_per_epoch * e for e in (1, 2, 3, 4)]
    assert res["status"] == "completed" and res["device"] == "cpu"
    assert res["history"] == reports
    assert res["epochs_completed"] == 4.0
    for key in ("best_val_accuracy", "epochs_completed", "wall_time_s"):
        assert key in res
    assert set(METRICS_FINAL) <= set(res)
    assert res["best_val_accuracy"] == max(r["val_accuracy"] for r in reports)
    # learns: validation accuracy well above chance (0.1) after 4 short epochs
    assert res["val_accuracy"] > 0.8
    # AMGT's η_t = η0/(1+λ(t-1)) at the last step, λ = 1e-4 (registry default)
    assert res["amgt_lr_t"] == pytest.approx(3e-3 / (1 + 1e-4 * (res["steps"] - 1)), rel=1e-6)


def test_baseline_has_no_amgt_metrics_and_adam_state_is_smaller():
    a = workers.run_trial(_digits(optimizer="adam", epochs=1))
    b = workers.run_trial(_digits(optimizer="amgt", epochs=1))
    # the implementation that ran (cost claim C5 states it): on CPU both defaults are the per-tensor loop
    assert a["optimizer_impl"] == "torch.optim.Adam(loop)" and b["optimizer_impl"] == "amgt.AMGT(loop)"
    assert "amgt_lambda_mean" not in a
    n = sum(p.numel() for p in workers.models.DigitsCNN().parameters())
    n_tensors = len(list(workers.models.DigitsCNN().parameters()))
    assert a["optimizer_state_bytes"] == 2 * n * 4 + 4 * n_tensors
    assert b["optimizer_state_bytes"] == 3 * n * 4 + 4 * n_tensors


def test_same_seed_same_metrics_and_other_seed_differs():
    a = workers.run_trial(_digits(epochs=2))
    b = workers.run_trial(_digits(epochs=2))
    c = workers.run_trial(_digits(epochs=2, seed=4))
    assert all(_same(_strip(x), _strip(y)) for x, y in zip(a["history"], b["history"]))
    assert a["history"][-1]["train_loss"] != c["history"][-1]["train_loss"]


def test_divergence_is_a_status_with_metrics_so_far():
    reports = []
    res = workers.run_trial(_digits(optimizer="sgd", hparams={"lr": 100.0}, epochs=3), report=reports.append)
    assert res["status"] == "diverged"
    assert "initial loss" in res["diverged_reason"] or "non-finite" in res["diverged_reason"]
    assert len(reports) == 1 and res["epochs_completed"] == 1.0
    assert math.isnan(res["val_accuracy"]) and res["steps"] >= 1
    assert math.isnan(res["best_val_accuracy"])


def test_optimizer_impl_names_the_path_that_ran():
    fused = workers.run_trial(_digits(epochs=1, max_steps=3, hparams={"fused": True}))
    assert fused["optimizer_impl"] == "amgt.AMGT(fused)"
    fe = workers.run_trial(_digits(optimizer="sgd", epochs=1, max_steps=3, hparams={"foreach": True}))
    assert fe["optimizer_impl"] == "torch.optim.SGD(foreach)"


def test_max_steps_caps_the_trial():
    res = workers.run_trial(_digits(epochs=5, max_steps=7))
    assert res["steps"] == 7 and res["epochs_completed"] == 1.0 and res["status"] == "completed"


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("optimizer", ["amgt", "sgd"])
def test_resume_from_checkpoint_equals_uninterrupted(tmp_path, optimizer):
    cfg = _digits(optimizer=optimizer, epochs=4)
    straight = workers.run_trial(cfg)

    ckpt = workers.DirectoryCheckpoint(tmp_path / "ckpt")

    def stop_after_two(metrics):
        if metrics["epoch"] == 2:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        workers.run_trial(cfg, report=stop_after_two, checkpoint=ckpt)
    assert torch.load(ckpt.file, weights_only=True)["epoch"] == 2
    torch.manual_seed(999)  # a resumed process does not share the interrupted one's RNG
    reports = []
    resumed = workers.run_trial(cfg, report=reports.append, checkpoint=workers.DirectoryCheckpoint(tmp_path / "ckpt"))
    assert [r["epoch"] for r in reports] == [3, 4]
    assert len(resumed["history"]) == 4
    for x, y in zip(straight["history"], resumed["history"]):
        assert _same(_strip(x), _strip(y)), (x, y)
    # a finished trial's checkpoint resumes to the same result without training again
    again = workers.run_trial(cfg, report=reports.append, checkpoint=workers.DirectoryCheckpoint(tmp_path / "ckpt"))
    assert len(reports) == 2 and _same(_strip(again["history"][-1]), _strip(straight["history"][-1]))


def test_checkpoint_of_another_trial_is_refused(tmp_path):
    ckpt = workers.DirectoryCheckpoint(tmp_path)
    workers.run_trial(_digits(epochs=1), checkpoint=ckpt)
    with pytest.raises(ValueError, match="another trial.*seed"):
        workers.run_trial(_digits(epochs=2, seed=11), checkpoint=ckpt)
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot be read"):
        workers.run_trial(_digits(epochs=2), checkpoint=ckpt)


def test_num_threads_is_restored():
    before = torch.get_num_threads()
    workers.run_trial(_digits(epochs=1, num_threads=1))
    assert torch.get_num_threads() == before


def test_time_to_target():
    res = workers.run_trial(_digits(epochs=4, hparams={"lr": 3e-3}, target={"val_accuracy": 0.5, "train_loss": 1.5}))
    hist = res["history"]
    e = next(h["epoch"] for h in hist if h["val_accuracy"] >= 0.5)
    assert res["target_val_accuracy_epoch"] == e
    assert res["target_val_accuracy_step"] == hist[e - 1]["steps"]
    assert res["target_val_accuracy_time_s"] == pytest.approx(sum(h["epoch_time_s"] for h in hist[:e]))
    e2 = next(h["epoch"] for h in hist if h["train_loss"] <= 1.5)
    assert res["target_train_loss_epoch"] == e2
    never = workers.run_trial(_digits(epochs=1, target={"val_accuracy": 1.01}))
    assert math.isnan(never["target_val_accuracy_epoch"])


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="digits-cnn.*mnist-lenet5|mnist-lenet5"):
        workers.run_trial(_digits(benchmark="nope"))
    with pytest.raises(ValueError) as err:
        workers.run_trial(_digits(optimizer="nadam-x"))
    for name in amgt.available_optimizers():
        assert name in str(err.value)
    with pytest.raises(ValueError, match="quadratic-4.10.1"):
        workers.get_benchmark("cifar100")


@pytest.mark.parametrize("field,value", [
    ("epochs", 0), ("epochs", "3"), ("batch_size", -1), ("seed", -2), ("max_steps", 0), ("hparams", [1]),
    ("val_fraction", 1.5), ("device", "tpu"), ("target", {"bogus": 1}), ("divergence_factor", 0.5),
    ("evaluate_test", "yes"), ("num_threads", 0),
])
def test_bad_fields_are_named(field, value):
    with pytest.raises(ValueError, match=field.split("_")[0]):
        workers.run_trial(_digits(**{field: value}))


def test_numpy_values_as_a_search_library_passes_them():
    import numpy as np

    a = workers.run_trial(_digits(epochs=np.int64(1), seed=np.int64(3), hparams={"lr": np.float64(1e-3)}))
    b = workers.run_trial(_digits(epochs=1, seed=3, hparams={"lr": 1e-3}))
    assert _same(_strip(a["history"][0]), _strip(b["history"][0]))


def test_bad_hyperparameter_is_named():
    with pytest.raises(ValueError, match="momentum"):
        workers.run_trial(_digits(optimizer="adam", hparams={"momentum": 0.9}))


def test_benchmark_registry():
    names = workers.available_benchmarks()
    for n in ("digits-cnn", "mnist-lenet5", "cifar10-resnet18", "imagenet-resnet50", "quadratic-4.10.1",
              "quadratic-4.10.2", "quadratic", "rosenbrock"):
        assert n in names
        b = workers.get_benchmark(n)
        assert b.kind in ("classification", "quadratic", "function")
        assert "epochs" in b.defaults and "targets" in b.defaults
    assert workers.get_benchmark("mnist-lenet5").defaults["batch_size"] == 128
    assert workers.get_benchmark("mnist-lenet5").defaults["epochs"] == 30
    assert workers.get_benchmark("cifar10-resnet18").defaults["epochs"] == 100
    assert workers.get_benchmark("imagenet-resnet50").defaults["batch_size"] == 256
    assert workers.get_benchmark("imagenet-resnet50").defaults["epochs"] == 90
