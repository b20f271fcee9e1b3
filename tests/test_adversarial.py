"""Regression tests for bad input found by adversarial testing: each is refused with one clear error naming
the field, before anything is written or any trial starts (docs/studies.md, "Validation happens before
anything starts")."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

import amgt
from study.cli import cli
from study.config import StudyConfigError
from study.loading import load_study, parse_study
from workers.train import resolve_config


def tiny(**over) -> dict:
    data = {"name": "advtiny", "kind": "comparison", "benchmark": "digits-cnn", "epochs": 1, "max_steps": 2,
            "optimizers": ["adam"], "search": {"trials_per_optimizer": 1}, "seeds": 1}
    data.update(over)
    return data


def refused(data: dict, *needles: str) -> str:
    with pytest.raises(StudyConfigError) as info:
        parse_study(data, "adv.yaml")
    msg = str(info.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, msg
    return msg


# ---- study files -------------------------------------------------------------------------------------------

def test_study_name_with_trailing_newline_is_refused():
    # `$` in a regex also matches before a final "\n": "abc\n" became an MLflow experiment / directory name
    refused(tiny(name="abc\n"), "field name", "invalid study name")


@pytest.mark.parametrize("entry, field", [
    ({"name": "adam", "hparams": {"betas": [1.5, 0.9]}}, "hparams.betas"),
    ({"name": "adam", "hparams": {"betas": [0.9, 0.99, 0.9]}}, "hparams.betas"),
    ({"name": "adam", "hparams": {"eps": -1}}, "hparams.eps"),
    ({"name": "sgd", "hparams": {"momentum": "high"}}, "hparams.momentum"),
    ({"name": "amgt", "hparams": {"tau": 2}}, "hparams.tau"),
    ({"name": "adam", "hparams": {"lr": float("inf")}}, "hparams.lr"),
    ({"name": "amgt", "search_space": {"tau": {"low": -1, "high": 0.2}}}, "search_space.tau"),
    ({"name": "amgt", "search_space": {"gamma": {"choices": [0.0, "x"]}}}, "search_space.gamma"),
])
def test_out_of_range_hyperparameters_are_refused_before_any_trial(entry, field):
    # these validated, then every trial of the study failed (exit 3, MLflow and Optuna written)
    refused(tiny(optimizers=[entry]), f"optimizers.0 ({entry['name']})", field)


def test_cuda_device_without_gpus_is_refused():
    # Ray Tune gives a trial with resources.gpus=0 no CUDA device: every trial failed
    refused(tiny(device="cuda"), "device", "resources.gpus")
    refused(tiny(device="cuda:1", resources={"cpus": 1, "gpus": 1}), "device", "cuda:0")
    parse_study(tiny(device="cuda", resources={"cpus": 1, "gpus": 0.5}), "ok.yaml")


def test_asha_grace_period_longer_than_the_trial_is_refused():
    # Ray's ASHAScheduler asserted mid-study (after the MLflow parent run was created)
    search = {"trials_per_optimizer": 1, "early_stopping": {"grace_period": 5}}
    refused(tiny(epochs=2, search=search), "grace_period", "2 epoch")


def test_settings_a_kind_would_silently_ignore_are_refused():
    sens = {"name": "s", "kind": "sensitivity", "benchmark": "digits-cnn",
            "sensitivity": {"lr_low": 1e-3, "lr_high": 1e-1, "points": 3}}
    # the lr grid overwrote a fixed lr; a search_space outside kind comparison was never searched
    refused({**sens, "optimizers": [{"name": "adam", "hparams": {"lr": 0.01}}]}, "optimizers.0 (adam).hparams.lr")
    refused({**sens, "optimizers": [{"name": "adam", "search_space": {"lr": {"low": 1e-3, "high": 1, "log": True}}}]},
            "optimizers.0 (adam).search_space")
    # a benchmark listed twice gave two trials the same trial_key
    quad = {"name": "q", "kind": "quadratic", "benchmark": ["quadratic-4.10.1", "quadratic-4.10.1"],
            "optimizers": ["adam"]}
    refused(quad, "benchmark", "more than once")


def test_unknown_target_and_boolean_counts_are_refused():
    # run_trial refused the unknown target in every trial (all failed, exit 3)
    refused(tiny(target={"val_acc": 0.9}), "target.val_acc", "val_accuracy")
    refused(tiny(kind="quadratic", search=None, benchmark="quadratic-4.10.1", target={"val_accuracy": 0.9}),
            "target.val_accuracy")
    # YAML 1.1 reads `epochs: yes` as True, which pydantic's lax mode took as 1 epoch
    refused(tiny(epochs=True), "field epochs", "valid integer")
    refused(tiny(seeds=True), "field seeds", "valid integer")


def test_non_finite_numbers_are_refused():
    sens = {"name": "s", "kind": "sensitivity", "benchmark": "digits-cnn", "optimizers": ["adam"],
            "sensitivity": {"lr_low": 1e-3, "lr_high": float("inf"), "points": 3}}
    refused(sens, "sensitivity.lr_high", "finite")
    refused(tiny(resources={"cpus": float("inf")}), "resources.cpus", "finite")
    refused(tiny(seed_start=2**64), "seed_start")


def test_unreadable_and_empty_study_files(tmp_path):
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00name: x")
    with pytest.raises(StudyConfigError, match="UTF-8"):
        load_study(binary)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing but a comment\n")
    with pytest.raises(StudyConfigError, match="empty"):
        load_study(empty)
    result = CliRunner().invoke(cli, ["validate", str(binary)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().startswith("error: study file")


# ---- stores: refused before anything is written -------------------------------------------------------------

def _run_in(tmp_path: Path, *args: str):
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(tiny()))
    work = tmp_path / "work"
    if work.exists():
        import shutil

        shutil.rmtree(work)
    work.mkdir()
    old = os.getcwd()
    os.chdir(work)
    try:
        result = CliRunner().invoke(cli, ["run", str(study), *args])
    finally:
        os.chdir(old)
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert sorted(p.name for p in work.iterdir()) == [], "something was written"
    return lines[0]


def test_optuna_storage_that_is_not_a_database(tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("not a database\n" * 20)
    line = _run_in(tmp_path, "--optuna-storage", f"sqlite:///{junk}")
    assert "Optuna storage" in line and "not a usable SQLite database" in line


def test_optuna_storage_in_the_mlflow_database(tmp_path):
    # Optuna and MLflow both keep an `alembic_version` table: Optuna failed mid-study with a traceback
    line = _run_in(tmp_path, "--tracking-uri", f"sqlite:///{tmp_path}/both.db",
                   "--optuna-storage", f"sqlite:///{tmp_path}/both.db")
    assert "same database" in line
    mlflow_db = tmp_path / "mlflow.db"
    with sqlite3.connect(mlflow_db) as c:  # the tables that mark an existing MLflow store
        c.execute("CREATE TABLE alembic_version (version_num VARCHAR(32))")
        c.execute("CREATE TABLE experiments (experiment_id INTEGER)")
    line = _run_in(tmp_path, "--optuna-storage", f"sqlite:///{mlflow_db}")
    assert "MLflow tracking store" in line


def test_optuna_storage_in_the_mlflow_postgresql_database(tmp_path, postgres_url):
    line = _run_in(tmp_path, "--tracking-uri", postgres_url, "--optuna-storage", postgres_url)
    assert "same database" in line
    # an MLflow server's backend database given as the Optuna storage (the URIs differ: http:// vs postgresql)
    import tracking
    from study.errors import StudyRunError
    from study.stores import check_optuna_storage

    tracking.get_or_create_experiment("adv-pg", postgres_url)
    with pytest.raises(StudyRunError, match="MLflow tracking store"):
        check_optuna_storage(postgres_url)


# ---- optimizers --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [amgt.AMGT, amgt.AdaBelief])
@pytest.mark.parametrize("group, name", [
    ({"lr": "x"}, "lr"), ({"lr": None}, "lr"), ({"betas": (0.9,)}, "betas"), ({"eps": -1.0}, "eps"),
])
def test_param_group_hyperparameters_are_checked(cls, group, name):
    # per-group values were never checked: a crash at step() ("not enough values to unpack") or silent misuse
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match=f"param group 1: Invalid {name}"):
        cls([{"params": [a]}, {"params": [b], **group}])
    opt = cls([a])
    with pytest.raises(ValueError, match=f"param group 1: Invalid {name}"):
        opt.add_param_group({"params": [b], **group})
    assert len(opt.param_groups) == 1  # not added


@pytest.mark.parametrize("group", [{"tau": -0.5}, {"tau": 2.0}, {"gamma": float("nan")}, {"variance": "x"}])
def test_amgt_param_group_ranges(group):
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="param group 0: Invalid"):
        amgt.AMGT([{"params": [p], **group}])


def test_amgt_param_groups_with_different_valid_hyperparameters_still_work():
    a, b = torch.nn.Parameter(torch.ones(4)), torch.nn.Parameter(torch.ones(4))
    opt = amgt.AMGT([{"params": [a], "tau": 0.0, "lr": 0.1}, {"params": [b], "tau": 0.5, "gamma": 0.0}])
    a.grad, b.grad = torch.ones(4), torch.ones(4)
    opt.step()
    assert not torch.equal(a, torch.ones(4)) and not torch.equal(b, torch.ones(4))


@pytest.mark.parametrize("name, hparams, field", [
    ("adam", {"lr": "1e-3"}, "lr"), ("sgd", {"lr": None}, "lr"), ("adam", {"betas": "ab"}, "betas"),
    ("adamw", {"betas": (0.9, 0.99, 0.9)}, "betas"), ("rmsprop", {"alpha": True}, "alpha"),
])
def test_registry_refuses_wrong_types_with_a_value_error(name, hparams, field):
    # torch.optim raised a bare TypeError ("'<=' not supported ...") or ignored the third beta
    with pytest.raises(ValueError, match=f"Invalid {field} for optimizer '{name}'"):
        amgt.build_optimizer(name, [torch.nn.Parameter(torch.zeros(1))], **hparams)


# ---- workers config ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("over, field", [
    ({"seed": 2**64}, "seed"), ({"val_fraction": "x"}, "val_fraction"),
    ({"benchmark": "quadratic", "problem": "junk"}, "problem"),
])
def test_run_trial_config_errors_name_the_field(over, field):
    config = {"benchmark": "digits-cnn", "optimizer": "adam", **over}
    with pytest.raises(ValueError, match=f"Invalid {field}"):
        resolve_config(config)


# ---- found by the adversarial review of issue 15 (import paths), study files and report --------------------


def test_optimizer_code_that_raises_anything_is_one_line(tmp_path, monkeypatch):
    """A user's factory raising a RuntimeError, a callable that is no optimizer factory (os.system), a module
    calling sys.exit at import: each one `error:` line naming the field, never a traceback or a silent exit."""
    (tmp_path / "advraise.py").write_text("def boom(params, lr=0.01):\n    raise RuntimeError('factory boom')\n")
    (tmp_path / "advexit.py").write_text("import sys\nsys.exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for cls, needle in (("advraise:boom", "RuntimeError: factory boom"), ("os:system", "TypeError"),
                        ("advexit:Foo", "SystemExit: 3")):
        path = tmp_path / "x.yaml"
        path.write_text(yaml.safe_dump(tiny(optimizers=[{"name": "x", "class": cls}])))
        result = CliRunner().invoke(cli, ["validate", str(path)])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        (line,) = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
        assert "optimizers.0 (x)" in line and needle in line, line


def test_nul_bytes_and_yaml_merge_keys(tmp_path):
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(b"name: e\x00\n")
    with pytest.raises(StudyConfigError, match="invalid YAML: unacceptable character #x0000"):
        load_study(nul)
    merged = tmp_path / "merged.yaml"  # `<<: *base` (anchors are documented as fine), its keys overridable
    merged.write_text("name: merged\n<<: &base {kind: comparison, benchmark: digits-cnn, epochs: 3}\n"
                      "epochs: 1\noptimizers: [adam]\nsearch: {trials_per_optimizer: 1}\n")
    cfg = load_study(merged)
    assert (cfg.kind, cfg.benchmark, cfg.epochs) == ("comparison", "digits-cnn", 1)


def test_report_out_must_be_a_writable_directory(tmp_path):
    result = CliRunner().invoke(cli, ["report", "any", "--out", ""])
    assert result.exit_code == 2 and "--out: an empty path is not allowed" in result.output
    assert sorted(p.name for p in Path.cwd().iterdir() if p.name == "report.html") == []
