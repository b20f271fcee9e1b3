"""The study's saved runs view in the MLflow UI: what ``amgt-study ui NAME`` opens, so that the first
screen answers "which optimizer won, by how much".

The view (``tracking.dashboard.RunsView``, saved as the experiment tag ``mlflow.sharedViewState.amgt-study``)
shows the trial runs of the study's headline phase (study/summary.py ``PHASE_PREFERENCE``: final, else
ablation, grid, quadratic, search) grouped by the ``optimizer`` tag with group averages, the ``results/*``
columns of the headline metrics, sorted best first; opened on its charts, each ``results/*`` metric is one bar
per optimizer.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StudyView", "VIEW_KEY", "save_study_view"]

VIEW_KEY = "amgt-study"


@dataclass(frozen=True)
class StudyView:
    """Where a study's saved view opens: ``charts_url`` (one bar per optimizer per ``results/*`` metric) and
    ``table_url`` (the grouped runs table), for the UI at the address given."""

    study: str
    phase: str | None
    experiment_id: str
    charts_url: str
    table_url: str


def save_study_view(tracking_uri: str, study: str, ui_url: str) -> StudyView:
    """Save study ``study``'s runs view in its experiment (replacing the earlier one) and return its addresses.

    Raises:
        StudyRunError: no such study in the store.
    """
    from tracking.dashboard import RunsView, column, runs_view_url, save_runs_view

    from .summary import study_results

    res = study_results(tracking_uri, study)
    flt = "tags.role = 'trial'" + (f" and tags.phase = '{res.phase}'" if res.phase else "")
    present = {m for g in res.groups for m in g.metrics} | {res.metric}
    metrics = [m for m in dict.fromkeys([res.metric, "test_accuracy", "val_accuracy"]) if m and m in present]
    cols = [column("attributes", "Dataset"), *(column("metrics", f"results/{m}") for m in metrics),
            column("params", "hp.lr"), column("tags", "seed")]
    order = column("metrics", f"results/{res.metric}") if res.metric else None
    key = save_runs_view(tracking_uri, res.experiment_id, RunsView(VIEW_KEY, flt, "optimizer", columns=cols,
                                                                   order_by=order, ascending=not res.higher_is_better))
    return StudyView(study, res.phase, res.experiment_id, runs_view_url(ui_url, res.experiment_id, key, charts=True),
                     runs_view_url(ui_url, res.experiment_id, key))
