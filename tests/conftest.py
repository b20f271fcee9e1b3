"""Shared fixtures: test data, a throwaway PostgreSQL database per session, a local Ray."""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
PG_ADMIN_URL = os.environ.get("AMGT_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


def _prepare_mnist(dst: Path) -> bool:
    """Decompress ../shared/data/mnist into dst/MNIST/raw (torchvision's layout). False if absent."""
    src = SHARED_DATA / "mnist"
    if not src.is_dir():
        return False
    raw = dst / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for gz in src.glob("*.gz"):
        out = raw / gz.name[:-3]
        if not out.exists() or out.stat().st_size == 0:
            with gzip.open(gz, "rb") as fin, open(out, "wb") as fout:
                shutil.copyfileobj(fin, fout)
    return True


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """The data root (AMGT_DATA_DIR) holding MNIST/raw; prepared from ../shared/data when unset.

    Tests that need it fail when AMGT_REQUIRE_DATA=1 (CI) and no data is found, else they skip.
    """
    env = os.environ.get("AMGT_DATA_DIR")
    if env and (Path(env) / "MNIST" / "raw").is_dir():
        return Path(env)
    root = tmp_path_factory.mktemp("data")
    if _prepare_mnist(root):
        os.environ["AMGT_DATA_DIR"] = str(root)
        return root
    if os.environ.get("AMGT_REQUIRE_DATA") == "1":
        pytest.fail("MNIST not found: set AMGT_DATA_DIR or provide ../shared/data/mnist")
    pytest.skip("MNIST not available (set AMGT_DATA_DIR)")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A throwaway PostgreSQL database on the real local server, dropped after the session.

    Returns an SQLAlchemy URL ``postgresql+psycopg://postgres@127.0.0.1:5432/<db>``.
    """
    psycopg = pytest.importorskip("psycopg")
    name = f"amgt_test_{uuid.uuid4().hex[:10]}"
    try:
        conn = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:  # the server must be up: .ci/run starts it
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {exc}")
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray with 2 CPUs and no dashboard, shut down after the session."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def pg_database():
    """Factory of throwaway databases on the real local PostgreSQL (dropped afterwards)."""
    psycopg = pytest.importorskip("psycopg")
    made = []

    def make() -> str:
        name = f"amgt_study_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"

    yield make
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        for name in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path, pg_database):
    """`mlflow server` on a throwaway PostgreSQL database, artifacts proxied (--serve-artifacts)."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", pg_database(), "--serve-artifacts",
         "--artifacts-destination", str(tmp_path / "server-artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "w"), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.read().strip() == b"OK":
                        break
            except OSError:
                time.sleep(0.5)
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
        else:
            pytest.fail("mlflow server did not start: " + (tmp_path / "server.log").read_text()[-2000:])
        import tracking

        tracking.check_tracking_store(url, timeout=60)  # its API answers too (slow on a loaded machine)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
