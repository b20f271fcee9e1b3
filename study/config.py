"""The study file: a pydantic schema, validated in full before anything starts.

A study file is YAML (see docs/studies.md for every field and studies/*.yaml for examples)::

    name: quickstart
    kind: comparison            # comparison | sensitivity | ablation | quadratic
    benchmark: digits-cnn       # workers.available_benchmarks()
    epochs: 3
    batch_size: 64
    optimizers: [amgt, adam, sgd]          # or entries {name, hparams, search_space}
    search: {sampler: tpe, trials_per_optimizer: 3, metric: val_accuracy}
    seeds: 2

Every error is a :class:`StudyConfigError` whose message is one line naming the field, the value and
what is allowed; nothing is written to MLflow or Optuna before a file validates.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from amgt.registry import BUILT_IN

from .errors import clip_repr, one_line
from .spaces import Dimension, default_space, grid_values

__all__ = [
    "StudyConfig",
    "StudyConfigError",
    "OptimizerEntry",
    "SearchConfig",
    "EarlyStopping",
    "SensitivityConfig",
    "Resources",
    "KINDS",
    "LIMITS",
]

KINDS = ("comparison", "sensitivity", "ablation", "quadratic")
#: Upper bounds of the counts in a study file, with the reason (a typo's cost, not a physical limit).
LIMITS: dict[str, tuple[int, str]] = {
    "epochs": (10_000, "10,000 epochs of the smallest benchmark take days"),
    "batch_size": (1 << 20, "no benchmark has more than 2^20 training examples"),
    "max_steps": (10**9, "10^9 steps take years"),
    "seeds": (10_000, "more seeds than this would overlap the search trials' seed"),
    "trials_per_optimizer": (100_000, "an Optuna study this long no longer fits its storage's query times"),
    "points": (1_000, "1,000 learning rates per grid is far past any sensitivity curve's resolution"),
    "grid_points": (1_000, "1,000 points per dimension is far past any grid search's resolution"),
    "max_failures": (100, "a trial failing 100 times is not transient"),
    "n_startup_trials": (100_000, "more start-up trials than the largest budget"),
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_NAME_LENGTH = 100  # study and optimizer names: MLflow experiment names, tags and run names are built from them


def _checked_name(what: str, v: str, hint: str) -> str:
    """``v`` if it is a valid ``what`` name (letters, digits, '.', '_', '-'; starts with a letter or digit; at
    most :data:`MAX_NAME_LENGTH` characters), else ValueError naming the rule broken."""
    if len(v) > MAX_NAME_LENGTH:
        raise ValueError(f"invalid {what} name {v[:40]!r}... ({len(v)} characters): at most {MAX_NAME_LENGTH}")
    if not _NAME_RE.fullmatch(v):  # not .match: '$' would accept a trailing newline
        raise ValueError(f"invalid {what} name {v!r}: use letters, digits, '.', '_' or '-' {hint}")
    return v


class StudyConfigError(ValueError):
    """A study file that cannot run: the message is one line naming the field and what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _bounded(value: int | None, info) -> int | None:
    """The :data:`LIMITS` check of a count field (a field_validator body)."""
    limit, why = LIMITS[info.field_name]
    if value is not None and value > limit:
        raise ValueError(f"{value} is more than the {limit:,} allowed ({why})")
    return value


