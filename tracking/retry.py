"""Store calls that survive an outage: bounded retries with exponential backoff and jitter, for transient
errors only, then one clear error naming the first cause.

A database restart or a short outage makes MLflow's SQL store raise ``MlflowException`` with code
``TEMPORARILY_UNAVAILABLE`` (its cause a SQLAlchemy ``OperationalError``), Optuna's ``RDBStorage`` raise
``StorageInternalError`` ("invalid data in the commit, e.g. exceeding max length": the cause is again the
connection), and an MLflow server answer 5xx or not at all.  :func:`is_transient` looks through the
exception's causes for those; anything else (a bad request, a constraint, a bug) is raised at once.

Budget (environment): ``AMGT_STORE_RETRY_S`` seconds in all per call (default 120), waits from 0.5 s doubling
to 10 s, each with ±50 % jitter so that many workers do not retry in step.  When the budget is spent the
call raises :class:`StoreUnavailableError` (a ``TrackingStoreError``) whose message is one line: the store,
how long it was retried, and the first error seen.

Retried operations are those whose failed attempt left nothing behind: a SQL transaction that failed is
rolled back, and MLflow's REST calls are idempotent except run creation, whose rare duplicate (the server
created the run but its answer was lost) is an empty RUNNING run that the study closes FAILED.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import time
from typing import Any, Callable, TypeVar

from .store import TrackingStoreError, mask_uri

__all__ = ["StoreUnavailableError", "is_transient", "call_with_retry", "RetryingClient", "retry_budget_s"]

T = TypeVar("T")
_log = logging.getLogger(__name__)
RETRY_ENV = "AMGT_STORE_RETRY_S"
_FIRST_WAIT_S, _MAX_WAIT_S = 0.5, 10.0
_TRANSIENT_TEXT = (
    "connection refused", "could not connect", "connection failed", "server closed the connection",
    "terminating connection", "connection reset", "connection timed out", "timeout expired",
    "the database system is starting up", "the database system is shutting down", "database is locked",
    "connection is closed", "ssl syscall error", "no route to host", "temporarily unavailable",
    "too many clients", "remaining connection slots",
)


class StoreUnavailableError(TrackingStoreError):
    """A store (MLflow or Optuna) stayed unreachable for the whole retry budget; one line, the first cause."""


def retry_budget_s() -> float:
    """Seconds a store call is retried in all (``AMGT_STORE_RETRY_S``, default 120)."""
    try:
        return max(0.0, float(os.environ.get(RETRY_ENV, "120")))
    except ValueError:
        return 120.0


def _chain(exc: BaseException):
    """``exc`` and its explicit causes (``raise ... from``): not the exceptions that happened to be handled
    around it (``__context__``), which may be anything (e.g. Ray Tune handling a trial's error)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or one of its causes) is a connection-level failure worth retrying."""
    from .store import StoreUnreachableError

    for e in _chain(exc):
        if isinstance(e, StoreUnreachableError):
            return True
        name = type(e).__name__
        module = type(e).__module__ or ""
        if name in ("OperationalError", "DisconnectionError", "InterfaceError") and (
                module.startswith("sqlalchemy") or module.startswith("psycopg") or module == "sqlite3"):
            return True
        if isinstance(e, (ConnectionError, TimeoutError)):
            return True
        if name in ("ConnectionError", "ConnectTimeout", "ReadTimeout", "ChunkedEncodingError",
                    "MaxRetryError", "NewConnectionError", "ProtocolError"):
            return True
        if getattr(e, "error_code", None) == "TEMPORARILY_UNAVAILABLE":
            return True
        if name in ("MlflowException", "StorageInternalError", "RestException") and any(
                t in str(e).lower() for t in _TRANSIENT_TEXT):
            return True
    return False


def _first_line(exc: BaseException) -> str:
    root = list(_chain(exc))[-1]
    text = " ".join(str(root).split()) or type(root).__name__
    return f"{type(root).__name__}: {text[:240]}"


def call_with_retry(fn: Callable[..., T], *args: Any, what: str = "store", budget_s: float | None = None,
                    **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, retried on transient errors within the budget.

    Raises:
        StoreUnavailableError: still failing when the budget is spent (the first error, one line).
        Whatever ``fn`` raises that is not transient, at once.
    """
    budget = retry_budget_s() if budget_s is None else budget_s
    deadline = time.monotonic() + budget
    wait, tries, first = _FIRST_WAIT_S, 0, None
    while True:
        tries += 1
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - classified below
            if not is_transient(exc):
                raise
            first = first or exc
            left = deadline - time.monotonic()
            if left <= 0:
                raise StoreUnavailableError(
                    f"{what} unreachable for {budget:.0f} s ({tries} tries): {_first_line(first)}; start it again "
                    f"(or raise ${RETRY_ENV}) and `amgt-study resume` the study") from None
            pause = min(left, wait * random.uniform(0.5, 1.5))
            if tries == 1:
                _log.warning("%s: %s; retrying for up to %.0f s", what, _first_line(exc), budget)
            time.sleep(pause)
            wait = min(_MAX_WAIT_S, wait * 2)


class RetryingClient:
    """An ``mlflow.MlflowClient`` whose every method call goes through :func:`call_with_retry`.

    Attribute access is forwarded, so it is used exactly as the client it wraps (``client.log_batch(...)``).
    """

    def __init__(self, client, tracking_uri: str):
        self._client = client
        self._what = f"MLflow store {mask_uri(tracking_uri)}"

    @property
    def unwrapped(self):
        """The wrapped ``MlflowClient`` (its calls are not retried)."""
        return self._client

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            return call_with_retry(attr, *args, what=self._what, **kwargs)

        return call
