"""Smoke test: benchmarks/service_overhead.py runs end to end with tiny settings (real MNIST, real Ray,
Optuna and MLflow on SQLite): one optimizer, one search + one final trial of 3 steps, directly and as a
study, and the result records what the report needs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("service_overhead", ROOT / "benchmarks" / "service_overhead.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_service_overhead_tiny(tmp_path, data_dir):
    bench = _load_benchmark()
    out = tmp_path / "overhead.json"
    rc = bench.main(["--optimizers", "adam", "--max-steps", "3", "--stores", "sqlite", "--concurrency", "1",
                     "--no-startup", "--data-dir", str(data_dir), "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["trials"] == 2
    by_what = {r["what"]: r for r in data["results"]}
    assert set(by_what) == {"direct", "service-sqlite"}
    direct, service = by_what["direct"], by_what["service-sqlite"]
    # the same trials both ways: 2 trials, 1 intra-op thread, 3 steps each, same validation accuracy
    assert direct["trials"] == service["trials"] == 2
    assert direct["torch_threads"] == [1]
    assert direct["statuses"] == ["completed"]
    assert sorted(direct["val_accuracy"]) == sorted(service["val_accuracy"])
    assert {t["phase"] for t in service["per_trial"]} == {"search", "final"}
    # the timeline is consistent: start-up, then the runs, then the exit
    assert 0 < service["driver_to_first_line_s"] <= service["first_run_start_s"] < service["last_run_end_s"] \
        < service["end_to_end_s"]
    for t in service["per_trial"]:
        assert t["tune_start_to_run_start_s"] is not None and t["tune_start_to_run_start_s"] >= 0
        assert t["mlflow_run_span_s"] >= t["wall_time_s"] > 0
    assert direct["end_to_end_s"] > direct["trial_wall_time_sum_s"] > 0