class OptimizerEntry(_Strict):
    """One optimizer of a study.

    Attributes:
        name: a registry name (``amgt.available_optimizers()``: built in or an installed package's entry
            point); with ``class``, a name of your choosing (not a registry name), used in tags and reports.
        class_ (``class`` in the file): an import path ``"module:Attribute"`` of a ``torch.optim.Optimizer``
            subclass or a factory ``f(params, **hparams)`` (e.g. ``"torch.optim:NAdam"``); checked here:
            importable, the hyperparameter names in its signature (unless it takes ``**kwargs``: then kept
            in its ``defaults``), and it builds over a small parameter and takes one step.
        hparams: fixed hyperparameters, passed to ``amgt.build_optimizer`` in every trial (and removed
            from the search space).
        search_space: ``{hyperparameter: Dimension}``; replaces the default space (study/spaces.py) when
            given; ``{}`` searches nothing (only ``hparams`` are used).
    """

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True)

    name: str
    class_: str | None = Field(None, alias="class")
    hparams: dict[str, Any] = Field(default_factory=dict)
    search_space: dict[str, Dimension] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @field_validator("name")
    @classmethod
    def _name_form(cls, v: str) -> str:
        return _checked_name("optimizer", v, "(an import path goes in `class`, with a name of your choosing)")

    @field_validator("class_")
    @classmethod
    def _importable(cls, v: str | None) -> str | None:
        from amgt import get_optimizer_spec
        from amgt.plugins import is_import_path

        if v is None:
            return v
        if not is_import_path(v):
            raise ValueError(f"{clip_repr(v)} is not an import path; write it as 'module:Attribute', "
                             "e.g. 'torch.optim:NAdam' (a registry name goes in `name`, without `class`)")
        get_optimizer_spec(v)  # ValueError: one line naming the module, the attribute or the type
        return v

    @property
    def ref(self) -> str:
        """What ``amgt.build_optimizer`` (and a trial's config ``optimizer``) takes: the import path or the name."""
        return self.class_ or self.name

    @property
    def spec(self):
        """The ``amgt.OptimizerSpec`` this entry builds."""
        from amgt import get_optimizer_spec

        return get_optimizer_spec(self.ref)

    @model_validator(mode="after")
    def _check_hparams(self) -> "OptimizerEntry":
        from amgt import available_optimizers

        if self.class_ is None and self.name not in available_optimizers():
            raise ValueError(f"unknown optimizer {self.name!r}; valid names: {', '.join(available_optimizers())} "
                             "(or give `class: module:Attribute`, an import path, with a name of your choosing)")
        if self.class_ is not None and self.name in available_optimizers():
            raise ValueError(f"name: {self.name!r} is a registered optimizer; give the optimizer of class "
                             f"{self.class_!r} another name (tags and reports tell optimizers apart by it)")
        spec = self.spec
        allowed = set(spec.hyperparameters)
        for where, keys in (("hparams", self.hparams), ("search_space", self.search_space or {})):
            for key in keys:
                if key not in allowed and (key in spec.fixed or not spec.takes_any_keyword):
                    pinned = f" ({self.name} pins {key}={spec.fixed[key]!r})" if key in spec.fixed else ""
                    raise ValueError(
                        f"{where}.{key}: not a hyperparameter of {self.ref!r}{pinned}; "
                        f"allowed: {', '.join(sorted(allowed))}"
                    )
        lr = self.hparams.get("lr")
        if lr is not None and not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0
                                   and math.isfinite(lr)):
            raise ValueError(f"hparams.lr must be > 0 and finite, got {lr!r}")
        if self.search_space and "lr" in self.search_space:
            dim = self.search_space["lr"]
            if dim.type != "categorical" and dim.low <= 0:
                raise ValueError(f"search_space.lr: lr bounds must be > 0, got low={dim.low!r}")
            if dim.type == "categorical" and any(
                isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c) or c <= 0
                for c in dim.choices
            ):
                raise ValueError(f"search_space.lr: every lr choice must be > 0, got {list(dim.choices)}")
        for key, value in self.hparams.items():
            _check_buildable(self.ref, {key: value}, f"hparams.{key}", value)
        if len(self.hparams) > 1:
            _check_buildable(self.ref, self.hparams, "hparams", self.hparams)
        for key, dim in (self.search_space or {}).items():
            if key in self.hparams:
                continue
            values = dim.choices if dim.type == "categorical" else (dim.low, dim.high)
            for value in values:
                if dim.type == "int":
                    value = int(value)
                _check_buildable(self.ref, {**self.hparams, key: value}, f"search_space.{key}", value)
        if spec.source != BUILT_IN:
            try:
                spec.check_step(**self.hparams)
            except ValueError as exc:
                field = "class" if self.class_ is not None else "name"
                raise ValueError(f"{field}: {' '.join(str(exc).split())}") from None
        return self

    def resolved_space(self) -> dict[str, Dimension]:
        """The space actually searched: ``search_space`` or the default, less the fixed ``hparams``."""
        space = self.search_space if self.search_space is not None else default_space(self.ref)
        return {k: v for k, v in space.items() if k not in self.hparams}


