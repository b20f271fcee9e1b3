"""The study runner: Ray Tune runs the trials, Optuna proposes them, MLflow records them.

Phases (names from tracking/schema.py ``PHASES``):

* ``comparison``: ``search`` — each optimizer's space searched with ``search.trials_per_optimizer`` trials
  (equal budget), one Optuna study per (study, optimizer) named ``"<study>/<optimizer>"`` in the Optuna
  storage (optuna-dashboard can browse it); then ``final`` — the best configuration of each optimizer re-run
  over ``seeds`` seeds.  Both phases run in one ``ray.tune.Tuner`` (``MultiStudySearch`` proposes the search
  trials of every optimizer, then the final trials), so the final trials reuse the search's worker
  processes; with ASHA early stopping, one Tuner per optimizer's search and one for the final phase.
* ``sensitivity``: ``grid`` — a log grid of learning rates × optimizers × seeds (claim C10).
* ``ablation``: ``ablation`` — each listed optimizer (AMGT, its single-mechanism-off variants, Adam)
  with fixed hyperparameters × seeds (claim C9).
* ``quadratic``: ``quadratic`` — the exact facts of the quadratic problems (claims C11–C13, logged as
  ``quadratic_facts.json`` on the parent run) and the listed optimizers (× lr grid, × seeds) run on them.

MLflow: the experiment (named after the study) is created once by the driver before any trial fans
out; one parent run per (study, phase) holds the validated study file (``study.yaml``) and the fairness
record (``fairness.json``: budget per optimizer, search-space dimensions, seeds); each trial is a nested
child run written by the trial's worker (study/trainable.py).

Start-up: a local Ray is started while a thread creates the stores (MLflow experiment and schema, Optuna
schema); the checks that must write nothing on failure (data, stores reachable, resources) come first.

Ctrl-C raises ``KeyboardInterrupt`` in the driver (Ray Tune's own SIGINT handler is turned off with
``TUNE_DISABLE_SIGINT_HANDLER=1`` unless set otherwise): the open phase's parent run ends KILLED.

Resume (``amgt-study resume NAME`` or ``run`` again): every planned trial has a stable ``trial_key``.
Grid phases skip keys that already have a FINISHED run.  The search phase counts the finished trials of
each persisted Optuna study and launches only the remainder; trials left RUNNING by a killed driver are
marked FAIL in Optuna (user attr ``interrupted``) and their MLflow runs FAILED (``close_stale_runs``) so
they are neither counted nor duplicated.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .config import StudyConfig, StudyConfigError, dump_study, load_study
from .spaces import grid_values, to_optuna_distributions
from .trainable import OPTIMIZER_KEY, OPTUNA_KEY, search_trial_key, trial_function

__all__ = [
    "StudyRunError",
    "Stores",
    "resolve_stores",
    "check_optuna_storage",
    "check_resources",
    "check_study_data",
    "plan_trials",
    "run_study",
    "resume_study",
    "study_state_dir",
    "load_saved_study",
    "study_status",
    "studies_overview",
    "DEFAULT_OPTUNA_STORAGE",
    "OPTUNA_STORAGE_ENV",
    "STATE_DIR",
]

DEFAULT_OPTUNA_STORAGE = "sqlite:///optuna.db"
OPTUNA_STORAGE_ENV = "AMGT_OPTUNA_STORAGE"
STATE_DIR = ".amgt-study"   # <working dir>/.amgt-study/<study>/: study.yaml (for resume), ray/ (Tune results)
_log = logging.getLogger(__name__)
Echo = Callable[[str], None]


class StudyRunError(RuntimeError):
    """A study that cannot start or continue; the message is one line saying what to do."""


# ---- stores ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stores:
    """Where a study is recorded: the MLflow tracking URI and the Optuna storage URL (both resolved)."""

    tracking_uri: str
    optuna_storage: str


def _normalise_sql_url(url: str, what: str) -> str:
    url = url.strip()
    if url.startswith("sqlite:///"):
        path, sep, query = url[len("sqlite:///"):].partition("?")
        return "sqlite:///" + str(Path(path).expanduser().absolute()) + sep + query
    scheme, _, rest = url.partition("://")
    if not rest:
        raise StudyRunError(f"{what} {url!r} is not a URL: use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
    if scheme in ("postgres", "postgresql"):
        import importlib.util

        if importlib.util.find_spec("psycopg2") is None:
            return f"postgresql+psycopg://{rest}"
    return url


def resolve_stores(cfg: StudyConfig, tracking_uri: str | None = None, optuna_storage: str | None = None) -> Stores:
    """Resolve the stores of a study.

    Tracking URI: ``tracking_uri`` (CLI ``--tracking-uri``) > the file's ``tracking_uri`` >
    ``MLFLOW_TRACKING_URI`` > ``sqlite:///mlflow.db`` (tracking.resolve_tracking_uri; SQLite paths made
    absolute).  Optuna storage: ``optuna_storage`` > the file's > ``$AMGT_OPTUNA_STORAGE`` >
    ``sqlite:///optuna.db`` beside the MLflow SQLite file (the working directory otherwise).

    Raises:
        StudyRunError: an unsupported URI.
    """
    import tracking

    try:
        uri = tracking.resolve_tracking_uri(tracking_uri or cfg.tracking_uri)
    except tracking.TrackingStoreError as exc:
        raise StudyRunError(str(exc)) from None
    storage = optuna_storage or cfg.optuna_storage or os.environ.get(OPTUNA_STORAGE_ENV)
    if not storage:
        if uri.startswith("sqlite:///"):
            db = Path(uri[len("sqlite:///"):].partition("?")[0])
            storage = f"sqlite:///{db.parent / 'optuna.db'}"
        else:
            storage = DEFAULT_OPTUNA_STORAGE
    return Stores(uri, _normalise_sql_url(storage, "Optuna storage"))


def check_optuna_storage(url: str, timeout: float = 5.0) -> None:
    """Check that the Optuna storage answers (SQLite: its directory is writable; else ``SELECT 1``).

    Raises:
        StudyRunError: one line naming the URL and what to do.
    """
    import sqlalchemy

    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):].partition("?")[0])
        if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
            raise StudyRunError(f"Optuna storage {url!r}: directory {str(path.parent)!r} is missing or not writable")
        if not path.exists():
            return
        import sqlite3

        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as c:
                tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.Error as exc:
            raise StudyRunError(f"Optuna storage {url!r}: {str(path)!r} is not a usable SQLite database ({exc}); "
                                "point --optuna-storage at another file") from None
        _check_optuna_tables(url, tables)
        return

    import tracking

    masked = tracking.mask_uri(url)
    try:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": int(timeout)},
                                          poolclass=sqlalchemy.pool.NullPool)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
            tables = set(sqlalchemy.inspect(conn).get_table_names())
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any driver error is "unreachable" to the user
        text = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
        raise StudyRunError(
            f"Optuna storage {masked!r} is unreachable: {text}; start the database or fix --optuna-storage "
            f"/ the study file's optuna_storage / ${OPTUNA_STORAGE_ENV}"
        ) from None
    _check_optuna_tables(masked, tables)


def _check_optuna_tables(url: str, tables: set[str]) -> None:
    """Refuse a database that already holds another Alembic-managed schema (e.g. the MLflow store):
    Optuna and MLflow both keep their schema version in a table ``alembic_version``, so Optuna would
    refuse it mid-study ("no longer compatible with the table schema")."""
    if "alembic_version" in tables and "version_info" not in tables:
        hint = " (it is an MLflow tracking store)" if "experiments" in tables else ""
        raise StudyRunError(f"Optuna storage {url!r} already holds another application's tables{hint}; "
                            "give Optuna its own database (e.g. sqlite:///optuna.db)")


def _same_database(a: str, b: str) -> bool:
    """Whether two SQLAlchemy URLs name the same database (SQLite: the same file)."""
    from sqlalchemy.engine import make_url

    try:
        ua, ub = make_url(a), make_url(b)
    except Exception:  # noqa: BLE001 - http:// tracking URIs and the like are never the Optuna database
        return False
    if ua.get_backend_name() != ub.get_backend_name():
        return False
    if ua.get_backend_name() == "sqlite":
        return bool(ua.database and ub.database) and Path(ua.database).resolve() == Path(ub.database).resolve()
    return ((ua.host, ua.port, ua.database or ua.username) == (ub.host, ub.port, ub.database or ub.username))


def check_stores(stores: Stores) -> None:
    """Both stores reachable, before any trial starts (tracking.check_tracking_store + Optuna)."""
    import tracking

    try:
        tracking.check_tracking_store(stores.tracking_uri)
    except tracking.TrackingStoreError as exc:
        raise StudyRunError(str(exc)) from None
    if _same_database(stores.tracking_uri, stores.optuna_storage):
        raise StudyRunError(f"the Optuna storage and the MLflow store are the same database "
                            f"({tracking.mask_uri(stores.optuna_storage)!r}); their schemas clash: give Optuna its "
                            "own (--optuna-storage, e.g. sqlite:///optuna.db)")
    check_optuna_storage(stores.optuna_storage)


# ---- resources ---------------------------------------------------------------------------------------


def check_resources(cfg: StudyConfig, totals: dict[str, float]) -> None:
    """Refuse a per-trial request the cluster can never satisfy (Ray would wait forever).

    Args:
        totals: ``ray.cluster_resources()`` (or ``{"CPU": n, "GPU": m}`` of this machine).

    Raises:
        StudyConfigError: naming ``resources.gpus`` / ``resources.cpus``, what was asked and what exists.
    """
    gpus, cpus = float(totals.get("GPU", 0.0)), float(totals.get("CPU", 0.0))
    if cfg.resources.gpus > gpus:
        raise StudyConfigError(
            f"study {cfg.name}: field resources.gpus: {cfg.resources.gpus:g} GPU(s) per trial requested but "
            f"{'the Ray cluster' if cfg.ray_address or os.environ.get('RAY_ADDRESS') else 'this machine'} "
            f"has {gpus:g}; lower it (fractions allowed) or run on a cluster with GPUs"
        )
    if cfg.resources.cpus > cpus:
        raise StudyConfigError(
            f"study {cfg.name}: field resources.cpus: {cfg.resources.cpus:g} CPU(s) per trial requested but "
            f"only {cpus:g} exist"
        )


def local_resources() -> dict[str, float]:
    """CPUs and CUDA GPUs of this machine (for ``--dry-run``/``validate``, which do not start Ray)."""
    try:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001
        gpus = 0
    try:  # as Ray counts them (a container's CPU quota included), so the check agrees with ray.init's
        from ray._private.utils import get_num_cpus

        cpus = float(get_num_cpus())
    except Exception:  # noqa: BLE001 - a Ray without that helper
        cpus = float(os.cpu_count() or 1)
    return {"CPU": cpus, "GPU": float(gpus)}


# ---- data ---------------------------------------------------------------------------------------------


def check_study_data(cfg: StudyConfig) -> list[tuple[str, Path]]:
    """Check, before anything starts, that every benchmark's data is in the data dir its trials will use:
    the file's ``data_dir``, else ``$AMGT_DATA_DIR``, else ``~/.cache/amgt-study/data`` (as
    ``workers.run_trial`` resolves it).  Cheap: file existence and sizes (``workers.benchmarks.check_data``).

    The check runs on the driver's machine: on a cluster the data dir must be the same path on every node
    (docker-compose.yml mounts one ``data`` volume at ``/data`` = ``AMGT_DATA_DIR`` everywhere).

    Returns:
        ``[(benchmark, data root)]`` of the benchmarks that need data (digits and the functions need none).

    Raises:
        FileNotFoundError: data missing: the study, the benchmark, and the loader's message (folder, files
            expected, how to get them).
        StudyRunError: a data file that is corrupt or truncated.
    """
    from workers.benchmarks import check_data

    checked = []
    for bench in cfg.benchmarks:
        try:
            root = check_data(bench, cfg.data_dir)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"study {cfg.name}: benchmark {bench}: {exc}") from None
        except ValueError as exc:
            raise StudyRunError(f"study {cfg.name}: benchmark {bench}: {exc}") from None
        if root is not None:
            checked.append((bench, root))
    return checked


# ---- planning ---------------------------------------------------------------------------------------


def _benchmark_defaults(name: str) -> dict[str, Any]:
    from workers import get_benchmark

    return dict(get_benchmark(name).defaults)


def base_trial_config(cfg: StudyConfig) -> dict[str, Any]:
    """The workers config keys every trial of the study shares (None left out: benchmark defaults apply)."""
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


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def plan_trials(cfg: StudyConfig, phase: str, best: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The planned trials of a grid phase (``final``, ``grid``, ``ablation``, ``quadratic``), in order.

    Each is ``{"trial_key", "phase", "optimizer", "benchmark", "seed", "hparams"}`` (plus
    ``source_trial`` for ``final``).  ``trial_key`` is stable across runs: resume skips finished keys.

    Args:
        best: for ``final``: ``{optimizer: {"hparams": ..., "number": optuna trial number}}``.
    """
    out: list[dict[str, Any]] = []
    bench = cfg.benchmarks[0]

    def add(key: str, entry, hparams: dict, seed: int, benchmark: str = bench, **extra) -> None:
        out.append({"trial_key": f"{cfg.name}/{phase}/{key}/seed{seed}", "phase": phase,
                    "optimizer": entry.name, "benchmark": benchmark, "seed": seed,
                    "hparams": hparams, **extra})

    for entry in cfg.optimizers:
        if phase == "final":
            chosen = (best or {}).get(entry.name)
            if chosen is None:
                continue
            for seed in cfg.seed_values:
                add(entry.name, entry, {**entry.hparams, **chosen["hparams"]}, seed, source_trial=chosen.get("number"))
        elif phase == "grid":
            for lr in cfg.sensitivity.values():
                for seed in cfg.seed_values:
                    add(f"{entry.name}/lr{_fmt(lr)}", entry, {**entry.hparams, "lr": lr}, seed)
        elif phase == "ablation":
            for seed in cfg.seed_values:
                add(entry.name, entry, dict(entry.hparams), seed)
        elif phase == "quadratic":
            lrs = cfg.sensitivity.values() if cfg.sensitivity is not None else [None]
            for b in cfg.benchmarks:
                for lr in lrs:
                    hp = dict(entry.hparams) if lr is None else {**entry.hparams, "lr": lr}
                    key = f"{b}/{entry.name}" + ("" if lr is None else f"/lr{_fmt(lr)}")
                    for seed in cfg.seed_values:
                        add(key, entry, hp, seed, benchmark=b)
        else:
            raise ValueError(f"phase {phase!r} has no fixed plan")
    return out


