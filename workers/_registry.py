"""The benchmark registry: one entry per (data set, model, paper defaults), registered next to its code.

Mirrors timm's ``register_model``/``list_models``/``create_model``: :func:`register_benchmark` adds an entry
where the benchmark is defined, :func:`available_benchmarks` lists the names, :func:`get_benchmark` looks
one up and lists the valid names when the name is wrong.

Besides the built-in entries, a benchmark may come from an installed package's entry point in the group
:data:`ENTRY_POINT_GROUP` (``amgt_study.benchmarks``; listed by :func:`available_benchmarks` under the entry
point's name) or be named by an import path ``"module:Attribute"``; either names a :class:`Benchmark`
(the protocol: docs/workers.md, "Your own benchmark").
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Callable, Mapping

from amgt.plugins import entry_points_by_name, is_import_path, load_import_path

__all__ = ["Benchmark", "BUILT_IN", "ENTRY_POINT_GROUP", "SELECTION_METRICS", "available_benchmarks", "get_benchmark",
           "register_benchmark"]

#: The entry-point group of benchmark packages: ``[project.entry-points."amgt_study.benchmarks"]``.
ENTRY_POINT_GROUP = "amgt_study.benchmarks"
#: ``Benchmark.source`` of the benchmarks registered with :func:`register_benchmark`.
BUILT_IN = "built-in"

KINDS = ("classification", "quadratic", "function")
#: The metrics a search may select on, per benchmark kind, with their direction: what the kind's trials
#: report every epoch (classification: validation metrics only, never the test split; the function
#: benchmarks have no validation split: their loss, distance to the optimum or gradient norm).
SELECTION_METRICS = {
    "classification": {"val_accuracy": "max", "best_val_accuracy": "max", "val_loss": "min"},
    "quadratic": {"train_loss": "min", "distance_to_optimum": "min", "grad_norm": "min"},
    "function": {"train_loss": "min", "distance_to_optimum": "min", "grad_norm": "min"},
}


@dataclass(frozen=True)
class Benchmark:
    """One registered benchmark.

    Attributes:
        name: registry name, e.g. ``"mnist-lenet5"``.
        kind: ``"classification"`` (data set + network), ``"quadratic"`` (a convex quadratic, exact
            facts known) or ``"function"`` (another deterministic test function, e.g. Rosenbrock).
        defaults: the paper's (or our documented) defaults for the config keys: ``epochs``,
            ``batch_size`` (classification), ``steps_per_epoch`` (quadratic/function), ``val_fraction``,
            ``targets`` ({"val_accuracy": ..., "train_loss": ...}), and benchmark-specific keys.
        build: ``build(config, device) -> problem``; ``config`` is the resolved trial config.
        description: one line for listings.
        source: where it came from: :data:`BUILT_IN`, ``"import path <module:Attribute>"`` or
            ``"entry point of <distribution> (<value>)"``.
    """

    name: str
    kind: str
    defaults: Mapping[str, Any]
    build: Callable[[dict, Any], Any] = field(repr=False)
    description: str = ""
    source: str = BUILT_IN

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Invalid benchmark kind {self.kind!r} (allowed: {', '.join(KINDS)})")
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))

    @property
    def selection_metrics(self) -> Mapping[str, str]:
        """``{metric: "max" | "min"}``: what a search on this benchmark may select on (:data:`SELECTION_METRICS`)."""
        return MappingProxyType(SELECTION_METRICS[self.kind])


_REGISTRY: dict[str, Benchmark] = {}
_LOADED: dict[tuple[str, str], Benchmark] = {}  # (source, import path) -> benchmark, per process


def register_benchmark(name: str, kind: str, defaults: Mapping[str, Any], description: str = ""):
    """Decorator registering ``build(config, device)`` as benchmark ``name``; a name may be registered once."""

    def deco(build: Callable[[dict, Any], Any]) -> Callable[[dict, Any], Any]:
        if name in _REGISTRY:
            raise ValueError(f"Benchmark {name!r} is already registered")
        if is_import_path(name):
            raise ValueError(f"Benchmark name {name!r} has a ':' (reserved for import paths)")
        _REGISTRY[name] = Benchmark(name, kind, defaults, build, description)
        return build

    return deco


def _entry_points() -> dict:
    """``{name: EntryPointRef}`` of :data:`ENTRY_POINT_GROUP` whose names the registry does not have."""
    return entry_points_by_name(ENTRY_POINT_GROUP, _REGISTRY, "benchmark")


def available_benchmarks() -> list[str]:
    """The registered benchmark names and those of the installed packages' ``amgt_study.benchmarks`` entry
    points, sorted (nothing is imported to list them)."""
    return sorted({*_REGISTRY, *_entry_points()})


def _load(path: str, name: str, source: str) -> Benchmark:
    key = (source, path)
    if key not in _LOADED:
        obj = load_import_path(path)
        if not isinstance(obj, Benchmark):
            raise ValueError(f"{source}: a {type(obj).__name__}, not a workers.Benchmark (the protocol: "
                             "docs/workers.md, 'Your own benchmark')")
        _LOADED[key] = replace(obj, name=name, source=source)
    return _LOADED[key]


def get_benchmark(name: str) -> Benchmark:
    """The benchmark ``name``: a registered name, an import path ``"module:Attribute"`` of a
    :class:`Benchmark` (returned under the name ``name``), or an entry point's name (loaded when first asked for).

    Raises:
        ValueError: unknown name (the message lists the valid names); an import path or entry point that cannot
            be loaded or names no :class:`Benchmark` (one line naming why).
    """
    if isinstance(name, str) and name in _REGISTRY:
        return _REGISTRY[name]
    if is_import_path(name):
        return _load(name, name, f"import path {name}")
    ref = _entry_points().get(name) if isinstance(name, str) else None
    if ref is None:
        raise ValueError(
            f"Unknown benchmark {name!r}; valid names: {', '.join(available_benchmarks())} "
            f"(or an import path 'module:Attribute')"
        )
    try:
        return _load(ref.value, name, ref.source)
    except ValueError as exc:
        raise ValueError(f"benchmark {name!r} ({ref.source}): {exc}") from None
