"""The benchmark registry: one entry per (data set, model, paper defaults), registered next to its code.

Mirrors timm's ``register_model``/``list_models``/``create_model``: :func:`register_benchmark` adds an entry
where the benchmark is defined, :func:`available_benchmarks` lists the names, :func:`get_benchmark` looks
one up and lists the valid names when the name is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

__all__ = ["Benchmark", "available_benchmarks", "get_benchmark", "register_benchmark"]

KINDS = ("classification", "quadratic", "function")


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
    """

    name: str
    kind: str
    defaults: Mapping[str, Any]
    build: Callable[[dict, Any], Any] = field(repr=False)
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Invalid benchmark kind {self.kind!r} (allowed: {', '.join(KINDS)})")
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))


_REGISTRY: dict[str, Benchmark] = {}


def register_benchmark(name: str, kind: str, defaults: Mapping[str, Any], description: str = ""):
    """Decorator registering ``build(config, device)`` as benchmark ``name``; a name may be registered once."""

    def deco(build: Callable[[dict, Any], Any]) -> Callable[[dict, Any], Any]:
        if name in _REGISTRY:
            raise ValueError(f"Benchmark {name!r} is already registered")
        _REGISTRY[name] = Benchmark(name, kind, defaults, build, description)
        return build

    return deco


def available_benchmarks() -> list[str]:
    """The registered benchmark names, sorted."""
    return sorted(_REGISTRY)


def get_benchmark(name: str) -> Benchmark:
    """The benchmark registered as ``name``.

    Raises:
        ValueError: unknown name; the message lists the valid names.
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown benchmark {name!r}; valid names: {', '.join(available_benchmarks())}"
        ) from None
