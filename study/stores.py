"""The two stores of a study, as one pair: the MLflow tracking store and the Optuna storage.

A study lives in its stores, not in a working directory: its settings (the resolved study file), its
identity (study/identity.py) and where its Optuna storage is are kept as tags of its MLflow experiment
(one experiment per study), so ``run``, ``resume``, ``status`` and ``report`` find it from the tracking URI
alone, from any directory or machine.  Each Optuna study (one per optimizer searched) carries the same
fingerprint in its user attributes.  :func:`check_agreement` refuses, before anything is written, a name
that holds other settings and a pair of stores that do not hold the same study.

Resolution (the same on every command):

* MLflow: ``--tracking-uri`` > the file's ``tracking_uri`` > ``MLFLOW_TRACKING_URI`` > ``sqlite:///mlflow.db``.
* Optuna: ``--optuna-storage`` > the file's ``optuna_storage`` > ``AMGT_OPTUNA_STORAGE`` > the storage the
  study was recorded with (``resume``/``status``) > derived from the tracking URI: ``optuna.db`` beside
  a SQLite ``mlflow.db``; on PostgreSQL the same server, database ``<mlflow database>_optuna`` (created on
  first use); none for an ``http://`` MLflow server (its database is not reachable from here: give one).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import StoresDisagreeError, StudyIdentityError, StudyRunError, one_line

__all__ = [
    "Stores",
    "StudyRecord",
    "OPTUNA_STORAGE_ENV",
    "OPTUNA_DATABASE_SUFFIX",
    "resolve_stores",
    "derived_optuna_storage",
    "require_optuna",
    "check_stores",
    "check_optuna_storage",
    "read_study_record",
    "check_agreement",
    "create_records",
    "TAG_FINGERPRINT",
]

OPTUNA_STORAGE_ENV = "AMGT_OPTUNA_STORAGE"
OPTUNA_DATABASE_SUFFIX = "_optuna"
#: MLflow experiment tags that record the study (values over MLflow's 20,000-character limit are split).
TAG_FINGERPRINT = "amgt.fingerprint"
TAG_IDENTITY = "amgt.identity"
TAG_SPEC = "amgt.study_file"
TAG_OPTUNA = "amgt.optuna_storage"
_CHUNK = 19_000
#: Optuna study user attribute holding the fingerprint.
OPTUNA_ATTR_FINGERPRINT = "amgt.fingerprint"


@dataclass(frozen=True)
class Stores:
    """Where a study is recorded: the MLflow tracking URI and the Optuna storage URL (resolved; the
    Optuna storage is None when none is known, e.g. an ``http://`` tracking URI and no storage given)."""

    tracking_uri: str
    optuna_storage: str | None
    #: where the Optuna storage came from: "given" (option, file or environment), "recorded" (with the
    #: study), "derived" (from the tracking URI: may be created on first use) or "none"
    optuna_source: str = "given"

    @property
    def optuna_derived(self) -> bool:
        return self.optuna_source == "derived"

    def describe(self, *, searched: bool = True) -> str:
        """``MLflow URI; Optuna URI`` (passwords masked); ``searched=False`` (a study without a search phase,
        which never opens the Optuna storage): ``MLflow URI; no Optuna study (nothing searched)``."""
        import tracking

        if not searched:
            return f"MLflow {tracking.mask_uri(self.tracking_uri)}; no Optuna study (nothing searched)"
        optuna = tracking.mask_uri(self.optuna_storage) if self.optuna_storage else "none"
        return f"MLflow {tracking.mask_uri(self.tracking_uri)}; Optuna {optuna}"


# ---- resolution -------------------------------------------------------------------------------------


def _normalise_sql_url(url: str, what: str) -> str:
    url = url.strip()
    if url.startswith("sqlite:///"):
        path, sep, query = url[len("sqlite:///"):].partition("?")
        return "sqlite:///" + str(Path(path).expanduser().absolute()) + sep + query
    scheme, _, rest = url.partition("://")
    if not rest:
        raise StudyRunError(f"{what} {url!r} is not a URL: use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
    if scheme in ("postgres", "postgresql"):
        import importlib.util

        if importlib.util.find_spec("psycopg2") is None:
            return f"postgresql+psycopg://{rest}"
    return url


def derived_optuna_storage(tracking_uri: str) -> str | None:
    """The default Optuna storage of a tracking URI (see the module docstring); None for ``http://``."""
    from sqlalchemy.engine import make_url

    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):].partition("?")[0])
        return f"sqlite:///{db.parent / 'optuna.db'}"
    if tracking_uri.split("://", 1)[0].startswith("postgres"):
        url = make_url(tracking_uri)
        database = (url.database or url.username or "postgres") + OPTUNA_DATABASE_SUFFIX
        return url.set(database=database).render_as_string(hide_password=False)
    return None


