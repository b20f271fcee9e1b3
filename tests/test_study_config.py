"""The study-file schema and the default search spaces (no Ray, no MLflow)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import amgt
from study.config import StudyConfigError
from study.loading import apply_sets, load_study, parse_study
from study.plan import SEARCH_SEED_OFFSET, plan_trials
from study.preflight import check_resources
from study.search import BestTrial
from study.spaces import Dimension, default_space, grid_values, to_optuna_distributions

STUDIES = Path(__file__).resolve().parents[1] / "studies"
SHIPPED = ("quickstart", "mnist-paper", "mnist-sensitivity", "mnist-ablation", "cifar10-paper",
           "imagenet-paper", "quadratics")


def base(**over):
    data = {
        "name": "t",
        "kind": "comparison",
        "benchmark": "digits-cnn",
        "epochs": 1,
        "optimizers": ["amgt", "adam"],
        "search": {"trials_per_optimizer": 2},
        "seeds": 2,
    }
    data.update(over)
    return data


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_studies_validate(name):
    cfg = load_study(STUDIES / f"{name}.yaml")
    assert cfg.name == name
    assert cfg.phases


def test_shipped_study_set_is_complete():
    assert {p.stem for p in STUDIES.glob("*.yaml")} >= set(SHIPPED)


def test_quickstart_has_all_optimizers_and_small_budget():
    cfg = load_study(STUDIES / "quickstart.yaml")
    assert sorted(o.name for o in cfg.optimizers) == amgt.available_optimizers()
    assert cfg.benchmark == "digits-cnn" and cfg.epochs <= 3 and cfg.search.trials_per_optimizer <= 3


def test_mnist_paper_matches_the_paper_setup():
    cfg = load_study(STUDIES / "mnist-paper.yaml")
    assert cfg.benchmark == "mnist-lenet5" and cfg.batch_size == 128 and cfg.epochs == 30
    assert cfg.seeds >= 5
    assert {"amgt", "adam", "rmsprop", "sgd"} <= {o.name for o in cfg.optimizers}
    assert cfg.optimizer("amgt").hparams == {"tau": 0.05, "lr_decay": 1e-4}


@pytest.mark.parametrize(
    "over, field, words",
    [
        ({"colour": "red"}, "colour", "unknown field"),
        ({"optimizers": ["amgt", "adamx"]}, "optimizers.1", "unknown optimizer 'adamx'"),
        ({"benchmark": "mnist-vgg"}, "benchmark", "unknown benchmark 'mnist-vgg'"),
        ({"epochs": 0}, "epochs", "greater than or equal to 1"),
        ({"seeds": 0}, "seeds", "greater than or equal to 1"),
        ({"search": {"trials_per_optimizer": 0}}, "search.trials_per_optimizer", "greater than or equal to 1"),
        ({"search": {"trials_per_optimizer": 2, "metric": "test_accuracy"}}, "search", "validation metrics only"),
        ({"search": {"trials_per_optimizer": 2, "metric": "val_loss", "mode": "max"}}, "search", "does not fit"),
        ({"search": {"trials_per_optimizer": 2, "sampler": "cmaes"}}, "search.sampler", "'tpe'"),
        ({"optimizers": [{"name": "adam", "search_space": {"lr": {"low": 1e-2, "high": 1e-3, "log": True}}}]},
         "optimizers.0 (adam).search_space.lr", "empty search range"),
        ({"optimizers": [{"name": "adam", "search_space": {"lr": {"low": 0.0, "high": 1e-3}}}]},
         "optimizers.0 (adam)", "lr bounds must be > 0"),
        ({"optimizers": [{"name": "adam", "search_space": {"lr": {"low": -1.0, "high": 1e-3, "log": True}}}]},
         "optimizers.0 (adam).search_space.lr", "low > 0"),
        ({"optimizers": [{"name": "adam", "hparams": {"lr": -0.1}}]}, "optimizers.0 (adam)", "hparams.lr must be > 0"),
        ({"optimizers": [{"name": "adam", "hparams": {"tau": 0.1}}]}, "optimizers.0 (adam)", "not a hyperparameter"),
        ({"optimizers": [{"name": "amgt-no-threshold", "search_space": {"tau": {"low": 0, "high": 1}}}]},
         "optimizers.0 (amgt-no-threshold)", "pins tau"),
        ({"optimizers": ["adam", "adam"]}, "optimizers", "listed more than once"),
        ({"resources": {"cpus": 0}}, "resources.cpus", "greater than 0"),
        ({"resources": {"gpus": -1}}, "resources.gpus", "greater than or equal to 0"),
        ({"name": "bad name!"}, "name", "invalid study name"),
        ({"name": "a" * 101}, "name", "(101 characters): at most 100"),
        ({"optimizers": [{"name": "o" * 120, "class": "torch.optim:NAdam"}]}, "optimizers.0", "at most 100"),
        ({"kind": "tournament"}, "kind", "'comparison'"),
        ({"search": None}, "search", "required for kind 'comparison'"),
        ({"kind": "sensitivity", "search": None, "sensitivity": {"lr_low": 1e-1, "lr_high": 1e-3, "points": 3}},
         "sensitivity", "empty lr range"),
        ({"kind": "sensitivity", "search": None, "sensitivity": {"lr_low": 0, "lr_high": 1e-3, "points": 3}},
         "sensitivity.lr_low", "greater than 0"),
    ],
)
def test_bad_fields_are_named(over, field, words):
    with pytest.raises(StudyConfigError) as info:
        parse_study(base(**over), "bad.yaml")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("study file bad.yaml: ")
    assert f"field {field}" in msg, msg
    assert words in msg, msg


def test_missing_required_fields():
    with pytest.raises(StudyConfigError, match=r"field name: required field is missing"):
        parse_study({k: v for k, v in base().items() if k != "name"}, "x.yaml")


def test_load_errors(tmp_path):
    with pytest.raises(StudyConfigError, match="not found"):
        load_study(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(StudyConfigError, match="invalid YAML"):
        load_study(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(StudyConfigError, match="expected a mapping"):
        load_study(bad)


def test_set_overrides(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(base()))
    cfg = load_study(p, sets=["epochs=5", "search.trials_per_optimizer=4", "resources.gpus=0.5"], name="other")
    assert (cfg.epochs, cfg.search.trials_per_optimizer, cfg.resources.gpus, cfg.name) == (5, 4, 0.5, "other")
    with pytest.raises(StudyConfigError, match="KEY=VALUE"):
        apply_sets({}, ["epochs"], "s.yaml")


def test_resolved_space_defaults_and_fixed():
    cfg = parse_study(base(optimizers=[{"name": "amgt", "hparams": {"tau": 0.05}}, "sgd"]))
    amgt_space = cfg.optimizer("amgt").resolved_space()
    assert set(amgt_space) == {"lr", "lr_decay", "gamma"}  # tau fixed, so not searched
    assert cfg.optimizer("sgd").resolved_space()["lr"].log


def test_default_spaces_are_inclusion_preserving():
    """AMGT with γ = τ = λ = 0 is Adam, so AMGT's space must contain Adam's (Choi et al. 2019)."""
    a, d = default_space("amgt"), default_space("adam")
    assert a["lr"] == d["lr"]
    for key in ("tau", "lr_decay", "gamma"):
        assert a[key].contains(0.0)
    for variant, pinned in (("amgt-no-threshold", "tau"), ("amgt-no-decay", "lr_decay"), ("amgt-no-variance", "gamma")):
        assert set(default_space(variant)) == set(a) - {pinned}
    # paper defaults lie inside every default range
    assert default_space("adam")["lr"].contains(1e-3) and default_space("sgd")["lr"].contains(1e-2)
    assert a["tau"].contains(0.05) and a["tau"].contains(0.1) and a["lr_decay"].contains(1e-4)
    for name in amgt.available_optimizers():
        assert "lr" in default_space(name) and default_space(name)["lr"].log


def test_fairness_record():
    cfg = parse_study(base())
    fair = cfg.fairness()
    assert fair["trials_per_optimizer"] == {"amgt": 2, "adam": 2} and fair["equal_budget"]
    assert fair["optimizers"]["amgt"]["dimensions"] == 4 and fair["optimizers"]["adam"]["dimensions"] == 1
    assert fair["inclusion_preserving"]["amgt_contains_adam"] is True
    narrowed = parse_study(base(optimizers=[
        {"name": "amgt", "search_space": {"lr": {"low": 1e-3, "high": 1e-2, "log": True}}}, "adam"]))
    assert narrowed.fairness()["inclusion_preserving"]["amgt_contains_adam"] is False


def test_dimension_and_grid():
    d = Dimension(low=1e-4, high=1e-1, log=True)
    assert grid_values(d, 4) == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1])
    assert grid_values(Dimension(low=0, high=1), 3) == [0.0, 0.5, 1.0]
    assert grid_values(Dimension(choices=["a", "b"]), 5) == ["a", "b"]
    dists = to_optuna_distributions({"lr": d, "x": Dimension(type="int", low=1, high=4)})
    assert dists["lr"].log and dists["x"].high == 4
    with pytest.raises(ValueError, match="empty search range"):
        Dimension(low=1, high=1)


def test_plans_have_stable_unique_keys():
    sens = parse_study(base(kind="sensitivity", search=None,
                            sensitivity={"lr_low": 1e-4, "lr_high": 1e-1, "points": 4}))
    plan = plan_trials(sens, "grid")
    assert len(plan) == 2 * 4 * 2
    assert len({p.trial_key for p in plan}) == len(plan)
    assert plan == plan_trials(sens, "grid")
    abl = parse_study(base(kind="ablation", search=None,
                           optimizers=["amgt", "amgt-no-threshold", "amgt-no-decay", "amgt-no-variance", "adam"]))
    assert len(plan_trials(abl, "ablation")) == 5 * 2
    comp = parse_study(base())
    final = plan_trials(comp, "final", {"amgt": BestTrial({"lr": 1e-3}, 3, 0.9)})
    assert [p.seed for p in final] == [0, 1] and all(p.optimizer == "amgt" for p in final)
    assert final[0].hparams == {"lr": 1e-3} and final[0].source_trial == 3
    # the final seeds are disjoint from the search trials' training seed (no winner's curse)
    from study.plan import search_seed

    assert search_seed(comp) == SEARCH_SEED_OFFSET and search_seed(comp) not in comp.seed_values


def test_quadratic_kind_needs_quadratic_benchmarks():
    ok = parse_study(base(kind="quadratic", search=None, benchmark=["quadratic-4.10.1", "quadratic-4.10.2"],
                          optimizers=[{"name": "sgd", "hparams": {"momentum": 0.0}}]))
    assert len(plan_trials(ok, "quadratic")) == 2 * 2
    with pytest.raises(StudyConfigError, match="needs quadratic benchmarks"):
        parse_study(base(kind="quadratic", search=None))
    with pytest.raises(StudyConfigError, match="list of benchmarks is allowed for kind 'quadratic' only"):
        parse_study(base(benchmark=["digits-cnn", "mnist-lenet5"]))


def test_more_gpus_than_exist_is_refused():
    cfg = parse_study(base(resources={"cpus": 1, "gpus": 2}))
    with pytest.raises(StudyConfigError, match=r"field resources.gpus: 2 GPU\(s\) per trial requested but .* has 1"):
        check_resources(cfg, {"CPU": 16, "GPU": 1})
    check_resources(parse_study(base(resources={"cpus": 1, "gpus": 0.5})), {"CPU": 2, "GPU": 1})
    with pytest.raises(StudyConfigError, match="resources.cpus"):
        check_resources(parse_study(base(resources={"cpus": 4})), {"CPU": 2})
