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

from .plots import Figure, _slug, png

__all__ = ["resolve_optuna_storage", "importance_section", "AMGT_PARAMS", "OPTUNA_STORAGE_ENV"]

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


def _axes_figure(ax):
    first = ax.flat[0] if hasattr(ax, "flat") else ax
    return first.figure


def importance_section(studies: list[str], storage: str) -> tuple[pd.DataFrame, list[Figure], list[str]]:
    """(importance table: study, optimizer, param, importance_default, importance_fanova, trials;
    figures; notes on what could not be computed). Optuna's plots set a global matplotlib style; it is
    undone on return (``matplotlib.rc_context``)."""
    import matplotlib

    with matplotlib.rc_context():
        return _importance_section(studies, storage)


def _importance_section(studies: list[str], storage: str) -> tuple[pd.DataFrame, list[Figure], list[str]]:
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
                for kind, fn, need in (("contour", optuna.visualization.matplotlib.plot_contour, 2),
                                       ("slice", optuna.visualization.matplotlib.plot_slice, 1)):
                    if len(present) < need:
                        notes.append(f"Optuna study {name}: {kind} plot needs ≥ {need} of {', '.join(AMGT_PARAMS)}")
                        continue
                    try:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            fig = _axes_figure(fn(ostudy, params=present))
                        n = len(present)
                        fig.set_size_inches(*((3.0 * n, 2.6 * n) if kind == "contour" else (3.2 * n, 3.2)))
                        figures.append(Figure(f"optuna_{kind}_{_slug(study)}_{_slug(optimizer)}",
                                              f"Optuna {kind} plot, {name}",
                                              f"{len(done)} completed trials; params {', '.join(present)}; "
                                              "objective as the study optimised it", png(fig, tight=True)))
                        plt.close(fig)
                    except Exception as exc:
                        notes.append(f"Optuna study {name}: {kind} plot failed ({type(exc).__name__}: {exc})")
    return pd.DataFrame(rows, columns=cols), figures, notes