def make_sampler(cfg: StudyConfig, space: dict, seed: int):
    """The Optuna sampler named by ``search.sampler`` (TPE default; random, grid, QMC)."""
    import optuna

    s = cfg.search
    if s.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if s.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True)
    grid = {name: grid_values(dim, s.grid_points) for name, dim in space.items()}
    return optuna.samplers.GridSampler(grid, seed=seed)


# ---- state on disk ---------------------------------------------------------------------------------


def study_state_dir(name: str, workdir: str | Path | None = None) -> Path:
    """``<workdir>/.amgt-study/<name>``: the saved study file (for ``resume``) and Ray Tune's results."""
    return Path(workdir or Path.cwd()).absolute() / STATE_DIR / name


def save_study(cfg: StudyConfig, stores: Stores, workdir: str | Path | None = None) -> Path:
    """Write the validated study (stores resolved) to its state dir, for ``resume NAME``."""
    d = study_state_dir(cfg.name, workdir)
    d.mkdir(parents=True, exist_ok=True)
    resolved = cfg.model_copy(update={"tracking_uri": stores.tracking_uri, "optuna_storage": stores.optuna_storage})
    (d / "study.yaml").write_text(dump_study(resolved))
    return d / "study.yaml"


def load_saved_study(name: str, workdir: str | Path | None = None) -> StudyConfig:
    """The study saved by an earlier ``run`` in this working directory.

    Raises:
        StudyRunError: no saved study of that name (lists the saved ones).
    """
    path = study_state_dir(name, workdir) / "study.yaml"
    if not path.is_file():
        root = study_state_dir("x", workdir).parent
        known = sorted(p.parent.name for p in root.glob("*/study.yaml")) if root.is_dir() else []
        raise StudyRunError(
            f"no study named {name!r} was run from {Path(workdir or Path.cwd()).absolute()} "
            f"(known here: {', '.join(known) or 'none'}); run `amgt-study run FILE` first, from the same directory"
        )
    return load_study(path)


# ---- Optuna helpers -----------------------------------------------------------------------------------


def _optuna_study_name(cfg: StudyConfig, optimizer: str) -> str:
    return f"{cfg.name}/{optimizer}"


_STORAGES: dict[str, Any] = {}


def _rdb_storage(url: str):
    """One ``optuna.storages.RDBStorage`` per URL in this process (OptunaSearch needs a storage object)."""
    import optuna

    if url not in _STORAGES:
        _STORAGES[url] = optuna.storages.RDBStorage(url)
    return _STORAGES[url]


def _open_optuna_study(stores: Stores, name: str, mode: str, sampler=None):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name=name, storage=_rdb_storage(stores.optuna_storage), sampler=sampler,
                               direction="maximize" if mode == "max" else "minimize", load_if_exists=True)


