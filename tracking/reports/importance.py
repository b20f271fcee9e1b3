"""What matters: hyperparameter importance from the studies' Optuna storage, and Optuna's own contour and
slice plots for AMGT's lr, τ (tau), λ (lr_decay) and γ (gamma).

Importances come from ``optuna.importance.get_param_importances`` with Optuna's default evaluator
(PED-ANOVA in Optuna 5) and with ``FanovaImportanceEvaluator`` (fANOVA, seed 0), normalised to sum to 1
per study. Plots from ``optuna.visualization.matplotlib`` (no plotly). Optuna study names are
``"<study>/<optimizer>"`` (``study/runner.py``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd

from .plots import Figure, _slug, footer, png

__all__ = ["resolve_optuna_storage", "importance_section", "AMGT_PARAMS", "OPTUNA_STORAGE_ENV",
           "CONTOUR_MIN_TRIALS", "contour_params"]

#: A contour plot interpolates a surface between the trials: drawn only from at least this many completed
#: trials, over params that took at least ``CONTOUR_MIN_DISTINCT`` distinct values.
CONTOUR_MIN_TRIALS = 5
CONTOUR_MIN_DISTINCT = 2

OPTUNA_STORAGE_ENV = "AMGT_OPTUNA_STORAGE"
AMGT_PARAMS = ("lr", "tau", "lr_decay", "gamma")
IMPORTANCE_COLUMNS = ["study", "optimizer", "param", "importance_default", "importance_fanova", "trials"]


def resolve_optuna_storage(storage: str | None, tracking_uri: str | None) -> str:
    """``storage`` > ``$AMGT_OPTUNA_STORAGE`` > ``optuna.db`` beside a SQLite MLflow store >
    ``sqlite:///optuna.db`` (the study runner's rule)."""
    if storage:
        return storage
    if os.environ.get(OPTUNA_STORAGE_ENV):
        return os.environ[OPTUNA_STORAGE_ENV]
    if tracking_uri and tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):].partition("?")[0])
        return f"sqlite:///{db.parent / 'optuna.db'}"
    return "sqlite:///optuna.db"


def contour_params(trials, params) -> tuple[list[str], str]:
    """(the params a contour plot may use, the reason when it cannot be drawn: "" when it can). ``trials``:
    completed Optuna trials. Needs ≥ ``CONTOUR_MIN_TRIALS`` trials and ≥ 2 params each with ≥
    ``CONTOUR_MIN_DISTINCT`` distinct values (fewer: Optuna would interpolate a surface between a few points)."""
    if len(trials) < CONTOUR_MIN_TRIALS:
        return [], (f"contour plot skipped: {len(trials)} completed trial(s), a contour needs ≥ "
                    f"{CONTOUR_MIN_TRIALS} (with fewer it interpolates a surface between a few points)")
    varied = [p for p in params if len({t.params[p] for t in trials if p in t.params}) >= CONTOUR_MIN_DISTINCT]
    if len(varied) < 2:
        return varied, (f"contour plot skipped: only {len(varied)} of {', '.join(params)} took ≥ "
                        f"{CONTOUR_MIN_DISTINCT} distinct values over {len(trials)} trials (needs 2)")
    return varied, ""


def _objective(ostudy, metric: str | None = None) -> str:
    names = getattr(ostudy, "metric_names", None)
    name = metric or (names[0] if names else "objective value")
    return f"{name}, {ostudy.direction.name.lower()}d"


def _tidy(fig) -> None:
    """Optuna's figures: drop the axes' generic titles ("Slice Plot", "Contour Plot": the figure gets a
    specific one) and the crowded minor-tick labels of log axes (1.2×10^-3 1.4×10^-3 …): a log axis
    spanning less than a decade gets plain labels at 1, 2, 5 × 10^k instead."""
    import math

    import numpy as np
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter

    for ax in fig.axes:
        if ax.get_title() in ("Slice Plot", "Contour Plot"):
            ax.set_title("")
        if ax.get_label() != "<colorbar>":  # side-by-side panels: few x labels, slanted, none at the edges
            if ax.get_xscale() == "linear":
                ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
            ax.tick_params(axis="x", labelrotation=30)
        for axis, scale, lim in ((ax.xaxis, ax.get_xscale(), ax.get_xlim()),
                                 (ax.yaxis, ax.get_yscale(), ax.get_ylim())):
            if scale != "log":
                continue
            lo, hi = sorted(lim)
            axis.set_minor_formatter(NullFormatter())
            if lo > 0 and math.log10(hi / lo) < 1:
                ticks = sorted({float(f"{v:.2g}") for v in np.geomspace(lo, hi, 4)[1:-1]} | set())
                edges = [] if axis is ax.xaxis else [lo * 1.0001, hi / 1.0001]  # an x edge label meets the next panel's
                axis.set_major_locator(FixedLocator(sorted([*edges, *ticks])))
                axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))


