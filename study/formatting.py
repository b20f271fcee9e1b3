"""Text for the terminal: the CLI's formatting of the records the library returns (plans, statuses)."""

from __future__ import annotations

from .plan import format_value
from .runner import StudyPlan
from .status import StudyStatus

__all__ = ["catalog_lines", "plan_lines", "status_lines", "overview_line", "seeds_text", "value_text", "results_table", "results_lines"]


def catalog_lines(title: str, entries) -> list[str]:
    """``amgt-study list``'s section of optimizers or benchmarks (study/catalog.py's records): a title line,
    then one line per entry: name, where it came from, its description (or why it cannot be loaded)."""
    width = max((len(e.name) for e in entries), default=0)
    lines = [f"{title} ({len(entries)}):"]
    for e in entries:
        what = f"cannot be loaded: {e.error}" if e.error else e.description
        lines.append(f"  {e.name:<{width}}  [{e.source}]  {what}".rstrip())
    return lines


def seeds_text(seeds: list[int]) -> str:
    """``"0, 1, 2"`` or ``"0-9999 (10000 seeds)"`` for long runs of seeds."""
    if len(seeds) <= 6:
        return ", ".join(str(s) for s in seeds)
    return f"{seeds[0]}-{seeds[-1]} ({len(seeds)} seeds)"


def plan_lines(plan: StudyPlan) -> list[str]:
    """What ``run --dry-run`` prints: the plan, the stores checked, and what they already hold."""
    from .plan import base_trial_config, search_seed

    cfg = plan.cfg
    base = base_trial_config(cfg)
    lines = [f"study {cfg.name} ({cfg.kind}) on {', '.join(cfg.benchmarks)}: phases {', '.join(cfg.phases)}; "
             f"fingerprint {plan.fingerprint}",
             f"  epochs {base.get('epochs')}, batch_size {base.get('batch_size')}, "
             f"max_steps {cfg.max_steps if cfg.max_steps is not None else 'none (whole epochs)'}, "
             f"seeds {seeds_text(cfg.seed_values)}"]
    if cfg.kind == "comparison":
        from .search import startup_trials

        s = cfg.search
        lines.append(f"  search: sampler {s.sampler} ({startup_trials(cfg)} of {s.trials_per_optimizer} trials random "
                     f"start-up, {s.epochs or base.get('epochs')} epochs each), metric {s.metric} ({s.mode}), early stopping "
                     f"{s.early_stopping.type if s.early_stopping else 'none'}, training seed {search_seed(cfg)}")
    for entry in cfg.optimizers:
        counts = {ph: n for (ph, opt), n in plan.planned.items() if opt == entry.name}
        space = entry.resolved_space() if cfg.kind == "comparison" else {}
        what = ", ".join(f"{k} {v.describe()}" for k, v in space.items())
        origin = f" ({entry.class_})" if entry.class_ else ""
        given = "" if entry.search_space is not None or not what else " (default space)"
        lines.append(f"  - {entry.name}{origin}: " + (f"search {what}{given}; " if what else "")
                     + f"fixed {entry.hparams or '{}'}; " + ", ".join(f"{n} {ph}" for ph, n in counts.items()))
    if cfg.sensitivity is not None:
        lines.append(f"  lr grid: {', '.join(format_value(v) for v in cfg.sensitivity.values())}")
    lines.append(f"  resources per trial: {cfg.resources.cpus:g} CPU, {cfg.resources.gpus:g} GPU; max concurrent "
                 f"{cfg.max_concurrent_trials or 'as resources allow'}; max failures {cfg.max_failures}")
    lines.append(f"  stores (checked, read only): {plan.stores.describe()}")
    lines.append(f"  in the stores: {plan.existing or 'nothing yet (a new study)'}")
    for bench, root in plan.data:
        lines.append(f"  data: {bench} found in {root}")
    lines.append(f"  total planned trials: {plan.total}")
    return lines


_COLUMNS = ("planned", "completed", "diverged", "failed", "interrupted", "running", "attempts")


def status_lines(status: StudyStatus) -> list[str]:
    """``amgt-study status NAME``: one row per (phase, optimizer), then the best configurations."""
    head = f"study {status.name}" + (f" ({status.kind} on {status.benchmark})" if status.kind else "")
    lines = [f"{head}: {status.state}" + (f" (driver {status.driver})" if status.driver else "") + f"; {status.stores}",
             f"  {'phase':<10} {'optimizer':<18} " + " ".join(f"{c:>{max(len(c), 7)}}" for c in _COLUMNS)]
    for (phase, opt), c in status.counts.items():
        cells = [("-" if c.planned is None else c.planned) if col == "planned" else getattr(c, col) for col in _COLUMNS]
        lines.append(f"  {phase:<10} {opt:<18} " + " ".join(f"{v:>{max(len(col), 7)}}" for v, col in zip(cells, _COLUMNS)))
        if c.replaced:
            lines.append(f"  {'':<10} {'':<18} ({c.replaced} interrupted search trial(s) replaced by resume)")
    lines.append("  (trials: completed + diverged + failed + interrupted + running <= planned; attempts = MLflow runs, "
                 "one per try of a trial, replaced ones included)")
    for b in status.best:
        hp = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in b.params.items())
        lines.append(f"  best {b.optimizer}: {b.metric}={b.value:.4g} (Optuna trial {b.number}; {hp})")
    lines.extend(f"  note: {n}" for n in status.notes)
    return lines