def close_interrupted_optuna_trials(ostudy, finished_runs: dict[int, dict[str, float]] | None = None,
                                   metric: str | None = None) -> tuple[int, int]:
    """Settle the trials a killed driver left RUNNING (or WAITING) in an Optuna study.

    A trial whose MLflow run had FINISHED before the kill (``finished_runs``: {trial number: final metrics})
    is told COMPLETE with that run's ``metric`` (user attr ``recovered_from_mlflow``), so its result is
    neither lost nor re-run; any other is marked FAIL with user attr ``interrupted`` (not counted against
    the budget: resume runs a replacement).

    Returns:
        (recovered, interrupted) counts.
    """
    from optuna.trial import TrialState

    storage = ostudy._storage  # Optuna's storage API: set_trial_* on a trial id
    recovered = interrupted = 0
    for t in ostudy.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        value = (finished_runs or {}).get(t.number, {}).get(metric) if metric else None
        if isinstance(value, (int, float)) and math.isfinite(value):
            storage.set_trial_user_attr(t._trial_id, "recovered_from_mlflow", True)
            storage.set_trial_state_values(t._trial_id, state=TrialState.COMPLETE, values=[float(value)])
            recovered += 1
        else:
            storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
            interrupted += 1
    return recovered, interrupted


def _finished_search_metrics(ctx: dict[str, Any], optimizer: str) -> dict[int, dict[str, float]]:
    """{Optuna trial number: final metrics} of the FINISHED search runs of one optimizer (from MLflow)."""
    from tracking import schema
    from tracking.runs import _quote, search_all_runs
    from tracking.store import get_client

    client = get_client(ctx["tracking_uri"])
    flt = (f"tags.{schema.TAG_STUDY} = {_quote(ctx['study'])} and tags.{schema.TAG_PHASE} = 'search' "
           f"and tags.{schema.TAG_OPTIMIZER} = {_quote(optimizer)} and attributes.status = 'FINISHED'")
    out = {}
    for run in search_all_runs(client, [ctx["experiment_id"]], flt):
        number = run.data.tags.get(schema.TAG_OPTUNA_TRIAL)
        if number is not None and number.isdigit():
            out[int(number)] = dict(run.data.metrics)
    return out


def counted_optuna_trials(ostudy) -> list:
    """Trials that used the budget: COMPLETE, PRUNED, and FAIL unless interrupted (re-run on resume)."""
    from optuna.trial import TrialState

    return [t for t in ostudy.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (t.state == TrialState.FAIL and not t.user_attrs.get("interrupted"))]


def _make_searcher_cls():
    from optuna.trial import TrialState
    from ray.tune.search.optuna import OptunaSearch

    class StudyOptunaSearch(OptunaSearch):
        """OptunaSearch that passes the Optuna trial number to the trial (for its MLflow tags and its
        stable ``trial_key``) and records a non-finite metric (a diverged trial) as FAIL with user
        attr ``diverged`` instead of leaving the trial RUNNING."""

        def suggest(self, trial_id):
            config = super().suggest(trial_id)
            if isinstance(config, dict):
                config = {**config, OPTUNA_KEY: self._ot_trials[trial_id].number}
            return config

        def on_trial_result(self, trial_id, result):
            value = result.get(self.metric) if isinstance(self.metric, str) else None
            if isinstance(value, (int, float)) and math.isfinite(value):
                super().on_trial_result(trial_id, result)

        def on_trial_complete(self, trial_id, result=None, error=False):
            value = (result or {}).get(self.metric) if isinstance(self.metric, str) else None
            if trial_id in self._ot_trials and trial_id not in self._completed_trials and (
                isinstance(value, (int, float)) and not math.isfinite(value)
            ):
                ot_trial = self._ot_trials[trial_id]
                ot_trial.set_user_attr("diverged", True)
                self._ot_study.tell(ot_trial, None, state=TrialState.FAIL)
                self._completed_trials.add(trial_id)
                return
            super().on_trial_complete(trial_id, result=result, error=error)

    return StudyOptunaSearch


def _make_multi_searcher_cls():
    from ray.tune.search import Searcher

    class MultiStudySearch(Searcher):
        """One Ray Tune searcher over several Optuna studies (one per optimizer), so one Tuner runs every
        optimizer's search: each trial is proposed by the study of the optimizer with the most budget left
        (round robin), and its results go back to that study only.  Budgets stay equal and separate.

        ``then`` (optional) continues the same Tuner with planned trials once the search is over: when
        every budget is spent, ``suggest`` answers ``None`` (Tune's "not ready") until every search trial
        has completed, then calls ``then()`` once (the runner closes the search phase and plans the final
        trials from the best configurations) and proposes its trials as ``{"trial": planned}`` one per
        call, then ``Searcher.FINISHED``.  The final trials so run on the search's workers, with no new
        Tuner."""

        def __init__(self, searchers: dict, budgets: dict[str, int], metric: str, mode: str,
                     then: Callable[[], list[dict[str, Any]]] | None = None):
            super().__init__(metric=metric, mode=mode)
            self._searchers = searchers
            self._left = dict(budgets)
            self._order = list(budgets)
            self._owner: dict[str, str] = {}
            self._running: set[str] = set()
            self._then = then
            self._queue: list[dict[str, Any]] | None = None

        def set_search_properties(self, metric, mode, config, **spec):
            return False  # every study has its own space

        def suggest(self, trial_id):
            live = [o for o in self._order if self._left[o] > 0]
            if live:
                opt = max(live, key=lambda o: (self._left[o], -self._order.index(o)))
                config = self._searchers[opt].suggest(trial_id)
                if not isinstance(config, dict):
                    return config
                self._left[opt] -= 1
                self._owner[trial_id] = opt
                self._running.add(trial_id)
                return {**config, OPTIMIZER_KEY: opt}
            if self._then is not None and self._queue is None:
                if self._running:
                    return None  # the best configurations need every search result
                self._queue = list(self._then())
            if self._queue:
                return {"trial": self._queue.pop(0)}
            return Searcher.FINISHED

        @property
        def finished(self) -> bool:
            """Every trial proposed: the budgets spent and (with ``then``) its trials handed out."""
            return not any(self._left.values()) and (self._then is None or self._queue == [])

        def on_trial_result(self, trial_id, result):
            if trial_id in self._owner:
                self._searchers[self._owner[trial_id]].on_trial_result(trial_id, result)

        def on_trial_complete(self, trial_id, result=None, error=False):
            if trial_id in self._owner:
                self._searchers[self._owner[trial_id]].on_trial_complete(trial_id, result=result, error=error)
                self._running.discard(trial_id)

        # The search state lives in the Optuna storage (resume reads it there), not in Tune checkpoints.
        def save(self, checkpoint_path):
            pass

        def restore(self, checkpoint_path):
            pass

    return MultiStudySearch


def best_configurations(cfg: StudyConfig, stores: Stores) -> dict[str, dict[str, Any]]:
    """``{optimizer: {"hparams", "number", "value"}}``: each optimizer's best COMPLETE search trial
    (optimizers with nothing to search use their fixed hparams)."""
    import optuna
    from optuna.trial import TrialState

    best = {}
    for entry in cfg.optimizers:
        if not entry.resolved_space():
            best[entry.name] = {"hparams": {}, "number": None, "value": None}
            continue
        try:
            ostudy = optuna.load_study(study_name=_optuna_study_name(cfg, entry.name), storage=stores.optuna_storage)
        except KeyError:
            continue
        done = ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not done:
            continue
        t = ostudy.best_trial
        best[entry.name] = {"hparams": dict(t.params), "number": t.number, "value": t.value}
    return best


# ---- progress -------------------------------------------------------------------------------------------


