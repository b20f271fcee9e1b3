"""The driver's raylet watchdog: one ``error:`` line (and closed runs) when the local Ray node dies.

A driver talks to Ray through the raylet of the node it runs on (the one ``ray.init`` started, or the one of
the cluster node it joined).  When that raylet dies (killed, out of memory), Ray's core worker ends the driver
process by itself (about 1 s later on a local Ray, up to 10-15 s once the cluster marks the node dead):
no Python code runs, no ``finally`` block, no error line of ours, and the study's runs stay RUNNING until
``resume``.  :class:`RayletWatchdog` polls the raylet process (``psutil``, every ``interval_s``) and, when it is
gone, calls ``on_lost`` first, which prints the one line, ends the open runs KILLED and leaves with
``os._exit(1)`` before Ray does (study/interrupts.py ``abandon``).  It watches from the moment Ray is up (before the
study's lease is taken) until the driver stops Ray on purpose.

Where no local raylet can be found (Ray Client ``ray://`` connections, a process listing that is not
permitted) the watchdog does nothing: Ray's own behaviour applies.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

__all__ = ["RayletWatchdog", "find_raylet"]

_log = logging.getLogger(__name__)


def find_raylet():
    """The ``psutil.Process`` of the raylet this driver is connected to, or None.

    Found by its socket: the driver's node (``ray.get_runtime_context().get_node_id()``) is looked up in
    ``ray.nodes()`` for its ``RayletSocketName``, and the local ``raylet`` process started with that
    ``--raylet_socket_name`` is returned."""
    import psutil
    import ray

    try:
        node_id = ray.get_runtime_context().get_node_id()
        sockets = [n.get("RayletSocketName") for n in ray.nodes() if n.get("NodeID") == node_id]
    except Exception as exc:  # noqa: BLE001 - not connected the usual way (e.g. Ray Client): nothing to watch
        _log.debug("no raylet to watch: %s", exc)
        return None
    if not sockets or not sockets[0]:
        return None
    flag = f"--raylet_socket_name={sockets[0]}"
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if proc.info["name"] == "raylet" and flag in (proc.info["cmdline"] or []):
                return proc
        except (psutil.Error, TypeError):
            continue
    return None


def _own_raylet():
    """A ``raylet`` among this process's descendants (the local Ray ``ray.init`` started), or None."""
    import psutil

    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return None
    for proc in children:
        try:
            if proc.name() == "raylet":
                return proc
        except psutil.Error:
            continue
    return None


class RayletWatchdog:
    """Calls ``on_lost(description)`` once when the driver's raylet process ends (from a daemon thread; at
    :meth:`start` itself when a Ray this driver started has no raylet any more).

    Args:
        on_lost: called with e.g. ``"its raylet, pid 1234, exited"``; it is expected to end the process.
        started_here: this driver started the local Ray (``ray.init``): a raylet that cannot be found at
            :meth:`start` has died in between.  Joining a cluster, a raylet not found is not watched.
        interval_s: polling period in seconds (default 0.5; Ray ends the driver about 1-15 s after its raylet).

    :meth:`start` after Ray is up, :meth:`stop` before ``ray.shutdown()`` (a raylet stopped on purpose is not a
    loss)."""

    def __init__(self, on_lost: Callable[[str], None], *, started_here: bool = False, interval_s: float = 0.5):
        self.on_lost, self.started_here, self.interval_s = on_lost, started_here, interval_s
        self.raylet = None
        self._stop = threading.Event()

    def start(self) -> "RayletWatchdog":
        self.raylet = find_raylet()
        if self.raylet is None and self.started_here:
            self.raylet = _own_raylet()  # the raylet `ray.init` started is this process's child
            if self.raylet is None:
                self.on_lost("its raylet is gone")
                return self
        if self.raylet is None:
            return self
        threading.Thread(target=self._watch, name="amgt-raylet-watchdog", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _alive(self) -> bool:
        import psutil

        try:
            return self.raylet.is_running() and self.raylet.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False
        except psutil.Error:
            return True  # cannot tell: assume alive

    def _watch(self) -> None:
        while not self._stop.wait(self.interval_s):
            if not self._alive():
                if not self._stop.is_set():
                    self.on_lost(f"its raylet, pid {self.raylet.pid}, exited")
                return
