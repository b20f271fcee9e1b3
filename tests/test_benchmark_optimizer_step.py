"""Smoke tests: benchmarks/optimizer_step.py times, profiles and reports on the small parameter sets;
benchmarks/trial_loop.py puts run_trial beside a bare loop."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("optimizer_step", ROOT / "benchmarks" / "optimizer_step.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_dispatch_size_is_resnet18_tensor_count_with_one_element_each(bench):
    shapes = bench.param_shapes("resnet18-dispatch")
    assert len(shapes) == len(bench.param_shapes("resnet18")) == 62
    assert all(s == (1,) for s in shapes)
    with pytest.raises(ValueError, match="resnet18-dispatch"):
        bench.param_shapes("resnet19")


def test_timing_run_reports_ratios_and_state_bytes(bench, tmp_path, capsys):
    out = tmp_path / "steps.json"
    rc = bench.main(["--sizes", "lenet5,resnet18-dispatch", "--rounds", "1", "--steps", "1", "--warmup", "1",
                     "--optimizers", "adam-foreach,adam-fused,amgt-loop,amgt-fused,amgt-all-off-foreach",
                     "--threads", "1", "--json", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())["rows"]
    lenet = {r["optimizer"]: r for r in rows if r["size"] == "lenet5"}
    assert set(lenet) == {"adam-foreach", "adam-fused", "amgt-loop", "amgt-fused", "amgt-all-off-foreach"}
    assert lenet["amgt-fused"]["impl"] == "amgt.AMGT(fused)" and lenet["adam-fused"]["impl"] == "torch.optim.Adam(fused)"
    assert lenet["amgt-fused"]["x_adam_fused_min"] == pytest.approx(
        lenet["amgt-fused"]["min_s"] / lenet["adam-fused"]["min_s"])
    n = 61_706
    assert lenet["adam-foreach"]["state_bytes"] == 2 * 4 * n  # exp_avg + exp_avg_sq
    assert lenet["amgt-loop"]["state_bytes"] == 3 * 4 * n  # + threshold_residual
    assert lenet["amgt-all-off-foreach"]["state_bytes"] == 2 * 4 * n
    assert all(r["median_s"] > 0 for r in rows)
    text = capsys.readouterr().out
    assert "**resnet18-dispatch**" in text and "Load average" in text
    # the two goals, as ratios of minima from this run
    assert "goal amgt-fused ≤ 1.3× adam-fused" in text and "goal amgt-loop ≤ 1.25× adam-foreach" in text


def test_profile_mode_prints_operator_table(bench, capsys):
    assert bench.main(["--profile", "--sizes", "lenet5", "--optimizers", "amgt-loop", "--warmup", "1"]) == 0
    text = capsys.readouterr().out
    assert "## amgt-loop, lenet5" in text and "aten::addcmul_" in text


def test_trial_loop_benchmark_prints_both_ratios(capsys, monkeypatch):
    monkeypatch.setenv("AMGT_DATA_DIR", str(ROOT / "nonexistent"))  # digits needs no data directory
    spec = importlib.util.spec_from_file_location("trial_loop", ROOT / "benchmarks" / "trial_loop.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--benchmark", "digits-cnn", "--optimizers", "amgt", "--steps", "4", "--rounds", "1"]) == 0
    text = capsys.readouterr().out
    assert "| amgt |" in text and "× bare, wall (min)" in text and "× bare, CPU (min)" in text
