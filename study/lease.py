"""One driver per study: a lease kept in the study's MLflow experiment (tag ``amgt.lease``).

The driver that runs a study holds its lease: who it is (a random id, host, process id and that process's
start time) and a heartbeat it renews every :data:`HEARTBEAT_S` seconds from a background thread.  A
second ``run``/``resume`` of the study is refused while the lease is live, naming the driver that holds
it.  A lease is stale, and is taken over, when its driver is gone: on the same host, its process no longer
exists (a SIGKILLed driver is taken over at once); on another host, its heartbeat is older than
:data:`STALE_AFTER_S`.  ``status`` uses the same test to tell a running study from a dead driver's.

The lease is written, then read back after a short pause: of two drivers starting at the same moment, the
one whose write landed last holds it and the other is refused (experiment tags have no compare-and-swap;
the pause makes the window a few hundred milliseconds wide, not zero).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass

from .errors import StudyRunError, one_line

__all__ = ["Lease", "StudyLease", "read_lease", "driver_conflict", "TAG_LEASE", "HEARTBEAT_S", "STALE_AFTER_S"]

TAG_LEASE = "amgt.lease"
HEARTBEAT_S = 15.0
STALE_AFTER_S = 60.0
_SETTLE_S = 0.5
_log = logging.getLogger(__name__)


def _process_start(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


@dataclass(frozen=True)
class Lease:
    """Who runs a study: ``driver`` (random id), ``host``, ``pid`` and its ``pid_start`` (epoch s), when it
    ``started`` and its last ``heartbeat`` (epoch s)."""

    driver: str
    host: str
    pid: int
    pid_start: float
    started: float
    heartbeat: float

    def alive(self, now: float | None = None) -> bool:
        """Whether the driver still runs (see the module docstring)."""
        now = time.time() if now is None else now
        if self.host == socket.gethostname():
            start = _process_start(self.pid)
            return start is not None and abs(start - self.pid_start) < 1.0
        return now - self.heartbeat < STALE_AFTER_S

    def describe(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"pid {self.pid} on {self.host}, started {started}, last heard {now - self.heartbeat:.0f} s ago"


def read_lease(client, experiment_id: str) -> Lease | None:
    """The lease recorded on the experiment, or None (no lease, or one that does not parse)."""
    text = client.get_experiment(experiment_id).tags.get(TAG_LEASE)
    if not text:
        return None
    try:
        return Lease(**json.loads(text))
    except (TypeError, ValueError):
        return None


def driver_conflict(study: str, other: Lease) -> StudyRunError:
    """The one-line refusal of a study that another live driver runs."""
    return StudyRunError(f"study {study!r} is being run by another driver ({other.describe()}): wait for it to finish "
                         f"or stop it; a dead driver's study is taken over by `amgt-study resume {study}` (at once on "
                         f"the same host, after {STALE_AFTER_S:.0f} s of silence elsewhere)")


class StudyLease:
    """The lease of one study for this driver: :meth:`acquire`, then :meth:`release` (a context manager)."""

    def __init__(self, tracking_uri: str, experiment_id: str, study: str):
        import tracking

        self.client = tracking.get_client(tracking_uri)
        self.experiment_id, self.study = experiment_id, study
        now = time.time()
        self.lease = Lease(uuid.uuid4().hex, socket.gethostname(), os.getpid(), _process_start(os.getpid()) or now,
                           now, now)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _refuse(self, other: Lease) -> None:
        raise driver_conflict(self.study, other)

    def check(self) -> Lease | None:
        """Raise if another live driver holds the lease; return the stale lease it replaces (or None)."""
        current = read_lease(self.client, self.experiment_id)
        if current is not None and current.driver != self.lease.driver and current.alive():
            self._refuse(current)
        return current

    def _write(self, lease: Lease) -> None:
        self.client.set_experiment_tag(self.experiment_id, TAG_LEASE, json.dumps(asdict(lease)))

    def acquire(self) -> Lease | None:
        """Take the lease (see the module docstring).  Returns the stale lease taken over, if any.

        Raises:
            StudyRunError: another live driver holds it (names it).
        """
        stale = self.check()
        self._write(self.lease)
        time.sleep(_SETTLE_S)
        current = read_lease(self.client, self.experiment_id)
        if current is not None and current.driver != self.lease.driver:
            self._refuse(current)
        self._thread = threading.Thread(target=self._beat, name=f"amgt-lease-{self.study}", daemon=True)
        self._thread.start()
        return stale

    def _beat(self) -> None:
        client = getattr(self.client, "unwrapped", self.client)  # one try per beat: no waiting out an outage
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.lease = Lease(**{**asdict(self.lease), "heartbeat": time.time()})
                current = read_lease(client, self.experiment_id)
                if current is not None and current.driver != self.lease.driver:
                    _log.warning("study %s: another driver took the lease (%s)", self.study, current.describe())
                    return
                client.set_experiment_tag(self.experiment_id, TAG_LEASE, json.dumps(asdict(self.lease)))
            except Exception as exc:  # noqa: BLE001 - the store may be down; the next beat tries again
                _log.warning("study %s: lease heartbeat failed: %s", self.study, one_line(exc))

    def release(self) -> None:
        """Stop the heartbeat and remove the lease if this driver still holds it (never raises)."""
        self._stop.set()
        client = getattr(self.client, "unwrapped", self.client)
        try:
            current = read_lease(client, self.experiment_id)
            if current is not None and current.driver == self.lease.driver:
                client.delete_experiment_tag(self.experiment_id, TAG_LEASE)
        except Exception as exc:  # noqa: BLE001 - a stale lease of a dead driver is taken over later
            _log.warning("study %s: could not release the lease: %s", self.study, one_line(exc))

    def __enter__(self) -> "StudyLease":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
