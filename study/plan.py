"""What a study will run: the typed records of a planned trial and of the study context a trial needs,
the trial config every trial shares, and the plan of each phase.  Pure: no Ray, no MLflow, no Optuna.

Seeds (the protocol, docs/studies.md "Seeds"): the final, grid and ablation phases train with the seeds
``seed_start … seed_start + seeds − 1``; every search trial trains with the one seed
:func:`search_seed` = ``seed_start + SEARCH_SEED_OFFSET``, so no final seed is a seed the selection saw
(no winner's curse: a final run is never the selected search trial re-run bit for bit).  ``seeds`` is
bounded by ``config.MAX_SEEDS`` (< the offset), so the two sets are disjoint.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .config import StudyConfig

__all__ = [
    "PlannedTrial",
    "SearchTarget",
    "StudyContext",
    "SEARCH_SEED_OFFSET",
    "search_seed",
    "base_trial_config",
    "plan_trials",
    "planned_counts",
    "search_trial_key",
    "optuna_study_name",
    "format_value",
]

#: Search trials train with seed ``seed_start + SEARCH_SEED_OFFSET`` (disjoint from the final seeds).
SEARCH_SEED_OFFSET = 1_000_000


@dataclass(frozen=True)
class PlannedTrial:
    """One trial the study will run.

    Attributes:
        trial_key: stable id (MLflow tag ``trial_key``): ``<study>/<phase>/<what>/seed<seed>`` for planned
            phases, ``<study>/search/<optimizer>/<optuna trial number>`` for the search.
        phase: one of ``tracking.schema.PHASES``.
        optimizer, benchmark: registry names.
        seed: the training seed (``workers.run_trial``'s ``seed``).
        hparams: the optimizer's hyperparameters (fixed ones and, for search/final, the searched ones).
        source_trial: final phase: the Optuna trial number of the configuration re-run.
        optuna_trial_number, optuna_study_name: search phase: the Optuna trial that proposed it.
        parent_run: the MLflow run id of the phase's parent run (set when the phase is open).
        epochs: the trial's epochs when they differ from the study's (``search.epochs``), else None.
    """

    trial_key: str
    phase: str
    optimizer: str
    benchmark: str
    seed: int
    hparams: dict[str, Any] = field(default_factory=dict)
    source_trial: int | None = None
    optuna_trial_number: int | None = None
    optuna_study_name: str | None = None
    parent_run: str | None = None
    epochs: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (what travels in a Ray Tune config)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PlannedTrial":
        return cls(**data)

    def with_parent(self, run_id: str) -> "PlannedTrial":
        return PlannedTrial(**{**asdict(self), "parent_run": run_id})


@dataclass(frozen=True)
class SearchTarget:
    """What a search trial of one optimizer needs: its benchmark, training seed, fixed hyperparameters,
    the name of its Optuna study and its epochs (``search.epochs``; None: the study's)."""

    benchmark: str
    seed: int
    fixed_hparams: dict[str, Any]
    optuna_study_name: str
    epochs: int | None = None


@dataclass
class StudyContext:
    """The study-wide facts every trial needs, shipped to the Ray workers (``tune.with_parameters``).

    Attributes:
        study, kind: the study's name and kind.
        tracking_uri, experiment_id: where the trial's MLflow run goes.
        base: the workers config keys every trial shares (:func:`base_trial_config`).
        fingerprint: the study's identity (study/identity.py), tagged on every run.
        git_sha: the code's commit, if known.
        search_metric: the metric the search selects on (every search result must carry it).
        early_stopping: the search uses a scheduler (ASHA) that may stop trials early.
        parent_runs: ``{phase: parent run id}`` of the phases open when the Tuner started.
        search: ``{optimizer: SearchTarget}`` for the optimizers searched in this Tuner.
        optimizer_refs: ``{optimizer: import path}`` of the study's optimizers given by ``class``: what a trial
            passes to ``workers.run_trial`` as ``optimizer`` (the others pass their registry name).
    """

    study: str
    kind: str
    tracking_uri: str
    experiment_id: str
    base: dict[str, Any]
    fingerprint: str
    git_sha: str | None = None
    search_metric: str | None = None
    early_stopping: bool = False
    parent_runs: dict[str, str] = field(default_factory=dict)
    search: dict[str, SearchTarget] = field(default_factory=dict)
    optimizer_refs: dict[str, str] = field(default_factory=dict)

    def optimizer_ref(self, optimizer: str) -> str:
        """The ``optimizer`` of a trial's workers config: the import path of ``optimizer``, or its name."""
        return self.optimizer_refs.get(optimizer, optimizer)

    def epochs_of(self, planned: PlannedTrial) -> int:
        """The epochs ``planned`` trains: its own (``search.epochs``), else the study's; 0 when neither says."""
        return int(planned.epochs or self.base.get("epochs") or 0)


def search_seed(cfg: StudyConfig) -> int:
    """The training seed of every search trial: ``seed_start + SEARCH_SEED_OFFSET``."""
    return cfg.seed_start + SEARCH_SEED_OFFSET


def search_trial_key(study: str, optimizer: str, number: int) -> str:
    """The stable key of a search trial: its Optuna study (study, optimizer) and trial number."""
    return f"{study}/search/{optimizer}/{number}"


def optuna_study_name(study: str, optimizer: str) -> str:
    """``"<study>/<optimizer>"``: the Optuna study that searches one optimizer's space."""
    return f"{study}/{optimizer}"


def format_value(v: float) -> str:
    """A learning rate or other grid value in trial keys and messages (4 significant digits)."""
    return f"{v:.4g}"


def _benchmark_defaults(name: str) -> dict[str, Any]:
    from workers import get_benchmark

    return dict(get_benchmark(name).defaults)


def base_trial_config(cfg: StudyConfig) -> dict[str, Any]:
    """The workers config keys every trial of the study shares (None left out: the benchmark's defaults
    apply).  ``data_dir`` resolves as the trial does: the file's, else ``$AMGT_DATA_DIR``, made absolute."""
    bench = _benchmark_defaults(cfg.benchmarks[0])
    data_dir = cfg.data_dir or os.environ.get("AMGT_DATA_DIR")
    base = {
        "epochs": cfg.epochs if cfg.epochs is not None else bench.get("epochs"),
        "batch_size": cfg.batch_size if cfg.batch_size is not None else bench.get("batch_size"),
        "max_steps": cfg.max_steps,
        "val_fraction": cfg.val_fraction,
        "target": cfg.target,
        "evaluate_test": cfg.evaluate_test,
        "device": cfg.device,
        "data_dir": str(Path(data_dir).expanduser().absolute()) if data_dir else None,
    }
    return {k: v for k, v in base.items() if v is not None}


def plan_trials(cfg: StudyConfig, phase: str, best: dict[str, Any] | None = None) -> list[PlannedTrial]:
    """The planned trials of a phase with a fixed plan (``final``, ``grid``, ``ablation``, ``quadratic``),
    in order.

    Args:
        best: for ``final``: ``{optimizer: study.search.BestTrial}`` (an optimizer missing from it has no
            completed search trial and is not re-run).

    Raises:
        ValueError: ``phase`` is ``search`` (Optuna plans it) or unknown.
    """
    out: list[PlannedTrial] = []
    bench = cfg.benchmarks[0]

    def add(what: str, optimizer: str, hparams: dict, seed: int, benchmark: str = bench, **extra) -> None:
        out.append(PlannedTrial(trial_key=f"{cfg.name}/{phase}/{what}/seed{seed}", phase=phase, optimizer=optimizer,
                                benchmark=benchmark, seed=seed, hparams=hparams, **extra))

    for entry in cfg.optimizers:
        if phase == "final":
            chosen = (best or {}).get(entry.name)
            if chosen is None:
                continue
            for seed in cfg.seed_values:
                add(entry.name, entry.name, {**entry.hparams, **chosen.params}, seed, source_trial=chosen.number)
        elif phase == "grid":
            for lr in cfg.sensitivity.values():
                for seed in cfg.seed_values:
                    add(f"{entry.name}/lr{format_value(lr)}", entry.name, {**entry.hparams, "lr": lr}, seed)
        elif phase == "ablation":
            for seed in cfg.seed_values:
                add(entry.name, entry.name, dict(entry.hparams), seed)
        elif phase == "quadratic":
            lrs = cfg.sensitivity.values() if cfg.sensitivity is not None else [None]
            for b in cfg.benchmarks:
                for lr in lrs:
                    hp = dict(entry.hparams) if lr is None else {**entry.hparams, "lr": lr}
                    what = f"{b}/{entry.name}" + ("" if lr is None else f"/lr{format_value(lr)}")
                    for seed in cfg.seed_values:
                        add(what, entry.name, hp, seed, benchmark=b)
        else:
            raise ValueError(f"phase {phase!r} has no fixed plan")
    return out


def planned_counts(cfg: StudyConfig) -> dict[tuple[str, str], int]:
    """``{(phase, optimizer): planned trials}`` for every phase of the study (search: the budget, 0 for an
    optimizer with nothing to search; final: the seeds)."""
    planned: dict[tuple[str, str], int] = {}
    for phase in cfg.phases:
        if phase in ("search", "final"):
            for entry in cfg.optimizers:
                searched = bool(entry.resolved_space())
                planned[(phase, entry.name)] = (cfg.search.trials_per_optimizer if searched else 0) \
                    if phase == "search" else cfg.seeds
        else:
            for p in plan_trials(cfg, phase):
                planned[(phase, p.optimizer)] = planned.get((phase, p.optimizer), 0) + 1
    return planned