def _progress_callback_cls():
    from ray import tune

    class StudyProgress(tune.Callback):
        """Prints trials done/running/failed per phase and optimizer as they change, and closes an MLflow
        run a trial left RUNNING (worker killed, or stopped early by the scheduler).  One Tuner may run
        several phases (search, then final): :meth:`add_phase` registers each phase's planned trials."""

        def __init__(self, study: str, ctx: dict[str, Any], echo: Echo):
            self.study, self.ctx, self.echo = study, ctx, echo
            self.phases: dict[str, dict[str, dict[str, int]]] = {}

        def add_phase(self, phase: str, planned: dict[str, int], done: dict[str, int]) -> None:
            self.phases[phase] = {"planned": dict(planned), "done": dict(done), "running": {}, "failed": {},
                                  "retries": {}}

        def _key(self, trial) -> tuple[str, str, str | None]:
            cfg = trial.config or {}
            if "trial" in cfg:
                return cfg["trial"]["phase"], cfg["trial"]["optimizer"], cfg["trial"]["trial_key"]
            opt = cfg.get(OPTIMIZER_KEY, "?")
            num = cfg.get(OPTUNA_KEY)
            return "search", opt, (search_trial_key(self.study, opt, num) if num is not None else None)

        def _count(self, phase: str, what: str, opt: str, delta: int) -> None:
            c = self.phases.setdefault(phase, {}).setdefault(what, {})
            c[opt] = max(0, c.get(opt, 0) + delta)

        def _line(self, phase: str, opt: str, event: str) -> None:
            c = self.phases.get(phase, {})
            n = lambda what: c.get(what, {}).get(opt, 0)  # noqa: E731
            self.echo(f"[{self.study} {phase}] {opt}: {n('done')}/{n('planned')} done, {n('running')} running, "
                      f"{n('failed')} failed" + (f", {n('retries')} retried" if n("retries") else "") + f"  ({event})")

        def on_trial_start(self, iteration, trials, trial, **info):
            phase, opt, _ = self._key(trial)
            self._count(phase, "running", opt, +1)
            self._line(phase, opt, f"started {trial.trial_id}")

        def on_trial_complete(self, iteration, trials, trial, **info):
            phase, opt, key = self._key(trial)
            self._count(phase, "running", opt, -1)
            self._count(phase, "done", opt, +1)
            if key:
                _close_running(self.ctx, key, failed=False, reason="stopped early by the scheduler")
            self._line(phase, opt, f"finished {trial.trial_id}")

        def on_trial_error(self, iteration, trials, trial, **info):
            phase, opt, key = self._key(trial)
            self._count(phase, "running", opt, -1)
            self._count(phase, "failed", opt, +1)
            text = _trial_error_text(trial)
            if key:
                _close_running(self.ctx, key, failed=True, reason=text)
                text = _failure_text(self.ctx, trial, key)
            n = self._attempts(trial)
            self._line(phase, opt, f"failed {trial.trial_id} after {n} attempt{'s' * (n != 1)}: {_last_line(text)}")

        def on_trial_recover(self, iteration, trials, trial, **info):
            phase, opt, key = self._key(trial)
            self._count(phase, "retries", opt, +1)
            self._count(phase, "running", opt, -1)
            text = _trial_error_text(trial)
            if key:
                _close_running(self.ctx, key, failed=True, reason=text)
                text = _failure_text(self.ctx, trial, key)
            self._line(phase, opt, f"retrying {trial.trial_id} after attempt {self._attempts(trial)} failed: "
                       f"{_last_line(text)}")

        @staticmethod
        def _attempts(trial) -> int:
            """Attempts of this Ray trial that failed so far (Ray Tune's ``num_failures``; at least 1 here)."""
            return max(1, int(getattr(getattr(trial, "run_metadata", None), "num_failures", 0) or 0))

    return StudyProgress


def _last_line(text: str, limit: int = 300) -> str:
    """The line of an error text that says what went wrong (an exception's ``Type: message``)."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    hits = [ln for ln in lines if re.match(r"^[A-Za-z_.]*(Error|Exception|Exit)\b.*:", ln)]
    line = (hits[-1] if hits else (lines[-1] if lines else "")).replace("\x1b", "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _trial_error_text(trial) -> str:
    """The error of the trial's latest failure, from Ray Tune's error file.

    Ray Tune appends ``Failure # N ...`` + the exception to ``error.txt`` in the trial's driver-side staging
    dir just before the callbacks run (``Trial.handle_error``); ``Trial.get_error`` reads the copy in the
    storage path, which may not be synced yet, so the local file is read first."""
    err = None
    path = getattr(trial, "error_file", None)
    try:
        if path and os.path.isfile(path):
            text = Path(path).read_text(errors="replace")
            err = re.split(r"^Failure # \d+ \(occurred at [^)]*\)\s*$", text, flags=re.M)[-1].strip() or None
    except (OSError, AttributeError):
        err = None
    if not err:
        try:
            err = trial.get_error()
        except Exception:  # noqa: BLE001
            err = None
    return f"Ray Tune trial {trial.trial_id} failed: {err}" if err else f"Ray Tune trial {trial.trial_id} failed (worker lost)"


def _mlflow_error(ctx: dict[str, Any], trial_key: str) -> str | None:
    """The ``error`` tag of the latest FAILED MLflow run of ``trial_key`` (the worker's own traceback)."""
    from tracking import schema
    from tracking.runs import _quote, search_all_runs
    from tracking.store import get_client

    try:
        flt = f"tags.{schema.TAG_TRIAL_KEY} = {_quote(trial_key)} and attributes.status = 'FAILED'"
        runs = search_all_runs(get_client(ctx["tracking_uri"]), [ctx["experiment_id"]], flt)
    except Exception:  # noqa: BLE001 - progress lines must not stop the study
        return None
    runs = sorted(runs, key=lambda r: r.info.start_time or 0)
    return runs[-1].data.tags.get(schema.TAG_ERROR) if runs else None


def _failure_text(ctx: dict[str, Any], trial, key: str | None) -> str:
    """What made a trial attempt fail: Ray Tune's error for this failure; when Ray has none (the error file
    is not there), the error the worker recorded on the trial's latest FAILED MLflow run."""
    text = _trial_error_text(trial)
    if key and text.endswith("(worker lost)"):
        recorded = _mlflow_error(ctx, key)
        if recorded:
            return recorded
    return text


def _close_running(ctx: dict[str, Any], trial_key: str, *, failed: bool, reason: str) -> None:
    """End MLflow runs of ``trial_key`` still RUNNING: FAILED with ``reason`` or FINISHED + early_stopped."""
    from tracking import schema
    from tracking.runs import _quote, search_all_runs
    from tracking.store import get_client

    from .trainable import TAG_EARLY_STOPPED

    try:
        client = get_client(ctx["tracking_uri"])
        flt = f"tags.{schema.TAG_TRIAL_KEY} = {_quote(trial_key)} and attributes.status = 'RUNNING'"
        for run in search_all_runs(client, [ctx["experiment_id"]], flt):
            if failed:
                client.set_tag(run.info.run_id, schema.TAG_OUTCOME, "failed")
                client.set_tag(run.info.run_id, schema.TAG_ERROR, reason[:8000])
                client.set_terminated(run.info.run_id, status="FAILED")
            else:
                client.set_tag(run.info.run_id, schema.TAG_OUTCOME, "completed")
                client.set_tag(run.info.run_id, TAG_EARLY_STOPPED, "true")
                client.set_terminated(run.info.run_id, status="FINISHED")
    except Exception as exc:  # noqa: BLE001 - bookkeeping must not stop the study
        _log.warning("could not close the MLflow run of %s: %s", trial_key, exc)


# ---- running -------------------------------------------------------------------------------------------


@dataclass
class PhaseSummary:
    """Trials of one phase per optimizer.  ``finished``: planned trials with a result (a FINISHED run:
    completed, early-stopped or diverged); ``diverged``: of those, diverged; ``failed``: trials that failed
    on every attempt (no FINISHED run); ``attempts``: the MLflow runs (attempts) of those failed trials;
    ``not_run``: optimizers skipped (``final`` without a completed search trial); ``launched``: Ray trials
    started now."""

    phase: str
    planned: dict[str, int] = field(default_factory=dict)
    finished: dict[str, int] = field(default_factory=dict)
    launched: int = 0
    diverged: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    not_run: set[str] = field(default_factory=set)

    def describe(self) -> str:
        """``"adam: 0/1 completed, 1 failed after 2 attempts; sgd: 1/2 completed, 1 diverged"``."""
        parts = []
        for opt, planned in self.planned.items():
            div = self.diverged.get(opt, 0)
            text = f"{opt}: {self.finished.get(opt, 0) - div}/{planned} completed"
            if div:
                text += f", {div} diverged"
            if self.failed.get(opt):
                n, a = self.failed[opt], self.attempts.get(opt, 0)
                text += f", {n} failed after {a} attempt{'s' * (a != 1)}"
            if opt in self.not_run:
                text += " (not run: no completed search trial)"
            parts.append(text)
        return "; ".join(parts)


def _key_outcomes(ctx: dict[str, Any], phase: str) -> dict[str, dict[str, int]]:
    """``{trial_key: {"finished", "diverged", "failed", "running", "runs"}}`` from the phase's MLflow trial runs."""
    from tracking import schema
    from tracking.runs import _quote, search_all_runs
    from tracking.store import get_client

    client = get_client(ctx["tracking_uri"])
    flt = (f"tags.{schema.TAG_STUDY} = {_quote(ctx['study'])} and tags.{schema.TAG_PHASE} = {_quote(phase)} "
           f"and tags.{schema.TAG_ROLE} = '{schema.ROLE_TRIAL}'")
    out: dict[str, dict[str, int]] = {}
    for run in search_all_runs(client, [ctx["experiment_id"]], flt):
        key = run.data.tags.get(schema.TAG_TRIAL_KEY)
        c = out.setdefault(key, {"finished": 0, "diverged": 0, "failed": 0, "running": 0, "runs": 0})
        c["runs"] += 1
        if run.info.status == "FINISHED":
            c["finished"] += 1
            c["diverged"] += run.data.tags.get(schema.TAG_OUTCOME) == "diverged"
        elif run.info.status == "RUNNING":
            c["running"] += 1
        else:
            c["failed"] += 1
    return out


def _tally(ctx: dict[str, Any], phase: str, keys: dict[str, list[str]], summary: PhaseSummary) -> None:
    """Fill ``summary``'s finished/diverged/failed/attempts for ``keys`` ({optimizer: planned trial keys})."""
    outcomes = _key_outcomes(ctx, phase)
    for opt, ks in keys.items():
        fin = div = failed = attempts = 0
        for k in ks:
            c = outcomes.get(k)
            if c is not None and c["finished"]:
                fin += 1
                div += c["diverged"] > 0
            elif c is None or not c["running"]:
                failed += 1
                attempts += c["runs"] if c else 0
        summary.finished[opt], summary.diverged[opt] = fin, div
        summary.failed[opt], summary.attempts[opt] = failed, attempts


def _ensure_ray(cfg: StudyConfig, ray_address: str | None) -> bool:
    """``ray.init`` unless already initialised: the file's/CLI address, else RAY_ADDRESS, else local."""
    import ray

    # Ray Tune's own progress tables are replaced by StudyProgress's lines (verbose=0 + the legacy reporter).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Ctrl-C raises KeyboardInterrupt in the driver (the open phase's parent run ends KILLED, `amgt-study`
    # exits 130, `resume` finishes the study), instead of Ray Tune's handler ending the Tuner quietly, after
    # which the study would carry on with the next phase.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    # A failed trial is reported in one line by StudyProgress and its traceback kept in MLflow (tag error);
    # Ray Tune's own multi-line traceback log of it is silenced.
    logging.getLogger("ray.tune.execution.tune_controller").setLevel(logging.CRITICAL)
    if ray.is_initialized():
        return False
    address = ray_address or cfg.ray_address  # None: ray.init honours RAY_ADDRESS
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address is None and not os.environ.get("RAY_ADDRESS"):
        # "local" always starts a fresh local Ray; address=None would join whatever cluster
        # /tmp/ray/ray_current_cluster names (possibly a dead one left by another process).
        address = "local"
        kwargs["include_dashboard"] = False
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError, OSError) as exc:
        raise StudyRunError(f"cannot connect to Ray at {address or os.environ.get('RAY_ADDRESS')!r}: {exc}") from None
    return True