def _check_buildable(ref: str, hparams: dict[str, Any], where: str, value: Any) -> None:
    """Raise ``ValueError`` naming ``where`` unless ``amgt.build_optimizer(ref, ..., **hparams)`` accepts
    ``hparams`` (the optimizer's own range checks, run on a one-element dummy tensor), so a value out of
    range (``betas: [1.5, 0.9]``, ``tau: -1``, a string) is refused before any trial starts."""
    import torch

    from amgt import build_optimizer

    try:
        build_optimizer(ref, [torch.zeros(1, requires_grad=True)], **hparams)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: {clip_repr(value)} is not accepted by {ref!r}: {one_line(exc, 400)}") from None


class EarlyStopping(_Strict):
    """Early stopping of search trials with ASHA (``ray.tune.schedulers.ASHAScheduler``).

    ``grace_period`` epochs before a trial may be stopped; ``reduction_factor`` as in ASHA
    (Li et al. 2020).  The study's ``epochs`` is ``max_t``.
    """

    type: Literal["asha"] = "asha"
    grace_period: int = Field(1, ge=1, strict=True)
    reduction_factor: float = Field(2.0, gt=1)


class SearchConfig(_Strict):
    """The tuning phase of a comparison study (Optuna sampler driven by Ray Tune).

    ``metric`` is one the benchmark reports and may select on (``workers`` registry:
    ``Benchmark.selection_metrics``: validation metrics for classification, never test metrics; the loss,
    distance or gradient norm for the function benchmarks); ``mode`` defaults from it and must agree with
    it.  ``grid_points`` is the number of points per dimension for ``sampler: grid`` (Optuna's
    GridSampler; trials visit the grid in random order until the budget ends).  ``n_startup_trials``
    (TPE only): the random start-up trials before TPE models the results (Optuna's default 10); the
    report states how many of the budget were random.  ``seed`` seeds the sampler (not the training).
    ``epochs``: epochs of a search trial (default: the study's ``epochs``); shorter searches are allowed, the
    final phase always trains the study's ``epochs`` (the report states both).
    """

    sampler: Literal["tpe", "random", "grid", "qmc"] = "tpe"
    trials_per_optimizer: int = Field(ge=1, strict=True)
    metric: str = "val_accuracy"
    mode: Literal["min", "max"] | None = None
    early_stopping: EarlyStopping | None = None
    seed: int = Field(0, ge=0, le=2**31, strict=True)
    grid_points: int = Field(3, ge=1, strict=True)
    n_startup_trials: int | None = Field(None, ge=0, strict=True)
    epochs: int | None = Field(None, ge=1, strict=True)

    _limits = field_validator("trials_per_optimizer", "grid_points", "n_startup_trials", "epochs")(_bounded)

    @model_validator(mode="after")
    def _startup(self) -> "SearchConfig":
        if self.n_startup_trials is not None and self.sampler != "tpe":
            raise ValueError(f"n_startup_trials: only the TPE sampler has random start-up trials (sampler is "
                             f"{self.sampler!r}; every trial of it is space-filling)")
        return self


class SensitivityConfig(_Strict):
    """A log grid of learning rates (claim C10): ``points`` values from ``lr_low`` to ``lr_high``."""

    lr_low: float = Field(gt=0, allow_inf_nan=False)
    lr_high: float = Field(gt=0, allow_inf_nan=False)
    points: int = Field(ge=2, strict=True)

    _limits = field_validator("points")(_bounded)

    @model_validator(mode="after")
    def _range(self) -> "SensitivityConfig":
        if not self.lr_low < self.lr_high:
            raise ValueError(f"empty lr range: lr_low={self.lr_low!r} must be < lr_high={self.lr_high!r}")
        return self

    def values(self) -> list[float]:
        return grid_values(Dimension(low=self.lr_low, high=self.lr_high, log=True), self.points)


class Resources(_Strict):
    """Resources of one trial, as Ray Tune takes them (``tune.with_resources``): CPUs and (fractional) GPUs."""

    cpus: float = Field(1.0, gt=0, allow_inf_nan=False)
    gpus: float = Field(0.0, ge=0, allow_inf_nan=False)