def resolve_stores(tracking_uri: str | None = None, optuna_storage: str | None = None, *,
                   file_tracking_uri: str | None = None, file_optuna_storage: str | None = None,
                   recorded_optuna_storage: str | None = None) -> Stores:
    """Resolve the pair (order in the module docstring).

    Raises:
        StudyRunError: an unsupported URI.
    """
    import tracking

    try:
        uri = tracking.resolve_tracking_uri(tracking_uri or file_tracking_uri)
    except tracking.TrackingStoreError as exc:
        raise StudyRunError(str(exc)) from None
    storage, source = optuna_storage or file_optuna_storage or os.environ.get(OPTUNA_STORAGE_ENV), "given"
    if not storage and recorded_optuna_storage and "***" not in recorded_optuna_storage:
        storage, source = recorded_optuna_storage, "recorded"
    if not storage:
        storage = derived_optuna_storage(uri)
        source = "derived" if storage else "none"
    return Stores(uri, _normalise_sql_url(storage, "Optuna storage") if storage else None, source)


def require_optuna(stores: Stores) -> str:
    """The Optuna storage URL of a study that searches.

    Raises:
        StudyRunError: none is known (an ``http://`` tracking URI without ``--optuna-storage``).
    """
    if stores.optuna_storage is None:
        import tracking

        raise StudyRunError(
            f"the MLflow server {tracking.mask_uri(stores.tracking_uri)!r} does not say where the Optuna storage is: "
            f"give --optuna-storage or ${OPTUNA_STORAGE_ENV} (e.g. postgresql+psycopg://USER@HOST/optuna)")
    return stores.optuna_storage


# ---- reachability (read only) -------------------------------------------------------------------------


def sqlite_path(url: str) -> Path:
    return Path(url[len("sqlite:///"):].partition("?")[0])