def overview_line(status: StudyStatus) -> str:
    """One line of ``amgt-study status`` without a name."""
    if status.state == "unreadable":
        return f"{status.name}: {'; '.join(status.notes)}"
    t = status.total
    what = f"{status.kind} on {status.benchmark}, " if status.kind else ""
    planned = f"/{t.planned}" if t.planned is not None else ""
    return (f"{status.name}: {status.state}; {what}{t.finished}{planned} trials finished ({t.completed} completed, "
            f"{t.diverged} diverged), {t.failed} failed, {t.interrupted} interrupted, {t.running} running; "
            f"{t.attempts} attempts")


# ---- the results of a study (study/summary.py) -------------------------------------------------------------


def _is_accuracy(metric: str | None) -> bool:
    return bool(metric) and metric.endswith("accuracy")


def value_text(metric: str | None, mean: float | None, low: float | None = None, high: float | None = None) -> str:
    """``"96.25 [94.10, 98.40] %"`` (accuracies in points, the interval clipped to [0, 100] and marked
    "clipped" when it was, as the report shows it: tracking.reports.tables.clip_accuracy_ci),
    ``"0.0123 ± 0.0022"`` (other metrics: ± the half-width of the symmetric t-interval); ``"-"`` for None."""
    if mean is None:
        return "-"
    if not _is_accuracy(metric):
        ci = f" ± {(high - low) / 2:.4g}" if low is not None and high is not None else ""
        return f"{mean:.4g}{ci}"
    if low is None or high is None:
        return f"{100 * mean:.2f} %"
    lo, hi = max(0.0, 100 * low), min(100.0, 100 * high)
    clipped = " (clipped)" if (lo, hi) != (100 * low, 100 * high) else ""
    return f"{100 * mean:.2f} [{lo:.2f}, {hi:.2f}] %{clipped}"


def _config_text(hparams: dict[str, str]) -> str:
    def short(v: str) -> str:
        try:
            return f"{float(v):.3g}"
        except ValueError:
            return v

    return ", ".join(f"{k}={short(v)}" for k, v in hparams.items()) or "defaults"


#: Phases whose results table has one row per optimizer (its best group), not one per group.
_PER_OPTIMIZER = ("grid", "quadratic")
#: What the results table's diverged and failed columns count (row per group; row per optimizer).
FAILED_NOTE = ("diverged: of the runs shown; failed: the optimizer's trials that failed after their retries, "
               "search trials included", "diverged, failed: over all of the optimizer's grid points (quadratic: on "
               "that problem); failed after their retries")


def _several_seeds(res) -> bool:
    return any(s.n > 1 for g in res.groups for s in g.metrics.values())


def _value_label(res) -> str:
    """What the results table's value column holds."""
    if res.phase == "search":
        return "best trial"
    return "mean [95% CI]" if _several_seeds(res) else "one seed"


def results_table(res) -> tuple[list[str], list[list[str]]]:
    """The results table of a ``study.summary.StudyResults``: a header and one row per optimizer (grid phase:
    its best group; quadratic phase: its best group on each problem, problem by problem), best first:
    optimizer, configuration, the headline metric's mean with its 95 % t-interval over the seeds (the
    header says "one seed" when no group has more), n, diverged, failed."""
    metric = res.metric
    head = ["optimizer", "configuration", f"{metric or 'metric'} ({_value_label(res)})", "n", "diverged", "failed"]
    rows, seen = [], set()
    collapsed = res.phase in _PER_OPTIMIZER
    per_problem = res.phase == "quadratic"  # a quadratic study's problems are not comparable: a row per problem

    def row_of(x):
        return (x.benchmark, x.optimizer) if per_problem else x.optimizer

    for g in sorted(res.ranked(), key=lambda x: x.benchmark) if per_problem else res.ranked():
        if collapsed:
            if row_of(g) in seen:
                continue
            seen.add(row_of(g))
        mine = [x for x in res.groups if row_of(x) == row_of(g)] if collapsed else [g]
        diverged = sum(x.diverged for x in mine)
        failed = sum(x.failed for x in mine) + res.search_failed.get(g.optimizer, 0)
        s = g.metrics.get(metric) if metric else None
        hp = g.best[1] if res.phase == "search" and g.best else g.hparams
        name = f"{g.optimizer} ({g.group})" if collapsed else g.group
        if res.phase == "search":
            value = value_text(metric, g.best[0] if g.best else None)
        else:
            value = value_text(metric, *((s.mean, s.ci_low, s.ci_high) if s else (None,)))
        rows.append([name, g.note or _config_text(hp), value, str(s.n if s else 0), str(diverged), str(failed)])
    return head, rows


def results_lines(res, *, ui_command: str, report_command: str) -> list[str]:
    """What ``run``/``resume`` print when a study ends: the results table (plain text), then where to look."""
    if not res.groups:
        return [f"study {res.study}: no results recorded yet"]
    what = {"final": "the best configuration of each optimizer re-run over fresh seeds",
            "search": "the best search trial of each optimizer (one seed)",
            "grid": "each optimizer at its best learning rate of the grid",
            "ablation": "each variant over its seeds", "quadratic": "each optimizer on the problems"}
    lines = [f"results of {res.study} ({res.phase} phase: {what.get(res.phase, res.phase)}; "
             f"{'higher' if res.higher_is_better else 'lower'} is better)"]
    head, rows = results_table(res)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        lines.append("  " + "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    units = "; accuracies in points" if _is_accuracy(res.metric) else ""
    if res.phase != "search":
        lines.append(f"  (95% CI: Student's t over the seeds{units})" if _several_seeds(res)
                     else f"  (one seed per row: no interval{units})")
    lines.append(f"  ({FAILED_NOTE[res.phase in _PER_OPTIMIZER]})")
    lines.append(f"MLflow UI: {ui_command}  (the study's runs grouped by optimizer)")
    lines.append(f"report:    {res.report_artifact + ' (logged); rebuild with ' if res.report_artifact else ''}"
                 f"{report_command}")
    return lines