def _run_tuner(cfg: StudyConfig, ctx: dict[str, Any], run_dir: Path, *, name: str, tune_config, progress,
               param_space: dict | None = None) -> None:
    from ray import tune

    run_config = tune.RunConfig(
        name=name,
        storage_path=str(run_dir),
        failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
        verbose=0,
        callbacks=[progress],
    )
    started = int(time.time() * 1000) - 1000
    tune.Tuner(_trainable(cfg, ctx), param_space=param_space, tune_config=tune_config, run_config=run_config).fit()
    if _interrupted_trials(ctx, started):
        # Ray Tune ended the run early on a stop signal (SIGUSR1, or SIGINT with its own handler): its trials
        # ended KILLED; stop the study as Ctrl-C does, so that the phase is not closed as finished.
        raise KeyboardInterrupt("Ray Tune stopped the study's trials on a stop signal")


def _interrupted_trials(ctx: dict[str, Any], since_ms: int) -> int:
    """Trial runs of the study started since ``since_ms`` (epoch ms) that Ray Tune stopped unfinished
    (KILLED with ``trainable.INTERRUPTED_ERROR``)."""
    from tracking import schema
    from tracking.runs import _quote, search_all_runs
    from tracking.store import get_client

    from .trainable import INTERRUPTED_ERROR

    flt = (f"tags.{schema.TAG_STUDY} = {_quote(ctx['study'])} and tags.{schema.TAG_ROLE} = '{schema.ROLE_TRIAL}' "
           f"and attributes.status = 'KILLED' and attributes.start_time >= {since_ms}")
    runs = search_all_runs(get_client(ctx["tracking_uri"]), [ctx["experiment_id"]], flt)
    return sum(r.data.tags.get(schema.TAG_ERROR) == INTERRUPTED_ERROR for r in runs)


def _finished_keys(ctx: dict[str, Any], phase: str) -> set[str]:
    from tracking import schema
    from tracking.runs import _quote, search_all_runs
    from tracking.store import get_client

    client = get_client(ctx["tracking_uri"])
    flt = (f"tags.{schema.TAG_STUDY} = {_quote(ctx['study'])} and tags.{schema.TAG_PHASE} = {_quote(phase)} "
           f"and tags.{schema.TAG_ROLE} = '{schema.ROLE_TRIAL}' and attributes.status = 'FINISHED'")
    return {r.data.tags.get(schema.TAG_TRIAL_KEY) for r in search_all_runs(client, [ctx["experiment_id"]], flt)}


def _trainable(cfg: StudyConfig, ctx: dict[str, Any]):
    from ray import tune

    resources = {"cpu": cfg.resources.cpus, "gpu": cfg.resources.gpus}
    return tune.with_resources(tune.with_parameters(trial_function, ctx=ctx), resources)


class _Phases:
    """The phases of a study as MLflow parent runs, one open at a time: :meth:`open` starts (on resume:
    reopens) a phase's parent run with the study file and fairness record, :meth:`close` ends it FINISHED and
    prints the phase's ``finished:`` line, :meth:`abort` ends the open one FAILED or KILLED."""

    def __init__(self, cfg: StudyConfig, stores: Stores, ctx: dict[str, Any], echo: Echo):
        import tracking

        self.cfg, self.stores, self.ctx, self.echo = cfg, stores, ctx, echo
        self.params = _parent_params(cfg, ctx["base"])
        self.tags = {**tracking.provenance_tags(include_device=False),
                     "optuna_storage": tracking.mask_uri(stores.optuna_storage)}
        self.artifacts = {"study.yaml": dump_study(cfg), "fairness.json": cfg.fairness()}
        self.summaries: dict[str, PhaseSummary] = {}
        self.results: dict[str, PhaseSummary] = {}   # the phases closed, in order
        self.current: str | None = None

    def open(self, phase: str) -> PhaseSummary:
        import tracking

        artifacts = dict(self.artifacts)
        if phase == "quadratic":
            facts = _quadratic_facts(self.cfg)
            if facts is not None:
                artifacts["quadratic_facts.json"] = facts
        self.ctx["parent_runs"][phase] = tracking.start_parent_run(
            self.stores.tracking_uri, self.ctx["experiment_id"], study=self.cfg.name, phase=phase, kind=self.cfg.kind,
            params=self.params, tags=self.tags, artifacts=artifacts)
        self.current = phase
        self.summaries[phase] = PhaseSummary(phase)
        return self.summaries[phase]

    def close(self, phase: str) -> None:
        import tracking

        tracking.end_parent_run(self.stores.tracking_uri, self.ctx["parent_runs"][phase], "FINISHED")
        self.current = None
        self.results[phase] = self.summaries[phase]
        self.echo(f"[{self.cfg.name} {phase}] finished: " + self.summaries[phase].describe())

    def abort(self, status: str, error: str) -> None:
        import tracking

        if self.current is not None:
            tracking.end_parent_run(self.stores.tracking_uri, self.ctx["parent_runs"][self.current], status, error=error)
            self.current = None


def _prepare_search(cfg: StudyConfig, ctx: dict[str, Any], stores: Stores, echo: Echo,
                    summary: PhaseSummary) -> dict[str, tuple[int, int]]:
    """Settle what an earlier driver left in each optimizer's Optuna study and count its finished trials;
    fill ``ctx["search"]`` (what a search trial needs to know about its optimizer).

    Returns:
        ``{optimizer: (trials done before, trials to run)}`` for the optimizers with budget left.
    """
    s = cfg.search
    pending: dict[str, tuple[int, int]] = {}
    for entry in cfg.optimizers:
        space = entry.resolved_space()
        summary.planned[entry.name] = s.trials_per_optimizer if space else 0
        if not space:
            echo(f"[{cfg.name} search] {entry.name}: nothing to search (all hyperparameters fixed); final uses "
                 f"{entry.hparams}")
            summary.finished[entry.name] = 0
            continue
        name = _optuna_study_name(cfg, entry.name)
        ostudy = _open_optuna_study(stores, name, s.mode)
        recovered, interrupted = close_interrupted_optuna_trials(
            ostudy, _finished_search_metrics(ctx, entry.name), s.metric)
        done = len(counted_optuna_trials(ostudy))
        if recovered or interrupted:
            echo(f"[{cfg.name} search] {entry.name}: of the trials an earlier driver left running, {recovered} had "
                 f"finished (result taken from MLflow), {interrupted} marked FAIL (interrupted) and replaced")
        summary.finished[entry.name] = done
        if s.trials_per_optimizer - done <= 0:
            echo(f"[{cfg.name} search] {entry.name}: {done}/{s.trials_per_optimizer} trials already done")
            continue
        pending[entry.name] = (done, s.trials_per_optimizer - done)
        ctx["search"][entry.name] = {"benchmark": cfg.benchmarks[0], "seed": cfg.seed_start,
                                     "fixed_hparams": dict(entry.hparams), "optuna_study_name": name}
        echo(f"[{cfg.name} search] {entry.name}: {s.trials_per_optimizer - done} trial(s) to run ({done} done before); "
             f"space {', '.join(f'{k} {v.describe()}' for k, v in space.items())}")
    return pending