def sql_tables(url: str, timeout: float = 5.0) -> set[str] | None:
    """The tables of a SQL database (read only); None when it does not exist (a SQLite file not there yet,
    a PostgreSQL database not created).

    Raises:
        StudyRunError: unreachable, or not a database.
    """
    import sqlalchemy

    import tracking

    if url.startswith("sqlite:///"):
        path = sqlite_path(url)
        if not path.exists():
            return None
        import sqlite3

        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as c:
                return {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.Error as exc:
            raise StudyRunError(f"{str(path)!r} is not a usable SQLite database ({exc}); point the URL at another "
                                "file") from None
    try:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": int(timeout)},
                                          poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.connect() as conn:
                return set(sqlalchemy.inspect(conn).get_table_names())
        finally:
            engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any driver error is "unreachable" to the user
        text = one_line(getattr(exc, "orig", None) or exc)
        if "does not exist" in text and "database" in text:
            return None
        raise StudyRunError(f"{tracking.mask_uri(url)!r} is unreachable: {text}") from None


def check_optuna_storage(url: str, *, may_create: bool = False) -> None:
    """The Optuna storage answers (read only) and is not another application's database; a PostgreSQL
    database that does not exist is refused unless ``may_create`` (a derived default, created on first use).

    Raises:
        StudyRunError: one line naming the URL and what to do.
    """
    import tracking

    masked = tracking.mask_uri(url)
    if url.startswith("sqlite:///"):
        path = sqlite_path(url)
        if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
            raise StudyRunError(f"Optuna storage {url!r}: directory {str(path.parent)!r} is missing or not writable")
    try:
        tables = sql_tables(url)
    except StudyRunError as exc:
        raise StudyRunError(f"Optuna storage: {exc}; start the database or fix --optuna-storage / the study "
                            f"file's optuna_storage / ${OPTUNA_STORAGE_ENV}") from None
    if tables is None and not url.startswith("sqlite:///") and not may_create:
        raise StudyRunError(f"Optuna storage {masked!r}: the database does not exist; create it (createdb) or "
                            "fix --optuna-storage")
    # Optuna and MLflow both keep their schema version in a table `alembic_version`: refuse a database that
    # holds another application's schema (e.g. the MLflow store), Optuna would refuse it mid-study.
    if tables and "alembic_version" in tables and "version_info" not in tables:
        hint = " (it is an MLflow tracking store)" if "experiments" in tables else ""
        raise StudyRunError(f"Optuna storage {masked!r} already holds another application's tables{hint}; "
                            "give Optuna its own database (--optuna-storage)")


def _same_database(a: str, b: str) -> bool:
    """Whether two SQLAlchemy URLs name the same database (SQLite: the same file)."""
    from sqlalchemy.engine import make_url

    try:
        ua, ub = make_url(a), make_url(b)
    except Exception:  # noqa: BLE001 - http:// tracking URIs and the like are never the Optuna database
        return False
    if ua.get_backend_name() != ub.get_backend_name():
        return False
    if ua.get_backend_name() == "sqlite":
        return bool(ua.database and ub.database) and Path(ua.database).resolve() == Path(ub.database).resolve()
    return (ua.host, ua.port, ua.database or ua.username) == (ub.host, ub.port, ub.database or ub.username)


def check_stores(stores: Stores, *, needs_optuna: bool) -> None:
    """Both stores reachable (read only: nothing is created), and not the same database.

    Raises:
        StudyRunError: one line naming the store and what to do.
    """
    import tracking

    try:
        tracking.check_tracking_store(stores.tracking_uri)
    except tracking.TrackingStoreError as exc:
        raise StudyRunError(str(exc)) from None
    if not needs_optuna:
        return
    require_optuna(stores)
    if _same_database(stores.tracking_uri, stores.optuna_storage):
        raise StudyRunError(f"the Optuna storage and the MLflow store are the same database "
                            f"({tracking.mask_uri(stores.optuna_storage)!r}); their schemas clash: give Optuna its "
                            "own (--optuna-storage)")
    check_optuna_storage(stores.optuna_storage, may_create=stores.optuna_derived)


# ---- the study's record ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyRecord:
    """What the MLflow store holds about a study (its experiment's tags).

    Attributes:
        name, experiment_id: the study and its MLflow experiment.
        fingerprint, identity: the recorded identity (None: an experiment made by an older version, or
            an empty one).
        study_file: the resolved study file (YAML) of the latest ``run``.
        optuna_storage: the Optuna storage it was run with (password masked).
        has_runs: the experiment holds runs.
        lease: the driver lease recorded (study/lease.py), live or stale, or None.
    """

    name: str
    experiment_id: str
    fingerprint: str | None
    identity: dict[str, Any] | None
    study_file: str | None
    optuna_storage: str | None
    has_runs: bool
    lease: Any = None


def _joined(tags: dict[str, str], prefix: str) -> str | None:
    if prefix in tags:
        return tags[prefix]
    parts = []
    while f"{prefix}.{len(parts)}" in tags:
        parts.append(tags[f"{prefix}.{len(parts)}"])
    return "".join(parts) if parts else None


def _split(prefix: str, text: str) -> dict[str, str]:
    if len(text) <= _CHUNK:
        return {prefix: text}
    return {f"{prefix}.{i}": text[i * _CHUNK:(i + 1) * _CHUNK] for i in range((len(text) + _CHUNK - 1) // _CHUNK)}


def mlflow_is_empty(uri: str) -> bool:
    """A SQL tracking store without MLflow's schema yet (reading it must not create it)."""
    import tracking

    if tracking.store_kind(uri) == "http":
        return False
    try:
        tables = sql_tables(uri)
    except StudyRunError as exc:
        raise StudyRunError(f"MLflow store: {exc}") from None
    return not tables or "experiments" not in tables


def read_study_record(tracking_uri: str, name: str) -> StudyRecord | None:
    """The study's record in the MLflow store, or None when the store has no experiment of that name.
    Read only: an empty store is not initialised.

    Raises:
        StudyRunError: the store is unreachable; the experiment is deleted.
    """
    import tracking
    from tracking.search import any_run

    if mlflow_is_empty(tracking_uri):
        return None
    try:
        client = tracking.get_client(tracking_uri)
        exp = client.get_experiment_by_name(name)
    except tracking.TrackingStoreError as exc:
        raise StudyRunError(str(exc)) from None
    if exp is None:
        return None
    if exp.lifecycle_stage != "active":
        raise StudyRunError(f"MLflow experiment {name!r} in {tracking.mask_uri(tracking_uri)!r} is deleted: restore it "
                            f"(mlflow experiments restore --experiment-id {exp.experiment_id}) or remove it for good "
                            "(mlflow gc), then run again")
    tags = dict(exp.tags)
    identity = _joined(tags, TAG_IDENTITY)
    has_runs = any_run(client, [exp.experiment_id])
    from .lease import read_lease

    return StudyRecord(name, exp.experiment_id, tags.get(TAG_FINGERPRINT), json.loads(identity) if identity else None,
                       _joined(tags, TAG_SPEC), tags.get(TAG_OPTUNA), has_runs, read_lease(client, exp.experiment_id))


def _is_environment(field: str) -> bool:
    """Whether an identity field (study/identity.py) is the code, a package or the data, not a setting of the
    study file: ``code.*``, ``data.*``, ``benchmark_code.*``, an import-path optimizer's ``optimizers.X.class``
    provenance (its source digest, distribution version)."""
    parts = field.split(".")
    return parts[0] in ("code", "data", "benchmark_code") or (
        parts[0] == "optimizers" and len(parts) > 3 and parts[2] == "class"
        and parts[3] in ("module", "distribution", "source_sha256"))


def check_agreement(stores: Stores, name: str, identity, optuna_names: list[str]) -> StudyRecord | None:
    """Refuse, before anything is written, a study name whose stores hold other settings or disagree.

    Args:
        identity: the requested :class:`study.identity.StudyIdentity`.
        optuna_names: the Optuna studies this study searches with (empty when it searches nothing).

    Returns:
        The existing record (None for a new study).

    Raises:
        StudyIdentityError: the name holds results of other settings (names the fields that differ and the
            two ways out).
        StoresDisagreeError: MLflow and Optuna do not hold the same study (names both stores).
    """
    import tracking

    from .identity import describe_changes, diff_identity

    record = read_study_record(stores.tracking_uri, name)
    mlflow = tracking.mask_uri(stores.tracking_uri)
    ways_out = (f"run it under a new name (--name {name}-2), or resume it as it was "
                f"(`amgt-study resume {name}`, the same settings and code)")
    if record is not None and record.fingerprint and record.fingerprint != identity.fingerprint:
        changes = diff_identity(record.identity or {}, identity.fields)
        if changes and all(_is_environment(c.field) for c in changes):
            # not a setting of the study file: `resume` would meet the same difference
            raise StudyIdentityError(
                f"study {name!r} in MLflow store {mlflow} was run with other code or data "
                f"({describe_changes(changes)}); restore the code, packages and data it was run with to "
                f"finish it, or run it under a new name (--name {name}-2) to start over with these")
        raise StudyIdentityError(f"study {name!r} in MLflow store {mlflow} was run with other settings "
                                 f"({describe_changes(changes)}); {ways_out}")
    if record is not None and not record.fingerprint and record.has_runs:
        raise StudyIdentityError(f"study {name!r} in MLflow store {mlflow} holds runs recorded without a study "
                                 f"identity (an older amgt-study): its settings cannot be checked; run it under a "
                                 f"new name (--name {name}-2)")
    if not optuna_names:
        return record
    optuna_url = stores.optuna_storage
    masked = tracking.mask_uri(optuna_url) if optuna_url else "none"
    from .optuna_store import read_optuna_studies

    present = read_optuna_studies(optuna_url, optuna_names)
    for oname, attrs in present.items():
        fp = attrs.get(OPTUNA_ATTR_FINGERPRINT)
        if record is None:
            raise StoresDisagreeError(
                f"the Optuna storage {masked} already holds study {oname!r} but the MLflow store {mlflow} has no "
                f"study {name!r}: they are not the pair this study was run with; give both (--tracking-uri and "
                f"--optuna-storage) of the same study, or run under a new name (--name {name}-2)")
        if fp != identity.fingerprint:
            raise StoresDisagreeError(
                f"the Optuna storage {masked} holds an Optuna study {oname!r} of other settings than study {name!r} "
                f"in the MLflow store {mlflow} (fingerprints {fp or 'none'} and {identity.fingerprint}); give both "
                f"stores of the same study, or run under a new name (--name {name}-2)")
    missing = [n for n in optuna_names if n not in present]
    if record is not None and missing and _has_search_runs(stores.tracking_uri, record):
        was = f" (it was run with {record.optuna_storage})" if record.optuna_storage else ""
        raise StoresDisagreeError(
            f"the MLflow store {mlflow} holds search trials of study {name!r} but the Optuna storage {masked} has no "
            f"Optuna study {missing[0]!r}{was}: give --optuna-storage of the storage it was run with, or run under "
            f"a new name (--name {name}-2)")
    return record


def _has_search_runs(tracking_uri: str, record: StudyRecord) -> bool:
    import tracking
    from tracking import schema
    from tracking.search import any_run, run_filter

    if not record.has_runs:
        return False
    flt = run_filter(phase="search", role=schema.ROLE_TRIAL)
    return any_run(tracking.get_client(tracking_uri), [record.experiment_id], flt)


# ---- writing ------------------------------------------------------------------------------------------


def create_records(stores: Stores, name: str, identity, study_file: str, description: str = "") -> str:
    """Create (or update) the study's record: its MLflow experiment with the identity, the study file and
    the Optuna storage as tags (set at creation, in one call, when the experiment is new); a derived
    PostgreSQL Optuna database is created if missing.  Call after :func:`check_agreement`.

    Returns:
        The experiment id.
    """
    import tracking

    tags = {TAG_FINGERPRINT: identity.fingerprint,
            TAG_OPTUNA: tracking.mask_uri(stores.optuna_storage) if stores.optuna_storage else "",
            **_split(TAG_IDENTITY, identity.to_json()), **_split(TAG_SPEC, study_file)}
    if description:
        from tracking import schema

        tags[schema.TAG_NOTE] = description
    experiment_id = tracking.get_or_create_experiment(name, stores.tracking_uri, tags=tags)
    client = tracking.get_client(stores.tracking_uri)
    current = dict(client.get_experiment(experiment_id).tags)
    for key, value in tags.items():  # an experiment made before (empty, or this study run again)
        if current.get(key) != value:
            client.set_experiment_tag(experiment_id, key, value)
    for key in current:  # a shorter study file than last time: drop the chunks it no longer has
        if key.startswith(TAG_SPEC + ".") and key not in tags:
            client.delete_experiment_tag(experiment_id, key)
    if stores.optuna_storage and stores.optuna_derived and not stores.optuna_storage.startswith("sqlite:///"):
        _create_database(stores.optuna_storage)
    return experiment_id


def _create_database(url: str) -> None:
    """Create the PostgreSQL database of ``url`` if it does not exist (the derived Optuna database)."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    import tracking

    if sql_tables(url) is not None:
        return
    target = make_url(url)
    admin = target.set(database="postgres")
    engine = sqlalchemy.create_engine(admin, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{target.database}"'))
    except Exception as exc:  # noqa: BLE001
        text = one_line(getattr(exc, "orig", None) or exc)
        if "already exists" not in text:
            raise StudyRunError(f"cannot create the Optuna database {tracking.mask_uri(url)!r}: {text}; create it "
                                "yourself (createdb) or give --optuna-storage") from None
    finally:
        engine.dispose()
