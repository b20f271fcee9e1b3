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


def test_more_gpus_than_exist_run_writes_nothing(tmp_path):
    """`run` checks the resources before it creates the stores (which it does while Ray starts)."""
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump(tiny(resources={"cpus": 1, "gpus": 64})))
    result = invoke(["run", str(path)], cwd=tmp_path)
    assert result.exit_code == 1
    assert "field resources.gpus: 64 GPU(s) per trial requested" in error_line(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu.yaml"]


def test_store_error_while_ray_starts_is_one_line(tmp_path):
    """The stores are created in a thread while a local Ray starts: an error there (a deleted experiment) is
    the same one line, exit 1, and the study is not started (no .amgt-study/)."""
    import os

    import tracking

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracking.get_client(uri).delete_experiment(tracking.get_or_create_experiment("clitiny", uri))
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(tiny()))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    out = subprocess.run([sys.executable, "-c", "from study.cli import main; main()", "run", str(path)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and f"MLflow experiment 'clitiny' in '{uri}' is deleted: restore it" in errors[0], out.stderr
    assert not (tmp_path / ".amgt-study").exists()


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



# ---- data checked before anything starts; validate several files; status without NAME ----------------

MNIST_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def write_idx(path: Path, dims: tuple[int, ...], truncate: int = 0) -> None:
    """A well-formed uncompressed IDX file of unsigned bytes (zeros), optionally missing its last bytes."""
    import math

    header = bytes([0, 0, 0x08, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    path.write_bytes((header + bytes(math.prod(dims)))[: len(header) + math.prod(dims) - truncate])


def fake_mnist(root: Path, truncate: int = 0) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_NAMES:
        write_idx(raw / name, (3, 28, 28) if "images" in name else (3,), truncate if name.startswith("t10k-images") else 0)
    return root


def mnist_study(tmp_path: Path, **over) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(tiny(name="mnistcheck", benchmark="mnist-lenet5", **over)))
    return path


def test_missing_data_refused_before_anything_starts(tmp_path):
    empty = tmp_path / "nodata"
    empty.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    path = mnist_study(work)
    env = {"AMGT_DATA_DIR": str(empty)}
    for args in (["run", str(path)], ["run", str(path), "--dry-run"]):
        result = invoke(args, cwd=work, env=env)
        assert result.exit_code == 1, result.output
        line = error_line(result)
        assert "study mnistcheck: benchmark mnist-lenet5: MNIST not found" in line
        assert str(empty / "MNIST" / "raw") in line and "t10k-labels-idx1-ubyte" in line
        assert "AMGT_DATA_DIR" in line and "download=True" in line
    assert sorted(p.name for p in work.iterdir()) == ["m.yaml"]  # no mlflow.db, optuna.db, .amgt-study
    # validate stays a schema check: ok, exit 0, plus one warning line
    result = invoke(["validate", str(path)], cwd=work, env=env)
    assert result.exit_code == 0 and "ok: " in result.stdout
    assert result.stderr.startswith("warning: ") and "MNIST not found" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    # the file's data_dir wins over AMGT_DATA_DIR; data present -> the dry run passes and says where
    fake_mnist(tmp_path / "data")
    path = mnist_study(work, data_dir=str(tmp_path / "data"))
    result = invoke(["run", str(path), "--dry-run"], cwd=work, env=env)
    assert result.exit_code == 0, result.output
    assert f"data: mnist-lenet5 found in {tmp_path / 'data'}" in result.output
    assert sorted(p.name for p in work.iterdir()) == ["m.yaml"]


def test_truncated_data_refused(tmp_path):
    fake_mnist(tmp_path / "data", truncate=5)
    path = mnist_study(tmp_path, data_dir=str(tmp_path / "data"))
    result = invoke(["run", str(path)], cwd=tmp_path)
    assert result.exit_code == 1
    line = error_line(result)
    assert "Corrupt or truncated MNIST file" in line and "t10k-images-idx3-ubyte" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "m.yaml"]


def test_check_data_on_real_mnist_and_benchmarks_without_data(tmp_path):
    from workers.benchmarks import check_data

    assert check_data("digits-cnn", tmp_path) is None and check_data("quadratic-4.10.1", tmp_path) is None
    assert check_data("rosenbrock", tmp_path) is None
    with pytest.raises(FileNotFoundError, match="CIFAR-10 not found"):
        check_data("cifar10-resnet18", tmp_path)
    with pytest.raises(FileNotFoundError, match="ImageNet not found"):
        check_data("imagenet-resnet50", tmp_path)
    with pytest.raises(ValueError, match="svhn"):
        check_data("svhn", tmp_path)
    if not SHARED_MNIST.is_dir():
        pytest.skip("real MNIST (../shared/data/mnist) not here")
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in SHARED_MNIST.glob("*.gz"):
        (raw / gz.name).symlink_to(gz)
    assert check_data("mnist-lenet5", tmp_path) == tmp_path


def test_validate_several_files(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(tiny()))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(tiny(epochs=0)))
    result = invoke(["validate", str(good), str(bad), str(STUDIES / "quickstart.yaml")])
    assert result.exit_code == 1
    assert [ln.split(":")[0] for ln in result.stdout.splitlines()] == ["ok", "ok"]
    assert str(good) in result.stdout and "quickstart" in result.stdout
    assert "bad.yaml" in error_line(result) and "field epochs" in error_line(result)
    result = invoke(["validate", str(good), str(STUDIES / "quickstart.yaml")])
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 2
    assert invoke(["validate"]).exit_code == 2  # at least one FILE


def test_status_without_name_lists_studies(tmp_path):
    result = invoke(["status", "--tracking-uri", f"sqlite:///{tmp_path}/none.db"], cwd=tmp_path)
    assert result.exit_code == 0 and "no studies" in result.output


def test_ray_failing_to_start_with_an_os_error_is_one_line(monkeypatch):
    """ray.init raising an OSError (e.g. an unusable RAY_TMPDIR) becomes StudyRunError naming the address."""
    import ray

    from study.errors import StudyRunError
    from study.execution import ensure_ray

    def broken_init(*args, **kwargs):
        raise NotADirectoryError(20, "Not a directory", "/etc/passwd/x")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", broken_init)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(StudyRunError, match="could not start a local Ray: .*Not a directory"):
        ensure_ray(None)

    def node_died(*args, **kwargs):  # what ray.init raises when its raylet is killed while it starts
        raise Exception("The current node timed out during startup. This could happen because some of the Ray "
                        "processes failed to startup.")

    monkeypatch.setattr(ray, "init", node_died)
    with pytest.raises(StudyRunError, match="could not start a local Ray: The current node timed out during "
                                            "startup.*run the same command again"):
        ensure_ray(None)


def test_a_closed_pipe_ends_quietly():
    """`amgt-study ... | head -1`: the reader goes away; no "a store is unreachable: Broken pipe" line, no
    traceback, exit 141 (128 + SIGPIPE) as a Unix filter's."""
    p = subprocess.Popen([sys.executable, "-c", "from study.cli import main; main()", "list", "optimizers"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # before anything is written
    rc = p.wait(timeout=120)
    err = p.stderr.read().decode()
    assert rc == 141 and err == "", (rc, err[-2000:])
