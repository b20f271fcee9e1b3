"""Checks that must pass before a study writes anything: its benchmarks' data, and resources per trial that
the machine or cluster can give.  Both run for ``run`` and ``run --dry-run``."""

from __future__ import annotations

import math
import os
from pathlib import Path

from .config import StudyConfig, StudyConfigError
from .errors import StudyRunError

__all__ = ["check_study_data", "check_resources", "local_resources", "local_cpu_count"]


def check_study_data(cfg: StudyConfig) -> list[tuple[str, Path]]:
    """Check that every benchmark's data is in the data dir its trials will use: the file's ``data_dir``,
    else ``$AMGT_DATA_DIR``, else ``~/.cache/amgt-study/data`` (as ``workers.run_trial`` resolves it).
    Cheap: file existence and sizes (``workers.benchmarks.check_data``).

    On a cluster the data dir must be the same path on every node (docker-compose.yml mounts one ``data``
    volume at ``/data`` = ``AMGT_DATA_DIR`` everywhere).

    Returns:
        ``[(benchmark, data root)]`` of the benchmarks that need data (digits and the functions need none).

    Raises:
        FileNotFoundError: data missing: the study, the benchmark, and the loader's message (folder, files
            expected, how to get them).
        StudyRunError: a data file that is corrupt or truncated.
    """
    from workers.benchmarks import check_data

    checked = []
    for bench in cfg.benchmarks:
        try:
            root = check_data(bench, cfg.data_dir)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"study {cfg.name}: benchmark {bench}: {exc}") from None
        except ValueError as exc:
            raise StudyRunError(f"study {cfg.name}: benchmark {bench}: {exc}") from None
        if root is not None:
            checked.append((bench, root))
    return checked


def check_resources(cfg: StudyConfig, totals: dict[str, float], where: str = "this machine") -> None:
    """Refuse a per-trial request the cluster can never satisfy (Ray would wait forever).

    Args:
        totals: ``ray.cluster_resources()`` (or :func:`local_resources`).
        where: how to name the place in the message ("this machine", "the Ray cluster").

    Raises:
        StudyConfigError: naming ``resources.gpus`` / ``resources.cpus``, what was asked and what exists.
    """
    gpus, cpus = float(totals.get("GPU", 0.0)), float(totals.get("CPU", 0.0))
    if cfg.resources.gpus > gpus:
        raise StudyConfigError(
            f"study {cfg.name}: field resources.gpus: {cfg.resources.gpus:g} GPU(s) per trial requested but {where} "
            f"has {gpus:g}; lower it (fractions allowed) or run on a cluster with GPUs")
    if cfg.resources.cpus > cpus:
        raise StudyConfigError(
            f"study {cfg.name}: field resources.cpus: {cfg.resources.cpus:g} CPU(s) per trial requested but "
            f"{where} has {cpus:g}")


def local_cpu_count() -> int:
    """CPUs this process may use: the affinity mask, capped by a cgroup v2 CPU quota (``cpu.max``), as a
    container sees them (Ray counts a local node's CPUs the same way)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def local_resources() -> dict[str, float]:
    """CPUs and CUDA GPUs of this machine (for ``--dry-run`` and before a local Ray starts)."""
    try:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - a broken CUDA install is "no GPU" here; the trial says more
        gpus = 0
    return {"CPU": float(local_cpu_count()), "GPU": float(gpus)}
