"""Bounded study files: alias bombs, duplicate keys, oversized files and values, empty --set values and
counts past their limits are one short error line naming the field; nothing is parsed past the limits."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest
import yaml

from study.config import LIMITS, StudyConfigError
from study.loading import MAX_ERROR_CHARS, MAX_FILE_BYTES, apply_sets, load_study, parse_study, parse_study_text

BASE = {"name": "lim", "kind": "comparison", "benchmark": "digits-cnn", "epochs": 1, "optimizers": ["adam"],
        "search": {"trials_per_optimizer": 1}, "seeds": 1}


def test_an_alias_bomb_is_refused_quickly_and_small():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    bomb += "name: *i\n"
    assert len(bomb) < 600
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(StudyConfigError, match="alias bomb"):
        parse_study_text(bomb, "bomb.yaml")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: no 3.5 GB blow-up


def test_anchors_that_stay_small_are_fine():
    text = yaml.safe_dump({**BASE, "optimizers": ["adam", "sgd"]}) + "x_space: &lr {low: 1.0e-4, high: 1.0e-2, log: true}\n"
    with pytest.raises(StudyConfigError, match="field x_space: unknown field"):
        parse_study_text(text, "a.yaml")


def test_duplicate_keys_are_refused():
    text = yaml.safe_dump(BASE) + "epochs: 5\n"
    with pytest.raises(StudyConfigError, match=r"key 'epochs' is given twice in one mapping \(line"):
        parse_study_text(text, "dup.yaml")


def test_oversized_file_and_values(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump(BASE) + "#" * MAX_FILE_BYTES)
    with pytest.raises(StudyConfigError, match="bytes; at most"):
        load_study(big)
    # a 50 MB wrong-typed value: the error line stays short and names the field
    huge = "x" * 5_000_000
    with pytest.raises(StudyConfigError) as info:
        parse_study({**BASE, "epochs": huge})
    assert len(str(info.value)) <= MAX_ERROR_CHARS and "field epochs" in str(info.value)
    with pytest.raises(StudyConfigError) as info:
        parse_study({**BASE, "optimizers": [{"name": "adam", "hparams": {"betas": [huge, 0.9]}}]})
    assert len(str(info.value)) <= MAX_ERROR_CHARS and "hparams.betas" in str(info.value)


@pytest.mark.parametrize("field, value", [("epochs", 10**12), ("seeds", 10**6), ("batch_size", 10**9),
                                          ("max_steps", 10**12), ("max_failures", 10**4)])
def test_counts_have_upper_bounds_with_a_reason(field, value):
    with pytest.raises(StudyConfigError) as info:
        parse_study({**BASE, field: value})
    limit, why = LIMITS[field]
    assert f"field {field}: {value} is more than the {limit:,} allowed ({why})" in str(info.value)
    with pytest.raises(StudyConfigError, match="field search.trials_per_optimizer: .* is more than"):
        parse_study({**BASE, "search": {"trials_per_optimizer": 10**9}})


def test_set_without_a_value_is_refused():
    with pytest.raises(StudyConfigError, match=r"--set epochs=: no value given; give one \(--set epochs=null"):
        apply_sets(dict(BASE), ["epochs="], "s.yaml")
    assert apply_sets(dict(BASE), ["epochs=null"], "s.yaml")["epochs"] is None


def test_dry_run_of_many_seeds_prints_a_range(tmp_path):
    from click.testing import CliRunner

    from study.cli import cli

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**BASE, "kind": "ablation", "search": None, "seeds": 10_000}))
    res = CliRunner().invoke(cli, ["run", str(path), "--dry-run", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    assert res.exit_code == 0, res.output
    assert "seeds 0-9999 (10000 seeds)" in res.output and len(res.output) < 5_000


QUICKSTART = Path(__file__).resolve().parents[1] / "studies" / "quickstart.yaml"


def test_a_bad_field_given_by_set_names_the_set_not_the_file():
    """`--set epoch=5` (a typo) is the override's fault: the error names it (a new user was told the file was)."""
    with pytest.raises(StudyConfigError) as e:
        load_study(QUICKSTART, sets=["epoch=5"])
    assert "field epoch (from --set epoch=5): unknown field" in str(e.value), str(e.value)
    with pytest.raises(StudyConfigError) as e:
        load_study(QUICKSTART, sets=["search.trials_per_optimizer=-1"])
    assert "field search.trials_per_optimizer (from --set search.trials_per_optimizer=-1):" in str(e.value)
    with pytest.raises(StudyConfigError) as e:  # a field of the file itself: no --set named
        parse_study_text("name: x\nkind: comparison\nepoch: 3\n", "f.yaml", sets=["seeds=2"])
    assert "field epoch: unknown field" in str(e.value) and "--set" not in str(e.value)


@pytest.mark.parametrize("sets, expected", [
    (["epochs=3", "epochs=0"], "field epochs (from --set epochs=0): "),  # the last one applied
    (["search.trials_per_optimizer=3", "search={foo: 1}"], "field search.trials_per_optimizer (from --set search={foo: 1})"),
    (["a.b.c=1"], "field a (from --set a.b.c=1): unknown field"),  # a key under the refused field
    (["k" * 300 + "=1"], "(from --set kkkk"),  # a long key: matched before the path is clipped
])
def test_set_attribution_follows_what_was_applied(sets, expected):
    with pytest.raises(StudyConfigError) as e:
        load_study(QUICKSTART, sets=sets)
    assert expected in str(e.value), str(e.value)


def test_a_set_key_with_an_empty_part_is_refused():
    with pytest.raises(StudyConfigError) as e:
        load_study(QUICKSTART, sets=[".epochs=3"])
    assert str(e.value).startswith("--set .epochs=3: an empty part in the key '.epochs'"), str(e.value)


def test_every_failing_study_level_rule_is_reported_at_once():
    """Cross-field rules (StudyConfig's own) all report, each with its field, in one line: a user fixing a
    file is not sent back once per rule."""
    text = ("name: multi\nkind: sensitivity\nbenchmark: [digits-cnn, digits-cnn]\n"
            "optimizers: [adam, adam]\n"
            "search: {sampler: tpe, trials_per_optimizer: 2, metric: val_accuracy}\n")
    with pytest.raises(StudyConfigError) as e:
        parse_study_text(text, "f.yaml")
    msg = str(e.value)
    assert "\n" not in msg
    for part in ("field optimizers: listed more than once: adam",
                 "field benchmark: listed more than once: digits-cnn",
                 "field benchmark: a list of benchmarks is allowed for kind 'quadratic' only",
                 "field search: only kind 'comparison' tunes",
                 "field sensitivity: required for kind 'sensitivity'"):
        assert part in msg, msg
    with pytest.raises(StudyConfigError) as e:  # a per-field error still comes alone when it stops the rules
        parse_study_text("name: x\nkind: comparison\nbenchmark: digits-cnn\noptimizers: [adam]\nseeds: -1\n", "f.yaml")
    assert str(e.value).count("field ") == 1, str(e.value)


def test_a_field_given_by_an_option_and_by_set_is_refused():
    """`--name x --set name=y` gave no sign which one won (a tester): both giving one field is refused."""
    with pytest.raises(StudyConfigError) as e:
        load_study(QUICKSTART, sets=["name=y"], name="x")
    assert str(e.value) == "--name x and --set name=y both give field name: give one", str(e.value)
    assert load_study(QUICKSTART, sets=["name=y"]).name == "y" and load_study(QUICKSTART, name="x").name == "x"
