"""A saved view of a study's runs in the MLflow UI: filtered, grouped by a tag, with chosen columns.

MLflow's UI (3.x) saves a shared view of an experiment's runs page as an experiment tag
``mlflow.sharedViewState.<key>`` holding the page's state as JSON, and opens it at
``#/experiments/<id>?viewStateShareKey=<key>`` (its "Share" button writes the same tag).  The state is the
runs page's search facets (``searchFilter``, ``orderByKey``, ``orderByAsc``, ...) and UI state
(``selectedColumns``, ``groupBy``, ``runsExpanded``, ...); keys left out keep the UI's defaults.  Column
and sort keys are ``metrics.`<name>```, ``params.`<name>```, ``tags.`<name>``` and ``attributes.`<name>```;
a grouping is ``{"aggregateFunction": "average"|"min"|"max", "groupByKeys": [{"mode": "tag", "groupByData":
<tag>}]}``.  ``compareRunsMode=CHART`` opens the charts instead of the table.

Layout: MLflow 3.17's UI shows an experiment in its GenAI layout or its "Model training" one after a switch
kept in the browser (local storage ``mlflow.workflowType``, default GenAI) unless the address says
``workflowType=machine_learning``; the experiment tag ``mlflow.experimentKind=custom_model_development``
(:func:`tracking.runs.mark_training_experiment`) is what it reads where the switch is not shown.  So the
addresses made here name the runs tab and the training layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Sequence

from . import schema as S
from .store import get_client

__all__ = ["RunsView", "save_runs_view", "runs_view_url", "column"]


def column(kind: str, name: str) -> str:
    """A runs-table column key as the UI writes it: ``column("metrics", "results/test_accuracy")`` ->
    ``metrics.`results/test_accuracy```.

    Raises:
        ValueError: ``kind`` not one of metrics, params, tags, attributes.
    """
    if kind not in ("metrics", "params", "tags", "attributes"):
        raise ValueError(f"column kind {kind!r} is not one of metrics, params, tags, attributes")
    return f"{kind}.`{name}`"


@dataclass(frozen=True)
class RunsView:
    """A saved runs view.

    Attributes:
        key: the share key (letters, digits, ``-``, ``_``).
        search_filter: an MLflow search filter (``tags.role = 'trial' and tags.phase = 'final'``).
        group_by_tag: runs grouped by this tag's value (e.g. ``optimizer``); None: not grouped.
        aggregate: how a group's values are shown: ``average``, ``min`` or ``max``.
        columns: column keys (:func:`column`) shown, in order.
        order_by: the column key sorted on; ``ascending`` its direction.
    """

    key: str
    search_filter: str = ""
    group_by_tag: str | None = None
    aggregate: str = "average"
    columns: Sequence[str] = field(default_factory=tuple)
    order_by: str | None = None
    ascending: bool = False

    def state(self) -> dict:
        """The JSON state the UI loads."""
        out: dict = {"searchFilter": self.search_filter, "orderByAsc": self.ascending,
                     "selectedColumns": list(self.columns), "runsExpanded": {}, "useGroupedValuesInCharts": True,
                     "hideEmptyCharts": True}
        if self.order_by:
            out["orderByKey"] = self.order_by
        if self.group_by_tag:
            out["groupBy"] = {"aggregateFunction": self.aggregate,
                              "groupByKeys": [{"mode": "tag", "groupByData": self.group_by_tag}]}
        return out


def save_runs_view(tracking_uri: str, experiment_id: str, view: RunsView) -> str:
    """Store ``view`` as the experiment's shared view ``view.key`` (replacing one of that key); returns the key.

    Raises:
        ValueError: a key with characters other than letters, digits, ``-`` and ``_``, or an aggregate not
            one of average, min, max.
    """
    if not view.key or not all(c.isalnum() or c in "-_" for c in view.key):
        raise ValueError(f"view key {view.key!r}: use letters, digits, '-' and '_' only")
    if view.aggregate not in ("average", "min", "max"):
        raise ValueError(f"aggregate {view.aggregate!r} is not one of average, min, max")
    get_client(tracking_uri).set_experiment_tag(experiment_id, S.TAG_SHARED_VIEW_PREFIX + view.key,
                                                json.dumps(view.state(), sort_keys=True))
    return view.key


def runs_view_url(ui_url: str, experiment_id: str, key: str | None = None, *, charts: bool = False) -> str:
    """The UI address of the experiment's runs tab in the training layout, opened on the saved view ``key``
    (and on its charts): ``<ui>/#/experiments/<id>/runs?workflowType=machine_learning&viewStateShareKey=<key>``."""
    query = ["workflowType=machine_learning"] + ([f"viewStateShareKey={key}"] if key else [])
    if charts:
        query.append("compareRunsMode=CHART")
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{'&'.join(query)}"
