"""Tracking stores: which MLflow store a URI names, whether it is reachable, and the study's experiment.

Three kinds of tracking URI are supported (MLflow's own URI forms):

``sqlite:///path/to/mlflow.db``
    MLflow's SQLAlchemy store on a SQLite file. The default is ``sqlite:///mlflow.db`` in the working
    directory (MLflow's own default form); :func:`resolve_tracking_uri` makes the path absolute so Ray
    workers, which run in other directories, write to the same file. Artifacts go to a local directory
    ``mlartifacts/`` beside the database file.
``postgresql+psycopg://user:password@host:5432/db``
    MLflow's SQLAlchemy store directly on PostgreSQL through psycopg 3 (MLflow accepts any
    ``postgresql+<driver>`` dialect). A bare ``postgresql://`` URI would make SQLAlchemy load psycopg2,
    which this project does not install, so it is normalised to ``postgresql+psycopg://`` when psycopg2
    is absent. Artifacts go to ``$AMGT_ARTIFACT_ROOT`` if set, else ``./mlartifacts`` in the working
    directory (absolute, fixed when the experiment is created). Use ``http://`` on a cluster, where
    workers do not share that directory.
``http://host:5000`` (or ``https://``)
    An ``mlflow server`` (on PostgreSQL in the cluster deployment) started with ``--serve-artifacts``:
    the server chooses the artifact location (``mlflow-artifacts:/``) and proxies artifact uploads.

Resolution order (:func:`resolve_tracking_uri`): explicit argument > ``MLFLOW_TRACKING_URI`` > default.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:  # mlflow is imported lazily: `import tracking` stays cheap
    from mlflow import MlflowClient

__all__ = [
    "DEFAULT_TRACKING_URI",
    "ARTIFACT_ROOT_ENV",
    "TrackingStoreError",
    "StoreUnreachableError",
    "resolve_tracking_uri",
    "mask_uri",
    "store_kind",
    "default_artifact_root",
    "check_tracking_store",
    "get_client",
    "get_or_create_experiment",
]

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
ARTIFACT_ROOT_ENV = "AMGT_ARTIFACT_ROOT"
#: Seconds to wait for a database connection or an HTTP answer in :func:`check_tracking_store`.
CONNECT_TIMEOUT_S = 5.0

_SUPPORTED = "sqlite:///PATH, postgresql+psycopg://USER@HOST:PORT/DB, http(s)://HOST:PORT"
_log = logging.getLogger(__name__)


class TrackingStoreError(RuntimeError):
    """The MLflow tracking store is unusable (unreachable, wrong URI, missing database, ...).

    The message is one line naming the URI (password masked) and what to do.
    """


class StoreUnreachableError(TrackingStoreError):
    """The store did not answer (connection refused or timed out): maybe for a moment (a restart), so a
    running study retries it (``tracking.retry``); before a study starts it is reported at once."""


# ---- URIs ----------------------------------------------------------------------------------------


def store_kind(uri: str) -> str:
    """``"sqlite"``, ``"postgresql"`` or ``"http"`` for a supported URI.

    Raises:
        TrackingStoreError: the scheme is not one of the supported stores.
    """
    scheme = urllib.parse.urlsplit(uri).scheme.lower()
    base = scheme.split("+", 1)[0]
    if base == "sqlite":
        return "sqlite"
    if base in ("postgresql", "postgres"):
        return "postgresql"
    if base in ("http", "https"):
        return "http"
    raise TrackingStoreError(
        f"unsupported MLflow tracking URI {mask_uri(uri)!r}: use one of {_SUPPORTED} "
        "(set it with --tracking-uri or MLFLOW_TRACKING_URI)"
    )


def mask_uri(uri: str) -> str:
    """``uri`` with any password replaced by ``***`` (for messages and logs)."""
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return "<unparseable URI>"
    if parts.password is None:
        return uri
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


def _psycopg2_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("psycopg2") is not None


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The tracking URI to use: ``uri`` > ``$MLFLOW_TRACKING_URI`` > :data:`DEFAULT_TRACKING_URI`.

    Normalisations (the store is the same, the form is stable across processes):
    - a relative SQLite path is made absolute against the current directory
      (``sqlite:///mlflow.db`` -> ``sqlite:////abs/dir/mlflow.db``), since Ray Tune runs trials in
      their own directories;
    - ``postgres://`` and ``postgresql://`` become ``postgresql+psycopg://`` when psycopg2 is not
      installed (psycopg 3 is this project's driver);
    - a trailing ``/`` of an http(s) URI is dropped.

    Raises:
        TrackingStoreError: unsupported scheme (anything but sqlite, postgresql, http, https).
    """
    chosen = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    chosen = chosen.strip()
    kind = store_kind(chosen)
    if kind == "sqlite":
        if chosen in ("sqlite://", "sqlite:///:memory:"):
            raise TrackingStoreError(
                f"in-memory SQLite tracking URI {chosen!r} cannot be shared between processes: "
                "use a file, e.g. sqlite:///mlflow.db"
            )
        if not chosen.startswith("sqlite:///"):
            raise TrackingStoreError(
                f"malformed SQLite tracking URI {chosen!r}: use sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db"
            )
        path, sep, query = chosen[len("sqlite:///"):].partition("?")
        return "sqlite:///" + str(Path(path).expanduser().absolute()) + (sep + query)
    if kind == "postgresql":
        scheme, rest = chosen.split("://", 1)
        if "+" not in scheme and not _psycopg2_available():
            scheme = "postgresql+psycopg"
        elif scheme.startswith("postgres+"):
            scheme = "postgresql+" + scheme.split("+", 1)[1]
        return f"{scheme}://{rest}"
    return chosen.rstrip("/")


