"""Provenance of a run: git commit of the code, the device trials ran on, package versions.

Logged as tags so every figure in a report can say what it was measured on (style.md).
"""

from __future__ import annotations

import functools
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path

__all__ = ["git_sha", "device_string", "package_versions", "provenance_tags", "VERSION_TAG_PREFIX"]

#: Environment variable holding the commit of an installed (non-checkout) copy, e.g. in the image.
GIT_SHA_ENV = "AMGT_GIT_SHA"
#: Tag prefix for package versions on parent runs (``version.torch``, ``version.mlflow``, ...).
VERSION_TAG_PREFIX = "version."
#: Packages whose versions matter for the results.
PACKAGES = ("amgt-study", "torch", "torchvision", "numpy", "mlflow", "optuna", "ray", "pandas", "scipy")


def git_sha(path: str | Path | None = None) -> str | None:
    """The commit (40 hex digits) checked out in the git working tree holding ``path``.

    ``path`` defaults to this package's source directory (an editable install is the checkout); for
    an installed copy that is not a checkout (the Docker image), ``$AMGT_GIT_SHA`` is used when it
    holds a commit (the image is built with ``--build-arg GIT_SHA=$(git rev-parse HEAD)``).
    Returns ``None`` when it is not inside a git working tree or ``git`` is not installed. A
    working tree with uncommitted changes still reports ``HEAD`` (see :func:`provenance_tags` for
    the ``git_dirty`` flag).
    """
    if path is not None:
        return _git_sha(str(path))
    sha = _git_sha(str(Path(__file__).resolve().parent))
    if sha is None:
        env = os.environ.get(GIT_SHA_ENV, "").strip().lower()
        sha = env if re.fullmatch(r"[0-9a-f]{40}", env) else None
    return sha


def _git(path: str, *args: str) -> str | None:
    """stdout of ``git -C path ARGS`` (10 s limit), or None when git is missing or fails."""
    try:
        out = subprocess.run(["git", "-C", path, *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=16)
def _git_sha(path: str) -> str | None:
    sha = _git(path, "rev-parse", "--verify", "HEAD")
    return sha if sha is not None and len(sha) == 40 else None


def _git_dirty(path: str) -> bool | None:
    status = _git(path, "status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)


def device_string(device: object | None = None) -> str:
    """A readable device name: ``"cpu"`` or ``"cuda:0 (NVIDIA H100 80GB HBM3)"``.

    ``device`` is a ``torch.device``, a string such as ``"cuda:1"``, or ``None`` (the device a trial
    would pick: the first CUDA device if available, else ``"mps"`` if available, else ``"cpu"``).
    torch is imported only here, so ``import tracking`` stays cheap.
    """
    import torch

    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            device = torch.device("cuda", torch.cuda.current_device())
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = torch.device("mps")
        else:
            device = torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(dev)


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """``{"python": "3.11.9", "torch": "2.14.1", ...}``; packages not installed are left out."""
    versions = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def provenance_tags(*, device: object | None = None, include_device: bool = True) -> dict[str, str]:
    """Tags for a parent run: git commit (MLflow's ``mlflow.source.git.commit``), ``git_dirty``,
    ``device`` (optional: the driver's device, not necessarily the workers') and
    ``version.<package>`` for :data:`PACKAGES`."""
    from .schema import TAG_DEVICE, TAG_GIT_SHA

    tags: dict[str, str] = {}
    here = str(Path(__file__).resolve().parent)
    sha = git_sha()
    if sha is not None:
        tags[TAG_GIT_SHA] = sha
        dirty = _git_dirty(here) if _git_sha(here) else None
        if dirty is not None:
            tags["git_dirty"] = str(dirty).lower()
    if include_device:
        tags[TAG_DEVICE] = device_string(device)
    tags.update({VERSION_TAG_PREFIX + k: v for k, v in package_versions().items()})
    return tags
