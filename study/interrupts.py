"""What a driver says and does when it is interrupted: the ``resume`` command that finishes the study
(:func:`resume_hint`), SIGTERM handled as Ctrl-C is (:func:`sigterm_as_interrupt`), and the lost-node path
(:func:`abandon`) that study/watchdog.py's ``RayletWatchdog`` calls when the driver's Ray node is gone."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Callable

from .errors import one_line
from .stores import Stores

__all__ = ["resume_hint", "abandon", "Terminated", "sigterm_as_interrupt", "terminated"]

_log = logging.getLogger(__name__)
_GUARD_WAIT_S = 5.0  # the most `abandon` waits for a phase being opened (one store call with its retries)


class Terminated(KeyboardInterrupt):
    """SIGTERM to the driver (``kill``, ``docker stop``, Kubernetes, systemd), raised in its main thread and
    handled as Ctrl-C is: the open phase and its running trials end KILLED and ``resume`` finishes the study;
    the CLI exits 143 (128 + SIGTERM, what a shell reports for a process that SIGTERM ended)."""


_SIGTERM = threading.Event()  # set by the handler: Ray Tune may re-raise the interrupt as a plain KeyboardInterrupt


def terminated(exc: BaseException) -> bool:
    """Whether the interrupt ``exc`` came from SIGTERM (:func:`sigterm_as_interrupt`'s handler ran)."""
    return isinstance(exc, Terminated) or _SIGTERM.is_set()


def sigterm_as_interrupt() -> Callable[[], None]:
    """Make SIGTERM raise :class:`Terminated` in the main thread; returns the function that puts the previous
    handler back. Called after ``ray.init``: Ray's core worker installs a handler that aborts the process with a
    native stack dump (exit 134) and leaves the study's runs open. Outside the main thread (where Python cannot
    set handlers) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_sigterm(signum, frame):
        _SIGTERM.set()
        raise Terminated("SIGTERM to the driver")

    _SIGTERM.clear()  # a run before this one in the same process may have had one
    previous = signal.signal(signal.SIGTERM, on_sigterm)
    return lambda: signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def resume_hint(name: str, stores: Stores) -> str:
    """How to finish study ``name``: the ``resume`` command, shell-quoted, with the stores it is in when they are
    not the defaults (the default store is the current directory's: from elsewhere the URI must be given); a
    password is shown as ``***``, and said to be left out."""
    import shlex

    import tracking

    from .stores import derived_optuna_storage

    default = stores.tracking_uri == tracking.resolve_tracking_uri(None)
    options = {} if default else {"--tracking-uri": stores.tracking_uri}
    if stores.optuna_storage and stores.optuna_storage != derived_optuna_storage(stores.tracking_uri):
        options["--optuna-storage"] = stores.optuna_storage
    words = [w for option, uri in options.items() for w in (option, tracking.mask_uri(uri))]
    notes = [f"from another directory: add --tracking-uri {shlex.quote(tracking.mask_uri(stores.tracking_uri))}"] \
        if default else []
    if any(tracking.mask_uri(uri) != uri for uri in (stores.tracking_uri, *options.values())):
        notes.append("the password is shown as ***: give yours")
    return f"`{shlex.join(['amgt-study', 'resume', name, *words])}`" + (f" ({'; '.join(notes)})" if notes else "")


def abandon(name: str, stores: Stores, experiment_id: str, drivers: list, lease, display,
            what: str, guard: threading.Lock) -> None:
    """The driver's Ray node is gone (study/watchdog.py): Ray will end this process within seconds without
    running any of its code.  Say so in one line first, then end the open phase (of ``drivers``' driver, once
    made: each has ``phases``) and the running trials KILLED (``resume`` runs them again), give the lease back,
    and leave with exit status 1.  ``guard`` (the phases' lock) is taken first and never given back: a phase the main thread is
    opening is recorded before it is closed, and no phase opens after it."""
    import tracking

    try:
        if display is not None:
            display.__exit__(None, None, None)  # the live area off the terminal before the line
    except Exception:  # noqa: BLE001 - best effort: the line matters more
        pass
    print(f"error: lost the Ray node this driver runs on ({what}); the open phase and its running trials are "
          f"closed KILLED; finish the study with {resume_hint(name, stores)}", file=sys.stderr, flush=True)
    guard.acquire(timeout=_GUARD_WAIT_S)  # a phase being opened: wait for it to be recorded, then close it
    try:
        for driver in drivers:
            driver.phases.abort("KILLED", f"interrupted (lost the driver's Ray node: {what})")
        tracking.close_stale_runs(stores.tracking_uri, name, experiment_id=experiment_id,
                                  reason=f"interrupted: the driver's Ray node was lost ({what})", status="KILLED")
        lease.release()
    except Exception as exc:  # noqa: BLE001 - the next `resume` closes what is left
        _log.warning("could not close the runs of study %s: %s", name, one_line(exc))
    finally:
        sys.stdout.flush()
        os._exit(1)