def _search_alg(cfg: StudyConfig, stores: Stores, pending: dict[str, tuple[int, int]], then=None):
    """A :class:`MultiStudySearch` over the Optuna studies of the optimizers in ``pending``, each with its
    remaining budget (``then``: see the class)."""
    s = cfg.search
    searcher_cls = _make_searcher_cls()
    searchers = {}
    for opt, (done, _) in pending.items():
        space = cfg.optimizer(opt).resolved_space()
        # A different sampler seed on resume, so the resumed sampler does not replay the first proposals.
        searchers[opt] = searcher_cls(
            space=to_optuna_distributions(space), metric=s.metric, mode=s.mode,
            sampler=make_sampler(cfg, space, seed=s.seed + done),
            study_name=_optuna_study_name(cfg, opt), storage=_rdb_storage(stores.optuna_storage))
    return _make_multi_searcher_cls()(searchers, {o: left for o, (_, left) in pending.items()}, s.metric, s.mode,
                                      then=then)


def _tally_search(cfg: StudyConfig, ctx: dict[str, Any], stores: Stores, summary: PhaseSummary) -> None:
    keys = {}
    for entry in cfg.optimizers:
        if entry.resolved_space():
            ostudy = _open_optuna_study(stores, _optuna_study_name(cfg, entry.name), cfg.search.mode)
            keys[entry.name] = [search_trial_key(cfg.name, entry.name, t.number) for t in counted_optuna_trials(ostudy)]
    _tally(ctx, "search", keys, summary)


def _run_search_asha(cfg: StudyConfig, ctx: dict[str, Any], stores: Stores, run_dir: Path, echo: Echo,
                     summary: PhaseSummary, pending: dict[str, tuple[int, int]]) -> None:
    """The search with ASHA early stopping: one Tuner per optimizer, so that ASHA compares trials of the same
    optimizer only, and no worker reuse (Ray fails the next trial if a stopped trial's thread is still
    finishing, TUNE_FUNCTION_THREAD_TIMEOUT_S)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    s = cfg.search
    for opt, (done, left) in pending.items():
        scheduler = ASHAScheduler(time_attr="training_iteration", metric=s.metric, mode=s.mode,
                                  max_t=int(ctx["base"]["epochs"]), grace_period=s.early_stopping.grace_period,
                                  reduction_factor=s.early_stopping.reduction_factor)
        progress = _progress_callback_cls()(cfg.name, ctx, echo)
        progress.add_phase("search", {opt: s.trials_per_optimizer}, {opt: done})
        tune_config = tune.TuneConfig(search_alg=_search_alg(cfg, stores, {opt: (done, left)}), scheduler=scheduler,
                                      num_samples=left, max_concurrent_trials=cfg.max_concurrent_trials,
                                      reuse_actors=False)
        _run_tuner(cfg, ctx, run_dir, name=f"search-{opt}-{_stamp()}", tune_config=tune_config, progress=progress)
        summary.launched += left


def _pending_trials(cfg: StudyConfig, phase: str, planned: list[dict], ctx: dict[str, Any], echo: Echo,
                    summary: PhaseSummary) -> list[dict]:
    """The planned trials of a grid phase that have no FINISHED run yet (resume skips the others), each
    carrying its phase's parent run id (``parent_run``: the final phase's parent may be opened after the
    Tuner shipped ``ctx`` to the workers); fills ``summary``'s planned and finished counts."""
    finished = _finished_keys(ctx, phase)
    by_opt: dict[str, int] = {}
    done: dict[str, int] = {}
    for p in planned:
        by_opt[p["optimizer"]] = by_opt.get(p["optimizer"], 0) + 1
        done[p["optimizer"]] = done.get(p["optimizer"], 0) + (p["trial_key"] in finished)
    summary.planned.update(by_opt)
    summary.finished.update(done)
    pending = [{**p, "parent_run": ctx["parent_runs"][phase]} for p in planned if p["trial_key"] not in finished]
    if pending:
        echo(f"[{cfg.name} {phase}] launching {len(pending)} of {len(planned)} planned trials")
    else:
        echo(f"[{cfg.name} {phase}] all {len(planned)} planned trials already finished")
    return pending


def _tally_planned(ctx: dict[str, Any], phase: str, planned: list[dict], summary: PhaseSummary) -> None:
    keys: dict[str, list[str]] = {}
    for p in planned:
        keys.setdefault(p["optimizer"], []).append(p["trial_key"])
    _tally(ctx, phase, keys, summary)


def _launch_planned(cfg: StudyConfig, phase: str, pending: list[dict], ctx: dict[str, Any], run_dir: Path,
                    echo: Echo, summary: PhaseSummary) -> None:
    """One Tuner running ``pending`` (a grid over the planned trials), reusing workers."""
    from ray import tune

    progress = _progress_callback_cls()(cfg.name, ctx, echo)
    progress.add_phase(phase, summary.planned, summary.finished)
    tune_config = tune.TuneConfig(num_samples=1, max_concurrent_trials=cfg.max_concurrent_trials, reuse_actors=True)
    _run_tuner(cfg, ctx, run_dir, name=f"{phase}-{_stamp()}", tune_config=tune_config, progress=progress,
               param_space={"trial": tune.grid_search(pending)})
    summary.launched += len(pending)


def _run_planned(cfg: StudyConfig, phase: str, planned: list[dict], ctx: dict[str, Any], run_dir: Path,
                 echo: Echo, summary: PhaseSummary) -> None:
    pending = _pending_trials(cfg, phase, planned, ctx, echo, summary)
    if pending:
        _launch_planned(cfg, phase, pending, ctx, run_dir, echo, summary)
    _tally_planned(ctx, phase, planned, summary)


def _run_comparison(cfg: StudyConfig, ctx: dict[str, Any], stores: Stores, run_dir: Path, echo: Echo,
                    phases: _Phases) -> None:
    """The ``search`` phase, then ``final`` (each optimizer's best configuration over the seeds).

    Without early stopping one Tuner runs both: its searcher (:class:`MultiStudySearch` with ``then``)
    proposes the search trials, and once they have all completed, closes the search phase, opens the final
    one and proposes the final trials, which so reuse the search's worker processes (no second Tuner set-up,
    worker start-up, imports or data loading).  With ASHA early stopping the search runs one Tuner per
    optimizer and the final phase its own.  Nothing left to search (resume): the final phase alone.
    """
    from ray import tune

    import tracking

    s = cfg.search
    ctx = {**ctx, "search": {}}
    search = phases.open("search")
    pending = _prepare_search(cfg, ctx, stores, echo, search)
    final_planned: list[dict] = []

    def start_final() -> list[dict]:
        """Close the search phase, open the final one; its trials not finished yet."""
        _tally_search(cfg, ctx, stores, search)
        phases.close("search")
        final = phases.open("final")
        best = best_configurations(cfg, stores)
        tracking.log_artifacts(stores.tracking_uri, ctx["parent_runs"]["final"], {"best_configurations.json": best})
        missing = [o.name for o in cfg.optimizers if o.name not in best]
        if missing:
            echo(f"[{cfg.name} final] no completed search trial for {', '.join(missing)}: not re-run")
        final.planned.update({o.name: cfg.seeds for o in cfg.optimizers})
        final.finished.update({o.name: 0 for o in cfg.optimizers})
        final.not_run.update(missing)
        final_planned.extend(plan_trials(cfg, "final", best))
        return _pending_trials(cfg, "final", final_planned, ctx, echo, final)

    if pending and s.early_stopping is None:
        progress = _progress_callback_cls()(cfg.name, ctx, echo)
        progress.add_phase("search", {o: s.trials_per_optimizer for o in pending}, {o: d for o, (d, _) in pending.items()})

        def then() -> list[dict]:
            search.launched = budget
            trials = start_final()
            final = phases.summaries["final"]
            progress.add_phase("final", final.planned, final.finished)
            final.launched = len(trials)
            return trials

        budget = sum(left for _, left in pending.values())
        searcher = _search_alg(cfg, stores, pending, then=then)
        # An upper bound: the searcher says FINISHED after the last final trial (fewer when an optimizer has no
        # completed search trial or some final trials finished before).
        tune_config = tune.TuneConfig(search_alg=searcher, num_samples=budget + len(cfg.optimizers) * cfg.seeds,
                                      max_concurrent_trials=cfg.max_concurrent_trials, reuse_actors=True)
        _run_tuner(cfg, ctx, run_dir, name=f"study-{_stamp()}", tune_config=tune_config, progress=progress)
        if not searcher.finished:
            # Ray Tune ended the run before its searcher proposed every trial: only a stop signal (SIGINT/SIGUSR1
            # with Tune's own handler) does that.  The open phase's parent run ends KILLED.
            raise KeyboardInterrupt("Ray Tune stopped the study on a stop signal")
    else:
        if pending:
            _run_search_asha(cfg, ctx, stores, run_dir, echo, search, pending)
        trials = start_final()
        if trials:
            _launch_planned(cfg, "final", trials, ctx, run_dir, echo, phases.summaries["final"])
    _tally_planned(ctx, "final", final_planned, phases.summaries["final"])
    phases.close("final")


