"""Ray's side of a study: starting or joining Ray, the trainable, and running a ``ray.tune.Tuner``.

Ray: the CLI's/file's address, else ``RAY_ADDRESS``, else a fresh local Ray (``address="local"``: never a
stale cluster that ``/tmp/ray/ray_current_cluster`` may name).  Ray Tune's own results go to a temporary
directory removed when the study ends: a study's state is its stores (study/stores.py), not a folder.

Signals: Ctrl-C raises ``KeyboardInterrupt`` in the driver (Ray Tune's SIGINT handler is turned off with
``TUNE_DISABLE_SIGINT_HANDLER=1`` unless set otherwise), so the open phase ends KILLED and ``resume``
finishes the study; a Tune run that a stop signal (SIGUSR1) ended early is reported the same way, and so is
SIGTERM (study/interrupts.py ``sigterm_as_interrupt``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from .config import StudyConfig
from .errors import StudyRunError, one_line
from .plan import StudyContext

__all__ = ["ensure_ray", "ray_address_of", "tune_storage", "make_trainable", "run_tuner", "RAY_CONNECT_TIMEOUT_S"]

#: Seconds to wait for a Ray cluster's address to accept a connection before giving up with one line.
RAY_CONNECT_TIMEOUT_S = 10.0


def ray_address_of(cfg: StudyConfig, ray_address: str | None) -> str | None:
    """The cluster to join: ``--ray-address`` > the file's ``ray_address`` > ``RAY_ADDRESS``; None: local."""
    return ray_address or cfg.ray_address or os.environ.get("RAY_ADDRESS") or None


def _check_reachable(address: str, timeout: float) -> None:
    """A ``host:port`` (or ``ray://host:port``) address must accept a TCP connection within ``timeout``."""
    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or address in ("auto", "local"):
        return
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise StudyRunError(f"cannot connect to Ray at {address!r} within {timeout:g} s ({one_line(exc)}); start the "
                            "cluster (`ray start --head`) or fix --ray-address / RAY_ADDRESS") from None


class _DropIncompleteTrials(logging.Filter):
    """Drops Ray Tune's "Trials did not complete" record (see :func:`quiet_ray_tune_logs`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Trials did not complete")


def quiet_ray_tune_logs() -> None:
    """Silence what Ray Tune logs that the study says better itself (idempotent)."""
    # A failed trial is reported in one line by the progress display and its traceback kept in MLflow
    # (tag error); Ray Tune's own multi-line traceback log of it is silenced.
    logging.getLogger("ray.tune.execution.tune_controller").setLevel(logging.CRITICAL)
    # On a stop signal Ray Tune advises `Tuner.restore(path=<a temporary folder>)` and warns about the metrics
    # of trials killed before their first report; the study's own line says how to go on (`amgt-study resume`).
    logging.getLogger("ray.tune.tune").setLevel(logging.ERROR)
    # ... and its "Trials did not complete: [...]" error, which names Ray's trial ids: the progress display has
    # said which trials failed, with their errors, and the results table counts them.
    if not any(isinstance(f, _DropIncompleteTrials) for f in logging.getLogger("ray.tune.tune").filters):
        logging.getLogger("ray.tune.tune").addFilter(_DropIncompleteTrials())
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)


def ensure_ray(address: str | None) -> bool:
    """``ray.init`` unless Ray is already initialised in this process.

    Returns:
        Whether Ray was started here (the caller shuts it down).

    Raises:
        StudyRunError: the address is unreachable, or Ray fails to start.
    """
    import ray

    # Ray Tune's own progress tables are replaced by the study's progress display.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    quiet_ray_tune_logs()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address is None:
        address = "local"
        kwargs["include_dashboard"] = False
    else:
        _check_reachable(address, RAY_CONNECT_TIMEOUT_S)
    try:
        ray.init(address=address, **kwargs)
    except Exception as exc:  # noqa: BLE001 - Ray raises plain Exception too (a node that died while starting)
        if address == "local":
            raise StudyRunError(f"could not start a local Ray: {one_line(exc)}; nothing of the study ran: run the "
                                "same command again") from None
        raise StudyRunError(f"cannot connect to Ray at {address!r}: {one_line(exc)}") from None
    return True


@contextlib.contextmanager
def tune_storage(study: str) -> Iterator[Path]:
    """A temporary directory for Ray Tune's results of this driver (removed at the end)."""
    path = Path(tempfile.mkdtemp(prefix=f"amgt-study-{study}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def make_trainable(cfg: StudyConfig, ctx: StudyContext):
    """The study's function trainable with its context and per-trial resources (``tune.with_*``)."""
    from ray import tune

    from .trainable import trial_function

    resources = {"cpu": cfg.resources.cpus, "gpu": cfg.resources.gpus}
    return tune.with_resources(tune.with_parameters(trial_function, ctx=ctx), resources)


def run_tuner(cfg: StudyConfig, ctx: StudyContext, storage: Path, *, name: str, tune_config, callbacks: list,
              param_space: dict | None = None) -> tuple[int, bool]:
    """Run one ``tune.Tuner`` over the study's trainable; returns when every trial ended.

    Returns:
        (the start time of the run in epoch milliseconds, whether Ray Tune ended it before its trials did:
        a stop signal, SIGUSR1, leaves trials neither terminated nor errored in the ``ResultGrid``).
    """
    from ray import tune

    run_config = tune.RunConfig(name=name, storage_path=str(storage),
                                failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
                                verbose=0, callbacks=callbacks)
    started = int(time.time() * 1000) - 1000
    grid = tune.Tuner(make_trainable(cfg, ctx), param_space=param_space, tune_config=tune_config,
                      run_config=run_config).fit()
    return started, grid.num_terminated + grid.num_errors < len(grid)