def _axes_figure(ax):
    first = ax.flat[0] if hasattr(ax, "flat") else ax
    return first.figure


def importance_section(studies: list[str], storage: str, objectives: dict[str, str] | None = None
                       ) -> tuple[pd.DataFrame, list[Figure], list[str]]:
    """(importance table: study, optimizer, param, importance_default, importance_fanova, trials;
    figures; notes on what could not be computed). ``objectives``: study -> the metric its search optimised
    (the search parent run's ``metric`` param), for the plots' titles. Optuna's plots set a global
    matplotlib style; it is undone on return (``matplotlib.rc_context``)."""
    import matplotlib

    with matplotlib.rc_context():
        return _importance_section(studies, storage, dict(objectives or {}))


def _importance_section(studies: list[str], storage: str, objectives: dict[str, str]
                        ) -> tuple[pd.DataFrame, list[Figure], list[str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna

    notes: list[str] = []
    rows: list[dict] = []
    figures: list[Figure] = []
    cols = IMPORTANCE_COLUMNS
    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///"):]).exists():
        return pd.DataFrame(columns=cols), [], [f"Optuna storage {storage} does not exist: no hyperparameter "
                                                "importance (pass --optuna-storage)"]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        names = optuna.get_all_study_names(storage)
    except Exception as exc:  # unreachable database, not an Optuna storage
        return pd.DataFrame(columns=cols), [], [f"Optuna storage {storage} unreadable: {type(exc).__name__}: {exc}"]
    for study in studies:
        mine = sorted(n for n in names if n.startswith(study + "/"))
        if not mine:
            notes.append(f"no Optuna study named {study}/<optimizer> in {storage}")
        for name in mine:
            optimizer = name[len(study) + 1:]
            ostudy = optuna.load_study(study_name=name, storage=storage)
            done = [t for t in ostudy.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
            if len(done) < 2:
                notes.append(f"Optuna study {name}: {len(done)} completed trial(s); importance needs ≥ 2")
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    default = optuna.importance.get_param_importances(ostudy)
                    fanova = optuna.importance.get_param_importances(
                        ostudy, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
            except Exception as exc:  # e.g. no parameter varies, multi-objective study
                notes.append(f"Optuna study {name}: importance not computable ({type(exc).__name__}: {exc})")
                continue
            for p in sorted(set(default) | set(fanova), key=lambda k: -default.get(k, 0.0)):
                rows.append({"study": study, "optimizer": optimizer, "param": p,
                             "importance_default": default.get(p), "importance_fanova": fanova.get(p),
                             "trials": len(done)})
            if optimizer.startswith("amgt"):
                present = [p for p in AMGT_PARAMS if any(p in t.params for t in done)]
                contour, why = contour_params(done, present)
                for kind, fn, need, params in (
                        ("contour", optuna.visualization.matplotlib.plot_contour, 2, contour),
                        ("slice", optuna.visualization.matplotlib.plot_slice, 1, present)):
                    if kind == "contour" and why:
                        notes.append(f"Optuna study {name}: {why}")
                        continue
                    if len(params) < need:
                        notes.append(f"Optuna study {name}: {kind} plot needs ≥ {need} of {', '.join(AMGT_PARAMS)}")
                        continue
                    try:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            fig = _axes_figure(fn(ostudy, params=params))
                        n = len(params)
                        fig.set_size_inches(*((3.0 * n, 2.6 * n) if kind == "contour" else (max(3.2 * n, 5.0), 4.0)))
                        _tidy(fig)
                        objective = _objective(ostudy, objectives.get(study))
                        fig.suptitle(f"{study} — {optimizer}: {kind} of the objective ({objective})", fontsize=10)
                        footer(fig, f"study {study}; Optuna study {name}; {len(done)} completed trials; "
                                    f"params {', '.join(params)}")
                        figures.append(Figure(f"optuna_{kind}_{_slug(study)}_{_slug(optimizer)}",
                                              f"Optuna {kind} plot, {name}",
                                              f"{len(done)} completed trials; params {', '.join(params)}; "
                                              f"objective: {objective}", png(fig, tight=True), fig))
                        plt.close(fig)
                    except Exception as exc:
                        notes.append(f"Optuna study {name}: {kind} plot failed ({type(exc).__name__}: {exc})")
    return pd.DataFrame(rows, columns=cols), figures, notes
