"""One registry for AMGT, its ablation variants and the baselines the paper compares it with.

``build_optimizer(name, params, **hparams)`` mirrors timm's ``create_optimizer``/``create_model``: a name
lookup that lists the valid names when a name is wrong, and that refuses hyperparameters the optimizer
does not take (no silent ignoring).

Besides the built-in entries, a name may be:

* an **import path** ``"module:Attribute"`` (e.g. ``"torch.optim:NAdam"``, ``"pytorch_optimizer:Lion"``): a
  ``torch.optim.Optimizer`` subclass, or a factory ``f(params, **hparams)`` returning one (:mod:`amgt.plugins`);
* the name of an **entry point** in the group :data:`ENTRY_POINT_GROUP` (``amgt_study.optimizers``) of an
  installed package, whose value is such a class or factory, or an :class:`OptimizerSpec`.

All resolve to an :class:`OptimizerSpec` (its ``source`` says which), so everything that builds optimizers
(``workers.run_trial`` in a Ray worker too) takes them unchanged.

Paper defaults (Laisin et al. 2025, section "Experimental Setup"): lr 1e-3 for Adam and AMGT, 1e-2 for
SGD and RMSProp, SGD momentum 0.9, τ in 0.05–0.1, λ = 1e-4.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

import torch
from torch.optim import Optimizer

from .adabelief import AdaBelief
from .optimizer import AMGT
from .plugins import entry_points_by_name, is_import_path, load_import_path

__all__ = [
    "ENTRY_POINT_GROUP",
    "BUILT_IN",
    "OptimizerSpec",
    "available_optimizers",
    "build_optimizer",
    "get_optimizer_spec",
    "optimizer_from_import_path",
    "register_optimizer",
]


#: The entry-point group of optimizer packages: ``[project.entry-points."amgt_study.optimizers"]``.
ENTRY_POINT_GROUP = "amgt_study.optimizers"
#: ``OptimizerSpec.source`` of the entries defined in this module.
BUILT_IN = "built-in"


@dataclass(frozen=True)
class OptimizerSpec:
    """One registered optimizer.

    Attributes:
        name: the registry name (e.g. ``"amgt-no-threshold"``; an import path for one named by it).
        cls: the ``torch.optim.Optimizer`` subclass built, or a factory ``f(params, **hparams)`` returning one.
        defaults: hyperparameters applied unless the caller overrides them (the paper's setup).
        fixed: hyperparameters this entry pins (e.g. ``tau=0``); passing them raises.
        description: one line for listings.
        source: where it came from: :data:`BUILT_IN`, ``"import path <module:Attribute>"`` or
            ``"entry point of <distribution> (<value>)"``.
    """

    name: str
    cls: type[Optimizer] | Callable[..., Optimizer]
    defaults: dict[str, Any] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = BUILT_IN

    def _parameters(self) -> list[inspect.Parameter]:
        """The constructor's (or factory's) parameters after ``self`` and the first one (the params)."""
        fn = self.cls.__init__ if inspect.isclass(self.cls) else self.cls
        params = list(inspect.signature(fn).parameters.values())
        if inspect.isclass(self.cls) and params and params[0].name == "self":
            params = params[1:]
        if params and params[0].kind in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
            params = params[1:]
        return params

    @property
    def hyperparameters(self) -> tuple[str, ...]:
        """The keyword arguments a caller may pass by name (the signature's, less ``params``, ``**kwargs``
        and the pinned ones)."""
        names = [p.name for p in self._parameters() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        return tuple(n for n in names if n not in self.fixed)

    @property
    def takes_any_keyword(self) -> bool:
        """Whether the signature has ``**kwargs``: then a name outside :attr:`hyperparameters` is accepted
        if the built optimizer keeps it in its ``defaults`` (else it would be ignored, and is refused)."""
        return any(p.kind == p.VAR_KEYWORD for p in self._parameters())

    def build(self, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], **hparams: Any) -> Optimizer:
        """Build over ``params`` with ``defaults``, then ``hparams``, then ``fixed``.

        Raises:
            ValueError: a pinned or unknown hyperparameter (names it and the allowed ones), a value of the
                wrong type, or one the constructor refuses; a factory that returns no ``torch.optim.Optimizer``.
        """
        allowed = self.hyperparameters
        for key in hparams:
            if key in self.fixed:
                raise ValueError(
                    f"Optimizer {self.name!r} fixes {key}={self.fixed[key]!r}; it cannot be set "
                    f"(use another registered optimizer to vary it)"
                )
            if key not in allowed and not self.takes_any_keyword:
                raise ValueError(
                    f"Unknown hyperparameter {key!r} for optimizer {self.name!r}; "
                    f"allowed: {', '.join(sorted(allowed))}"
                )
        self._check_types(hparams)
        kwargs = {**self.defaults, **hparams, **self.fixed}
        try:
            opt = self.cls(params, **kwargs)
        except ValueError:
            raise
        except Exception as exc:  # noqa: BLE001 - a user's class or factory: any error is reported, one line
            raise ValueError(f"Optimizer {self.name!r}: {self.cls!r} raised {type(exc).__name__}: "
                             f"{' '.join(str(exc).split())}") from None
        if not isinstance(opt, Optimizer):
            raise ValueError(f"Optimizer {self.name!r}: {self.cls!r} returned a {type(opt).__name__}, "
                             f"not a torch.optim.Optimizer")
        ignored = sorted(k for k in kwargs if k not in allowed and k not in self.fixed and k not in opt.defaults)
        if ignored:
            kept = sorted((set(allowed) | set(opt.defaults)) - set(self.fixed))
            raise ValueError(
                f"Unknown hyperparameter {ignored[0]!r} for optimizer {self.name!r}: it takes **kwargs but keeps "
                f"no {ignored[0]!r} in its defaults (it would be ignored); allowed: {', '.join(kept) or '(none)'}"
            )
        return opt

    def check_step(self, **hparams: Any) -> None:
        """Build over one parameter of two elements and take one ``step()`` as a trial does (a gradient set,
        no closure), so that an optimizer a trial cannot run is refused before any trial starts.

        Raises:
            ValueError: :meth:`build` refuses ``hparams``, or the step raised (the error named).
        """
        p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        opt = self.build([p], **hparams)
        p.grad = torch.tensor([0.5, -0.25])
        try:
            opt.step()
        except Exception as exc:  # noqa: BLE001 - the optimizer's own code: any error is reported
            raise ValueError(f"Optimizer {self.name!r} cannot take a step as a trial does (step() without a "
                             f"closure, after backward): {type(exc).__name__}: {' '.join(str(exc).split())}") from None
        if not torch.isfinite(p).all():
            raise ValueError(f"Optimizer {self.name!r}: one step on a 2-element parameter gave {p.tolist()} "
                             f"(not finite)")

    def _check_types(self, hparams: dict[str, Any]) -> None:
        """Refuse a value whose type does not fit the class's default for that argument (a number where
        the default is a number, a pair where it is a pair): torch.optim's own range checks raise a bare
        ``TypeError`` ("'<=' not supported ...") on a string or None, and ignore a third beta."""
        sig = {p.name: p for p in self._parameters()}
        for key, value in hparams.items():
            default = sig[key].default if key in sig else inspect.Parameter.empty
            if isinstance(default, bool) or default is None or default is inspect.Parameter.empty:
                continue
            if isinstance(default, (int, float)):
                if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
                    raise ValueError(f"Invalid {key} for optimizer {self.name!r}: {value!r} (allowed: a number)")
            elif isinstance(default, tuple) and all(isinstance(d, (int, float)) for d in default):
                if (not isinstance(value, (tuple, list)) or len(value) != len(default)
                        or any(isinstance(v, bool) or not isinstance(v, (int, float, torch.Tensor)) for v in value)):
                    raise ValueError(f"Invalid {key} for optimizer {self.name!r}: {value!r} "
                                     f"(allowed: {len(default)} numbers, e.g. {default!r})")


_REGISTRY: dict[str, OptimizerSpec] = {}


_LOADED: dict[tuple[str, str], OptimizerSpec] = {}  # (source, import path) -> spec, per process


def register_optimizer(spec: OptimizerSpec) -> OptimizerSpec:
    """Add ``spec`` to the registry; a name may be registered once, and has no ``:`` (import paths have)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"Optimizer {spec.name!r} is already registered")
    if is_import_path(spec.name):
        raise ValueError(f"Optimizer name {spec.name!r} has a ':' (reserved for import paths)")
    _REGISTRY[spec.name] = spec
    return spec


