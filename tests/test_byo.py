"""Bring your own optimizer and benchmark: import paths and entry points, through the same registries, the same
study protocol and the same MLflow layout (docs/studies.md, "Test your own optimizer")."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import amgt
import workers
from study.cli import cli

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "byo"
BYO_STUDY = REPO / "studies" / "byo-nadam.yaml"


@pytest.fixture
def example_installed(tmp_path, monkeypatch):
    """The example package (examples/byo) installed into a site directory on sys.path: its code and a
    ``*.dist-info`` whose ``entry_points.txt`` is written from the example's own pyproject.toml, so
    ``importlib.metadata`` finds its entry points as it finds those of a pip-installed package."""
    site = tmp_path / "site"
    shutil.copytree(EXAMPLE / "amgt_byo_example", site / "amgt_byo_example")
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    info = site / "amgt_byo_example-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = []
    for group, eps in project["entry-points"].items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {value}" for name, value in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(site))
    return site


def invoke(args, cwd: Path):
    import os

    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, args)
    finally:
        os.chdir(old)


# ---- the registry: import paths -----------------------------------------------------------------------


def test_import_path_optimizers_build_and_step_like_registry_ones():
    nadam = amgt.get_optimizer_spec("torch.optim:NAdam")
    assert nadam.source == "import path torch.optim:NAdam" and "momentum_decay" in nadam.hyperparameters
    opt = amgt.build_optimizer("torch.optim:NAdam", [torch.zeros(2, requires_grad=True)], lr=0.01)
    assert type(opt) is torch.optim.NAdam and opt.defaults["lr"] == 0.01
    lion = amgt.get_optimizer_spec("pytorch_optimizer:Lion")
    assert lion.takes_any_keyword
    lion.check_step(lr=1e-4)
    with pytest.raises(ValueError, match=r"Unknown hyperparameter 'lrr' for optimizer 'torch.optim:NAdam'"):
        amgt.build_optimizer("torch.optim:NAdam", [torch.zeros(1, requires_grad=True)], lrr=0.1)
    with pytest.raises(ValueError, match=r"cannot take a step as a trial does .*closure"):
        amgt.get_optimizer_spec("torch.optim:LBFGS").check_step()
    assert "torch.optim:NAdam" not in amgt.available_optimizers()  # listed: names only; any import path works


def test_a_factory_that_returns_no_optimizer_is_refused():
    spec = amgt.OptimizerSpec("bad", lambda params, lr=0.1: object(), source="test")
    with pytest.raises(ValueError, match=r"returned a object, not a torch.optim.Optimizer"):
        spec.build([torch.zeros(1, requires_grad=True)])


def test_run_trial_takes_import_paths_for_optimizer_and_benchmark(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    seen = []
    result = workers.run_trial({"benchmark": "amgt_byo_example:DIGITS_MLP", "optimizer": "torch.optim:NAdam",
                                "hparams": {"lr": 3e-3}, "epochs": 2, "batch_size": 128}, report=seen.append)
    assert result["status"] == "completed" and result["optimizer_impl"] == "torch.optim.NAdam(loop)"
    # every metric the built-in classification benchmarks report, per epoch and at the end
    from tracking import schema

    expected = {"train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy", "epoch_time_s", "steps",
                "samples_per_s", "grad_norm_mean", "grad_norm_std", "loss_oscillation", "optimizer_state_bytes",
                "peak_memory_bytes"}
    assert expected <= set(seen[-1]) and expected <= set(schema.METRICS_EPOCH)
    assert {"best_val_accuracy", "target_val_accuracy_epoch", "target_train_loss_epoch"} <= set(result)
    assert seen[-1]["val_accuracy"] > 0.5  # an MLP on the digits learns in 2 epochs (chance: 0.1)
    assert seen[0]["steps"] == 10  # 1797 - 360 test = 1437; 216 validation (15%) -> 1221 train: 10 batches of 128


PLUGIN = """
from workers import Benchmark
from amgt_byo_example import build_digits_mlp