def _sqlite_path(uri: str) -> Path:
    return Path(uri[len("sqlite:///"):].partition("?")[0])


def default_artifact_root(uri: str) -> str | None:
    """Where experiments created by :func:`get_or_create_experiment` keep artifacts (a local directory).

    - SQLite: ``<directory of the .db file>/mlartifacts``;
    - PostgreSQL: ``$AMGT_ARTIFACT_ROOT`` if set, else ``<working directory>/mlartifacts``;
    - http(s): ``None``: the server decides (``mlflow-artifacts:/``, proxied with ``--serve-artifacts``).
    """
    uri = resolve_tracking_uri(uri)
    kind = store_kind(uri)
    if kind == "http":
        return None
    env = os.environ.get(ARTIFACT_ROOT_ENV)
    if env:
        return str(Path(env).expanduser().absolute())
    if kind == "sqlite":
        return str(_sqlite_path(uri).parent / "mlartifacts")
    return str(Path.cwd() / "mlartifacts")


# ---- reachability --------------------------------------------------------------------------------


def check_tracking_store(uri: str | None = None, *, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Check, quickly and before any trial starts, that the tracking store ``uri`` is usable.

    - SQLite: the database's directory exists (or can be created) and is writable; an existing file
      is a SQLite database.
    - PostgreSQL: a connection opens within ``timeout`` seconds and ``SELECT 1`` answers.
    - http(s): ``GET /health`` answers ``OK`` and the tracking API answers ``experiments/search``
      within ``timeout`` seconds each (the server reaches its own backend store).

    MLflow's own clients retry for minutes on an unreachable store (SQLAlchemy engine creation
    retries ~10 times with exponential backoff; the REST client retries 7 times), so this check is
    what turns a wrong URI into an immediate, clear error.

    Raises:
        TrackingStoreError: one line naming the URI (password masked) and what to do.
    """
    uri = resolve_tracking_uri(uri)
    kind = store_kind(uri)
    if kind == "sqlite":
        _check_sqlite(uri)
    elif kind == "postgresql":
        _check_postgresql(uri, timeout)
    else:
        _check_http(uri, timeout)


def _check_sqlite(uri: str) -> None:
    import sqlite3

    path = _sqlite_path(uri)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrackingStoreError(
            f"MLflow SQLite store {uri!r}: cannot create directory {str(path.parent)!r} ({exc}); "
            "choose a writable path for the .db file"
        ) from None
    if not os.access(path.parent, os.W_OK):
        raise TrackingStoreError(
            f"MLflow SQLite store {uri!r}: directory {str(path.parent)!r} is not writable; "
            "choose a writable path for the .db file"
        )
    if path.exists():
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as c:
                c.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.DatabaseError as exc:
            raise TrackingStoreError(
                f"MLflow SQLite store {uri!r}: {str(path)!r} is not a usable SQLite database ({exc}); "
                "point the tracking URI at another file"
            ) from None


def _check_postgresql(uri: str, timeout: float) -> None:
    import sqlalchemy

    masked = mask_uri(uri)
    try:
        engine = sqlalchemy.create_engine(
            uri, connect_args={"connect_timeout": max(1, int(round(timeout)))}, poolclass=sqlalchemy.pool.NullPool
        )
    except Exception as exc:  # bad URL, missing driver
        raise TrackingStoreError(
            f"MLflow PostgreSQL store {masked!r} is not a usable SQLAlchemy URL ({_one_line(exc)}); "
            "use postgresql+psycopg://USER[:PASSWORD]@HOST:PORT/DATABASE"
        ) from None
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    except Exception as exc:
        text = _one_line(getattr(exc, "orig", None) or exc)
        if "does not exist" in text and "database" in text:
            hint = "create the database first (e.g. createdb), or fix the database name"
        elif "password" in text or "authentication" in text:
            hint = "check the user and password in the URI"
        else:
            hint = "start PostgreSQL or fix host/port in the URI (MLFLOW_TRACKING_URI / --tracking-uri)"
        error = TrackingStoreError if "does not exist" in text or "password" in text or "authentication" in text \
            else StoreUnreachableError
        raise error(f"MLflow PostgreSQL store {masked!r} is unreachable: {text}; {hint}") from None
    finally:
        engine.dispose()


def _check_http(uri: str, timeout: float) -> None:
    masked = mask_uri(uri)
    hint = (
        "start the MLflow server (docker compose up mlflow, or `mlflow server --backend-store-uri ... "
        "--serve-artifacts`) or fix MLFLOW_TRACKING_URI"
    )
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=timeout) as resp:
            body = resp.read(64).decode("utf-8", "replace").strip()
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StoreUnreachableError(
            f"MLflow tracking server {masked!r} is unreachable ({_one_line(reason)}); {hint}"
        ) from None
    if body != "OK":
        raise TrackingStoreError(
            f"MLflow tracking server {masked!r}: /health answered {body!r}, expected 'OK'; is this an "
            "MLflow server?"
        )
    query = json.dumps({"max_results": 1}).encode()
    headers = {"Content-Type": "application/json"}
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):  # the credentials MLflow's own REST client sends
        headers["Authorization"] = "Bearer " + os.environ["MLFLOW_TRACKING_TOKEN"]
    elif user and password:
        import base64

        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    req = urllib.request.Request(f"{uri}/api/2.0/mlflow/experiments/search", data=query, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read(300).decode("utf-8", "replace")
        if exc.code in (401, 403):
            hint = ("set MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN), or add "
                    "this host to the server's --allowed-hosts")
        else:
            hint = "check the server's --backend-store-uri and its logs"
        raise TrackingStoreError(
            f"MLflow tracking server {masked!r} answers /health but its tracking API fails "
            f"(HTTP {exc.code}: {_one_line(detail)}); {hint}"
        ) from None
    except (urllib.error.URLError, socket.timeout, TimeoutError, OSError) as exc:
        raise TrackingStoreError(
            f"MLflow tracking server {masked!r}: tracking API did not answer within {timeout:g} s "
            f"({_one_line(getattr(exc, 'reason', exc))}); check the server's backend store"
        ) from None


def _one_line(obj: object, limit: int = 300) -> str:
    text = " ".join(str(obj).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---- clients and experiments ---------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_schema_logs() -> Iterator[None]:
    """Silence alembic's and MLflow's INFO lines while MLflow creates/migrates its schema."""
    names = ("alembic", "alembic.runtime.migration", "mlflow.store.db.utils")
    loggers = [logging.getLogger(n) for n in names]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, old):
            lg.setLevel(level)


@contextlib.contextmanager
def schema_lock(uri: str, app: str = "mlflow") -> Iterator[None]:
    """Serialise an application's first-use schema creation in database ``uri`` between processes.

    MLflow's ``SqlAlchemyStore.__init__`` and Optuna's ``RDBStorage.__init__`` create the tables of an
    empty database without a lock, so two processes opening a fresh database at once can both try (and
    one fails on duplicate tables or types). SQLite: an exclusive ``fcntl`` lock on a file in the temp
    directory named after the database path and ``app`` (like MLflow's own server-side init lock);
    PostgreSQL: a session advisory lock keyed by ``app``.
    """
    kind = store_kind(uri)
    if kind == "sqlite":
        try:
            import fcntl
        except ImportError:  # not POSIX (Windows): no lock, as MLflow itself does there
            yield
            return
        import tempfile

        digest = hashlib.sha1(str(_sqlite_path(uri)).encode("utf-8")).hexdigest()[:16]
        lock_path = os.path.join(tempfile.gettempdir(), f"amgt-{app}-init-{digest}.lock")
        with open(lock_path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    elif kind == "postgresql":
        import sqlalchemy

        key = int.from_bytes(hashlib.sha1(f"amgt-{app}-schema-init".encode()).digest()[:7], "big")
        engine = sqlalchemy.create_engine(
            uri, connect_args={"connect_timeout": int(CONNECT_TIMEOUT_S)}, poolclass=sqlalchemy.pool.NullPool
        )
        try:
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
                try:
                    yield
                finally:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        finally:
            engine.dispose()
    else:
        yield


_INITIALISED: set[str] = set()
_REACHED_BEFORE: set[str] = set()


def expect_reachable(uri: str | None) -> None:
    """Declare that ``uri`` was reached before (by the study driver that started this worker): this process's
    first :func:`get_client` then waits out an outage (retried, ``tracking.retry``) instead of failing fast.

    Without it a process's first contact fails at once with one line (a mistyped host or port is reported in
    seconds, not after the retry budget); later calls, and first calls after this declaration, are retried.
    """
    _REACHED_BEFORE.add(resolve_tracking_uri(uri))


def _check_sqlite_schema(uri: str) -> bool:
    """Whether the SQLite store holds no tables yet; refuse, with the one command that repairs it, a SQLite store whose schema creation was cut short
    (by a crash before this project created stores atomically, or an interrupted ``mlflow db upgrade``)."""
    import sqlite3

    path = _sqlite_path(uri)
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as c:
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        runs = c.execute("SELECT count(*) FROM runs").fetchone()[0] if "runs" in tables else 0
    if not tables:
        return True
    if "alembic_version" in tables and not any(t.startswith("_alembic_tmp") for t in tables):
        return False
    if runs == 0:
        raise TrackingStoreError(f"MLflow SQLite store {uri!r} is half-created (its schema creation was cut short) "
                                 f"and holds no runs: remove it (rm {path}) and run again")
    raise TrackingStoreError(f"MLflow SQLite store {uri!r} holds {runs} runs but its schema is half-migrated: back it "
                             f"up (cp {path} {path}.bak), then run `mlflow db upgrade {uri}`")


def _create_sqlite_store(uri: str) -> None:
    """Create a new SQLite store's schema in a temporary file, then rename it into place: a crash at any
    moment leaves either no store or a complete one."""
    from mlflow import MlflowClient

    path = _sqlite_path(uri)
    tmp = path.with_name(f".{path.name}.creating-{os.getpid()}")
    try:
        MlflowClient(tracking_uri=f"sqlite:///{tmp}").search_experiments(max_results=1)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def get_client(uri: str | None = None):
    """An :class:`mlflow.MlflowClient` on the resolved ``uri``, whose calls retry transient store errors
    (``tracking.retry.RetryingClient``: a database restart or a short outage is waited out, then one clear
    :class:`tracking.retry.StoreUnavailableError`).

    The first client of a process on a SQL store is created after :func:`check_tracking_store` and under a
    cross-process lock (:func:`schema_lock`) with MLflow's schema-migration logs silenced; a new SQLite store
    is created in a temporary file and renamed into place (a crash cannot leave it half-made), and a store
    left half-made is refused with the command that repairs it.  MLflow caches the store per URI, so later
    clients are cheap.

    Raises:
        TrackingStoreError: the store is unreachable, half-created, or its schema is out of date.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from .retry import RetryingClient, call_with_retry

    # MLflow prints "View run ... at: URL" to stdout whenever a run on an http:// store ends: one line per
    # trial in the study's terminal output.  The MLflow UI links are in the study's own summary instead.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # One process (the driver, or a trial's worker) makes at most two store calls at once (its main thread
    # and one helper thread): a small pool per process, so that a study's connections grow with its
    # concurrency (workers + 1), not by 15 per process (SQLAlchemy's default pool of 5 + 10 overflow).
    os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_POOL_SIZE", "2")
    os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW", "2")
    # MLflow logs every database error with its whole traceback (and the exception being handled around it):
    # a restart would print pages.  The retries report the first cause in one line instead.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    uri = resolve_tracking_uri(uri)
    if uri in _INITIALISED or store_kind(uri) == "http":
        return RetryingClient(MlflowClient(tracking_uri=uri), uri)
    # fail clearly, not after MLflow's ~10 engine retries.  A store this process was told was reached before
    # (a trial's worker: its driver reached it) that is down for a moment (a restart) is waited out; a store
    # never reached (a wrong host, port or password) fails at once.
    if uri in _REACHED_BEFORE:
        call_with_retry(check_tracking_store, uri, what=f"MLflow store {mask_uri(uri)}")
    else:
        check_tracking_store(uri)
    with schema_lock(uri), _quiet_schema_logs():
        if store_kind(uri) == "sqlite":
            if not _sqlite_path(uri).exists() or _check_sqlite_schema(uri):
                _create_sqlite_store(uri)
        client = MlflowClient(tracking_uri=uri)
        try:
            call_with_retry(client.search_experiments, max_results=1,  # builds the store (and the schema) now
                            what=f"MLflow store {mask_uri(uri)}")
        except MlflowException as exc:
            if "out-of-date database schema" in str(exc) or "upgrade" in str(exc).lower():
                raise TrackingStoreError(f"MLflow store {mask_uri(uri)!r}: its schema is out of date or half-migrated; "
                                         f"back it up, then run `mlflow db upgrade {mask_uri(uri)}`") from None
            raise
    _INITIALISED.add(uri)
    return RetryingClient(client, uri)