def _entry_points() -> dict:
    """``{name: EntryPointRef}`` of :data:`ENTRY_POINT_GROUP` whose names the registry does not have."""
    return entry_points_by_name(ENTRY_POINT_GROUP, _REGISTRY, "optimizer")


def available_optimizers() -> list[str]:
    """The registered names and those of the installed packages' ``amgt_study.optimizers`` entry points,
    sorted (nothing is imported to list them)."""
    return sorted({*_REGISTRY, *_entry_points()})


def _spec_of(obj: Any, name: str, source: str) -> OptimizerSpec:
    """``obj`` (an OptimizerSpec, an Optimizer subclass or a factory) as a spec named ``name``."""
    if isinstance(obj, OptimizerSpec):
        return replace(obj, name=name, source=source)
    if inspect.isclass(obj) and not issubclass(obj, Optimizer):
        raise ValueError(f"{source}: {obj.__module__}.{obj.__qualname__} is a class but not a "
                         f"torch.optim.Optimizer subclass")
    if not callable(obj):
        raise ValueError(f"{source}: a {type(obj).__name__} is neither a torch.optim.Optimizer subclass nor a "
                         f"factory f(params, **hparams)")
    doc = (inspect.getdoc(obj) or "").strip().splitlines()
    label = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"
    return OptimizerSpec(name, obj, description=doc[0] if doc else label, source=source)


