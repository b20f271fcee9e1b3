"""What a study file can name: the optimizers and benchmarks available here, and where each came from.

Built-in entries (``amgt/registry.py``, ``workers/benchmarks.py``, ``workers/quadratic.py``) and those of
installed packages' entry points (groups ``amgt_study.optimizers`` and ``amgt_study.benchmarks``), as typed
records for ``amgt-study list`` (study/formatting.py prints them).  Import paths (``class: "module:Attr"``,
``benchmark: "module:Attr"``) are not listed: any importable one may be named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["CatalogEntry", "optimizer_catalog", "benchmark_catalog"]


@dataclass(frozen=True)
class CatalogEntry:
    """One optimizer or benchmark a study may name.

    Attributes:
        name: the name a study file gives it.
        source: ``"built-in"`` or ``"entry point of <distribution> (<value>)"``.
        description: its one-line description (for a benchmark, prefixed by its kind).
        error: why an entry point cannot be loaded (one line), else None: a study naming it is refused.
    """

    name: str
    source: str
    description: str = ""
    error: str | None = None


def _catalog(names: list[str], group: str, load: Callable[[str], Any],
             describe: Callable[[Any], str]) -> list[CatalogEntry]:
    from amgt.plugins import find_entry_points

    sources = {ref.name: ref.source for ref in find_entry_points(group)}
    out = []
    for name in names:
        try:
            obj = load(name)
        except ValueError as exc:
            out.append(CatalogEntry(name, sources.get(name, "?"), error=" ".join(str(exc).split())))
            continue
        out.append(CatalogEntry(name, obj.source, describe(obj)))
    return out


def optimizer_catalog() -> list[CatalogEntry]:
    """Every name of ``amgt.available_optimizers()``, sorted; an entry point that fails to load has ``error``."""
    import amgt

    return _catalog(amgt.available_optimizers(), amgt.ENTRY_POINT_GROUP, amgt.get_optimizer_spec,
                    lambda spec: spec.description)


def benchmark_catalog() -> list[CatalogEntry]:
    """Every name of ``workers.available_benchmarks()``, sorted; an entry point that fails to load has ``error``."""
    import workers

    return _catalog(workers.available_benchmarks(), workers.ENTRY_POINT_GROUP, workers.get_benchmark,
                    lambda bench: f"{bench.kind}: {bench.description}")
