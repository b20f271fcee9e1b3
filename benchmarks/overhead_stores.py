"""The stores of benchmarks/service_overhead.py: SQLite files in the work directory, or throwaway PostgreSQL
databases made on the server ``$AMGT_TEST_PG_ADMIN`` names (default ``postgresql://postgres@127.0.0.1:5432/postgres``)
and dropped after the run."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

PG_ADMIN = os.environ.get("AMGT_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


def _create_pg_databases(n: int) -> list[str]:
    import psycopg

    names = [f"amgt_overhead_{uuid.uuid4().hex[:10]}" for _ in range(n)]
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    return names


def _drop_pg_databases(names: list[str]) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_url(name: str) -> str:
    rest = PG_ADMIN.split("://", 1)[1].rsplit("/", 1)[0]
    return f"postgresql+psycopg://{rest}/{name}"


def _stores(store: str, workdir: Path, dbs: list[str]) -> tuple[str, str]:
    if store == "sqlite":
        return f"sqlite:///{workdir / 'mlflow.db'}", f"sqlite:///{workdir / 'optuna.db'}"
    return _pg_url(dbs[0]), _pg_url(dbs[1])