_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")


def _artifact_location(uri: str, name: str) -> str | None:
    root = default_artifact_root(uri)
    if root is None:
        return None
    slug = _SLUG.sub("-", name).strip("-.")[:60] or "experiment"
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    return str(Path(root) / f"{slug}-{digest}")


def get_or_create_experiment(name: str, tracking_uri: str | None = None, *, tags: dict | None = None) -> str:
    """The id of the MLflow experiment ``name``, created if absent; safe when processes race.

    Called once by the study driver before trials fan out. When two processes create the same
    experiment at once, the database's unique constraint on the name lets one win; the other gets
    MLflow's ``RESOURCE_ALREADY_EXISTS`` and reads the winner's id. New experiments on SQL stores
    get an artifact location under :func:`default_artifact_root`; on http stores the server chooses.

    Args:
        name: experiment name (the study name, see tracking/schema.py).
        tracking_uri: any supported URI (resolved with :func:`resolve_tracking_uri`).
        tags: experiment tags set when it is created.

    Returns:
        The experiment id (a string, MLflow's form).

    Raises:
        ValueError: empty name.
        TrackingStoreError: the experiment exists but is deleted (restore it in the UI or with
            ``mlflow experiments restore``, or remove it for good with ``mlflow gc``).
    """
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"experiment name must be a non-empty string, got {name!r}")
    uri = resolve_tracking_uri(tracking_uri)
    client = get_client(uri)
    already = ErrorCode.Name(RESOURCE_ALREADY_EXISTS)
    for attempt in range(5):
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage != "active":
                raise TrackingStoreError(
                    f"MLflow experiment {name!r} in {mask_uri(uri)!r} is deleted: restore it "
                    f"(mlflow experiments restore --experiment-id {exp.experiment_id}) or remove it "
                    "for good (mlflow gc), then run again"
                )
            return exp.experiment_id
        try:
            return client.create_experiment(name, artifact_location=_artifact_location(uri, name), tags=tags)
        except MlflowException as exc:
            if exc.error_code != already:
                raise
            time.sleep(0.05 * (attempt + 1))  # the winner's transaction may not be visible yet
    raise TrackingStoreError(
        f"MLflow experiment {name!r} in {mask_uri(uri)!r} reported as existing but could not be read back"
    )
