"""Objects named by an import path (``"module:Attribute"``) or by an entry point of an installed package.

The loading behind "bring your own optimizer and benchmark" (docs/studies.md, "Test your own optimizer"):
``amgt.get_optimizer_spec`` resolves optimizers this way (entry-point group ``amgt_study.optimizers``) and
``workers.get_benchmark`` benchmarks (group ``amgt_study.benchmarks``).  The import-path form is the one
``importlib.metadata.EntryPoint.value`` uses (``pkg.mod:Attr``, the attribute part possibly dotted);
entry points are found with :func:`importlib.metadata.entry_points` (the package's
``[project.entry-points."amgt_study.optimizers"]`` table, read from its installed metadata).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
import warnings
from collections.abc import Container
from dataclasses import dataclass
from importlib.metadata import entry_points, packages_distributions, version
from typing import Any

__all__ = ["EntryPointRef", "load_import_path", "is_import_path", "find_entry_points", "entry_points_by_name",
           "code_provenance"]

_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def is_import_path(ref: Any) -> bool:
    """Whether ``ref`` has the import-path form's colon (registry names have none)."""
    return isinstance(ref, str) and ":" in ref


def load_import_path(path: str) -> Any:
    """The object ``module:attribute`` names (``importlib.import_module`` then ``getattr`` along the dots).

    Raises:
        ValueError: one line: ``path`` is not of the form ``module:Attribute``; the module cannot be imported
            (its package not installed, or importing it raised: the error named); it has no such attribute.
    """
    if not isinstance(path, str) or not _PATH.fullmatch(path):
        raise ValueError(f"{path!r} is not an import path; write it as 'module:Attribute', e.g. 'torch.optim:NAdam'")
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        raise ValueError(f"cannot import {module_name!r}: no module named {missing!r} in this environment "
                         f"(is its package installed, or on PYTHONPATH?)") from None
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's module: any error importing it is reported
        raise ValueError(f"cannot import {module_name!r}: {type(exc).__name__}: {' '.join(str(exc).split())}") from None
    obj: Any = module
    for i, part in enumerate(attr.split(".")):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            where = ".".join([module_name, *attr.split(".")[:i]])
            raise ValueError(f"{where!r} has no attribute {part!r}") from None
    return obj


@dataclass(frozen=True)
class EntryPointRef:
    """One entry point of a group: its ``name``, ``value`` (an import path) and the distribution declaring it."""

    name: str
    value: str
    distribution: str

    @property
    def source(self) -> str:
        """``"entry point of <distribution> (<value>)"``: where a listing says the object came from."""
        return f"entry point of {self.distribution} ({self.value})"


def find_entry_points(group: str) -> list[EntryPointRef]:
    """The entry points of ``group`` in the installed distributions (and ``*.dist-info`` on ``sys.path``),
    found afresh on every call (:func:`importlib.metadata.entry_points`), without importing anything."""
    out = []
    for ep in entry_points(group=group):
        dist = ep.dist.name if ep.dist is not None else "an unnamed distribution"
        out.append(EntryPointRef(ep.name, ep.value, dist))
    return out


def entry_points_by_name(group: str, taken: Container[str], what: str) -> dict[str, EntryPointRef]:
    """``{name: EntryPointRef}`` of ``group`` (the first of a name), less the names in ``taken`` (the built-in
    ones win) and names with a ``:`` (import paths have one): each left out with a warning naming it and the
    distribution.  ``what`` names the kind in that warning (``"optimizer"``, ``"benchmark"``)."""
    found: dict[str, EntryPointRef] = {}
    for ref in find_entry_points(group):
        if ref.name in taken or is_import_path(ref.name):
            warnings.warn(f"{ref.source}: {what} entry point {ref.name!r} ignored (the name is built in or has a "
                          f"':')", stacklevel=3)
            continue
        found.setdefault(ref.name, ref)
    return found


def code_provenance(obj: Any) -> dict[str, str | None]:
    """What identifies the code of ``obj`` (a class or function loaded from an import path or entry point).

    Returns:
        ``{"module": ..., "distribution": "<name> <version>" or None, "source_sha256": SHA-256 (hex) of the
        file defining it, or None when it has no readable source file}``.
    """
    module = getattr(obj, "__module__", None) or type(obj).__module__
    top = module.split(".")[0]
    dists = packages_distributions().get(top) or []
    dist = f"{dists[0]} {version(dists[0])}" if dists else None
    digest = None
    try:
        path = inspect.getsourcefile(obj if inspect.isclass(obj) or inspect.isroutine(obj) else type(obj))
        if path:
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
    except (OSError, TypeError):
        pass
    return {"module": module, "distribution": dist, "source_sha256": digest}