class StudyConfig(_Strict):
    """A validated study file.  See the module docstring and docs/studies.md."""

    name: str
    kind: Literal["comparison", "sensitivity", "ablation", "quadratic"]
    benchmark: str | list[str]
    description: str = ""
    epochs: int | None = Field(None, ge=1, strict=True)
    batch_size: int | None = Field(None, ge=1, strict=True)
    max_steps: int | None = Field(None, ge=1, strict=True)
    val_fraction: float | None = Field(None, gt=0, lt=1)
    target: dict[str, float] | None = None
    evaluate_test: bool = True
    data_dir: str | None = None
    device: str = "auto"
    optimizers: list[OptimizerEntry] = Field(min_length=1, max_length=100)
    seeds: int = Field(1, ge=1, strict=True)
    # workers.train.MAX_SEED (2**62), less room for the seeds and the search seed (study.plan.SEARCH_SEED_OFFSET)
    seed_start: int = Field(0, ge=0, le=2**62 - 2 * 10**6, strict=True)
    search: SearchConfig | None = None
    sensitivity: SensitivityConfig | None = None
    resources: Resources = Field(default_factory=Resources)
    max_concurrent_trials: int | None = Field(None, ge=1, strict=True)
    max_failures: int = Field(1, ge=0, strict=True)
    tracking_uri: str | None = None
    optuna_storage: str | None = None
    ray_address: str | None = None

    _limits = field_validator("epochs", "batch_size", "max_steps", "seeds", "max_failures")(_bounded)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _checked_name("study", v, "(start with a letter or digit)")

    @field_validator("benchmark")
    @classmethod
    def _benchmark(cls, v: str | list[str]) -> str | list[str]:
        names = [v] if isinstance(v, str) else v
        if not names:
            raise ValueError("give at least one benchmark")
        try:
            from workers import available_benchmarks
        except ImportError as exc:  # the workers package is part of this distribution
            raise ValueError(f"cannot check the benchmark: workers.available_benchmarks missing ({exc})") from None
        from amgt.plugins import is_import_path
        from workers import get_benchmark

        valid = available_benchmarks()
        for name in names:
            if is_import_path(name):
                get_benchmark(name)  # ValueError: one line naming the module, the attribute or the type
            elif name not in valid:
                raise ValueError(f"unknown benchmark {name!r}; valid names: {', '.join(valid)} (or an import path "
                                 "'module:Attribute' of a workers.Benchmark)")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.match(r"^(auto|cpu|cuda(:\d+)?|mps)$", v):
            raise ValueError(f"invalid device {v!r}; allowed: auto, cpu, cuda, cuda:N, mps")
        return v

    @model_validator(mode="after")
    def _kind_rules(self) -> "StudyConfig":
        """Every study-level (cross-field) rule; all that fail are reported, one message per line."""
        problems = self._problems()
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _problems(self) -> list[str]:
        """The messages of the study-level rules that fail, each starting with the field it is about."""
        problems: list[str] = []
        names = [o.name for o in self.optimizers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            problems.append(f"optimizers: listed more than once: {', '.join(dupes)}")
        if isinstance(self.benchmark, list) and len(set(self.benchmark)) != len(self.benchmark):
            dupes = sorted({b for b in self.benchmark if self.benchmark.count(b) > 1})
            problems.append(f"benchmark: listed more than once: {', '.join(dupes)} (trial keys would collide)")
        for i, entry in enumerate(self.optimizers):
            if self.kind != "comparison" and entry.search_space is not None:
                problems.append(f"optimizers.{i} ({entry.name}).search_space: only kind 'comparison' searches; "
                                f"kind {self.kind!r} would ignore it (use hparams)")
            if self.sensitivity is not None and "lr" in entry.hparams:
                problems.append(f"optimizers.{i} ({entry.name}).hparams.lr: the sensitivity lr grid sets lr; "
                                "a fixed lr would be ignored (remove it)")
        if isinstance(self.benchmark, list) and self.kind != "quadratic":
            problems.append("benchmark: a list of benchmarks is allowed for kind 'quadratic' only")
        if self.kind == "comparison" and self.search is None:
            problems.append("search: required for kind 'comparison' (at least trials_per_optimizer; sampler "
                            "defaults to tpe, metric to val_accuracy)")
        if self.kind != "comparison" and self.search is not None:
            problems.append(f"search: only kind 'comparison' tunes; kind {self.kind!r} takes no search block")
        if self.kind == "sensitivity" and self.sensitivity is None:
            problems.append("sensitivity: required for kind 'sensitivity' (lr_low, lr_high, points)")
        if self.kind not in ("sensitivity", "quadratic") and self.sensitivity is not None:
            problems.append(f"sensitivity: not used by kind {self.kind!r}")
        if self.kind == "comparison" and self.search is not None:
            try:
                self._check_metric()
            except ValueError as exc:
                problems.append(str(exc))
            problems.extend(self._grid_budget_problems())
        if self.device.startswith("cuda"):
            # Ray Tune hides every GPU from a trial that asked for none (CUDA_VISIBLE_DEVICES=""), and shows
            # a trial ceil(gpus) devices numbered from 0: any other device fails every trial.
            index = int(self.device.partition(":")[2] or 0)
            if self.resources.gpus == 0:
                problems.append(f"device: {self.device!r} needs resources.gpus > 0 (Ray Tune gives a trial "
                                "without GPUs no CUDA device); set resources.gpus or use device 'auto'")
            if index >= max(1, math.ceil(self.resources.gpus)):
                problems.append(f"device: {self.device!r} is not visible to a trial with resources.gpus="
                                f"{self.resources.gpus:g} (its GPUs are numbered from cuda:0); use 'cuda' or 'auto'")
        if self.target:
            try:
                from workers import get_benchmark
            except ImportError:
                get_benchmark = None
            for b in self.benchmarks if get_benchmark else []:
                known = get_benchmark(b).defaults.get("targets", {})
                for key in self.target:
                    if key not in known:
                        problems.append(f"target.{key}: not a target of benchmark {b!r}; allowed: {', '.join(known)}")
        if self.search is not None and self.search.early_stopping is not None:
            epochs = self.search.epochs or (self.epochs if self.epochs is not None else self._default_epochs())
            grace = self.search.early_stopping.grace_period
            if epochs is not None and grace > epochs:
                problems.append(f"search.early_stopping.grace_period: {grace} is more than the {epochs} epoch(s) "
                                "of a trial (ASHA needs grace_period <= epochs)")
        if self.kind == "quadratic" and self._benchmark_kind() != "quadratic":
            problems.append(f"benchmark: kind 'quadratic' needs quadratic benchmarks, got {self.benchmark!r}")
        return problems

    def _grid_budget_problems(self) -> list[str]:
        """``sampler: grid``: the budget fits every optimizer's grid. Optuna's GridSampler stops a study once
        its grid is done; here every optimizer gets the same budget (docs/studies.md), so a budget larger
        than a grid would re-run its points as new trials: refused, naming the optimizer and its grid size."""
        s = self.search
        if s.sampler != "grid":
            return []
        problems = []
        for i, entry in enumerate(self.optimizers):
            space = entry.resolved_space()
            if not space:
                continue
            size = math.prod(len(grid_values(dim, s.grid_points)) for dim in space.values())
            if s.trials_per_optimizer > size:
                problems.append(
                    f"search.trials_per_optimizer: {s.trials_per_optimizer} is more than the {size} point(s) of the "
                    f"grid of optimizers.{i} ({entry.name}) ({', '.join(space)} at grid_points {s.grid_points}); "
                    f"a grid visits each point once: use at most {size} or raise search.grid_points")
        return problems

    def _check_metric(self) -> None:
        """``search.metric``: one the benchmark reports (its ``selection_metrics``); ``mode`` agrees with it."""
        from workers import get_benchmark

        s = self.search
        allowed = get_benchmark(self.benchmarks[0]).selection_metrics
        if s.metric not in allowed:
            raise ValueError(f"search.metric: {s.metric!r} is not a selection metric of benchmark "
                             f"{self.benchmarks[0]!r}; allowed: {', '.join(allowed)} (validation metrics only: a test "
                             "metric never selects)")
        natural = allowed[s.metric]
        if s.mode is None:
            s.mode = natural
        elif s.mode != natural:
            raise ValueError(f"search.mode: {s.mode!r} does not fit metric {s.metric!r} (use {natural!r})")

    def _default_epochs(self) -> int | None:
        try:
            from workers import get_benchmark
        except ImportError:
            return None
        return get_benchmark(self.benchmarks[0]).defaults.get("epochs")

    def _benchmark_kind(self) -> str | None:
        try:
            from workers import get_benchmark
        except ImportError:
            return None
        kinds = {get_benchmark(b).kind for b in self.benchmarks}
        return kinds.pop() if len(kinds) == 1 else "mixed"

    # ---- derived --------------------------------------------------------------------------------------
    @property
    def benchmarks(self) -> list[str]:
        return [self.benchmark] if isinstance(self.benchmark, str) else list(self.benchmark)

    @property
    def seed_values(self) -> list[int]:
        return list(range(self.seed_start, self.seed_start + self.seeds))

    @property
    def phases(self) -> tuple[str, ...]:
        """The phases this study runs, in order (names from tracking.schema.PHASES)."""
        return {
            "comparison": ("search", "final"),
            "sensitivity": ("grid",),
            "ablation": ("ablation",),
            "quadratic": ("quadratic",),
        }[self.kind]

    def optimizer(self, name: str) -> OptimizerEntry:
        for entry in self.optimizers:
            if entry.name == name:
                return entry
        raise KeyError(name)

    def fairness(self) -> dict[str, Any]:
        """What makes the comparison fair, recorded as ``fairness.json`` on the parent run."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "benchmark": self.benchmark,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "max_steps": self.max_steps,
            "seeds": self.seed_values,
            "optimizers": {},
        }
        if self.search is not None:
            from .plan import search_seed
            from .search import startup_trials

            out["sampler"] = self.search.sampler
            out["metric"] = self.search.metric
            out["mode"] = self.search.mode
            out["trials_per_optimizer"] = {o.name: self.search.trials_per_optimizer for o in self.optimizers}
            out["equal_budget"] = True
            out["n_startup_trials"] = startup_trials(self)
            out["search_seed"] = search_seed(self)
            out["search_epochs"] = self.search.epochs or self.epochs
            out["final_seeds"] = self.seed_values
            out["selection"] = "best value of the metric; ties: the lowest Optuna trial number"
        if self.sensitivity is not None:
            out["lr_grid"] = self.sensitivity.values()
        for entry in self.optimizers:
            space = entry.resolved_space() if self.kind == "comparison" else {}
            out["optimizers"][entry.name] = {
                "fixed": entry.hparams,
                "search_space": {k: v.describe() for k, v in space.items()},
                "space": {k: v.model_dump(mode="json") for k, v in space.items()},
                "dimensions": len(space),
                "default_space": entry.search_space is None,
                "space_from": "default (study/spaces.py)" if entry.search_space is None else "study file",
                "optimizer": entry.ref,
                "source": entry.spec.source,
            }
        if self.kind == "comparison":
            out["search_spaces_given"] = [e.name for e in self.optimizers if e.search_space is not None]
            out["search_spaces_defaulted"] = [e.name for e in self.optimizers if e.search_space is None]
        out["inclusion_preserving"] = _inclusion_report(self)
        return out


def _inclusion_report(cfg: StudyConfig) -> dict[str, Any]:
    """For AMGT vs Adam (AMGT with γ = τ = λ = 0 is Adam): does AMGT's space contain Adam's?"""
    if cfg.kind != "comparison":
        return {"applies": False}
    names = {o.name for o in cfg.optimizers}
    if not {"amgt", "adam"} <= names:
        return {"applies": False}
    amgt, adam = cfg.optimizer("amgt"), cfg.optimizer("adam")
    a_space, d_space = amgt.resolved_space(), adam.resolved_space()
    checks = {}
    lr_a, lr_d = a_space.get("lr"), d_space.get("lr")
    if lr_a is not None and lr_d is not None and lr_a.type != "categorical" and lr_d.type != "categorical":
        checks["lr"] = lr_a.low <= lr_d.low and lr_a.high >= lr_d.high
    for key in ("tau", "lr_decay", "gamma"):
        if key in amgt.hparams:
            checks[key] = amgt.hparams[key] == 0
        elif key in a_space:
            checks[key] = a_space[key].contains(0.0)
    return {"applies": True, "amgt_contains_adam": all(checks.values()) if checks else None, "checks": checks}
