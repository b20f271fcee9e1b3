"""Optuna's storage for a study: one ``RDBStorage`` per URL and process whose calls retry transient
errors, created crash-safe, and the study's Optuna studies opened, loaded or listed (read only)."""

from __future__ import annotations

import os
from typing import Any

from .stores import OPTUNA_ATTR_FINGERPRINT, sql_tables, sqlite_path

__all__ = ["optuna_storage", "open_optuna_study", "load_optuna_study", "read_optuna_studies"]


def read_optuna_studies(url: str | None, names: list[str]) -> dict[str, dict[str, Any]]:
    """``{name: user attributes}`` of the named Optuna studies that exist in the storage (read only).

    Raises:
        StudyRunError: the storage is unreachable.
    """
    if not url or not names:
        return {}
    tables = sql_tables(url)
    if not tables or "studies" not in tables:
        return {}
    import optuna

    storage = optuna.storages.RDBStorage(url, skip_table_creation=True)  # read only: no schema created
    try:
        found = {s.study_name: dict(s.user_attrs) for s in optuna.get_all_study_summaries(storage)}
    finally:
        storage.remove_session()
        storage.engine.dispose()
    return {n: found[n] for n in names if n in found}


_STORAGES: dict[str, Any] = {}
#: Optuna's storage API (``optuna.storages.BaseStorage``): the methods whose calls are retried.
_STORAGE_METHODS = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr", "get_study_id_from_name",
    "get_study_name_from_id", "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
    "get_all_studies", "create_new_trial", "set_trial_param", "get_trial_id_from_study_id_trial_number",
    "set_trial_state_values", "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
    "get_trial", "get_all_trials", "get_n_trials", "get_best_trial",
)


def _retrying_storage_class():
    """``optuna.storages.RDBStorage`` whose storage-API calls retry transient errors
    (``tracking.retry.call_with_retry``): a database restart is waited out instead of ending the study.
    A subclass, so that Optuna still caches it as it caches any ``RDBStorage``."""
    import functools

    import optuna

    from tracking.retry import call_with_retry

    if "class" in _STORAGES:
        return _STORAGES["class"]

    class RetryingRDBStorage(optuna.storages.RDBStorage):
        def __init__(self, url: str, **kwargs):
            import tracking

            self.what = f"Optuna storage {tracking.mask_uri(url)}"
            call_with_retry(super().__init__, url, what=self.what, **kwargs)

    def retried(method):
        @functools.wraps(method)
        def call(self, *args, **kwargs):
            return call_with_retry(method, self, *args, what=self.what, **kwargs)

        return call

    for name in _STORAGE_METHODS:
        setattr(RetryingRDBStorage, name, retried(getattr(optuna.storages.RDBStorage, name)))
    _STORAGES["class"] = RetryingRDBStorage
    return RetryingRDBStorage


def optuna_storage(url: str):
    """One Optuna storage per URL in this process (its engine pools the connections: at most 2 + 2 on
    PostgreSQL, checked before use so a restarted server's dead connections are replaced), its calls
    retried on transient errors.  The schema of a new storage is created under a cross-process lock
    (``tracking.store.schema_lock``); a new SQLite file is created aside and renamed into place, so a
    crash cannot leave it half-made.
    """
    from tracking.store import schema_lock

    if url in _STORAGES:
        return _STORAGES[url]
    cls = _retrying_storage_class()
    sqlite = url.startswith("sqlite:///")
    kwargs = {"engine_kwargs": {"connect_args": {"timeout": 30}} if sqlite else
              {"pool_size": 2, "max_overflow": 2, "pool_pre_ping": True}}
    with schema_lock(url, "optuna"):
        path = sqlite_path(url) if sqlite else None
        if path is not None and not path.exists():
            tmp = path.with_name(f".{path.name}.creating-{os.getpid()}")
            try:
                made = cls(f"sqlite:///{tmp}", **kwargs)
                made.engine.dispose()
                os.replace(tmp, path)
            finally:
                if tmp.exists():
                    tmp.unlink()
        _STORAGES[url] = cls(url, **kwargs)
    return _STORAGES[url]


def open_optuna_study(url: str, name: str, *, direction: str, fingerprint: str, sampler=None):
    """The Optuna study ``name`` (created if absent) with the study's fingerprint in its user attributes."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ostudy = optuna.create_study(study_name=name, storage=optuna_storage(url), sampler=sampler,
                                 direction=direction, load_if_exists=True)
    if ostudy.user_attrs.get(OPTUNA_ATTR_FINGERPRINT) != fingerprint:
        ostudy.set_user_attr(OPTUNA_ATTR_FINGERPRINT, fingerprint)
    return ostudy


def load_optuna_study(url: str, name: str):
    """An existing Optuna study, or None."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=name, storage=optuna_storage(url))
    except KeyError:
        return None