def optimizer_from_import_path(path: str) -> OptimizerSpec:
    """The optimizer ``path`` names (``"module:Attribute"``: an Optimizer subclass or a factory), as a spec
    named ``path`` with the class's own defaults; loaded once per process.

    Raises:
        ValueError: one line: not an import path, the module cannot be imported, no such attribute, or the
            object is neither an Optimizer subclass nor callable.
    """
    key = ("path", path)
    if key not in _LOADED:
        _LOADED[key] = _spec_of(load_import_path(path), path, f"import path {path}")
    return _LOADED[key]


def get_optimizer_spec(name: str) -> OptimizerSpec:
    """The spec of ``name``: a registered name, an import path (:func:`optimizer_from_import_path`) or an
    entry point's name (loaded when first asked for).

    Raises:
        ValueError: unknown name (the message lists the valid names); an import path or entry point that
            cannot be loaded (one line naming why).
    """
    if isinstance(name, str) and name in _REGISTRY:
        return _REGISTRY[name]
    if is_import_path(name):
        return optimizer_from_import_path(name)
    ref = _entry_points().get(name) if isinstance(name, str) else None
    if ref is None:
        raise ValueError(
            f"Unknown optimizer {name!r}; valid names: {', '.join(available_optimizers())} "
            f"(or an import path 'module:Attribute')"
        )
    key = (ref.source, ref.value)
    if key not in _LOADED:
        try:
            obj = load_import_path(ref.value)
        except ValueError as exc:
            raise ValueError(f"optimizer {name!r} ({ref.source}): {exc}") from None
        _LOADED[key] = _spec_of(obj, name, ref.source)
    return _LOADED[key]


def build_optimizer(
    name: str, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], **hparams: Any
) -> Optimizer:
    """Build the optimizer registered as ``name`` over ``params``.

    Args:
        name: one of :func:`available_optimizers`, or an import path ``"module:Attribute"``.
        params: parameters or param groups.
        **hparams: keyword arguments of the optimizer class; unset ones take the paper defaults.

    Raises:
        ValueError: unknown name (lists valid names), unknown or pinned hyperparameter (names it),
            or a value out of range (raised by the optimizer's constructor).

    Example:
        >>> opt = build_optimizer("sgd", torch.nn.Linear(2, 1).parameters(), lr=0.1)
        >>> opt.defaults["momentum"]
        0.9
    """
    return get_optimizer_spec(name).build(params, **hparams)


def _register_builtins() -> None:
    paper_adam = {"lr": 1e-3}
    specs = [
        OptimizerSpec("amgt", AMGT, {"lr": 1e-3, "tau": 0.05, "lr_decay": 1e-4},
                      description="AMGT: variance-adaptive momentum + thresholding + diminishing step"),
        OptimizerSpec("amgt-no-threshold", AMGT, {"lr": 1e-3, "lr_decay": 1e-4}, {"tau": 0.0},
                      description="AMGT ablation: thresholding off (tau=0)"),
        OptimizerSpec("amgt-no-decay", AMGT, {"lr": 1e-3, "tau": 0.05}, {"lr_decay": 0.0},
                      description="AMGT ablation: step-size decay off (lr_decay=0)"),
        OptimizerSpec("amgt-no-variance", AMGT, {"lr": 1e-3, "tau": 0.05, "lr_decay": 1e-4}, {"gamma": 0.0},
                      description="AMGT ablation: variance-adaptive momentum off (gamma=0)"),
        OptimizerSpec("adam", torch.optim.Adam, paper_adam, {"amsgrad": False, "decoupled_weight_decay": False},
                      description="torch.optim.Adam"),
        OptimizerSpec("adamw", torch.optim.AdamW, paper_adam, {"amsgrad": False},
                      description="torch.optim.AdamW (decoupled weight decay)"),
        OptimizerSpec("amsgrad", torch.optim.Adam, paper_adam, {"amsgrad": True, "decoupled_weight_decay": False},
                      description="torch.optim.Adam(amsgrad=True)"),
        OptimizerSpec("adabelief", AdaBelief, {"lr": 1e-3, "eps": 1e-16},
                      description="AdaBelief (Zhuang et al. 2020, Algorithm 2; amgt.AdaBelief)"),
        OptimizerSpec("rmsprop", torch.optim.RMSprop, {"lr": 1e-2}, description="torch.optim.RMSprop"),
        OptimizerSpec("sgd", torch.optim.SGD, {"lr": 1e-2, "momentum": 0.9},
                      description="torch.optim.SGD with momentum 0.9"),
    ]
    for spec in specs:
        register_optimizer(spec)


_register_builtins()
