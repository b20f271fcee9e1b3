"""A study's identity: everything that changes its results, and a fingerprint of it.

A study name must mean one set of results.  The identity holds what a trial's numbers depend on: the
benchmark(s) and their data (by content), the optimizers with their fixed hyperparameters and resolved
search spaces, the search protocol (sampler, budget, metric, seeds), epochs, batch size, step cap,
validation split, targets, the device setting, the seeds, the lr grid, and the trial code (a digest of the
``amgt`` and ``workers`` sources, and torch's version).  An optimizer or benchmark that is not built in (an
import path, an entry point) adds where it came from and its code: the import path, its distribution and
version, and the SHA-256 of the file defining it (``amgt.plugins.code_provenance``).  It leaves out what only changes *how* the study
runs: its description, resources per trial, concurrency, retries, the stores and the Ray address.

The fingerprint (16 hex digits of SHA-256 over the canonical JSON of the identity) is stored with the
study in both stores (study/stores.py): the MLflow experiment's tags and every parent run, and each
Optuna study's user attributes.  Running a name again with another fingerprint is refused, naming the
fields that differ (:func:`describe_changes`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .config import StudyConfig

__all__ = ["StudyIdentity", "FieldChange", "ABSENT", "study_identity", "diff_identity", "describe_changes"]


@dataclass(frozen=True)
class FieldChange:
    """One identity field that differs: its dotted path, the recorded value and the new one."""

    field: str
    recorded: Any
    requested: Any


@dataclass(frozen=True)
class StudyIdentity:
    """``fields``: the identity (JSON-able, see the module docstring); ``fingerprint``: its digest."""

    fields: dict[str, Any]
    fingerprint: str

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> "StudyIdentity":
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
        return cls(fields, hashlib.sha256(canonical.encode()).hexdigest()[:16])

    def to_json(self) -> str:
        return json.dumps(self.fields, sort_keys=True, separators=(",", ":"), default=str)


def study_identity(cfg: StudyConfig) -> StudyIdentity:
    """The identity of a validated study.  Reads the benchmarks' data to digest it (MNIST: ~0.3 s once).

    Raises:
        FileNotFoundError: a benchmark's data is missing.  StudyRunError: its data is corrupt.
    """
    import torch

    from amgt.plugins import code_provenance
    from amgt.registry import BUILT_IN
    from workers import get_benchmark
    from workers.provenance import code_digest, data_identity

    from .errors import StudyRunError
    from .plan import base_trial_config, search_seed

    base = base_trial_config(cfg)
    data = {}
    for bench in cfg.benchmarks:
        try:
            ident = data_identity(bench, cfg.data_dir)
        except ValueError as exc:
            raise StudyRunError(f"study {cfg.name}: benchmark {bench}: {exc}") from None
        data[bench] = None if ident is None else {"name": ident.name, "digest": ident.digest}
    optimizers = {}
    for entry in cfg.optimizers:
        space = entry.resolved_space() if cfg.kind == "comparison" else {}
        optimizers[entry.name] = {"hparams": dict(entry.hparams),
                                  "search_space": {k: dim.model_dump(mode="json") for k, dim in space.items()}}
        spec = entry.spec
        if spec.source != BUILT_IN:  # built-in ones: the trial-code digest (their fingerprints unchanged)
            optimizers[entry.name]["class"] = {"ref": entry.ref, "source": spec.source, **code_provenance(spec.cls)}
    search = None
    if cfg.search is not None:
        search = cfg.search.model_dump(mode="json")
        search["training_seed"] = search_seed(cfg)
    fields = {
        "kind": cfg.kind,
        "benchmark": cfg.benchmarks,
        "data": data,
        "epochs": base.get("epochs"),
        "batch_size": base.get("batch_size"),
        "max_steps": cfg.max_steps,
        "val_fraction": cfg.val_fraction,
        "target": cfg.target,
        "evaluate_test": cfg.evaluate_test,
        "device": cfg.device,
        "seeds": cfg.seeds,
        "seed_start": cfg.seed_start,
        "optimizers": optimizers,
        "search": search,
        "lr_grid": cfg.sensitivity.values() if cfg.sensitivity is not None else None,
        "code": {"trial_code": code_digest(), "torch": torch.__version__},
    }
    plugins = {b: {"source": get_benchmark(b).source, **code_provenance(get_benchmark(b).build)}
               for b in cfg.benchmarks if get_benchmark(b).source != BUILT_IN}
    if plugins:
        fields["benchmark_code"] = plugins
    return StudyIdentity.from_fields(fields)


#: ``FieldChange.recorded``/``requested`` of a field one side does not have (an optimizer added or removed)
ABSENT = "(absent)"


def _diff(a: Any, b: Any, prefix: str, out: list[FieldChange]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            path = f"{prefix}.{k}" if prefix else str(k)
            if k not in a:
                out.append(FieldChange(path, ABSENT, b[k]))
            elif k not in b:
                out.append(FieldChange(path, a[k], ABSENT))
            else:
                _diff(a[k], b[k], path, out)
    elif a != b:
        out.append(FieldChange(prefix, a, b))


def diff_identity(recorded: dict[str, Any], requested: dict[str, Any]) -> list[FieldChange]:
    """The fields (dotted paths, e.g. ``optimizers.amgt.hparams.lr``) whose values differ, sorted; a field
    only one side has is one change at its highest path (``optimizers.sgd``: recorded, requested
    :data:`ABSENT`)."""
    out: list[FieldChange] = []
    _diff(json.loads(json.dumps(recorded, default=str)), json.loads(json.dumps(requested, default=str)), "", out)
    return out


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _change(c: FieldChange) -> str:
    if c.requested == ABSENT:
        return f"{c.field} removed"
    if c.recorded == ABSENT:
        return f"{c.field} added"
    return f"{c.field} {_short(c.recorded)} -> {_short(c.requested)}"


def describe_changes(changes: list[FieldChange], limit: int = 6) -> str:
    """``"epochs 3 -> 5, seeds 2 -> 3, optimizers.sgd removed"`` (at most ``limit`` fields, then ``"and N
    more"``)."""
    parts = [_change(c) for c in changes[:limit]]
    if len(changes) > limit:
        parts.append(f"and {len(changes) - limit} more")
    return ", ".join(parts) or "no field (the fingerprints differ only in their encoding)"