def _stamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")


def _parent_params(cfg: StudyConfig, base: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {
        "benchmark": cfg.benchmark, "epochs": base.get("epochs"), "batch_size": base.get("batch_size"),
        "max_steps": cfg.max_steps, "seeds": cfg.seeds, "seed_start": cfg.seed_start,
        "optimizers": ",".join(o.name for o in cfg.optimizers),
        "cpus_per_trial": cfg.resources.cpus, "gpus_per_trial": cfg.resources.gpus,
        "max_failures": cfg.max_failures,
    }
    if cfg.search is not None:
        params.update({"sampler": cfg.search.sampler, "trials_per_optimizer": cfg.search.trials_per_optimizer,
                       "metric": cfg.search.metric, "mode": cfg.search.mode,
                       "early_stopping": cfg.search.early_stopping.type if cfg.search.early_stopping else "none"})
    if cfg.sensitivity is not None:
        params["lr_grid"] = ",".join(_fmt(v) for v in cfg.sensitivity.values())
    return {k: v for k, v in params.items() if v is not None}


def _quadratic_facts(cfg: StudyConfig) -> dict[str, Any] | None:
    try:
        from workers import quadratic
    except ImportError:
        return None
    facts_fn = getattr(quadratic, "study_facts", None)
    if facts_fn is None:
        return None
    return facts_fn()


def describe_plan(cfg: StudyConfig, stores: Stores | None = None) -> list[str]:
    """Human-readable lines: what ``run`` would do (for ``--dry-run``)."""
    lines = [f"study {cfg.name} ({cfg.kind}) on {cfg.benchmark}: phases {', '.join(cfg.phases)}"]
    base = base_trial_config(cfg)
    lines.append(f"  epochs {base.get('epochs')}, batch_size {base.get('batch_size')}, max_steps {cfg.max_steps}, "
                 f"seeds {cfg.seed_values}")
    total = 0
    if cfg.kind == "comparison":
        s = cfg.search
        lines.append(f"  search: sampler {s.sampler}, {s.trials_per_optimizer} trials per optimizer, "
                     f"metric {s.metric} ({s.mode}), early stopping {s.early_stopping.type if s.early_stopping else 'none'}")
        for entry in cfg.optimizers:
            space = entry.resolved_space()
            n = s.trials_per_optimizer if space else 0
            total += n + cfg.seeds
            dims = ", ".join(f"{k} {v.describe()}" for k, v in space.items()) or "nothing (fixed)"
            lines.append(f"  - {entry.name}: search {dims}; fixed {entry.hparams or '{}'}; "
                         f"{n} search + {cfg.seeds} final trials")
    else:
        planned = plan_trials(cfg, cfg.phases[0])
        total = len(planned)
        for entry in cfg.optimizers:
            n = sum(1 for p in planned if p["optimizer"] == entry.name)
            lines.append(f"  - {entry.name}: fixed {entry.hparams or '{}'}; {n} trials")
        if cfg.sensitivity is not None:
            lines.append(f"  lr grid: {', '.join(_fmt(v) for v in cfg.sensitivity.values())}")
    lines.append(f"  resources per trial: {cfg.resources.cpus:g} CPU, {cfg.resources.gpus:g} GPU; "
                 f"max concurrent {cfg.max_concurrent_trials or 'as resources allow'}; max failures {cfg.max_failures}")
    if stores is not None:
        import tracking

        lines.append(f"  MLflow: {tracking.mask_uri(stores.tracking_uri)}; Optuna: {tracking.mask_uri(stores.optuna_storage)}")
    lines.append(f"  total planned trials: {total}")
    return lines


def _create_stores(cfg: StudyConfig, stores: Stores) -> tuple[str, list[str]]:
    """Create the study's records in its stores: the MLflow experiment (and the MLflow schema on a new
    store), runs an earlier driver left RUNNING closed FAILED, and (comparison) the Optuna schema.

    Returns:
        (experiment id, ids of the runs closed).
    """
    import tracking

    experiment_id = tracking.get_or_create_experiment(cfg.name, stores.tracking_uri)
    closed = tracking.close_stale_runs(stores.tracking_uri, cfg.name, experiment_id=experiment_id)
    if cfg.kind == "comparison":
        _rdb_storage(stores.optuna_storage)
    return experiment_id, closed


def _start_ray_and_stores(cfg: StudyConfig, stores: Stores, ray_address: str | None) -> tuple[bool, str, list[str]]:
    """Start (or join) Ray, check the per-trial resources against it, and create the stores
    (:func:`_create_stores`).

    A local Ray is started while a thread creates the stores: they do not depend on each other, and both
    mostly wait (``ray.init`` on its GCS and raylet, the stores on their database).  Its resources are checked
    first against this machine (as ``run --dry-run`` does), so that a study asking for too much writes
    nothing; then against what Ray found.  Joining a running cluster (an address, or Ray already initialised),
    the check against the cluster comes first and the stores after it.  Errors are those of
    :func:`_ensure_ray`, :func:`check_resources` and the stores, as raised there (Ray's first).  If a local
    ``ray.init`` itself fails (e.g. an unusable temp dir), the stores the thread created stay (an empty
    experiment, the Optuna schema): the next run uses them as they are.

    Returns:
        (whether Ray was started here and must be shut down, experiment id, runs closed).
    """
    import concurrent.futures

    import ray

    joining = ray.is_initialized() or bool(ray_address or cfg.ray_address or os.environ.get("RAY_ADDRESS"))
    if not joining:
        check_resources(cfg, local_resources())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="amgt-stores") as pool:
        created = None if joining else pool.submit(_create_stores, cfg, stores)
        started = _ensure_ray(cfg, ray_address)  # on an error the pool waits for the stores, then it propagates
        try:
            check_resources(cfg, ray.cluster_resources())
            experiment_id, closed = _create_stores(cfg, stores) if created is None else created.result()
        except BaseException:
            if started:
                ray.shutdown()
            raise
    return started, experiment_id, closed


def run_study(cfg: StudyConfig, *, tracking_uri: str | None = None, optuna_storage: str | None = None,
              ray_address: str | None = None, workdir: str | Path | None = None,
              echo: Echo = print) -> dict[str, PhaseSummary]:
    """Run (or finish) a study: every phase of its kind, every trial recorded in MLflow.

    Order: check the benchmark's data (:func:`check_study_data`), resolve and check the stores and the
    per-trial resources (errors here write nothing), start Ray while the stores are created
    (:func:`_start_ray_and_stores`), save the study for ``resume``, then run the phases, each under its
    MLflow parent run (a comparison's search and final phases in one Tuner, :func:`_run_comparison`).
    Running it again (or :func:`resume_study`) launches only what is missing.

    Returns:
        ``{phase: PhaseSummary}`` (trials planned and finished per optimizer, trials launched now).

    Raises:
        StudyConfigError: resources the cluster does not have.  StudyRunError: unreachable store or Ray,
        corrupt data.  FileNotFoundError: the benchmark's data is missing.  KeyboardInterrupt: interrupted
        (the open phase's parent run is ended KILLED; other errors end it FAILED).
    """
    import ray

    import tracking

    check_study_data(cfg)
    stores = resolve_stores(cfg, tracking_uri, optuna_storage)
    check_stores(stores)
    started_ray, experiment_id, closed = _start_ray_and_stores(cfg, stores, ray_address)
    try:
        state = save_study(cfg, stores, workdir)
        run_dir = state.parent / "ray"
        if closed:
            echo(f"[{cfg.name}] {len(closed)} run(s) left RUNNING by an earlier driver closed as FAILED")
        ctx: dict[str, Any] = {
            "study": cfg.name, "kind": cfg.kind, "tracking_uri": stores.tracking_uri,
            "experiment_id": experiment_id, "parent_runs": {}, "base": base_trial_config(cfg),
            "git_sha": tracking.git_sha(),
            "early_stopping": cfg.kind == "comparison" and cfg.search.early_stopping is not None,
        }
        phases = _Phases(cfg, stores, ctx, echo)
        t0 = time.time()
        try:
            if cfg.kind == "comparison":
                _run_comparison(cfg, ctx, stores, run_dir, echo, phases)
            else:
                for phase in cfg.phases:
                    summary = phases.open(phase)
                    _run_planned(cfg, phase, plan_trials(cfg, phase), ctx, run_dir, echo, summary)
                    phases.close(phase)
        except KeyboardInterrupt as exc:
            phases.abort("KILLED", f"interrupted ({exc})" if str(exc) else "interrupted (Ctrl-C)")
            if started_ray:
                # The trials died with this driver's Ray: their runs would stay RUNNING until `resume`.
                ray.shutdown()
                started_ray = False
                tracking.close_stale_runs(stores.tracking_uri, cfg.name, experiment_id=experiment_id,
                                          reason="interrupted (Ctrl-C on the driver)", status="KILLED")
            echo(f"[{cfg.name}] interrupted: the open phase and its running trials ended KILLED; finish the study "
                 f"with `amgt-study resume {cfg.name}` from this directory")
            raise
        except BaseException as exc:
            phases.abort("FAILED", f"{type(exc).__name__}: {exc}")
            raise
        echo(f"[{cfg.name}] done in {time.time() - t0:.0f} s; MLflow: {tracking.mask_uri(stores.tracking_uri)} "
             f"(experiment {cfg.name}); Optuna: {tracking.mask_uri(stores.optuna_storage)}")
        return phases.results
    finally:
        if started_ray:
            ray.shutdown()


