"""The amgt-study CLI: help, validate, errors as one line + non-zero exit, nothing written on bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from study.cli import cli

STUDIES = Path(__file__).resolve().parents[1] / "studies"
COMMANDS = ("run", "resume", "status", "validate", "ui", "list", "report")


def tiny(**over) -> dict:
    data = {"name": "clitiny", "kind": "comparison", "benchmark": "digits-cnn", "epochs": 1, "max_steps": 2,
            "optimizers": ["adam"], "search": {"trials_per_optimizer": 1}, "seeds": 1}
    data.update(over)
    return data


def invoke(args, cwd: Path | None = None, env: dict | None = None):
    runner = CliRunner()
    if cwd is None:
        return runner.invoke(cli, args, env=env)
    import os

    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(cli, args, env=env)
    finally:
        os.chdir(old)


def error_line(result) -> str:
    lines = [ln for ln in (result.stderr or result.output).splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize("command", (None,) + COMMANDS)
def test_help_everywhere(command):
    result = invoke([command, "--help"] if command else ["--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "study.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "validate" in out.stdout


def test_validate_shipped_study():
    result = invoke(["validate", str(STUDIES / "quickstart.yaml")])
    assert result.exit_code == 0, result.output
    assert "ok:" in result.output and "quickstart" in result.output


@pytest.mark.parametrize(
    "over, words",
    [
        ({"optimizers": ["adam", "nadam"]}, "unknown optimizer 'nadam'"),
        ({"benchmark": "svhn"}, "unknown benchmark 'svhn'"),
        ({"epochs": 0}, "field epochs"),
        ({"seeds": 0}, "field seeds"),
        ({"extra": 1}, "field extra: unknown field"),
        ({"optimizers": [{"name": "adam", "search_space": {"lr": {"low": 0.0, "high": 0.1}}}]}, "lr bounds must be > 0"),
        ({"optimizers": [{"name": "adam", "search_space": {"lr": {"low": 0.1, "high": 0.1}}}]}, "empty search range"),
    ],
)
def test_bad_study_file_is_one_line_and_writes_nothing(tmp_path, over, words):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(tiny(**over)))
    for args in (["validate", str(path)], ["run", str(path)]):
        result = invoke(args, cwd=tmp_path)
        assert result.exit_code == 1
        assert words in error_line(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]  # no mlflow.db, optuna.db, .amgt-study


def test_more_gpus_than_exist_dry_run(tmp_path):
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump(tiny(resources={"cpus": 1, "gpus": 64})))
    result = invoke(["run", str(path), "--dry-run"], cwd=tmp_path)
    assert result.exit_code == 1
    assert "field resources.gpus" in error_line(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu.yaml"]


def test_dry_run_prints_plan_and_writes_nothing(tmp_path):
    result = invoke(["run", str(STUDIES / "quickstart.yaml"), "--dry-run", "--set", "seeds=3"], cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert "total planned trials: 50" in result.output  # 10 optimizers x (2 search + 3 final)
    assert "nothing written" in result.output
    assert list(tmp_path.iterdir()) == []


def test_unreachable_database_fails_before_any_trial(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(tiny()))
    result = invoke(["run", str(path), "--tracking-uri", "postgresql+psycopg://postgres@127.0.0.1:1/nodb"], cwd=tmp_path)
    assert result.exit_code == 1
    line = error_line(result)
    assert "unreachable" in line and "127.0.0.1:1" in line
    result = invoke(["run", str(path), "--optuna-storage", "postgresql+psycopg://postgres@127.0.0.1:1/nodb"], cwd=tmp_path)
    assert result.exit_code == 1
    assert "Optuna storage" in error_line(result)
    assert not (tmp_path / ".amgt-study").exists()


def test_unknown_study_for_resume_and_status(tmp_path):
    result = invoke(["resume", "nosuch"], cwd=tmp_path)
    assert result.exit_code == 1 and "no study named 'nosuch'" in error_line(result)
    result = invoke(["status", "nosuch", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"], cwd=tmp_path)
    assert result.exit_code == 1 and "nosuch" in error_line(result)


def test_list_on_empty_store(tmp_path):
    result = invoke(["list", "--tracking-uri", f"sqlite:///{tmp_path}/none.db"], cwd=tmp_path)
    assert result.exit_code == 0 and "no studies" in result.output


def test_report_format_checked(tmp_path):
    result = invoke(["report", "x", "--format", "pdf"], cwd=tmp_path)
    assert result.exit_code == 2 and "--format" in error_line(result)


def test_report_unknown_study_is_a_clear_error(tmp_path):
    result = invoke(["report", "nosuch", "--tracking-uri", f"sqlite:///{tmp_path}/m.db", "--out", str(tmp_path / "r")],
                    cwd=tmp_path)
    assert result.exit_code == 1
    line = error_line(result)
    assert "nosuch" in line

