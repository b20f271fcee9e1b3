"""The cluster deployment (docker-compose.yml, Dockerfile) without a Docker engine.

`docker-compose config -q` validates the file; then the YAML is checked for consistency: services,
ports, environment and commands agree with each other, and every command parses with the real
click CLI it calls (`mlflow server`, `ray start`, `amgt-study run`), so a renamed flag or subcommand fails
here rather than on the cluster.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
SERVICES = {"postgres", "mlflow", "ray-head", "ray-worker", "launcher"}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def _interpolate(value):
    """Compose's variable substitution with the file's defaults (no environment): ${X:-d} -> d, $$ -> $."""
    if isinstance(value, str):
        return _VAR.sub(lambda m: m.group(2) or "", value).replace("$$", "$")
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def compose() -> dict:
    return _interpolate(yaml.safe_load(COMPOSE.read_text()))  # PyYAML resolves anchors and `<<` merges


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def _argv(command) -> list[list[str]]:
    """A service command as argv lists: `sh -c "a && exec b"` gives [[a...], [b...]]."""
    argv = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
    if argv[:2] == ["sh", "-c"]:
        return [_strip_exec(shlex.split(part)) for part in re.split(r"&&|;", argv[2]) if part.strip()]
    return [_strip_exec(argv)]


def _strip_exec(argv: list[str]) -> list[str]:
    return argv[1:] if argv and argv[0] == "exec" else argv


def _env(service: dict) -> dict:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _option(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name:
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _click_commands():
    import mlflow.cli
    from ray.scripts.scripts import cli as ray_cli

    study_cli = pytest.importorskip("study.cli", reason="study/cli.py (the amgt-study CLI) is not importable")
    group = getattr(study_cli, "cli")
    return {"mlflow": mlflow.cli.cli, "ray": ray_cli, "amgt-study": group}


def test_compose_config_is_valid():
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose binary not installed: cannot run `docker-compose config -q`")
    out = subprocess.run([binary, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr


def test_services_and_images(services):
    assert set(services) == SERVICES
    for name in SERVICES - {"postgres"}:
        build = services[name]["build"]
        assert build["context"] == "." and build["dockerfile"] == "Dockerfile", name
    assert services["postgres"]["image"].startswith("postgres:")


def test_postgres_holds_separate_mlflow_and_optuna_databases(services):
    pg = services["postgres"]
    env = _env(pg)
    assert any(v.endswith(":/var/lib/postgresql/data") for v in pg["volumes"])  # data survives restarts
    assert pg["healthcheck"]["test"]
    created = re.findall(r"CREATE DATABASE (\w+)", " ".join(pg["entrypoint"]))
    mlflow_db = urlsplit(_option(_argv(services["mlflow"]["command"])[0], "--backend-store-uri")).path.strip("/")
    optuna_url = urlsplit(_env(services["launcher"])["AMGT_OPTUNA_STORAGE"])
    assert mlflow_db == env["POSTGRES_DB"]
    assert optuna_url.path.strip("/") in created and optuna_url.path.strip("/") != mlflow_db
    for url in (optuna_url, urlsplit(_option(_argv(services["mlflow"]["command"])[0], "--backend-store-uri"))):
        assert (url.hostname, url.port) == ("postgres", 5432)
        assert (url.username, url.password) == (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"])
        assert url.scheme == "postgresql+psycopg"  # psycopg 3 is what the image installs
    # the healthcheck waits for both databases (init scripts run before the real server listens on TCP)
    test = " ".join(pg["healthcheck"]["test"])
    assert "-h 127.0.0.1" in test and f"-d {mlflow_db}" in test and f"-d {optuna_url.path.strip('/')}" in test


def test_mlflow_server_on_postgres_with_proxied_artifacts(services):
    from mlflow.server.security_utils import is_allowed_host_header

    import tracking

    svc = services["mlflow"]
    (argv,) = _argv(svc["command"])
    assert argv[:2] == ["mlflow", "server"]
    backend = _option(argv, "--backend-store-uri")
    assert tracking.store_kind(backend) == "postgresql"
    assert tracking.resolve_tracking_uri(backend) == backend
    assert "--serve-artifacts" in argv
    dest = _option(argv, "--artifacts-destination")
    assert any(v.split(":")[1] == dest for v in svc["volumes"]), "artifacts destination must be a volume"
    assert _option(argv, "--host") == "0.0.0.0"
    port = int(_option(argv, "--port"))
    assert any(p.split(":")[-1] == str(port) for p in svc["ports"])
    assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert f":{port}/health" in " ".join(svc["healthcheck"]["test"])

    # every MLFLOW_TRACKING_URI points at this service and port, and the server accepts that Host header
    allowed = [h.strip() for h in _option(argv, "--allowed-hosts").split(",")]
    uris = {name: _env(s)["MLFLOW_TRACKING_URI"] for name, s in services.items()
            if "MLFLOW_TRACKING_URI" in _env(s)}
    assert {"launcher", "ray-worker", "ray-head"} <= set(uris)
    for name, uri in uris.items():
        parts = urlsplit(uri)
        assert (parts.scheme, parts.hostname, parts.port) == ("http", "mlflow", port), name
        assert is_allowed_host_header(allowed, parts.netloc), f"{name}: Host {parts.netloc} rejected by --allowed-hosts"
    assert is_allowed_host_header(allowed, f"localhost:{port}")  # the UI from the docker host


def test_ray_head_workers_and_addresses(services):
    head = services["ray-head"]
    (argv,) = _argv(head["command"])
    assert argv[:3] == ["ray", "start", "--head"] and "--block" in argv
    gcs_port = int(_option(argv, "--port"))
    dash_port = int(_option(argv, "--dashboard-port"))
    assert _option(argv, "--dashboard-host") == "0.0.0.0"
    assert any(p.split(":")[-1] == str(dash_port) for p in head["ports"])  # UI + `ray job submit`
    assert f":{dash_port}/" in " ".join(head["healthcheck"]["test"])

    worker = services["ray-worker"]
    (wargv,) = _argv(worker["command"])
    assert wargv[:2] == ["ray", "start"] and _option(wargv, "--address") == f"ray-head:{gcs_port}"
    assert "--block" in wargv and "--head" not in wargv
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] and d["driver"] == "nvidia" for d in devices)
    # scalable with --scale: no fixed container name, no host ports
    assert "container_name" not in worker and "ports" not in worker
    assert worker["depends_on"]["ray-head"]["condition"] == "service_healthy"
    for name, svc in services.items():
        if "RAY_ADDRESS" in _env(svc):
            assert _env(svc)["RAY_ADDRESS"] == f"ray-head:{gcs_port}", name


def test_depends_on_targets_have_healthchecks(services):
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        for dep, cond in (deps.items() if isinstance(deps, dict) else ((d, {}) for d in deps)):
            assert dep in services, f"{name} depends on unknown service {dep}"
            if cond.get("condition") == "service_healthy":
                assert services[dep].get("healthcheck", {}).get("test"), f"{dep} has no healthcheck"
    assert set(services["launcher"]["depends_on"]) == {"postgres", "mlflow", "ray-head"}


def test_commands_are_real_entry_points(services):
    """Each command parses with the click CLI it calls (options and subcommands exist)."""
    clis = _click_commands()
    checked = set()
    for name, svc in services.items():
        if "command" not in svc:
            continue
        for argv in _argv(svc["command"]):
            program, sub, args = argv[0], argv[1], argv[2:]
            assert program in clis, f"{name}: {program} is not one of {sorted(clis)}"
            group = clis[program]
            assert sub in group.commands, f"{name}: `{program} {sub}` is not a subcommand"
            group.commands[sub].make_context(f"{program} {sub}", list(args))  # raises on a bad option
            checked.add(f"{program} {sub}")
    assert {"mlflow server", "ray start", "amgt-study run"} <= checked


def test_launcher_runs_an_existing_study_file(services):
    (join, launch) = _argv(services["launcher"]["command"])
    assert join[:2] == ["ray", "start"] and _option(join, "--address") == _env(services["launcher"])["RAY_ADDRESS"]
    assert _option(join, "--num-gpus") == "0"
    assert launch[:2] == ["amgt-study", "run"]
    study_file = REPO / launch[2]
    assert study_file.is_file(), f"launcher's default study {launch[2]} is missing"
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["amgt-study"] == "study.cli:main"
    from click.testing import CliRunner

    group = _click_commands()["amgt-study"]
    out = CliRunner().invoke(group, ["validate", str(study_file)])
    assert out.exit_code == 0, out.output


def test_dockerfile_installs_the_project_with_pinned_torch():
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\s*$", text, re.M)
    assert "ARG TORCH_VERSION=2.14.1" in text and "ARG TORCHVISION_VERSION=0.29.1" in text
    assert re.search(r'pip install \. "torch==\$\{TORCH_VERSION\}" "torchvision==\$\{TORCHVISION_VERSION\}"', text)
    import ray

    assert f"ARG RAY_VERSION={ray.__version__}" in text  # the image's Ray matches the tested one
    copied = re.findall(r"^COPY (\S+) ", text, re.M)
    for src in copied:
        for part in src.split():
            assert (REPO / part).exists(), f"Dockerfile copies missing {part}"
    assert {"amgt", "workers", "tracking", "study", "studies", "pyproject.toml"} <= set(copied) | {"pyproject.toml"}
    ignored = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")]
    for needed in ("pyproject.toml", "README.md", "amgt", "workers", "tracking", "study", "studies"):
        assert not any(fnmatch.fnmatch(needed, pat) for pat in ignored), f".dockerignore excludes {needed}"


def test_documented_ray_job_submit_parses():
    """docs/deployment.md's `ray job submit` lines parse with Ray's CLI and call a real amgt-study subcommand."""
    docs = (REPO / "docs" / "deployment.md").read_text()
    lines = [ln.split("exec ray-head ", 1)[-1] for ln in docs.splitlines() if "ray job submit" in ln and
             ln.lstrip().startswith("docker compose exec")]
    assert lines, "docs/deployment.md documents no `ray job submit` command"
    clis = _click_commands()
    for line in lines:
        argv = shlex.split(line)
        assert argv[:3] == ["ray", "job", "submit"]
        clis["ray"].commands["job"].commands["submit"].make_context("ray job submit", argv[3:])
        entry = " ".join(argv[argv.index("--") + 1:])
        study_cmds = [shlex.split(part) for part in entry.split("&&") if "amgt-study" in part]
        assert study_cmds, line
        for cmd in study_cmds:
            assert cmd[1] in clis["amgt-study"].commands, f"`amgt-study {cmd[1]}` is not a subcommand"
            clis["amgt-study"].commands[cmd[1]].make_context(f"amgt-study {cmd[1]}", cmd[2:])
            if cmd[1] == "run":
                assert (REPO / cmd[2]).is_file(), cmd[2]