def _no_accuracy(config, device):
    problem = build_digits_mlp(config, device)
    evaluate = problem.evaluate
    problem.evaluate = lambda evaluate_test: {"val_loss": evaluate(evaluate_test)["val_loss"]}
    return problem


NO_ACCURACY = Benchmark("no-accuracy", "classification", {"epochs": 1, "batch_size": 256, "val_fraction": 0.15},
                        _no_accuracy)
NOT_A_PROBLEM = Benchmark("not-a-problem", "classification", {"epochs": 1, "batch_size": 256}, lambda c, d: object())
"""


def test_a_benchmark_outside_the_protocol_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "byo_broken.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    with pytest.raises(ValueError, match=r"benchmark 'byo_broken:NO_ACCURACY' \(kind classification\): evaluate\(\) "
                                         r"returned no val_accuracy"):
        workers.run_trial({"benchmark": "byo_broken:NO_ACCURACY", "optimizer": "adam", "max_steps": 1})
    with pytest.raises(ValueError, match=r"build\(\) returned a object without the members of workers.Problem"):
        workers.run_trial({"benchmark": "byo_broken:NOT_A_PROBLEM", "optimizer": "adam"})


# ---- entry points and `amgt-study list` ---------------------------------------------------------------


def test_entry_points_are_listed_and_run(example_installed, tmp_path):
    assert "sgd-nesterov" in amgt.available_optimizers() and "digits-mlp" in workers.available_benchmarks()
    source = "entry point of amgt-byo-example (amgt_byo_example:sgd_nesterov)"
    assert amgt.get_optimizer_spec("sgd-nesterov").source == source
    assert workers.get_benchmark("digits-mlp").source == "entry point of amgt-byo-example (amgt_byo_example:DIGITS_MLP)"

    result = invoke(["list", "--tracking-uri", f"sqlite:///{tmp_path}/none.db"], tmp_path)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.split()[:1] == ["sgd-nesterov"] and f"[{source}]" in line for line in lines), result.output
    assert any(line.split()[:1] == ["adam"] and "[built-in]" in line for line in lines)
    assert any(line.split()[:1] == ["digits-mlp"] and "[entry point of amgt-byo-example" in line
               and "classification" in line for line in lines), result.output
    assert "no studies in" in result.output
    only = invoke(["list", "benchmarks"], tmp_path)
    assert only.exit_code == 0 and "optimizers" not in only.output and "digits-mlp" in only.output

    trial = workers.run_trial({"benchmark": "digits-mlp", "optimizer": "sgd-nesterov", "hparams": {"lr": 0.05},
                               "epochs": 1, "batch_size": 128})
    assert trial["status"] == "completed" and trial["val_accuracy"] > 0.3
    assert trial["optimizer_impl"].startswith("torch.optim.SGD(")

    # the example's study file names both by their entry points
    check = invoke(["validate", str(EXAMPLE / "study.yaml")], tmp_path)
    assert check.exit_code == 0 and "ok:" in check.output, check.output


def test_an_entry_point_that_cannot_load_is_listed_with_its_error(example_installed, tmp_path):
    info = next(example_installed.glob("*.dist-info"))
    with open(info / "entry_points.txt", "a") as f:
        f.write("[amgt_study.optimizers]\nbroken = amgt_byo_example:no_such_thing\n")
    result = invoke(["list", "optimizers"], tmp_path)
    assert result.exit_code == 0
    (line,) = [ln for ln in result.output.splitlines() if ln.split()[:1] == ["broken"]]
    assert "cannot be loaded" in line and "no attribute 'no_such_thing'" in line
    with pytest.raises(ValueError, match=r"optimizer 'broken' \(entry point of amgt-byo-example"):
        amgt.get_optimizer_spec("broken")


def test_an_entry_point_cannot_replace_a_built_in_name(example_installed):
    info = next(example_installed.glob("*.dist-info"))
    with open(info / "entry_points.txt", "a") as f:
        f.write("[amgt_study.optimizers]\nadam = amgt_byo_example:sgd_nesterov\n")
    with pytest.warns(UserWarning, match=r"entry point of amgt-byo-example .*: optimizer entry point 'adam' ignored"):
        names = amgt.available_optimizers()
    assert names.count("adam") == 1 and amgt.get_optimizer_spec("adam").source == "built-in"


# ---- study files: validation, nothing written on bad input -----------------------------------------------


BAD = [
    ({"name": "nadam", "class": "torch.optim:NAdamm"}, "optimizers.2 (nadam).class", "has no attribute 'NAdamm'"),
    ({"name": "x", "class": "no_such_package.optim:X"}, "optimizers.2 (x).class", "no module named 'no_such_package'"),
    ({"name": "nadam", "class": "NAdam"}, "optimizers.2 (nadam).class", "is not an import path"),
    ({"name": "lin", "class": "torch.nn:Linear"}, "optimizers.2 (lin).class", "not a torch.optim.Optimizer subclass"),
    ({"name": "lbfgs", "class": "torch.optim:LBFGS"}, "optimizers.2 (lbfgs).class", "without a closure"),
    ({"name": "nadam", "class": "torch.optim:NAdam", "hparams": {"lrr": 0.1}}, "optimizers.2 (nadam).hparams.lrr",
     "not a hyperparameter of 'torch.optim:NAdam'"),
    ({"name": "nadam", "class": "torch.optim:NAdam", "search_space": {"momentum": {"low": 0, "high": 1}}},
     "optimizers.2 (nadam).search_space.momentum", "not a hyperparameter"),
    ({"name": "nadam", "class": "torch.optim:NAdam", "hparams": {"betas": [1.5, 0.9]}},
     "optimizers.2 (nadam).hparams.betas", "Invalid beta parameter"),
    ({"name": "adam", "class": "torch.optim:NAdam"}, "optimizers.2 (adam).name", "is a registered optimizer"),
]


@pytest.mark.parametrize("entry, field, message", BAD, ids=[b[1].split(".", 2)[-1] + ":" + b[2][:20] for b in BAD])
def test_bad_import_paths_and_hyperparameters_are_one_line_and_write_nothing(tmp_path, entry, field, message):
    import yaml

    data = yaml.safe_load(BYO_STUDY.read_text())
    data["optimizers"][2] = entry
    data.update(epochs=1, seeds=1, search={"trials_per_optimizer": 1})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    for args in (["validate", str(path)], ["run", str(path), "--dry-run"], ["run", str(path)]):
        result = invoke(args, tmp_path)
        assert result.exit_code == 1, (args, result.output)
        lines = [ln for ln in result.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        assert f"field {field}: " in lines[0] and message in lines[0], lines[0]
    assert not list(tmp_path.glob("*.db")) and not (tmp_path / "mlruns").exists()


def test_a_kwargs_optimizers_unknown_hyperparameter_is_explained_whole(tmp_path, monkeypatch):
    """An optimizer taking **kwargs that ignores a name: the line keeps its explanation and lists what the
    optimizer does keep (its defaults), not an empty `allowed:`."""
    import yaml

    (tmp_path / "kwmod.py").write_text(
        "import torch\n\n\nclass KwSGD(torch.optim.SGD):\n    def __init__(self, params, **kwargs):\n"
        "        super().__init__(params, lr=kwargs.pop('lr', 1e-2), momentum=kwargs.pop('momentum', 0.0))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    data = yaml.safe_load(BYO_STUDY.read_text())
    data["optimizers"][2] = {"name": "kwsgd", "class": "kwmod:KwSGD", "hparams": {"nesterovv": True}}
    path = tmp_path / "kw.yaml"
    path.write_text(yaml.safe_dump(data))
    result = invoke(["validate", str(path)], tmp_path)
    assert result.exit_code == 1, result.output
    (line,) = [ln for ln in result.output.splitlines() if ln.strip()]
    assert line.startswith("error: ") and "field optimizers.2 (kwsgd).hparams.nesterovv: " in line, line
    assert "keeps no 'nesterovv' in its defaults (it would be ignored); allowed: dampening," in line, line
    assert " lr, " in line and " momentum, nesterov," in line and "..." not in line, line


def test_bad_benchmark_import_path_is_refused(tmp_path):
    from study.config import StudyConfigError
    from study.loading import parse_study

    base = {"name": "b", "kind": "comparison", "epochs": 1, "optimizers": ["adam"], "search": {"trials_per_optimizer": 1}}
    with pytest.raises(StudyConfigError, match=r"field benchmark: cannot import 'no_such_pkg'"):
        parse_study({**base, "benchmark": "no_such_pkg:BENCH"})
    with pytest.raises(StudyConfigError, match=r"field benchmark: import path torch.optim:NAdam: a type, not a "
                                               r"workers.Benchmark"):
        parse_study({**base, "benchmark": "torch.optim:NAdam"})


def test_study_file_records_import_paths_spaces_and_identity():
    from study.config import StudyConfig
    import yaml

    from study.identity import diff_identity, study_identity
    from study.loading import dump_study, load_study, parse_study, parse_study_text

    cfg = load_study(BYO_STUDY)
    assert [e.ref for e in cfg.optimizers] == ["adam", "torch.optim:NAdam", "pytorch_optimizer:Lion"]
    assert isinstance(parse_study_text(dump_study(cfg), "dumped"), StudyConfig)  # `class` survives the record
    assert "class: torch.optim:NAdam" in dump_study(cfg)
    fair = cfg.fairness()
    assert fair["search_spaces_given"] == ["nadam"] and fair["search_spaces_defaulted"] == ["adam", "lion"]
    lion = fair["optimizers"]["lion"]
    assert lion["space_from"].startswith("default") and lion["search_space"] == {"lr": "log-uniform [1e-05, 0.1]"}
    assert lion["source"] == "import path pytorch_optimizer:Lion"
    ident = study_identity(cfg)
    klass = ident.fields["optimizers"]["lion"]["class"]
    assert klass["ref"] == "pytorch_optimizer:Lion" and klass["distribution"].startswith("pytorch_optimizer ")
    assert len(klass["source_sha256"]) == 64
    assert "class" not in ident.fields["optimizers"]["adam"]  # built-in: the fingerprints of old studies hold
    data = yaml.safe_load(BYO_STUDY.read_text())
    data["optimizers"][2]["class"] = "pytorch_optimizer:Tiger"
    other = study_identity(parse_study(data))
    assert other.fingerprint != ident.fingerprint
    assert "optimizers.lion.class.ref" in [c.field for c in diff_identity(ident.fields, other.fields)]


# ---- end to end: Ray Tune + Optuna + MLflow -------------------------------------------------------------


@pytest.mark.slow
def test_nadam_and_lion_beside_adam_run_end_to_end(tmp_path, ray_local):
    import tracking
    from study.loading import load_study
    from study.runner import run_study
    from study.summary import study_results

    uri, storage = f"sqlite:///{tmp_path}/mlflow.db", f"sqlite:///{tmp_path}/optuna.db"
    cfg = load_study(BYO_STUDY, sets=["epochs=1", "batch_size=256", "max_steps=3", "seeds=2",
                                      "search.trials_per_optimizer=1"], name="byo-e2e")
    summary = run_study(cfg, tracking_uri=uri, optuna_storage=storage, echo=lambda s: None)
    assert not sum(s.missing for s in summary.values())

    client = tracking.get_client(uri)
    exp = client.get_experiment_by_name("byo-e2e")
    runs = client.search_runs([exp.experiment_id], "tags.role = 'trial'", max_results=100)
    assert sorted((r.data.tags["optimizer"], r.data.tags["phase"]) for r in runs) == sorted(
        (o, p) for o in ("adam", "nadam", "lion") for p in ("search", "final", "final"))
    assert all(r.info.status == "FINISHED" and r.data.tags["outcome"] == "completed" for r in runs)
    expected = {
        "adam": ("adam", "torch.optim.adam.Adam", "built-in", "torch.optim.Adam("),
        "nadam": ("torch.optim:NAdam", "torch.optim.nadam.NAdam", "import path torch.optim:NAdam", "torch.optim.NAdam("),
        "lion": ("pytorch_optimizer:Lion", "pytorch_optimizer.optimizer.lion.Lion", "import path pytorch_optimizer:Lion",
                 "pytorch_optimizer.Lion("),
    }
    for r in runs:
        ref, klass, source, impl = expected[r.data.tags["optimizer"]]
        p = r.data.params
        assert (p["optimizer"], p["optim.class"], p["optim.source"]) == (ref, klass, source)
        assert r.data.tags["optimizer_impl"].startswith(impl)
        assert "hp.lr" in p and "val_accuracy" in r.data.metrics and "test_accuracy" in r.data.metrics
    lion = [r for r in runs if r.data.tags["optimizer"] == "lion"]
    assert all(r.data.params["optim.weight_decay"] == "0.0" for r in lion)

    parents = client.search_runs([exp.experiment_id], "tags.role = 'parent' and tags.phase = 'search'")
    fairness = json.loads(Path(client.download_artifacts(parents[0].info.run_id, "fairness.json", str(tmp_path)))
                          .read_text())
    assert fairness["search_spaces_given"] == ["nadam"] and fairness["optimizers"]["lion"]["default_space"]

    res = study_results(uri, "byo-e2e")
    assert {g.optimizer for g in res.groups} == {"adam", "nadam", "lion"}
    listed = invoke(["list", "studies", "--tracking-uri", uri], tmp_path)
    assert listed.exit_code == 0 and listed.output.splitlines() == ["byo-e2e"]

    # the report: NAdam against Adam (docs/reports.md, "Candidate and baseline"), no claim of the paper's
    out = tmp_path / "report"
    made = invoke(["report", "byo-e2e", "--tracking-uri", uri, "--optuna-storage", storage, "--out", str(out),
                   "--candidate", "nadam"], tmp_path)
    assert made.exit_code == 0, made.output
    assert not (out / "claims.csv").exists()
    assert (out / "report.md").read_text().splitlines()[0] == "# nadam vs Adam — robustness report — byo-e2e"
    final = {o: {int(r.data.tags["seed"]): 100 * r.data.metrics["test_accuracy"] for r in runs
                 if r.data.tags["phase"] == "final" and r.data.tags["optimizer"] == o} for o in ("nadam", "adam")}
    diff = [final["nadam"][s] - final["adam"][s] for s in sorted(final["adam"])]
    comp = pd.read_csv(out / "comparison.csv").set_index("optimizer")
    assert list(comp.index[:2]) == ["nadam", "adam"] and comp.loc["nadam", "n_pairs"] == 2
    assert comp.loc["nadam", "diff_vs_adam"] == pytest.approx(sum(diff) / 2)
    pairs = pd.read_csv(out / "comparison_pairs.csv").set_index("id")
    acc = pairs.loc["nadam vs adam: accuracy"]
    assert acc["benchmark"] == "digits-cnn" and acc["n"] == 2 and acc["min_n"] == 5
    assert acc["verdict"] == "inconclusive"  # 2 seeds: below the pre-registered minimum (or no spread)
    assert "nadam vs adam: time/epoch" in pairs.index and "lion vs adam: accuracy" not in pairs.index