def resume_study(name: str, *, workdir: str | Path | None = None, ray_address: str | None = None,
                 echo: Echo = print) -> dict[str, PhaseSummary]:
    """Finish the study ``name`` saved by an earlier ``run`` in ``workdir`` (same stores)."""
    cfg = load_saved_study(name, workdir)
    return run_study(cfg, ray_address=ray_address, workdir=workdir, echo=echo)


def _status_counts(name: str, tracking_uri: str | None, workdir: str | Path | None):
    """(cfg or None, resolved tracking URI, {(phase, optimizer): planned}, {(phase, optimizer): counts}).

    Counts are per planned trial (``trial_key``), from MLflow: ``completed`` (a FINISHED run, not diverged),
    ``diverged``, ``failed`` (only FAILED/KILLED runs: every attempt failed), ``running`` (a RUNNING run and no
    FINISHED one), and ``attempts`` (all runs: a retried trial has one run per attempt).

    Raises:
        StudyRunError: the study is unknown to both the working directory and the tracking store.
    """
    import tracking
    from tracking import query, schema

    cfg: StudyConfig | None
    try:
        cfg = load_saved_study(name, workdir)
    except StudyRunError:
        cfg = None
    uri = tracking.resolve_tracking_uri(tracking_uri or (cfg.tracking_uri if cfg else None))
    try:
        runs = query.load_runs(uri, name, role=schema.ROLE_TRIAL)
    except (query.UnknownStudyError, FileNotFoundError) as exc:
        if cfg is None:
            raise StudyRunError(f"study {name!r}: {exc}") from None
        runs = None
    planned: dict[tuple[str, str], int] = {}
    if cfg is not None:
        for phase in cfg.phases:
            for entry in cfg.optimizers:
                if phase == "search":
                    planned[(phase, entry.name)] = cfg.search.trials_per_optimizer if entry.resolved_space() else 0
                elif phase == "final":
                    planned[(phase, entry.name)] = cfg.seeds
                else:
                    planned[(phase, entry.name)] = sum(1 for p in plan_trials(cfg, phase) if p["optimizer"] == entry.name)
    per_key: dict[tuple[str, str], dict[str, dict[str, int]]] = {}
    if runs is not None and len(runs):
        tag = lambda c: f"tags.{c}"  # noqa: E731
        for _, row in runs.iterrows():
            group = (row.get(tag(schema.TAG_PHASE)), row.get(tag(schema.TAG_OPTIMIZER)))
            key = row.get(tag(schema.TAG_TRIAL_KEY)) or row["run_id"]
            c = per_key.setdefault(group, {}).setdefault(key, {"finished": 0, "diverged": 0, "running": 0, "runs": 0})
            c["runs"] += 1
            if row["status"] == "RUNNING":
                c["running"] += 1
            elif row["status"] == "FINISHED":
                c["finished"] += 1
                c["diverged"] += row.get(tag(schema.TAG_OUTCOME)) == "diverged"
    replaced = _interrupted_search_keys(cfg) if cfg is not None and cfg.kind == "comparison" else set()
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for group, keys in per_key.items():
        c = counts.setdefault(group, {"completed": 0, "diverged": 0, "failed": 0, "running": 0, "attempts": 0})
        for trial_key, k in keys.items():
            if trial_key in replaced:
                continue  # a search trial a killed driver interrupted: replaced by another, not a planned one
            c["attempts"] += k["runs"]
            if k["finished"]:
                c["diverged" if k["diverged"] else "completed"] += 1
            elif k["running"]:
                c["running"] += 1
            else:
                c["failed"] += 1
    return cfg, uri, planned, counts


def _interrupted_search_keys(cfg: StudyConfig) -> set[str]:
    """Trial keys of search trials marked FAIL + ``interrupted`` in Optuna (resume replaced them)."""
    import optuna

    out: set[str] = set()
    try:
        stores = resolve_stores(cfg)
        for entry in cfg.optimizers:
            try:
                ostudy = optuna.load_study(study_name=_optuna_study_name(cfg, entry.name), storage=stores.optuna_storage)
            except KeyError:
                continue
            out.update(search_trial_key(cfg.name, entry.name, t.number) for t in ostudy.get_trials(deepcopy=False)
                       if t.user_attrs.get("interrupted"))
    except Exception:  # noqa: BLE001 - status prints what it can; the Optuna error is reported below it
        pass
    return out


_EMPTY = {"completed": 0, "diverged": 0, "failed": 0, "running": 0, "attempts": 0}


def study_status(name: str, *, tracking_uri: str | None = None, workdir: str | Path | None = None) -> list[str]:
    """Lines describing a study's progress: per phase and optimizer, the planned trials and how many of them
    completed / diverged / failed (every attempt failed) / are running, and the attempts (MLflow runs:
    a retried trial has one per attempt), then each optimizer's best search trial (Optuna).

    Raises:
        StudyRunError: the study is unknown to both the working directory and the tracking store.
    """
    import tracking

    cfg, uri, planned, counts = _status_counts(name, tracking_uri, workdir)
    lines = [f"study {name}" + (f" ({cfg.kind} on {cfg.benchmark})" if cfg else "") + f"; MLflow {tracking.mask_uri(uri)}"]
    keys = list(planned) + [k for k in counts if k not in planned]
    lines.append(f"  {'phase':<10} {'optimizer':<18} {'planned':>7} {'completed':>9} {'diverged':>8} {'failed':>6} "
                 f"{'running':>7} {'attempts':>8}")
    for key in keys:
        c = counts.get(key, _EMPTY)
        p = planned.get(key)
        lines.append(f"  {str(key[0]):<10} {str(key[1]):<18} {('-' if p is None else p):>7} {c['completed']:>9} "
                     f"{c['diverged']:>8} {c['failed']:>6} {c['running']:>7} {c['attempts']:>8}")
    lines.append("  (trials: completed + diverged + failed + running <= planned; attempts = MLflow runs, "
                 "one per try of a trial)")
    if cfg is not None and cfg.kind == "comparison":
        stores = resolve_stores(cfg)
        try:
            best = best_configurations(cfg, stores)
        except Exception as exc:  # noqa: BLE001 - status must still print what it can
            best = {}
            lines.append(f"  (Optuna storage not readable: {exc})")
        for opt, b in best.items():
            if b.get("number") is not None:
                hp = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in b["hparams"].items())
                lines.append(f"  best {opt}: {cfg.search.metric}={b['value']:.4g} (Optuna trial {b['number']}; {hp})")
    return lines


def studies_overview(*, tracking_uri: str | None = None, workdir: str | Path | None = None) -> list[str]:
    """One line per study (those in the tracking store and those run from ``workdir``): kind, benchmark,
    trials completed/diverged/failed/running of those planned (all phases), attempts.

    Raises:
        tracking.TrackingStoreError: the tracking store is unreachable.
    """
    import tracking
    from tracking import query

    uri = tracking.resolve_tracking_uri(tracking_uri)
    names: set[str] = set()
    if not (uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):].partition("?")[0]).exists()):
        tracking.check_tracking_store(uri)
        names.update(query.list_studies(uri))
    root = Path(workdir or Path.cwd()).absolute() / STATE_DIR
    names.update(p.parent.name for p in root.glob("*/study.yaml"))
    if not names:
        return [f"no studies in {tracking.mask_uri(uri)} or in {root}"]
    lines = []
    for n in sorted(names):
        try:
            cfg, _, planned, counts = _status_counts(n, tracking_uri, workdir)
        except StudyRunError as exc:
            lines.append(f"{n}: {exc}")
            continue
        tot = dict(_EMPTY)
        for c in counts.values():
            for k in tot:
                tot[k] += c[k]
        what = f"{cfg.kind} on {cfg.benchmark}, " if cfg else ""
        n_planned = sum(planned.values()) if cfg else None
        state = ("running" if tot["running"] else "not started" if not tot["attempts"]
                 else "done" if n_planned is not None and tot["completed"] + tot["diverged"] >= n_planned
                 else "incomplete")
        lines.append(f"{n}: {state}; {what}{tot['completed'] + tot['diverged']}"
                     + (f"/{n_planned}" if n_planned is not None else "")
                     + f" trials finished ({tot['completed']} completed, {tot['diverged']} diverged), "
                     f"{tot['failed']} failed, {tot['running']} running; {tot['attempts']} attempts")
    return lines


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the amgt-study command")
