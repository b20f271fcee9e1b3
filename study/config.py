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

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .spaces import Dimension, default_space, grid_values

__all__ = [
    "StudyConfig",
    "StudyConfigError",
    "OptimizerEntry",
    "SearchConfig",
    "EarlyStopping",
    "SensitivityConfig",
    "Resources",
    "load_study",
    "parse_study",
    "VALIDATION_METRICS",
    "KINDS",
]

KINDS = ("comparison", "sensitivity", "ablation", "quadratic")
#: metrics a search may select on (validation only: test metrics are never used for model selection)
VALIDATION_METRICS = {"val_accuracy": "max", "best_val_accuracy": "max", "val_loss": "min"}
#: the metric quadratic studies select on (their trials have no validation split)
QUADRATIC_METRICS = {"train_loss": "min", "distance_to_optimum": "min"}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class StudyConfigError(ValueError):
    """A study file that cannot run: the message is one line naming the field and what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OptimizerEntry(_Strict):
    """One optimizer of a study.

    Attributes:
        name: a registry name (``amgt.available_optimizers()``).
        hparams: fixed hyperparameters, passed to ``amgt.build_optimizer`` in every trial (and removed
            from the search space).
        search_space: ``{hyperparameter: Dimension}``; replaces the default space (study/spaces.py) when
            given; ``{}`` searches nothing (only ``hparams`` are used).
    """

    name: str
    hparams: dict[str, Any] = Field(default_factory=dict)
    search_space: dict[str, Dimension] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from amgt import available_optimizers

        if v not in available_optimizers():
            raise ValueError(f"unknown optimizer {v!r}; valid names: {', '.join(available_optimizers())}")
        return v

    @model_validator(mode="after")
    def _check_hparams(self) -> "OptimizerEntry":
        from amgt import get_optimizer_spec

        spec = get_optimizer_spec(self.name)
        allowed = set(spec.hyperparameters)
        for where, keys in (("hparams", self.hparams), ("search_space", self.search_space or {})):
            for key in keys:
                if key not in allowed:
                    pinned = f" ({self.name} pins {key}={spec.fixed[key]!r})" if key in spec.fixed else ""
                    raise ValueError(
                        f"{where}.{key}: not a hyperparameter of {self.name!r}{pinned}; "
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
            _check_buildable(self.name, {key: value}, f"hparams.{key}", value)
        if len(self.hparams) > 1:
            _check_buildable(self.name, self.hparams, "hparams", self.hparams)
        for key, dim in (self.search_space or {}).items():
            if key in self.hparams:
                continue
            values = dim.choices if dim.type == "categorical" else (dim.low, dim.high)
            for value in values:
                if dim.type == "int":
                    value = int(value)
                _check_buildable(self.name, {**self.hparams, key: value}, f"search_space.{key}", value)
        return self

    def resolved_space(self) -> dict[str, Dimension]:
        """The space actually searched: ``search_space`` or the default, less the fixed ``hparams``."""
        space = self.search_space if self.search_space is not None else default_space(self.name)
        return {k: v for k, v in space.items() if k not in self.hparams}


def _check_buildable(name: str, hparams: dict[str, Any], where: str, value: Any) -> None:
    """Raise ``ValueError`` naming ``where`` unless ``amgt.build_optimizer(name, ..., **hparams)`` accepts
    ``hparams`` (the optimizer's own range checks, run on a one-element dummy tensor), so a value out of
    range (``betas: [1.5, 0.9]``, ``tau: -1``, a string) is refused before any trial starts."""
    import torch

    from amgt import build_optimizer

    try:
        build_optimizer(name, [torch.zeros(1, requires_grad=True)], **hparams)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: {value!r} is not accepted by {name!r}: {' '.join(str(exc).split())}") from None


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

    ``metric`` is a validation metric (``val_accuracy``, ``best_val_accuracy``, ``val_loss``); ``mode``
    defaults from it and must agree with it.  ``grid_points`` is the number of points per dimension for
    ``sampler: grid`` (Optuna's GridSampler; trials visit the grid in random order until the budget ends).
    """

    sampler: Literal["tpe", "random", "grid", "qmc"] = "tpe"
    trials_per_optimizer: int = Field(ge=1, strict=True)
    metric: str = "val_accuracy"
    mode: Literal["min", "max"] | None = None
    early_stopping: EarlyStopping | None = None
    seed: int = Field(0, ge=0, strict=True)
    grid_points: int = Field(3, ge=1, strict=True)

    @model_validator(mode="after")
    def _metric_mode(self) -> "SearchConfig":
        allowed = {**VALIDATION_METRICS, **QUADRATIC_METRICS}
        if self.metric not in allowed:
            raise ValueError(
                f"metric {self.metric!r} is not allowed; validation metrics only: "
                f"{', '.join(VALIDATION_METRICS)} (quadratic studies: {', '.join(QUADRATIC_METRICS)})"
            )
        natural = allowed[self.metric]
        if self.mode is None:
            self.mode = natural
        elif self.mode != natural:
            raise ValueError(f"mode {self.mode!r} does not fit metric {self.metric!r} (use {natural!r})")
        return self


class SensitivityConfig(_Strict):
    """A log grid of learning rates (claim C10): ``points`` values from ``lr_low`` to ``lr_high``."""

    lr_low: float = Field(gt=0, allow_inf_nan=False)
    lr_high: float = Field(gt=0, allow_inf_nan=False)
    points: int = Field(ge=2, strict=True)

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
    optimizers: list[OptimizerEntry] = Field(min_length=1)
    seeds: int = Field(1, ge=1, strict=True)
    seed_start: int = Field(0, ge=0, le=2**62 - 10**6, strict=True)  # workers.train.MAX_SEED, less room for the seeds
    search: SearchConfig | None = None
    sensitivity: SensitivityConfig | None = None
    resources: Resources = Field(default_factory=Resources)
    max_concurrent_trials: int | None = Field(None, ge=1, strict=True)
    max_failures: int = Field(1, ge=0, strict=True)
    tracking_uri: str | None = None
    optuna_storage: str | None = None
    ray_address: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.fullmatch(v):  # not .match: '$' would accept a trailing newline
            raise ValueError(
                f"invalid study name {v!r}: use letters, digits, '.', '_' or '-' (start with a letter or digit)"
            )
        return v

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
        valid = available_benchmarks()
        for name in names:
            if name not in valid:
                raise ValueError(f"unknown benchmark {name!r}; valid names: {', '.join(valid)}")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.match(r"^(auto|cpu|cuda(:\d+)?|mps)$", v):
            raise ValueError(f"invalid device {v!r}; allowed: auto, cpu, cuda, cuda:N, mps")
        return v

    @model_validator(mode="after")
    def _kind_rules(self) -> "StudyConfig":
        names = [o.name for o in self.optimizers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"optimizers: listed more than once: {', '.join(dupes)}")
        if isinstance(self.benchmark, list) and len(set(self.benchmark)) != len(self.benchmark):
            dupes = sorted({b for b in self.benchmark if self.benchmark.count(b) > 1})
            raise ValueError(f"benchmark: listed more than once: {', '.join(dupes)} (trial keys would collide)")
        for i, entry in enumerate(self.optimizers):
            if self.kind != "comparison" and entry.search_space is not None:
                raise ValueError(f"optimizers.{i} ({entry.name}).search_space: only kind 'comparison' searches; "
                                 f"kind {self.kind!r} would ignore it (use hparams)")
            if self.sensitivity is not None and "lr" in entry.hparams:
                raise ValueError(f"optimizers.{i} ({entry.name}).hparams.lr: the sensitivity lr grid sets lr; "
                                 "a fixed lr would be ignored (remove it)")
        if isinstance(self.benchmark, list) and self.kind != "quadratic":
            raise ValueError("benchmark: a list of benchmarks is allowed for kind 'quadratic' only")
        if self.kind == "comparison" and self.search is None:
            raise ValueError("search: required for kind 'comparison' (sampler, trials_per_optimizer, metric)")
        if self.kind != "comparison" and self.search is not None:
            raise ValueError(f"search: only kind 'comparison' tunes; kind {self.kind!r} takes no search block")
        if self.kind == "sensitivity" and self.sensitivity is None:
            raise ValueError("sensitivity: required for kind 'sensitivity' (lr_low, lr_high, points)")
        if self.kind not in ("sensitivity", "quadratic") and self.sensitivity is not None:
            raise ValueError(f"sensitivity: not used by kind {self.kind!r}")
        if self.kind == "comparison":
            is_quad = self._benchmark_kind() == "quadratic"
            allowed = QUADRATIC_METRICS if is_quad else VALIDATION_METRICS
            if self.search.metric not in allowed:
                raise ValueError(f"search.metric {self.search.metric!r} does not apply to this benchmark; "
                                 f"allowed: {', '.join(allowed)}")
        if self.device.startswith("cuda"):
            # Ray Tune hides every GPU from a trial that asked for none (CUDA_VISIBLE_DEVICES=""), and shows
            # a trial ceil(gpus) devices numbered from 0: any other device fails every trial.
            index = int(self.device.partition(":")[2] or 0)
            if self.resources.gpus == 0:
                raise ValueError(f"device: {self.device!r} needs resources.gpus > 0 (Ray Tune gives a trial "
                                 "without GPUs no CUDA device); set resources.gpus or use device 'auto'")
            if index >= max(1, math.ceil(self.resources.gpus)):
                raise ValueError(f"device: {self.device!r} is not visible to a trial with resources.gpus="
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
                        raise ValueError(f"target.{key}: not a target of benchmark {b!r}; allowed: {', '.join(known)}")
        if self.search is not None and self.search.early_stopping is not None:
            epochs = self.epochs if self.epochs is not None else self._default_epochs()
            grace = self.search.early_stopping.grace_period
            if epochs is not None and grace > epochs:
                raise ValueError(f"search.early_stopping.grace_period: {grace} is more than the {epochs} epoch(s) "
                                 "of a trial (ASHA needs grace_period <= epochs)")
        if self.kind == "quadratic" and self._benchmark_kind() != "quadratic":
            raise ValueError(f"benchmark: kind 'quadratic' needs quadratic benchmarks, got {self.benchmark!r}")
        return self

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
            out["sampler"] = self.search.sampler
            out["metric"] = self.search.metric
            out["mode"] = self.search.mode
            out["trials_per_optimizer"] = {o.name: self.search.trials_per_optimizer for o in self.optimizers}
            out["equal_budget"] = True
        if self.sensitivity is not None:
            out["lr_grid"] = self.sensitivity.values()
        for entry in self.optimizers:
            space = entry.resolved_space() if self.kind == "comparison" else {}
            out["optimizers"][entry.name] = {
                "fixed": entry.hparams,
                "search_space": {k: v.describe() for k, v in space.items()},
                "dimensions": len(space),
                "default_space": entry.search_space is None,
            }
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


def _field_path(loc: tuple[Any, ...], data: Any) -> str:
    parts: list[str] = []
    node = data
    for item in loc:
        # pydantic puts union/validator tags in loc (e.g. 'function-before[...]'); skip those
        if isinstance(item, str) and ("[" in item or item in ("str", "list[str]")):
            continue
        if isinstance(item, int) and isinstance(node, list) and 0 <= item < len(node):
            entry = node[item]
            name = entry if isinstance(entry, str) else (entry.get("name") if isinstance(entry, dict) else None)
            parts.append(f"{item}" + (f" ({name})" if name else ""))
            node = entry
            continue
        parts.append(str(item))
        node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts) or "(file)"


def format_validation_error(exc: ValidationError, data: Any, source: str) -> str:
    """One line: ``study file SRC: field a.b: message; field c: message``."""
    msgs = []
    for err in exc.errors():
        path = _field_path(tuple(err["loc"]), data)
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif "input" in err and err["type"] not in ("value_error", "assertion_error"):
            msg = f"{msg} (got {err['input']!r})"
        msgs.append(f"field {path}: {msg}")
    return f"study file {source}: " + "; ".join(msgs)


def parse_study(data: Any, source: str = "<study>", **overrides: Any) -> StudyConfig:
    """Validate a study mapping (``overrides`` replace top-level fields, e.g. ``name``).

    Raises:
        StudyConfigError: one line naming every bad field.
    """
    if not isinstance(data, dict):
        raise StudyConfigError(f"study file {source}: expected a mapping of fields, got {type(data).__name__}")
    data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as exc:
        raise StudyConfigError(format_validation_error(exc, data, source)) from None


def apply_sets(data: Any, sets: list[str] | tuple[str, ...], source: str) -> Any:
    """Apply ``KEY=VALUE`` overrides (``--set``): dotted keys into nested mappings, values parsed as YAML.

    Example: ``["epochs=5", "seeds=3", "search.trials_per_optimizer=4"]``.

    Raises:
        StudyConfigError: an override without ``=``, or a dotted key through a non-mapping.
    """
    if not sets:
        return data
    if not isinstance(data, dict):
        return data
    data = yaml.safe_load(yaml.safe_dump(data))  # deep copy
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise StudyConfigError(f"--set {item!r}: use KEY=VALUE, e.g. --set epochs=5")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise StudyConfigError(f"study file {source}: --set {key}: {part!r} is not a mapping")
            node = nxt
        node[parts[-1]] = value
    return data


def load_study(path: str | Path, sets: list[str] | tuple[str, ...] = (), **overrides: Any) -> StudyConfig:
    """Read and validate a study file (YAML); ``sets`` are ``KEY=VALUE`` overrides (see :func:`apply_sets`).

    Raises:
        StudyConfigError: missing/unreadable file, invalid YAML, or an invalid field (one line each).
    """
    p = Path(path)
    if not p.is_file():
        raise StudyConfigError(f"study file {path}: not found")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyConfigError(f"study file {path}: cannot be read as UTF-8 text ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise StudyConfigError(f"study file {path}: invalid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        raise StudyConfigError(f"study file {path}: the file is empty; expected a mapping of fields "
                               "(name, kind, benchmark, optimizers, ...)")
    return parse_study(apply_sets(data, sets, str(path)), str(path), **overrides)


def dump_study(cfg: StudyConfig) -> str:
    """The validated study as YAML (defaults filled in), for the parent run and for resume."""
    data = cfg.model_dump(mode="json", exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False)
