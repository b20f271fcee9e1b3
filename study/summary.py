"""The numbers a study ends with, read back from MLflow: per optimizer (a phase's *group*), the
configuration it ran and its final metrics over the seeds, mean ± a 95 % t-interval.  Returns records; the
CLI formats them, and :mod:`study.phases` logs them on each phase's parent run as summary metrics
(``adam.test_accuracy_mean``, ``adam.test_accuracy_ci_low``, ..., names in ``tracking/schema.py``).

Counting is ``tracking.search.latest_attempts``' rule (a planned trial counts once: its FINISHED run if it
has one, else its latest attempt).  A group's values are the final (latest) values of the FINISHED runs
that are finite: a diverged run is counted in ``diverged``, not averaged.

Groups: the optimizer in ``final``, ``ablation`` and ``search``; ``<optimizer>.lr<value>`` in ``grid``;
``<benchmark>.<optimizer>[.lr<value>]`` in ``quadratic`` (the trial key without study, phase and seed).

Interval: ``scipy.stats.t.interval(0.95, n - 1, loc=mean, scale=sd / sqrt(n))`` (Student's t, the seeds
as a sample); none for fewer than 2 values.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

__all__ = ["MetricSummary", "GroupResult", "StudyResults", "summarize", "phase_results", "summary_metrics",
           "best_params", "study_results", "headline_metric", "CONFIDENCE", "PHASE_PREFERENCE"]

CONFIDENCE = 0.95
#: The phase whose results answer the study's question, in this order of preference.
PHASE_PREFERENCE = ("final", "ablation", "grid", "quadratic", "search")
#: Metrics summarised on the parent runs and in the results table, first present wins the headline.
SUMMARY_METRICS = ("test_accuracy", "val_accuracy", "distance_to_optimum", "train_loss")
_SEED_SUFFIX = re.compile(r"/seed-?\d+$")


@dataclass(frozen=True)
class MetricSummary:
    """One metric of one group: ``values`` (finite final values, one per FINISHED trial), their ``mean``,
    sample ``std`` and the 95 % t-interval (``ci_low``, ``ci_high``; None when fewer than 2 values)."""

    metric: str
    values: tuple[float, ...]
    mean: float
    std: float | None
    ci_low: float | None
    ci_high: float | None

    @property
    def n(self) -> int:
        return len(self.values)


def summarize(metric: str, values: Iterable[float]) -> MetricSummary | None:
    """Mean, sample standard deviation and 95 % t-interval of the finite ``values``; None if none is finite."""
    from scipy import stats

    vals = tuple(float(v) for v in values if v is not None and math.isfinite(v))
    if not vals:
        return None
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return MetricSummary(metric, vals, mean, None, None, None)
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
    if sd == 0.0:
        return MetricSummary(metric, vals, mean, 0.0, mean, mean)
    low, high = stats.t.interval(CONFIDENCE, len(vals) - 1, loc=mean, scale=sd / math.sqrt(len(vals)))
    return MetricSummary(metric, vals, mean, sd, float(low), float(high))


@dataclass
class GroupResult:
    """One group of a phase's trials (see the module docstring).

    Attributes:
        phase, group, optimizer: where it belongs; ``benchmark``: the benchmark its runs trained on (a
            ``quadratic`` study has one group per problem and optimizer).
        trials: planned trials with at least one run; ``finished``: with a FINISHED run (completed or
            diverged); ``diverged``, ``failed`` (latest attempt FAILED), ``interrupted`` (latest KILLED).
        hparams: the configuration the trials ran (their ``hp.*`` params; the first run's when they differ,
            e.g. the search's proposals).
        settings: the optimizer's full settings (``optim.*`` params) of the first run, when logged.
        metrics: ``{metric: MetricSummary}`` of :data:`SUMMARY_METRICS` present.
        best: search only: the best value of the search metric ``best_metric`` and its run's ``hp.*``.
        note: why the group has no trials of its own in this phase (a final-phase row of an optimizer whose
            search trials all failed; their failures are in ``StudyResults.search_failed``), else empty.
    """

    phase: str
    group: str
    optimizer: str
    trials: int = 0
    finished: int = 0
    diverged: int = 0
    failed: int = 0
    interrupted: int = 0
    hparams: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, MetricSummary] = field(default_factory=dict)
    best: tuple[float, dict[str, str]] | None = None
    best_metric: str | None = None
    note: str = ""
    benchmark: str = ""


def _not_rerun(search: list[GroupResult], final: list[GroupResult]) -> list[GroupResult]:
    """A final-phase row for each optimizer of the search that has none in the final phase (no completed search
    trial, so nothing to re-run), so it is not missing from the results table (its failures:
    ``StudyResults.search_failed``)."""
    from tracking import schema

    present = {g.optimizer for g in final}
    return [GroupResult("final", g.group, g.optimizer, trials=0, note=schema.NOTE_NOT_RERUN)
            for g in search if g.optimizer not in present]


def _group_of(study: str, phase: str, run) -> str:
    from tracking import schema

    tags = run.data.tags
    if phase in ("search", "final", "ablation"):
        return tags.get(schema.TAG_OPTIMIZER, "?")
    key = tags.get(schema.TAG_TRIAL_KEY, "")
    prefix = f"{study}/{phase}/"
    what = _SEED_SUFFIX.sub("", key[len(prefix):] if key.startswith(prefix) else key)
    return what.replace("/", ".") or tags.get(schema.TAG_OPTIMIZER, "?")


def _prefixed(params: dict[str, str], prefix: str) -> dict[str, str]:
    return {k[len(prefix):]: v for k, v in sorted(params.items()) if k.startswith(prefix)}


def phase_results(tracking_uri: str, experiment_id: str, study: str, phase: str, *, metric: str | None = None,
                  mode: str = "max") -> list[GroupResult]:
    """The groups of one phase, in the order their first run started.

    Args:
        metric, mode: search only: the search metric and its direction (``best`` is filled from them).
    """
    import tracking
    from tracking import schema
    from tracking.search import latest_attempts, run_filter, search_runs

    client = tracking.get_client(tracking_uri)
    flt = run_filter(study=study, phase=phase, role=schema.ROLE_TRIAL)
    runs = search_runs(client, [experiment_id], flt, order_by=["attributes.start_time ASC"])
    latest = sorted(latest_attempts(runs).values(), key=lambda r: (r.info.start_time or 0, r.info.run_id))
    groups: dict[str, GroupResult] = {}
    values: dict[str, dict[str, list[float]]] = {}
    for run in latest:
        name = _group_of(study, phase, run)
        g = groups.get(name)
        if g is None:
            g = groups[name] = GroupResult(phase, name, run.data.tags.get(schema.TAG_OPTIMIZER, "?"),
                                           hparams=_prefixed(run.data.params, schema.PARAM_HP_PREFIX),
                                           settings=_prefixed(run.data.params, schema.PARAM_OPTIM_PREFIX),
                                           best_metric=metric,
                                           benchmark=run.data.tags.get(schema.TAG_BENCHMARK, ""))
        g.trials += 1
        status = run.info.status
        if status == "FINISHED":
            g.finished += 1
            g.diverged += run.data.tags.get(schema.TAG_OUTCOME) == "diverged"
            for m in SUMMARY_METRICS:
                values.setdefault(name, {}).setdefault(m, []).append(run.data.metrics.get(m, math.nan))
            v = run.data.metrics.get(metric) if metric else None
            if v is not None and math.isfinite(v) and (g.best is None or (v > g.best[0]) == (mode == "max")):
                g.best = (float(v), _prefixed(run.data.params, schema.PARAM_HP_PREFIX))
        elif status == "KILLED":
            g.interrupted += 1
        elif status != "RUNNING":
            g.failed += 1
    for name, by_metric in values.items():
        for m, vals in by_metric.items():
            s = summarize(m, vals)
            if s is not None:
                groups[name].metrics[m] = s
    return list(groups.values())


def summary_metrics(groups: Iterable[GroupResult]) -> dict[str, float]:
    """The parent run's summary metrics of a phase: ``<group>.<metric>_<stat>`` (``tracking.schema.SUMMARY_STATS``;
    search: ``<group>.<metric>_best``) and ``<group>.<count>`` (``tracking.schema.SUMMARY_COUNTS``)."""
    from tracking import schema

    out: dict[str, float] = {}
    for g in groups:
        counts = {"n": max((s.n for s in g.metrics.values()), default=0), "trials": g.trials, "failed": g.failed,
                  "diverged": g.diverged, "interrupted": g.interrupted}
        out.update({f"{g.group}.{c}": float(counts[c]) for c in schema.SUMMARY_COUNTS})
        if g.phase == "search":  # different configurations: their mean says nothing; the best does
            if g.best is not None and g.best_metric:
                out[f"{g.group}.{g.best_metric}_best"] = g.best[0]
            continue
        for m, s in g.metrics.items():
            for stat in schema.SUMMARY_STATS:
                value = getattr(s, stat)
                if value is not None:
                    out[f"{g.group}.{m}_{stat}"] = float(value)
    return out


def best_params(best: dict[str, Any]) -> dict[str, Any]:
    """``best.<optimizer>.<hparam>`` and ``best.<optimizer>.optuna_trial`` params of the chosen configurations
    (``{optimizer: study.search.BestTrial}``)."""
    from tracking import schema

    out: dict[str, Any] = {}
    for opt, b in best.items():
        for k, v in b.params.items():
            out[f"{schema.PARAM_BEST_PREFIX}{opt}.{k}"] = v
        if b.number is not None:
            out[f"{schema.PARAM_BEST_PREFIX}{opt}.optuna_trial"] = b.number
    return out


def headline_metric(groups: Iterable[GroupResult]) -> str | None:
    """The first of :data:`SUMMARY_METRICS` any group has."""
    present = {m for g in groups for m in g.metrics}
    return next((m for m in SUMMARY_METRICS if m in present), None)


@dataclass
class StudyResults:
    """A study's answer: the groups of its headline phase (:data:`PHASE_PREFERENCE`), the headline metric
    and whether larger is better, and where to look further.

    Attributes:
        report_artifact: ``runs:/<parent run>/report/report.html`` when a report was logged there.
        search_failed: failed search trials per optimizer when the headline phase is ``final`` (a failed search
            trial has used its share of the budget: the results table counts it with the optimizer's failures).
    """

    study: str
    kind: str | None
    phase: str | None
    metric: str | None
    higher_is_better: bool
    groups: list[GroupResult]
    experiment_id: str | None
    parent_run_id: str | None
    tracking_uri: str
    report_artifact: str | None = None
    search_failed: dict[str, int] = field(default_factory=dict)

    def ranked(self) -> list[GroupResult]:
        """Groups with the metric, best first; then the ones without."""
        def key(g: GroupResult):
            s = g.metrics.get(self.metric) if self.metric else None
            if s is None:
                return (1, 0.0, g.group)
            return (0, -s.mean if self.higher_is_better else s.mean, g.group)

        return sorted(self.groups, key=key)


def study_results(tracking_uri: str, study: str) -> StudyResults:
    """The results of ``study`` as recorded in its MLflow store (its headline phase's groups).

    Raises:
        StudyRunError: no experiment of that name.
    """
    import tracking
    from tracking import schema
    from tracking.search import run_filter, search_runs

    from .errors import StudyRunError

    client = tracking.get_client(tracking_uri)
    exp = client.get_experiment_by_name(study)
    if exp is None:
        raise StudyRunError(f"no study {study!r} in {tracking.mask_uri(tracking_uri)}")
    parents = {r.data.tags.get(schema.TAG_PHASE): r for r in search_runs(
        client, [exp.experiment_id], run_filter(study=study, role=schema.ROLE_PARENT),
        order_by=["attributes.start_time ASC"])}
    for phase in PHASE_PREFERENCE:
        parent = parents.get(phase)
        if parent is None:
            continue
        metric = parent.data.params.get("metric") if phase == "search" else None
        mode = parent.data.params.get("mode", "max")
        groups = phase_results(tracking_uri, exp.experiment_id, study, phase, metric=metric, mode=mode)
        search_failed: dict[str, int] = {}
        if phase == "final" and "search" in parents:
            searched = phase_results(tracking_uri, exp.experiment_id, study, "search")
            groups += _not_rerun(searched, groups)
            search_failed = {g.optimizer: g.failed for g in searched if g.failed}
        if not groups:
            continue
        headline = metric if phase == "search" else headline_metric(groups)
        report = None
        try:
            if any(a.path == "report/report.html" for a in client.list_artifacts(parent.info.run_id, "report")):
                report = f"runs:/{parent.info.run_id}/report/report.html"
        except Exception:  # noqa: BLE001 - an artifact store we cannot list: no link
            report = None
        higher = (mode == "max") if phase == "search" else not (headline or "").endswith(("loss", "optimum"))
        return StudyResults(study, parent.data.tags.get(schema.TAG_KIND), phase, headline, higher, groups,
                            exp.experiment_id, parent.info.run_id, tracking_uri, report, search_failed)
    return StudyResults(study, None, None, None, True, [], exp.experiment_id, None, tracking_uri)
