"""The cluster path as docs/deployment.md gives it: a Ray head (`ray start --head`), an `mlflow server` on
PostgreSQL, the study submitted with `ray job submit --working-dir . -- amgt-study run studies/X.yaml`, then
`status`, `resume` and `report` from the submitting shell, with nothing but the tracking URI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import _free_port

pytestmark = pytest.mark.slow
AMGT_STUDY = [sys.executable, "-c", "from study.cli import main; main()"]


def _ray() -> list[str]:
    exe = shutil.which("ray")
    return [exe] if exe else [sys.executable, "-m", "ray.scripts.scripts"]


@pytest.fixture
def ray_head(tmp_path):
    """A Ray head of its own (GCS + dashboard/job server), stopped by killing its process group."""
    gcs, dashboard, agent = _free_port(), _free_port(), _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    log = open(tmp_path / "ray-head.log", "w")
    temp = tempfile.mkdtemp(prefix="rh", dir="/tmp")  # Ray's socket paths must stay short
    proc = subprocess.Popen(_ray() + ["start", "--head", "--block", f"--port={gcs}", f"--dashboard-port={dashboard}",
                                      "--dashboard-host=127.0.0.1", "--num-cpus=2", "--num-gpus=0",
                                      # the job agent's own port: Ray's default (52365) may be held by
                                      # another local Ray on this machine (the test session's, a study's)
                                      f"--dashboard-agent-listen-port={agent}",
                                      "--disable-usage-stats", f"--temp-dir={temp}"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/version", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "ray-head.log").read_text()[-3000:]
            assert time.time() < deadline, "Ray head did not start: " + (tmp_path / "ray-head.log").read_text()[-3000:]
            time.sleep(1)
        yield {"dashboard": url, "gcs": f"127.0.0.1:{gcs}", "env": env}
    finally:
        if proc.poll() is None:
            import psutil

            # `ray start --block` stops its processes on SIGTERM, gracefully (about 40 s here); after 10 s the
            # rest (this head's processes only: its descendants and its process group) are killed
            family = set(psutil.Process(proc.pid).children(recursive=True))
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                family |= set(psutil.Process(proc.pid).children(recursive=True))
            for child in family:  # psutil checks that a pid was not reused before it signals
                try:
                    child.kill()
                except psutil.Error:
                    pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


def test_ray_job_submit_then_status_resume_report_from_the_submitting_shell(tmp_path, ray_head, mlflow_server,
                                                                            pg_database):
    checkout, shell = tmp_path / "checkout", tmp_path / "shell"
    (checkout / "studies").mkdir(parents=True)
    shell.mkdir()
    study = {"name": "jobby", "kind": "comparison", "benchmark": "digits-cnn", "epochs": 1, "batch_size": 256,
             "max_steps": 3, "optimizers": ["adam"], "search": {"trials_per_optimizer": 2}, "seeds": 1}
    (checkout / "studies" / "jobby.yaml").write_text(yaml.safe_dump(study))
    optuna_url = pg_database()
    runtime_env = {"env_vars": {"MLFLOW_TRACKING_URI": mlflow_server, "AMGT_OPTUNA_STORAGE": optuna_url}}
    deadline = time.time() + 120
    while True:  # a head just started may have no job agent yet: Ray answers "try again later", nothing submitted
        submit = subprocess.run(
            _ray() + ["job", "submit", "--address", ray_head["dashboard"], "--working-dir", ".",
                      "--runtime-env-json", json.dumps(runtime_env), "--", "amgt-study", "run", "studies/jobby.yaml"],
            cwd=checkout, env=ray_head["env"], capture_output=True, text=True, timeout=500)
        if "No available agent to submit job" not in submit.stderr or time.time() > deadline:
            break
        time.sleep(3)
    assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
    assert "[jobby] done" in submit.stdout and "View run" not in submit.stdout
    assert sorted(p.name for p in checkout.iterdir()) == ["studies"]  # nothing written in the checkout

    env = {k: v for k, v in ray_head["env"].items() if k not in ("MLFLOW_TRACKING_URI", "AMGT_OPTUNA_STORAGE")}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(AMGT_STUDY + list(args) + ["--tracking-uri", mlflow_server], cwd=shell, env=env,
                              capture_output=True, text=True, timeout=300)

    st = cli("status", "jobby")
    assert st.returncode == 0, st.stderr
    assert "jobby (comparison on digits-cnn): done" in st.stdout and "best adam" in st.stdout, st.stdout
    assert optuna_url.split("/")[-1] in st.stdout  # the Optuna storage the job recorded, found from MLflow
    res = subprocess.run(AMGT_STUDY + ["resume", "jobby", "--tracking-uri", mlflow_server], cwd=shell,
                         env={**env, "RAY_ADDRESS": ray_head["gcs"]}, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "[jobby final] all 1 planned trials already finished" in res.stdout
    rep = cli("report", "jobby", "--out", str(shell / "report"), "--format", "md,csv")
    assert rep.returncode == 0, rep.stderr[-3000:]
    assert (shell / "report" / "report.md").is_file()
    assert "Optuna storage" not in rep.stdout  # the search history was found (no "not measured" for it)
